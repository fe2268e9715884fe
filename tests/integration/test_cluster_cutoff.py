"""A node cut off from Redis for longer than the node timeout, on a real redis-server.

L{bipgw.cluster._fence.NodeFence}: Redis paused with C{SIGSTOP} for longer
than the node timeout (3 s here, 8 s by default): node A ends its queued
session itself (C{node-lost}, recorded, saying why) before anyone could take
it over, keeps its connected session (which runs a command once Redis is
back), and nobody is reaped (every node was cut off).  Then node A alone
stops (its process paused: nothing of it runs) while node B reaps it and a
node takes A's queued session over: back, A finds in the registry that its
copies were given away or ended, and ends them without writing over the
entries and rows that are the other node's.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from bipgw.cluster import (
    ClusterRedis,
    NodeHeartbeat,
    NodeReaper,
    RedisAddress,
    RedisCardLocks,
    SessionRegistry,
)
from bipgw.cluster._fence import FencedRecorder, NodeFence
from bipgw.core import (
    CardTarget,
    FailureReason,
    MemorySessionRecorder,
    SessionEngine,
    SessionState,
)
from bipgw.store import MemoryStore, SessionRecord
from tests.integration._redis_server import start_redis
from tests.unit.platform import POLICY, Fleet, echo, iccid

pytestmark = pytest.mark.integration

TIMEOUT = 3.0
"""The node timeout of these nodes (seconds without a beat: taken for dead)."""
BEAT = 0.3


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class _Node:
    """The parts of one node that a cut-off concerns, on one Redis."""

    def __init__(self, test: TestCase, url: str, name: str) -> None:
        self.name = name
        self.redis = ClusterRedis(RedisAddress.from_url(url), reactor, timeout=1.0)
        test.addCleanup(self.redis.disconnect)
        self.fleet = Fleet(reactor, 5)
        self.fleet.connect_delay = 0.1
        self.fleet.answer_delay = 0.05
        self.stored = MemorySessionRecorder()
        self.locks = RedisCardLocks(self.redis, name, reactor, ttl=TIMEOUT, renew_every=BEAT * 2)
        self.engine = SessionEngine(
            reactor,
            self.fleet,
            self.fleet,
            FencedRecorder(self.stored, lambda sid: self.fence.disowned(sid)),
            policy=POLICY,
            card_locks=self.locks,
        )
        self.fleet.engine = self.engine
        self.registry = SessionRegistry(self.redis, name, self.engine, reactor)
        self.beat = NodeHeartbeat(
            self.redis, name, reactor, lambda: "127.0.0.1:1", lambda: 0, every=BEAT
        )
        self.fence = NodeFence(
            self.engine, self.beat, reactor, node_timeout=TIMEOUT, margin=1.0, every=0.1
        )
        self.registry.on_disowned = self.fence.given_away
        self.registry.disowned = self.fence.disowned
        self.beat.on_forgotten = self.registry.rewrite

    async def start(self) -> None:
        await self.redis.connect()
        self.registry.start()
        self.locks.start()
        self.beat.start()
        self.fence.start()

    def pause(self) -> None:
        """As if the node's process were paused: nothing of it runs."""
        self.beat._loop.stop()
        self.fence.stop()
        self.locks.renewal.stop()

    def resume(self) -> None:
        self.beat.start()
        self.fence.start()
        self.locks.start()

    def stop(self) -> None:
        for loop in (self.beat._loop,):
            if loop.running:
                loop.stop()
        self.fence.stop()
        self.locks.renewal.stop()
        self.registry.stop()
        self.engine.stop()

    async def open_two(self) -> tuple[Any, Any]:
        """A session that reaches its card (1) and one whose card never connects (2)."""
        self.fleet.card(2).reachable = False
        connected = self.engine.open(CardTarget.by_iccid(iccid(1)), "demo")
        queued = self.engine.open(CardTarget.by_iccid(iccid(2)), "demo")
        queued.ready.addErrback(lambda _: None)
        await connected.ready
        await sleep(0.3)  # the registry's batched write
        self.assertState(queued, SessionState.AWAITING_CARD)
        return connected, queued

    @staticmethod
    def assertState(session: Any, state: SessionState) -> None:
        assert session.status().state is state, session.status()


