"""What a live node does with each session of a dead node, on a real Redis.

A node's registry entries are written as its own L{SessionRegistry} would
have (with the open's context: tenant, application, target) and its rows in
a memory store; the node stops beating.  The live node's
L{bipgw.cluster.NodeReaper} wins it and decides per session
(L{bipgw.cluster._takeover.SessionTakeover}): a queued session with a
tenant is re-opened here under its id through a real relay and engine (the
fake fleet of L{tests.unit.platform} answers its push), counted again in the
tenant's cluster-wide limits; a connected one, one no tenant opened, one
whose tenant lost the service, and one whose row says it reached its card
end C{node-lost}, each saying why; one already ended is left alone.  Every
outcome is heard on C{bipgw:cluster} by another node.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.cluster import (
    ClusterRedis,
    NodeHeartbeat,
    NodeReaper,
    RedisAddress,
    RedisTenantLimits,
    SessionRegistry,
)
from bipgw.cluster._takeover import ClusterEvent, ClusterEvents
from bipgw.codec.platform import Ready, Timeouts
from bipgw.core import (
    ALL_INSTRUCTIONS,
    Handover,
    MemoryTenantDirectory,
    ServiceGrant,
    SessionEngine,
    SessionRelay,
    SessionState,
    Tenancy,
    TenantGrant,
    reopen,
)
from bipgw.store import MemoryStore, SessionRecord
from bipgw.store import SessionEvent as StoredEvent
from tests.integration._redis_server import start_redis
from tests.unit.core.test_relay import RecordingHost
from tests.unit.platform import POLICY, Fleet, iccid

pytestmark = pytest.mark.integration

TAR = bytes.fromhex("B00010")
AID = bytes.fromhex("A0000000871002")
ACME = TenantGrant("acme", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)])
GLOBEX = TenantGrant("globex", services=[ServiceGrant("other")])


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def sid(n: int) -> str:
    return f"{n:032x}"


class DecisionTests(TestCase):
    """Module docstring."""

    timeout = 60

    def setUp(self) -> None:
        self.server = start_redis(self)

    async def _redis(self) -> ClusterRedis:
        redis = ClusterRedis(RedisAddress.from_url(self.server.url), reactor)
        self.addCleanup(redis.disconnect)
        await redis.connect()
        return redis

    async def test_queuedTakenOverOthersLost(self) -> None:
        """Module docstring."""
        live, dead, other = await self._redis(), await self._redis(), await self._redis()
        store = MemoryStore()
        fleet = Fleet(reactor, 5)
        fleet.connect_delay = 0.1
        engine = SessionEngine(reactor, fleet, fleet, policy=POLICY)
        fleet.engine = engine
        tenants = MemoryTenantDirectory()
        tenants.add(ACME)
        tenants.add(GLOBEX)
        limits = RedisTenantLimits(live, reactor)
        tenancy = Tenancy(engine, tenants, reactor, shared_limits=limits)
        host = RecordingHost()
        relay = SessionRelay(tenancy, host)
        adopted: list[Handover] = []

        def adopter(handover: Handover, grant: TenantGrant, token: str | None) -> Any:
            adopted.append(handover)
            return reopen(tenancy, relay, handover, grant, token)

        heard: list[ClusterEvent] = []
        events = ClusterEvents(other)
        events.listen(heard.append)
        events.start()
        await sleep(0.2)

        # Node "gone"'s sessions: (registry state, tenant, row state, ended).
        cases = {
            sid(1): ("requested", "acme", "awaiting-card", None),  # taken over
            sid(2): ("requested", "acme", "requested", None),  # taken over (not pushed)
            sid(3): ("connected", "acme", "connected", None),  # lost: at its card
            sid(4): ("requested", "", "requested", None),  # lost: no tenant
            sid(5): ("requested", "globex", "requested", None),  # lost: no such service
            sid(6): ("requested", "acme", "connected", None),  # lost: the row says connected
            sid(7): ("requested", "acme", "closed", 3.0),  # ended already: left alone
        }
        for n, (session, (state, tenant, row_state, ended)) in enumerate(cases.items(), 1):
            card = iccid(n)
            opened = reactor.seconds() if n == 1 else 1.0
            if n == 1:  # its history on the dead node: events 1 to 4
                await store.add_session_events(
                    [StoredEvent(session, seq, 1.0, "requested") for seq in range(1, 5)]
                )
            await store.save_session(
                SessionRecord(session, "demo", row_state, opened, 2.0, iccid=card, ended_at=ended)
            )
            fields = ["node", "gone", "state", state, "iccid", card, "service", "demo"]
            fields += ["tenant", tenant, "app", TAR.hex() if n == 1 else "", "target", ""]
            if n == 1:  # the platform's own timeouts of its open
                fields += ["timeouts", "60.0:30.0"]
            if n == 2:
                fields[fields.index("target") + 1] = AID.hex()
            await dead.call("HSET", f"bipgw:session:{session}", *fields)
            await dead.call("SADD", "bipgw:node:gone:sessions", session)
        beats = [
            NodeHeartbeat(r, n, reactor, lambda: "127.0.0.1:1", lambda: 0, every=0.2)
            for r, n in ((live, "here"), (dead, "gone"))
        ]
        for beat in beats:
            beat.start()
        await sleep(0.5)
        beats[1]._loop.stop()  # "gone" is killed
        reaper = NodeReaper(live, "here", store, reactor, node_timeout=1.0)
        reaper.takeover.events = ClusterEvents(live)
        reaper.takeover.adopter = adopter
        reaper.takeover.tenants = tenants.by_id
        reaper.takeover.limits = limits
        for _ in range(20):
            await sleep(0.3)
            await reaper.reap()
            if reaper.reaped:
                break
        beats[0]._loop.stop()
        self.assertEqual(reaper.reaped, [("gone", 4)])
        self.assertEqual(sorted(reaper.takeover.taken), [sid(1), sid(2)])
        # The relay refused globex's: its grant no longer has the service.
        by_id = {h.session_id: h for h in adopted}
        self.assertEqual(sorted(by_id), [sid(1), sid(2), sid(5)])
        self.assertLess(by_id[sid(1)].waited, 10.0)
        self.assertEqual((by_id[sid(1)].seq, by_id[sid(2)].seq), (4, 0))
        numbers = [e.seq for e in engine.recorder.events if str(e.session_id) == sid(1)]  # type: ignore[attr-defined]
        self.assertEqual(numbers[0], 5)
        self.assertEqual(
            [attrs.evolve(by_id[s], waited=0.0, seq=0) for s in (sid(1), sid(2))],
            [
                Handover(
                    sid(1),
                    "demo",
                    "acme",
                    iccid(1),
                    None,
                    TAR,
                    None,
                    "gone",
                    timeouts=Timeouts(ready=60.0, command=30.0),
                ),
                Handover(sid(2), "demo", "acme", iccid(2), None, None, AID, "gone"),
            ],
        )
        self.assertEqual(len(limits.renewal), 2)  # counted again, cluster-wide
        # The taken-over sessions reach their cards here, under their ids.
        for _ in range(20):
            if len([m for m in host.messages if isinstance(m, Ready)]) == 2:
                break
            await sleep(0.1)
        self.assertEqual(
            sorted(m.session for m in host.messages if isinstance(m, Ready)), [sid(1), sid(2)]
        )
        for session in (sid(1), sid(2)):
            status = engine.status(session)
            assert status is not None
            self.assertIs(status.state, SessionState.CONNECTED)
            self.assertEqual(tenancy.owner(session), "acme")
        whys = {
            sid(3): "reached its card",
            sid(4): "no tenant opened it",
            sid(5): "has no service 'demo'",
            sid(6): "reached its card",
        }
        for session, words in whys.items():
            row = await store.get_session(session)
            assert row is not None
            self.assertEqual((row.state, row.reason), ("failed", "node-lost"), session)
            self.assertIn(words, row.detail)
            self.assertIn("node gone", row.detail)
            state = await live.call("HGET", f"bipgw:session:{session}", "state")
            self.assertEqual(state, "failed")
        untouched = await store.get_session(sid(7))
        assert untouched is not None
        self.assertEqual(untouched.state, "closed")
        await sleep(0.3)
        self.assertEqual(
            sorted((e.session, e.kind, e.tenant) for e in heard),
            [
                (sid(1), "taken-over", "acme"),
                (sid(2), "taken-over", "acme"),
                (sid(3), "node-lost", "acme"),
                (sid(4), "node-lost", ""),
                (sid(5), "node-lost", "globex"),
                (sid(6), "node-lost", "acme"),
            ],
        )
        self.assertTrue(all(e.lost == "gone" for e in heard))
        self.assertEqual({e.owner for e in heard if e.kind == "taken-over"}, {"here"})
        relay.close_all()
        limits.stop()
        await sleep(0.3)

    async def test_rewriteAfterForgotten(self) -> None:
        """A node Redis forgot writes its live sessions again, with their
        context; a session another node runs now keeps that node's entry."""

        redis = await self._redis()
        fleet = Fleet(reactor, 3)
        fleet.connect_delay = 0.1
        engine = SessionEngine(reactor, fleet, fleet, policy=POLICY)
        fleet.engine = engine
        tenancy = Tenancy(engine, MemoryTenantDirectory(), reactor)
        registry = SessionRegistry(redis, "here", engine, reactor)
        registry.start()
        tenancy.contexts = registry.context
        relay = SessionRelay(tenancy, RecordingHost())
        first = reopen(
            tenancy, relay, Handover(sid(1), "demo", "acme", iccid(1), application=TAR), ACME
        )
        second = reopen(tenancy, relay, Handover(sid(2), "demo", "acme", iccid(2)), ACME)
        await first.ready
        await second.ready
        await registry.flush()
        await redis.call("FLUSHALL")  # Redis restarted without its data
        await redis.call("HSET", f"bipgw:session:{sid(2)}", "node", "there")
        await registry.rewrite()
        members = await redis.call("SMEMBERS", "bipgw:node:here:sessions")
        self.assertEqual(sorted(members), [sid(1)])
        entry = await registry.owner(sid(1))
        assert entry is not None
        self.assertEqual(
            {k: entry[k] for k in ("node", "state", "iccid", "service", "tenant", "app")},
            {
                "node": "here",
                "state": "connected",
                "iccid": iccid(1),
                "service": "demo",
                "tenant": "acme",
                "app": TAR.hex(),
            },
        )
        self.assertEqual(await redis.call("HGET", f"bipgw:session:{sid(2)}", "node"), "there")
        registry.stop()
        relay.close_all()
        await sleep(0.3)

    async def test_notReadyJudgesNobody(self) -> None:
        """A reaper told it is not ready (its node just rejoined) reaps nobody."""
        live = await self._redis()
        reaper = NodeReaper(live, "here", MemoryStore(), reactor, node_timeout=0.1)
        reaper.ready = lambda: False
        await live.call("ZADD", "bipgw:nodes", 1, "old")
        await reaper.reap()
        self.assertEqual(reaper.judged, [])
        self.assertEqual(await live.call("ZSCORE", "bipgw:nodes", "old"), "1")
        reaper.ready = lambda: True
        await reaper.reap()
        self.assertEqual((reaper.judged, reaper.reaped), (["old"], []))


