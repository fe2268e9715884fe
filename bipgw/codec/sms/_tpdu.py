"""SMS-DELIVER and SMS-SUBMIT TPDUs (3GPP TS 23.040 sections 9.2.2.1 and 9.2.2.2).

An OTA command reaches the card as an SMS-DELIVER (inside the SMS-PP
download envelope); a card that answers "PoR by SMS-SUBMIT" sends an
SMS-SUBMIT.  The message type indicator means different things in each
direction (C{00} is DELIVER towards the phone but DELIVER-REPORT from it), so
each type has its own C{decode} and the caller says which one it expects.

First octet bits: DELIVER C{RP UDHI SRI - LP MMS MTI(00)};
SUBMIT C{RP UDHI SRR VPF(2) RD MTI(01)}.
"""

from __future__ import annotations

from typing import Final

from attrs import field, frozen

from bipgw.codec.sms._address import Address, decode_tp_address, encode_tp_address
from bipgw.codec.sms._error import SmsError
from bipgw.codec.sms._time import (
    EnhancedValidity,
    RelativeValidity,
    ServiceCentreTimestamp,
    ValidityPeriod,
)
from bipgw.codec.sms._udh import UserDataHeader
from bipgw.codec.sms._userdata import decode_user_data, encode_user_data, user_data_length

__all__ = ["SmsDeliver", "SmsSubmit"]

_MTI_DELIVER: Final = 0b00
_MTI_SUBMIT: Final = 0b01
_RP: Final = 0x80
_UDHI: Final = 0x40
_SRI_SRR: Final = 0x20
_LP: Final = 0x08
_MMS_RD: Final = 0x04
_VPF_SHIFT: Final = 3
_VPF_NONE, _VPF_ENHANCED, _VPF_RELATIVE, _VPF_ABSOLUTE = 0b00, 0b01, 0b10, 0b11


def _check_octet(_: object, attribute: object, value: int) -> None:
    if not 0 <= value <= 0xFF:
        name = getattr(attribute, "name", "octet")
        raise SmsError(f"{value} is not an octet value", field=f"TP-{name.upper()}")


