"""Addresses: the TP address fields and the RP (SMSC) address.

Two codings share one value type.  The transfer-layer fields TP-OA/TP-DA
(3GPP TS 23.040 section 9.1.2.5) count their length in I{semi-octets} (digits)
and may carry an alphanumeric name (TON 5) in GSM 7-bit; the relay-layer
address (TS 24.011 section 8.2.5, the SMSC address in front of a PDU-mode
TPDU and in the SMS-PP download envelope) counts its length in I{octets},
TON/NPI octet included, and only carries digits.  Mixing them up is a classic
off-by-a-factor bug, so they are separate functions over the same L{Address}.
"""

from __future__ import annotations

from typing import Final

from attrs import field, frozen

from bipgw.codec.sms._error import SmsError
from bipgw.codec.sms._gsm7 import gsm7_septets, pack_septets, septets_to_text, unpack_septets

__all__ = [
    "NPI_ISDN",
    "NPI_UNKNOWN",
    "TON_ALPHANUMERIC",
    "TON_INTERNATIONAL",
    "TON_NATIONAL",
    "TON_UNKNOWN",
    "Address",
    "decode_rp_address",
    "decode_tp_address",
    "encode_rp_address",
    "encode_tp_address",
]

TON_UNKNOWN: Final = 0
TON_INTERNATIONAL: Final = 1
TON_NATIONAL: Final = 2
#: Type of number 5: the address is a name in GSM 7-bit, not digits.
TON_ALPHANUMERIC: Final = 5
NPI_UNKNOWN: Final = 0
#: Numbering plan 1: ISDN/telephone (E.164), the usual one for MSISDNs.
NPI_ISDN: Final = 1

# Semi-octet values 0-9 are digits, A-E these symbols, F is the filler (TS 23.040 9.1.2.3).
_SEMI_OCTETS: Final = "0123456789*#abc"
_NIBBLE = {ch: i for i, ch in enumerate(_SEMI_OCTETS)}
_FILLER: Final = 0xF
_MAX_DIGITS: Final = 20  # 10 octets of address value
_MAX_ALPHA_SEPTETS: Final = 11  # 10 octets hold 11 septets (77 bits)
_MAX_RP_LENGTH: Final = 11  # TON/NPI octet + 10 octets


def _check_ton(_: object, __: object, value: int) -> None:
    if not 0 <= value <= 7:
        raise SmsError(f"type of number must be 0..7, not {value}", field="TON")


def _check_npi(_: object, __: object, value: int) -> None:
    if not 0 <= value <= 15:
        raise SmsError(f"numbering plan must be 0..15, not {value}", field="NPI")


@frozen
class Address:
    """A phone number (or alphanumeric name) with its type and numbering plan.

    @ivar ton: type of number, 0..7 (1 international, 5 alphanumeric).
    @ivar npi: numbering plan identification, 0..15 (1 ISDN/E.164).
    @ivar digits: the number as digits C{0-9} plus the semi-octet symbols
        C{* # a b c}; without a leading C{+} (the TON says "international").
        With TON 5 it is the name, in characters of the GSM 7-bit alphabet.
    """

    ton: int = field(validator=_check_ton)
    npi: int = field(validator=_check_npi)
    digits: str

    def __attrs_post_init__(self) -> None:
        if self.ton == TON_ALPHANUMERIC:
            if len(gsm7_septets(self.digits)) > _MAX_ALPHA_SEPTETS:
                raise SmsError(
                    f"alphanumeric address {self.digits!r} needs more than"
                    f" {_MAX_ALPHA_SEPTETS} septets",
                    field="address",
                )
            return
        if len(self.digits) > _MAX_DIGITS:
            raise SmsError(
                f"{len(self.digits)} digits exceed the maximum of {_MAX_DIGITS}", field="address"
            )
        for position, ch in enumerate(self.digits):
            if ch not in _NIBBLE:
                raise SmsError(
                    f"character {ch!r} at position {position} is not a semi-octet digit"
                    f" (allowed: {_SEMI_OCTETS})",
                    field="address",
                )

    @property
    def type_of_address(self) -> int:
        """The TON/NPI octet (bit 8 always set)."""
        return 0x80 | (self.ton << 4) | self.npi


def _bcd(digits: str) -> bytes:
    nibbles = [_NIBBLE[ch] for ch in digits]
    if len(nibbles) % 2:
        nibbles.append(_FILLER)
    return bytes(lo | (hi << 4) for lo, hi in zip(nibbles[::2], nibbles[1::2], strict=True))


