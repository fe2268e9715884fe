"""ISO/IEC 7816-4 command and response APDUs.

Every path through the gateway carries APDUs: business platforms send them,
TS 102 226 scripts wrap them, simulated cards execute them.  L{CommandApdu}
encodes and decodes the seven ISO 7816-4 (5.1) cases exactly, so that what a
platform hands us reaches the card byte for byte, and a malformed APDU is
refused here, with the field named, instead of by a card in the field.

The length fields, with C{N} data bytes:

  - case 1: C{CLA INS P1 P2}
  - case 2S: header C{Le} (C{00} means 256)
  - case 3S: header C{Lc} data (C{Lc} 1..255)
  - case 4S: header C{Lc} data C{Le}
  - case 2E: header C{00 Le Le} (C{0000} means 65536)
  - case 3E: header C{00 Lc Lc} data (C{Lc} 1..65535)
  - case 4E: header C{00 Lc Lc} data C{Le Le}

Each byte string has at most one reading, so C{encode(decode(raw)) == raw}
for every C{raw} that decodes; everything else raises L{ApduError}.
"""

from __future__ import annotations

import string
from typing import Final

import attrs

from bipgw.codec._errors import CodecError
from bipgw.codec._sw import (
    SW_CARD_LOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_DATA_TRUNCATED,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_GP_MORE_DATA,
    SW_INCORRECT_DATA,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_LOGICAL_CHANNEL_NOT_SUPPORTED,
    SW_MEMORY_FAILURE,
    SW_NO_DIAGNOSIS,
    SW_NOT_ENOUGH_MEMORY,
    SW_NOT_FOUND,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_TOOLKIT_BUSY,
    SW_UNKNOWN_ERROR,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    describe_sw,
    sw_is_success,
)

__all__ = [
    "MAX_EXTENDED_DATA",
    "MAX_EXTENDED_LE",
    "MAX_SHORT_DATA",
    "MAX_SHORT_LE",
    "SW_CARD_LOCKED",
    "SW_CLA_NOT_SUPPORTED",
    "SW_CONDITIONS_NOT_SATISFIED",
    "SW_DATA_TRUNCATED",
    "SW_FUNCTION_NOT_SUPPORTED",
    "SW_GP_MORE_DATA",
    "SW_INCORRECT_DATA",
    "SW_INCORRECT_P1P2",
    "SW_INS_NOT_SUPPORTED",
    "SW_LOGICAL_CHANNEL_NOT_SUPPORTED",
    "SW_MEMORY_FAILURE",
    "SW_NOT_ENOUGH_MEMORY",
    "SW_NOT_FOUND",
    "SW_NO_DIAGNOSIS",
    "SW_OK",
    "SW_REFERENCED_DATA_NOT_FOUND",
    "SW_SECURITY_STATUS_NOT_SATISFIED",
    "SW_TOOLKIT_BUSY",
    "SW_UNKNOWN_ERROR",
    "SW_WRONG_LENGTH",
    "SW_WRONG_P1P2",
    "ApduError",
    "CommandApdu",
    "ResponseApdu",
    "decode_command",
    "describe_sw",
    "sw_is_success",
]

MAX_SHORT_DATA: Final = 255
"""Most data bytes a short APDU carries (one-byte Lc)."""
MAX_EXTENDED_DATA: Final = 65535
"""Most data bytes an extended APDU carries (two-byte Lc)."""
MAX_SHORT_LE: Final = 256
"""Largest short Le (encoded as C{00})."""
MAX_EXTENDED_LE: Final = 65536
"""Largest extended Le (encoded as C{0000}); also the most response data."""

_HEX_CHARS: Final = frozenset(string.hexdigits)


class ApduError(CodecError):
    """A command or response APDU that cannot be encoded or decoded."""

    codec = "APDU"


