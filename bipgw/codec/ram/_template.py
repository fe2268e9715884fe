"""The template plumbing shared by expanded command and response scripts.

Both script kinds are one BER-TLV template (definite C{AA}/C{AB}, or
indefinite C{AE 80}/C{AF 80} ending in C{00 00}) holding a flat list of
primitive TLVs.  Reading the header, splitting the items (a fast path for the
usual all-APDU script, the general BER scanner for everything else) and
checking item tuples is the same for both, and lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sized
from typing import Final

import attrs

from bipgw.codec.ram._common import RamError, from_tlv_error
from bipgw.codec.tlv import BerSpan, TlvError, hex_tag, scan_ber

__all__ = [
    "MAX_APDU",
    "all_items",
    "check_items",
    "fast_items",
    "one_byte",
    "optional_bytes",
    "read_header",
]

MAX_APDU: Final = 4 + 3 + 65535 + 2
"""The longest C-APDU (extended case 4) a script item may hold."""

TAG_COMMAND_DEFINITE: Final = 0xAA
TAG_COMMAND_INDEFINITE: Final = 0xAE
TAG_RESPONSE_DEFINITE: Final = 0xAB
TAG_RESPONSE_INDEFINITE: Final = 0xAF
TAG_C_APDU: Final = 0x22
TAG_R_APDU: Final = 0x23
TAG_EXECUTED: Final = 0x80
TAG_IMMEDIATE_ACTION: Final = 0x81
TAG_ERROR_ACTION: Final = 0x82
TAG_CHAINING: Final = 0x83
TAG_BAD_FORMAT: Final = 0x90

BYTES_ONLY: Final = frozenset((bytes,))


def check_items(
    minimum: int, what: str
) -> Callable[[object, attrs.Attribute[tuple[bytes, ...]], tuple[bytes, ...]], None]:
    """An attrs validator: a tuple of C{bytes}, each C{minimum}..L{MAX_APDU} long."""

    def check(
        instance: object, attribute: attrs.Attribute[tuple[bytes, ...]], items: object
    ) -> None:
        # Builtins over the whole tuple first (this runs on every decode);
        # the item-by-item loop only runs to name the culprit.
        if (
            isinstance(items, tuple)
            and set(map(type, items)) <= BYTES_ONLY
            and (
                not items or (minimum <= min(map(len, items)) and max(map(len, items)) <= MAX_APDU)
            )
        ):
            return
        if not isinstance(items, tuple):
            raise RamError(f"{what}s must be a tuple of bytes", field=attribute.name)
        for index, item in enumerate(items):
            if type(item) is not bytes or not minimum <= len(item) <= MAX_APDU:
                raise RamError(
                    f"{what} {index} must be {minimum}..{MAX_APDU} bytes", field=attribute.name
                )

    return check


def optional_bytes(
    instance: object, attribute: attrs.Attribute[bytes | None], value: object
) -> None:
    """An attrs validator: C{bytes} or C{None} (raw values of uncertain coding)."""
    if value is not None and type(value) is not bytes:
        raise RamError("must be bytes or None", field=attribute.name)


def read_header(
    data: bytes, definite_tag: int, indefinite_tag: int, what: str, max_size: int
) -> tuple[bytes, int, bool]:
    """Check the template header: return the bytes, where the items start,
    and whether the length is definite (then the template fills C{data})."""
    data = bytes(data)
    size = len(data)
    if size > max_size:
        raise RamError(f"{size} bytes exceed the {max_size}-byte limit", field=what, offset=0)
    if size < 2:
        raise RamError("too short for a script template", field=what, offset=0)
    tag = data[0]
    if tag == definite_tag:
        first = data[1]
        if first < 0x80:
            start, length = 2, first
        elif 0x81 <= first <= 0x84 and size >= 2 + (first & 0x7F):
            start = 2 + (first & 0x7F)
            length = int.from_bytes(data[2:start], "big")
        else:
            raise RamError(
                f"template {tag:02X} needs a definite length (00..7F or 81..84), got {first:02X}",
                field=what,
                offset=1,
            )
        if start + length != size:
            raise RamError(
                f"template {tag:02X} announces {length} bytes of items, {size - start} present",
                field=what,
                offset=1,
            )
        return data, start, True
    if tag == indefinite_tag:
        if data[1] != 0x80:
            raise RamError(
                f"template {tag:02X} must have the indefinite length 80", field=what, offset=1
            )
        return data, 2, False
    raise RamError(
        f"expected template {definite_tag:02X} or {indefinite_tag:02X}, found {tag:02X}",
        field=what,
        offset=0,
    )


def fast_items(
    data: bytes, pos: int, definite: bool, item_tag: int, minimum: int
) -> list[bytes] | None:
    """The values of a template holding only C{item_tag} TLVs, or C{None}.

    Nearly every script on the wire is just C-APDUs (or R-APDUs) with 1-byte
    tags and short, C{81} or C{82} lengths; this loop handles exactly that
    with index arithmetic.  Anything else - another tag, an odd length form,
    a bad length, truncation - returns C{None} and the caller takes the
    general path, which also produces the precise error.
    """
    end = len(data)
    if not definite:
        end -= 2
        if end < pos or data[end] or data[end + 1]:
            return None
    out: list[bytes] = []
    append = out.append
    try:
        while pos < end:
            if data[pos] != item_tag:
                return None
            length = data[pos + 1]
            if length < 0x80:
                start = pos + 2
            elif length == 0x81:
                length = data[pos + 2]
                start = pos + 3
            elif length == 0x82:
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                return None
            pos = start + length
            if pos > end or length < minimum:
                return None
            append(data[start:pos])
    except IndexError:
        return None
    return out


def all_items(data: bytes, start: int, definite: bool, what: str) -> list[BerSpan]:
    """Every item of the template, through the general BER scanner."""
    try:
        items, after = scan_ber(data, start, len(data), indefinite=not definite)
    except TlvError as e:
        raise from_tlv_error(e, what) from e
    if after != len(data):
        raise RamError("bytes follow the end-of-contents", field=what, offset=after)
    for item in items:
        if item[4]:
            raise RamError("script items must have definite lengths", field=what, offset=item[1])
    return items


def one_byte(data: bytes, span: BerSpan, what: str) -> int:
    """The value of a TLV that must be exactly one byte."""
    _, where, start, end, _ = span
    if end - start != 1:
        raise RamError(f"value must be 1 byte, not {end - start}", field=what, offset=where)
    return data[start]


def one_byte_in(data: bytes, span: BerSpan, what: str, known: Container[int], unknown: str) -> int:
    """The value of a one-byte TLV that must be one of C{known}.

    @param unknown: what the value is called in the error ("bad format value").
    """
    value = one_byte(data, span, what)
    if value not in known:
        raise RamError(f"unknown {unknown} {value:02X}", field=what, offset=span[1])
    return value


def apdu_value(
    data: bytes, span: BerSpan, minimum: int, what: str, *, noun: str, note: str = ""
) -> bytes:
    """The APDU a C-APDU or R-APDU TLV holds, C{minimum}..L{MAX_APDU} bytes long.

    @param what: the field named in the error ("command script: C-APDU 3").
    @param noun: the APDU, as the error names it ("a C-APDU").
    @param note: said after the sizes in the error (" (data and SW)").
    """
    _, where, start, end, _ = span
    if not minimum <= end - start <= MAX_APDU:
        raise RamError(
            f"{noun} needs {minimum}..{MAX_APDU} bytes{note}, not {end - start}",
            field=what,
            offset=where,
        )
    return data[start:end]


def unknown_tag(tag: int, where: int, what: str) -> RamError:
    """The error for a tag script C{what} does not define (to be raised)."""
    return RamError(
        f"unknown tag {hex_tag(tag)} in a {what}", field=f"{what}: tag {hex_tag(tag)}", offset=where
    )


def check_first(index: int, name: str, tag: int, where: int, what: str) -> None:
    """Refuse the C{name} TLV anywhere but first in script C{what}."""
    if index:
        raise RamError(
            f"the {name} TLV must come first", field=f"{what}: tag {tag:02X}", offset=where
        )


def check_once_before(
    apdus: Sized, seen: object, name: str, apdu: str, tag: int, where: int, what: str
) -> None:
    """Refuse the C{name} TLV after the first APDU (C{apdus} so far) or seen before."""
    if apdus or seen is not None:
        raise RamError(
            f"the {name} TLV must appear once, before the first {apdu}",
            field=f"{what}: tag {tag:02X}",
            offset=where,
        )
