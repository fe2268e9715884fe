# -*- test-case-name: tests.unit.keys.test_secret -*-
"""Key material that cannot leak by accident, and the key-management errors.

Every key bipgw holds in memory lives in a L{Secret}.  The point is not to
defend against an attacker inside the process (Python cannot wipe memory) but
against the everyday leaks: a key in a log line, in an exception message, in
a C{repr} shown by a debugger or a test failure, in a pickle written to a
cache.  The only way to the bytes is an explicit, greppable
L{Secret.reveal} call.

The error family also lives here, because every other module of the package
raises it: messages name the key I{label} (an operator's name for the key)
and never its bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import StrEnum
from typing import Any, NoReturn, final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bipgw.errors import BipGwError

MIN_SECRET_LENGTH = 1
MAX_SECRET_LENGTH = 1024


class KeyManagementError(BipGwError):
    """Root of the errors raised by L{bipgw.keys}.

    @ivar label: the label of the key concerned, when there is one.  Labels
        are names, never key material, so they are safe in logs.
    """

    def __init__(self, message: str, *, label: str | None = None) -> None:
        self.message = message
        self.label = label
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (a worker reports to the service);
        # keep the keyword-only label through pickling.
        return (_rebuild_error, (type(self), self.message, self.label))


def _rebuild_error(
    cls: type[KeyManagementError], message: str, label: str | None
) -> KeyManagementError:
    return cls(message, label=label)


class InvalidKeyError(KeyManagementError, ValueError):
    """Key material of the wrong size or shape for what it is used for."""


class InvalidLabelError(KeyManagementError, ValueError):
    """A key label, kind or metadata entry that is empty, too long or malformed."""


class UnknownKeyError(KeyManagementError, LookupError):
    """No key is stored under the requested label."""


class DuplicateKeyError(KeyManagementError):
    """A key already exists under the label and replacing it was not asked for."""


class IntegrityError(KeyManagementError):
    """Sealed data failed authentication: it was modified, moved or truncated.

    Authenticated encryption cannot tell a flipped bit from a wrong key; the
    message says what was checked, so the operator knows where to look.
    """


class WrongRootKeyError(IntegrityError):
    """The data was sealed under a different gateway root key than the loaded one."""


class RootKeyError(KeyManagementError):
    """The gateway root key could not be loaded or saved."""


class InsecureRootKeyFileError(RootKeyError):
    """The root key file is readable or writable by users other than its owner."""


class KeystoreFormatError(KeyManagementError, ValueError):
    """The keystore file is not a keystore this version of bipgw can read."""


class KeystoreNotFoundError(KeyManagementError):
    """No keystore file exists at the given path."""


class KeystoreWriteError(KeyManagementError):
    """The keystore file could not be rewritten; the previous file is intact."""


class InvalidIccidError(KeyManagementError, ValueError):
    """An ICCID that is not 18 to 20 decimal digits (after removing F filler)."""


class TransportError(KeyManagementError):
    """A secret column of a card-vendor output file could not be unwrapped."""


class TransportFormatError(TransportError, ValueError):
    """The transport-wrapped text is not well formed (hex, length)."""


class TransportKeyMismatchError(TransportError):
    """The transport key is not the one the value was wrapped under."""


class KeyAlgorithm(StrEnum):
    """The symmetric algorithms card keys are used with, and their key sizes.

    The algorithm decides how long a diversified key is, whether DES parity
    bits are set, and which key check value convention applies.
    """

    AES_128 = "aes-128"
    AES_192 = "aes-192"
    AES_256 = "aes-256"
    DES3_2KEY = "3des-2key"
    DES3_3KEY = "3des-3key"

    @property
    def key_length(self) -> int:
        """The key size in bytes."""
        return _KEY_LENGTHS[self]

    @property
    def is_des(self) -> bool:
        """C{True} for the Triple-DES variants (parity bits, DES check value)."""
        return self in (KeyAlgorithm.DES3_2KEY, KeyAlgorithm.DES3_3KEY)


_KEY_LENGTHS = {
    KeyAlgorithm.AES_128: 16,
    KeyAlgorithm.AES_192: 24,
    KeyAlgorithm.AES_256: 32,
    KeyAlgorithm.DES3_2KEY: 16,
    KeyAlgorithm.DES3_3KEY: 24,
}


@final
class Secret:
    """Immutable key bytes whose text forms never show the bytes.

    C{repr}, C{str}, C{format} and f-strings all give the same redacted text,
    e.g. C{<Secret 16 bytes aes-kcv=504A77>}: the length and, for 16, 24 or
    32 byte values, the GlobalPlatform AES key check value (the first three
    bytes of AES-ECB over sixteen C{01} bytes).  A check value is the
    standard, non-revealing way operators compare keys; it lets a log line
    say I{which} key was used.  It is labelled C{aes-kcv} because a Secret
    does not know its algorithm: for a Triple-DES key use L{check_value}.

    Equality runs in constant time.  A Secret is hashable, so it can sit in
    a frozen C{attrs} value; it is not an C{attrs} class itself, so
    C{attrs.asdict} of a containing value keeps the Secret rather than
    exposing its bytes.  Pickling raises C{TypeError}: a key written to a
    pickle is a key written to disk in clear.  Copying returns the same
    (immutable) object.

    Python cannot wipe memory, so this does not protect against code running
    inside the process; it protects against accidents.
    """

    __slots__ = ("_value",)
    _value: bytes

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        """
        @param value: the key bytes (copied).
        @raise TypeError: for C{str} or other non-bytes values: a hex string
            passed where bytes are expected is a classic mistake, use
            L{Secret.from_hex}.
        @raise InvalidKeyError: if empty or longer than 1024 bytes.
        """
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"Secret needs bytes, not {type(value).__name__}")
        data = bytes(value)
        if not MIN_SECRET_LENGTH <= len(data) <= MAX_SECRET_LENGTH:
            raise InvalidKeyError(
                f"key material must be {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} bytes,"
                f" got {len(data)}"
            )
        object.__setattr__(self, "_value", data)

    @classmethod
    def generate(cls, length: int) -> Secret:
        """A new random key of C{length} bytes from the operating system's CSPRNG."""
        if not MIN_SECRET_LENGTH <= length <= MAX_SECRET_LENGTH:
            raise InvalidKeyError(f"cannot generate a key of {length} bytes")
        return cls(os.urandom(length))

    @classmethod
    def from_hex(cls, text: str, *, what: str = "key") -> Secret:
        """Parse hex text (as operators type keys), never echoing it in errors.

        Spaces inside the text are ignored (keys are often written in groups).

        @param what: names the value in error messages, e.g. C{"KIc for TK1"}.
        @raise InvalidKeyError: if the text is not an even number of hex digits;
            the message gives the position of the first bad character only.
        """
        compact = "".join(text.split())
        for position, char in enumerate(compact):
            if char not in _HEX_DIGITS:
                raise InvalidKeyError(f"{what}: character {position + 1} is not a hex digit")
        if not compact or len(compact) % 2:
            raise InvalidKeyError(f"{what}: needs an even, non-zero number of hex digits")
        return cls(bytes.fromhex(compact))

    def reveal(self) -> bytes:
        """The key bytes.  Every call site is a place a key can leak: keep them few."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return not hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        # Hash a digest, not the bytes: even with PYTHONHASHSEED=0 the value
        # says nothing about the key.
        return hash((Secret, hashlib.sha256(self._value).digest()))

    def __repr__(self) -> str:
        text = f"<Secret {len(self._value)} bytes"
        if len(self._value) in (16, 24, 32):
            text += f" aes-kcv={_aes_kcv(self._value)}"
        return text + ">"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        # Ignore the spec: "{:x}" or "{:s}" must not become a way to the bytes.
        return repr(self)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a Secret cannot be pickled: seal it with bipgw.keys.seal() to store it")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled: seal it with bipgw.keys.seal() to store it")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a Secret has no state to export")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _aes_kcv(key: bytes) -> str:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (encryptor.update(b"\x01" * 16) + encryptor.finalize())[:3].hex().upper()


def _des_kcv(key: bytes) -> str:
    encryptor = Cipher(TripleDES(triple_des_key(key)), modes.ECB()).encryptor()
    return (encryptor.update(bytes(8)) + encryptor.finalize())[:3].hex().upper()


def triple_des_key(key: bytes) -> bytes:
    """A 16-byte 2-key 3DES key as the equivalent 24-byte K1|K2|K1 key.

    C{cryptography} deprecates 16-byte TripleDES keys; the expansion is the
    definition of 2-key 3DES, so the result is the same cipher.
    """
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise InvalidKeyError(f"a Triple-DES key is 16 or 24 bytes, got {len(key)}")


def check_value(secret: Secret, algorithm: KeyAlgorithm) -> str:
    """The GlobalPlatform key check value (KCV) of a key, as 6 upper-case hex digits.

    GP Card Specification v2.3 (B.6): for DES keys, the first three bytes of
    3DES-ECB over eight C{00} bytes; for AES keys, the first three bytes of
    AES-ECB over sixteen C{01} bytes.  Vendor files and PUT KEY commands use
    these to confirm a key arrived intact without showing it.

    @raise InvalidKeyError: if the key's length does not fit C{algorithm}.
    """
    value = secret.reveal()
    if len(value) != algorithm.key_length:
        raise InvalidKeyError(
            f"a {algorithm.value} key is {algorithm.key_length} bytes, got {len(value)}"
        )
    return _des_kcv(value) if algorithm.is_des else _aes_kcv(value)
