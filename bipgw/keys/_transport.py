# -*- test-case-name: tests.unit.keys.test_transport -*-
"""Secret columns of card-vendor output files, wrapped under a transport key.

A card vendor ships each production batch's keys (KIc, KID, KIK, PSK...) in
an output file whose secret columns are encrypted under a I{transport key}
exchanged out of band; the file's C{Transport_key} header names it.  The
gateway unwraps each value on import and immediately re-seals it under its
own root key.

Two schemes, chosen per transport key (record it in the keystore entry's
metadata as C{"scheme"}):

  - C{aes-kwp} (the default, what the simulated fleet writes): AES key wrap
    with padding, RFC 5649, under an AES transport key of 16, 24 or 32 bytes.
    It has an integrity check, so a wrong transport key is detected.
  - C{3des-ecb} (legacy vendors): Triple-DES in ECB mode under a 16 or 24
    byte DES key, over values that are a multiple of 8 bytes, without
    padding.  ECB has no integrity check: a wrong key yields garbage, not
    an error, so compare the result's check value (L{check_value}) with the
    vendor's KCV column when the file has one.

Either way the column is the ciphertext in hex (upper case when written,
either case when read).
"""

from __future__ import annotations

from enum import StrEnum

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from bipgw.keys._secret import (
    MAX_SECRET_LENGTH,
    InvalidKeyError,
    Secret,
    TransportFormatError,
    TransportKeyMismatchError,
    triple_des_key,
)

#: Longest hex text accepted for one wrapped value (the largest Secret, wrapped).
MAX_WRAPPED_HEX = 2 * (MAX_SECRET_LENGTH + 16)


class TransportScheme(StrEnum):
    """How a vendor transport key protects secret columns."""

    AES_KWP = "aes-kwp"
    DES3_ECB = "3des-ecb"


#: The scheme bipgw and the simulated fleet use unless told otherwise.
DEFAULT_TRANSPORT_SCHEME = TransportScheme.AES_KWP


def _check_transport_key(transport_key: Secret, scheme: TransportScheme) -> bytes:
    if not isinstance(transport_key, Secret):
        raise TypeError(f"a transport key is a Secret, not {type(transport_key).__name__}")
    key = transport_key.reveal()
    if scheme is TransportScheme.AES_KWP and len(key) not in (16, 24, 32):
        raise InvalidKeyError(f"an aes-kwp transport key is 16, 24 or 32 bytes, got {len(key)}")
    if scheme is TransportScheme.DES3_ECB and len(key) not in (16, 24):
        raise InvalidKeyError(f"a 3des-ecb transport key is 16 or 24 bytes, got {len(key)}")
    return key


def _scheme(scheme: TransportScheme | str) -> TransportScheme:
    try:
        return TransportScheme(scheme)
    except ValueError:
        known = ", ".join(s.value for s in TransportScheme)
        raise TransportFormatError(
            f"unknown transport scheme {scheme!r}; known schemes: {known}"
        ) from None


