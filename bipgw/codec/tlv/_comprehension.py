"""COMPREHENSION-TLV (ETSI TS 101 220 section 7.1.1), the simple TLVs of CAT.

OPEN CHANNEL parameters, the PUSH data of TS 102 226 and the Amd B connection
parameters are COMPREHENSION-TLVs.  They differ from BER-TLV in the tag:

  - single-byte form: C{01}-C{7E} with the comprehension-required (CR) flag
    in bit 8, so C{35} and C{B5} are the same tag (bearer description), with
    and without CR.  C{00}, C{80} and C{FF} are not tags;
  - three-byte form: C{7F} then two bytes, CR in bit 16 and a 15-bit tag
    value C{0001}-C{7FFF}.

L{CompTlv.tag} is the tag value without CR; the flag is its own field, so a
decoder compares tags without caring which form the sender chose.  Tag values
up to C{7E} are encoded in the single-byte form; the three-byte form of such
a value is accepted on decode (and re-encoded in the single-byte form).

Lengths: C{00}-C{7F}, C{81 80}-C{81 FF}, C{82 0100}-C{82 FFFF},
C{83 010000}-C{83 FFFFFF}; a longer form than needed is accepted on decode,
never produced on encode.  A raw C{ED} length byte broke a real card
(PROTOCOLS.md section 5), which is why encoders here never cut corners.
"""

from __future__ import annotations

from typing import Final

import attrs

from bipgw.codec.tlv._common import MAX_SIZE, TlvError, encode_length

__all__ = [
    "CompTlv",
    "decode_comprehension",
    "decode_comprehension_one",
    "encode_comprehension",
]

MAX_TAG: Final = 0x7FFF
"""The largest tag value (three-byte form, 15 bits)."""


def _tag_name(tag: int) -> str:
    return f"tag {tag:02X}" if tag <= 0x7E else f"tag 7F{tag:04X}"


def _encode_tag(tag: int, comprehension_required: bool) -> bytes:
    if 0 < tag <= 0x7E:
        return bytes((tag | 0x80 if comprehension_required else tag,))
    if 0x7F <= tag <= MAX_TAG:
        return b"\x7f" + (tag | 0x8000 if comprehension_required else tag).to_bytes(2, "big")
    raise TlvError(f"COMPREHENSION-TLV tag value {tag!r} outside 01..7FFF", field="tag")


def _check_tag(tlv: CompTlv, attribute: attrs.Attribute[int], tag: int) -> None:
    if not isinstance(tag, int) or isinstance(tag, bool):
        raise TlvError(f"tag must be an int, not {tag!r}", field="tag")
    _encode_tag(tag, False)


@attrs.frozen
class CompTlv:
    """One COMPREHENSION-TLV data object.

    @ivar tag: the tag value without the CR flag (C{0x35} for C{35} and C{B5}).
    @ivar value: the value bytes.
    @ivar comprehension_required: the CR flag; a receiver that does not
        understand a CR object must reject the whole command.
    """

    tag: int = attrs.field(validator=_check_tag)
    value: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    comprehension_required: bool = attrs.field(default=False)

    def encode(self) -> bytes:
        """The TLV as bytes, minimal length, single-byte tag where possible."""
        return encode_comprehension(self.tag, self.value, self.comprehension_required)


def encode_comprehension(tag: int, value: bytes, comprehension_required: bool = False) -> bytes:
    """Encode one COMPREHENSION-TLV.

    @raise TlvError: for a tag outside 01..7FFF or a value over 16 MiB.
    """
    return (
        _encode_tag(tag, comprehension_required)
        + encode_length(len(value), max_length_bytes=3)
        + value
    )


def _scan(data: bytes) -> list[CompTlv]:
    out: list[CompTlv] = []
    pos = 0
    end = len(data)
    while pos < end:
        start = pos
        b0 = data[pos]
        pos += 1
        if b0 == 0x7F:
            if pos + 2 > end:
                raise TlvError("three-byte tag truncated", field="tag", offset=start)
            raw = (data[pos] << 8) | data[pos + 1]
            pos += 2
            tag = raw & 0x7FFF
            cr = bool(raw & 0x8000)
            if tag == 0:
                raise TlvError("three-byte tag value 0000", field="tag", offset=start)
        elif b0 in (0x00, 0x80, 0xFF):
            raise TlvError(f"{b0:02X} is not a COMPREHENSION-TLV tag", field="tag", offset=start)
        else:
            tag = b0 & 0x7F
            cr = bool(b0 & 0x80)
        name = _tag_name(tag)
        if pos >= end:
            raise TlvError(f"length of {name} missing", field=name, offset=pos)
        length = data[pos]
        pos += 1
        if length & 0x80:
            size = length & 0x7F
            if not 1 <= size <= 3:
                raise TlvError(
                    f"length byte {length:02X} is not 81..83", field=name, offset=pos - 1
                )
            if pos + size > end:
                raise TlvError(f"length of {name} truncated", field=name, offset=pos - 1)
            length = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        value_end = pos + length
        if value_end > end:
            raise TlvError(
                f"value of {name} needs {length} bytes, {end - pos} remain",
                field=name,
                offset=start,
            )
        out.append(CompTlv(tag, data[pos:value_end], cr))
        pos = value_end
    return out


def decode_comprehension(data: bytes, *, max_size: int = MAX_SIZE) -> list[CompTlv]:
    """Decode a sequence of COMPREHENSION-TLVs (an empty input gives C{[]}).

    @raise TlvError: for malformed input or input larger than C{max_size}.
    """
    data = bytes(data)
    if len(data) > max_size:
        raise TlvError(f"{len(data)} bytes exceed the {max_size}-byte limit", offset=0)
    return _scan(data)


def decode_comprehension_one(data: bytes, *, max_size: int = MAX_SIZE) -> CompTlv:
    """Decode exactly one COMPREHENSION-TLV that fills C{data}.

    @raise TlvError: when C{data} holds no TLV, or bytes after the first one.
    """
    tlvs = decode_comprehension(data, max_size=max_size)
    if len(tlvs) != 1:
        raise TlvError(
            f"expected exactly one COMPREHENSION-TLV, found {len(tlvs)}",
            offset=len(tlvs[0].encode()) if tlvs else 0,
        )
    return tlvs[0]
