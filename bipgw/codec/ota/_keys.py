"""The two secret keys of an SCP80 key set."""

from __future__ import annotations

from attrs import field, frozen

from bipgw.codec.ota._errors import SecurityError

_SIZES = (0, 8, 16, 24, 32)


def _hidden(value: bytes) -> str:
    return f"<{len(value)} bytes>"


def _check_key(instance: object, attribute: object, value: bytes) -> None:
    name = getattr(attribute, "name", "key")
    if not isinstance(value, bytes):
        raise SecurityError(f"must be bytes, got {type(value).__name__}", field=name)
    if len(value) not in _SIZES:
        raise SecurityError(
            f"a {len(value)}-byte key fits no OTA algorithm (8, 16, 24 or 32 bytes)", field=name
        )


@frozen
class OtaKeys:
    """KIc (ciphering) and KID (integrity) keys of one key set.

    The algorithm is not stored here: it travels in the packet's KIc/KID
    bytes, so the same key set checks whatever the packet claims and a
    length mismatch is caught at use (L{SecurityError}, naming the
    algorithm and the lengths, never the bytes).  An empty key means "none":
    packets that need it are refused.

    The repr shows only the lengths, so a key set can be logged by accident
    without leaking.  Sizes: 8 (DES), 16 (3DES two-key, AES-128),
    24 (3DES three-key, AES-192), 32 (AES-256).
    """

    kic_key: bytes = field(default=b"", validator=_check_key, repr=_hidden)
    kid_key: bytes = field(default=b"", validator=_check_key, repr=_hidden)

    def __str__(self) -> str:
        return repr(self)
