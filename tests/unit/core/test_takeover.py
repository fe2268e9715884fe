"""Tests for L{bipgw.core.reopen}: a lost node's queued session run again here, under its id.

A real engine on a L{Clock} and the fake fleet of L{tests.unit.platform}:
the re-opened session is pushed again, reaches its card, and the tenant
drives it through the relay that adopted it as if it had opened it there.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.platform import (
    Accepted,
    Close,
    Closed,
    Command,
    ErrorMessage,
    Failed,
    Ready,
    Result,
    Timeouts,
)
from bipgw.core import (
    ALL_INSTRUCTIONS,
    FailureReason,
    Handover,
    MemorySessionRecorder,
    MemoryTenantDirectory,
    ServiceGrant,
    SessionEngine,
    SessionError,
    SessionRelay,
    SessionState,
    Tenancy,
    TenantGrant,
    reopen,
)
from tests.unit.core.test_relay import RecordingHost
from tests.unit.platform import POLICY, Fleet, echo, iccid, msisdn

TAR = bytes.fromhex("B00010")
GRANT = TenantGrant(
    "acme",
    services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS, allowed_tars=[TAR])],
    max_sessions=2,
)
SID = "0123456789abcdef0123456789abcdef"


class ReopenTests(SynchronousTestCase):
    """L{reopen} over a real engine (module docstring)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.fleet = Fleet(self.clock, 3)
        self.engine = SessionEngine(self.clock, self.fleet, self.fleet, policy=POLICY)
        self.fleet.engine = self.engine
        self.tenancy = Tenancy(self.engine, MemoryTenantDirectory(), self.clock)
        self.contexts: list[tuple[object, ...]] = []
        self.tenancy.contexts = lambda *context: self.contexts.append(context)
        self.host = RecordingHost()
        self.relay = SessionRelay(self.tenancy, self.host)

    def tearDown(self) -> None:
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def handover(self, **changes: object) -> Handover:
        values: dict[str, object] = {
            "session_id": SID,
            "service": "demo",
            "tenant_id": "acme",
            "iccid": iccid(1),
            "application": TAR,
            "node": "gw-dead",
        }
        values.update(changes)
        return Handover(**values)  # type: ignore[arg-type]

    def test_reopenedUnderItsIdPushedAndDriven(self) -> None:
        """The session keeps its id, is pushed again, reaches its card: the
        relay says ready (never accepted: the platform has the id), runs the
        tenant's command and closes it; the tenancy knows the tenant owns it
        and the cluster is told its context again."""
        session = reopen(self.tenancy, self.relay, self.handover(), GRANT)
        self.assertEqual(str(session.id), SID)
        self.assertEqual(len(self.fleet.pushes), 1)
        self.assertEqual(self.tenancy.owner(SID), "acme")
        self.assertEqual(self.contexts, [(SID, "acme", TAR, None, None)])
        self.assertEqual(self.tenancy.usage.sessions("acme", "demo"), 1)
        self.clock.advance(self.fleet.connect_delay)
        (ready,) = self.host.take()
        self.assertEqual(ready, Ready(session=SID, iccid=iccid(1), msisdn=ready.msisdn))
        capdu = bytes.fromhex(echo(b"\x42"))
        self.relay.command(Command(session=SID, id="c", apdus=(capdu,)), GRANT)
        self.clock.advance(self.fleet.answer_delay)
        (result,) = self.host.take()
        self.assertIsInstance(result, Result)
        self.relay.close(Close(session=SID, id="x"))
        self.clock.advance(self.fleet.answer_delay)
        self.assertEqual(self.host.take(), [Closed(session=SID, id="x")])
        self.assertEqual(self.tenancy.usage.sessions("acme"), 0)
        status = self.engine.status(SID)
        assert status is not None
        self.assertIs(status.state, SessionState.CLOSED)
        self.assertFalse(any(isinstance(m, Accepted) for m in self.host.messages))

    def test_byMsisdn(self) -> None:
        """A session opened for a number is re-opened for that number."""
        reopen(self.tenancy, self.relay, self.handover(iccid=None, msisdn=msisdn(2)), GRANT)
        self.clock.advance(self.fleet.connect_delay)
        (ready,) = self.host.take()
        assert isinstance(ready, Ready)
        self.assertEqual(ready.iccid, iccid(2))
        self.relay.close_all()

    def test_failedReported(self) -> None:
        """A re-opened session that cannot reach its card is reported failed
        to the relay's door and released."""
        reopen(self.tenancy, self.relay, self.handover(iccid="8949" + "9" * 15), GRANT)
        self.clock.advance(1)
        (failed,) = self.host.take()
        assert isinstance(failed, Failed)
        self.assertEqual((failed.session, failed.reason), (SID, "unknown-card"))
        self.assertEqual(self.relay.sessions, [])
        self.assertEqual(self.tenancy.usage.sessions("acme"), 0)

    def test_refusedWithoutTheGrant(self) -> None:
        """A tenant unknown now, without the service, or without the
        application any more: refused, nothing opened."""
        other = TenantGrant("acme", services=[ServiceGrant("demo")])
        cases = [
            (None, "unknown or disabled"),
            (TenantGrant("globex", services=[ServiceGrant("demo")]), "unknown or disabled"),
            (TenantGrant("acme", services=[ServiceGrant("other")]), "no service 'demo'"),
            (
                TenantGrant("acme", services=[ServiceGrant("demo", allowed_tars=[bytes(3)])]),
                "B00010 is no longer allowed",
            ),
        ]
        for grant, words in cases:
            with self.assertRaises(SessionError) as raised:
                reopen(self.tenancy, self.relay, self.handover(), grant)
            self.assertIs(raised.exception.reason, FailureReason.SERVICE_NOT_ALLOWED)
            self.assertIn(words, str(raised.exception))
        self.assertEqual(self.engine.sessions(), [])
        reopen(self.tenancy, self.relay, self.handover(application=None), other)
        self.relay.close_all()

    def test_refusedWithoutCardOrTwice(self) -> None:
        """No card kept, an invalid id, or an id this engine holds: refused."""
        with self.assertRaises(SessionError) as raised:
            reopen(self.tenancy, self.relay, self.handover(iccid=None), GRANT)
        self.assertIs(raised.exception.reason, FailureReason.UNKNOWN_CARD)
        with self.assertRaises(SessionError) as raised:
            reopen(self.tenancy, self.relay, self.handover(session_id="no/slash"), GRANT)
        self.assertIs(raised.exception.reason, FailureReason.UNKNOWN_SESSION)
        reopen(self.tenancy, self.relay, self.handover(), GRANT)
        with self.assertRaises(SessionError) as raised:
            reopen(self.tenancy, self.relay, self.handover(), GRANT)
        self.assertIn("already holds", str(raised.exception))
        self.assertEqual(len(self.engine.sessions()), 1)
        self.relay.close_all()

    def test_platformTimeoutsKept(self) -> None:
        """The platform's own timeouts of its open apply on the node that took
        the session over: C{ready} counts from the open (what is left of it),
        C{command} as asked; the cluster is told them again."""
        self.fleet.card(1).reachable = False
        timeouts = Timeouts(ready=10.0, command=2.0)
        reopen(self.tenancy, self.relay, self.handover(timeouts=timeouts, waited=4.0), GRANT)
        self.assertEqual(self.contexts, [(SID, "acme", TAR, None, timeouts)])
        self.clock.advance(5.9)
        self.assertEqual(self.host.take(), [])
        self.clock.advance(0.1)
        (failed,) = self.host.take()
        assert isinstance(failed, Failed)
        self.assertEqual((failed.session, failed.reason), (SID, "ready-timeout"))
        self.assertIn("within 10 s (timeouts.ready)", failed.message)
        self.assertEqual(self.relay.sessions, [])

    def test_readyTimeoutSpentEndsAtOnce(self) -> None:
        """A session taken over after its ready timeout had passed fails at once."""
        timeouts = Timeouts(ready=5.0)
        self.fleet.card(1).reachable = False
        reopen(self.tenancy, self.relay, self.handover(timeouts=timeouts, waited=9.0), GRANT)
        self.clock.advance(0)
        (failed,) = self.host.take()
        assert isinstance(failed, Failed)
        self.assertEqual(failed.reason, "ready-timeout")

    def test_commandTimeoutKept(self) -> None:
        """A command the card does not answer within the platform's
        C{timeouts.command} gets C{command-timeout} on the new node too."""
        self.fleet.card(1).hang = True
        timeouts = Timeouts(command=2.0)
        reopen(self.tenancy, self.relay, self.handover(timeouts=timeouts, waited=1.0), GRANT)
        self.clock.advance(self.fleet.connect_delay)
        (ready,) = self.host.take()
        self.assertIsInstance(ready, Ready)
        capdu = bytes.fromhex(echo(b"\x42"))
        self.relay.command(Command(session=SID, id="c", apdus=(capdu,)), GRANT)
        self.clock.advance(2.0)
        (error, *_) = self.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.id), ("command-timeout", "c"))

    def test_eventsNumberedOnFromTheHistory(self) -> None:
        """A session whose history had reached event 7 on the dead node numbers
        its events here from 8: its history and its event streams go on
        instead of starting again at 1."""
        reopen(self.tenancy, self.relay, self.handover(seq=7), GRANT)
        self.clock.advance(self.fleet.connect_delay)
        recorder = self.engine.recorder
        assert isinstance(recorder, MemorySessionRecorder)
        numbers = [e.seq for e in recorder.events if str(e.session_id) == SID]
        self.assertEqual(numbers[0], 8)
        self.assertEqual(numbers, list(range(8, 8 + len(numbers))))
        self.relay.close_all()
