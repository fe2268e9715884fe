"""The session engine before the card connects: lookup, busy cards, pushes.

Every test runs on a L{Clock} with the timeouts of L{tests.unit.core.POLICY}
(resolve 5 s, push accept 10 s, retry 3 s then x2, card 20 s then x2,
queue 100 s), so the time at which each transition happens is checked
exactly.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from bipgw.codec.ota import PorStatus
from bipgw.core import (
    BusyPolicy,
    CardTarget,
    FailureReason,
    PushError,
    PushOrder,
    PushReceipt,
    Session,
    SessionError,
    SessionId,
    SessionState,
)
from bipgw.store import BatchingRecorder, MemoryStore, StoreError
from tests.unit.core import (
    CARD,
    ICCID,
    ICCID2,
    MSISDN,
    POLICY,
    EngineTestCase,
    fake_por,
    first_post,
)

S = SessionState


class _Base(EngineTestCase):
    def failure(self, session: Session) -> SessionError:
        """The session failed; return the error its ready Deferred carries."""
        error = self.failureResultOf(session.ready, SessionError).value
        assert isinstance(error, SessionError)
        status = session.status()
        self.assertIs(status.state, S.FAILED)
        self.assertIs(status.reason, error.reason)
        self.assertEqual(status.ended_at, self.clock.seconds())
        return error

    def orderTimes(self, session: Session) -> list[float]:
        """When each push of the session was sent (from its history)."""
        return [
            e.at for e in self.recorder.history(session.id) if e.state is S.PUSHING and e.transition
        ]


class ResolveTests(_Base):
    """REQUESTED: the card is looked up before anything is sent."""

    def test_openResolvesAndPushes(self) -> None:
        """Opening looks the card up, reserves it and sends push 1 for the service."""
        session = self.open(service="bank-app")
        self.assertEqual(self.directory.asked, [CardTarget.by_iccid(ICCID)])
        self.assertEqual(
            self.sender.orders, [PushOrder(SessionId("s1"), ICCID, MSISDN, 1, "bank-app")]
        )
        self.assertEqual(self.states(session), [S.REQUESTED, S.PUSHING])
        self.assertEqual(self.recorder.sessions[session.id].iccid, ICCID)
        self.assertNoResult(session.ready)

    def test_byMsisdn(self) -> None:
        """A target by MSISDN resolves to the card's ICCID for the push."""
        session = self.engine.open(CardTarget.by_msisdn(MSISDN), "svc")
        self.opened.append(session)
        self.assertEqual(self.sender.orders[0].iccid, ICCID)
        self.assertEqual(session.status().msisdn, MSISDN)

    def test_badArguments(self) -> None:
        """open() refuses a target that is not a CardTarget, or an empty service."""
        self.assertRaises(TypeError, self.engine.open, ICCID, "svc")
        self.assertRaises(ValueError, self.engine.open, CardTarget.by_iccid(ICCID), "")
        self.assertEqual(self.engine.sessions(), [])

    def test_unknownCard(self) -> None:
        """No card for the target: UNKNOWN_CARD, naming the target; nothing is sent."""
        session = self.engine.open(CardTarget.by_msisdn("4900000"), "svc")
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.UNKNOWN_CARD)
        self.assertIn("MSISDN 4900000", str(error))
        self.assertEqual(self.sender.orders, [])
        self.assertEqual(self.states(session), [S.REQUESTED, S.FAILED])

    def test_directoryError(self) -> None:
        """A failing directory fails the session with DIRECTORY_ERROR and is logged."""
        self.directory.error = RuntimeError("database is down")
        session = self.open()
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.DIRECTORY_ERROR)
        self.assertIn("database is down", error.detail)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_directoryTimeout(self) -> None:
        """No answer within resolve_timeout fails the session; a late answer is ignored."""
        self.directory.hold = True
        session = self.open()
        self.clock.advance(4.9)
        self.assertNoResult(session.ready)
        self.clock.advance(0.1)
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.DIRECTORY_ERROR)
        self.assertIn("5 s", error.detail)
        self.directory.pending[0].callback(CARD)
        self.assertEqual(self.sender.orders, [])
        self.assertEqual(self.engine.card_arrived(ICCID, "a"), None)