class _Reader:
    """Reads a TPDU front to back, naming the field that runs out."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def octet(self, field_name: str) -> int:
        if self.pos >= len(self.data):
            raise SmsError("truncated: the TPDU ends here", field=field_name, offset=self.pos)
        value = self.data[self.pos]
        self.pos += 1
        return value


def _user_data_tail(tpdu: _Reader, dcs: int, udhi: bool) -> tuple[UserDataHeader | None, bytes]:
    udl = tpdu.octet("TP-UDL")
    return decode_user_data(dcs, udhi, udl, tpdu.data[tpdu.pos :], offset=tpdu.pos)


def _check_mti(first: int, expected: int, name: str) -> None:
    if first & 0x03 != expected:
        raise SmsError(
            f"message type {first & 0x03:02b} is not {name} ({expected:02b})",
            field="TP-MTI",
            offset=0,
        )


@frozen(kw_only=True)
class SmsDeliver:
    """An SMS-DELIVER TPDU (SC to MS).

    @ivar originating_address: TP-OA, the sender.
    @ivar pid: TP-PID (C{7F} for (U)SIM data download).
    @ivar dcs: TP-DCS (C{F6} for class 2 8-bit data).
    @ivar scts: TP-SCTS, when the SMSC received the message.
    @ivar user_data_header: the UDH, present exactly when TP-UDHI is set.
    @ivar user_data: the body after the header: octets, or unpacked septets
        for the GSM 7-bit alphabet (see L{bipgw.codec.sms.decode_user_data}).
    @ivar mms: the TP-MMS bit as sent; set means "no more messages waiting".
    @ivar lp: TP-LP, loop prevention.
    @ivar sri: TP-SRI, a status report will be returned to the sender.
    @ivar rp: TP-RP, a reply path exists.
    """

    originating_address: Address
    scts: ServiceCentreTimestamp
    pid: int = field(default=0, validator=_check_octet)
    dcs: int = field(default=0, validator=_check_octet)
    user_data_header: UserDataHeader | None = None
    user_data: bytes = field(default=b"", converter=bytes)
    mms: bool = False
    lp: bool = False
    sri: bool = False
    rp: bool = False

    def __attrs_post_init__(self) -> None:
        user_data_length(self.dcs, self.user_data_header, self.user_data)

    @property
    def udhi(self) -> bool:
        """TP-UDHI: whether the user data starts with a header."""
        return self.user_data_header is not None

    def encode(self) -> bytes:
        """The TPDU octets."""
        first = (
            _MTI_DELIVER
            | (_MMS_RD if self.mms else 0)
            | (_LP if self.lp else 0)
            | (_SRI_SRR if self.sri else 0)
            | (_UDHI if self.udhi else 0)
            | (_RP if self.rp else 0)
        )
        udl, ud = encode_user_data(self.dcs, self.user_data_header, self.user_data)
        return (
            bytes([first])
            + encode_tp_address(self.originating_address)
            + bytes([self.pid, self.dcs])
            + self.scts.encode()
            + bytes([udl])
            + ud
        )

    @classmethod
    def decode(cls, data: bytes) -> SmsDeliver:
        """Decode a complete SMS-DELIVER TPDU.

        Bit 4 (C{10}) of the first octet, unused in a DELIVER, is ignored, as
        TS 23.040 asks of a receiver.

        @raise SmsError: naming the field that is wrong: a different
            TP-MTI, a truncated field, or a TP-UDL that disagrees with the
            octets present.
        """
        tpdu = _Reader(bytes(data))
        first = tpdu.octet("TP-MTI")
        _check_mti(first, _MTI_DELIVER, "SMS-DELIVER")
        address, tpdu.pos = decode_tp_address(tpdu.data, tpdu.pos, field_name="TP-OA")
        pid = tpdu.octet("TP-PID")
        dcs = tpdu.octet("TP-DCS")
        scts = ServiceCentreTimestamp.decode(tpdu.data, tpdu.pos)
        tpdu.pos += 7
        header, body = _user_data_tail(tpdu, dcs, bool(first & _UDHI))
        return cls(
            originating_address=address,
            scts=scts,
            pid=pid,
            dcs=dcs,
            user_data_header=header,
            user_data=body,
            mms=bool(first & _MMS_RD),
            lp=bool(first & _LP),
            sri=bool(first & _SRI_SRR),
            rp=bool(first & _RP),
        )


def _check_validity(_: object, __: object, value: ValidityPeriod) -> None:
    if value is not None and not isinstance(
        value, RelativeValidity | ServiceCentreTimestamp | EnhancedValidity
    ):
        raise SmsError(f"{value!r} is not a validity period", field="TP-VP")


@frozen(kw_only=True)
class SmsSubmit:
    """An SMS-SUBMIT TPDU (MS to SC).

    @ivar destination_address: TP-DA, the recipient.
    @ivar mr: TP-MR, the message reference, 0..255.
    @ivar pid: TP-PID.
    @ivar dcs: TP-DCS.
    @ivar validity_period: TP-VP; its type sets TP-VPF (C{None}: not
        present; L{RelativeValidity}; L{ServiceCentreTimestamp} for the
        absolute format; L{EnhancedValidity}).
    @ivar user_data_header: the UDH, present exactly when TP-UDHI is set.
    @ivar user_data: the body after the header, as in L{SmsDeliver}.
    @ivar rd: TP-RD, reject duplicates.
    @ivar srr: TP-SRR, a status report is requested.
    @ivar rp: TP-RP, a reply path is requested.
    """

    destination_address: Address
    mr: int = field(default=0, validator=_check_octet)
    pid: int = field(default=0, validator=_check_octet)
    dcs: int = field(default=0, validator=_check_octet)
    validity_period: ValidityPeriod = field(default=None, validator=_check_validity)
    user_data_header: UserDataHeader | None = None
    user_data: bytes = field(default=b"", converter=bytes)
    rd: bool = False
    srr: bool = False
    rp: bool = False

    def __attrs_post_init__(self) -> None:
        user_data_length(self.dcs, self.user_data_header, self.user_data)

    @property
    def udhi(self) -> bool:
        """TP-UDHI: whether the user data starts with a header."""
        return self.user_data_header is not None

    @property
    def vpf(self) -> int:
        """TP-VPF: 0 none, 1 enhanced, 2 relative, 3 absolute (as the two bits read)."""
        vp = self.validity_period
        if vp is None:
            return _VPF_NONE
        if isinstance(vp, RelativeValidity):
            return _VPF_RELATIVE
        if isinstance(vp, ServiceCentreTimestamp):
            return _VPF_ABSOLUTE
        return _VPF_ENHANCED

    def _vp_octets(self) -> bytes:
        vp = self.validity_period
        if vp is None:
            return b""
        if isinstance(vp, RelativeValidity):
            return bytes([vp.value])
        if isinstance(vp, ServiceCentreTimestamp):
            return vp.encode()
        return vp.raw

    def encode(self) -> bytes:
        """The TPDU octets."""
        first = (
            _MTI_SUBMIT
            | (_MMS_RD if self.rd else 0)
            | (self.vpf << _VPF_SHIFT)
            | (_SRI_SRR if self.srr else 0)
            | (_UDHI if self.udhi else 0)
            | (_RP if self.rp else 0)
        )
        udl, ud = encode_user_data(self.dcs, self.user_data_header, self.user_data)
        return (
            bytes([first, self.mr])
            + encode_tp_address(self.destination_address)
            + bytes([self.pid, self.dcs])
            + self._vp_octets()
            + bytes([udl])
            + ud
        )

    @classmethod
    def decode(cls, data: bytes) -> SmsSubmit:
        """Decode a complete SMS-SUBMIT TPDU.

        @raise SmsError: naming the field that is wrong, as
            L{SmsDeliver.decode}.
        """
        tpdu = _Reader(bytes(data))
        first = tpdu.octet("TP-MTI")
        _check_mti(first, _MTI_SUBMIT, "SMS-SUBMIT")
        mr = tpdu.octet("TP-MR")
        address, tpdu.pos = decode_tp_address(tpdu.data, tpdu.pos, field_name="TP-DA")
        pid = tpdu.octet("TP-PID")
        dcs = tpdu.octet("TP-DCS")
        vpf = (first >> _VPF_SHIFT) & 0x03
        validity: ValidityPeriod
        if vpf == _VPF_NONE:
            validity = None
        elif vpf == _VPF_RELATIVE:
            validity = RelativeValidity(tpdu.octet("TP-VP"))
        elif vpf == _VPF_ABSOLUTE:
            validity = ServiceCentreTimestamp.decode(tpdu.data, tpdu.pos, field_name="TP-VP")
            tpdu.pos += 7
        else:
            raw = tpdu.data[tpdu.pos : tpdu.pos + 7]
            if len(raw) != 7:
                raise SmsError(
                    f"enhanced format needs 7 octets, only {len(raw)} left",
                    field="TP-VP",
                    offset=tpdu.pos,
                )
            validity = EnhancedValidity(raw)
            tpdu.pos += 7
        header, body = _user_data_tail(tpdu, dcs, bool(first & _UDHI))
        return cls(
            destination_address=address,
            mr=mr,
            pid=pid,
            dcs=dcs,
            validity_period=validity,
            user_data_header=header,
            user_data=body,
            rd=bool(first & _MMS_RD),
            srr=bool(first & _SRI_SRR),
            rp=bool(first & _RP),
        )