def _as_bytes(value: object) -> bytes:
    """Accept any bytes-like value as C{bytes}, so the value stays hashable."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ApduError(f"must be bytes, got {type(value).__name__}", field="data")


def _check_byte(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= 0xFF:
        raise ApduError(f"must be an int in 0..255, got {value!r}", field=attribute.name)


def _check_data(instance: CommandApdu, _: object, value: bytes) -> None:
    n = len(value)
    if n > MAX_EXTENDED_DATA:
        raise ApduError(f"{n} bytes, more than {MAX_EXTENDED_DATA}", field="data")
    if n > MAX_SHORT_DATA and not instance.extended:
        raise ApduError(f"{n} bytes need an extended APDU (short Lc <= 255)", field="data")


def _check_le(instance: CommandApdu, _: object, value: int | None) -> None:
    if value is None:
        return
    if type(value) is not int or not 1 <= value <= MAX_EXTENDED_LE:
        raise ApduError(
            f"must be None or an int in 1..{MAX_EXTENDED_LE} (256/65536 for 'all'), got {value!r}",
            field="le",
        )
    if value > MAX_SHORT_LE and not instance.extended:
        raise ApduError(f"{value} needs an extended APDU (short Le <= 256)", field="le")


def _check_extended(instance: CommandApdu, _: object, value: bool) -> None:
    if type(value) is not bool:
        raise ApduError(f"must be a bool, got {value!r}", field="extended")
    if value and not instance.data and instance.le is None:
        raise ApduError("case 1 (no data, no Le) has no extended form", field="extended")


def _needs_extended(instance: CommandApdu) -> bool:
    le = instance.le
    return len(instance.data) > MAX_SHORT_DATA or (type(le) is int and le > MAX_SHORT_LE)


def _from_hex(text: str, field: str) -> bytes:
    """Hex with any white space between digits, as people paste APDU traces."""
    compact = "".join(text.split())
    try:
        return bytes.fromhex(compact)
    except ValueError:
        for i, ch in enumerate(text):
            if not ch.isspace() and ch not in _HEX_CHARS:
                raise ApduError(f"{ch!r} is not a hex digit", field=field, offset=i) from None
        raise ApduError(f"odd number of hex digits ({len(compact)})", field=field) from None


@attrs.frozen(repr=False)
class CommandApdu:
    """A command APDU (C-APDU).

    @ivar cla: class byte.
    @ivar ins: instruction byte.
    @ivar p1: parameter 1.
    @ivar p2: parameter 2.
    @ivar data: the command data field (its length is Lc); C{b""} for none.
    @ivar le: the expected response length Ne: C{None} for no Le field,
        1..256 short (256 is sent as C{00}), 1..65536 extended (65536 is
        sent as C{0000}).
    @ivar extended: whether the length fields use the extended form.
        Derived from C{data} and C{le} when not given; pass C{True} to force
        the extended form for a card that wants it.
    """

    cla: int = attrs.field(validator=_check_byte)
    ins: int = attrs.field(validator=_check_byte)
    p1: int = attrs.field(validator=_check_byte)
    p2: int = attrs.field(validator=_check_byte)
    data: bytes = attrs.field(default=b"", converter=_as_bytes, validator=_check_data)
    le: int | None = attrs.field(default=None, validator=_check_le)
    extended: bool = attrs.field(
        default=attrs.Factory(_needs_extended, takes_self=True), validator=_check_extended
    )

    def __repr__(self) -> str:
        # Hex, as APDUs appear in every spec and trace, instead of bytes reprs.
        return (
            f"CommandApdu(cla=0x{self.cla:02X}, ins=0x{self.ins:02X},"
            f" p1=0x{self.p1:02X}, p2=0x{self.p2:02X}, data=hex'{self.data.hex()}',"
            f" le={self.le!r}, extended={self.extended!r})"
        )

    @property
    def case(self) -> int:
        """The ISO 7816-4 case: 1 (nothing), 2 (Le), 3 (data), 4 (data and Le)."""
        return (3 if self.data else 1) + (self.le is not None)

    @property
    def is_extended(self) -> bool:
        """Whether the length fields are extended (cases 2E, 3E, 4E)."""
        return self.extended

    def encode(self) -> bytes:
        """The APDU's bytes, as sent to the card."""
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        data = self.data
        le = self.le
        if self.extended:
            if data:
                out += b"\x00" + len(data).to_bytes(2, "big") + data
                if le is not None:
                    out += (le & 0xFFFF).to_bytes(2, "big")
            elif le is not None:
                out += b"\x00" + (le & 0xFFFF).to_bytes(2, "big")
            return out
        if data:
            out += bytes((len(data),)) + data
        if le is not None:
            out += bytes((le & 0xFF,))
        return out

    @classmethod
    def decode(cls, raw: bytes) -> CommandApdu:
        """Parse one complete C-APDU.

        The length of C{raw} decides the case, as ISO 7816-4 5.1 says; an
        Lc that disagrees with the bytes that follow it is an error naming
        C{'Lc'} (never silently a different case).

        @raise ApduError: C{raw} is not exactly one well-formed APDU.
        """
        n = len(raw)
        if n < 4:
            raise ApduError(
                f"{n} bytes; a C-APDU needs at least CLA INS P1 P2", field="header", offset=0
            )
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = n - 4
        if body == 0:
            return cls(cla, ins, p1, p2)
        b1 = raw[4]
        if body == 1:
            return cls(cla, ins, p1, p2, b"", b1 or 256, False)
        if b1:
            if body == 1 + b1:
                return cls(cla, ins, p1, p2, bytes(raw[5:]), None, False)
            if body == 2 + b1:
                return cls(cla, ins, p1, p2, bytes(raw[5:-1]), raw[-1] or 256, False)
            raise ApduError(
                f"Lc={b1} announces {b1} data bytes but {body - 1} bytes follow"
                f" (expected {b1}, or {b1 + 1} with Le)",
                field="Lc",
                offset=4,
            )
        if body == 2:
            raise ApduError(
                "short Lc 00 is invalid and an extended length needs 3 bytes, found 2",
                field="Lc",
                offset=4,
            )
        ext = (raw[5] << 8) | raw[6]
        if body == 3:
            return cls(cla, ins, p1, p2, b"", ext or 65536, True)
        if ext == 0:
            raise ApduError(
                f"extended Lc 0000 is invalid ({body - 3} bytes follow it)",
                field="Lc",
                offset=4,
            )
        if body == 3 + ext:
            return cls(cla, ins, p1, p2, bytes(raw[7:]), None, True)
        if body == 5 + ext:
            le = (raw[-2] << 8) | raw[-1]
            return cls(cla, ins, p1, p2, bytes(raw[7:-2]), le or 65536, True)
        raise ApduError(
            f"extended Lc={ext} announces {ext} data bytes but {body - 3} bytes follow"
            f" (expected {ext}, or {ext + 2} with Le)",
            field="Lc",
            offset=4,
        )

    @classmethod
    def from_hex(cls, text: str) -> CommandApdu:
        """Parse a C-APDU written in hex, spaces allowed (C{"00 A4 04 00 00"}).

        @raise ApduError: bad hex (field C{'hex'}, with the character offset)
            or a malformed APDU.
        """
        return cls.decode(_from_hex(text, "hex"))


