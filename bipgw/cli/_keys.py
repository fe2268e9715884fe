# -*- test-case-name: tests.unit.cli.test_keys -*-
"""C{bipgw keys ...}: the install's keystore, opened for a command, and its listing.

What a key command does to the keystore is library code
(L{bipgw.keys.add_transport_key}, L{bipgw.keys.generate_master_key});
here the root key and keystore are opened from the configuration, and keys
are shown by label, kind, size and check value.  Nothing here ever prints,
logs or echoes key bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

import attrs

from bipgw.config import Config
from bipgw.keys import (
    IRootKeys,
    KeyInfo,
    KeyManagementError,
    KeyStore,
    Pkcs11RootKeys,
    key_check_value,
)

__all__ = ["Keys", "describe", "list_keys"]


@attrs.frozen
class Keys:
    """The install's root key and keystore, opened together."""

    root: IRootKeys
    store: KeyStore

    @classmethod
    def open(cls, config: Config, environ: Mapping[str, str] | None = None) -> Keys:
        """Load the root key (file or C{BIPGW_ROOT_KEY}) and open the keystore with it."""
        root = config.keys.load_root_key(environ)
        try:
            return cls(root, config.keys.open_keystore(root))
        except BaseException:
            if isinstance(root, Pkcs11RootKeys):
                root.close()
            raise

    def close(self) -> None:
        """Close the token session of a PKCS#11 root key (nothing to do for a file)."""
        if isinstance(self.root, Pkcs11RootKeys):
            self.root.close()


def describe(info: KeyInfo, check: str) -> str:
    """One line about a key: label, kind, size, KCV and metadata; never the key."""
    meta = " ".join(f"{k}={v}" for k, v in sorted(info.meta.items()))
    return f"{info.label}\t{info.kind.value}\t{info.length} bytes\tKCV {check}\t{meta}".rstrip()


def list_keys(keys: Keys, out: TextIO) -> int:
    """Print one line per key (see L{describe}); return how many there are."""
    labels = keys.store.labels()
    if not labels:
        out.write(f"no keys in {keys.store.path}\n")
        return 0
    for label in labels:
        info = keys.store.info(label)
        try:
            check = key_check_value(info, keys.store.get(label))
        except KeyManagementError:
            check = "(cannot open)"
        out.write(describe(info, check) + "\n")
    return len(labels)
