"""The SMPP client service against a fake SMSC: pushes, flow control, receipts and PoRs.

Each test runs the real service over iosim on a Clock (see
L{tests.unit.smpp.ClientTestCase}); the pushes are real, secured with the
test card's keys, and opened again with the OTA codec where their content
matters.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred

from bipgw.codec.ota import (
    CompactResult,
    PorStatus,
    ResponsePacket,
    secure_response,
    strip_command_udh,
    verify_command,
)
from bipgw.codec.ram import (
    BearerDescription,
    BufferSize,
    OtherAddress,
    PushBipOpening,
    TransportLevel,
    TransportProtocol,
    encode_compact,
)
from bipgw.codec.smpp import (
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    DeliveryReceipt,
    SubmitSm,
)
from bipgw.core import (
    CardRecord,
    CardTarget,
    IPushSender,
    MemorySessionRecorder,
    PushError,
    PushReceipt,
    SessionEngine,
    SessionError,
    SessionId,
    SessionState,
)
from bipgw.push import CallbackAddress, ISmsLink, PushBuilder, PushProfile, SmsSubmission
from bipgw.smpp import QueueFullError
from tests import vectors
from tests.unit.core import FakeDirectory
from tests.unit.smpp import (
    CALLBACK_HOST,
    CALLBACK_IP,
    CALLBACK_PORT,
    ICCID,
    KEYS,
    KIC_12,
    KID_12,
    MSISDN,
    SETTINGS,
    SPI_1639,
    ClientTestCase,
    RecordingEvents,
    keys_for,
    order,
    run,
    sms,
)

_S = CommandStatus


class PushTests(ClientTestCase):
    """Pushes: their bytes, the window, the rate cap, throttling and the queue."""

    def test_pushSubmittedWithOtaFields(self) -> None:
        """A push is one submit_sm: esm_class 40, PID 7F, DCS F6, receipt asked, to the MSISDN."""
        self.start()
        receipt = self.successResultOf(self.push())
        (submit,) = self.smsc.of(SubmitSm)
        self.assertEqual(receipt, PushReceipt(("m1",), counter=1))
        self.assertEqual(
            (submit.esm_class, submit.protocol_id, submit.data_coding, submit.registered_delivery),
            (0x40, 0x7F, 0xF6, 0x01),
        )
        self.assertEqual(submit.destination_addr, "447700900123")
        self.assertEqual((submit.dest_addr_ton, submit.dest_addr_npi), (1, 1))
        self.assertEqual(
            (submit.source_addr, submit.source_addr_ton, submit.source_addr_npi), ("8801", 1, 1)
        )
        self.assertIsNone(submit.message_payload)

    def test_pushCarriesSecuredPushCommand(self) -> None:
        """The short_message opens, with the card's keys, to the PUSH for the callback address."""
        self.start()
        self.successResultOf(self.push())
        (submit,) = self.smsc.of(SubmitSm)
        opened = verify_command(strip_command_udh(submit.short_message), KEYS, last_counter=0)
        expected = PushBipOpening(
            bearer=BearerDescription.default(),
            buffer_size=BufferSize(1024),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, CALLBACK_PORT),
            address=OtherAddress(CALLBACK_IP),
        ).encode()
        self.assertEqual(opened.data, encode_compact([expected]))
        self.assertEqual(opened.counter, 1)
        self.assertEqual(self.counters.last, {ICCID: 1})

    def test_windowFullQueuesTheRest(self) -> None:
        """With a window of 2, a third push waits until a response frees a slot."""
        self.use(attrs.evolve(SETTINGS, window=2))
        self.start()
        self.smsc.hold = True
        pushes = [self.push(session=f"s{i}") for i in range(3)]
        self.assertEqual(len(self.smsc.held), 2)
        self.assertEqual(self.service.pump.queue.pushes, 1)
        self.smsc.release(1)
        run(self.clock, self.endpoint)
        self.assertEqual(len(self.smsc.held), 2)
        self.smsc.release()
        run(self.clock, self.endpoint)
        ids = [self.successResultOf(p).message_ids for p in pushes]
        self.assertEqual(ids, [("m1",), ("m2",), ("m3",)])
        sessions = [s.short_message for s in self.smsc.of(SubmitSm)]
        self.assertEqual(len(set(sessions)), 3)

    def test_rateCapSpacesSubmits(self) -> None:
        """At 2 messages/s with no burst, submits leave 0.5 s apart."""
        self.use(attrs.evolve(SETTINGS, rate=2.0, burst=1.0))
        self.start()
        pushes = [self.sender.send_push(order(session=f"s{i}")) for i in range(4)]
        run(self.clock, self.endpoint, 2.0, step=0.125)
        self.assertEqual(self.smsc.times(SubmitSm), [0.0, 0.5, 1.0, 1.5])
        for p in pushes:
            self.successResultOf(p)

    def test_throttledBacksOffAndResendsSamePdu(self) -> None:
        """ESME_RTHROTTLED pauses 1 s, then 2 s, and the same part is sent again each time."""
        self.start()
        self.smsc.statuses = [int(_S.ESME_RTHROTTLED), int(_S.ESME_RMSGQFUL)]
        pushed = self.push()
        self.assertNoResult(pushed)
        run(self.clock, self.endpoint, 3.0)
        receipt = self.successResultOf(pushed)
        submits = self.smsc.of(SubmitSm)
        self.assertEqual(self.smsc.times(SubmitSm), [0.0, 1.0, 3.0])
        self.assertEqual(len({s.short_message for s in submits}), 1)
        self.assertEqual(len({s.sequence_number for s in submits}), 3)
        self.assertEqual(receipt.message_ids, ("m1",))
        self.assertEqual(self.counters.last, {ICCID: 1})

    def test_throttlingResetsAfterSuccess(self) -> None:
        """After an accepted submit the next throttling pause starts from 1 s again."""
        self.start()
        self.smsc.statuses = [int(_S.ESME_RTHROTTLED)]
        first = self.push()
        run(self.clock, self.endpoint, 1.0)
        self.successResultOf(first)
        self.smsc.statuses = [int(_S.ESME_RTHROTTLED)]
        second = self.push(session="s2")
        run(self.clock, self.endpoint, 1.0)
        self.successResultOf(second)
        self.assertEqual(self.smsc.times(SubmitSm), [0.0, 1.0, 1.0, 2.0])

    def test_otherErrorFailsThePushNamingTheStatus(self) -> None:
        """An ESME_RINVDSTADR answer fails the push, permanently, with the status name."""
        self.start()
        self.smsc.statuses = [int(_S.ESME_RINVDSTADR)]
        failure = self.failureResultOf(self.push(), PushError)
        self.assertIn("ESME_RINVDSTADR", str(failure.value))
        self.assertTrue(failure.value.permanent)

    def test_systemErrorIsTransient(self) -> None:
        """An ESME_RSYSERR answer fails the push, but as worth retrying."""
        self.start()
        self.smsc.statuses = [int(_S.ESME_RSYSERR)]
        failure = self.failureResultOf(self.push(), PushError)
        self.assertIn("ESME_RSYSERR", str(failure.value))
        self.assertFalse(failure.value.permanent)

    def test_pushesQueuedWhileDownAreSentInOrderAfterBind(self) -> None:
        """Pushes accepted while the SMSC is unreachable all go, in order, once bound."""
        self.endpoint.refuse = 2
        self.start()
        pushes = [self.push(session=f"s{i}") for i in range(5)]
        self.assertEqual(self.smsc.of(SubmitSm), [])
        for p in pushes:
            self.assertNoResult(p)
        run(self.clock, self.endpoint, 3.0)
        self.assertTrue(self.service.bound)
        submits = self.smsc.of(SubmitSm)
        counters = [
            verify_command(strip_command_udh(s.short_message), KEYS, last_counter=None).counter
            for s in submits
        ]
        self.assertEqual(counters, [1, 2, 3, 4, 5])
        self.assertEqual(
            [self.successResultOf(p).message_ids for p in pushes],
            [("m1",), ("m2",), ("m3",), ("m4",), ("m5",)],
        )

    def test_inFlightPartsResentAfterLinkLoss(self) -> None:
        """Submits unanswered when the link drops are sent again, in order, after rebinding."""
        self.start()
        self.smsc.hold = True
        pushes = [self.push(session=f"s{i}") for i in range(3)]
        first = [s.short_message for s in self.smsc.of(SubmitSm)]
        self.smsc.held.clear()
        self.smsc.hold = False
        self.smsc.current.drop()
        run(self.clock, self.endpoint, 1.0)
        again = [
            a.pdu.short_message
            for a in self.smsc.received
            if a.connection == 1 and isinstance(a.pdu, SubmitSm)
        ]
        self.assertEqual(again, first)
        self.assertEqual(
            [self.successResultOf(p).message_ids for p in pushes], [("m1",), ("m2",), ("m3",)]
        )

    def test_partLostTooOftenFailsItsPush(self) -> None:
        """A part whose connection drops unanswered max_sends times fails its push."""
        self.start()
        self.smsc.hold = True
        pushed = self.push()
        for _ in range(3):
            self.smsc.held.clear()
            self.smsc.current.drop()
            run(self.clock, self.endpoint, 1.0)
        failure = self.failureResultOf(pushed, PushError)
        self.assertIn("sent 3 times", str(failure.value))
        self.assertEqual(len(self.smsc.of(SubmitSm)), 3)

    def test_responseTimeoutDropsLinkAndResends(self) -> None:
        """A submit without response within response_timeout drops the link; it is resent."""
        self.start()
        self.smsc.hold = True
        pushed = self.push()
        run(self.clock, self.endpoint, 5.0)
        self.assertTrue(self.smsc.connections[0].lost)
        self.smsc.hold = False
        run(self.clock, self.endpoint, 1.0)
        self.assertEqual(self.successResultOf(pushed).message_ids, ("m1",))
        self.assertEqual(len(self.smsc.of(SubmitSm)), 2)

    def test_queueBoundRefusesWithoutSpendingCounters(self) -> None:
        """Beyond queue_limit waiting pushes, a push is refused at once, no counter spent."""
        self.use(attrs.evolve(SETTINGS, queue_limit=2))
        self.endpoint.refuse = 100
        self.start()
        waiting = [self.push(session=f"s{i}") for i in range(2)]
        failure = self.failureResultOf(self.push(session="s9"), QueueFullError)
        self.assertIn("queue is full", str(failure.value))
        self.assertFalse(failure.value.permanent)
        self.assertEqual(self.counters.last, {ICCID: 2})
        self.stop()
        for p in waiting:
            self.failureResultOf(p, PushError)

    def test_newerAttemptSupersedesWaitingOne(self) -> None:
        """A queued push of a session is dropped when its next attempt is queued."""
        self.endpoint.refuse = 1
        self.start()
        first = self.push(attempt=1)
        second = self.push(attempt=2)
        failure = self.failureResultOf(first, PushError)
        self.assertIn("superseded", str(failure.value))
        run(self.clock, self.endpoint, 1.0)
        self.successResultOf(second)
        self.assertEqual(len(self.smsc.of(SubmitSm)), 1)

    def test_cancelledPushIsNotSent(self) -> None:
        """Cancelling a queued push removes it from the queue."""
        self.endpoint.refuse = 1
        self.start()
        pushed = self.push()
        pushed.cancel()
        self.failureResultOf(pushed)
        run(self.clock, self.endpoint, 1.0)
        self.assertEqual(self.smsc.of(SubmitSm), [])

    def test_isAnSmsLink(self) -> None:
        """The service is the push sender's SMS link; the push sender is the engine's."""
        self.assertIsInstance(self.service, ISmsLink)
        self.assertIsInstance(self.sender, IPushSender)

    def test_submitKnowsOnlyMsisdnsAndParts(self) -> None:
        """The link sends what it is given, as is, and answers with message ids."""
        self.start()
        submitted = self.service.submit(sms(parts=2))
        run(self.clock, self.endpoint)
        self.assertEqual(self.successResultOf(submitted), ("m1", "m2"))
        self.assertEqual(
            [(s.destination_addr, s.short_message) for s in self.smsc.of(SubmitSm)],
            [("447700900123", b"\x00"), ("447700900123", b"\x01")],
        )

    def test_refusalNamesTheSubmission(self) -> None:
        """A stopped link says why it refuses, before anything is built."""
        refused = self.service.refusal("push 3 of session s7")
        assert refused is not None
        self.assertIn("not running", str(refused))
        self.failureResultOf(self.service.submit(sms()), PushError)
        self.start()
        self.assertIsNone(self.service.refusal("push 3 of session s7"))

    def test_partTooLongIsPermanent(self) -> None:
        """User data no submit_sm can carry fails at once, for good."""
        self.start()
        too_long = SmsSubmission(MSISDN, (bytes(300),), "push 1 of session s1")
        failure = self.failureResultOf(self.service.submit(too_long), PushError)
        self.assertTrue(failure.value.permanent)
        self.assertEqual(self.smsc.of(SubmitSm), [])

    def test_cardWithoutMsisdnRefusedPermanently(self) -> None:
        """A card without MSISDN is refused for good, before any counter is spent."""
        self.start()
        failure = self.failureResultOf(self.push(msisdn=None), PushError)
        self.assertTrue(failure.value.permanent)
        self.assertEqual((self.counters.last, self.smsc.of(SubmitSm)), ({}, []))

    def test_pushRefusedWhenNotRunning(self) -> None:
        """A stopped service refuses pushes at once."""
        failure = self.failureResultOf(self.sender.send_push(order()), PushError)
        self.assertIn("not running", str(failure.value))
        self.assertEqual(self.counters.last, {})

    def test_longPushIsConcatenated(self) -> None:
        """An Amd B trigger too long for one SM goes as several submit_sm with UDH concatenation."""
        self.builder = PushBuilder(
            keys_for,
            self.counters,
            CallbackAddress(CALLBACK_HOST, CALLBACK_PORT),
            PushProfile(trigger="amdb", admin_uri="/admin/" + "x" * 120, apn="internet.example"),
        )
        self.use(builder=self.builder)
        self.start()
        receipt = self.successResultOf(self.push())
        submits = self.smsc.of(SubmitSm)
        self.assertEqual(len(receipt.message_ids), len(submits))
        self.assertGreater(len(submits), 1)
        self.assertTrue(all(len(s.short_message) <= 140 for s in submits))
        self.assertTrue(all(s.message_payload is None for s in submits))
        self.assertEqual(submits[0].short_message[:3], b"\x07\x70\x00")


