"""The SMSC's conversions between SMPP PDUs and SMS TPDUs, and its receipts."""

from __future__ import annotations

import datetime
import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import CommandStatus, DeliverSm, MessageState, SubmitSm, decode, encode
from bipgw.codec.sms import (
    Address,
    ServiceCentreTimestamp,
    SmsDeliver,
    SmsSubmit,
    UserDataHeader,
    gsm7_septets,
)
from simcard.smsc import (
    SubmitRefusedError,
    deliver_tpdu_for,
    mo_deliver_sm,
    receipt_deliver_sm,
    report_deliver_sm,
    scts_at,
)
from simcard.smsc._convert import receipt_time, smpp_data_coding
from tests.unit.simcard.test_smsc_harness import OTA_UD, T0

S = CommandStatus
SCTS = scts_at(T0)


def _submit(**fields: Any) -> SubmitSm:
    values: dict[str, Any] = {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": "12",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "4477001",
        "esm_class": 0x40,
        "protocol_id": 0x7F,
        "data_coding": 0xF6,
        "short_message": OTA_UD,
    }
    values.update(fields)
    return SubmitSm(1, **values)


def _deliver(**fields: Any) -> SmsDeliver:
    _, tpdu = deliver_tpdu_for(_submit(**fields), SCTS)
    return SmsDeliver.decode(tpdu)


class TimeTests(SynchronousTestCase):
    """Clock readings become TP-SCTS and receipt dates."""

    def test_scts(self) -> None:
        """T0 is the vector's SCTS 22 70 52 00 00 00 00 (2022-07-25 00:00:00 UTC)."""
        self.assertEqual(SCTS.encode().hex(), "22705200000000")
        self.assertEqual(scts_at(T0 + 13 * 3600 + 45 * 60 + 7.9).encode().hex(), "22705231547000")

    def test_sctsAnyClock(self) -> None:
        """A test clock at 0 still gives a timestamp (1970), not an error."""
        self.assertEqual(scts_at(0), ServiceCentreTimestamp(70, 1, 1, 0, 0, 0, 0))

    def test_receiptTime(self) -> None:
        """Receipt dates are minutes (Appendix B YYMMDDhhmm), within 2000-2099 only."""
        self.assertEqual(receipt_time(T0 + 65), datetime.datetime(2022, 7, 25, 0, 1))
        self.assertIsNone(receipt_time(0))
        self.assertIsNone(receipt_time(1e20))


