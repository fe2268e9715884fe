"""Receipts and PoRs coming back: the router, the ledger and the engine reporter.

The deliver_sm come from the public vectors (the smpplib receipt, the PoR in
message_payload) and from PoRs secured with the OTA codec and cut into
concatenated SMs the way a card sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import fail
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
from bipgw.push import CallbackAddress, MemoryCounters, PorError, PushBuilder, PushProfile
from bipgw.smpp import DeliverRouter, EngineReporter, PushLedger, normalise_msisdn
from tests import vectors
from tests.unit.smpp import ICCID, KEYS, KIC_12, KID_12, MSISDN, SPI_1639, order, recorder

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
        self.receipts, on_receipt = recorder()
        self.pors, on_por = recorder()
        self.router = DeliverRouter(self.clock, on_receipt, on_por, reassembly_timeout=60)

    def test_smpplibReceiptVector(self) -> None:
        """The smpplib receipt: the receipted_message_id TLV wins over the text id."""
        self.router.route(
            _vector_pdu("deliver_sm delivery receipt with TLVs (from smpplib unit test)")
        )
        self.assertEqual(self.receipts, [("1d305b4c", MessageState.DELIVERED, "000")])

    def test_receiptFromTextOnly(self) -> None:
        """A receipt with only Appendix B text is read from the text."""
        text = DeliveryReceipt(id="m42", stat="UNDELIV", err="001").to_bytes()
        self.router.route(DeliverSm(1, 0, esm_class=0x04, short_message=text))
        self.assertEqual(self.receipts, [("m42", MessageState.UNDELIVERABLE, "001")])

    def test_receiptStateTlvWins(self) -> None:
        """The message_state TLV gives the state when present."""
        text = DeliveryReceipt(id="m1", stat="DELIVRD").to_bytes()
        self.router.route(DeliverSm(1, 0, esm_class=0x04, short_message=text, message_state=5))
        self.assertEqual(self.receipts, [("m1", MessageState.UNDELIVERABLE, None)])

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


class LedgerTests(SynchronousTestCase):
    """Message ids and MSISDNs lead back to their push."""

    def test_messageIdsAndMsisdn(self) -> None:
        """Each part's id names its push and index; the MSISDN names the latest push."""
        ledger = PushLedger()
        first = order(1)
        ledger.push_offered(first, 5, 2)
        ledger.part_accepted(first, 0, "A1")
        ledger.part_accepted(first, 1, "A2")
        second = order(2)
        ledger.push_offered(second, 6, 1)
        found = ledger.for_message("a2")
        assert found is not None
        self.assertEqual((found[0].order, found[1]), (first, 1))
        entry = ledger.for_msisdn("447700900123")
        assert entry is not None
        self.assertEqual((entry.order, entry.counter), (second, 6))
        self.assertIsNone(ledger.for_message("A3"))

    def test_decimalSpellingOfHexId(self) -> None:
        """A receipt quoting a hex id in zero-padded decimal (smpplib vector) still matches."""
        ledger = PushLedger()
        ledger.push_offered(order(), 1, 1)
        ledger.part_accepted(order(), 0, "1d305b4c")
        found = ledger.for_message("0489708364")
        assert found is not None
        self.assertEqual(found[0].order, order())

    def test_bounded(self) -> None:
        """Beyond its limit the ledger forgets the oldest pushes and their ids."""
        ledger = PushLedger(limit=2)
        for n in range(3):
            o = order(session=f"s{n}", msisdn=f"4477009000{n}")
            ledger.push_offered(o, n, 1)
            ledger.part_accepted(o, 0, f"id{n}")
        self.assertEqual(len(ledger), 2)
        self.assertIsNone(ledger.for_message("id0"))
        self.assertIsNone(ledger.for_msisdn("447700900000"))
        self.assertIsNotNone(ledger.for_message("id2"))

    def test_normaliseMsisdn(self) -> None:
        """MSISDNs compare by their digits."""
        self.assertEqual(normalise_msisdn("+44 7700-900123"), "447700900123")


class FakeEngine:
    """Records the engine calls the reporter makes."""

    def __init__(self) -> None:
        self.delivered: list[tuple[Any, ...]] = []
        self.pors: list[tuple[Any, ...]] = []

    def push_delivered(
        self, session_id: Any, attempt: int, delivered: bool, detail: str = ""
    ) -> None:
        self.delivered.append((str(session_id), attempt, delivered, detail))

    def por_received(self, iccid: str, status: int, detail: str = "") -> None:
        self.pors.append((iccid, status, detail))


