"""Cipher and checksum primitives for SCP80, on top of C{cryptography}.

Every OTA packet is small, so building cipher contexts costs more than
using them.  They are built once per key and cached (C{lru_cache} keyed on
the key bytes; nothing cached shows a key in its repr): see L{_Keyed} for
how one CBC context serves every packet.  AES-CMAC copies a cached, keyed
template.

Facts (PROTOCOLS.md 1.5-1.6, checked against the public vectors): IV is all
zero; DES/3DES CC is the last 8-byte block of full (3)DES-CBC over the input
zero-padded to 8 bytes (not a retail MAC); AES CC is AES-CMAC truncated to
8 bytes; RC is CRC-32 (zlib) or CRC-16 (ISO/IEC 13239, X.25) big-endian.
"""

from __future__ import annotations

import threading
import zlib
from functools import lru_cache

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bipgw.codec.ota._errors import CipheringError, SecurityError
from bipgw.codec.ota._spi import KicAlgorithm, KidAlgorithm

try:  # cryptography >= 43 keeps 3DES here; the old name warns and will go.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import (
        TripleDES,
    )

__all__ = [
    "block_size",
    "checksum",
    "checksum_length",
    "decrypt",
    "encrypt",
]

_CACHE_KEYS = 2048

# Key sizes each algorithm accepts, and the family that builds its cipher.
_CIPHER_KEYS: dict[KicAlgorithm, tuple[int, ...]] = {
    KicAlgorithm.DES_CBC: (8,),
    KicAlgorithm.DES_ECB: (8,),
    KicAlgorithm.TDES_2KEY: (16,),
    KicAlgorithm.TDES_3KEY: (24,),
    KicAlgorithm.AES_CBC: (16, 24, 32),
}
_MAC_KEYS: dict[KidAlgorithm, tuple[int, ...]] = {
    KidAlgorithm.DES_CBC: (8,),
    KidAlgorithm.TDES_2KEY: (16,),
    KidAlgorithm.TDES_3KEY: (24,),
    KidAlgorithm.AES_CMAC: (16, 24, 32),
}
_CHECKSUM_LENGTH = {
    KidAlgorithm.DES_CBC: 8,
    KidAlgorithm.TDES_2KEY: 8,
    KidAlgorithm.TDES_3KEY: 8,
    KidAlgorithm.AES_CMAC: 8,
    KidAlgorithm.CRC16: 2,
    KidAlgorithm.CRC32: 4,
}


def _refuse(what: str, name: str, role: str) -> SecurityError:
    return SecurityError(f"{what} {name} cannot be applied by this codec", field=role)


def _check_key(
    key: bytes, sizes: tuple[int, ...], algorithm: KicAlgorithm | KidAlgorithm, role: str
) -> None:
    if len(key) not in sizes:
        wanted = " or ".join(str(s) for s in sizes)
        raise SecurityError(
            f"{algorithm.name} needs a {wanted}-byte key, the key set holds {len(key)} bytes",
            field=role,
        )


def block_size(algorithm: KicAlgorithm) -> int:
    """The cipher block size padding must reach (8 for DES/3DES, 16 for AES).

    @raise SecurityError: implicit or proprietary ciphering.
    """
    if algorithm == KicAlgorithm.AES_CBC:
        return 16
    if algorithm in _CIPHER_KEYS:
        return 8
    raise _refuse("ciphering algorithm", algorithm.name, "KIc")


def checksum_length(algorithm: KidAlgorithm) -> int:
    """Bytes of RC/CC the KID algorithm produces.

    @raise SecurityError: implicit or proprietary integrity algorithm.
    """
    length = _CHECKSUM_LENGTH.get(algorithm)
    if length is None:
        raise _refuse("integrity algorithm", algorithm.name, "KID")
    return length


class _Keyed:
    """Long-lived cipher contexts of one key.

    ECB keeps no state across whole blocks, so one encryptor and one
    decryptor serve every packet.  A CBC encryptor chains from its last
    output block; feeding it (first block XOR that block) restarts the chain
    at IV=0, so one CBC context serves every packet too, without the cost of
    a new one.  A lock keeps each use whole if threads share a key.  Nothing
    here shows the key in a repr.
    """

    __slots__ = ("_cbc", "_dec", "_enc", "_last", "_lock", "size")

    def __init__(self, aes: bool, key: bytes) -> None:
        algorithm = _block_cipher(aes, key)
        self.size = 16 if aes else 8
        self._enc = Cipher(algorithm, modes.ECB()).encryptor()
        self._dec = Cipher(algorithm, modes.ECB()).decryptor()
        self._cbc = Cipher(algorithm, modes.CBC(bytes(self.size))).encryptor()
        self._last = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<cipher contexts, {self.size}-byte blocks>"

    def encrypt_ecb(self, data: bytes) -> bytes:
        """ECB over whole blocks."""
        with self._lock:
            return self._enc.update(data)

    def decrypt_ecb(self, data: bytes) -> bytes:
        """ECB over whole blocks."""
        with self._lock:
            return self._dec.update(data)

    def encrypt_cbc(self, data: bytes) -> bytes:
        """CBC with IV=0 over whole blocks."""
        size = self.size
        if not data:
            return b""
        with self._lock:
            if self._last:
                first = int.from_bytes(data[:size], "big") ^ self._last
                data = first.to_bytes(size, "big") + data[size:]
            out = self._cbc.update(data)
            self._last = int.from_bytes(out[-size:], "big")
        return out

    def decrypt_cbc(self, data: bytes) -> bytes:
        """CBC with IV=0 over whole blocks: ECB, then XOR with the shifted ciphertext."""
        plain = self.decrypt_ecb(data)
        n = len(data)
        chain = int.from_bytes(data[: n - self.size], "big")
        return (int.from_bytes(plain, "big") ^ chain).to_bytes(n, "big")


