"""Tests for L{bipgw.cluster._fence}: a node cut off from Redis ends what the cluster may give away.

The heartbeat's Redis is a stand-in whose calls the test answers (or leaves
unanswered, as a paused Redis does), on a L{Clock}, over a real engine and
fake cards; tests.integration.test_cluster_cutoff runs it on a real Redis
that is paused (SIGSTOP).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cluster import NodeHeartbeat
from bipgw.cluster._fence import FencedRecorder, NodeFence
from bipgw.core import (
    CardTarget,
    FailureReason,
    MemorySessionRecorder,
    SessionEngine,
    SessionId,
    SessionState,
)
from tests.unit.platform import POLICY, Fleet, iccid


class _Redis:
    """The heartbeat's calls, answered by the test."""

    def __init__(self) -> None:
        self.calls: list[Deferred[Any]] = []

    def script(self, body: str, keys: Sequence[str], args: Sequence[object]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append(d)
        return d

    def call(self, *args: object) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.callback(None)
        return d


class FenceTests(SynchronousTestCase):
    """Queued sessions end before the cluster may take them; given-away copies end quietly."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.fleet = Fleet(self.clock, 3)
        self.fleet.connect_delay = 0.5
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.stored = MemorySessionRecorder()
        self.engine = SessionEngine(
            self.clock,
            self.fleet,
            self.fleet,
            FencedRecorder(self.stored, lambda sid: self.fence.disowned(sid)),
            policy=POLICY,
            new_id=lambda: next(ids),
        )
        self.fleet.engine = self.engine
        self.redis = _Redis()
        self.beat = NodeHeartbeat(
            self.redis,  # type: ignore[arg-type]
            "gw-a",
            self.clock,
            lambda: "192.0.2.1:8443",
            lambda: 0,
            every=2.0,
        )
        self.fence = NodeFence(self.engine, self.beat, self.clock, node_timeout=8.0, margin=2.0)

    def tearDown(self) -> None:
        self.fence.stop()
        if self.beat._loop.running:
            self.beat._loop.stop()
        self.engine.stop()
        self.clock.advance(60)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def _open_two(self) -> tuple[Any, Any]:
        """Session s1 reaches its card; s2's card never connects (queued)."""
        self.fleet.card(2).reachable = False
        connected = self.engine.open(CardTarget.by_iccid(iccid(1)), "demo")
        queued = self.engine.open(CardTarget.by_iccid(iccid(2)), "demo")
        queued.ready.addErrback(lambda _: None)
        self.clock.advance(1.0)
        self.assertIs(connected.status().state, SessionState.CONNECTED)
        self.assertIs(queued.status().state, SessionState.AWAITING_CARD)
        return connected, queued

    def test_cutOffEndsQueuedBeforeTheTimeout(self) -> None:
        """Beats unanswered (Redis paused): 6 s after the last good beat was
        sent (8 s node timeout, 2 s margin) the queued session ends
        node-lost, saying why, and is recorded; the connected one goes on."""
        self.beat.start()
        self.redis.calls[0].callback([2, 1])
        self.fence.start()
        connected, queued = self._open_two()
        self.clock.advance(2.0)  # the second beat is sent, never answered
        self.assertEqual(self.beat.silent_for(), 3.0)
        self.clock.advance(2.5)
        self.assertIs(queued.status().state, SessionState.AWAITING_CARD)
        self.clock.advance(0.5)
        status = queued.status()
        self.assertEqual(
            (status.state, status.reason), (SessionState.FAILED, FailureReason.NODE_LOST)
        )
        self.assertIn("no answer from Redis for 6.0 s", status.detail)
        self.assertIn("ended it first", status.detail)
        self.assertEqual(self.stored.sessions[queued.id].reason, FailureReason.NODE_LOST)
        self.assertIs(connected.status().state, SessionState.CONNECTED)
        self.assertEqual(self.fence.ended, 1)
        self.clock.advance(10.0)
        self.assertIs(connected.status().state, SessionState.CONNECTED)

    def test_goodBeatsEndNothing(self) -> None:
        """While beats go through, nothing ends, however long it runs."""
        self.beat.start()
        self.fence.start()
        _, queued = self._open_two()
        for _ in range(10):
            self.redis.calls[-1].callback([2, 0])
            self.clock.advance(2.0)
        self.assertIs(queued.status().state, SessionState.AWAITING_CARD)
        self.redis.calls[-1].callback([2, 0])

    def test_givenAwayEndsQuietly(self) -> None:
        """A copy the cluster gave to another node, or ended, while this node
        was cut off ends node-lost naming the other node; what it does after
        is not written to the shared store (the row is the other node's)."""
        connected, queued = self._open_two()
        writes = len(self.stored.events)
        self.fence.given_away(str(queued.id), "gw-b", "requested")
        self.fence.given_away(str(connected.id), "gw-a", "failed")
        for session, words in (
            (queued, "node gw-b took the session over"),
            (connected, "the cluster ended the session"),
        ):
            status = session.status()
            self.assertEqual(
                (status.state, status.reason), (SessionState.FAILED, FailureReason.NODE_LOST)
            )
            self.assertIn(words, status.detail)
            self.assertIn("node gw-a was cut off from Redis", status.detail)
        self.assertEqual(len(self.stored.events), writes)
        for session in (queued, connected):
            self.assertIsNot(self.stored.sessions[session.id].state, SessionState.FAILED)
            self.assertEqual(self.stored.history(session.id)[-1].state.terminal, False)
        self.assertEqual(self.fence.ended, 2)
        self.assertTrue(self.fence.disowned(str(queued.id)))
        self.assertFalse(self.fence.disowned("s9"))
