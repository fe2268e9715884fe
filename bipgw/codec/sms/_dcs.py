"""TP-DCS: which alphabet the user data uses, and the message class.

The alphabet decides whether TP-UDL counts septets or octets, so the TPDU
codec cannot parse user data without it; the class tells a handset where the
message goes (class 2 = to the (U)SIM, which is how SMS-PP data download
reaches the card).  Coding groups per 3GPP TS 23.038 section 4.
"""

from __future__ import annotations

import enum
from typing import Final

from attrs import frozen

from bipgw.codec.sms._error import SmsError

__all__ = ["DCS_CLASS2_8BIT", "PID_SIM_DATA_DOWNLOAD", "Alphabet", "DataCoding", "classify_dcs"]

#: TP-DCS of an SMS-PP secured packet: group 1111, 8-bit data, class 2.
DCS_CLASS2_8BIT: Final = 0xF6
#: TP-PID "(U)SIM data download" (TS 23.040 9.2.3.9), used with L{DCS_CLASS2_8BIT}.
PID_SIM_DATA_DOWNLOAD: Final = 0x7F


class Alphabet(enum.Enum):
    """The character set of the user data."""

    GSM7 = "gsm7"
    EIGHT_BIT = "8bit"
    UCS2 = "ucs2"


@frozen
class DataCoding:
    """What a TP-DCS octet says about the user data.

    @ivar alphabet: the character set.
    @ivar message_class: 0..3, or C{None} when the coding gives no class.
    @ivar compressed: the user data is compressed (TS 23.042); TP-UDL then
        counts octets even for the 7-bit alphabet.
    @ivar reserved: the octet is a reserved coding, which a receiver must
        treat as the GSM 7-bit default alphabet (TS 23.038 section 4).
    """

    alphabet: Alphabet
    message_class: int | None
    compressed: bool = False
    reserved: bool = False

    @property
    def counts_septets(self) -> bool:
        """C{True} when TP-UDL counts septets (uncompressed GSM 7-bit)."""
        return self.alphabet is Alphabet.GSM7 and not self.compressed


_CHARSETS: Final = (Alphabet.GSM7, Alphabet.EIGHT_BIT, Alphabet.UCS2)
_RESERVED: Final = DataCoding(Alphabet.GSM7, None, reserved=True)


def classify_dcs(dcs: int) -> DataCoding:
    """Classify a TP-DCS octet (TS 23.038 section 4).

    C{F6} and C{16} both give 8-bit data of class 2; C{00} gives the 7-bit
    default alphabet without a class; C{08} gives UCS2.

    @raise SmsError: when C{dcs} is not an octet value.
    """
    if not 0 <= dcs <= 0xFF:
        raise SmsError(f"{dcs} is not an octet value", field="TP-DCS")
    group = dcs >> 4
    if group <= 0b0111:
        # 00xx general data coding, 01xx the same marked for automatic deletion.
        charset = (dcs >> 2) & 0x03
        if charset == 0b11:
            return _RESERVED
        return DataCoding(
            _CHARSETS[charset],
            dcs & 0x03 if dcs & 0x10 else None,
            compressed=bool(dcs & 0x20),
        )
    if group == 0b1111:
        # Data coding / message class: bit 3 reserved, bit 2 alphabet, bits 1-0 class.
        return DataCoding(Alphabet.EIGHT_BIT if dcs & 0x04 else Alphabet.GSM7, dcs & 0x03)
    if group in (0b1100, 0b1101):
        # Message waiting indication groups: text in the default alphabet.
        return DataCoding(Alphabet.GSM7, None)
    if group == 0b1110:
        return DataCoding(Alphabet.UCS2, None)
    return _RESERVED
