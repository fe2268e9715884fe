"""The engine's SMS door: receipts and PoRs mapped back to sessions (L{bipgw.core.ISmsEvents}).

The SMS door reports message ids and MSISDNs only; these tests check that
the engine's L{PushTracker} finds the session and push each belongs to,
that PoRs are believed only once the push sender has verified them, and
that stale, duplicate and forged reports change nothing.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from bipgw.codec.ota import PorStatus
from bipgw.core import (
    ICounterAllocator,
    IPushSender,
    ISmsEvents,
    PorReport,
    PushError,
    PushOrder,
    PushReceipt,
    SessionEngine,
    SessionId,
    SessionState,
    normalise_msisdn,
)
from bipgw.core._pushes import PushTracker
from tests.unit.core import ICCID, MSISDN, EngineTestCase, FakePushSender, fake_por

S = SessionState


class _Base(EngineTestCase):
    def notes(self, text: str) -> list[str]:
        """The details of every event of session s1 that contain C{text}."""
        return [e.detail for e in self.recorder.history(SessionId("s1")) if text in e.detail]

    def accepted(self, *ids: str, counter: int | None = None) -> None:
        """The SMSC accepted the latest push as C{ids}, secured with C{counter}."""
        self.sender.pending[-1].callback(PushReceipt(ids, counter=counter))


class ReceiptTests(_Base):
    """Delivery receipts name a message id; the engine knows whose push it is."""

    def test_engineIsTheSmsEventsDoor(self) -> None:
        """The engine implements the interface the SMS door reports to."""
        self.assertIsInstance(self.engine, ISmsEvents)
        self.assertIsInstance(self.sender, IPushSender)

    def test_deliveredWhenEveryPartIs(self) -> None:
        """A push counts as delivered once every part has a DELIVERED receipt."""
        self.open()
        self.accepted("m1", "m2")
        self.engine.delivery_receipt("m1", True, "message m1 DELIVERED")
        self.assertEqual(self.notes("delivered"), [])
        self.engine.delivery_receipt("m2", True, "message m2 DELIVERED")
        self.assertEqual(self.notes("delivered"), ["push 1 delivered: message m2 DELIVERED"])

    def test_firstFailureReportedOnce(self) -> None:
        """An undeliverable part fails the push once; later receipts change nothing."""
        session = self.open()
        self.accepted("m1", "m2")
        self.engine.delivery_receipt("m1", False, "message m1 UNDELIVERABLE (error 001)")
        self.engine.delivery_receipt("m1", False, "message m1 UNDELIVERABLE (error 001)")
        self.engine.delivery_receipt("m2", True, "message m2 DELIVERED")
        self.assertEqual(
            self.notes("delivered"),
            ["push 1 not delivered: message m1 UNDELIVERABLE (error 001); sending again in 3 s"],
        )
        self.clock.advance(3)
        self.assertEqual(len(self.sender.orders), 2)
        self.assertIs(session.status().state, S.PUSHING)

    def test_decimalSpellingOfHexId(self) -> None:
        """A receipt quoting a hex id in zero-padded decimal (smpplib vector) still matches."""
        self.open()
        self.accepted("1d305b4c")
        self.engine.delivery_receipt("0489708364", True, "message 0489708364 DELIVERED")
        self.assertEqual(
            self.notes("delivered"), ["push 1 delivered: message 0489708364 DELIVERED"]
        )

    def test_receiptBeforeTheLastPartIsAccepted(self) -> None:
        """A part's receipt that beats the SMSC's answer to the push's last part is kept,
        then counted once the push is accepted."""
        session = self.open()
        self.engine.delivery_receipt("m1", False, "message m1 UNDELIVERABLE")
        self.assertEqual(self.notes("delivered"), [])
        self.accepted("m1", "m2")
        self.assertEqual(
            self.notes("delivered"),
            ["push 1 not delivered: message m1 UNDELIVERABLE; sending again in 3 s"],
        )
        self.clock.advance(3)
        self.assertEqual(len(self.sender.orders), 2)
        self.assertIs(session.status().state, S.PUSHING)

    def test_earlyReceiptsBounded(self) -> None:
        """Receipts nobody claims are forgotten, the oldest first."""
        tracker = PushTracker(self.sender, self.fail, self.fail, limit=2)
        for n in range(3):
            tracker.delivery_receipt(f"x{n}", True)
        order = PushOrder(SessionId("s9"), ICCID, MSISDN, 1, "svc")
        tracker.send_push(order)
        self.accepted("x0")
        found = tracker.for_message("x0")
        assert found is not None
        self.assertEqual(found[0].delivered, set())

    def test_unknownMessageOnlyLogged(self) -> None:
        """A receipt for a message id no push had is logged and changes nothing."""
        session = self.open()
        self.accepted("m1")
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.engine.delivery_receipt("zz", False, "message zz EXPIRED")
        self.assertEqual(len(events), 1)
        self.assertIs(session.status().state, S.AWAITING_CARD)

    def test_porInReceipt(self) -> None:
        """A PoR carried by a receipt is verified and reported for that push's card."""
        session = self.open()
        self.accepted("m1", counter=5)
        ud = fake_por(PorStatus.POR_OK, 5)
        self.engine.delivery_receipt("m1", True, "message m1 DELIVERED", ud)
        self.assertEqual(self.sender.verified, [(ICCID, ud)])
        self.assertEqual(
            self.notes("delivered") + self.notes("PoR"),
            [
                "push 1 delivered: message m1 DELIVERED",
                "PoR status 0x00 (POR_OK): PoR for push 1 (counter 5)",
            ],
        )
        self.assertIs(session.status().state, S.AWAITING_CARD)


