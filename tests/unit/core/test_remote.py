"""Tests for the core's side of driving another node's sessions (L{bipgw.core._remote}).

Two "nodes" in one process, each with its own engine, fleet, tenancy and
relay, on one clock: a L{LoopbackSessions} stands in for the cluster's
transport (L{bipgw.cluster.SessionForwarding} on Redis, tested against real
servers in C{tests.integration.test_cluster_forwarding}) and hands each
forwarded request to the owner's L{OwnedSessions}, as Redis would, but
synchronously.  Also the relay's use of L{ISharedCommands}, with a fake
whose decisions the test makes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
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
    Result,
    State,
    Status,
)
from bipgw.core import (
    ALL_INSTRUCTIONS,
    Forwarded,
    MemoryTenantDirectory,
    OwnedSessions,
    RemoteUnavailableError,
    ServiceGrant,
    SessionEngine,
    SessionEvent,
    SessionId,
    SessionRelay,
    Tenancy,
    TenantGrant,
    grant_from_json,
    grant_to_json,
    notification_for,
)
from tests.unit.core.test_relay import RecordingHost
from tests.unit.platform import POLICY, Fleet, echo, iccid

GRANT = TenantGrant(
    "acme",
    services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS, rate=5)],
    max_sessions=4,
    max_commands=3,
)
OTHER = TenantGrant("other", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)])
CAPDU = bytes.fromhex(echo(b"\x42"))


class Node:
    """One node: an engine over its own fake cards, a tenancy, a door's relay."""

    def __init__(self, clock: Clock, name: str) -> None:
        self.fleet = Fleet(clock, 3)
        ids = (SessionId(f"{name}{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            clock, self.fleet, self.fleet, policy=POLICY, new_id=lambda: next(ids)
        )
        self.fleet.engine = self.engine
        self.tenancy = Tenancy(self.engine, MemoryTenantDirectory(), clock)
        self.owned = OwnedSessions(self.tenancy)
        self.host = RecordingHost()
        self.relay = SessionRelay(self.tenancy, self.host)


class LoopbackSessions:
    """An L{bipgw.core.IRemoteSessions} joining L{Node}s in memory.

    @ivar down: when set, every forward fails as an unreachable owner would.
    """

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.down = False
        self.asked: list[tuple[str, float]] = []
        self._listeners: dict[str, list[Callable[[Notification], object]]] = {}
        for node in nodes:
            node.tenancy.remote = self
            node.engine.subscribe(self._event)

    def forward(
        self, tenant: TenantGrant, request: Forwarded, ready_wait: float = 0.0
    ) -> Deferred[Message | None]:
        self.asked.append((request.session, ready_wait))
        if self.down:
            return fail(RemoteUnavailableError("node a, which holds the session, was lost"))
        for node in self.nodes:
            if node.engine.status(request.session) is not None:
                # As over Redis: the grant crosses as JSON.
                grant = grant_from_json(grant_to_json(tenant))
                return node.owned.handle(grant, request, ready_wait).addCallback(_maybe)
        return succeed(None)

    @property
    def watched(self) -> dict[str, int]:
        """The sessions followed now, with their listeners' count."""
        return {s: len(ls) for s, ls in self._listeners.items() if ls}

    def watch(self, session: str, listener: Callable[[Notification], object]) -> Callable[[], None]:
        listeners = self._listeners.setdefault(session, [])
        listeners.append(listener)
        return lambda: listeners.remove(listener) if listener in listeners else None

    def _event(self, event: SessionEvent) -> None:
        if event.state.terminal:
            for listener in self._listeners.pop(str(event.session_id), []):
                listener(notification_for(event))


def _maybe(message: Message) -> Message | None:
    return message


class SharedCommandsFake:
    """An L{bipgw.core.ISharedCommands} whose answers the test gives."""

    def __init__(self) -> None:
        self.asked: list[Deferred[tuple[str | None, str | None, str | None]]] = []
        self.done_tokens: list[str] = []

    def admit(
        self, tenant: TenantGrant, service: ServiceGrant
    ) -> Deferred[tuple[str | None, str | None, str | None]]:
        d: Deferred[tuple[str | None, str | None, str | None]] = Deferred()
        self.asked.append(d)
        return d

    def done(self, token: str) -> None:
        self.done_tokens.append(token)


class _TwoNodes(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.a, self.b = Node(self.clock, "a"), Node(self.clock, "b")
        self.remote = LoopbackSessions([self.a, self.b])

    def tearDown(self) -> None:
        for node in (self.a, self.b):
            node.relay.close_all()
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def elapse(self, seconds: float) -> None:
        """Let C{seconds} pass, a quarter second at a time."""
        for _ in range(round(seconds / 0.25)):
            self.clock.advance(0.25)

    def opened_on_a(self, ready: bool = True) -> str:
        """A session opened by node a's door (its card connected if C{ready})."""
        self.a.relay.open(Open(id="o", service="demo", iccid=iccid(1)), GRANT)
        accepted = self.a.host.take()[0]
        assert isinstance(accepted, Accepted)
        if ready:
            self.clock.advance(self.a.fleet.connect_delay)
            self.a.host.take()
        return accepted.session


class ForwardingTests(_TwoNodes):
    """A door drives a session another node holds, through L{OwnedSessions}."""

    def test_commandRunsOnOwner(self) -> None:
        """A command sent to node b for node a's session runs on a's card; its
        result reaches b's door under b's request id; a's door hears nothing;
        a counts the command in flight while it runs."""
        sid = self.opened_on_a()
        self.b.relay.command(Command(session=sid, id="c1", apdus=(CAPDU,)), GRANT)
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 1)
        self.assertEqual(self.b.tenancy.usage.commands("acme"), 0)
        self.clock.advance(self.a.fleet.answer_delay)
        (result,) = self.b.host.take()
        assert isinstance(result, Result)
        self.assertEqual((result.id, result.session), ("c1", sid))
        self.assertEqual(result.rapdus, (b"\x42\x90\x00",))
        self.assertEqual(self.a.host.take(), [])
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 0)

    def test_sameRequestIdFromTwoDoors(self) -> None:
        """The owner's door and a forwarded request may use the same request id
        on one session at once: neither is refused as a duplicate."""
        sid = self.opened_on_a()
        self.a.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        self.b.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        self.elapse(self.a.fleet.answer_delay * 3)
        self.assertEqual([type(m) for m in self.a.host.take()], [Result])
        self.assertEqual([(type(m), m.id) for m in self.b.host.take()], [(Result, "c")])

    def test_otherTenantRefused(self) -> None:
        """The session must be the asking tenant's: another tenant is told there
        is no such session, and nothing reaches the card."""
        sid = self.opened_on_a()
        self.b.relay.command(Command(session=sid, id="c1", apdus=(CAPDU,)), OTHER)
        self.b.relay.close(Close(session=sid, id="x"), OTHER)
        self.assertEqual(
            [(m.code, m.id) for m in self.b.host.take() if isinstance(m, ErrorMessage)],
            [("unknown-session", "c1"), ("unknown-session", "x")],
        )
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 0)
        self.assertEqual(self.a.engine.status(sid).scripts, 0)  # type: ignore[union-attr]

    def test_grantCheckedOnOwner(self) -> None:
        """What a command reaches is checked on the owner against the asking
        tenant's current grant: a grant without ISD commands is refused there."""
        sid = self.opened_on_a()
        narrow = TenantGrant("acme", services=[ServiceGrant("demo")])
        self.b.relay.command(Command(session=sid, id="c1", apdus=(CAPDU,)), narrow)
        (error,) = self.b.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.id), ("application-not-allowed", "c1"))

    def test_closeOnOwner(self) -> None:
        """A close sent to node b ends node a's session: b gets C{closed}, a
        releases the session and tells its own door nothing."""
        sid = self.opened_on_a()
        self.b.relay.close(Close(session=sid, id="x"), GRANT)
        self.clock.advance(1)
        self.assertEqual(self.b.host.take(), [Closed(session=sid, id="x")])
        self.assertEqual(self.a.host.take(), [])
        self.assertEqual((self.a.relay.sessions, self.a.tenancy.usage.sessions("acme")), ([], 0))
        self.b.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        (error,) = self.b.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual(error.code, "session-ended")

    def test_endReachesDrivingDoor(self) -> None:
        """A session that ends on its owner (its card dropped) after a command was
        forwarded for it is notified to the forwarding door too, with its reason."""
        sid = self.opened_on_a()
        self.b.relay.command(Command(session=sid, id="c1", apdus=(CAPDU,)), GRANT)
        self.clock.advance(self.a.fleet.answer_delay)
        self.b.host.take()
        self.assertEqual(self.remote.watched, {sid: 1})
        self.a.fleet.card(1).drop()
        self.clock.advance(1)
        notes = [m for m in self.b.host.take() if isinstance(m, Notification)]
        self.assertEqual([(n.session, n.event, n.reason) for n in notes], [
            (sid, "card_dropped", "card-dropped")
        ])  # fmt: skip

    def test_statusFromOwner(self) -> None:
        """A status asked on node b for node a's session is answered by a, in
        full for the tenant that opened it."""
        sid = self.opened_on_a()
        self.b.relay.status(Status(id="s", session=sid), GRANT)
        (state,) = self.b.host.take()
        assert isinstance(state, State)
        self.assertEqual((state.session, state.state, state.iccid), (sid, "connected", iccid(1)))

    def test_unknownEverywhere(self) -> None:
        """A session no node holds is answered as one node alone would."""
        self.b.relay.command(Command(session="nope", id="c", apdus=(CAPDU,)), GRANT)
        self.b.relay.close(Close(session="nope", id="x"), GRANT)
        self.assertEqual(
            [(m.code, m.id) for m in self.b.host.take() if isinstance(m, ErrorMessage)],
            [("unknown-session", "c"), ("unknown-session", "x")],
        )

    def test_ownerUnreachable(self) -> None:
        """An owner that cannot be asked is answered C{unavailable}, saying why."""
        sid = self.opened_on_a()
        self.remote.down = True
        self.b.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        (error,) = self.b.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.id, error.session), ("unavailable", "c", sid))
        self.assertIn("was lost", error.message)

    def test_readyWait(self) -> None:
        """A forwarded command with a C{ready_wait} waits on the owner for the
        card to connect, then runs; without one it is answered C{not-connected}."""
        sid = self.opened_on_a(ready=False)
        self.b.relay.command(Command(session=sid, id="now", apdus=(CAPDU,)), GRANT)
        (error,) = self.b.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual(error.code, "not-connected")
        self.b.relay.command(Command(session=sid, id="later", apdus=(CAPDU,)), GRANT, 30.0)
        self.assertEqual(self.b.host.take(), [])
        self.elapse(self.a.fleet.connect_delay + self.a.fleet.answer_delay * 2)
        (result,) = self.b.host.take()
        assert isinstance(result, Result)
        self.assertEqual(result.id, "later")
        self.assertEqual(self.remote.asked[-1], (sid, 30.0))

    def test_readyWaitTimesOut(self) -> None:
        """A card that does not connect within the C{ready_wait} is answered
        C{not-connected}; the session goes on."""
        sid = self.opened_on_a(ready=False)
        self.b.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT, 0.5)
        self.clock.advance(0.5)
        (error,) = self.b.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.id), ("not-connected", "c"))
        self.assertEqual(self.a.relay.sessions, [sid])

    def test_closedDoorAnswersNothing(self) -> None:
        """A door that went away stops watching and is told nothing more."""
        sid = self.opened_on_a()
        self.b.relay.command(Command(session=sid, id="c1", apdus=(CAPDU,)), GRANT)
        self.b.relay.close_all()
        self.clock.advance(self.a.fleet.answer_delay)
        self.a.fleet.card(1).drop()
        self.clock.advance(1)
        self.assertEqual(self.b.host.take(), [])

    def test_oneNodeAloneUnchanged(self) -> None:
        """Without a remote (one node alone) a door drives only its own sessions."""
        sid = self.opened_on_a()
        self.b.tenancy.remote = None
        self.b.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        (error,) = self.b.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.message), (
            "unknown-session", "no such session on this connection"
        ))  # fmt: skip
        self.assertEqual(self.remote.asked, [])


