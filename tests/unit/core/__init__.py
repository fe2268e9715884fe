"""Tests for bipgw.core, and the fakes they (and the protocol tests) share.

The fakes are plain objects with the collaborators' methods (no mocks): a
push sender whose Deferreds the test fires, a card directory backed by a
list, and a harness that builds an engine on a L{Clock} and checks, when
the test ends, that no timer was left behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import GP_RESPONSE, AdminRequest, AdminResponse
from bipgw.core import (
    CardLink,
    CardRecord,
    CardTarget,
    IScp03KeySource,
    MemorySessionRecorder,
    PorReport,
    PushOrder,
    PushReceipt,
    ServiceRules,
    Session,
    SessionEngine,
    SessionEvent,
    SessionId,
    SessionPolicy,
    SessionState,
)

ICCID = "8988211000000000018"
ICCID2 = "8988211000000000026"
MSISDN = "4915112345678"
CARD = CardRecord(ICCID, MSISDN, ICCID.encode())
CARD2 = CardRecord(ICCID2, "4915187654321", ICCID2.encode())

# The live SCP81 trace (tests/vectors.json, scp81_http_trace): GET DATA 0085
# answered 6A88.
GET_DATA = bytes.fromhex("80ca008500")
GET_DATA_SCRIPT = bytes.fromhex("ae80220580ca0085000000")
SW_6A88_ANSWER = bytes.fromhex("af8023026a880000")
GET_STATUS = bytes.fromhex("80f28002024f0000")

POLICY = SessionPolicy(
    resolve_timeout=5,
    queue_timeout=100,
    push_timeout=10,
    push_retries=2,
    push_backoff=2,
    retry_delay=3,
    card_timeout=20,
    max_wait=1000,
    idle_timeout=50,
    command_timeout=30,
    close_timeout=15,
)
"""Short, distinct timeouts, so each test can tell which one fired."""


def fake_por(status: int, counter: int = 0, data: bytes = b"") -> bytes:
    """A PoR user data that L{FakePushSender.verify_por} opens to these values."""
    return b"\x02\x71\x00" + bytes([status]) + counter.to_bytes(5, "big") + data


class FakePushSender:
    """An L{IPushSender} whose pushes stay pending until the test settles them.

    Its PoRs are L{fake_por} bytes (no keys): C{verify_por} opens them, and
    refuses anything else, as a forged PoR is refused.
    """

    def __init__(self) -> None:
        self.orders: list[PushOrder] = []
        self.pending: list[Deferred[PushReceipt]] = []
        self.auto_accept = False
        self.verified: list[tuple[str, bytes]] = []

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        self.orders.append(order)
        if self.auto_accept:
            return succeed(PushReceipt((f"msg-{len(self.orders)}",)))
        d: Deferred[PushReceipt] = Deferred()
        self.pending.append(d)
        return d

    def accept(self, index: int = -1, *ids: str) -> None:
        self.pending[index].callback(PushReceipt(ids or (f"msg-{len(self.orders)}",)))

    def refuse(self, error: Exception, index: int = -1) -> None:
        self.pending[index].errback(Failure(error))

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        self.verified.append((iccid, user_data))
        if len(user_data) < 9 or not user_data.startswith(b"\x02\x71\x00"):
            return fail(ValueError(f"not a PoR of card {iccid}"))
        counter = int.from_bytes(user_data[4:9], "big")
        return succeed(PorReport(user_data[3], counter, user_data[9:]))


class FakeDirectory:
    """An L{ICardDirectory} over a list of cards; C{hold} leaves lookups pending."""

    def __init__(self, cards: Sequence[CardRecord] = (CARD, CARD2)) -> None:
        self.cards = list(cards)
        self.asked: list[CardTarget] = []
        self.hold = False
        self.error: Exception | None = None
        self.pending: list[Deferred[CardRecord | None]] = []

    def find(self, target: CardTarget) -> CardRecord | None:
        for card in self.cards:
            if target.iccid == card.iccid or (
                target.msisdn is not None and target.msisdn == card.msisdn
            ):
                return card
        return None

    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        self.asked.append(target)
        if self.error is not None:
            return fail(self.error)
        if self.hold:
            d: Deferred[CardRecord | None] = Deferred()
            self.pending.append(d)
            return d
        return succeed(self.find(target))


class EngineTestCase(SynchronousTestCase):
    """A session engine on a Clock with fakes; no timer may outlive a test."""

    policy = POLICY
    services: Mapping[str, ServiceRules] | None = None
    scp03_keys: IScp03KeySource | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.addCleanup(self.assertNoTimers)
        self.sender = FakePushSender()
        self.directory = FakeDirectory()
        self.recorder = MemorySessionRecorder()
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock,
            self.sender,
            self.directory,
            self.recorder,
            self.policy,
            services=self.services,
            scp03_keys=self.scp03_keys,
            new_id=lambda: next(ids),
        )
        self.events: list[SessionEvent] = []
        self.engine.subscribe(self.events.append)
        self.disconnects: list[str] = []
        self.opened: list[Session] = []
        self.addCleanup(self._endAll)

    def assertNoTimers(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def open(self, iccid: str = ICCID, service: str = "svc") -> Session:
        session = self.engine.open(CardTarget.by_iccid(iccid), service)
        self.opened.append(session)
        return session

    def states(self, session: Session) -> list[SessionState]:
        """The session's recorded transitions (notes left out), in order."""
        return [e.state for e in self.recorder.history(session.id) if e.transition]

    def arrive(self, iccid: str = ICCID, agent_id: str = "agent-1") -> CardLink:
        link = self.engine.card_arrived(iccid, agent_id, disconnect=self.disconnects.append)
        assert link is not None
        return link

    def connected(self, iccid: str = ICCID) -> tuple[Session, CardLink, Deferred[AdminResponse]]:
        """A session whose card is connected: the session, its link and the
        Deferred of the card's held first POST."""
        session = self.open(iccid)
        self.sender.accept()
        link = self.arrive(iccid)
        held = link.post(first_post())
        self.assertIs(self.successResultOf(session.ready).state, SessionState.CONNECTED)
        return session, link, held

    def _endAll(self) -> None:
        """Stop what a test left running, and swallow the failures that causes."""
        self.engine.stop("test over")
        for session in self.opened:
            session.ready.addErrback(lambda _: None)


def first_post(agent_id: str = "agent-1", target: str = "/admin") -> AdminRequest:
    """The card's first POST (no body), as in the live trace."""
    return AdminRequest(target=target, host="gw.example", admin_from=agent_id)


def answer_post(uri: str, body: bytes = SW_6A88_ANSWER, status: str | None = "ok") -> AdminRequest:
    """The card's POST carrying a response script to C{uri}."""
    return AdminRequest(
        target=uri,
        host="gw.example",
        admin_from="agent-1",
        script_status=status,
        content_type=GP_RESPONSE if body else None,
        body=body,
    )