def _block_cipher(aes: bool, key: bytes) -> algorithms.AES | TripleDES:
    if aes:
        return algorithms.AES(key)
    # DES is 3DES with K1=K2=K3 and two-key 3DES is K1,K2,K1; cryptography
    # deprecates the short forms, so hand it the 24-byte equivalent.
    if len(key) == 8:
        key = key * 3
    elif len(key) == 16:
        key += key[:8]
    return TripleDES(key)


@lru_cache(maxsize=_CACHE_KEYS)
def _keyed(aes: bool, key: bytes) -> _Keyed:
    return _Keyed(aes, key)


@lru_cache(maxsize=_CACHE_KEYS)
def _cmac(key: bytes) -> cmac.CMAC:
    return cmac.CMAC(algorithms.AES(key))


def _check_blocks(data: bytes, size: int) -> None:
    # The contexts are shared: a partial block would stay buffered in them
    # and corrupt the next packet, so refuse it before it gets there.
    if len(data) % size:
        raise CipheringError(
            f"{len(data)} bytes is not a whole number of {size}-byte blocks", field="secured data"
        )


def _cipher_for(algorithm: KicAlgorithm, key: bytes, data: bytes) -> _Keyed:
    """The keyed cipher for C{algorithm}, once the key and C{data}'s length are checked."""
    sizes = _CIPHER_KEYS.get(algorithm)
    if sizes is None:
        raise _refuse("ciphering algorithm", algorithm.name, "KIc")
    _check_key(key, sizes, algorithm, "KIc")
    keyed = _keyed(algorithm is KicAlgorithm.AES_CBC, key)
    _check_blocks(data, keyed.size)
    return keyed


def encrypt(algorithm: KicAlgorithm, key: bytes, data: bytes) -> bytes:
    """Cipher C{data} (already padded to the block size) with IV=0.

    @raise SecurityError: the algorithm is not applicable or the key size is wrong.
    """
    keyed = _cipher_for(algorithm, key, data)
    if algorithm is KicAlgorithm.DES_ECB:
        return keyed.encrypt_ecb(data)
    return keyed.encrypt_cbc(data)


def decrypt(algorithm: KicAlgorithm, key: bytes, data: bytes) -> bytes:
    """Decipher C{data} (a whole number of blocks) with IV=0.

    @raise SecurityError: the algorithm is not applicable or the key size is wrong.
    """
    keyed = _cipher_for(algorithm, key, data)
    if algorithm is KicAlgorithm.DES_ECB or not data:
        return keyed.decrypt_ecb(data)
    return keyed.decrypt_cbc(data)


def _crc16(data: bytes) -> int:
    crc = 0xFFFF
    table = _CRC16_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def _crc16_table() -> tuple[int, ...]:
    # ISO/IEC 13239 (X.25): polynomial x^16 + x^12 + x^5 + 1, reflected (0x8408).
    rows = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        rows.append(crc)
    return tuple(rows)


_CRC16_TABLE = _crc16_table()


def checksum(algorithm: KidAlgorithm, key: bytes, data: bytes) -> bytes:
    """The RC or CC of C{data} (the caller has assembled the input).

    @raise SecurityError: the algorithm is not applicable or the key size is wrong.
    """
    if algorithm == KidAlgorithm.CRC32:
        return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")
    if algorithm == KidAlgorithm.CRC16:
        return _crc16(data).to_bytes(2, "big")
    sizes = _MAC_KEYS.get(algorithm)
    if sizes is None:
        raise _refuse("integrity algorithm", algorithm.name, "KID")
    _check_key(key, sizes, algorithm, "KID")
    if algorithm == KidAlgorithm.AES_CMAC:
        mac = _cmac(key).copy()
        mac.update(data)
        return mac.finalize()[:8]
    pad = -len(data) % 8
    if pad:
        data += bytes(pad)
    return _keyed(False, key).encrypt_cbc(data)[-8:]