class CutOffTests(TestCase):
    """Module docstring."""

    timeout = 60

    def setUp(self) -> None:
        self.server = start_redis(self)

    def _pause_redis(self) -> None:
        assert self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGSTOP)
        self.addCleanup(self._resume_redis)

    def _resume_redis(self) -> None:
        if self.server.process is not None and self.server.process.poll() is None:
            os.kill(self.server.process.pid, signal.SIGCONT)

    def _reaper(self, node: _Node, store: MemoryStore) -> NodeReaper:
        reaper = NodeReaper(node.redis, node.name, store, reactor, node_timeout=TIMEOUT)
        reaper.ready = lambda: node.beat.up_for() >= TIMEOUT
        loop = LoopingCall(reaper.reap)
        loop.clock = reactor
        loop.start(BEAT, now=False)
        self.addCleanup(lambda: loop.running and loop.stop())
        return reaper

    async def test_pausedRedisEndsQueuedKeepsConnected(self) -> None:
        """Redis paused (SIGSTOP) for longer than the node timeout: A's queued
        session ends node-lost before the timeout, recorded with why; its
        connected session goes on and runs a command once Redis is back;
        nobody is reaped (B was cut off too); A opens sessions again."""
        a, b = _Node(self, self.server.url, "gw-a"), _Node(self, self.server.url, "gw-b")
        await a.start()
        await b.start()
        reaper = self._reaper(b, MemoryStore())
        connected, queued = await a.open_two()
        self._pause_redis()
        await sleep(TIMEOUT - 1.0 - 0.6)
        a.assertState(queued, SessionState.AWAITING_CARD)
        await sleep(TIMEOUT + 0.6)  # paused for TIMEOUT + 1 s in all
        status = queued.status()
        self.assertEqual(
            (status.state, status.reason), (SessionState.FAILED, FailureReason.NODE_LOST)
        )
        self.assertIn("node gw-a has had no answer from Redis for", status.detail)
        self.assertIn("ended it first", status.detail)
        recorded = a.stored.sessions[queued.id]
        self.assertEqual((recorded.state, recorded.reason), (status.state, status.reason))
        a.assertState(connected, SessionState.CONNECTED)
        self._resume_redis()
        result = await a.engine.execute(connected.id, [bytes.fromhex(echo(b"\xca\xfe"))])
        self.assertEqual(result.responses, (b"\xca\xfe\x90\x00",))
        await sleep(TIMEOUT + 1.0)
        self.assertEqual(reaper.reaped, [])
        a.assertState(connected, SessionState.CONNECTED)
        again = a.engine.open(CardTarget.by_iccid(iccid(3)), "demo")
        await again.ready
        self.assertEqual(a.fence.ended, 1)
        for node in (a, b):
            node.stop()
        await sleep(0.3)
        self.flushLoggedErrors()

    async def test_takenForDeadEndsCopiesOnReturn(self) -> None:
        """A paused alone for longer than the node timeout: B reaps it (A's
        connected session ends node-lost in the store and the registry) and
        A's queued session is taken over by node C.  Back, A ends both its
        copies node-lost naming what happened, writes neither to the store
        nor the registry (the entries and rows stay the others'), and its
        node set lists neither."""
        a, b = _Node(self, self.server.url, "gw-a"), _Node(self, self.server.url, "gw-b")
        await a.start()
        await b.start()
        store = MemoryStore()
        reaper = self._reaper(b, store)
        connected, queued = await a.open_two()
        for session, state in ((connected, "connected"), (queued, "awaiting-card")):
            await store.save_session(SessionRecord(str(session.id), "demo", state, 1.0, 2.0))
        await sleep(TIMEOUT)  # B has beaten long enough to judge
        a.pause()
        for _ in range(30):
            await sleep(0.3)
            if reaper.reaped:
                break
        self.assertEqual(reaper.reaped, [("gw-a", 2)])  # no HTTP API on B: both lost
        # Node C took the queued one over meanwhile (its entry names C).
        await b.redis.call(
            "HSET", f"bipgw:session:{queued.id}", "node", "gw-c", "state", "requested"
        )
        writes = len(a.stored.events)
        a.resume()
        for _ in range(30):
            await sleep(0.2)
            if queued.status().state.terminal and connected.status().state.terminal:
                break
        for session, words in (
            (queued, "node gw-c took the session over"),
            (connected, "the cluster ended the session (node-lost)"),
        ):
            status = session.status()
            self.assertEqual(
                (status.state, status.reason), (SessionState.FAILED, FailureReason.NODE_LOST)
            )
            self.assertIn(words, status.detail)
        self.assertEqual(len(a.stored.events), writes)
        await sleep(0.3)  # the registry's batched writes, if any
        entry = await b.redis.call("HGETALL", f"bipgw:session:{queued.id}")
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        self.assertEqual((fields["node"], fields["state"]), ("gw-c", "requested"))
        self.assertEqual(await b.redis.call("SMEMBERS", "bipgw:node:gw-a:sessions"), [])
        row = await store.get_session(str(connected.id))
        assert row is not None
        self.assertEqual(
            (row.reason, "node gw-a stopped answering" in row.detail), ("node-lost", True)
        )
        for node in (a, b):
            node.stop()
        await sleep(0.3)
        self.flushLoggedErrors()
