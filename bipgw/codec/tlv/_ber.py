"""BER-TLV (ISO/IEC 8825-1, as profiled by ISO/IEC 7816-4 and GlobalPlatform).

Everything a card says in a structured way is BER-TLV: FCI templates, the GP
registry (C{E3 {4F, 9F70, C5}}), GET DATA answers, TS 102 226 expanded
scripts (C{AA}/C{AE 80 .. 00 00}) and the Amd B triggering parameters.

Representation.  A tag is the C{int} of its encoded bytes (C{0x9F7F},
C{0x5F50}, C{0xBF0C}, C{0xDF8101}), because that is how the specifications and traces
name tags; L{make_ber_tag} builds one from class, form and number.  A
L{BerTlv} keeps its value as bytes: constructed values are parsed on demand by
L{BerTlv.children}, so decoding a script does not build a tree nobody reads.

Rules, on decode and encode alike:
  - tags of one to four bytes; a multi-byte tag's first subsequent byte may
    not be C{80} (X.690 8.1.2.4.2 c); low tag numbers in the long form
    (C{9F02}, as EMV uses) are accepted;
  - tag C{00} only as the end-of-contents of an indefinite-length value
    (ISO 7816-4 C{00}/C{FF} padding between objects is not stripped);
  - definite lengths C{00}-C{7F}, C{81 xx} .. C{84 xxxxxxxx}.  A longer
    form than needed is accepted on decode and never produced on encode, so
    only minimally coded input re-encodes byte for byte;
  - the indefinite length C{80} only with a constructed tag, its contents
    ending in C{00 00}; such a value may nest definite and indefinite TLVs.
    L{BerTlv.indefinite} records the form so that it re-encodes identically.

Limits: an input larger than C{max_size} is refused before parsing, and
indefinite values (and L{find}) nest at most C{max_depth} levels.  Every
error names the tag and the byte offset where the problem starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Final

import attrs

from bipgw.codec.tlv._common import MAX_DEPTH, MAX_SIZE, TlvError, encode_length, hex_tag

__all__ = [
    "BerSpan",
    "BerTlv",
    "decode_ber",
    "decode_ber_one",
    "encode_ber",
    "encode_ber_indefinite",
    "find",
    "make_ber_tag",
    "scan_ber",
]

MAX_TAG_BYTES: Final = 4
"""The longest tag accepted (ISO 7816-4 uses up to three bytes; one spare)."""

BerSpan = tuple[int, int, int, int, bool]
"""One TLV found by L{scan_ber}: C{(tag, tlv_start, value_start, value_end,
indefinite)}, offsets into the scanned buffer.

