"""The cluster's shared state on a real Redis (a redis-server of the test's own).

Card locks (atomic, one node at a time, expiring when their node stops
renewing them), two session engines sharing the one-session-per-card rule
under concurrent opens, the session registry, heartbeats and the nodes'
status, key invalidations over pub/sub, and a Redis restart survived.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.cluster import (
    ClusterRedis,
    KeyInvalidation,
    NodeHeartbeat,
    RedisAddress,
    RedisCardLocks,
    RedisUnreachableError,
    SessionRegistry,
    list_nodes,
)
from bipgw.core import (
    BusyPolicy,
    CardRecord,
    CardTarget,
    FailureReason,
    PushReceipt,
    SessionEngine,
    SessionPolicy,
)
from tests.integration._redis_server import start_redis

pytestmark = pytest.mark.integration

ICCID = "8988211000000000001"


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class _Pushes:
    """Counts the pushes; never answers (the card never connects)."""

    def __init__(self) -> None:
        self.orders: list[Any] = []

    def send_push(self, order: Any) -> Deferred[PushReceipt]:
        self.orders.append(order)
        return Deferred()

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[Any]:
        return Deferred()


class _Directory:
    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        return succeed(CardRecord(iccid=ICCID, msisdn=None, psk_identity=b"x"))


class _Cache:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def refresh(self) -> Deferred[Any]:
        self.calls.append("*")
        return succeed(None)

    def forget(self, iccid: str) -> None:
        self.calls.append(iccid)


class ClusterRedisTests(TestCase):
    """The cluster's parts against a real redis-server."""

    timeout = 60

    def setUp(self) -> None:
        self.server = start_redis(self)

    def _redis(self, **kwargs: Any) -> ClusterRedis:
        redis = ClusterRedis(RedisAddress.from_url(self.server.url), reactor, **kwargs)
        self.addCleanup(redis.disconnect)
        return redis

    @inlineCallbacks
    def _connected(self, count: int, **kwargs: Any) -> Any:
        nodes = [self._redis(**kwargs) for _ in range(count)]
        yield gatherResults([n.connect() for n in nodes])
        return nodes

    @inlineCallbacks
    def test_lockOneNodeAtATime(self) -> Any:
        """A card is held by one node at a time; its holder may take it again;
        releasing lets the other node take it; a node cannot release another's."""
        ra, rb = yield self._connected(2)
        a, b = RedisCardLocks(ra, "a", reactor), RedisCardLocks(rb, "b", reactor)
        self.assertTrue((yield a.acquire(ICCID)))
        self.assertFalse((yield b.acquire(ICCID)))
        self.assertTrue((yield a.acquire(ICCID)))
        b.release(ICCID)  # not b's: nothing happens
        self.assertFalse((yield b.acquire(ICCID)))
        a.release(ICCID)
        yield sleep(0.1)
        self.assertTrue((yield b.acquire(ICCID)))
        self.assertEqual(b.held, {ICCID})
        yield b.stop()
        yield sleep(0.1)
        self.assertEqual((yield ra.call("EXISTS", f"bipgw:card:{ICCID}")), 0)

    @inlineCallbacks
    def test_concurrentAcquiresOneWinner(self) -> Any:
        """Fifty acquires of one card from five nodes at once: one node wins,
        every acquire of the others is refused."""
        redises = yield self._connected(5)
        locks = [RedisCardLocks(r, f"n{i}", reactor) for i, r in enumerate(redises)]
        results = yield gatherResults([lk.acquire(ICCID) for lk in locks for _ in range(10)])
        winners = {locks[i // 10].node for i, ok in enumerate(results) if ok}
        self.assertEqual(len(winners), 1)
        self.assertEqual(sum(results), 10)

    @inlineCallbacks
    def test_renewedLockLivesDeadNodesExpires(self) -> Any:
        """A lock its node renews outlives its expiry; once the node stops
        renewing (killed), the lock expires and another node gets the card."""
        ra, rb = yield self._connected(2)
        a = RedisCardLocks(ra, "a", reactor, ttl=1.0, renew_every=0.3)
        b = RedisCardLocks(rb, "b", reactor, ttl=1.0, renew_every=0.3)
        self.assertTrue((yield a.acquire(ICCID)))
        a.start()
        yield sleep(1.6)
        self.assertFalse((yield b.acquire(ICCID)))
        a.renewal.stop()  # as if node a were killed: no more renewals
        yield sleep(1.3)
        self.assertTrue((yield b.acquire(ICCID)))
        yield a.renew()
        self.assertEqual(a.held, frozenset(), "a still believes it holds the card")

    @inlineCallbacks
    def test_enginesShareTheCardRule(self) -> Any:
        """Two engines (two nodes) opening sessions for one card at once: under
        the refuse policy one pushes and every other session is refused with
        card-busy; under the queue policy the other waits, and starts once the
        first session ends."""
        ra, rb = yield self._connected(2)
        pushes = _Pushes()
        refuse = SessionPolicy(busy_policy=BusyPolicy.REFUSE)
        engines = [
            SessionEngine(reactor, pushes, _Directory(), policy=refuse, card_locks=locks)
            for locks in (RedisCardLocks(ra, "a", reactor), RedisCardLocks(rb, "b", reactor))
        ]
        target = CardTarget.by_iccid(ICCID)
        sessions = [engines[i % 2].open(target, "isd") for i in range(6)]
        for s in sessions:
            s.ready.addErrback(lambda _: None)  # ended by the refusals and the stop
        yield sleep(0.5)
        self.assertEqual(len(pushes.orders), 1)
        busy = [s for s in sessions if s.status().reason is FailureReason.CARD_BUSY]
        self.assertEqual(len(busy), 5)
        for s in busy:
            s.ready.addErrback(lambda _: None)
        for engine in engines:
            engine.stop()

        queue = SessionPolicy(busy_policy=BusyPolicy.QUEUE, queue_timeout=30)
        a = SessionEngine(
            reactor, pushes, _Directory(), policy=queue, card_locks=RedisCardLocks(ra, "a", reactor)
        )
        b = SessionEngine(
            reactor,
            pushes,
            _Directory(),
            policy=queue,
            card_locks=RedisCardLocks(rb, "b", reactor),
            claim_retry=0.2,
        )
        first = a.open(target, "isd")
        first.ready.addErrback(lambda _: None)  # cancelled by its close
        yield sleep(0.2)
        second = b.open(target, "isd")
        yield sleep(0.5)
        self.assertEqual(len(pushes.orders), 2)
        self.assertIn("another node", " ".join(e.detail for e in b.recorder.events))
        yield a.close(first.id)
        yield sleep(0.6)
        self.assertEqual(len(pushes.orders), 3)
        self.assertEqual(pushes.orders[-1].session_id, second.id)
        second.ready.addErrback(lambda _: None)
        b.stop()

    @inlineCallbacks
    def test_registryAndHeartbeats(self) -> Any:
        """The registry says which node owns a session and counts each node's
        live sessions; heartbeats list the nodes, and a node that stops
        beating is reported dead."""
        ra, rb = yield self._connected(2)
        engine = SessionEngine(reactor, _Pushes(), _Directory())
        registry = SessionRegistry(ra, "a", engine, reactor)
        registry.start()
        session = engine.open(CardTarget.by_iccid(ICCID), "isd")
        session.ready.addErrback(lambda _: None)  # cancelled by its close
        yield sleep(0.3)
        entry = yield registry.owner(str(session.id))
        self.assertEqual(entry, {"node": "a", "state": "requested"})
        beats = [
            NodeHeartbeat(r, name, reactor, lambda n=name: f"192.0.2.1:{n}", lambda: 3, every=0.2)
            for r, name in ((ra, "a"), (rb, "b"))
        ]
        for beat in beats:
            beat.start()
        yield sleep(0.3)
        nodes = yield list_nodes(ra, node_timeout=1.0)
        self.assertEqual(
            [(n.name, n.alive, n.sessions, n.cards) for n in nodes],
            [("a", True, 1, 3), ("b", True, 0, 3)],
        )
        beats[1]._loop.stop()  # node b killed: no clean leave
        yield sleep(1.3)
        nodes = yield list_nodes(ra, node_timeout=1.0)
        self.assertEqual([(n.name, n.alive) for n in nodes], [("a", True), ("b", False)])
        yield engine.close(session.id)
        yield sleep(0.2)
        self.assertEqual((yield registry.owner(str(session.id)))["state"], "failed")
        nodes = yield list_nodes(ra, node_timeout=1.0)
        self.assertEqual(nodes[0].sessions, 0)
        yield beats[0].stop()
        self.assertEqual([n.name for n in (yield list_nodes(ra))], ["b"])
        registry.stop()

    @inlineCallbacks
    def test_invalidationReachesOtherNodes(self) -> Any:
        """A key change published by one node reaches the others' caches (one
        card forgotten, or every card re-read), not its own."""
        ra, rb, rc = yield self._connected(3)
        caches = [_Cache() for _ in range(3)]
        nodes = [
            KeyInvalidation(r, n, c) for r, n, c in zip((ra, rb, rc), "abc", caches, strict=True)
        ]
        for node in nodes:
            node.start()
        yield sleep(0.5)
        yield nodes[0].changed(ICCID)
        yield nodes[1].changed()
        yield sleep(0.3)
        self.assertEqual(caches[0].calls, ["*"])
        self.assertEqual(caches[1].calls, [ICCID])
        self.assertEqual(caches[2].calls, [ICCID, "*"])

    @inlineCallbacks
    def test_redisRestartSurvived(self) -> Any:
        """Redis killed: calls fail within their timeout (no hang), nothing
        crashes; Redis back on its port: calls, locks and subscriptions work
        again without anyone reconnecting by hand."""
        (ra,) = yield self._connected(1, timeout=1.0, max_retry_delay=0.5)
        (rb,) = yield self._connected(1, timeout=1.0, max_retry_delay=0.5)
        cache = _Cache()
        KeyInvalidation(rb, "b", cache).start()
        locks = RedisCardLocks(ra, "a", reactor)
        self.assertTrue((yield locks.acquire(ICCID)))
        self.server.kill()
        failure = yield locks.acquire(ICCID).addCallbacks(lambda _: None, lambda f: f.value)
        self.assertIsNotNone(failure)
        self.server.start()
        for _ in range(40):
            ok = yield ra.call("PING").addCallbacks(lambda _: True, lambda _: False)
            if ok:
                break
            yield sleep(0.25)
        self.assertTrue(ok, "no reconnection after Redis came back")
        self.assertTrue((yield locks.acquire(ICCID)))
        for _ in range(40):
            yield KeyInvalidation(ra, "a", _Cache()).changed(ICCID)
            yield sleep(0.25)
            if cache.calls:
                break
        self.assertEqual(cache.calls[:1], [ICCID], "the subscriber did not subscribe again")

    @inlineCallbacks
    def test_unreachableNamed(self) -> Any:
        """A node that cannot reach Redis at start says which server."""
        self.server.kill()
        redis = self._redis(timeout=1.0)
        error = yield redis.connect().addCallbacks(lambda _: None, lambda f: f.value)
        self.assertIsInstance(error, RedisUnreachableError)
        self.assertIn(f"127.0.0.1:{self.server.port}", str(error))


class NodeLostTests(TestCase):
    """A node that stops beating is noticed, and its sessions end with node-lost."""

    timeout = 60

    def setUp(self) -> None:
        self.server = start_redis(self)

    @inlineCallbacks
    def test_deadNodesSessionsEnded(self) -> Any:
        """Node b (a session open in the shared store and the registry) stops
        beating as if killed: within the node timeout plus one beat, one live
        node (of two looking at once) ends b's session with node-lost in the
        store and the registry; the other live node and finished sessions are
        left alone."""
        from bipgw.cluster import NodeReaper
        from bipgw.store import MemoryStore, SessionRecord

        store = MemoryStore()
        redises = [ClusterRedis(RedisAddress.from_url(self.server.url), reactor) for _ in "abc"]
        for redis in redises:
            self.addCleanup(redis.disconnect)
            yield redis.connect()
        ra, rb, rc = redises
        open_row = SessionRecord("s-open", "isd", "connected", 1.0, 2.0, iccid=ICCID)
        done_row = SessionRecord("s-done", "isd", "closed", 1.0, 3.0, ended_at=3.0)
        for row in (open_row, done_row):
            yield store.save_session(row)
        yield rb.call("SADD", "bipgw:node:b:sessions", "s-open", "s-done")
        yield rb.call("HSET", "bipgw:session:s-open", "node", "b", "state", "connected")
        beats = [
            NodeHeartbeat(r, n, reactor, lambda: "127.0.0.1:1", lambda: 0, every=0.2)
            for r, n in ((ra, "a"), (rb, "b"), (rc, "c"))
        ]
        for beat in beats:
            beat.start()
        reapers = [
            NodeReaper(r, n, store, reactor, node_timeout=1.0) for r, n in ((ra, "a"), (rc, "c"))
        ]
        yield sleep(0.5)
        yield gatherResults([r.reap() for r in reapers])
        self.assertEqual([r.judged for r in reapers], [[], []], "a live node was reaped")
        beats[1]._loop.stop()  # b is killed: no more beats, no clean leave
        for _ in range(15):
            yield sleep(0.2)
            yield gatherResults([r.reap() for r in reapers])
        self.assertEqual([d for r in reapers for d in r.judged], ["b"])
        # Its two sessions were dealt one to each live node: one ended node-lost.
        self.assertEqual(sorted(len(r.reaped) for r in reapers), [1, 1])
        self.assertEqual(sum(n for r in reapers for _, n in r.reaped), 1)
        row = yield store.get_session("s-open")
        self.assertEqual((row.state, row.reason), ("failed", "node-lost"))
        self.assertIn("node b stopped answering", row.detail)
        self.assertEqual((yield store.get_session("s-done")).reason, None)
        self.assertIn(
            (yield ra.call("HGET", "bipgw:session:s-open", "state")), ("failed", b"failed")
        )
        nodes = yield list_nodes(ra, node_timeout=1.0)
        self.assertEqual([n.name for n in nodes], ["a", "c"])
        for beat in (beats[0], beats[2]):
            yield beat.stop()


class SharedLimitsTests(TestCase):
    """Tenant session limits counted over the nodes, under concurrent opens."""

    timeout = 60

    def setUp(self) -> None:
        self.server = start_redis(self)

    @inlineCallbacks
    def _nodes(self, count: int, **kwargs: Any) -> Any:
        from bipgw.cluster import RedisTenantLimits

        limits = []
        for _ in range(count):
            redis = ClusterRedis(RedisAddress.from_url(self.server.url), reactor)
            self.addCleanup(redis.disconnect)
            yield redis.connect()
            limits.append(RedisTenantLimits(redis, reactor, **kwargs))
        return limits

    @inlineCallbacks
    def test_tenantAndServiceLimitsAcrossNodes(self) -> Any:
        """Twenty opens at once from three nodes for a tenant allowed 5
        sessions, 3 of them of one service: exactly 3 of that service are
        counted, the rest refused naming the service; then the tenant's own
        limit refuses past 5; a release makes room again."""
        from bipgw.core import ServiceGrant, TenantGrant

        isd = ServiceGrant("isd", max_sessions=3)
        other = ServiceGrant("other")
        tenant = TenantGrant("acme", services={"isd": isd, "other": other}, max_sessions=5)
        nodes = yield self._nodes(3)
        outcomes = yield gatherResults([nodes[i % 3].reserve(tenant, isd) for i in range(20)])
        granted = [token for token, _ in outcomes if token is not None]
        self.assertEqual(len(granted), 3)
        self.assertTrue(all("service isd" in why for token, why in outcomes if token is None))
        outcomes = yield gatherResults([nodes[i % 3].reserve(tenant, other) for i in range(6)])
        self.assertEqual(sum(token is not None for token, _ in outcomes), 2)
        self.assertTrue(all("tenant acme" in why for token, why in outcomes if token is None))
        owner = next(n for n in nodes if granted[0] in n.renewal)
        owner.release(granted[0])
        yield sleep(0.2)
        token, why = yield nodes[2].reserve(tenant, isd)
        self.assertIsNotNone(token, why)

    @inlineCallbacks
    def test_deadNodesCountsExpire(self) -> Any:
        """The sessions of a node that stops renewing stop counting after the
        expiry; a node that renews keeps its count."""
        from bipgw.core import ServiceGrant, TenantGrant

        isd = ServiceGrant("isd")
        tenant = TenantGrant("acme", services={"isd": isd}, max_sessions=2)
        live, dead = yield self._nodes(2, ttl=1.0, renew_every=0.3)
        live.start()
        self.assertIsNotNone((yield live.reserve(tenant, isd))[0])
        self.assertIsNotNone((yield dead.reserve(tenant, isd))[0])
        self.assertIsNone((yield live.reserve(tenant, isd))[0])
        yield sleep(1.5)  # dead never renews
        self.assertIsNotNone((yield live.reserve(tenant, isd))[0])
        self.assertIsNone((yield dead.reserve(tenant, isd))[0])
        live.stop()


class StatusCommandTests(TestCase):
    """C{bipgw cluster status} lists the nodes of the configured cluster."""

    timeout = 60

    def setUp(self) -> None:
        self.server = start_redis(self)

    def _config(self, redis_url: str) -> str:
        path = self.mktemp() + ".toml"
        with open(path, "w") as f:
            f.write(
                "[smpp]\n"
                'endpoint = "tcp:host=127.0.0.1:port=2775"\n'
                'system_id = "bipgw"\n'
                'password = "pw"\n'
                'source_address = "12345"\n'
                "[admin]\n"
                'listen = "tcp:8443"\n'
                'public_host = "192.0.2.10"\n'
                "[database]\n"
                'url = "postgresql+psycopg://bipgw@db.example/bipgw"\n'
                f'[cluster]\nredis = "{redis_url}"\nnode = "gw-a"\n'
                "[services.isd]\n"
            )
        return path

    def _status(self, path: str) -> tuple[int, str, str]:
        import subprocess

        out = subprocess.run(
            [str(Path(sys.executable).parent / "bipgw"), "cluster", "status", "-c", path],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return out.returncode, out.stdout, out.stderr

    @inlineCallbacks
    def test_listsNodes(self) -> Any:
        """Two nodes beating: both listed alive with their admin address and
        session counts; exit status 0."""
        redis = ClusterRedis(RedisAddress.from_url(self.server.url), reactor)
        self.addCleanup(redis.disconnect)
        yield redis.connect()
        yield redis.call("SADD", "bipgw:node:gw-b:sessions", "s1", "s2")
        beats = [
            NodeHeartbeat(redis, n, reactor, lambda n=n: f"192.0.2.{len(n)}:8443", lambda: 1)
            for n in ("gw-a", "gw-b")
        ]
        for beat in beats:
            yield beat.beat()
            # Beating on while the command starts (seconds on a loaded machine).
            beat.start()
            self.addCleanup(beat.stop)
        from twisted.internet.threads import deferToThread

        code, out, err = yield deferToThread(self._status, self._config(self.server.url))
        self.assertEqual(code, 0, err)
        self.assertIn("2 node(s)", out)
        lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
        self.assertEqual(lines["gw-a"][1], "alive")
        self.assertEqual(lines["gw-b"][4:6], ["2", "1"])

    @inlineCallbacks
    def test_redisUnreachableNamed(self) -> Any:
        """Redis down: exit status 1, one line naming the server."""
        from twisted.internet.threads import deferToThread

        self.server.kill()
        code, _, err = yield deferToThread(self._status, self._config(self.server.url))
        self.assertEqual(code, 1)
        self.assertIn(f"127.0.0.1:{self.server.port}", err)
        self.assertIn("cannot be reached", err)
