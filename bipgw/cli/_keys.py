# -*- test-case-name: tests.unit.cli.test_keys -*-
"""C{bipgw keys ...}: the install's keystore, opened for a command, and its listing.

What a key command does to the keystore is library code
(L{bipgw.keys.add_transport_key}, L{bipgw.keys.generate_master_key});
here the root key and keystore are opened from the configuration, and keys
are shown by label, kind, size and check value.  Nothing here ever prints,
logs or echoes key bytes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TextIO

import attrs

from bipgw.config import Config
from bipgw.keys import (
    IRootKeys,
    KeyInfo,
    KeyManagementError,
    KeyStore,
    Pkcs11MasterKeys,
    Pkcs11RootKeys,
    TokenMaster,
    key_check_value,
    retired_since,
)

__all__ = ["Keys", "describe", "describe_token_master", "list_keys"]


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
    line = f"{info.label}\t{info.kind.value}\t{info.length} bytes\tKCV {check}\t{meta}".rstrip()
    retired = retired_since(info)
    if retired is not None:
        line += "\tRETIRED " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(retired))
    return line


def describe_token_master(entry: TokenMaster) -> str:
    """One line about a master key in the token: label, kind, size, kdf; never the key."""
    kind = entry.kind.value if entry.kind is not None else "(no kind: not used by the gateway)"
    size = f"{entry.length} bytes" if entry.length is not None else "size unknown"
    where = "in token, non-extractable" if entry.protected else "in token, EXTRACTABLE"
    return f"{entry.label}\t{kind}\t{size}\tkdf={entry.kdf}\t{where}"


def list_keys(keys: Keys, out: TextIO) -> int:
    """Print one line per key (see L{describe}), then one per master key in
    the PKCS#11 token (L{describe_token_master}); return how many there are."""
    labels = keys.store.labels()
    in_token: list[TokenMaster] = []
    where = ""
    if isinstance(keys.root, Pkcs11RootKeys):
        where = keys.root.describe()
        token = Pkcs11MasterKeys.held_by(keys.root.token)
        in_token = token.entries() if token is not None else []
    if not labels:
        out.write(f"no keys in {keys.store.path}\n")
    for label in labels:
        info = keys.store.info(label)
        try:
            check = key_check_value(info, keys.store.get(label))
        except KeyManagementError:
            check = "(cannot open)"
        out.write(describe(info, check) + "\n")
    if in_token:
        out.write(f"master keys in the {where}:\n")
    for entry in in_token:
        out.write(describe_token_master(entry) + "\n")
    return len(labels) + len(in_token)
