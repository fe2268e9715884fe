"""The public surface of simcard.fleet is exactly what __all__ says."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import simcard.fleet
from simcard.fleet import (
    _cards,
    _config,
    _control,
    _errors,
    _faults,
    _files,
    _generate,
    _personalise,
    _router,
    _service,
)

PRIVATE_MODULES = (
    _cards,
    _config,
    _control,
    _errors,
    _faults,
    _files,
    _generate,
    _personalise,
    _router,
    _service,
)


class ExportTests(SynchronousTestCase):
    """Every exported name is the object defined in its private module."""

    def test_allNamesAreTheOriginals(self) -> None:
        """Each name in __all__ is the same object as in a private module."""
        for name in simcard.fleet.__all__:
            exported = getattr(simcard.fleet, name)
            origins = [m for m in PRIVATE_MODULES if getattr(m, name, None) is exported]
            self.assertTrue(origins, name)

    def test_allIsUnique(self) -> None:
        """__all__ has no duplicates."""
        self.assertEqual(len(set(simcard.fleet.__all__)), len(simcard.fleet.__all__))

    def test_noPublicNameLeftOut(self) -> None:
        """Public names of the package namespace are all listed in __all__."""
        modules = {m.__name__.split(".")[-1] for m in PRIVATE_MODULES}
        public = {n for n in vars(simcard.fleet) if not n.startswith("_") and n not in modules}
        self.assertEqual(public - set(simcard.fleet.__all__), set())
