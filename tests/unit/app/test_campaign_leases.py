"""Two campaign services sharing one campaign store and one lease table, on a Clock.

The lease table here keeps the rules of the Redis one
(L{bipgw.cluster._campaign_lease.RedisCampaignLeases}, tested on a real
redis-server in C{tests.integration.test_cluster_campaigns}): taken if free,
expired or already this node's; renewed every 3 s; expired 10 s after the
last renewal.  Only the holder runs a campaign; a dead node's campaign is
taken over once its lease expires (its running cards end interrupted); a
pause, resume or cancel asked of the other node reaches the holder; a node
that loses a lease stops starting cards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app._campaigns import WATCH_EVERY, CampaignService
from bipgw.cluster._campaign_lease import decode_event, encode_event
from bipgw.core import (
    CampaignCard,
    CampaignEvent,
    CampaignState,
    CardOutcome,
    CardState,
    Pace,
)
from bipgw.store import MemoryCampaignStore, MemoryStore
from tests.unit.app.test_campaigns import ACME, ICCIDS, Runner, spec

TTL = 10.0


class LeaseTable:
    """Where the nodes' leases are (Redis's part)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.holders: dict[str, tuple[str, float]] = {}

    def holder(self, campaign_id: str) -> str | None:
        found = self.holders.get(campaign_id)
        if found is None or found[1] <= self.clock.seconds():
            return None
        return found[0]


class NodeLeases:
    """One node's leases in the L{LeaseTable}."""

    shared = True

    def __init__(self, table: LeaseTable, node: str) -> None:
        self.table = table
        self.node = node
        self.held: set[str] = set()
        self._on_lost: Callable[[str], object] = lambda _: None
        self._renewal = LoopingCall(self.renew)
        self._renewal.clock = table.clock

    def acquire(self, campaign_id: str) -> Deferred[bool]:
        if self.table.holder(campaign_id) not in (None, self.node):
            return succeed(False)
        self.table.holders[campaign_id] = (self.node, self.table.clock.seconds() + TTL)
        self.held.add(campaign_id)
        return succeed(True)

    def release(self, campaign_id: str) -> None:
        self.held.discard(campaign_id)
        if self.table.holder(campaign_id) == self.node:
            del self.table.holders[campaign_id]

    def renew(self) -> None:
        for campaign_id in sorted(self.held):
            if self.table.holder(campaign_id) == self.node:
                self.table.holders[campaign_id] = (self.node, self.table.clock.seconds() + TTL)
            else:
                self.held.discard(campaign_id)
                self._on_lost(campaign_id)

    def start(self, on_lost: Callable[[str], object]) -> None:
        self._on_lost = on_lost
        if not self._renewal.running:
            self._renewal.start(3.0, now=False)

    def stop(self) -> None:
        if self._renewal.running:
            self._renewal.stop()


class TwoNodesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.store = MemoryStore()
        self.campaigns = MemoryCampaignStore()
        self.table = LeaseTable(self.clock)
        self.runners = {"a": Runner(), "b": Runner()}
        self.nodes = {name: self.node(name) for name in ("a", "b")}

    def node(self, name: str) -> CampaignService:
        service = CampaignService(
            self.store,
            self.campaigns,
            self.runners[name],
            self.clock,
            leases=NodeLeases(self.table, name),  # type: ignore[arg-type]
        )
        service.startService()
        self.done(service.when_ready())
        return service

    def done(self, d: Any) -> Any:
        if not isinstance(d, Deferred):
            d = Deferred.fromCoroutine(d)
        return self.successResultOf(d)

    def started_on_a(self, cards: int = 6) -> str:
        from bipgw.core import CampaignTarget

        targets = [CampaignTarget(iccid=i) for i in ICCIDS[:cards]]
        made = self.done(
            self.nodes["a"].create(ACME, spec(pace=Pace(rate=100, concurrency=2, burst=2)), targets)
        )
        self.done(self.nodes["a"].start(ACME, made.id))
        self.clock.advance(0.1)
        return str(made.id)

    def look(self, times: int = 1) -> None:
        for _ in range(times):
            self.clock.advance(WATCH_EVERY)

    def finish(self, node: str, ok: bool = True) -> int:
        """End every try under way on C{node}; how many."""
        tries, self.runners[node].tries = self.runners[node].tries, []
        for _, d in tries:
            d.callback(CardOutcome(ok, None if ok else "card-timeout", reached=True))
        return len(tries)

    def states(self, campaign_id: str) -> dict[str, int]:
        return dict(self.done(self.campaigns.card_counts(campaign_id)))

    def test_onlyTheHolderRuns(self) -> None:
        cid = self.started_on_a()
        self.assertEqual(self.table.holder(cid), "a")
        self.look(5)  # B looks, and leaves it: A holds it (and renews)
        self.assertEqual(len(self.runners["a"].tries), 2)
        self.assertEqual(self.runners["b"].tries, [])
        while self.finish("a"):
            self.clock.advance(0.1)
        self.assertEqual(self.states(cid), {"succeeded": 6})
        self.assertIsNone(self.table.holder(cid))  # released when it completed
        record = self.done(self.campaigns.get_campaign(cid))
        self.assertIs(record.state, CampaignState.COMPLETED)

    def test_deadNodeTakenOver(self) -> None:
        """A dies with two cards running: once its lease expires, B takes the
        campaign over; the two end interrupted (not idempotent), B runs the rest."""
        cid = self.started_on_a()
        self.finish("a")
        self.clock.advance(0.1)
        self.assertEqual(len(self.runners["a"].tries), 2)
        # A dies: nothing of it runs any more (its renewals and looks stop).
        a = self.nodes["a"]
        a._watch.stop()
        a._leases.stop()
        for run in a._runs.values():
            run.stop()
        self.runners["a"].tries = []  # their sessions died with it
        self.look(2)
        self.assertEqual(self.runners["b"].tries, [])  # the lease has not expired yet
        self.look(3)
        self.assertEqual(self.table.holder(cid), "b")
        self.assertEqual(self.states(cid)["interrupted"], 2)
        while self.finish("b"):
            self.clock.advance(0.1)
        self.assertEqual(self.states(cid), {"succeeded": 4, "interrupted": 2})
        record = self.done(self.campaigns.get_campaign(cid))
        self.assertIs(record.state, CampaignState.COMPLETED)

    def test_pauseResumeCancelThroughTheOtherNode(self) -> None:
        cid = self.started_on_a()
        self.look(2)  # A's own change of state is no longer recent
        b, a = self.nodes["b"], self.nodes["a"]
        paused = self.done(b.pause(ACME, cid))
        self.assertIs(paused.state, CampaignState.PAUSED)
        self.look()
        run = a.run(cid)
        assert run is not None
        self.assertIs(run.state, CampaignState.PAUSED)
        self.finish("a")
        self.clock.advance(1)
        self.assertEqual(self.runners["a"].tries, [])  # paused: nothing new starts
        self.look(2)
        self.done(b.resume(ACME, cid))
        self.look()
        self.assertIs(run.state, CampaignState.RUNNING)
        self.clock.advance(0.1)
        self.assertEqual(len(self.runners["a"].tries), 2)
        self.look(2)
        self.done(b.cancel(ACME, cid))
        self.look()
        self.assertIs(run.state, CampaignState.CANCELLED)
        self.finish("a")
        self.clock.advance(0.1)
        self.assertEqual(self.states(cid), {"succeeded": 4, "cancelled": 2})
        self.assertEqual(self.runners["b"].tries, [])

    def test_laterCommandOnTheHolderWins(self) -> None:
        """Paused through B, then resumed on A before A looked: the resume
        stands (A writes its state again), it is not undone by B's pause."""
        cid = self.started_on_a()
        self.look(2)
        self.done(self.nodes["b"].pause(ACME, cid))
        self.clock.advance(0.5)
        resumed = self.done(self.nodes["a"].resume(ACME, cid))
        self.assertIs(resumed.state, CampaignState.RUNNING)
        self.look(3)
        run = self.nodes["a"].run(cid)
        assert run is not None
        self.assertIs(run.state, CampaignState.RUNNING)
        record = self.done(self.campaigns.get_campaign(cid))
        self.assertIs(record.state, CampaignState.RUNNING)

    def test_lostLeaseStopsStarting(self) -> None:
        """A's lease taken from it (expired while it could not renew, and taken
        by B): A starts no more of its cards."""
        cid = self.started_on_a()
        self.table.holders[cid] = ("b", self.clock.seconds() + 1000)
        self.look()  # A's renewal finds it lost
        self.assertIsNone(self.nodes["a"].run(cid))
        self.finish("a")
        self.clock.advance(1)
        self.assertEqual(self.runners["a"].tries, [])


class EventMessageTests(SynchronousTestCase):
    """The campaign events the nodes send each other."""

    def test_roundTrip(self) -> None:
        card = CampaignCard(
            campaign_id="c-1",
            index=3,
            iccid=ICCIDS[0],
            variables={"K": "00"},
            state=CardState.FAILED,
            attempts=2,
            reason="card-timeout",
            detail="no card",
            rapdus=("9000",),
            session="s-1",
            updated_at=5.0,
        )
        for event in (
            CampaignEvent("c-1", CampaignState.RUNNING, card),
            CampaignEvent("c-1", CampaignState.COMPLETED),
        ):
            node, back = decode_event(encode_event(event, "gw-a"))
            self.assertEqual(node, "gw-a")
            expected = event.card and attrs.evolve(card, variables={})
            self.assertEqual(back, CampaignEvent(event.campaign_id, event.state, expected))
        self.assertNotIn("K", encode_event(CampaignEvent("c-1", CampaignState.RUNNING, card), "n"))

    def test_refused(self) -> None:
        for message in ("", "[]", '{"node": "a"}', '{"node":"a","campaign":"c","state":"x"}'):
            with self.assertRaises(ValueError):
                decode_event(message)
