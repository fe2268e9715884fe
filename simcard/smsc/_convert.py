# -*- test-case-name: tests.unit.simcard.test_smsc_convert -*-
"""What the SMSC does to a message between SMPP and the air interface.

A C{submit_sm} becomes the SMS-DELIVER TPDU the handset (and so the card's
SMS-PP download) receives; a card's SMS-SUBMIT (a PoR) becomes a
C{deliver_sm} for the ESME; a final delivery state becomes an SMPP 3.4
Appendix B receipt.  These are pure functions over the C{bipgw.codec}
values, so the conversion can be checked against the public vectors without
any session around it.

Conventions of this SMSC (SMPP leaves them to the implementation):

  - C{data_coding} 0 ("SMSC default alphabet") is GSM 03.38 I{unpacked}: one
    septet per octet, as most SMSCs do; 1 (IA5) is mapped to GSM 7-bit, 3
    (Latin-1) to UCS2; 2 and 4 (octet unspecified) become TP-DCS C{04}
    (8-bit, no class: a real SMSC does not invent class 2); 8 is UCS2;
    C{C0}-C{FF} are GSM codings and pass through as the TP-DCS (C{F6} for
    OTA).  The other SMPP codings (JIS, Cyrillic ...) are refused.
  - TP-SCTS is the clock's time in UTC; TP-MMS is 0 and TP-RP copies
    esm_class bit 7, which gives the first octet C{40} of the public
    C{sms_pp_framing} vector for an OTA push.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

from bipgw.codec.smpp import (
    CommandStatus,
    DeliverSm,
    DeliveryReceipt,
    MessageState,
    NetworkErrorCode,
    SubmitSm,
)
from bipgw.codec.sms import (
    Address,
    Alphabet,
    ServiceCentreTimestamp,
    SmsDeliver,
    SmsError,
    SmsSubmit,
    UserDataHeader,
    classify_dcs,
    gsm7_septets,
)

#: esm_class bits.
ESM_UDHI: Final = 0x40
ESM_REPLY_PATH: Final = 0x80
ESM_RECEIPT: Final = 0x04
_ESM_TYPE_MASK: Final = 0x3C

#: The longest short_message; longer content travels in message_payload.
MAX_SHORT_MESSAGE: Final = 254
#: network_error_code network type "GSM" and the MAP errors used in receipts.
NETWORK_GSM: Final = 3
MAP_UNKNOWN_SUBSCRIBER: Final = 1
MAP_DELIVERY_FAILURE: Final = 32

_S = CommandStatus
_TON_ALPHANUMERIC: Final = 5
_RECEIPT_TEXT: Final = 20


class SubmitRefusedError(ValueError):
    """A C{submit_sm} the SMSC will not accept, and the status that says why.

    @ivar status: the command_status for C{submit_sm_resp}.
    @ivar field: the SMPP field at fault, for the log line.
    @ivar reason: why, in words (never the field's value).
    """

    def __init__(self, status: int, field: str, reason: str) -> None:
        self.status = status
        self.field = field
        self.reason = reason
        super().__init__(f"submit_sm.{field}: {reason}")


def scts_at(seconds: float) -> ServiceCentreTimestamp:
    """The TP-SCTS for a clock reading: UTC, whole seconds, two-digit year.

    Built field by field (not via C{from_datetime}) so that any clock value
    a test injects, 0 included, gives a timestamp instead of an error.
    """
    when = datetime.datetime.fromtimestamp(int(max(seconds, 0)), datetime.UTC)
    return ServiceCentreTimestamp(
        when.year % 100, when.month, when.day, when.hour, when.minute, when.second, 0
    )


def receipt_time(seconds: float) -> datetime.datetime | None:
    """A clock reading as a receipt date, or C{None} outside the format's 2000-2099.

    Seconds are dropped: Appendix B dates are C{YYMMDDhhmm}, and ESME-side
    parsers that expect exactly ten digits are common.
    """
    try:
        when = datetime.datetime.fromtimestamp(int(seconds), datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if not 2000 <= when.year <= 2099:
        return None
    return when.replace(second=0, tzinfo=None)


def msisdn_digits(address: str) -> str:
    """An SMPP address as the plain digits the fleet keys cards by (no C{+})."""
    return address[1:] if address.startswith("+") else address


def _source_address(submit: SubmitSm) -> Address:
    digits = msisdn_digits(submit.source_addr)
    if not digits:
        raise SubmitRefusedError(_S.ESME_RINVSRCADR, "source_addr", "empty")
    if submit.source_addr_ton > 7:
        raise SubmitRefusedError(_S.ESME_RINVSRCTON, "source_addr_ton", "not a GSM type of number")
    if submit.source_addr_npi > 15:
        raise SubmitRefusedError(_S.ESME_RINVSRCNPI, "source_addr_npi", "not a GSM numbering plan")
    try:
        return Address(submit.source_addr_ton, submit.source_addr_npi, digits)
    except SmsError as e:
        raise SubmitRefusedError(_S.ESME_RINVSRCADR, "source_addr", e.reason) from None


def destination_msisdn(submit: SubmitSm) -> str:
    """The MSISDN a submission is for, as the router receives it.

    @raise SubmitRefusedError: empty, alphanumeric or not all digits.
    """
    digits = msisdn_digits(submit.destination_addr)
    if submit.dest_addr_ton == _TON_ALPHANUMERIC:
        raise SubmitRefusedError(
            _S.ESME_RINVDSTADR, "dest_addr_ton", "a handset has no name address"
        )
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise SubmitRefusedError(_S.ESME_RINVDSTADR, "destination_addr", "must be 1..20 digits")
    return digits


def _content(submit: SubmitSm) -> bytes:
    if submit.message_payload is not None:
        if submit.short_message:
            raise SubmitRefusedError(
                _S.ESME_RINVMSGLEN,
                "short_message",
                "sm_length must be 0 when message_payload is present",
            )
        return submit.message_payload
    return submit.short_message


def _septets_only(body: bytes) -> bytes:
    for position, value in enumerate(body):
        if value > 0x7F:
            raise SubmitRefusedError(
                _S.ESME_RINVMSGLEN,
                "short_message",
                f"octet {position} is not a GSM 7-bit septet (data_coding says 7-bit)",
            )
    return body


def _user_data(submit: SubmitSm) -> tuple[int, UserDataHeader | None, bytes]:
    """TP-DCS, UDH and body for a submission (see the module docstring)."""
    content = _content(submit)
    header: UserDataHeader | None = None
    body = content
    if submit.esm_class & ESM_UDHI:
        try:
            header, body = UserDataHeader.decode(content)
        except SmsError as e:
            raise SubmitRefusedError(
                _S.ESME_RINVESMCLASS, "short_message", f"UDHI set but no valid UDH: {e.reason}"
            ) from None
    coding = submit.data_coding
    if coding in (0x02, 0x04):
        return 0x04, header, body
    if coding == 0x08:
        return 0x08, header, body
    if coding == 0x00:
        return 0x00, header, _septets_only(body)
    if coding == 0x01:
        try:
            return 0x00, header, gsm7_septets(body.decode("ascii"))
        except (UnicodeDecodeError, SmsError):
            raise SubmitRefusedError(
                _S.ESME_RSUBMITFAIL, "short_message", "IA5 text has no GSM 7-bit coding"
            ) from None
    if coding == 0x03:
        return 0x08, header, body.decode("latin-1").encode("utf-16-be")
    if coding >= 0xC0:
        if classify_dcs(coding).counts_septets:
            body = _septets_only(body)
        return coding, header, body
    raise SubmitRefusedError(
        _S.ESME_RSUBMITFAIL, "data_coding", f"0x{coding:02X} is not supported by this SMSC"
    )


def deliver_tpdu_for(submit: SubmitSm, scts: ServiceCentreTimestamp) -> tuple[str, bytes]:
    """The destination MSISDN and the SMS-DELIVER TPDU for a submission.

    The originating address is the ESME's source address (TON/NPI as sent),
    TP-PID is protocol_id, TP-DCS follows data_coding, the user data is
    short_message or message_payload with the UDH when esm_class has UDHI.

    @raise SubmitRefusedError: with the status to answer (bad addresses, a
        message type other than "default", an unsupported coding, user data
        over the 140 octets of one SM ...).
    """
    if submit.esm_class & _ESM_TYPE_MASK:
        raise SubmitRefusedError(
            _S.ESME_RINVESMCLASS, "esm_class", "only the default message type is accepted"
        )
    destination = destination_msisdn(submit)
    originator = _source_address(submit)
    dcs, header, body = _user_data(submit)
    try:
        tpdu = SmsDeliver(
            originating_address=originator,
            scts=scts,
            pid=submit.protocol_id,
            dcs=dcs,
            user_data_header=header,
            user_data=body,
            rp=bool(submit.esm_class & ESM_REPLY_PATH),
        )
    except SmsError as e:
        raise SubmitRefusedError(_S.ESME_RINVMSGLEN, "short_message", e.reason) from None
    return destination, tpdu.encode()


def smpp_data_coding(tp_dcs: int) -> int:
    """The data_coding that tells an ESME what a TP-DCS means.

    GSM codings C{C0}-C{FF} (C{F6} for a PoR) are valid SMPP values as they
    are; general-group codings map to 0 (GSM, unpacked), 4 (8-bit) or 8 (UCS2).
    """
    if tp_dcs >= 0xC0:
        return tp_dcs
    alphabet = classify_dcs(tp_dcs).alphabet
    if alphabet is Alphabet.EIGHT_BIT:
        return 0x04
    if alphabet is Alphabet.UCS2:
        return 0x08
    return 0x00


def _back_to_submitter(submit: SubmitSm) -> dict[str, Any]:
    """The address fields of a C{deliver_sm} that answers C{submit}: its ends swapped."""
    return {
        "source_addr_ton": submit.dest_addr_ton,
        "source_addr_npi": submit.dest_addr_npi,
        "source_addr": submit.destination_addr,
        "dest_addr_ton": submit.source_addr_ton,
        "dest_addr_npi": submit.source_addr_npi,
        "destination_addr": submit.source_addr,
    }


def _short_or_payload(content: bytes) -> tuple[bytes, bytes | None]:
    if len(content) <= MAX_SHORT_MESSAGE:
        return content, None
    return b"", content


def mo_deliver_sm(from_msisdn: str, to_address: str, tpdu: bytes) -> DeliverSm:
    """The C{deliver_sm} (sequence_number 0, set when sent) for a card's SMS-SUBMIT.

    esm_class gets UDHI when the TPDU has a header (a PoR's C{02 71 00}),
    protocol_id and data_coding follow TP-PID and TP-DCS, and content over
    254 octets goes in message_payload.

    @raise SmsError: the TPDU is not a valid SMS-SUBMIT.
    """
    submit = SmsSubmit.decode(tpdu)
    header = submit.user_data_header
    content = (header.encode() if header is not None else b"") + submit.user_data
    destination = submit.destination_address
    short, payload = _short_or_payload(content)
    return DeliverSm(
        0,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=msisdn_digits(from_msisdn),
        dest_addr_ton=destination.ton,
        dest_addr_npi=destination.npi,
        destination_addr=msisdn_digits(to_address),
        esm_class=(ESM_UDHI if header is not None else 0) | (ESM_REPLY_PATH if submit.rp else 0),
        protocol_id=submit.pid,
        data_coding=smpp_data_coding(submit.dcs),
        short_message=short,
        message_payload=payload,
    )


def report_deliver_sm(submit: SubmitSm, user_data: bytes) -> DeliverSm:
    """The C{deliver_sm} carrying a PoR the card returned in its delivery report.

    SMPP 3.4 has no field for the RP-ACK user data, so this SMSC forwards it
    as an MO message from the handset to the submitter (esm_class C{40},
    protocol_id C{7F}, data_coding C{F6}), where the gateway reads PoRs anyway.
    """
    short, payload = _short_or_payload(user_data)
    return DeliverSm(
        0,
        **_back_to_submitter(submit),
        esm_class=ESM_UDHI,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=short,
        message_payload=payload,
    )


def _receipt_text(submit: SubmitSm) -> str | None:
    """The first 20 characters of a text message; binary (OTA) content gets none."""
    if submit.esm_class & ESM_UDHI or submit.data_coding not in (0x00, 0x01, 0x03):
        return None
    head = (submit.message_payload or submit.short_message)[:_RECEIPT_TEXT]
    if not head or not all(0x20 <= b <= 0x7E for b in head):
        return None
    return head.decode("ascii")


def receipt_deliver_sm(
    submit: SubmitSm,
    message_id: str,
    state: MessageState,
    error: int,
    submitted_at: float,
    done_at: float,
) -> DeliverSm:
    """The delivery receipt C{deliver_sm} for a message that reached a final state.

    It goes from the handset back to the submitter, esm_class C{04}, the
    Appendix B text in short_message, and the TLVs receipted_message_id and
    message_state (plus network_error_code, GSM MAP numbering, on failure).

    @param error: 0 when delivered, else the MAP error (1 unknown subscriber,
        32 delivery failure), also written as C{err:} in the text.
    """
    receipt = DeliveryReceipt(
        id=message_id,
        sub=1,
        dlvrd=1 if state == MessageState.DELIVERED else 0,
        submit_date=receipt_time(submitted_at),
        done_date=receipt_time(done_at),
        stat=DeliveryReceipt.stat_for(state),
        err=f"{error:03d}",
        text=_receipt_text(submit),
    )
    short, payload = _short_or_payload(receipt.to_bytes())
    return DeliverSm(
        0,
        **_back_to_submitter(submit),
        esm_class=ESM_RECEIPT,
        short_message=short,
        message_payload=payload,
        receipted_message_id=message_id,
        message_state=int(state),
        network_error_code=NetworkErrorCode(NETWORK_GSM, error) if error else None,
    )
