"""Receipts and PoRs coming back: the router, and the real PoRs behind the engine's door.

The deliver_sm come from the public vectors (the smpplib receipt, the PoR in
message_payload) and from PoRs secured with the OTA codec and cut into
concatenated SMs the way a card sends them.  The router reports them to the
engine's L{bipgw.core.ISmsEvents}; the last tests follow real PoRs through
the engine's push tracker to the push sender that verifies them with the
card's keys.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    ChecksumKind,
    CompactResult,
    Kic,
    Kid,
    OtaKeys,
    PorStatus,
    ResponsePacket,
    Spi,
    secure_response,
)
from bipgw.codec.smpp import DeliverSm, DeliveryReceipt, MessageState, decode
from bipgw.codec.sms import split_response_packet
from bipgw.core import PushError
from bipgw.core._pushes import PushTracker
from bipgw.push import (
    CallbackAddress,
    MemoryCounters,
    PushBuilder,
    PushProfile,
    PushSender,
    SmsSubmission,
)
from bipgw.smpp import DeliverRouter
from tests import vectors
from tests.unit.smpp import (
    ICCID,
    KEYS,
    KIC_12,
    KID_12,
    MSISDN,
    SPI_1639,
    RecordingEvents,
    order,
)

_PID = 0x7F


def _vector_pdu(name: str) -> DeliverSm:
    pdu = decode(bytes.fromhex(vectors.by_name("smpp34", name)["pdu"]))
    assert isinstance(pdu, DeliverSm)
    return pdu


def _mo(source: str, ud: bytes) -> DeliverSm:
    return DeliverSm(
        7,
        0,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=source,
        destination_addr="8801",
        esm_class=0x40,
        protocol_id=_PID,
        data_coding=0xF6,
        short_message=ud,
    )


def _por(counter: int, data: bytes = b"", status: PorStatus = PorStatus.POR_OK) -> bytes:
    packet = ResponsePacket(tar=b"\x00\x00\x00", counter=counter, status=status, data=data)
    return secure_response(packet, SPI_1639, KEYS, kic=KIC_12, kid=KID_12)


class RouterTests(SynchronousTestCase):
    """deliver_sm sorted into receipts and PoRs."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.events = RecordingEvents()
        self.receipts = self.events.receipts
        self.pors = self.events.sms
        self.router = DeliverRouter(self.clock, self.events, reassembly_timeout=60)

    def test_smpplibReceiptVector(self) -> None:
        """The smpplib receipt: the receipted_message_id TLV wins over the text id."""
        self.router.route(
            _vector_pdu("deliver_sm delivery receipt with TLVs (from smpplib unit test)")
        )
        self.assertEqual(self.receipts, [("1d305b4c", True, "message 1d305b4c DELIVERED", None)])

    def test_receiptFromTextOnly(self) -> None:
        """A receipt with only Appendix B text is read from the text."""
        text = DeliveryReceipt(id="m42", stat="UNDELIV", err="001").to_bytes()
        self.router.route(DeliverSm(1, 0, esm_class=0x04, short_message=text))
        self.assertEqual(
            self.receipts, [("m42", False, "message m42 UNDELIVERABLE (error 001)", None)]
        )

    def test_receiptStateTlvWins(self) -> None:
        """The message_state TLV gives the state when present."""
        text = DeliveryReceipt(id="m1", stat="DELIVRD").to_bytes()
        self.router.route(DeliverSm(1, 0, esm_class=0x04, short_message=text, message_state=5))
        self.assertEqual(self.receipts, [("m1", False, "message m1 UNDELIVERABLE", None)])

    def test_intermediateReceiptsNotReported(self) -> None:
        """ENROUTE, ACCEPTED and UNKNOWN receipts are read but say nothing final."""
        for stat in ("ENROUTE", "ACCEPTD", "UNKNOWN"):
            text = DeliveryReceipt(id="m1", stat=stat).to_bytes()
            self.router.route(DeliverSm(1, 0, esm_class=0x04, short_message=text))
        self.assertEqual((self.receipts, self.router.receipts), ([], 3))
        state = MessageState.EXPIRED
        self.router.route(DeliverSm(1, 0, receipted_message_id="m2", message_state=int(state)))
        self.assertEqual(self.receipts, [("m2", False, "message m2 EXPIRED", None)])

    def test_porInReceiptPayload(self) -> None:
        """A receipt with a PoR user data in message_payload reports it (text: short_message)."""
        ud = _por(3)
        text = DeliveryReceipt(id="m5", stat="DELIVRD").to_bytes()
        self.router.route(DeliverSm(1, 0, esm_class=0x04, short_message=text, message_payload=ud))
        self.assertEqual(self.receipts, [("m5", True, "message m5 DELIVERED", ud)])
        self.assertEqual(self.pors, [])

    def test_unreadableReceiptIgnored(self) -> None:
        """A receipt neither its text nor its TLVs identify is logged and dropped."""
        self.router.route(DeliverSm(1, 0, esm_class=0x04, short_message=b"garbage"))
        self.assertEqual(self.receipts, [])
        self.assertEqual(self.router.ignored, 1)
        self.flushLoggedErrors()

    def test_porVectorInMessagePayload(self) -> None:
        """The PoR vector in message_payload is reported whole, with its source."""
        pdu = _vector_pdu("deliver_sm with PoR in message_payload TLV 0x0424")
        self.router.route(pdu)
        expected = bytes.fromhex(
            vectors.by_name("scp80_sms_response_packets", "3DES PoR CC only (8988211000000467285)")[
                "sms_user_data"
            ]
        )
        self.assertEqual(self.pors, [("23", expected)])

    def test_concatenatedPorReassembled(self) -> None:
        """A PoR sent as concatenated SMs (concatenation element first) arrives whole once."""
        ud = _por(9, data=CompactResult(1, 0x9000, bytes(range(200))).to_bytes())
        parts = split_response_packet(ud[3:], 77)
        self.assertGreater(len(parts), 1)
        for part in reversed(parts):
            self.router.route(_mo("447700900123", part))
        self.assertEqual(self.pors, [("447700900123", ud)])

    def test_otherDeliveriesIgnored(self) -> None:
        """A plain text MO is neither a receipt nor a PoR."""
        self.router.route(DeliverSm(1, 0, source_addr="1", short_message=b"hello"))
        self.assertEqual((self.receipts, self.pors, self.router.ignored), ([], [], 1))

    def test_pid7fWithoutPorIgnored(self) -> None:
        """PID 7F user data without a response packet identifier is not reported."""
        self.router.route(_mo("1", b"\x02\x70\x00abc"))
        self.assertEqual(self.pors, [])
        self.assertEqual(self.router.ignored, 1)