class SubmitToDeliverTests(SynchronousTestCase):
    """submit_sm fields map onto the SMS-DELIVER the handset receives."""

    def test_ota(self) -> None:
        """An OTA push keeps PID 7F, DCS F6 and its 02 70 00 header; first octet 40."""
        destination, tpdu = deliver_tpdu_for(_submit(), SCTS)
        self.assertEqual(destination, "4477001")
        self.assertEqual(tpdu[0], 0x40)
        deliver = SmsDeliver.decode(tpdu)
        self.assertEqual(deliver.user_data_header, UserDataHeader.decode(OTA_UD)[0])
        self.assertEqual(deliver.user_data, OTA_UD[3:])
        self.assertEqual(deliver.scts, SCTS)

    def test_plusStripped(self) -> None:
        """A + in front of the destination is not part of the MSISDN."""
        destination, _ = deliver_tpdu_for(_submit(destination_addr="+4477001"), SCTS)
        self.assertEqual(destination, "4477001")

    def test_defaultAlphabet(self) -> None:
        """data_coding 0 carries unpacked GSM septets; TP-DCS 00."""
        deliver = _deliver(esm_class=0, data_coding=0, short_message=b"Hello")
        self.assertEqual((deliver.dcs, deliver.user_data), (0x00, b"Hello"))

    def test_defaultAlphabetNotSeptets(self) -> None:
        """An octet above 7F in 7-bit data is refused with ESME_RINVMSGLEN."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(esm_class=0, data_coding=0, short_message=b"\x80")
        self.assertEqual(caught.exception.status, S.ESME_RINVMSGLEN)

    def test_ia5(self) -> None:
        """IA5 text is recoded to GSM 7-bit (@ is 00, $ is 02, _ is 11 in GSM 03.38)."""
        deliver = _deliver(esm_class=0, data_coding=1, short_message=b"@$_")
        self.assertEqual(deliver.user_data, bytes([0x00, 0x02, 0x11]))
        self.assertEqual(deliver.user_data, gsm7_septets("@$_"))

    def test_ia5NotAscii(self) -> None:
        """IA5 data with an octet above 7F is refused."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(esm_class=0, data_coding=1, short_message=b"\xe9")
        self.assertEqual(caught.exception.status, S.ESME_RSUBMITFAIL)

    def test_latin1(self) -> None:
        """Latin-1 becomes UCS2 (TP-DCS 08)."""
        deliver = _deliver(esm_class=0, data_coding=3, short_message="é!".encode("latin-1"))
        self.assertEqual((deliver.dcs, deliver.user_data.hex()), (0x08, "00e90021"))

    def test_octets(self) -> None:
        """data_coding 2 and 4 become 8-bit TP-DCS 04; 8 stays UCS2."""
        for coding, dcs in ((2, 0x04), (4, 0x04), (8, 0x08)):
            deliver = _deliver(esm_class=0, data_coding=coding, short_message=b"\x00\xff")
            self.assertEqual((deliver.dcs, deliver.user_data), (dcs, b"\x00\xff"))

    def test_gsmClassCoding(self) -> None:
        """GSM codings C0-FF pass through as TP-DCS (F0: 7-bit, class 0)."""
        deliver = _deliver(esm_class=0, data_coding=0xF0, short_message=b"Hi")
        self.assertEqual((deliver.dcs, deliver.user_data), (0xF0, b"Hi"))

    def test_unsupportedCoding(self) -> None:
        """SMPP codings without a GSM equivalent (5: JIS) are refused."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(data_coding=5)
        self.assertEqual((caught.exception.status, caught.exception.field), (0x45, "data_coding"))

    def test_badUdh(self) -> None:
        """UDHI with content that is no UDH is ESME_RINVESMCLASS."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(short_message=b"\x09\x70\x00")
        self.assertEqual(caught.exception.status, S.ESME_RINVESMCLASS)

    def test_messageType(self) -> None:
        """Only the default message type may be submitted."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(esm_class=0x48)
        self.assertEqual(caught.exception.field, "esm_class")

    def test_replyPath(self) -> None:
        """esm_class bit 7 sets TP-RP."""
        self.assertTrue(_deliver(esm_class=0xC0).rp)
        self.assertFalse(_deliver().rp)

    def test_bothContents(self) -> None:
        """short_message and message_payload together are refused."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(message_payload=OTA_UD)
        self.assertEqual(caught.exception.status, S.ESME_RINVMSGLEN)

    def test_tooLongForOneSm(self) -> None:
        """More than 140 octets of user data is refused."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(short_message=b"", message_payload=b"\x02\x70\x00" + bytes(138))
        self.assertEqual(caught.exception.status, S.ESME_RINVMSGLEN)
        _deliver(short_message=b"", message_payload=b"\x02\x70\x00" + bytes(137))

    def test_sourceAddresses(self) -> None:
        """Bad source fields get their own statuses; a short name is an alphanumeric OA."""
        cases = (
            ({"source_addr": ""}, S.ESME_RINVSRCADR),
            ({"source_addr_ton": 9}, S.ESME_RINVSRCTON),
            ({"source_addr_npi": 18}, S.ESME_RINVSRCNPI),
            ({"source_addr_ton": 5, "source_addr": "A very long name"}, S.ESME_RINVSRCADR),
            ({"source_addr": "12x"}, S.ESME_RINVSRCADR),
        )
        for fields, status in cases:
            with self.assertRaises(SubmitRefusedError) as caught:
                _deliver(**fields)
            self.assertEqual(caught.exception.status, status, fields)
        named = _deliver(source_addr_ton=5, source_addr_npi=0, source_addr="OTA")
        self.assertEqual(named.originating_address, Address(5, 0, "OTA"))

    def test_destinations(self) -> None:
        """A destination must be digits and not alphanumeric."""
        for fields in (
            {"destination_addr": "44-77"},
            {"dest_addr_ton": 5},
            {"destination_addr": ""},
        ):
            with self.assertRaises(SubmitRefusedError) as caught:
                _deliver(**fields)
            self.assertEqual(caught.exception.status, S.ESME_RINVDSTADR, fields)

    def test_refusalMessageHasNoValue(self) -> None:
        """The error names the field and reason, not the content."""
        with self.assertRaises(SubmitRefusedError) as caught:
            _deliver(destination_addr="secret-ish")
        self.assertEqual(str(caught.exception), "submit_sm.destination_addr: must be 1..20 digits")


class MoTests(SynchronousTestCase):
    """A card's SMS-SUBMIT becomes the ESME's deliver_sm."""

    def _mo(self, **fields: Any) -> DeliverSm:
        values: dict[str, Any] = {"destination_address": Address(1, 1, "12"), "pid": 0x7F}
        values.update(fields)
        return mo_deliver_sm("+4477001", "12", SmsSubmit(**values).encode())

    def test_text(self) -> None:
        """7-bit text arrives as unpacked septets with data_coding 0, no UDHI."""
        pdu = self._mo(dcs=0x00, user_data=gsm7_septets("PoR?"))
        self.assertEqual((pdu.data_coding, pdu.esm_class, pdu.short_message), (0, 0, b"PoR?"))
        self.assertEqual(pdu.source_addr, "4477001")

    def test_codings(self) -> None:
        """TP-DCS maps to SMPP: F6 stays, 16 (8-bit class 2) is 4, 08 is 8."""
        self.assertEqual(smpp_data_coding(0xF6), 0xF6)
        self.assertEqual(smpp_data_coding(0x16), 0x04)
        self.assertEqual(smpp_data_coding(0x08), 0x08)
        self.assertEqual(smpp_data_coding(0x00), 0x00)
        self.assertEqual(self._mo(dcs=0x16, user_data=b"\x01").data_coding, 0x04)

    def test_replyPath(self) -> None:
        """TP-RP becomes esm_class bit 7."""
        self.assertEqual(self._mo(dcs=0x04, user_data=b"x", rp=True).esm_class, 0x80)

    def test_encodes(self) -> None:
        """The result is a PDU the codec encodes and decodes unchanged."""
        header, body = UserDataHeader.decode(
            bytes.fromhex("027100000e0ab0001100000000000000016132")
        )
        pdu = self._mo(dcs=0xF6, user_data_header=header, user_data=body)
        self.assertEqual(decode(encode(pdu)), pdu)


class ReportTests(SynchronousTestCase):
    """A PoR from the delivery report goes back as MO."""

    def test_longReportInPayload(self) -> None:
        """Content over 254 octets travels in message_payload."""
        pdu = report_deliver_sm(_submit(), b"\x02\x71\x00" + bytes(300))
        self.assertEqual((pdu.short_message, len(pdu.content)), (b"", 303))
        self.assertEqual(decode(encode(pdu)), pdu)


class ReceiptFormatTests(SynchronousTestCase):
    """Receipts read as SMPP 3.4 Appendix B."""

    def test_text(self) -> None:
        """The receipt text has the Appendix B fields in order, dates as YYMMDDhhmm."""
        pdu = receipt_deliver_sm(_submit(), "0000002a", MessageState.DELIVERED, 0, T0, T0 + 65)
        text = pdu.short_message.decode("ascii")
        self.assertEqual(
            text,
            "id:0000002a sub:001 dlvrd:001 submit date:2207250000 done date:2207250001"
            " stat:DELIVRD err:000",
        )
        pattern = (
            r"id:\S+ sub:\d{3} dlvrd:\d{3} submit date:\d{10}(\d\d)? done date:\d{10}(\d\d)?"
            r" stat:[A-Z]{7} err:\d{3}"
        )
        self.assertIsNotNone(re.fullmatch(pattern, text))

    def test_failedReceipt(self) -> None:
        """An undeliverable message's receipt says UNDELIV, dlvrd 0, with the error."""
        pdu = receipt_deliver_sm(_submit(), "1", MessageState.UNDELIVERABLE, 32, 0, 0)
        self.assertEqual(pdu.short_message, b"id:1 sub:001 dlvrd:000 stat:UNDELIV err:032")
        self.assertEqual(pdu.message_state, 5)
        self.assertEqual(decode(encode(pdu)), pdu)