class PushTests(_Base):
    """PUSHING and AWAITING_CARD: retries with exponential backoff, then a reason."""

    def test_acceptedWaitsForCard(self) -> None:
        """An accepted push moves to AWAITING_CARD, recording the message ids."""
        session = self.open()
        self.sender.accept(0, "id-1", "id-2")
        self.assertIs(session.status().state, S.AWAITING_CARD)
        self.assertIn("id-1, id-2", session.status().detail)
        self.assertIn("waiting 20 s", session.status().detail)

    def test_retryWithBackoffThenFail(self) -> None:
        """Failed submissions are retried after 3 s then 6 s; the third failure
        ends the session with PUSH_FAILED naming the last error."""
        session = self.open()
        self.sender.refuse(RuntimeError("ESME_RSUBMITFAIL"))
        self.assertEqual(len(self.sender.orders), 1)
        self.assertIn("sending again in 3 s", session.status().detail)
        self.clock.advance(2.9)
        self.assertEqual(len(self.sender.orders), 1)
        self.clock.advance(0.1)
        self.assertEqual([o.attempt for o in self.sender.orders], [1, 2])
        self.sender.refuse(RuntimeError("ESME_RTHROTTLED"))
        self.clock.advance(6)
        self.assertEqual([o.attempt for o in self.sender.orders], [1, 2, 3])
        self.sender.refuse(RuntimeError("ESME_RSUBMITFAIL again"))
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.PUSH_FAILED)
        self.assertIn("push 3 failed: ESME_RSUBMITFAIL again; no attempts left", str(error))
        self.assertEqual(self.orderTimes(session), [0, 3, 9])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)

    def test_permanentNotRetried(self) -> None:
        """A permanent PushError fails at once, without using the other attempts."""
        session = self.open()
        self.sender.refuse(PushError("card has no MSISDN", permanent=True))
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.PUSH_FAILED)
        self.assertIn("card has no MSISDN; not retried", error.detail)
        self.assertEqual(len(self.sender.orders), 1)

    def test_pushTimeout(self) -> None:
        """Unaccepted pushes time out after 10 s and are resent; the last gives
        PUSH_TIMEOUT; a late acceptance of an old push changes nothing."""
        session = self.open()
        self.clock.advance(10)
        self.clock.advance(3)
        self.assertEqual(len(self.sender.orders), 2)
        self.sender.accept(0)
        self.assertIs(session.status().state, S.PUSHING)
        self.clock.advance(10)
        self.clock.advance(6)
        self.assertEqual(len(self.sender.orders), 3)
        self.clock.advance(10)
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.PUSH_TIMEOUT)
        self.assertIn("push 3 not accepted within 10 s", error.detail)
        self.assertEqual(self.orderTimes(session), [0, 13, 29])

    def test_senderRaises(self) -> None:
        """A sender that raises instead of failing its Deferred counts as a failed push."""

        class Broken:
            def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
                raise ValueError("no keys loaded")

        self.engine._sms.pushes._sender = Broken()  # type: ignore[assignment]
        session = self.open()
        self.assertIn("no keys loaded", session.status().detail)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.engine.stop()
        self.failure(session)

    def test_cardTimeoutResends(self) -> None:
        """A card that does not connect gets a new push after 20 s, then 40 s;
        after 80 s more the session fails with CARD_TIMEOUT."""
        self.sender.auto_accept = True
        session = self.open()
        self.clock.advance(19.9)
        self.assertEqual(len(self.sender.orders), 1)
        self.clock.advance(0.1)
        self.clock.advance(40)
        self.assertEqual([o.attempt for o in self.sender.orders], [1, 2, 3])
        self.clock.advance(79.9)
        self.assertNoResult(session.ready)
        self.clock.advance(0.1)
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.CARD_TIMEOUT)
        self.assertEqual(error.detail, "no connection within 80 s of push 3, the last allowed")
        self.assertEqual(self.orderTimes(session), [0, 20, 60])
        self.assertEqual(
            self.states(session),
            [S.REQUESTED] + [S.PUSHING, S.AWAITING_CARD] * 3 + [S.FAILED],
        )

    def test_cardArrivesWhilePushing(self) -> None:
        """A card may connect before the SMSC acknowledges the push; the late
        acknowledgement is then ignored."""
        session = self.open()
        link = self.arrive()
        link.post(first_post())
        self.successResultOf(session.ready)
        self.sender.accept()
        self.assertIs(session.status().state, S.CONNECTED)
        self.assertEqual(self.states(session), [S.REQUESTED, S.PUSHING, S.CONNECTED])
        self.clock.advance(POLICY.card_timeout * 10)
        self.assertIs(session.status().state, S.FAILED)
        self.assertIs(session.status().reason, FailureReason.IDLE_TIMEOUT)

    def test_notDeliveredResends(self) -> None:
        """A receipt saying push 1 was not delivered counts as a failure: resent after 3 s."""
        session = self.open()
        self.sender.accept()
        self.engine.delivery_receipt("msg-1", False, "stat:UNDELIV err:001")
        self.assertIn("push 1 not delivered: stat:UNDELIV err:001", session.status().detail)
        self.clock.advance(3)
        self.assertEqual(len(self.sender.orders), 2)
        self.assertIs(session.status().state, S.PUSHING)

    def test_deliveredNoted(self) -> None:
        """A positive receipt is noted in the history without changing state."""
        session = self.open()
        self.sender.accept()
        self.engine.delivery_receipt("MSG-1", True, "stat:DELIVRD")
        last = self.recorder.history(session.id)[-1]
        self.assertEqual((last.previous, last.state), (S.AWAITING_CARD, S.AWAITING_CARD))
        self.assertFalse(last.transition)
        self.assertEqual(last.detail, "push 1 delivered: stat:DELIVRD")

    def test_staleReceiptNoted(self) -> None:
        """A non-delivery of an earlier push does not disturb the current one."""
        self.sender.auto_accept = True
        session = self.open()
        self.clock.advance(20)
        self.engine.delivery_receipt("msg-1", False, "expired")
        self.assertIs(session.status().state, S.AWAITING_CARD)
        self.assertEqual(len(self.sender.orders), 2)
        self.assertIn("push 1 not delivered: expired", session.status().detail)
        self.engine.delivery_receipt("nope", True)
        self.engine.delivery_receipt("bad id!", True)

    def test_porError(self) -> None:
        """A PoR with an error status fails the session at once, naming the status."""
        session = self.open()
        self.sender.accept()
        done = self.engine.sms_received("+49 151 12345678", fake_por(PorStatus.COUNTER_LOW))
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.sender.verified, [(ICCID, fake_por(PorStatus.COUNTER_LOW))])
        error = self.failure(session)
        self.assertIs(error.reason, FailureReason.POR_ERROR)
        self.assertEqual(error.detail, "PoR status 0x02 (COUNTER_LOW): PoR for push 1 (counter 0)")
        self.assertEqual(len(self.sender.orders), 1)

    def test_porUnknownStatus(self) -> None:
        """A status outside the table still fails the session, shown in hex."""
        session = self.open()
        self.engine.sms_received(MSISDN, fake_por(0x42, 7, b"\x01"))
        error = self.failure(session)
        self.assertEqual(
            error.detail,
            "PoR status 0x42 (unknown status): PoR for push 1 (counter 7), response data 01",
        )

    def test_porOkNoted(self) -> None:
        """A PoR saying all is well is noted; the session keeps waiting."""
        session = self.open()
        self.sender.accept()
        self.engine.sms_received(MSISDN, fake_por(PorStatus.POR_OK))
        self.assertIs(session.status().state, S.AWAITING_CARD)
        self.assertEqual(
            session.status().detail, "PoR status 0x00 (POR_OK): PoR for push 1 (counter 0)"
        )

    def test_porWithoutSession(self) -> None:
        """A PoR from a number no push went to, or a malformed one, is only logged."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(1)))
        self.successResultOf(self.engine.sms_received("not a number", fake_por(1)))
        self.assertEqual(len(events), 2)
        self.assertEqual(self.sender.verified, [])


class BusyTests(_Base):
    """One admin session per card: a second one waits in line or is refused."""

    def test_queuedUntilFree(self) -> None:
        """A second session for a busy card waits, then pushes once the first ends."""
        first = self.open()
        self.sender.accept()
        second = self.open()
        self.assertIs(second.status().state, S.REQUESTED)
        self.assertEqual(
            second.status().detail,
            f"card {ICCID} has session s1 (awaiting-card); queued at position 1",
        )
        self.assertEqual(len(self.sender.orders), 1)
        self.successResultOf(first.close())
        self.assertEqual(self.sender.orders[-1], PushOrder(second.id, ICCID, MSISDN, 1, "svc"))
        self.assertIs(second.status().state, S.PUSHING)
        self.assertIsNone(self.engine.card_arrived(ICCID2, "other"))
        link = self.arrive()
        self.assertEqual(link.session_id, second.id)

    def test_refused(self) -> None:
        """With the refuse policy a second session fails with CARD_BUSY at once."""
        self.engine.policy = attrs.evolve(POLICY, busy_policy=BusyPolicy.REFUSE)
        self.open()
        second = self.open()
        error = self.failure(second)
        self.assertIs(error.reason, FailureReason.CARD_BUSY)
        self.assertEqual(str(error), f"{error.reason.text}: card {ICCID} has session s1 (pushing)")

    def test_queueFull(self) -> None:
        """Beyond queue_limit_per_card waiting sessions, more are refused."""
        self.engine.policy = attrs.evolve(POLICY, queue_limit_per_card=1)
        self.open()
        self.open()
        third = self.open()
        error = self.failure(third)
        self.assertIs(error.reason, FailureReason.CARD_BUSY)
        self.assertIn("1 sessions already wait for it (the limit)", error.detail)

    def test_queueTimeout(self) -> None:
        """A session waiting longer than queue_timeout fails with QUEUE_TIMEOUT."""
        self.engine.policy = attrs.evolve(POLICY, queue_timeout=15)
        self.sender.auto_accept = True
        first = self.open()
        second = self.open()
        self.clock.advance(14.9)
        self.assertNoResult(second.ready)
        self.clock.advance(0.1)
        error = self.failure(second)
        self.assertIs(error.reason, FailureReason.QUEUE_TIMEOUT)
        self.assertIn("still busy after 15 s", error.detail)
        self.assertIs(first.status().state, S.AWAITING_CARD)

    def test_queuedCancelled(self) -> None:
        """A queued session closed by the platform never pushes."""
        first = self.open()
        second = self.open()
        self.assertEqual(self.successResultOf(second.close()).reason, FailureReason.CANCELLED)
        self.engine.stop()
        self.failure(first)
        self.assertEqual(len(self.sender.orders), 1)

    def test_otherCardsIndependent(self) -> None:
        """Sessions for different cards do not wait for each other."""
        self.open(ICCID)
        self.open(ICCID2)
        self.assertEqual([o.iccid for o in self.sender.orders], [ICCID, ICCID2])


class CancelAndStopTests(_Base):
    """The platform may give up early; the gateway may stop."""

    def test_closeBeforeConnect(self) -> None:
        """Closing before the card connects cancels the session: close succeeds,
        ready fails with CANCELLED, and a late card gets no session."""
        session = self.open()
        self.sender.accept()
        status = self.successResultOf(session.close())
        self.assertIs(status.state, S.FAILED)
        self.assertIs(status.reason, FailureReason.CANCELLED)
        self.assertIs(self.failure(session).reason, FailureReason.CANCELLED)
        self.assertIsNone(self.engine.card_arrived(ICCID, "late"))

    def test_stop(self) -> None:
        """stop() fails every live session with SHUTDOWN; a queued one never pushes."""
        first = self.open()
        second = self.open()
        other = self.open(ICCID2)
        self.engine.stop("maintenance")
        for session in (first, second, other):
            error = self.failure(session)
            self.assertIs(error.reason, FailureReason.SHUTDOWN)
            self.assertEqual(error.detail, "maintenance")
        self.assertEqual(len(self.sender.orders), 2)
        self.assertEqual(self.engine.sessions(), [])

    def test_noSessionForCard(self) -> None:
        """A card with no session waiting, or a bad ICCID, gets None."""
        self.assertIsNone(self.engine.card_arrived(ICCID, "agent"))
        self.assertIsNone(self.engine.card_arrived("12", "agent"))


class RecordingTests(_Base):
    """Every transition is recorded and published; status stays queryable."""

    def test_eventsRecordedAndPublished(self) -> None:
        """Subscribers see exactly the recorded events, numbered from 1."""
        session = self.open()
        self.sender.accept()
        self.engine.stop()
        self.failure(session)
        self.assertEqual(self.events, self.recorder.events)
        self.assertEqual([e.seq for e in self.events], list(range(1, len(self.events) + 1)))
        self.assertEqual(self.events[-1].reason, FailureReason.SHUTDOWN)

    def test_subscriberErrorsContained(self) -> None:
        """A subscriber that raises is logged; others and the session carry on;
        an unsubscribed one hears nothing more."""
        heard: list[object] = []

        def broken(event: object) -> None:
            raise KeyError("oops")

        self.engine.subscribe(broken)
        stop = self.engine.subscribe(heard.append)
        session = self.open()
        self.assertEqual(len(heard), 2)
        stop()
        stop()
        self.sender.accept()
        self.assertEqual(len(heard), 2)
        self.assertIs(session.status().state, S.AWAITING_CARD)
        self.engine.stop()
        self.failure(session)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 4)

    def test_recorderFailureContained(self) -> None:
        """A recorder that fails is logged and does not disturb the session."""

        class Failing:
            def record_opened(self, status: object) -> Deferred[None]:
                return succeed(None)

            def record_session(self, status: object) -> Deferred[None]:
                return succeed(None)

            def record_event(self, event: object) -> None:
                raise OSError("disk full")

            def record_apdus(self, traces: object) -> None:
                raise OSError("disk full")

        self.engine.recorder = Failing()  # type: ignore[assignment]
        session = self.open()
        self.sender.accept()
        self.assertIs(session.status().state, S.AWAITING_CARD)
        self.engine.stop()
        self.failure(session)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 4)

    def test_unwrittenOpeningLeavesNoUnhandledFailure(self) -> None:
        """The store fails the opening row of a session nobody waits on (a
        test's, a card-initiated one): the failure is logged once, each reader
        of C{recorded}, before or after, gets it, and the Deferred the engine
        made holds no failure (one left there is reported as an "Unhandled
        error in Deferred" whenever it is collected, in some later test)."""
        store = MemoryStore()
        self.successResultOf(store.close())  # every write now fails
        recorder = BatchingRecorder(store, self.clock)
        self.engine.recorder = recorder
        made: list[Deferred[None]] = []
        record_opened = self.engine._record_opened

        def keep(machine: Any) -> Deferred[None]:
            made.append(record_opened(machine))
            return made[-1]

        self.patch(self.engine, "_record_opened", keep)
        unread = self.open()
        read = self.open(ICCID2)
        early = read.recorded
        self.clock.advance(1.0)  # the batch is written, and fails
        self.assertEqual(recorder.failed, 6)  # two sessions, their four events
        self.failureResultOf(early, StoreError)
        self.assertEqual([self.successResultOf(d) for d in made], [None, None])
        self.assertIs(unread.status().state, S.PUSHING)
        self.engine.stop()
        self.failure(unread)
        self.failure(read)
        self.clock.advance(1.0)
        self.successResultOf(recorder.stop())
        self.assertEqual(recorder.failed, 10)  # and the two sessions' ends, in a second batch
        # One line per failed batch, one per session's opening.
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 4)
        self.failureResultOf(read.recorded, StoreError)  # a later reader is told too

    def test_statusQueries(self) -> None:
        """status() answers for live and recently ended sessions, None otherwise."""
        session = self.open()
        other = self.open(ICCID2)
        self.assertEqual([s.session_id for s in self.engine.sessions()], [session.id, other.id])
        self.successResultOf(other.close())
        self.assertIs(self.engine.status("s2").reason, FailureReason.CANCELLED)  # type: ignore[union-attr]
        self.assertIs(self.engine.status(session.id).state, S.PUSHING)  # type: ignore[union-attr]
        self.assertIsNone(self.engine.status("s99"))
        self.assertIsNone(self.engine.status("not/valid"))
        self.assertEqual(self.recorder.sessions[other.id].state, S.FAILED)
        self.assertEqual(repr(session), "<Session s1 pushing>")
        self.assertEqual((session.service, session.target), ("svc", CardTarget(ICCID)))

    def test_finishedForgottenBeyondLimit(self) -> None:
        """Only keep_finished ended sessions stay queryable (the recorder keeps all)."""
        self.engine._keep_finished = 2
        for _ in range(3):
            self.successResultOf(self.open().close())
        self.assertIsNone(self.engine.status("s1"))
        self.assertIsNotNone(self.engine.status("s3"))
        self.assertEqual(len(self.recorder.sessions), 3)
        self.assertEqual(
            self.failureResultOf(self.engine.close("s1")).value.reason,
            FailureReason.UNKNOWN_SESSION,
        )
        self.assertIs(self.successResultOf(self.engine.close("s3")).reason, FailureReason.CANCELLED)