class _Link:
    """An L{bipgw.push.ISmsLink} that accepts every part at once, as m1, m2, ..."""

    def __init__(self) -> None:
        self.sent: list[SmsSubmission] = []

    def refusal(self, label: str) -> PushError | None:
        return None

    def submit(self, sms: SmsSubmission) -> Deferred[tuple[str, ...]]:
        self.sent.append(sms)
        first = sum(len(s.parts) for s in self.sent) - len(sms.parts)
        return succeed(tuple(f"m{first + i + 1}" for i in range(len(sms.parts))))


class RealPorTests(SynchronousTestCase):
    """Real PoRs, secured with the card's keys, through the engine's tracker and the push sender."""

    def setUp(self) -> None:
        self.delivered: list[tuple[Any, ...]] = []
        self.pors: list[tuple[Any, ...]] = []
        self.builder = PushBuilder(
            lambda iccid, kvn: KEYS, MemoryCounters(), CallbackAddress("192.0.2.1", 8443)
        )
        self.tracker = PushTracker(
            PushSender(self.builder, _Link()),
            lambda *a: self.delivered.append((str(a[0]), *a[1:])),
            lambda *a: self.pors.append(a),
        )
        self.order = order()
        self.successResultOf(self.tracker.send_push(self.order))

    def mo(self, ud: bytes, msisdn: str = MSISDN) -> None:
        self.assertIsNone(self.successResultOf(self.tracker.sms_received(msisdn, ud)))

    def test_verifiedPorReported(self) -> None:
        """A PoR that verifies with the card's keys is reported with its status and data."""
        self.mo(_por(1, CompactResult(1, 0x9000).to_bytes()))
        self.assertEqual(
            self.pors, [(ICCID, 0, "PoR for push 1 (counter 1), response data 019000")]
        )

    def test_errorPorReported(self) -> None:
        """A card's clear error PoR (counter 0) is reported with its status."""
        self.mo(
            secure_response(
                ResponsePacket(b"\x00\x00\x00", 0, PorStatus.COUNTER_LOW), Spi(), OtaKeys()
            )
        )
        self.assertEqual([p[:2] for p in self.pors], [(ICCID, 2)])

    def test_duplicateCopysErrorAfterOkNotReported(self) -> None:
        """After an OK PoR, a replay error PoR (a duplicate copy of the push) is not reported."""
        self.mo(_por(1))
        self.mo(
            secure_response(
                ResponsePacket(b"\x00\x00\x00", 0, PorStatus.COUNTER_LOW), Spi(), OtaKeys()
            )
        )
        self.assertEqual([p[:2] for p in self.pors], [(ICCID, 0)])

    def test_forgedPorIgnored(self) -> None:
        """A PoR whose CC does not match is logged and never reaches the engine."""
        ud = bytearray(_por(1))
        ud[-1] ^= 1
        self.mo(bytes(ud))
        self.assertEqual(self.pors, [])

    def test_porForEarlierPushNotReported(self) -> None:
        """A PoR echoing an older counter is not taken as the latest push's."""
        self.successResultOf(self.tracker.send_push(order(2)))
        self.mo(_por(1))
        self.assertEqual(self.pors, [])
        self.mo(_por(2))
        self.assertEqual([p[:2] for p in self.pors], [(ICCID, 0)])

    def test_porFromUnknownNumberIgnored(self) -> None:
        """A PoR from an MSISDN no push went to is ignored."""
        self.mo(_por(1), msisdn="999")
        self.assertEqual(self.pors, [])

    def test_receiptsThroughTheRouter(self) -> None:
        """The router's receipts for the push's message id reach the tracker as the push's."""
        router = DeliverRouter(Clock(), self.tracker)
        text = DeliveryReceipt(id="m1", stat="UNDELIV", err="001").to_bytes()
        router.route(DeliverSm(1, 0, esm_class=0x04, short_message=text))
        self.assertEqual(self.delivered, [("s1", 1, False, "message m1 UNDELIVERABLE (error 001)")])


