"""Tests for the core's session relay and tenancy, driven by a recording host.

The doors' own tests (tests.unit.platform, tests.unit.web) cover the relay
through a connection; these check the object itself: what it tells its
L{RelayHost}, that it opens sessions with the engine and how the tenancy routes session ends.
"""

from __future__ import annotations

import itertools

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.platform import (
    Accepted,
    Close,
    Closed,
    Command,
    ErrorMessage,
    Message,
    Notification,
    Open,
    Ready,
    Result,
)
from bipgw.core import (
    ALL_INSTRUCTIONS,
    CardTarget,
    FailureReason,
    MemoryTenantDirectory,
    RelayHost,
    ServiceGrant,
    SessionEngine,
    SessionError,
    SessionId,
    SessionRelay,
    Tenancy,
    TenantGrant,
)
from tests.unit.platform import POLICY, Fleet, echo, iccid

GRANT = TenantGrant(
    "acme", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)], max_sessions=2
)


class RecordingHost:
    """A L{RelayHost} that keeps what the relay says."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.failures: list[Failure] = []

    def emit(self, message: Message) -> None:
        self.messages.append(message)

    def describe(self, failure: Failure) -> tuple[str, str]:
        self.failures.append(failure)
        error = failure.value
        if isinstance(error, SessionError):
            return error.reason.value, str(error)
        return "internal-error", "unexpected"

    def take(self) -> list[Message]:
        taken, self.messages = self.messages, []
        return taken


class RelayTests(SynchronousTestCase):
    """A relay over a real engine and fake cards, answering a recording host."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.fleet = Fleet(self.clock, 3)
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock, self.fleet, self.fleet, policy=POLICY, new_id=lambda: next(ids)
        )
        self.fleet.engine = self.engine
        self.tenancy = Tenancy(self.engine, MemoryTenantDirectory(), self.clock)
        self.host = RecordingHost()
        self.relay = SessionRelay(self.tenancy, self.host)

    def tearDown(self) -> None:
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_hostIsProtocol(self) -> None:
        """The recording host satisfies the narrow interface the relay needs."""
        host: RelayHost = self.host
        self.assertIsNotNone(host)

    def test_contextCarriesTimeouts(self) -> None:
        """What a cluster keeps of an open (for a take-over) includes the
        platform's own timeouts."""
        from bipgw.codec.platform import Timeouts

        kept: list[tuple[object, ...]] = []
        self.tenancy.contexts = lambda *context: kept.append(context)
        timeouts = Timeouts(ready=30.0, command=5.0)
        self.relay.open(Open(id="o", service="demo", iccid=iccid(1), timeouts=timeouts), GRANT)
        self.clock.advance(0)
        self.assertEqual([(c[1], c[4]) for c in kept], [("acme", timeouts)])
        self.relay.close_all()

    def test_opensThroughEngine(self) -> None:
        """Sessions are opened by the engine's open, answered accepted then ready."""
        self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        (status,) = self.engine.sessions()
        self.assertEqual((status.target, status.service), (CardTarget.by_iccid(iccid(1)), "demo"))
        (accepted,) = self.host.take()
        assert isinstance(accepted, Accepted)
        self.assertEqual(self.relay.sessions, [accepted.session])
        self.assertEqual(self.tenancy.usage.sessions("acme", "demo"), 1)
        self.assertEqual(self.tenancy.routed, 1)
        self.clock.advance(self.fleet.connect_delay)
        (ready,) = self.host.take()
        self.assertIsInstance(ready, Ready)

    def test_commandAndClose(self) -> None:
        """A command's result and a close's answer go to the host; the session is released."""
        self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.clock.advance(self.fleet.connect_delay)
        accepted, _ = self.host.take()
        assert isinstance(accepted, Accepted)
        sid = accepted.session
        capdu = bytes.fromhex(echo(b"\x42"))
        self.relay.command(Command(session=sid, id="c", apdus=(capdu,)), GRANT)
        self.assertEqual(self.tenancy.usage.commands("acme"), 1)
        self.clock.advance(self.fleet.answer_delay)
        (result,) = self.host.take()
        assert isinstance(result, Result)
        self.assertEqual(result.rapdus, (b"\x42\x90\x00",))
        self.assertEqual(self.tenancy.usage.commands("acme"), 0)
        self.relay.close(Close(session=sid, id="x"))
        self.clock.advance(1)
        self.assertEqual(self.host.take(), [Closed(session=sid, id="x")])
        self.assertEqual((self.relay.sessions, self.tenancy.routed), ([], 0))
        self.assertEqual(self.tenancy.usage.sessions("acme"), 0)

    def test_refusalsAreErrors(self) -> None:
        """A refused request is answered with an error message naming the request."""
        self.relay.open(Open(id="o", service="other", iccid=iccid(1)), GRANT)
        self.relay.close(Close(session="nope", id="x"))
        self.assertEqual(
            [(m.code, m.id) for m in self.host.take() if isinstance(m, ErrorMessage)],
            [("service-not-allowed", "o"), ("unknown-session", "x")],
        )

    def test_cardDropNotifies(self) -> None:
        """A ready session that ends on its own is reported as a notification."""
        self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.clock.advance(self.fleet.connect_delay)
        self.host.take()
        self.fleet.card(1).drop()
        (note,) = self.host.take()
        assert isinstance(note, Notification)
        self.assertEqual(note.event, "card_dropped")
        self.assertEqual((self.relay.sessions, self.tenancy.routed), ([], 0))

    def test_closeAll(self) -> None:
        """close_all closes every session quietly and releases it once closed."""
        for n in (1, 2):
            self.relay.open(Open(id=f"o{n}", service="demo", iccid=iccid(n)), GRANT)
        self.clock.advance(self.fleet.connect_delay)
        self.host.take()
        closing = self.relay.close_all()
        self.assertEqual(len(closing), 2)
        self.clock.advance(1)
        for done in closing:
            self.successResultOf(done)
        self.assertEqual(self.host.take(), [])
        self.assertEqual((self.relay.sessions, self.tenancy.routed), ([], 0))
        self.assertEqual(self.tenancy.usage.sessions("acme"), 0)

    def test_limitsShared(self) -> None:
        """Two relays of one tenancy share the tenant's session limit."""
        other = RecordingHost()
        second = SessionRelay(self.tenancy, other)
        self.relay.open(Open(id="a", service="demo", iccid=iccid(1)), GRANT)
        second.open(Open(id="b", service="demo", iccid=iccid(2)), GRANT)
        second.open(Open(id="c", service="demo", iccid=iccid(3)), GRANT)
        refused = other.take()[-1]
        assert isinstance(refused, ErrorMessage)
        self.assertEqual((refused.code, refused.id), ("limit-reached", "c"))
        self.relay.close_all()
        second.close_all()
        self.clock.advance(5)