_DECODED: Final[dict[bytes, CommandApdu]] = {}
_DECODED_MAX: Final = 256
_DECODED_LENGTH: Final = 4 + 1 + MAX_SHORT_DATA + 1


def decode_command(raw: bytes) -> CommandApdu:
    """L{CommandApdu.decode}, remembering the last short C-APDUs decoded.

    A platform's C-APDU is read by the codec, checked against what the
    service may reach (twice: before a rate token is spent, then as it is
    sent) and encoded into a script: the same bytes decoded four times per
    command.  The values are frozen, so one decoding serves them all.  Only
    short APDUs (at most 261 bytes) are kept, at most 256 of them, so the
    memory is bounded whatever a peer sends; errors are never kept.

    @raise ApduError: as L{CommandApdu.decode}.
    """
    if type(raw) is not bytes or len(raw) > _DECODED_LENGTH:
        return CommandApdu.decode(raw)
    apdu = _DECODED.get(raw)
    if apdu is None:
        apdu = CommandApdu.decode(raw)
        if len(_DECODED) >= _DECODED_MAX:
            del _DECODED[next(iter(_DECODED))]
        _DECODED[raw] = apdu
    return apdu


def _check_response_data(_: object, __: object, value: bytes) -> None:
    if len(value) > MAX_EXTENDED_LE:
        raise ApduError(f"{len(value)} bytes, more than {MAX_EXTENDED_LE}", field="data")


def _check_sw(_: object, __: object, value: int) -> None:
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise ApduError(f"must be an int in 0..0xFFFF, got {value!r}", field="sw")


@attrs.frozen(repr=False)
class ResponseApdu:
    """A response APDU (R-APDU): response data and the status word.

    @ivar data: the response data field (at most 65536 bytes).
    @ivar sw: the status word, C{SW1 << 8 | SW2}.
    """

    data: bytes = attrs.field(converter=_as_bytes, validator=_check_response_data)
    sw: int = attrs.field(validator=_check_sw)

    def __repr__(self) -> str:
        return f"ResponseApdu(data=hex'{self.data.hex()}', sw=0x{self.sw:04X})"

    @property
    def sw1(self) -> int:
        """The first status byte (the class of the outcome)."""
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        """The second status byte (detail, or a length for 61XX/6CXX/91XX)."""
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        """Whether the command executed normally.

        C{9000}, and the normal endings that only announce pending data:
        C{61XX}/C{9FXX} (GET RESPONSE) and C{91XX} (proactive command to
        FETCH).  Warnings (C{62XX}, C{63XX}) and errors are not ok.
        """
        return sw_is_success(self.sw)

    @property
    def meaning(self) -> str:
        """The status word in words; see L{describe_sw}."""
        return describe_sw(self.sw)

    def encode(self) -> bytes:
        """The R-APDU's bytes: data, then SW1 SW2."""
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def decode(cls, raw: bytes) -> ResponseApdu:
        """Parse an R-APDU: everything before the last two bytes is data.

        @raise ApduError: fewer than two bytes, or more data than an
            extended Le can ask for.
        """
        n = len(raw)
        if n < 2:
            raise ApduError(f"{n} bytes; an R-APDU ends with SW1 SW2", field="sw", offset=0)
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])

    @classmethod
    def from_hex(cls, text: str) -> ResponseApdu:
        """Parse an R-APDU written in hex, spaces allowed (C{"6A 88"})."""
        return cls.decode(_from_hex(text, "hex"))