class _LiveNode:
    """A live node that can take sessions over: engine, fake fleet, relay, reaper."""

    def __init__(self, redis: ClusterRedis, name: str, store: MemoryStore) -> None:
        self.fleet = Fleet(reactor, 20)
        self.fleet.connect_delay = 0.1
        self.engine = SessionEngine(reactor, self.fleet, self.fleet, policy=POLICY)
        self.fleet.engine = self.engine
        tenants = MemoryTenantDirectory()
        tenants.add(ACME_MANY)
        self.limits = RedisTenantLimits(redis, reactor)
        self.tenancy = Tenancy(self.engine, tenants, reactor, shared_limits=self.limits)
        self.registry = SessionRegistry(redis, name, self.engine, reactor)
        self.registry.start()
        self.tenancy.contexts = self.registry.context
        self.host = RecordingHost()
        self.relay = SessionRelay(self.tenancy, self.host)
        self.beat = NodeHeartbeat(redis, name, reactor, lambda: "127.0.0.1:1", lambda: 0, every=0.2)
        self.reaper = NodeReaper(redis, name, store, reactor, node_timeout=1.0)
        self.reaper.takeover.adopter = lambda h, g, t: reopen(self.tenancy, self.relay, h, g, t)
        self.reaper.takeover.tenants = tenants.by_id
        self.reaper.takeover.limits = self.limits

    def stop(self) -> None:
        self.beat._loop.stop()
        self.relay.close_all()
        self.limits.stop()
        self.registry.stop()


