"""A campaign in a cluster: its node killed, another node takes it over.

Two gateway nodes share a PostgreSQL schema and a redis-server of the
test's own, against one simulated fleet (in this process, counting per card
the admin sessions in which the card ran commands).  Node A is a process of
its own (C{twistd -n bipgw}); node B runs in this process.

A campaign is created and started through A's HTTP API, so A holds its
lease and runs it.  Asked through B's HTTP API, it pauses and resumes (B
writes the state; A follows).  B's event stream (SSE) carries A's card
events.  Then A is killed with SIGKILL: its lease expires, B takes the
campaign over (the cards A was running end as C{interrupted}, the script
not being idempotent) and finishes it.  No card is lost, and the fleet saw
no card run the script twice.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.client import CampaignClient
from bipgw.cluster import ClusterRedis, RedisAddress
from bipgw.cluster._campaign_lease import CampaignEventBus, RedisCampaignLeases
from bipgw.core import CampaignEvent, CampaignState
from bipgw.store import add_tenant, grant_service
from tests.integration._cluster_setup import ANY_PORT, ClusterBed, spawn
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration._redis_server import free_port, start_redis
from tests.integration.gateway_loop import FAST_SESSIONS
from tests.integration.test_campaigns import SCRIPT, commands_per_card, until

pytestmark = pytest.mark.integration

CARDS = 40


class CampaignTakeoverTests(TestCase):
    """kill -9 of the node running a campaign (module docstring)."""

    timeout = 240
    skip = POSTGRES_SKIP

    def _node_a(self, config: Path, log: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        with open(log, "ab") as out:
            child = spawn(
                self,
                [*command, "-n", "--pidfile=", "bipgw", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=config.parent,
            )
        return child

    async def test_deadNodesCampaignTakenOver(self) -> None:
        bed = await ClusterBed.create(self, cards=CARDS)
        assert bed.fleet is not None
        seen = commands_per_card(bed.fleet)
        sessions = dict(FAST_SESSIONS, queue_timeout=60)
        # Node A's port is chosen here, as its twistd process cannot tell it.
        a_port = free_port()
        configs = {
            "gw-b": bed.install("gw-b", sessions, http_api=ANY_PORT),
            "gw-a": bed.install("gw-a", sessions, http_api=f"tcp:{a_port}:interface=127.0.0.1"),
        }
        b = await bed.start_gateway(configs["gw-b"])
        api = {"gw-a": a_port, "gw-b": b.http_api_port}
        iccids = await bed.load_fleet(b)
        self.assertEqual(len(iccids), CARDS)
        token = await add_tenant(b.store, "acme", max_sessions=20)
        await grant_service(b.store, "acme", "isd", isd_commands=["all"])

        child = self._node_a(configs["gw-a"], bed.directory / "gw-a.log")
        on_a = CampaignClient(f"http://127.0.0.1:{api['gw-a']}", token)
        self.addCleanup(on_a.close)
        on_b = CampaignClient(f"http://127.0.0.1:{api['gw-b']}", token)
        self.addCleanup(on_b.close)

        async def answering() -> bool:
            try:
                await on_a.campaigns()
                return True
            except Exception:
                return False

        await until(answering, "node A's API", 90)
        made = await on_a.campaign(
            name="takeover",
            service="isd",
            script=SCRIPT,
            targets=[{"iccid": i, "variables": {"IIN": i[:8]}} for i in iccids],
            rate=4,
            concurrency=3,
            start=True,
        )
        cid = made["campaign"]
        events: list[tuple[str, dict[str, Any]]] = []
        following = on_b.events(cid, lambda kind, data: events.append((kind, data)))

        async def succeeded(n: int) -> bool:
            return bool((await on_a.status(cid))["counts"]["succeeded"] >= n)

        await until(lambda: succeeded(5), "5 cards done on A", 90)
        # B's stream hears A's card events (published over Redis).
        self.assertTrue(any(kind == "card" for kind, _ in events), events)

        # Paused through B: A, which runs it, follows within its next looks.
        paused = await on_b.pause(cid)
        self.assertEqual(paused["state"], "paused")

        async def state_on_a(want: str) -> bool:
            status = await on_a.status(cid)
            return bool(status["state"] == want and status["counts"]["running"] == 0)

        await until(lambda: state_on_a("paused"), "A pausing", 30)
        held = (await on_a.status(cid))["counts"]["succeeded"]
        await deferLater(reactor, 2.0, lambda: None)
        self.assertEqual((await on_a.status(cid))["counts"]["succeeded"], held)
        self.assertLess(held, CARDS)
        resumed = await on_b.resume(cid)
        self.assertEqual(resumed["state"], "running")
        await until(lambda: succeeded(held + 3), "A running again", 60)

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        before = await deferLater(reactor, 0, lambda: dict(seen))
        self.assertLess(sum(before.values()), CARDS)  # killed with cards still to run

        final = await on_b.wait(cid, every=0.5)
        await following  # B's stream ends after the campaign's last event
        self.assertEqual(final["state"], "completed")
        counts = final["counts"]
        cards = await on_b.all_cards(cid)
        self.assertEqual(len(cards), CARDS)
        print("after the kill:", counts)  # shown with pytest -s
        self.assertEqual(counts["succeeded"] + counts["interrupted"], CARDS, counts)
        self.assertLessEqual(counts["interrupted"], 3)  # A's concurrency
        for card in cards:
            runs = seen[card["iccid"]]
            self.assertLessEqual(runs, 1, card)  # no card ran the script twice
            if card["state"] == "succeeded":
                self.assertEqual(runs, 1, card)
            else:
                self.assertEqual(card["reason"], "gateway-restart", card)
        # B ran the cards A had not started.
        after = collections.Counter({i: n - before.get(i, 0) for i, n in seen.items()})
        self.assertGreater(sum(after.values()), 0)
        self.assertIn(("campaign", {"campaign": cid, "state": "completed"}), events)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class RedisLeaseTests(TestCase):
    """The campaign leases and events on a real redis-server."""

    timeout = 60

    async def _nodes(self, count: int) -> list[ClusterRedis]:
        server = start_redis(self)
        nodes = []
        for _ in range(count):
            redis = ClusterRedis(RedisAddress.from_url(server.url), reactor)
            self.addCleanup(redis.disconnect)
            nodes.append(redis)
        await gatherResults([n.connect() for n in nodes])
        return nodes

    async def test_oneHolderRenewedThenTakenOver(self) -> None:
        """A lease has one holder at a time (it may take it again); renewed it
        outlives its expiry; once its node stops renewing, another node takes
        it, and the first one's next renewal reports it lost."""
        ra, rb = await self._nodes(2)
        a = RedisCampaignLeases(ra, "a", reactor, ttl=1.0, renew_every=0.3)
        b = RedisCampaignLeases(rb, "b", reactor, ttl=1.0, renew_every=0.3)
        lost: list[str] = []
        a.start(lost.append)
        self.addCleanup(a.stop)
        self.assertTrue(await a.acquire("c-1"))
        self.assertFalse(await b.acquire("c-1"))
        self.assertTrue(await a.acquire("c-1"))
        await sleep(1.6)
        self.assertFalse(await b.acquire("c-1"))
        self.assertEqual(a.held, {"c-1"})
        a.stop()  # as if node a were killed
        await sleep(1.3)
        self.assertTrue(await b.acquire("c-1"))
        await a.renew()
        self.assertEqual((a.held, lost), (frozenset(), ["c-1"]))
        b.release("c-1")
        await sleep(0.1)
        self.assertEqual(await rb.call("EXISTS", "bipgw:campaign:c-1"), 0)

    async def test_concurrentAcquiresOneWinner(self) -> None:
        redises = await self._nodes(4)
        leases = [RedisCampaignLeases(r, f"n{i}", reactor) for i, r in enumerate(redises)]
        results = await gatherResults([lease.acquire("c-2") for lease in leases for _ in range(5)])
        self.assertEqual(len({leases[i // 5].node for i, ok in enumerate(results) if ok}), 1)

    async def test_eventsReachTheOtherNodes(self) -> None:
        """An event one node publishes reaches the others, not itself; a
        message that is not an event is dropped."""
        ra, rb, rc = await self._nodes(3)
        heard: dict[str, list[CampaignEvent]] = {"a": [], "b": [], "c": []}
        buses = [CampaignEventBus(r, n) for r, n in ((ra, "a"), (rb, "b"), (rc, "c"))]
        for bus in buses:
            bus.start(heard[bus.node].append)
            self.addCleanup(bus.stop)
        await sleep(0.5)
        event = CampaignEvent("c-3", CampaignState.COMPLETED)
        buses[0].publish(event)
        await ra.publish("campaigns", "not json")
        await sleep(0.3)
        self.assertEqual(heard, {"a": [], "b": [event], "c": [event]})
