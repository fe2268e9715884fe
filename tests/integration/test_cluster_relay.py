"""A card reaching the wrong node: its admin session is relayed to the owner over Redis.

Two nodes (an engine, its Redis connections, its card locks and its
L{RelayedCards} each) share a redis-server of the test's own.  A session
opened on node A; its card arrives at node B (as the SCP81 listener would
hand it over, request by request): the POSTs reach A's session through
Redis and A's answers come back, so A's platform runs its script and
closes as if the card were on A.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.cluster import ClusterRedis, RedisAddress, RedisCardLocks
from bipgw.cluster._relay import RelayedCards, RelayLink
from bipgw.core import CardRecord, CardTarget, PushReceipt, SessionEngine, SessionState
from tests.integration._redis_server import start_redis
from tests.unit.core import GET_DATA, SW_6A88_ANSWER, answer_post, first_post

pytestmark = pytest.mark.integration

ICCID = "8988211000000000018"


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class _Pushes:
    def __init__(self) -> None:
        self.orders: list[Any] = []

    def send_push(self, order: Any) -> Deferred[PushReceipt]:
        self.orders.append(order)
        return succeed(PushReceipt(message_ids=("m1",), counter=len(self.orders)))

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[Any]:
        return Deferred()


class _Directory:
    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        return succeed(CardRecord(ICCID, "4915112345678", ICCID.encode()))


class CardRelayTests(TestCase):
    """The wrong node serves the card by relaying to the right one."""

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.server = start_redis(self)
        self.nodes: dict[str, tuple[SessionEngine, RelayedCards]] = {}
        for name in ("a", "b"):
            redis = ClusterRedis(RedisAddress.from_url(self.server.url), reactor)
            self.addCleanup(redis.disconnect)
            yield redis.connect()
            engine = SessionEngine(
                reactor, _Pushes(), _Directory(), card_locks=RedisCardLocks(redis, name, reactor)
            )
            self.addCleanup(engine.stop)
            cards = RelayedCards(engine, redis, name, reactor)
            cards.start()
            self.nodes[name] = (engine, cards)
        yield sleep(0.3)  # the subscriptions are in place

    @inlineCallbacks
    def test_wrongNodeRelays(self) -> Any:
        """Node B relays the card's POSTs to node A, which owns its session:
        the platform on A gets the ready, its script's answer, and the close."""
        engine_a, cards_a = self.nodes["a"]
        engine_b, cards_b = self.nodes["b"]
        session = engine_a.open(CardTarget.by_iccid(ICCID), "isd")
        yield sleep(0.2)
        link = cards_b.card_arrived(ICCID, "agent-1")
        self.assertIsInstance(link, RelayLink)
        assert link is not None
        held = link.post(first_post())
        status = yield session.ready
        self.assertIs(status.state, SessionState.CONNECTED)
        result = session.execute([GET_DATA])
        response = yield held
        self.assertEqual(response.status, 200)
        self.assertIsNotNone(response.next_uri)
        self.assertIn(GET_DATA, response.body)
        held = link.post(answer_post(response.next_uri, SW_6A88_ANSWER))
        script = yield result
        self.assertEqual(script.responses[-1][-2:], b"\x6a\x88")
        closing = session.close()
        end = yield held
        self.assertEqual(end.status, 204)
        link.lost("connection closed after 204")  # as the listener does
        final = yield closing
        self.assertIs(final.state, SessionState.CLOSED)
        self.assertEqual((cards_a.relayed_in, cards_b.relayed_out), (1, 1))
        self.assertIsNone(engine_b.status(session.id))

    @inlineCallbacks
    def test_noSessionAnywhere(self) -> Any:
        """A card no node holds gets a 204 on the node it reached."""
        _, cards_b = self.nodes["b"]
        link = cards_b.card_arrived(ICCID, "agent-1")
        assert link is not None
        response = yield link.post(first_post())
        self.assertEqual(response.status, 204)

    @inlineCallbacks
    def test_cardLostOnTheRelayingNode(self) -> Any:
        """The card's connection to B breaks: A's session ends as if the card
        had dropped from A."""
        engine_a, _ = self.nodes["a"]
        _, cards_b = self.nodes["b"]
        session = engine_a.open(CardTarget.by_iccid(ICCID), "isd")
        yield sleep(0.2)
        link = cards_b.card_arrived(ICCID, "agent-1")
        assert link is not None
        link.post(first_post())
        yield session.ready
        link.lost("connection reset by peer")
        failure = yield session.execute([GET_DATA]).addCallbacks(lambda _: None, lambda f: f.value)
        self.assertIsNotNone(failure)
        yield sleep(0.3)
        self.assertTrue(session.status().state.terminal)
        self.assertIn("connection reset", session.status().detail)

    @inlineCallbacks
    def test_ownerLostFailsWaitingPost(self) -> Any:
        """The owner node dies while the relaying node waits for its answer:
        the waiting POST fails at once (the card's connection then closes)."""
        engine_a, _ = self.nodes["a"]
        _, cards_b = self.nodes["b"]
        session = engine_a.open(CardTarget.by_iccid(ICCID), "isd")
        session.ready.addErrback(lambda _: None)
        yield sleep(0.2)
        link = cards_b.card_arrived(ICCID, "agent-1")
        assert link is not None
        held = link.post(first_post())  # a waits for a command: held
        yield session.ready
        cards_b.node_lost("a")
        error = yield held.addCallbacks(lambda _: None, lambda f: f.value)
        self.assertIsInstance(error, ConnectionError)
        self.assertIn("node a", str(error))
