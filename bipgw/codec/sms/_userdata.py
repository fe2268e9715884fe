"""TP-UDL and TP-UD: the user data, with or without a header, in any alphabet.

The one subtle rule (3GPP TS 23.040 section 9.2.3.16/9.2.3.24): for the
uncompressed GSM 7-bit alphabet TP-UDL counts I{septets}, and the header
counts as C{ceil(8 * header_octets / 7)} septets, the text starting after
C{fill = 7 * that - 8 * header_octets} zero bits; for every other coding
TP-UDL counts octets.  Both the TPDU codec and callers handing TP-UD to SMPP
(C{short_message} with the UDHI bit in C{esm_class}) use these functions.

Throughout, the I{body} is the user data after the header: octets for 8-bit,
UCS2 and compressed data; unpacked septets (one value 0..127 per byte) for
GSM 7-bit, so that the septet count is its length.
"""

from __future__ import annotations

from typing import Final

from bipgw.codec.sms._dcs import classify_dcs
from bipgw.codec.sms._error import SmsError
from bipgw.codec.sms._gsm7 import pack_septets, unpack_septets
from bipgw.codec.sms._udh import UserDataHeader

__all__ = ["MAX_UD_OCTETS", "MAX_UD_SEPTETS", "decode_user_data", "encode_user_data"]

#: The TP-UD of one SM holds at most 140 octets ...
MAX_UD_OCTETS: Final = 140
#: ... which is 160 septets of 7-bit text.
MAX_UD_SEPTETS: Final = 160


def _header_septets(header_octets: int) -> tuple[int, int]:
    """Septets a header occupies, and the fill bits after it."""
    septets = (8 * header_octets + 6) // 7
    return septets, 7 * septets - 8 * header_octets


def user_data_length(dcs: int, header: UserDataHeader | None, body: bytes) -> int:
    """The TP-UDL for this user data, checking it fits one SM.

    @raise SmsError: when the user data exceeds 140 octets / 160 septets, or
        a 7-bit body holds a value above C{7F}.
    """
    coding = classify_dcs(dcs)
    header_octets = len(header.encode()) if header is not None else 0
    if coding.counts_septets:
        for position, value in enumerate(body):
            if value > 0x7F:
                raise SmsError(
                    f"value {value:#04x} in 7-bit user data is not a septet",
                    field="TP-UD",
                    offset=position,
                )
        udl = _header_septets(header_octets)[0] + len(body)
        if udl > MAX_UD_SEPTETS:
            raise SmsError(f"{udl} septets exceed {MAX_UD_SEPTETS}", field="TP-UDL")
        return udl
    udl = header_octets + len(body)
    if udl > MAX_UD_OCTETS:
        raise SmsError(f"{udl} octets exceed {MAX_UD_OCTETS}", field="TP-UDL")
    return udl


def encode_user_data(dcs: int, header: UserDataHeader | None, body: bytes) -> tuple[int, bytes]:
    """Encode user data for TP-DCS C{dcs}.

    @return: TP-UDL and the TP-UD octets (header first, then the body,
        packed after the fill bits for 7-bit).
    @raise SmsError: as L{user_data_length}.
    """
    udl = user_data_length(dcs, header, body)
    head = header.encode() if header is not None else b""
    if classify_dcs(dcs).counts_septets:
        return udl, head + pack_septets(body, _header_septets(len(head))[1])
    return udl, head + body


def decode_user_data(
    dcs: int, udhi: bool, udl: int, user_data: bytes, *, offset: int = 0
) -> tuple[UserDataHeader | None, bytes]:
    """Decode TP-UD octets given TP-DCS, TP-UDHI and TP-UDL.

    C{user_data} must be exactly the octets TP-UDL implies; a mismatch
    means the length field lies, and is reported against C{TP-UDL}.

    @param offset: where C{user_data} starts in the enclosing TPDU, so that
        error offsets point into the TPDU.
    @return: the header (C{None} without TP-UDHI) and the body.
    @raise SmsError: for a length mismatch, a UDL above the maximum, or a
        header that does not fit.
    """
    septets = classify_dcs(dcs).counts_septets
    limit, unit = (MAX_UD_SEPTETS, "septets") if septets else (MAX_UD_OCTETS, "octets")
    if udl > limit:
        raise SmsError(f"{udl} {unit} exceed {limit}", field="TP-UDL", offset=offset - 1)
    octets = (7 * udl + 7) // 8 if septets else udl
    if len(user_data) != octets:
        problem = "only" if len(user_data) < octets else "but"
        raise SmsError(
            f"{udl} {unit} need {octets} octets of TP-UD, {problem} {len(user_data)} present",
            field="TP-UDL",
            offset=offset - 1,
        )
    header: UserDataHeader | None = None
    header_octets = 0
    if udhi:
        if not user_data:
            raise SmsError("no UDHL octet although TP-UDHI is set", field="TP-UDHL", offset=offset)
        header_octets = 1 + user_data[0]
        if septets and _header_septets(header_octets)[0] > udl:
            raise SmsError(
                f"a {header_octets}-octet header does not fit in {udl} septets",
                field="TP-UDHL",
                offset=offset,
            )
        try:
            header, _ = UserDataHeader.decode(user_data)
        except SmsError as e:
            raise SmsError(e.reason, field=e.field, offset=offset + (e.offset or 0)) from None
    rest = user_data[header_octets:]
    if septets:
        header_septets, fill = _header_septets(header_octets) if udhi else (0, 0)
        return header, unpack_septets(rest, udl - header_septets, fill)
    return header, bytes(rest)
