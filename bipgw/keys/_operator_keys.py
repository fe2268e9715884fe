# -*- test-case-name: tests.unit.keys.test_operator_keys,tests.unit.cli.test_keys -*-
"""The keys an operator puts into the keystore: vendor transport keys, master keys.

A card vendor sends its transport key as a file of hex digits; master keys,
from which per-card keys are diversified, are generated here.  Operators
handle keys by I{label} and I{check value} (KCV, the GlobalPlatform way of
confirming a key arrived intact without showing it), so each function
returns the entry's L{KeyInfo} and its KCV, never the bytes; a key file that
is not valid hex is reported by position, never by content.  C{bipgw keys}
and the demo both call these.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from bipgw.keys._keystore import KeyInfo, KeyKind, KeyStore, MetaValue
from bipgw.keys._secret import (
    InvalidKeyError,
    KeyAlgorithm,
    KeyManagementError,
    Secret,
    check_value,
)
from bipgw.keys._transport import TransportScheme

__all__ = [
    "MASTER_KINDS",
    "KeyInputError",
    "add_master_key",
    "add_transport_key",
    "generate_master_key",
    "key_check_value",
    "master_kind",
    "read_key_file",
    "read_operator_file",
    "retire_transport_key",
    "retired_since",
]

_MAX_KEY_FILE = 4096
_AES = {16: KeyAlgorithm.AES_128, 24: KeyAlgorithm.AES_192, 32: KeyAlgorithm.AES_256}
_DES = {16: KeyAlgorithm.DES3_2KEY, 24: KeyAlgorithm.DES3_3KEY}

#: The kinds C{generate-master} accepts, also without their C{master-} prefix.
MASTER_KINDS = tuple(k.value for k in KeyKind if k is not KeyKind.TRANSPORT)


class KeyInputError(KeyManagementError, ValueError):
    """A key file, scheme, kind, length or version that cannot be used."""


def key_check_value(info: KeyInfo, secret: Secret) -> str:
    """The check value of a keystore key, by the algorithm its entry implies."""
    if info.kind is KeyKind.TRANSPORT and info.meta.get("scheme") == TransportScheme.DES3_ECB:
        algorithm = _DES.get(len(secret))
    else:
        algorithm = _AES.get(len(secret))
    return "-" if algorithm is None else check_value(secret, algorithm)


def read_operator_file(
    path: str | os.PathLike[str], limit: int, what: str, error: Callable[[str], Exception]
) -> bytes:
    """The bytes of a file an operator named (a key, a password, a script), at most C{limit}.

    @param what: the file, as the messages name it (C{"key file k.hex"}).
    @param error: makes the exception to raise from a message: C{"cannot
        read WHAT: REASON"} or C{"WHAT is larger than LIMIT bytes"}; never
        the file's text.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{what} is larger than {limit} bytes")
    return data


def read_key_file(path: str | os.PathLike[str]) -> Secret:
    """A key from a text file of hex digits (white space and C{#} comment lines ignored).

    @raise KeyInputError: if the file cannot be read or holds no key; the
        message never contains the file's text.
    """
    name = os.fspath(path)
    data = read_operator_file(name, _MAX_KEY_FILE, f"key file {name}", KeyInputError)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyInputError(f"key file {name} is not ASCII hex text") from None
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    try:
        return Secret.from_hex("".join(lines), what=f"key file {name}")
    except InvalidKeyError as e:
        raise KeyInputError(str(e)) from None


def add_transport_key(
    keystore: KeyStore,
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
        raise KeyInputError(f"unknown transport scheme {scheme!r} (known: {known})") from None
    secret = read_key_file(key_file)
    sizes = _DES if wrap is TransportScheme.DES3_ECB else _AES
    if len(secret) not in sizes:
        allowed = ", ".join(str(n) for n in sizes)
        raise KeyInputError(
            f"a {wrap.value} transport key is {allowed} bytes; {os.fspath(key_file)}"
            f" holds {len(secret)}"
        )
    info = keystore.put(label, KeyKind.TRANSPORT, secret, {"scheme": wrap.value}, replace=replace)
    return info, key_check_value(info, secret)


#: The metadata entry that marks a retired transport key (epoch seconds).
RETIRED_AT = "retired_at"


def retired_since(info: KeyInfo) -> int | None:
    """When the key was retired (epoch seconds), or C{None} if it is in use."""
    value = info.meta.get(RETIRED_AT)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def retire_transport_key(keystore: KeyStore, label: str, *, at: float) -> tuple[KeyInfo, str]:
    """Retire the transport key C{label}: from now on a vendor file naming it
    is refused as a whole, the report saying it was retired (a vendor moved
    to a new key).  The entry stays, marked (metadata C{retired_at}), so the
    refusal can name it; C{add-transport --replace} puts a new key under the
    label.  Return its info and KCV.

    @raise KeyInputError: not a transport key, or already retired.
    """
    info = keystore.info(label)
    if info.kind is not KeyKind.TRANSPORT:
        raise KeyInputError(
            f"{label!r} is a {info.kind.value} key: only transport keys are retired this way"
            " (a master key still derives the keys of the cards personalised with it)"
        )
    if retired_since(info) is not None:
        raise KeyInputError(f"the transport key {label!r} is already retired")
    secret = keystore.get(label)
    meta: dict[str, MetaValue] = {**info.meta, RETIRED_AT: int(at)}
    retired = keystore.put(label, KeyKind.TRANSPORT, secret, meta, replace=True)
    return retired, key_check_value(retired, secret)


def master_kind(name: str) -> KeyKind:
    """A master key kind from its name, with or without the C{master-} prefix."""
    full = name if name.startswith("master-") else f"master-{name}"
    if full not in MASTER_KINDS:
        raise KeyInputError(f"unknown master key kind {name!r} (known: {', '.join(MASTER_KINDS)})")
    return KeyKind(full)


def generate_master_key(
    keystore: KeyStore,
    kind: str,
    label: str,
    *,
    length: int = 16,
    kvn: int = 1,
    kdf: int = 2,
    replace: bool = False,
) -> tuple[KeyInfo, str]:
    """Generate a random AES master key of C{kind}; return its info and KCV.

    Per-card keys are later diversified from it (docs/keys.md section 5):
    with C{kdf} 2 (the default) for every key version, the version being
    part of the derivation; with C{kdf} 1 for key version C{kvn} only.
    """
    return _put_master(keystore, kind, label, Secret.generate(_length(length)), kvn, kdf, replace)


def add_master_key(
    keystore: KeyStore,
    kind: str,
    label: str,
    key_file: str | os.PathLike[str],
    *,
    kvn: int = 1,
    kdf: int = 2,
    replace: bool = False,
) -> tuple[KeyInfo, str]:
    """Store a master key read from C{key_file} (hex), e.g. the one a card
    vendor personalised a batch with; return its info and KCV."""
    secret = read_key_file(key_file)
    if len(secret) not in _AES:
        raise KeyInputError(
            f"a master key is 16, 24 or 32 bytes; {os.fspath(key_file)} holds {len(secret)}"
        )
    return _put_master(keystore, kind, label, secret, kvn, kdf, replace)


def _length(length: int) -> int:
    if length not in _AES:
        raise KeyInputError(f"a master key is 16, 24 or 32 bytes, not {length}")
    return length


def _put_master(
    keystore: KeyStore, kind: str, label: str, secret: Secret, kvn: int, kdf: int, replace: bool
) -> tuple[KeyInfo, str]:
    key_kind = master_kind(kind)
    if not 0 <= kvn <= 0xFF:
        raise KeyInputError(f"a key version is 0 to 255, not {kvn}")
    if kdf not in (1, 2):
        raise KeyInputError(f"the key derivation is version 1 or 2, not {kdf}")
    meta: dict[str, MetaValue] = {"kvn": kvn, "algorithm": _AES[len(secret)].value, "kdf": kdf}
    info = keystore.put(label, key_kind, secret, meta, replace=replace)
    return info, key_check_value(info, secret)