class ReporterTests(SynchronousTestCase):
    """Receipts and PoRs become engine calls."""

    def setUp(self) -> None:
        self.engine = FakeEngine()
        self.ledger = PushLedger()
        self.builder = PushBuilder(
            lambda iccid, kvn: KEYS, MemoryCounters(), CallbackAddress("192.0.2.1", 8443)
        )
        self.reporter = EngineReporter(self.engine, self.ledger, self.builder.verify_por)
        self.order = order()
        built = self.successResultOf(self.builder.build(self.order))
        self.ledger.push_offered(self.order, built.counter, 2)
        self.ledger.part_accepted(self.order, 0, "m1")
        self.ledger.part_accepted(self.order, 1, "m2")

    def test_deliveredWhenEveryPartIs(self) -> None:
        """A push counts as delivered once every part has a DELIVERED receipt."""
        self.reporter.delivery_receipt("m1", MessageState.DELIVERED, "000")
        self.assertEqual(self.engine.delivered, [])
        self.reporter.delivery_receipt("m2", MessageState.DELIVERED, "000")
        self.assertEqual(self.engine.delivered, [("s1", 1, True, "message m2 DELIVERED")])

    def test_firstFailureReportedOnce(self) -> None:
        """An undeliverable part fails the push once; later receipts change nothing."""
        self.reporter.delivery_receipt("m1", MessageState.ENROUTE, None)
        self.reporter.delivery_receipt("m1", MessageState.UNDELIVERABLE, "001")
        self.reporter.delivery_receipt("m2", MessageState.DELIVERED, "000")
        self.assertEqual(
            self.engine.delivered, [("s1", 1, False, "message m1 UNDELIVERABLE (error 001)")]
        )

    def test_unknownMessageIgnored(self) -> None:
        """A receipt for a message id no push had is only logged."""
        self.reporter.delivery_receipt("zz", MessageState.DELIVERED, None)
        self.assertEqual(self.engine.delivered, [])

    def test_verifiedPorReported(self) -> None:
        """A PoR that verifies with the card's keys is reported with its status and data."""
        ud = _por(1, CompactResult(1, 0x9000).to_bytes())
        self.successResultOf(self.reporter.mo_por(MSISDN, ud))
        self.assertEqual(
            self.engine.pors, [(ICCID, 0, "PoR for push 1 (counter 1), response data 019000")]
        )

    def test_errorPorReported(self) -> None:
        """A card's clear error PoR (counter 0) is reported with its status."""
        ud = secure_response(
            ResponsePacket(b"\x00\x00\x00", 0, PorStatus.COUNTER_LOW), Spi(), OtaKeys()
        )
        self.successResultOf(self.reporter.mo_por(MSISDN, ud))
        self.assertEqual([p[:2] for p in self.engine.pors], [(ICCID, 2)])

    def test_duplicateCopysErrorAfterOkNotReported(self) -> None:
        """After an OK PoR, a replay error PoR (a duplicate copy of the push) is not reported."""
        self.successResultOf(self.reporter.mo_por(MSISDN, _por(1)))
        replay = secure_response(
            ResponsePacket(b"\x00\x00\x00", 0, PorStatus.COUNTER_LOW), Spi(), OtaKeys()
        )
        self.successResultOf(self.reporter.mo_por(MSISDN, replay))
        self.assertEqual([p[:2] for p in self.engine.pors], [(ICCID, 0)])

    def test_forgedPorIgnored(self) -> None:
        """A PoR whose CC does not match is logged and never reaches the engine."""
        ud = bytearray(_por(1))
        ud[-1] ^= 1
        self.successResultOf(self.reporter.mo_por(MSISDN, bytes(ud)))
        self.assertEqual(self.engine.pors, [])

    def test_porForEarlierPushNotReported(self) -> None:
        """A PoR echoing an older counter is not taken as the latest push's."""
        self.successResultOf(self.builder.build(order(2)))
        self.ledger.push_offered(order(2), 2, 1)
        self.successResultOf(self.reporter.mo_por(MSISDN, _por(1)))
        self.assertEqual(self.engine.pors, [])

    def test_porFromUnknownNumberIgnored(self) -> None:
        """A PoR from an MSISDN no push went to is ignored."""
        self.successResultOf(self.reporter.mo_por("999", _por(1)))
        self.assertEqual(self.engine.pors, [])

    def test_verifierErrorsLoggedNotRaised(self) -> None:
        """A verifier that raises or fails only makes the PoR ignored."""
        verifiers: list[Callable[[str, bytes], Any]] = [
            lambda i, u: fail(PorError("no")),
            lambda i, u: 1 / 0,
        ]
        for verify in verifiers:
            reporter = EngineReporter(self.engine, self.ledger, verify)
            self.successResultOf(reporter.mo_por(MSISDN, _por(1)))
        self.assertEqual(self.engine.pors, [])


class VectorPorTests(SynchronousTestCase):
    """The public PoR vector, verified end to end with its published keys."""

    def test_vectorPorThroughRouterAndReporter(self) -> None:
        """deliver_sm vector -> router -> builder.verify_por (vector keys) -> engine."""
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
        engine = FakeEngine()
        ledger = PushLedger()
        push = order(msisdn="23")
        ledger.push_offered(push, None, 1)
        reporter = EngineReporter(engine, ledger, builder.verify_por)
        router = DeliverRouter(Clock(), reporter.delivery_receipt, reporter.mo_por)
        router.route(_vector_pdu("deliver_sm with PoR in message_payload TLV 0x0424"))
        self.assertEqual(
            engine.pors, [(ICCID, 0, "PoR for push 1 (counter 0), response data 01612f")]
        )