class VectorPorTests(SynchronousTestCase):
    """The public PoR vector, verified end to end with its published keys."""

    def test_vectorPorThroughRouterAndTracker(self) -> None:
        """deliver_sm vector -> router -> tracker -> push sender (vector keys) -> engine."""
        v = vectors.by_name("scp80_sms_response_packets", "3DES PoR CC only (8988211000000467285)")
        keys = OtaKeys(kic_key=bytes.fromhex(v["kic_key"]), kid_key=bytes.fromhex(v["kid_key"]))
        profile = PushProfile(
            tar=bytes.fromhex("b00011"),
            spi=Spi.from_bytes(bytes.fromhex("16") + bytes.fromhex(v["spi2"])),
            kic=Kic.from_byte(0x35),
            kid=Kid.from_byte(0x35, ChecksumKind.CC),
        )
        builder = PushBuilder(
            lambda iccid, kvn: keys if kvn == 3 else None,
            MemoryCounters(),
            CallbackAddress("192.0.2.1", 8443),
            profile,
        )
        pors: list[tuple[Any, ...]] = []
        sender = PushSender(builder, _Link())
        tracker = PushTracker(sender, lambda *a: None, lambda *a: pors.append(a))
        self.successResultOf(tracker.send_push(order(msisdn="23")))
        router = DeliverRouter(Clock(), tracker)
        router.route(_vector_pdu("deliver_sm with PoR in message_payload TLV 0x0424"))
        self.assertEqual(pors, [(ICCID, 0, "PoR for push 1 (counter 0), response data 01612f")])
