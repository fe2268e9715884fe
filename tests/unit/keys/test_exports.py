"""The public surface of bipgw.keys is exactly what __all__ says."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import bipgw.keys
from bipgw.keys import (
    _kdf,
    _keyring,
    _keystore,
    _masters,
    _operator_keys,
    _pkcs11,
    _pkcs11_masters,
    _pkcs11_token,
    _rootkey,
    _scp03,
    _secret,
    _transport,
)

PRIVATE_MODULES = (
    _kdf,
    _keyring,
    _keystore,
    _masters,
    _operator_keys,
    _pkcs11,
    _pkcs11_masters,
    _pkcs11_token,
    _rootkey,
    _scp03,
    _secret,
    _transport,
)


class ExportTests(SynchronousTestCase):
    """Every exported name is the object defined in its private module."""

    def test_allNamesAreTheOriginals(self) -> None:
        """Each name in __all__ is the same object as in the module that defines it."""
        for name in bipgw.keys.__all__:
            exported = getattr(bipgw.keys, name)
            origins = [m for m in PRIVATE_MODULES if getattr(m, name, None) is exported]
            self.assertTrue(origins, name)

    def test_allIsUnique(self) -> None:
        """__all__ has no duplicates."""
        self.assertEqual(len(set(bipgw.keys.__all__)), len(bipgw.keys.__all__))

    def test_noPublicNameLeftOut(self) -> None:
        """Public names of the package namespace are all listed in __all__."""
        public = {
            name
            for name in vars(bipgw.keys)
            if not name.startswith("_")
            and name not in {m.__name__.split(".")[-1] for m in PRIVATE_MODULES}
        }
        self.assertEqual(public - set(bipgw.keys.__all__), set())