class DurableOpenTests(SynchronousTestCase):
    """C{accepted} waits until the session's opening row is committed in the store."""

    def setUp(self) -> None:
        from bipgw.store import BatchingRecorder
        from tests.unit.store.test_recorder import _Store

        self.clock = Clock()
        self.fleet = Fleet(self.clock, 3)
        self.store = _Store()
        self.recorder = BatchingRecorder(self.store, self.clock)
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock,
            self.fleet,
            self.fleet,
            self.recorder,
            policy=POLICY,
            new_id=lambda: next(ids),
        )
        self.fleet.engine = self.engine
        self.tenancy = Tenancy(self.engine, MemoryTenantDirectory(), self.clock)
        self.host = RecordingHost()
        self.relay = SessionRelay(self.tenancy, self.host)

    def tearDown(self) -> None:
        self.store.holding = self.store.failing = False
        for held in self.store.hold:
            held.callback(None)
        self.engine.stop()
        self.successResultOf(self.recorder.stop())
        self.flushLoggedErrors(RuntimeError)

    def test_acceptedAfterCommit(self) -> None:
        """No C{accepted} while the row's write is under way; the row exists when it comes."""
        self.store.holding = True
        done = self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.clock.advance(0)
        self.assertEqual(self.store.writes, 1)
        self.assertEqual(self.host.take(), [])
        self.assertNoResult(done)
        self.store.hold.pop().callback(None)
        self.successResultOf(done)
        (accepted,) = self.host.take()
        assert isinstance(accepted, Accepted)
        row = self.successResultOf(self.store.get_session(accepted.session))
        self.assertIsNotNone(row)

    def test_manyOpensOneCommit(self) -> None:
        """Opens sent together share one transaction."""
        grant = TenantGrant("acme", services=[ServiceGrant("demo")], max_sessions=3)
        for n in range(3):
            self.relay.open(Open(id=f"o{n}", service="demo", iccid=iccid(n + 1)), grant)
        self.clock.advance(0)
        self.assertEqual(self.store.writes, 1)
        self.assertEqual([type(m) for m in self.host.take()], [Accepted] * 3)

    def test_failedWriteRefusesOpen(self) -> None:
        """An unwritable row refuses the open with the reason; the session ends
        C{directory-error} saying so (not C{cancelled}: the platform never held it)."""
        self.store.failing = True
        done = self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.clock.advance(0)
        self.successResultOf(done)
        (error,) = self.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.id), ("unavailable", "o"))
        self.assertIn("could not be recorded (disk full)", error.message)
        self.assertEqual(self.relay.sessions, [])
        self.assertEqual(self.tenancy.usage.sessions("acme", "demo"), 0)
        self.assertEqual(self.engine.sessions(), [])
        self.assertEqual(self.host.take(), [])
        status = self.engine.status("s1")
        assert status is not None
        self.assertEqual(
            (status.state.value, status.reason), ("failed", FailureReason.DIRECTORY_ERROR)
        )
        self.assertEqual(
            status.detail,
            "the open was refused (unavailable): the session could not be recorded (disk full)",
        )


