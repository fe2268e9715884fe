# -*- test-case-name: tests.unit.cli.test_keys -*-
"""C{bipgw keys ...}: put keys into the install's keystore and list them.

Operators handle keys by I{label} and I{check value} (KCV, the
GlobalPlatform way of confirming a key arrived intact without showing it);
nothing here ever prints, logs or echoes key bytes, and a key file that is
not valid hex is reported by position, never by content.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

import attrs

from bipgw.config import Config
from bipgw.errors import BipGwError
from bipgw.keys import (
    InvalidKeyError,
    KeyAlgorithm,
    KeyInfo,
    KeyKind,
    KeyManagementError,
    KeyStore,
    MetaValue,
    RootKey,
    Secret,
    TransportScheme,
    check_value,
)

_MAX_KEY_FILE = 4096
_AES = {16: KeyAlgorithm.AES_128, 24: KeyAlgorithm.AES_192, 32: KeyAlgorithm.AES_256}
_DES = {16: KeyAlgorithm.DES3_2KEY, 24: KeyAlgorithm.DES3_3KEY}

#: The kinds C{generate-master} accepts, also without their C{master-} prefix.
MASTER_KINDS = tuple(k.value for k in KeyKind if k is not KeyKind.TRANSPORT)


class KeyCommandError(BipGwError):
    """A C{bipgw keys} command was given something it cannot use."""


@attrs.frozen
class Keys:
    """The install's root key and keystore, opened together."""

    root: RootKey
    store: KeyStore

    @classmethod
    def open(cls, config: Config, environ: Mapping[str, str] | None = None) -> Keys:
        """Load the root key (file or C{BIPGW_ROOT_KEY}) and open the keystore with it."""
        root = config.keys.load_root_key(environ)
        return cls(root, config.keys.open_keystore(root))


def kcv(info: KeyInfo, secret: Secret) -> str:
    """The check value of a keystore key, by the algorithm its entry implies."""
    if info.kind is KeyKind.TRANSPORT and info.meta.get("scheme") == TransportScheme.DES3_ECB:
        algorithm = _DES.get(len(secret))
    else:
        algorithm = _AES.get(len(secret))
    return "-" if algorithm is None else check_value(secret, algorithm)


def read_key_file(path: str | os.PathLike[str]) -> Secret:
    """A key from a text file of hex digits (white space and C{#} comment lines ignored).

    @raise KeyCommandError: if the file cannot be read or holds no key; the
        message never contains the file's text.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyCommandError(f"cannot read key file {name}: {e.strerror}") from None
    if len(data) > _MAX_KEY_FILE:
        raise KeyCommandError(f"key file {name} is larger than {_MAX_KEY_FILE} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyCommandError(f"key file {name} is not ASCII hex text") from None
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    try:
        return Secret.from_hex("".join(lines), what=f"key file {name}")
    except InvalidKeyError as e:
        raise KeyCommandError(str(e)) from None


def add_transport(
    keys: Keys,
    label: str,
    key_file: str | os.PathLike[str],
    *,
    scheme: str = TransportScheme.AES_KWP.value,
    replace: bool = False,
) -> tuple[KeyInfo, str]:
    """Store a vendor transport key read from C{key_file}; return its info and KCV.

    @param scheme: how the vendor wraps the secret columns (C{aes-kwp} or
        C{3des-ecb}); kept as the entry's metadata for the importer.
    """
    try:
        wrap = TransportScheme(scheme)
    except ValueError:
        known = ", ".join(s.value for s in TransportScheme)
        raise KeyCommandError(f"unknown transport scheme {scheme!r} (known: {known})") from None
    secret = read_key_file(key_file)
    sizes = _DES if wrap is TransportScheme.DES3_ECB else _AES
    if len(secret) not in sizes:
        allowed = ", ".join(str(n) for n in sizes)
        raise KeyCommandError(
            f"a {wrap.value} transport key is {allowed} bytes; {os.fspath(key_file)}"
            f" holds {len(secret)}"
        )
    info = keys.store.put(label, KeyKind.TRANSPORT, secret, {"scheme": wrap.value}, replace=replace)
    return info, kcv(info, secret)


def master_kind(name: str) -> KeyKind:
    """A master key kind from its name, with or without the C{master-} prefix."""
    full = name if name.startswith("master-") else f"master-{name}"
    if full not in MASTER_KINDS:
        raise KeyCommandError(
            f"unknown master key kind {name!r} (known: {', '.join(MASTER_KINDS)})"
        )
    return KeyKind(full)


def generate_master(
    keys: Keys, kind: str, label: str, *, length: int = 16, kvn: int = 1, replace: bool = False
) -> tuple[KeyInfo, str]:
    """Generate a random AES master key of C{kind}; return its info and KCV.

    Per-card keys are later diversified from it (docs/keys.md section 5);
    C{kvn} is recorded because one master key serves one key version.
    """
    key_kind = master_kind(kind)
    if length not in _AES:
        raise KeyCommandError(f"a master key is 16, 24 or 32 bytes, not {length}")
    if not 0 <= kvn <= 0xFF:
        raise KeyCommandError(f"a key version is 0 to 255, not {kvn}")
    secret = Secret.generate(length)
    meta: dict[str, MetaValue] = {"kvn": kvn, "algorithm": _AES[length].value}
    info = keys.store.put(label, key_kind, secret, meta, replace=replace)
    return info, kcv(info, secret)


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
            check = kcv(info, keys.store.get(label))
        except KeyManagementError:
            check = "(cannot open)"
        out.write(describe(info, check) + "\n")
    return len(labels)