For an indefinite-length TLV, C{value_start:value_end} covers its contents
without the final C{00 00}."""


@lru_cache(maxsize=4096, typed=True)
def _tag_bytes(tag: int) -> bytes:
    """The encoded form of C{tag}, checked once per distinct tag."""
    if not isinstance(tag, int) or isinstance(tag, bool) or tag <= 0:
        raise TlvError(f"tag must be a positive int, not {tag!r}", field="tag")
    size = (tag.bit_length() + 7) // 8
    if size > MAX_TAG_BYTES:
        raise TlvError(f"tag {hex_tag(tag)} is longer than {MAX_TAG_BYTES} bytes", field="tag")
    raw = tag.to_bytes(size, "big")
    multi = raw[0] & 0x1F == 0x1F
    if size == 1:
        if multi:
            raise TlvError(f"tag {hex_tag(tag)} announces subsequent tag bytes", field="tag")
        return raw
    if not multi:
        raise TlvError(
            f"tag {hex_tag(tag)}: first byte does not announce subsequent tag bytes", field="tag"
        )
    if raw[1] == 0x80:
        raise TlvError(f"tag {hex_tag(tag)}: first subsequent byte is 80", field="tag")
    if any(b & 0x80 == 0 for b in raw[1:-1]) or raw[-1] & 0x80:
        raise TlvError(
            f"tag {hex_tag(tag)}: bit 8 must mark every subsequent byte but the last",
            field="tag",
        )
    return raw


def make_ber_tag(tag_class: int, constructed: bool, number: int) -> int:
    """Build a tag from its X.690 parts (class 0-3: universal, application,
    context-specific, private), for code that thinks in tag numbers.

    Numbers up to 30 use the one-byte form; larger ones the multi-byte form.
    """
    if tag_class not in (0, 1, 2, 3) or number < 0:
        raise TlvError(f"no tag for class {tag_class}, number {number}", field="tag")
    first = (tag_class << 6) | (0x20 if constructed else 0)
    if number < 31:
        return first | number
    groups = []
    while True:
        groups.append(number & 0x7F)
        number >>= 7
        if not number:
            break
    tag = first | 0x1F
    for i, group in enumerate(reversed(groups)):
        tag = (tag << 8) | group | (0x80 if i < len(groups) - 1 else 0)
    _tag_bytes(tag)
    return tag


def _scan(
    data: bytes, pos: int, end: int, in_indefinite: bool, depth_left: int
) -> tuple[list[BerSpan], int]:
    """Find the TLVs in C{data[pos:end]} (until C{00 00} if C{in_indefinite}).

    Written as one flat loop with index arithmetic: this is the inner loop of
    every script decode.
    """
    spans: list[BerSpan] = []
    append = spans.append
    while pos < end:
        start = pos
        b0 = data[pos]
        pos += 1
        if b0 & 0x1F == 0x1F:
            if pos >= end:
                raise TlvError("tag truncated", field="tag", offset=start)
            b = data[pos]
            if b == 0x80:
                raise TlvError("first subsequent tag byte is 80", field="tag", offset=pos)
            tag = (b0 << 8) | b
            pos += 1
            count = 2
            while b & 0x80:
                if count == MAX_TAG_BYTES:
                    raise TlvError(
                        f"tag longer than {MAX_TAG_BYTES} bytes", field="tag", offset=start
                    )
                if pos >= end:
                    raise TlvError("tag truncated", field="tag", offset=start)
                b = data[pos]
                tag = (tag << 8) | b
                pos += 1
                count += 1
        elif b0 == 0:
            if in_indefinite:
                if pos < end and data[pos] == 0:
                    return spans, pos + 1
                raise TlvError(
                    "end-of-contents must be 00 00", field="end-of-contents", offset=start
                )
            raise TlvError(
                "tag 00 outside an indefinite-length value (padding is not allowed)",
                field="tag",
                offset=start,
            )
        else:
            tag = b0
        if pos >= end:
            raise TlvError(
                f"length of tag {hex_tag(tag)} missing", field=f"tag {hex_tag(tag)}", offset=pos
            )
        length = data[pos]
        pos += 1
        if length & 0x80:
            if length == 0x80:
                if not b0 & 0x20:
                    raise TlvError(
                        "indefinite length on a primitive tag",
                        field=f"tag {hex_tag(tag)}",
                        offset=start,
                    )
                if depth_left <= 0:
                    raise TlvError(
                        "indefinite-length values nested too deeply",
                        field=f"tag {hex_tag(tag)}",
                        offset=start,
                    )
                after = _scan(data, pos, end, True, depth_left - 1)[1]
                append((tag, start, pos, after - 2, True))
                pos = after
                continue
            size = length & 0x7F
            if size > 4:
                raise TlvError(
                    f"length byte {length:02X} is not 81..84",
                    field=f"tag {hex_tag(tag)}",
                    offset=pos - 1,
                )
            if pos + size > end:
                raise TlvError(
                    f"length of tag {hex_tag(tag)} truncated",
                    field=f"tag {hex_tag(tag)}",
                    offset=pos - 1,
                )
            length = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        value_end = pos + length
        if value_end > end:
            raise TlvError(
                f"value of tag {hex_tag(tag)} needs {length} bytes, {end - pos} remain",
                field=f"tag {hex_tag(tag)}",
                offset=start,
            )
        append((tag, start, pos, value_end, False))
        pos = value_end
    if in_indefinite:
        raise TlvError("end-of-contents 00 00 missing", field="end-of-contents", offset=end)
    return spans, pos


def scan_ber(
    data: bytes,
    start: int = 0,
    end: int | None = None,
    *,
    indefinite: bool = False,
    max_depth: int = MAX_DEPTH,
) -> tuple[list[BerSpan], int]:
    """Locate the TLVs of C{data[start:end]} without copying any value.

    This is the allocation-light form of L{decode_ber} for hot paths (script
    codecs): offsets in errors and spans are absolute offsets into C{data}.

    @param indefinite: C{start} is just after a C{tag 80} header: stop at the
        C{00 00} that ends those contents.
    @return: the spans, and the offset just after the last byte consumed (for
        C{indefinite}, after the C{00 00}).
    @raise TlvError: for anything malformed.
    """
    if end is None:
        end = len(data)
    return _scan(data, start, end, indefinite, max_depth)


def _check_indefinite(tlv: BerTlv, attribute: attrs.Attribute[bool], indefinite: bool) -> None:
    if indefinite:
        if not tlv.tag_bytes[0] & 0x20:
            raise TlvError(
                "only constructed tags may use the indefinite length",
                field=f"tag {hex_tag(tlv.tag)}",
            )
        _scan(tlv.value, 0, len(tlv.value), False, MAX_DEPTH)


def _check_tag(tlv: BerTlv, attribute: attrs.Attribute[int], tag: int) -> None:
    _tag_bytes(tag)


@attrs.frozen
class BerTlv:
    """One BER-TLV data object.

    @ivar tag: the tag as the int of its bytes (C{0x9F7F}).
    @ivar value: the value bytes; for a constructed tag, the encoded children.
    @ivar indefinite: encode with length C{80} and a trailing C{00 00}
        (constructed tags only; the value must then be a valid TLV sequence,
        since that is the only way a reader finds its end).
    """

    tag: int = attrs.field(validator=_check_tag)
    value: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    indefinite: bool = attrs.field(default=False, kw_only=True, validator=_check_indefinite)

    @property
    def tag_bytes(self) -> bytes:
        """The tag as it appears on the wire."""
        return _tag_bytes(self.tag)

    @property
    def tag_class(self) -> int:
        """X.690 class: 0 universal, 1 application, 2 context-specific, 3 private."""
        return self.tag_bytes[0] >> 6

    @property
    def is_constructed(self) -> bool:
        """C{True} when the value is itself a sequence of TLVs (bit 6 of the first tag byte)."""
        return bool(self.tag_bytes[0] & 0x20)

    def children(self) -> list[BerTlv]:
        """Decode the value as a sequence of child TLVs.

        This works whatever the constructed bit says, because card
        specifications nest TLVs under tags that do not set it (the GP Amd B
        parameters C{81}/C{83}/C{84}/C{89} are context-specific "primitive"
        tags).

        @raise TlvError: if the value is not valid BER-TLV.
        """
        return decode_ber(self.value)

    def find(self, tag: int) -> BerTlv | None:
        """The first descendant with C{tag}, depth first (see L{find}).

        The value of this TLV is parsed as children whatever its tag; below
        that, only constructed TLVs are descended into.
        """
        return _find(self.children(), tag, MAX_DEPTH)

    def encode(self) -> bytes:
        """The TLV as bytes, in the length form it was built or decoded with."""
        if self.indefinite:
            return self.tag_bytes + b"\x80" + self.value + b"\x00\x00"
        return self.tag_bytes + encode_length(len(self.value)) + self.value


_new = object.__new__
_set = object.__setattr__


def _build(data: bytes, spans: list[BerSpan]) -> list[BerTlv]:
    """Make L{BerTlv}s from spans that L{_scan} has already checked.

    The validators would only repeat the scan's checks (and re-walk every
    indefinite value) at three times the cost; this is the hot path of every
    decode, so the instances are filled in directly, as attrs itself does for
    frozen classes.
    """
    out: list[BerTlv] = []
    append = out.append
    for tag, _, start, end, indefinite in spans:
        tlv = _new(BerTlv)
        _set(tlv, "tag", tag)
        _set(tlv, "value", data[start:end])
        _set(tlv, "indefinite", indefinite)
        append(tlv)
    return out


def decode_ber(
    data: bytes, *, max_depth: int = MAX_DEPTH, max_size: int = MAX_SIZE
) -> list[BerTlv]:
    """Decode a sequence of BER-TLV objects (an empty input is an empty sequence).

    Constructed values are checked only as far as needed to find their end
    (indefinite ones are walked, definite ones skipped); call
    L{BerTlv.children} to go deeper.

    @raise TlvError: for malformed input or input larger than C{max_size}.
    """
    data = bytes(data)
    if len(data) > max_size:
        raise TlvError(f"{len(data)} bytes exceed the {max_size}-byte limit", offset=0)
    return _build(data, _scan(data, 0, len(data), False, max_depth)[0])


def decode_ber_one(data: bytes, *, max_depth: int = MAX_DEPTH, max_size: int = MAX_SIZE) -> BerTlv:
    """Decode exactly one BER-TLV object that fills C{data}.

    @raise TlvError: when C{data} holds no TLV, or bytes after the first one.
    """
    tlvs = decode_ber(data, max_depth=max_depth, max_size=max_size)
    if not tlvs:
        raise TlvError("no TLV in empty input", offset=0)
    if len(tlvs) > 1:
        first = tlvs[0]
        raise TlvError(
            f"bytes follow the TLV with tag {hex_tag(first.tag)}",
            field="trailing bytes",
            offset=len(first.encode()),
        )
    return tlvs[0]


def encode_ber(tag: int, value: bytes) -> bytes:
    """Encode one TLV with a definite, minimal length."""
    return _tag_bytes(tag) + encode_length(len(value)) + value


def encode_ber_indefinite(tag: int, content: bytes) -> bytes:
    """Encode C{tag 80 content 00 00}, as TS 102 226 uses for C{AE}/C{AF} scripts.

    @param content: the already encoded child TLVs.
    @raise TlvError: if C{tag} is primitive or C{content} is not a TLV sequence.
    """
    return BerTlv(tag, content, indefinite=True).encode()


def find(tlvs: Iterable[BerTlv], tag: int) -> BerTlv | None:
    """The first TLV with C{tag} in C{tlvs} or below, depth first, pre-order.

    Searching descends into every constructed TLV met before a match whose
    value parses as TLVs; one that does not is searched no further, because
    card formats give the constructed bit to opaque values (the TS 102 226
    C-APDU tag C{22} is "universal, constructed, 2" to BER, yet holds an
    APDU).

    @raise TlvError: when the tree nests deeper than L{MAX_DEPTH}.
    """
    return _find(tlvs, tag, MAX_DEPTH)


def _find(tlvs: Iterable[BerTlv], tag: int, depth_left: int) -> BerTlv | None:
    for tlv in tlvs:
        if tlv.tag == tag:
            return tlv
        if tlv.is_constructed:
            if depth_left <= 0:
                raise TlvError("TLV tree nested too deeply", field=f"tag {hex_tag(tlv.tag)}")
            try:
                children = tlv.children()
            except TlvError:
                continue
            hit = _find(children, tag, depth_left - 1)
            if hit is not None:
                return hit
    return None
