"""Tests for the SMPP 3.4 codec: public vectors, statuses, responses, streams.

Refusals are in C{test_smpp_errors}, properties in C{test_smpp_properties},
the smpplib cross-checks in C{test_smpp_smpplib}.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
from twisted.trial.unittest import SynchronousTestCase

import bipgw.codec.smpp as smpp
from bipgw.codec.smpp import (
    DEFAULT_MAX_PDU,
    MAX_SEQUENCE,
    PDU_TYPES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MessageState,
    NetworkErrorCode,
    Outbind,
    PduDecoder,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SequenceNumbers,
    SmeAddress,
    SmppError,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    TlvTag,
    Unbind,
    UnbindResp,
    UnsuccessfulSme,
    decode,
    describe_status,
    encode,
    response_for_error,
)
from bipgw.codec.smpp._codec import _LAYOUTS
from tests import vectors

_S = CommandStatus


def _vector(name: str) -> bytes:
    return bytes.fromhex(vectors.by_name("smpp34", name)["pdu"])


def _pdu(cid: int, body: bytes, seq: int = 5, status: int = 0) -> bytes:
    """A PDU built by hand, so tests do not depend on encode()."""
    header = (16 + len(body)).to_bytes(4, "big") + cid.to_bytes(4, "big")
    return header + status.to_bytes(4, "big") + seq.to_bytes(4, "big") + body


class VectorTests(SynchronousTestCase):
    """Every public "smpp34" vector decodes to the expected values and re-encodes exactly."""

    expected = {
        "bind_transceiver system_id=test password=test": BindTransceiver(
            1, system_id="test", password="test", interface_version=0x34
        ),
        "submit_sm OTA SMS (esm_class 40, pid 7f, dcs f6)": SubmitSm(
            2,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="12",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="23",
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=bytes.fromhex(
                "02700000201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f"
            ),
        ),
        "enquire_link seq 3": EnquireLink(3),
        "submit_sm_resp message_id abc123": SubmitSmResp(2, message_id="abc123"),
        "generic_nack ESME_RTHROTTLED": GenericNack(7, _S.ESME_RTHROTTLED),
        "deliver_sm with PoR in message_payload TLV 0x0424": DeliverSm(
            9,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="23",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="12",
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            message_payload=bytes.fromhex("027100001612b000110000000000000055f47118381175fb01612f"),
        ),
        "deliver_sm delivery receipt with TLVs (from smpplib unit test)": DeliverSm(
            1,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="31600000000",
            dest_addr_ton=5,
            dest_addr_npi=0,
            destination_addr="XXX YYYY",
            esm_class=0x04,
            receipted_message_id="1d305b4c",
            message_state=MessageState.DELIVERED,
            message_payload=(
                b"id:0489708364 sub:001 dlvrd:001 submit date:1810151907 "
                b"done date:1810151907 stat:DELIVRD err:000 text:"
                b"\x04\x1f\x04@\x048\x042\x045\x04B"
            ),
            extra_tlvs=(
                Tlv(TlvTag.SOURCE_NETWORK_TYPE, b"\x01"),
                Tlv(TlvTag.DEST_NETWORK_TYPE, b"\x01"),
                Tlv(TlvTag.MORE_MESSAGES_TO_SEND, b"\x01"),
            ),
        ),
    }

    def test_allVectorsCovered(self) -> None:
        """The expectations here name every smpp34 vector, and only those."""
        self.assertEqual({v["name"] for v in vectors.section("smpp34")}, set(self.expected))

    def test_decode(self) -> None:
        """Each vector decodes to exactly the expected PDU."""
        for name, want in self.expected.items():
            self.assertEqual(decode(_vector(name)), want, name)

    def test_reencodeIsByteIdentical(self) -> None:
        """Each decoded vector re-encodes to the very same octets (TLV order included)."""
        for name in self.expected:
            raw = _vector(name)
            self.assertEqual(encode(decode(raw)).hex(), raw.hex(), name)

    def test_builtValuesEncodeToVectors(self) -> None:
        """The expected values, built by hand, encode to the vectors.

        The receipt vector is skipped: its optional parameters are in an
        order that only decoding records.
        """
        for name, want in self.expected.items():
            if "receipt" not in name:
                self.assertEqual(encode(want).hex(), _vector(name).hex(), name)

    def test_oneStream(self) -> None:
        """All vectors sent back to back come out of PduDecoder one byte at a time."""
        stream = b"".join(_vector(n) for n in self.expected)
        decoder = PduDecoder()
        out = []
        for i in range(len(stream)):
            out.extend(decoder.feed(stream[i : i + 1]))
        self.assertEqual(out, list(self.expected.values()))

    def test_receiptVector(self) -> None:
        """The smpplib receipt is flagged as a receipt and its text parses."""
        pdu = decode(_vector("deliver_sm delivery receipt with TLVs (from smpplib unit test)"))
        assert isinstance(pdu, DeliverSm)
        self.assertTrue(pdu.is_delivery_receipt)
        receipt = pdu.delivery_receipt()
        self.assertEqual((receipt.id, receipt.stat, receipt.err), ("0489708364", "DELIVRD", "000"))
        self.assertEqual(receipt.message_state, MessageState.DELIVERED)
        por = decode(_vector("deliver_sm with PoR in message_payload TLV 0x0424"))
        assert isinstance(por, DeliverSm)
        self.assertFalse(por.is_delivery_receipt)


class StatusTests(SynchronousTestCase):
    """command_status names and descriptions."""

    def test_values(self) -> None:
        """The statuses the gateway reacts to have their SMPP 3.4 values."""
        self.assertEqual(_S.ESME_ROK, 0)
        self.assertEqual(_S.ESME_RINVCMDLEN, 0x02)
        self.assertEqual(_S.ESME_RINVCMDID, 0x03)
        self.assertEqual(
            [_S.ESME_RBINDFAIL, _S.ESME_RINVPASWD, _S.ESME_RINVSYSID], [0x0D, 0x0E, 0x0F]
        )
        self.assertEqual(_S.ESME_RMSGQFUL, 0x14)
        self.assertEqual(_S.ESME_RSUBMITFAIL, 0x45)
        self.assertEqual(_S.ESME_RTHROTTLED, 0x58)
        self.assertEqual(
            [s.value for s in CommandStatus if 0xC0 <= s <= 0xC4], [0xC0, 0xC1, 0xC2, 0xC3, 0xC4]
        )
        self.assertEqual([_S.ESME_RDELIVERYFAILURE, _S.ESME_RUNKNOWNERR], [0xFE, 0xFF])
        self.assertEqual(len(CommandStatus), 48)

    def test_describeKnown(self) -> None:
        """A known status is described with its name, hex value and meaning."""
        self.assertEqual(
            describe_status(0x58),
            "ESME_RTHROTTLED (0x00000058): throttling error "
            "(ESME has exceeded allowed message limits)",
        )
        for status in CommandStatus:
            self.assertTrue(describe_status(status).startswith(status.name + " (0x"))

    def test_describeUnknown(self) -> None:
        """Reserved and vendor values are described, never refused."""
        self.assertEqual(describe_status(0x400), "reserved/vendor-specific 0x00000400")
        self.assertEqual(describe_status(0x09), "reserved/vendor-specific 0x00000009")
        self.assertEqual(describe_status(0xFFFFFFFF), "reserved/vendor-specific 0xFFFFFFFF")
        self.assertIn("not a command_status", describe_status(-1))
        self.assertIn("not a command_status", describe_status(1 << 32))


class PduTypeTests(SynchronousTestCase):
    """The PDU value types themselves."""

    def test_commandIds(self) -> None:
        """Each type carries its SMPP 3.4 command_id; responses add the top bit."""
        self.assertEqual(len({c.command_id for c in PDU_TYPES}), len(CommandId))
        self.assertEqual(SubmitSm.command_id, 0x00000004)
        self.assertEqual(DataSm.command_id, 0x00000103)
        self.assertEqual(AlertNotification.command_id, 0x00000102)
        self.assertEqual(Outbind.command_id, 0x0000000B)
        for cls in PDU_TYPES:
            pdu = cls(1)
            self.assertEqual(pdu.is_response, cls.command_id >= 0x80000000, cls)
            self.assertEqual(pdu.command_name, cls.command_id.name.lower())

    def test_passwordNotInRepr(self) -> None:
        """Logging a bind or outbind never shows the password."""
        for pdu in (
            BindTransmitter(1, system_id="gw", password="s3cr3t!"),
            Outbind(1, system_id="x", password="s3cr3t!"),
        ):
            self.assertNotIn("s3cr3t!", repr(pdu))
            self.assertIn("system_id=", repr(pdu))

    def test_frozen(self) -> None:
        """PDUs are immutable values."""

        pdu = SubmitSm(1)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, pdu, "esm_class", 1)

    def test_tlvOrderIgnoredForEquality(self) -> None:
        """Two PDUs differing only in the recorded TLV wire order are equal."""
        a = SubmitSm(1, source_port=1, destination_port=2)
        b = decode(encode(a)[:-12] + encode(a)[-6:] + encode(a)[-12:-6])
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertNotEqual(encode(a), encode(b))

    def test_deliverContent(self) -> None:
        """content is message_payload when present, short_message otherwise."""
        self.assertEqual(DeliverSm(1, short_message=b"sm").content, b"sm")
        self.assertEqual(DeliverSm(1, message_payload=b"p").content, b"p")


class ResponseTests(SynchronousTestCase):
    """Each request builds its own response, with its sequence_number."""

    def test_responses(self) -> None:
        """response() gives the matching type, sequence and status."""
        cases = [
            (BindTransmitter(11), BindTransmitterResp),
            (BindReceiver(11), BindReceiverResp),
            (BindTransceiver(11), BindTransceiverResp),
            (Unbind(11), UnbindResp),
            (EnquireLink(11), EnquireLinkResp),
            (SubmitSm(11), SubmitSmResp),
            (DeliverSm(11), DeliverSmResp),
            (DataSm(11), DataSmResp),
            (CancelSm(11), CancelSmResp),
            (ReplaceSm(11), ReplaceSmResp),
            (SubmitMulti(11), SubmitMultiResp),
        ]
        for request, cls in cases:
            resp = cast(Any, request).response(command_status=_S.ESME_RSYSERR)
            self.assertIs(type(resp), cls)
            self.assertEqual((resp.sequence_number, resp.command_status), (11, 8))
            self.assertEqual(resp.command_id, request.command_id | 0x80000000)

    def test_responseFields(self) -> None:
        """Response helpers fill in the fields they are given."""
        self.assertEqual(SubmitSm(3).response("m1"), SubmitSmResp(3, 0, "m1"))
        self.assertEqual(
            BindTransceiver(4).response("smsc", sc_interface_version=0x34),
            BindTransceiverResp(4, 0, "smsc", sc_interface_version=0x34),
        )
        self.assertEqual(
            QuerySm(5, message_id="abc").response(MessageState.DELIVERED, final_date="x"),
            QuerySmResp(5, 0, "abc", "x", 2, 0),
        )
        self.assertEqual(
            DataSm(6)
            .response("d", network_error_code=NetworkErrorCode(3, 0x22))
            .network_error_code,
            NetworkErrorCode(3, 0x22),
        )


class KnownBytesTests(SynchronousTestCase):
    """Byte layouts checked against hand-written SMPP 3.4 encodings."""

    def test_bindRespWithInterfaceVersion(self) -> None:
        """bind_transceiver_resp carries sc_interface_version as TLV 0x0210."""
        pdu = BindTransceiverResp(1, system_id="SMSC", sc_interface_version=0x34)
        self.assertEqual(
            encode(pdu),
            _pdu(CommandId.BIND_TRANSCEIVER_RESP, b"SMSC\x00\x02\x10\x00\x01\x34", seq=1),
        )

    def test_submitMulti(self) -> None:
        """submit_multi lists destinations as dest_flag + address or list name."""
        pdu = SubmitMulti(
            2,
            source_addr="1",
            destinations=(SmeAddress(1, 1, "23"), DistributionList("dl")),
            short_message=b"hi",
        )
        body = (
            b"\x00\x00\x001\x00\x02\x01\x01\x0123\x00\x02dl\x00"
            + bytes(3)
            + b"\x00\x00"
            + bytes(4)
            + b"\x02hi"
        )
        self.assertEqual(encode(pdu), _pdu(CommandId.SUBMIT_MULTI, body, seq=2))

    def test_submitMultiResp(self) -> None:
        """submit_multi_resp lists refused SMEs with a 4-octet error status."""
        pdu = SubmitMultiResp(2, 0, "id", (UnsuccessfulSme(1, 1, "23", _S.ESME_RINVDSTADR),))
        body = b"id\x00\x01\x01\x0123\x00\x00\x00\x00\x0b"
        self.assertEqual(encode(pdu), _pdu(CommandId.SUBMIT_MULTI_RESP, body, seq=2))
        self.assertEqual(decode(encode(pdu)), pdu)

    def test_networkErrorCode(self) -> None:
        """network_error_code is type octet + 16-bit code."""
        raw = encode(DeliverSm(1, network_error_code=NetworkErrorCode(3, 0x0102)))
        self.assertTrue(raw.endswith(b"\x04\x23\x00\x03\x03\x01\x02"))

    def test_alertNotificationLongAddress(self) -> None:
        """alert_notification addresses go up to 64 characters."""
        pdu = AlertNotification(1, source_addr="9" * 64, esme_addr="e", ms_availability_status=1)
        self.assertEqual(decode(encode(pdu)), pdu)


class DecoderTests(SynchronousTestCase):
    """PduDecoder framing, limits and error reporting."""

    def test_oversizedRefusedBeforeBuffering(self) -> None:
        """A command_length above max_pdu is refused from the prefix alone, and stays refused."""
        decoder = PduDecoder(max_pdu=1000)
        with self.assertRaises(SmppError) as ctx:
            decoder.feed(b"\x00\x00\x03\xe9")
        self.assertEqual(ctx.exception.command_status, _S.ESME_RINVCMDLEN)
        self.assertEqual(ctx.exception.field, "command_length")
        self.assertRaises(SmppError, decoder.feed, encode(EnquireLink(1)))

    def test_lengthErrorCarriesHeader(self) -> None:
        """PDUs before a bad length come out; the next call raises, with the bad header read."""
        decoder = PduDecoder()
        good = encode(EnquireLink(1))
        bad = (
            b"\x00\x00\x00\x08"
            + CommandId.SUBMIT_SM.to_bytes(4, "big")
            + bytes(4)
            + b"\x00\x00\x00\x2a"
        )
        self.assertEqual(decoder.feed(good + bad), [EnquireLink(1)])
        with self.assertRaises(SmppError) as ctx:
            decoder.feed(b"")
        self.assertEqual((ctx.exception.sequence_number, ctx.exception.offset), (42, 16))
        self.assertEqual(response_for_error(ctx.exception), GenericNack(42, _S.ESME_RINVCMDLEN))

    def test_lengthErrorInOneCall(self) -> None:
        """A bad length with nothing before it raises at once, with the header read."""
        bad = (
            b"\x00\x00\x00\x00"
            + CommandId.UNBIND.to_bytes(4, "big")
            + bytes(4)
            + b"\x00\x00\x00\x07"
        )
        with self.assertRaises(SmppError) as ctx:
            PduDecoder().feed(bad)
        self.assertEqual((ctx.exception.command_id, ctx.exception.sequence_number), (6, 7))

    def test_defaultLimit(self) -> None:
        """The default limit admits a full 64 KiB message_payload."""
        pdu = DataSm(1, message_payload=bytes(0xFFFF))
        self.assertLess(len(encode(pdu)), DEFAULT_MAX_PDU)
        self.assertEqual(PduDecoder().feed(encode(pdu)), [pdu])
        self.assertRaises(ValueError, PduDecoder, 15)

    def test_feedResultsCarriesOn(self) -> None:
        """feed_results reports a malformed PDU in place and decodes the next one."""
        bad = _pdu(CommandId.SUBMIT_SM, b"\x00\x01\x01" + b"1" * 30, seq=8)
        out = PduDecoder().feed_results(encode(EnquireLink(7)) + bad + encode(EnquireLink(9)))
        self.assertEqual(out[0], EnquireLink(7))
        assert isinstance(out[1], SmppError)
        self.assertEqual((out[1].sequence_number, out[1].command_id), (8, CommandId.SUBMIT_SM))
        self.assertEqual(response_for_error(out[1]), SubmitSmResp(8, _S.ESME_RINVSRCADR))
        self.assertEqual(out[2], EnquireLink(9))

    def test_feedBreaksOnMalformedPdu(self) -> None:
        """feed raises for a malformed PDU and refuses everything after."""
        decoder = PduDecoder()
        self.assertRaises(SmppError, decoder.feed, _pdu(CommandId.SUBMIT_SM, b"\x00"))
        self.assertRaises(SmppError, decoder.feed, encode(EnquireLink(1)))


class SequenceTests(SynchronousTestCase):
    """SequenceNumbers allocates 1..0x7FFFFFFF and wraps."""

    def test_startsAtOne(self) -> None:
        """The first numbers are 1, 2, 3."""
        seqs = SequenceNumbers()
        self.assertEqual([seqs.allocate() for _ in range(3)], [1, 2, 3])
        self.assertEqual(seqs.peek(), 4)

    def test_wraps(self) -> None:
        """After 0x7FFFFFFF comes 1, never 0 or a number with the top bit."""
        seqs = SequenceNumbers(MAX_SEQUENCE - 1)
        self.assertEqual([next(seqs) for _ in range(3)], [0x7FFFFFFE, 0x7FFFFFFF, 1])

    def test_badStart(self) -> None:
        """A start outside 1..0x7FFFFFFF is refused."""
        self.assertRaises(ValueError, SequenceNumbers, 0)
        self.assertRaises(ValueError, SequenceNumbers, 0x80000000)


class ExportTests(SynchronousTestCase):
    """The package exports its public names, and only real objects."""

    def test_allExported(self) -> None:
        """Every name in __all__ exists, and every PDU type is exported."""
        for name in smpp.__all__:
            self.assertTrue(hasattr(smpp, name), name)
        for cls in PDU_TYPES:
            self.assertIs(getattr(smpp, cls.__name__), cls)

    def test_everyTypeHasALayout(self) -> None:
        """The codec knows every exported PDU type."""
        self.assertEqual(set(_LAYOUTS), set(PDU_TYPES))