def _des3_ecb(key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(TripleDES(triple_des_key(key)), modes.ECB())
    context = cipher.encryptor() if encrypt else cipher.decryptor()
    return context.update(data) + context.finalize()


def wrap_for_transport(
    transport_key: Secret,
    plaintext: Secret | bytes,
    scheme: TransportScheme | str = DEFAULT_TRANSPORT_SCHEME,
) -> str:
    """Wrap a key for a vendor output file column: upper-case hex.

    @raise InvalidKeyError: if the transport key does not fit C{scheme}.
    @raise TransportFormatError: for C{3des-ecb}, if the value is not a
        multiple of 8 bytes.
    """
    chosen = _scheme(scheme)
    key = _check_transport_key(transport_key, chosen)
    value = (plaintext if isinstance(plaintext, Secret) else Secret(plaintext)).reveal()
    if chosen is TransportScheme.AES_KWP:
        wrapped = aes_key_wrap_with_padding(key, value)
    else:
        if len(value) % 8:
            raise TransportFormatError(
                f"3des-ecb transport wraps multiples of 8 bytes; the value is {len(value)}"
            )
        wrapped = _des3_ecb(key, value, encrypt=True)
    return wrapped.hex().upper()


def unwrap_from_transport(
    transport_key: Secret,
    hex_text: str,
    scheme: TransportScheme | str = DEFAULT_TRANSPORT_SCHEME,
) -> Secret:
    """Unwrap a secret column of a vendor output file.

    Surrounding white space is ignored; the hex may be in either case.
    Error messages describe the text (its length, the position of a bad
    character) but never quote it.

    @raise TransportFormatError: if the text is not hex of a possible length.
    @raise TransportKeyMismatchError: for C{aes-kwp}, if the integrity check
        fails: the transport key is not the one the value was wrapped under
        (or the value was damaged).
    """
    chosen = _scheme(scheme)
    key = _check_transport_key(transport_key, chosen)
    data = _parse_hex(hex_text)
    if chosen is TransportScheme.AES_KWP:
        if len(data) < 16 or len(data) % 8:
            raise TransportFormatError(
                f"an aes-kwp value is a multiple of 8 bytes, at least 16; got {len(data)}"
            )
        try:
            return Secret(aes_key_unwrap_with_padding(key, data))
        except InvalidUnwrap:
            raise TransportKeyMismatchError(
                "the transport key does not match this value (RFC 5649 integrity check"
                " failed): it was wrapped under another key, or damaged in transit"
            ) from None
    if len(data) % 8:
        raise TransportFormatError(f"a 3des-ecb value is a multiple of 8 bytes; got {len(data)}")
    return Secret(_des3_ecb(key, data, encrypt=False))


class TransportUnwrapper:
    """L{unwrap_from_transport} for many values under one transport key.

    The key and scheme are checked once, and hex text takes a fast path
    (C{bytes.fromhex}) that falls back to the careful, position-naming
    parser only when it fails; a vendor file of a million cards has four
    million values.  Results and errors are exactly L{unwrap_from_transport}'s.
    (The RFC 5649 unwrap itself is C{cryptography}'s Rust code: 0.8 us a
    value with its key schedule, measured; nothing to cache there.)
    """

    def __init__(
        self, transport_key: Secret, scheme: TransportScheme | str = DEFAULT_TRANSPORT_SCHEME
    ) -> None:
        self._scheme = _scheme(scheme)
        self._key = _check_transport_key(transport_key, self._scheme)
        self._des = (
            Cipher(TripleDES(triple_des_key(self._key)), modes.ECB())
            if self._scheme is TransportScheme.DES3_ECB
            else None
        )

    def unwrap(self, hex_text: str) -> Secret:
        """See L{unwrap_from_transport}."""
        return Secret(self.unwrap_bytes(hex_text))

    def unwrap_bytes(self, hex_text: str) -> bytes:
        """L{unwrap}'s key as bytes, for a caller that seals it at once (the bulk import)."""
        data = _fast_hex(hex_text)
        if data is None:
            data = _parse_hex(hex_text)
        return self.unwrap_data(data)

    def unwrap_data(self, data: bytes) -> bytes:
        """L{unwrap_bytes} for a value whose hex text is already decoded."""
        if self._des is None:
            if len(data) < 16 or len(data) % 8:
                raise TransportFormatError(
                    f"an aes-kwp value is a multiple of 8 bytes, at least 16; got {len(data)}"
                )
            try:
                return aes_key_unwrap_with_padding(self._key, data)
            except InvalidUnwrap:
                raise TransportKeyMismatchError(
                    "the transport key does not match this value (RFC 5649 integrity check"
                    " failed): it was wrapped under another key, or damaged in transit"
                ) from None
        if len(data) % 8:
            raise TransportFormatError(
                f"a 3des-ecb value is a multiple of 8 bytes; got {len(data)}"
            )
        context = self._des.decryptor()
        return context.update(data) + context.finalize()


def _fast_hex(hex_text: object) -> bytes | None:
    """Plain hex text's bytes, or C{None} to let L{_parse_hex} explain."""
    if not isinstance(hex_text, str) or len(hex_text) > MAX_WRAPPED_HEX:
        return None
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return None
    # fromhex skips white space between bytes: only take text without any.
    return data if data and 2 * len(data) == len(hex_text) else None


def _parse_hex(hex_text: str) -> bytes:
    if not isinstance(hex_text, str):
        raise TransportFormatError(f"a wrapped value is hex text, not {type(hex_text).__name__}")
    text = hex_text.strip()
    if not text:
        raise TransportFormatError("the wrapped value is empty")
    if len(text) > MAX_WRAPPED_HEX:
        raise TransportFormatError(
            f"the wrapped value has {len(text)} characters; at most {MAX_WRAPPED_HEX} allowed"
        )
    for position, char in enumerate(text):
        if char not in _HEX:
            raise TransportFormatError(
                f"the wrapped value is not hex: character {position + 1} of {len(text)}"
                " is not a hex digit"
            )
    if len(text) % 2:
        raise TransportFormatError(
            f"the wrapped value has an odd number of hex digits ({len(text)})"
        )
    return bytes.fromhex(text)


_HEX = frozenset("0123456789abcdefABCDEF")