class _SharedLimits:
    """An L{ISharedLimits} whose answers the test decides."""

    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self.pending: list[Deferred[tuple[str | None, str | None]]] = []
        self.released: list[str] = []

    def reserve(self, tenant: TenantGrant, service: ServiceGrant) -> object:
        from twisted.internet.defer import Deferred

        d: Deferred[tuple[str | None, str | None]] = Deferred()
        self.pending.append(d)
        return d

    def release(self, token: str) -> None:
        self.released.append(token)


class SharedLimitsRelayTests(SynchronousTestCase):
    """With a cluster's shared limits, an open waits for the cluster's count."""

    tearDown = RelayTests.tearDown

    def setUp(self) -> None:
        RelayTests.setUp(self)  # type: ignore[arg-type]
        self.shared = _SharedLimits()
        self.tenancy = Tenancy(
            self.engine, MemoryTenantDirectory(), self.clock, shared_limits=self.shared
        )
        self.relay = SessionRelay(self.tenancy, self.host)

    def test_reservedOpensAndEndReleases(self) -> None:
        """An open reserved by the cluster goes on; its end releases the token."""
        self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.assertEqual(self.engine.sessions(), [])
        self.shared.pending[0].callback(("t1", None))
        (accepted,) = self.host.take()
        assert isinstance(accepted, Accepted)
        self.relay.close(Close(session=accepted.session, id="x"))
        self.clock.advance(1)
        self.assertEqual(self.shared.released, ["t1"])

    def test_refusedByTheCluster(self) -> None:
        """A cluster-wide limit refuses with limit-reached, saying why; no session."""
        self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.shared.pending[0].callback((None, "tenant acme already has 2 sessions open"))
        (error,) = self.host.take()
        self.assertEqual((error.code, error.id), ("limit-reached", "o"))
        self.assertIn("already has 2", error.message)
        self.assertEqual(self.engine.sessions(), [])

    def test_countUnreachable(self) -> None:
        """When the cluster's count cannot be reached the open is refused as
        unavailable, saying why."""
        self.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        self.shared.pending[0].errback(ConnectionError("redis gone"))
        (error,) = self.host.take()
        self.assertEqual(error.code, "unavailable")
        self.assertIn("redis gone", error.message)
