# -*- test-case-name: tests.unit.codec.test_put_key -*-
"""PUT KEY (GP 2.3 11.8) for an SCP03 secure channel: the command and its answer.

The command (C{80 D8}, wrapped by the secure channel):

  - P1: the key version being replaced (C{00}: a new key set);
  - P2: the first key identifier, b8 set when several keys follow;
  - data: the new key version, then for each key C{type, L, key component
    block, L(KCV), KCV}; Le C{00}.

Key types (GP 2.3 Table 11-16): C{80} DES (3DES), C{88} AES, C{85} the
SCP81 TLS pre-shared key.  The key component block is the key encrypted
under the key-encryption key of the channel, which for SCP03 is the card's
static DEK of the key set the session was opened with (Amendment D 6.2.2:
SCP03 has no session DEK), with AES-CBC and a zero IV.  A key whose length
is not a multiple of 16 is zero-padded and its block starts with its length
in clear; AES and PSK keys always carry that length byte, as
GlobalPlatformPro writes them (a 16-byte key: C{L} = 17, C{10 ||
E(key)}).  The check value is the GP one (2.3 B.6): AES-ECB of sixteen
C{01} for AES and PSK keys, 3DES-ECB of eight C{00} for DES keys, 3 bytes.

The card answers the new key version then each key's check value; the
caller compares them with its own (L{check_put_key_answer}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bipgw.codec.apdu import CommandApdu
from bipgw.codec.scp03._errors import Scp03Error

try:  # cryptography >= 43 keeps 3DES here
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

__all__ = [
    "INS_PUT_KEY",
    "KEY_TYPE_AES",
    "KEY_TYPE_DES",
    "KEY_TYPE_PSK",
    "NewKey",
    "PutKeyError",
    "check_put_key_answer",
    "key_check_value",
    "put_key_command",
]

INS_PUT_KEY: Final = 0xD8
KEY_TYPE_DES: Final = 0x80
KEY_TYPE_AES: Final = 0x88
KEY_TYPE_PSK: Final = 0x85
_TYPES: Final = frozenset({KEY_TYPE_DES, KEY_TYPE_AES, KEY_TYPE_PSK})


class PutKeyError(Scp03Error):
    """A PUT KEY that cannot be built, or an answer that does not confirm it."""


@attrs.frozen
class NewKey:
    """One key of a PUT KEY: its GP key type and value (hidden from repr)."""

    key_type: int
    value: bytes = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        if self.key_type not in _TYPES:
            raise PutKeyError(f"key type {self.key_type:02X} is not DES, AES or PSK")
        sizes = (16, 24) if self.key_type == KEY_TYPE_DES else (16, 24, 32)
        if len(self.value) not in sizes:
            raise PutKeyError(
                f"a key of type {self.key_type:02X} is {' or '.join(map(str, sizes))} bytes,"
                f" not {len(self.value)}"
            )


def key_check_value(key_type: int, value: bytes) -> bytes:
    """The GP key check value (3 bytes) of a key of C{key_type}."""
    if key_type == KEY_TYPE_DES:
        full = value + value[:8] if len(value) == 16 else value
        enc = Cipher(TripleDES(full), modes.ECB()).encryptor()
        return (enc.update(b"\x00" * 8) + enc.finalize())[:3]
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (enc.update(b"\x01" * 16) + enc.finalize())[:3]


def _component(dek: bytes, key: NewKey) -> bytes:
    prefix = key.key_type != KEY_TYPE_DES or len(key.value) % 16 != 0
    padded = key.value + b"\x00" * (-len(key.value) % 16)
    enc = Cipher(algorithms.AES(dek), modes.CBC(b"\x00" * 16)).encryptor()
    block = enc.update(padded) + enc.finalize()
    return (bytes((len(key.value),)) + block) if prefix else block


def put_key_command(
    new_kvn: int,
    keys: Sequence[NewKey],
    dek: bytes,
    *,
    old_kvn: int = 0,
    first_kid: int = 1,
) -> CommandApdu:
    """The plain PUT KEY command putting C{keys} under C{new_kvn}.

    @param dek: the static DEK (16, 24 or 32 bytes) of the SCP03 key set
        the channel runs on.
    @param old_kvn: the key version replaced (C{0}: add a new set).
    @raise PutKeyError: a key version, identifier or DEK out of range.
    """
    if not 1 <= new_kvn <= 0x7F or not 0 <= old_kvn <= 0x7F:
        raise PutKeyError(f"key versions are 1 to 7F (new {new_kvn}, old {old_kvn})")
    if not 1 <= first_kid <= 0x7F:
        raise PutKeyError(f"a key identifier is 1 to 7F, not {first_kid}")
    if not keys:
        raise PutKeyError("PUT KEY needs at least one key")
    if len(dek) not in (16, 24, 32):
        raise PutKeyError(f"the DEK is an AES key of 16, 24 or 32 bytes, not {len(dek)}")
    data = bytearray((new_kvn,))
    for key in keys:
        block = _component(dek, key)
        data += bytes((key.key_type, len(block))) + block
        data += b"\x03" + key_check_value(key.key_type, key.value)
    p2 = first_kid | (0x80 if len(keys) > 1 else 0x00)
    return CommandApdu(0x80, INS_PUT_KEY, old_kvn, p2, bytes(data), le=0x100)


def check_put_key_answer(answer: bytes, sw: int, new_kvn: int, keys: Sequence[NewKey]) -> None:
    """Check a card's answer to L{put_key_command}: C{9000}, the new key
    version, and each key's check value.

    @raise PutKeyError: naming what differs (status word, version, which
        key's KCV); never a key or a check value.
    """
    if sw != 0x9000:
        raise PutKeyError(f"the card refused PUT KEY: status {sw:04X}")
    expected = bytes((new_kvn,)) + b"".join(key_check_value(k.key_type, k.value) for k in keys)
    if len(answer) != len(expected):
        raise PutKeyError(
            f"the card's PUT KEY answer has {len(answer)} bytes, {len(expected)} expected"
        )
    if answer[0] != new_kvn:
        raise PutKeyError(f"the card answered key version {answer[0]:02X}, not {new_kvn:02X}")
    for index in range(len(keys)):
        at = 1 + 3 * index
        if answer[at : at + 3] != expected[at : at + 3]:
            raise PutKeyError(f"the check value of key {index + 1} does not match")
