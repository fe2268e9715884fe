# -*- test-case-name: tests.unit.codec.test_scp03_kdf -*-
"""SCP03's cryptography: the data derivation scheme and the AES primitives.

Everything SCP03 derives - session keys, the card and host cryptograms, a
pseudo-random card challenge - comes from one function, L{derive}: the
NIST SP 800-108 KDF in counter mode with AES-CMAC as PRF, with the input
laid out as GP Card Specification Amendment D (v1.1.1 and v1.2) section
4.1.5 fixes it::

    label (11 x 00, derivation constant) || 00 || L (2 bytes, bits) || i || context

The order differs from SP 800-108's usual one (the counter sits after
C{L}), which is why a generic KBKDF call with default options does not fit
and why the tests compare L{derive} with C{cryptography}'s KBKDFCMAC given
that exact layout.

AES-CBC for C-DECRYPTION and R-ENCRYPTION starts from an ICV made by
encrypting the session's encryption counter (Amendment D 6.2.6/6.2.7); the
data is padded with C{80 00..} to a whole block every time (GP 2.3.1
B.2.3), so a padded field is never empty.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bipgw.codec.scp03._errors import Scp03Error

__all__ = [
    "BLOCK",
    "KEY_SIZES",
    "DerivationConstant",
    "cbc_decrypt",
    "cbc_encrypt",
    "command_icv",
    "derive",
    "full_cmac",
    "pad",
    "response_icv",
    "unpad",
]

BLOCK: Final = 16
"""The AES block size, and the size of the MAC chaining value."""

KEY_SIZES: Final = (16, 24, 32)
"""AES-128, -192 and -256 static and session keys."""

_LENGTHS_BITS: Final = (64, 128, 192, 256)


class DerivationConstant(IntEnum):
    """The derivation constants of Amendment D Table 4-1."""

    CARD_CRYPTOGRAM = 0x00
    HOST_CRYPTOGRAM = 0x01
    CARD_CHALLENGE = 0x02
    S_ENC = 0x04
    S_MAC = 0x06
    S_RMAC = 0x07


def _check_key(key: bytes, field: str) -> None:
    if len(key) not in KEY_SIZES:
        raise Scp03Error(f"an AES key is 16, 24 or 32 bytes, got {len(key)}", field=field)


def full_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B) of C{data}, all 16 bytes."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def derive(key: bytes, constant: int, context: bytes, bits: int) -> bytes:
    """The SCP03 data derivation scheme (Amendment D 4.1.5).

    @param key: the PRF key (a static key, or S-MAC for cryptograms).
    @param constant: the derivation constant (L{DerivationConstant}).
    @param context: the KDF context (challenges, or counter and AID).
    @param bits: the length of the derived data: 64, 128, 192 or 256.
    @raise Scp03Error: a key or length the scheme does not define.
    """
    _check_key(key, "key")
    if bits not in _LENGTHS_BITS:
        raise Scp03Error(f"derived length must be 64, 128, 192 or 256 bits, got {bits}", field="L")
    if not 0 <= constant <= 0xFF:
        raise Scp03Error(f"derivation constant must be one byte, got {constant}", field="constant")
    fixed = bytes(11) + bytes((constant,)) + b"\x00" + bits.to_bytes(2, "big")
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += full_cmac(key, fixed + bytes((counter,)) + context)
        counter += 1
    return out[: bits // 8]


def pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2 to a whole AES block: C{80}, then zeros.

    Always adds at least the C{80} byte, as GP 2.3.1 B.2.3 requires.
    """
    return data + b"\x80" + bytes(-(len(data) + 1) % BLOCK)


def unpad(data: bytes, field: str) -> bytes:
    """Remove L{pad}'s padding, refusing anything it could not have made.

    @raise Scp03Error: no C{80} marker in the last block, or non-zero bytes
        after it.
    """
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        raise Scp03Error("padding is not 80 00..00 within the last block", field=field)
    return stripped[:-1]


def _ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def command_icv(s_enc: bytes, counter: int) -> bytes:
    """The ICV for C-DECRYPTION: AES(S-ENC, counter as a 16-byte block)."""
    return _ecb(s_enc, counter.to_bytes(BLOCK, "big"))


def response_icv(s_enc: bytes, counter: int) -> bytes:
    """The ICV for R-ENCRYPTION: as L{command_icv} with the first byte C{80}."""
    return _ecb(s_enc, b"\x80" + counter.to_bytes(BLOCK, "big")[1:])


def cbc_encrypt(key: bytes, icv: bytes, data: bytes) -> bytes:
    """AES-CBC over whole blocks (C{data} is already padded)."""
    enc = Cipher(algorithms.AES(key), modes.CBC(icv)).encryptor()
    return enc.update(data) + enc.finalize()


def cbc_decrypt(key: bytes, icv: bytes, data: bytes, field: str) -> bytes:
    """AES-CBC decryption of whole blocks.

    @raise Scp03Error: C{data} is empty or not a whole number of blocks.
    """
    if not data or len(data) % BLOCK:
        raise Scp03Error(
            f"{len(data)} bytes is not a whole, non-zero number of 16-byte blocks", field=field
        )
    dec = Cipher(algorithms.AES(key), modes.CBC(icv)).decryptor()
    return dec.update(data) + dec.finalize()