def _unbcd(value: bytes, count: int, field_name: str, offset: int) -> str:
    """Read C{count} semi-octets (low nibble first); a filler inside is an error."""
    out: list[str] = []
    for i in range(count):
        octet = value[i // 2]
        nibble = (octet >> 4) if i % 2 else (octet & 0x0F)
        if nibble == _FILLER:
            raise SmsError(
                f"filler semi-octet F at digit {i + 1} of {count}",
                field=field_name,
                offset=offset + i // 2,
            )
        out.append(_SEMI_OCTETS[nibble])
    return "".join(out)


def _check_toa(toa: int, field_name: str, offset: int) -> None:
    # TS 23.040 9.1.2.5: bit 8 of the type-of-address octet is always 1.
    if not toa & 0x80:
        raise SmsError(
            f"type-of-address octet {toa:02x} lacks bit 8 (always 1)",
            field=field_name,
            offset=offset,
        )


def encode_tp_address(address: Address) -> bytes:
    """Encode a TP-OA/TP-DA/TP-RA: length in semi-octets, TON/NPI, value.

    An alphanumeric address (TON 5) is packed GSM 7-bit and its length is
    the number of semi-octets the septets actually use (C{ceil(7n/4)}), so a
    receiver computing C{length * 4 // 7} septets does not invent a trailing
    C{@}.
    """
    if address.ton == TON_ALPHANUMERIC:
        septets = gsm7_septets(address.digits)
        value = pack_septets(septets)
        length = (7 * len(septets) + 3) // 4
    else:
        value = _bcd(address.digits)
        length = len(address.digits)
    return bytes([length, address.type_of_address]) + value


def decode_tp_address(
    data: bytes, offset: int = 0, *, field_name: str = "TP-OA"
) -> tuple[Address, int]:
    """Decode a TP address starting at C{offset}.

    @param field_name: the field reported in errors (C{TP-OA}, C{TP-DA} ...).
    @return: the address and the offset just after it.
    @raise SmsError: when the field is truncated, longer than 20 semi-octets,
        has a filler inside the digits or a type-of-address without bit 8.
    """
    if len(data) - offset < 2:
        raise SmsError("truncated: no length and type-of-address", field=field_name, offset=offset)
    length = data[offset]
    toa = data[offset + 1]
    if length > _MAX_DIGITS:
        raise SmsError(
            f"length {length} semi-octets exceeds {_MAX_DIGITS}", field=field_name, offset=offset
        )
    _check_toa(toa, field_name, offset + 1)
    octets = (length + 1) // 2
    start = offset + 2
    end = start + octets
    if end > len(data):
        raise SmsError(
            f"length {length} needs {octets} octets, only {len(data) - start} left",
            field=field_name,
            offset=offset,
        )
    value = data[start:end]
    ton = (toa >> 4) & 0x07
    npi = toa & 0x0F
    if ton == TON_ALPHANUMERIC:
        count = length * 4 // 7
        septets = unpack_septets(value[: (7 * count + 7) // 8], count)
        return Address(ton, npi, septets_to_text(septets)), end
    return Address(ton, npi, _unbcd(value, length, field_name, start)), end


def encode_rp_address(address: Address | None) -> bytes:
    """Encode an RP/SMSC address: length in octets (TON/NPI included), TON/NPI, BCD.

    C{None} gives the single octet C{00} ("no address", e.g. "use the SMSC
    configured in the phone" in front of a PDU-mode TPDU).

    @raise SmsError: for an alphanumeric address, which this coding cannot carry.
    """
    if address is None:
        return b"\x00"
    if address.ton == TON_ALPHANUMERIC:
        raise SmsError("an RP address cannot be alphanumeric", field="RP address")
    value = _bcd(address.digits)
    return bytes([1 + len(value), address.type_of_address]) + value


def decode_rp_address(
    data: bytes, offset: int = 0, *, field_name: str = "RP address"
) -> tuple[Address | None, int]:
    """Decode an RP/SMSC address at C{offset}; length C{00} gives C{None}.

    The digit count is implied: every semi-octet is a digit except a final
    high-nibble filler C{F}.

    @return: the address (or C{None}) and the offset just after it.
    @raise SmsError: when truncated, longer than 11 octets, alphanumeric, or
        with a filler anywhere but the last semi-octet.
    """
    if len(data) - offset < 1:
        raise SmsError("truncated: no length octet", field=field_name, offset=offset)
    length = data[offset]
    if length == 0:
        return None, offset + 1
    if length > _MAX_RP_LENGTH:
        raise SmsError(
            f"length {length} octets exceeds {_MAX_RP_LENGTH}", field=field_name, offset=offset
        )
    end = offset + 1 + length
    if end > len(data):
        raise SmsError(
            f"length {length} needs {length} octets, only {len(data) - offset - 1} left",
            field=field_name,
            offset=offset,
        )
    toa = data[offset + 1]
    _check_toa(toa, field_name, offset + 1)
    ton = (toa >> 4) & 0x07
    if ton == TON_ALPHANUMERIC:
        raise SmsError("an RP address cannot be alphanumeric", field=field_name, offset=offset + 1)
    value = data[offset + 2 : end]
    count = 2 * len(value)
    if value and value[-1] >> 4 == _FILLER:
        count -= 1
    return Address(ton, toa & 0x0F, _unbcd(value, count, field_name, offset + 2)), end