class DeliverTests(ClientTestCase):
    """Receipts and PoRs from the SMSC reach the engine's door, and are always answered."""

    def _fromSmsc(self, name: str) -> None:
        self.smsc.current.write(bytes.fromhex(vectors.by_name("smpp34", name)["pdu"]))
        run(self.clock, self.endpoint)

    def test_receiptVectorReachesCallbackAndIsAnswered(self) -> None:
        """The smpplib receipt vector is reported as delivered, and answered."""
        self.start()
        self._fromSmsc("deliver_sm delivery receipt with TLVs (from smpplib unit test)")
        self.assertEqual(
            self.events.receipts, [("1d305b4c", True, "message 1d305b4c DELIVERED", None)]
        )
        (resp,) = self.smsc.of(DeliverSmResp)
        self.assertEqual((resp.sequence_number, resp.command_status), (1, 0))

    def test_porVectorReachesCallbackAndIsAnswered(self) -> None:
        """The PoR-in-message_payload vector is reported as an SMS from its MSISDN, and answered."""
        self.start()
        self._fromSmsc("deliver_sm with PoR in message_payload TLV 0x0424")
        ud = bytes.fromhex("027100001612b000110000000000000055f47118381175fb01612f")
        self.assertEqual(self.events.sms, [("23", ud)])
        (resp,) = self.smsc.of(DeliverSmResp)
        self.assertEqual(resp.sequence_number, 9)

    def test_failingCallbackStillAnswered(self) -> None:
        """An engine door that raises is logged; the SMSC still gets its deliver_sm_resp."""

        class Broken(RecordingEvents):
            def sms_received(self, msisdn: str, user_data: bytes) -> Deferred[None]:
                raise ZeroDivisionError()

        self.service.report_to(Broken())
        self.start()
        self._fromSmsc("deliver_sm with PoR in message_payload TLV 0x0424")
        self.assertEqual(len(self.smsc.of(DeliverSmResp)), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_reportToEngine(self) -> None:
        """report_to: a push's receipt and its card's PoR reach the session, verified."""
        clock = self.clock
        recorder = MemorySessionRecorder()
        engine = SessionEngine(
            clock,
            self.sender,
            FakeDirectory([CardRecord(ICCID, MSISDN, ICCID.encode())]),
            recorder,
            new_id=lambda: SessionId("s1"),
        )
        self.service.report_to(engine)
        self.addCleanup(engine.stop)
        self.start()
        session = engine.open(CardTarget.by_iccid(ICCID), "isd")
        session.ready.addErrback(lambda f: f.trap(SessionError))
        run(clock, self.endpoint)
        self.assertIs(session.status().state, SessionState.AWAITING_CARD)
        self.assertEqual(len(self.smsc.of(SubmitSm)), 1)
        message_id = "m1"
        text = DeliveryReceipt(id=message_id, stat="DELIVRD", err="000").to_bytes()
        self.smsc.current.deliver(
            DeliverSm(0, 0, source_addr="447700900123", esm_class=0x04, short_message=text)
        )
        por = secure_response(
            ResponsePacket(
                b"\x00\x00\x00", 1, PorStatus.POR_OK, CompactResult(1, 0x9000).to_bytes()
            ),
            SPI_1639,
            KEYS,
            kic=KIC_12,
            kid=KID_12,
        )
        self.smsc.current.deliver(
            DeliverSm(
                0,
                0,
                source_addr="447700900123",
                esm_class=0x40,
                protocol_id=0x7F,
                data_coding=0xF6,
                short_message=por,
            )
        )
        run(self.clock, self.endpoint)
        notes = [e.detail for e in recorder.history(session.id) if not e.transition]
        self.assertEqual(
            notes,
            [
                "push 1 delivered: message m1 DELIVERED",
                "PoR status 0x00 (POR_OK): PoR for push 1 (counter 1), response data 019000",
            ],
        )
        self.assertEqual(len(self.smsc.of(DeliverSmResp)), 2)
        self.assertIs(session.status().state, SessionState.AWAITING_CARD)
        self.assertEqual(self.events.receipts, [])

    def test_porInReceiptReported(self) -> None:
        """A receipt whose message_payload carries a PoR reports it with the receipt."""
        self.start()
        por = bytes.fromhex("027100001612b000110000000000000055f47118381175fb01612f")
        text = DeliveryReceipt(id="m7", stat="DELIVRD", err="000").to_bytes()
        self.smsc.current.deliver(
            DeliverSm(0, 0, esm_class=0x04, short_message=text, message_payload=por)
        )
        run(self.clock, self.endpoint)
        self.assertEqual(self.events.receipts, [("m7", True, "message m7 DELIVERED", por)])
        self.assertEqual(len(self.smsc.of(DeliverSmResp)), 1)