ACME_MANY = TenantGrant(
    "acme", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)], max_sessions=50
)


class SpreadTests(TestCase):
    """A dead node's queued sessions are spread over the live nodes, none taken twice."""

    timeout = 60

    def setUp(self) -> None:
        self.server = start_redis(self)

    async def test_twoLiveNodesShareTheDeadNodesSessions(self) -> None:
        """Three nodes: "gone" dies with twelve queued sessions.  Both live
        nodes look for dead nodes at once; one wins "gone", but its sessions
        are dealt to both: each takes over six, under their ids, reaching their
        cards there; no session is taken over twice, and the registry names
        each one's new node."""
        redises = []
        for _ in range(3):
            redis = ClusterRedis(RedisAddress.from_url(self.server.url), reactor)
            self.addCleanup(redis.disconnect)
            await redis.connect()
            redises.append(redis)
        store = MemoryStore()
        nodes = [_LiveNode(redises[0], "a", store), _LiveNode(redises[1], "b", store)]
        dead = redises[2]
        ids = [sid(100 + n) for n in range(12)]
        for n, session in enumerate(ids, 1):
            await store.save_session(
                SessionRecord(
                    session, "demo", "awaiting-card", reactor.seconds(), 2.0, iccid=iccid(n)
                )
            )
            fields = ["node", "gone", "state", "requested", "iccid", iccid(n), "service", "demo"]
            fields += ["tenant", "acme", "app", "", "target", "", "timeouts", ""]
            await dead.call("HSET", f"bipgw:session:{session}", *fields)
            await dead.call("SADD", "bipgw:node:gone:sessions", session)
        gone = NodeHeartbeat(dead, "gone", reactor, lambda: "127.0.0.1:1", lambda: 0, every=0.2)
        gone.start()
        for node in nodes:
            node.beat.start()
        await sleep(0.5)
        gone._loop.stop()  # killed
        for _ in range(20):
            await sleep(0.3)
            await gatherResults([node.reaper.reap() for node in nodes])
            if sum(len(node.reaper.takeover.taken) for node in nodes) == len(ids):
                break
        taken = [sorted(node.reaper.takeover.taken) for node in nodes]
        self.assertEqual(sorted([*taken[0], *taken[1]]), ids)  # each once, all of them
        self.assertEqual([len(t) for t in taken], [6, 6])
        self.assertEqual(sorted(d for node in nodes for d in node.reaper.judged), ["gone"])
        await sleep(0.2)  # the new owners' registry writes
        for node, name, mine in zip(nodes, "ab", taken, strict=True):
            for session in mine:
                entry = await dead.call("HMGET", f"bipgw:session:{session}", "node", "dealt")
                self.assertEqual(entry, [name, name])
                self.assertEqual(node.tenancy.owner(session), "acme")
        for _ in range(20):
            ready = [[m for m in node.host.messages if isinstance(m, Ready)] for node in nodes]
            if sum(map(len, ready)) == len(ids):
                break
            await sleep(0.1)
        for mine, seen in zip(taken, ready, strict=True):
            self.assertEqual(sorted(m.session for m in seen), mine)
        self.assertEqual(await dead.call("SCARD", "bipgw:node:a:adopt"), 0)
        for node in nodes:
            node.stop()
        await sleep(0.3)

    async def test_leavingNodeHandsBackItsShare(self) -> None:
        """A node that leaves before it claimed its share of a dead node's
        sessions deals it to the other live nodes (marked in their entries);
        with no other live node, it keeps it for its next start."""
        redis = ClusterRedis(RedisAddress.from_url(self.server.url), reactor)
        self.addCleanup(redis.disconnect)
        await redis.connect()
        store = MemoryStore()
        leaving = NodeReaper(redis, "a", store, reactor, node_timeout=5.0)
        await redis.call("SADD", "bipgw:node:a:adopt", f"gone {sid(1)}", f"gone {sid(2)}")
        await redis.call("HSET", f"bipgw:session:{sid(1)}", "node", "gone")
        self.assertEqual(await leaving.hand_back(), 0)  # nobody else: kept
        self.assertEqual(await redis.call("SCARD", "bipgw:node:a:adopt"), 2)
        beat = NodeHeartbeat(redis, "b", reactor, lambda: "127.0.0.1:1", lambda: 0, every=0.2)
        await beat.beat()
        self.assertEqual(await leaving.hand_back(), 2)
        self.assertEqual(await redis.call("SCARD", "bipgw:node:a:adopt"), 0)
        self.assertEqual(
            sorted(await redis.call("SMEMBERS", "bipgw:node:b:adopt")),
            [f"gone {sid(1)}", f"gone {sid(2)}"],
        )
        self.assertEqual(await redis.call("HGET", f"bipgw:session:{sid(1)}", "dealt"), "b")
        self.assertEqual(await redis.call("EXISTS", f"bipgw:session:{sid(2)}"), 0)