class PorTests(_Base):
    """SMS from cards: verified by the push sender, matched with the latest push."""

    def test_porForEarlierPushNotReported(self) -> None:
        """A PoR echoing another counter than the push's is an earlier push's: ignored."""
        session = self.open()
        self.accepted("m1", counter=5)
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(PorStatus.COUNTER_LOW, 4)))
        self.assertEqual(self.notes("PoR"), [])
        self.assertIs(session.status().state, S.AWAITING_CARD)

    def test_duplicateCopysErrorAfterOkNotReported(self) -> None:
        """After an OK PoR, a replay error PoR (a duplicate copy of the push) is not reported."""
        session = self.open()
        self.accepted("m1", counter=5)
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(PorStatus.POR_OK, 5)))
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(PorStatus.COUNTER_LOW)))
        self.assertEqual(
            self.notes("PoR"), ["PoR status 0x00 (POR_OK): PoR for push 1 (counter 5)"]
        )
        self.assertIs(session.status().state, S.AWAITING_CARD)

    def test_forgedPorIgnored(self) -> None:
        """A PoR the push sender does not verify is logged and never reaches the session."""
        session = self.open()
        self.accepted("m1")
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertIsNone(self.successResultOf(self.engine.sms_received(MSISDN, b"forged")))
        self.assertEqual(self.sender.verified, [(ICCID, b"forged")])
        self.assertEqual(self.notes("PoR"), [])
        self.assertIs(session.status().state, S.AWAITING_CARD)
        self.assertIn("did not verify", str(events[0]["log_format"]))

    def test_verifierRaisingOnlyIgnoresThePor(self) -> None:
        """A push sender whose verify_por raises makes the PoR ignored; nothing fails."""
        self.open()
        self.accepted("m1")

        def broken(iccid: str, user_data: bytes) -> Deferred[PorReport]:
            raise ZeroDivisionError()

        self.sender.verify_por = broken  # type: ignore[method-assign]
        self.assertIsNone(self.successResultOf(self.engine.sms_received(MSISDN, fake_por(1))))
        self.assertEqual(self.notes("PoR"), [])

    def test_msisdnPointsToTheLatestPush(self) -> None:
        """After a resend, a PoR is reported as the newer push's."""
        self.sender.auto_accept = True
        self.open()
        self.clock.advance(20)
        self.assertEqual(len(self.sender.orders), 2)
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(PorStatus.POR_OK)))
        self.assertEqual(
            self.notes("PoR"), ["PoR status 0x00 (POR_OK): PoR for push 2 (counter 0)"]
        )

    def test_normaliseMsisdn(self) -> None:
        """MSISDNs compare by their digits."""
        self.assertEqual(normalise_msisdn("+44 7700-900123"), "447700900123")


class TrackerTests(_Base):
    """The tracker itself: bounded, and transparent for the sessions."""

    def test_bounded(self) -> None:
        """Beyond its limit the tracker forgets the oldest pushes, their ids and MSISDNs."""
        sender = FakePushSender()
        sender.auto_accept = True
        tracker = PushTracker(sender, lambda *a: None, lambda *a: None, limit=2)
        for n in range(3):
            order = PushOrder(SessionId(f"s{n}"), ICCID, f"4477009000{n}", 1, "svc")
            self.successResultOf(tracker.send_push(order))
        self.assertEqual(len(tracker), 2)
        self.assertIsNone(tracker.for_message("msg-1"))
        self.assertIsNone(tracker.for_msisdn("447700900000"))
        found = tracker.for_message("msg-3")
        assert found is not None
        self.assertEqual((found[0].order.session_id, found[1]), (SessionId("s2"), 0))

    def test_receiptPassedThrough(self) -> None:
        """The session gets the push sender's receipt unchanged."""
        tracker = PushTracker(self.sender, lambda *a: None, lambda *a: None)
        order = PushOrder(SessionId("s9"), ICCID, MSISDN, 1, "svc")
        sent = tracker.send_push(order)
        self.accepted("a", "b", counter=3)
        self.assertEqual(self.successResultOf(sent), PushReceipt(("a", "b"), counter=3))
        self.assertRaises(ValueError, PushTracker, self.sender, print, print, limit=0)

    def test_cancelReachesTheSender(self) -> None:
        """Cancelling a tracked push cancels the push sender's Deferred; failures pass through."""
        tracker = PushTracker(self.sender, lambda *a: None, lambda *a: None)
        order = PushOrder(SessionId("s9"), ICCID, MSISDN, 1, "svc")
        sent = tracker.send_push(order)
        sent.cancel()
        self.failureResultOf(sent, CancelledError)
        self.assertTrue(self.sender.pending[-1].called)
        failed = tracker.send_push(attrs.evolve(order, attempt=2))
        self.sender.refuse(PushError("ESME_RSYSERR"))
        self.failureResultOf(failed, PushError)

    def test_storeShapedAllocatorIsACounterAllocator(self) -> None:
        """core names the counter allocator the store implements."""

        class Counters:
            def next_ota_counter(self, iccid: str) -> Deferred[int]:
                return Deferred()

        self.assertIsInstance(Counters(), ICounterAllocator)
        self.assertIsInstance(self.engine, SessionEngine)
