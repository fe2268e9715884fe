"""The GSM 7-bit default alphabet (3GPP TS 23.038 section 6.2.1) and its packing.

Text SMS, alphanumeric originator addresses and (rarely) OTA status texts use
these 128 characters plus the default extension table reached through the
escape septet C{1B}.  Packing puts septets into octets least significant bit
first (TS 23.038 section 6.1.2.1); when a user data header precedes the text,
the text starts after I{fill bits} so that it begins on a septet boundary
(TS 23.040 section 9.2.3.24), which is why every packing function here takes a
C{fill_bits} argument.

Mapping: the Unicode mapping published with the alphabet (unicode.org
GSM0338) is used, so C{09} decodes to U+00C7 (capital C cedilla) and C{10} to
U+0394 (Greek capital delta).
"""

from __future__ import annotations

from bipgw.codec.sms._error import SmsError

__all__ = [
    "ESCAPE",
    "gsm7_decode",
    "gsm7_encode",
    "gsm7_septets",
    "pack_septets",
    "septets_to_text",
    "unpack_septets",
]

#: The septet that selects the extension table for the septet after it.
ESCAPE = 0x1B

# One character per septet value; index 0x1B is the escape, never a character.
_DEFAULT = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./"
    "0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmno"
    "pqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)

# The default extension table (TS 23.038 section 6.2.1.1): code after ESC -> character.
_EXTENSION: dict[int, str] = {
    0x0A: "\x0c",  # page break (form feed)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "\u20ac",
}

_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_DEFAULT) if i != ESCAPE}
_ENCODE.update({ch: bytes([ESCAPE, code]) for code, ch in _EXTENSION.items()})

# TS 23.038: "1B 1B" is reserved for a further extension table and a receiver
# "shall display a space" for it; we do the same for a dangling final escape.
_UNKNOWN_ESCAPE = " "


def gsm7_septets(text: str) -> bytes:
    """Map C{text} to unpacked septets (one septet value per byte).

    Extension characters take two septets (C{1B} then the code), which is
    what a length budget in septets must count.

    @raise SmsError: for a character outside the alphabet and its extension
        table, naming the character and its position in C{text}.
    """
    out = bytearray()
    encode = _ENCODE
    for position, ch in enumerate(text):
        code = encode.get(ch)
        if code is None:
            raise SmsError(
                f"character {ch!r} (U+{ord(ch):04X}) at position {position} is not in the"
                " GSM 7-bit default alphabet or its extension table",
                field="text",
                offset=position,
            )
        out += code
    return bytes(out)


def septets_to_text(septets: bytes) -> str:
    """Map unpacked septets back to text.

    Decoding never fails on valid septets, following the receiver rules of
    TS 23.038: an escape followed by a code that has no extension character
    shows the default-table character for that code, and C{1B 1B} (or an
    escape with nothing after it) shows a space.

    @raise SmsError: when a byte is not a septet (above C{7F}).
    """
    chars: list[str] = []
    escaped = False
    for position, value in enumerate(septets):
        if value > 0x7F:
            raise SmsError(f"value {value:#04x} is not a septet", field="septets", offset=position)
        if escaped:
            escaped = False
            if value == ESCAPE:
                chars.append(_UNKNOWN_ESCAPE)
            else:
                chars.append(_EXTENSION.get(value, _DEFAULT[value]))
        elif value == ESCAPE:
            escaped = True
        else:
            chars.append(_DEFAULT[value])
    if escaped:
        chars.append(_UNKNOWN_ESCAPE)
    return "".join(chars)


def _check_fill(fill_bits: int) -> None:
    if not 0 <= fill_bits <= 6:
        raise SmsError(f"fill bits must be 0..6, not {fill_bits}", field="fill_bits")


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets into octets, least significant bit first.

    @param fill_bits: zero bits placed before the first septet (0..6), to
        align text that follows a user data header on a septet boundary.
    @return: C{ceil((fill_bits + 7 * len(septets)) / 8)} octets; unused high
        bits of the last octet are zero.
    @raise SmsError: for a value above C{7F} or a bad C{fill_bits}.
    """
    _check_fill(fill_bits)
    out = bytearray()
    acc = 0
    nbits = fill_bits
    for position, value in enumerate(septets):
        if value > 0x7F:
            raise SmsError(f"value {value:#04x} is not a septet", field="septets", offset=position)
        acc |= value << nbits
        nbits += 7
        if nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(packed: bytes, septet_count: int, fill_bits: int = 0) -> bytes:
    """Take C{septet_count} septets out of C{packed}.

    The length of C{packed} must be exactly what that many septets (after the
    fill bits) occupy: the count comes from a length field (TP-UDL), and a
    mismatch means the length field and the bytes disagree.

    @raise SmsError: naming C{TP-UD} when the octet count does not match.
    """
    _check_fill(fill_bits)
    if septet_count < 0:
        raise SmsError(f"septet count {septet_count} is negative", field="TP-UD")
    needed = (fill_bits + 7 * septet_count + 7) // 8
    if len(packed) != needed:
        raise SmsError(
            f"{septet_count} septets after {fill_bits} fill bits need {needed} octets,"
            f" got {len(packed)}",
            field="TP-UD",
        )
    out = bytearray()
    acc = 0
    nbits = 0
    index = 0
    for octet in packed:
        acc |= octet << nbits
        nbits += 8
        if fill_bits:
            acc >>= fill_bits
            nbits -= fill_bits
            fill_bits = 0
        while nbits >= 7 and index < septet_count:
            out.append(acc & 0x7F)
            acc >>= 7
            nbits -= 7
            index += 1
    return bytes(out)


def gsm7_encode(text: str, fill_bits: int = 0) -> bytes:
    """Encode C{text} as packed GSM 7-bit septets.

    The septet count (needed for TP-UDL) is C{len(gsm7_septets(text))}; it
    cannot be recovered from the packed length alone.

    @raise SmsError: for an unencodable character, naming it and its position.
    """
    return pack_septets(gsm7_septets(text), fill_bits)


def gsm7_decode(packed: bytes, septet_count: int, fill_bits: int = 0) -> str:
    """Decode C{septet_count} packed septets (after C{fill_bits}) to text.

    @raise SmsError: when C{packed} is not exactly the size those septets need.
    """
    return septets_to_text(unpack_septets(packed, septet_count, fill_bits))
