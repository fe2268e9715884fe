"""What the two TLV flavours share: the error class, limits and lengths.

BER-TLV (ISO/IEC 8825-1 as profiled by ISO/IEC 7816-4) and COMPREHENSION-TLV
(ETSI TS 101 220 section 7.1.1) code lengths the same way, so the length
rules - and their failure messages - are written once, here.
"""

from __future__ import annotations

from typing import Final

from bipgw.codec._errors import CodecError

__all__ = [
    "MAX_DEPTH",
    "MAX_SIZE",
    "TlvError",
    "encode_length",
    "hex_tag",
]

MAX_DEPTH: Final = 32
"""How deeply indefinite-length values (and tree searches) may nest.

Real card data nests a handful of levels (FCI C{6F/A5/73}, C{81/83/84}); the
limit only exists so that hostile input cannot recurse without bound."""

MAX_SIZE: Final = 1 << 20
"""The largest input, in bytes, a decoder accepts unless told otherwise.

A whole SCP81 command script (LOAD blocks of a large applet included) fits in
one mebibyte; anything bigger is refused before any parsing work is done."""


class TlvError(CodecError):
    """Bytes that are not well-formed TLV, or a tag/length that cannot be encoded."""

    codec = "TLV"


def hex_tag(tag: int) -> str:
    """A tag as operators read it in traces: upper-case hex, whole bytes (C{'9F7F'})."""
    width = max(1, (tag.bit_length() + 7) // 8) * 2
    return f"{tag:0{width}X}"


_SHORT: Final = tuple(bytes((n,)) for n in range(0x80))
_ONE: Final = tuple(bytes((0x81, n)) for n in range(0x100))


def encode_length(length: int, *, max_length_bytes: int = 4) -> bytes:
    """Encode a definite length in its shortest form (C{xx}, C{81 xx} .. C{84 xxxxxxxx}).

    Decoders accept a longer form than needed (some cards and tools emit
    C{81 05}); encoders never produce one, because several real cards misparse
    anything but the minimal form (PROTOCOLS.md section 2.2, "[LIVE]").

    @param max_length_bytes: the most length bytes after C{8x} the format
        allows: 4 for BER-TLV, 3 for COMPREHENSION-TLV.
    @raise TlvError: for a negative length or one too large for the format.
    """
    if 0 <= length < 0x80:
        return _SHORT[length]
    if 0x80 <= length < 0x100:
        return _ONE[length]
    size = (length.bit_length() + 7) // 8
    if length < 0 or size > max_length_bytes:
        raise TlvError(f"length {length} cannot be encoded", field="length")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")