class SharedCommandsTests(_TwoNodes):
    """The relay asks the cluster's command limits before a command runs."""

    def setUp(self) -> None:
        super().setUp()
        self.shared = SharedCommandsFake()
        self.a.tenancy.shared_commands = self.shared

    def test_admittedRunsAndReleases(self) -> None:
        """An admitted command runs; its token is given back once answered; the
        node's own rate buckets are not spent (the cluster's count is the limit)."""
        sid = self.opened_on_a()
        self.a.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        (asked,) = self.shared.asked
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 1)
        asked.callback(("t1", None, None))
        self.clock.advance(self.a.fleet.answer_delay)
        self.assertEqual([type(m) for m in self.a.host.take()], [Result])
        self.assertEqual(self.shared.done_tokens, ["t1"])
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 0)
        self.assertEqual(self.a.tenancy.rates.available("acme", GRANT.services["demo"]), 5)

    def test_forwardedCommandCountedOnOwner(self) -> None:
        """A command forwarded from node b is counted by the owner's limits."""
        sid = self.opened_on_a()
        self.b.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        self.assertEqual(len(self.shared.asked), 1)
        self.shared.asked[0].callback((None, "rate-limited", "too fast over the cluster"))
        (error,) = self.b.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual((error.code, error.id, error.message), (
            "rate-limited", "c", "too fast over the cluster"
        ))  # fmt: skip
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 0)

    def test_refusedWhileDecidingIsDuplicate(self) -> None:
        """While the cluster decides, the command counts as in flight: the same
        id again is a duplicate."""
        sid = self.opened_on_a()
        self.a.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        self.a.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        (error,) = self.a.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual(error.code, "duplicate-id")
        self.shared.asked[0].callback(("t1", None, None))
        self.clock.advance(self.a.fleet.answer_delay)

    def test_unreachableIsUnavailable(self) -> None:
        """Limits that cannot be reached refuse the command C{unavailable}."""
        sid = self.opened_on_a()
        self.a.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        self.shared.asked[0].errback(ConnectionError("redis down"))
        (error,) = self.a.host.take()
        assert isinstance(error, ErrorMessage)
        self.assertEqual(error.code, "unavailable")
        self.assertIn("redis down", error.message)
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 0)

    def test_closedWhileDeciding(self) -> None:
        """A session closed while its command was being admitted does not run it,
        and gives its token back."""
        sid = self.opened_on_a()
        self.a.relay.command(Command(session=sid, id="c", apdus=(CAPDU,)), GRANT)
        self.a.relay.close(Close(session=sid, id="x"))
        self.clock.advance(1)
        self.shared.asked[0].callback(("t1", None, None))
        self.assertEqual(self.shared.done_tokens, ["t1"])
        self.assertEqual(self.a.tenancy.usage.commands("acme"), 0)


class GrantJsonTests(SynchronousTestCase):
    """A grant crosses between nodes as JSON."""

    def test_roundTrip(self) -> None:
        """Every field of a grant survives the trip."""
        grant = TenantGrant(
            "acme",
            services=[
                ServiceGrant(
                    "rfm",
                    allowed_aids={b"\xa0\x00\x00\x00\x87"},
                    allowed_tars={b"\xb0\x00\x01"},
                    isd_commands={0xCA, 0xF2},
                    max_sessions=3,
                    rate=2.5,
                ),
                ServiceGrant("demo"),
            ],
            max_sessions=7,
            max_commands=9,
        )
        self.assertEqual(grant_from_json(grant_to_json(grant)), grant)

    def test_malformed(self) -> None:
        """Something that is not a grant is refused with C{ValueError}."""
        for bad in ({}, {"tenant": "x", "services": [{"name": "a"}]}, {"tenant": 3}):
            self.assertRaises(ValueError, grant_from_json, bad)
