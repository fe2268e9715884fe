# -*- test-case-name: tests.unit.cluster.test_fence,tests.integration.test_cluster_cutoff -*-
"""A node cut off from Redis stops driving what the cluster may have given away.

The other nodes take a node whose last beat is older than
L{bipgw.cluster.NODE_TIMEOUT} for dead (L{bipgw.cluster.NodeReaper}): its
queued sessions are taken over (re-opened and pushed by a live node), the
others ended C{node-lost}.  A node that is merely cut off from Redis (a
network partition, a paused Redis) cannot tell; so:

  - B{while cut off}: once its beats have not gone through for
    C{NODE_TIMEOUT - margin} seconds (measured from when the last good beat
    was I{sent}, so never less than the age the others see), it ends its
    queued sessions itself, C{failed} / C{node-lost}, saying why, before
    any node may take them over (their rows end first, so the node that
    wins it leaves them alone).  Its connected sessions go on: they cannot
    move, and need no Redis;
  - B{back}: when a beat finds that Redis forgot the node (a node took it
    for dead meanwhile), the registry is written again
    (L{SessionRegistry.rewrite}); each live session whose entry names
    another node (taken over) or was marked failed (ended as lost, the
    platform told) is ended here too, C{node-lost}, and its writes to the
    shared database dropped (L{FencedRecorder}): its row is the other
    node's, or already says how it ended.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from bipgw.cluster._nodes import BEAT_EVERY, NODE_TIMEOUT, NodeHeartbeat
from bipgw.core import (
    ApduTrace,
    FailureReason,
    ISessionRecorder,
    SessionEngine,
    SessionEvent,
    SessionState,
    SessionStatus,
)
from bipgw.core._engine import OFFERED

__all__ = ["FencedRecorder", "NodeFence"]

CHECK_EVERY: Final = 0.5
"""Seconds between two looks at how long the node has been cut off."""
MAX_DISOWNED: Final = 10_000
"""Sessions given away remembered (their writes dropped), the oldest forgotten first."""

_QUEUED: Final = frozenset(
    {SessionState.REQUESTED, SessionState.PUSHING, SessionState.AWAITING_CARD}
)


class NodeFence:
    """Ends this node's copies of sessions the cluster may give, or gave, away.

    @param engine: the node's session engine.
    @param heartbeat: the node's heartbeat (how long it has been cut off).
    @param clock: times the looks.
    @param node_timeout: seconds of silence after which the others take
        this node for dead.
    @param margin: the queued sessions end this many seconds before that.
    @ivar ended: how many sessions this fence ended.
    """

    _log = Logger()

    def __init__(
        self,
        engine: SessionEngine,
        heartbeat: NodeHeartbeat,
        clock: IReactorTime,
        *,
        node_timeout: float = NODE_TIMEOUT,
        margin: float = BEAT_EVERY,
        every: float = CHECK_EVERY,
    ) -> None:
        if not 0 <= margin < node_timeout:
            raise ValueError(f"margin ({margin}) must be between 0 and node_timeout")
        self._engine = engine
        self._heartbeat = heartbeat
        self.node = heartbeat.node
        self._timeout = node_timeout
        self._limit = node_timeout - margin
        self._every = every
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._disowned: OrderedDict[str, None] = OrderedDict()
        self.ended = 0

    def disowned(self, session_id: str) -> bool:
        """Whether C{session_id}'s writes are another node's now."""
        return session_id in self._disowned

    def check(self) -> None:
        """Look once: cut off for long enough, end the queued sessions."""
        silent = self._heartbeat.silent_for()
        if silent < self._limit:
            return
        detail = (
            f"node {self.node} has had no answer from Redis for {silent:.1f} s: the cluster"
            f" takes a node silent for {self._timeout:g} s for dead and gives its queued"
            " sessions to another node, so this node ended it first"
        )
        ended = 0
        for status in self._engine.sessions():
            if status.state in _QUEUED and status.service != OFFERED:
                self._engine.abandon(status.session_id, FailureReason.NODE_LOST, detail)
                ended += 1
        if ended:
            self.ended += ended
            self._log.warn(
                "node {node} cut off from Redis for {silent:.1f} s: its {n} queued session(s)"
                " ended (node-lost) before another node may take them over",
                node=self.node,
                silent=silent,
                n=ended,
            )

    def given_away(self, session_id: str, owner: str, state: str) -> None:
        """The registry says the cluster gave C{session_id} to C{owner}, or
        ended it (C{state} failed), while this node was cut off: end this
        node's copy, its writes dropped (L{SessionRegistry.on_disowned})."""
        self._disowned[session_id] = None
        while len(self._disowned) > MAX_DISOWNED:
            self._disowned.popitem(last=False)
        if owner != self.node and state != "failed":
            detail = (
                f"node {owner} took the session over while node {self.node} was cut off from"
                " Redis (taken for dead); this node's copy ended"
            )
        else:
            detail = (
                f"the cluster ended the session (node-lost) while node {self.node} was cut off"
                " from Redis (taken for dead); this node's copy ended"
            )
        if self._engine.status(session_id) is not None:
            self.ended += 1
        self._engine.abandon(session_id, FailureReason.NODE_LOST, detail)

    def start(self) -> None:
        """Look every few tenths of a second from now on."""
        if not self._loop.running:
            self._loop.start(self._every, now=False)

    def stop(self) -> None:
        """Stop looking."""
        if self._loop.running:
            self._loop.stop()


class FencedRecorder:
    """An L{ISessionRecorder} that drops the writes of sessions given away.

    @param recorder: where the other writes go.
    @param disowned: whether a session was given away (L{NodeFence.disowned}).
    """

    def __init__(self, recorder: ISessionRecorder, disowned: Callable[[str], bool]) -> None:
        self._recorder = recorder
        self._disowned = disowned

    def record_opened(self, status: SessionStatus) -> Deferred[None] | None:
        """Forwarded (a session just opened is this node's)."""
        return self._recorder.record_opened(status)

    def record_session(self, status: SessionStatus) -> Deferred[None] | None:
        """Forwarded, unless the session was given away."""
        if self._disowned(str(status.session_id)):
            return None
        return self._recorder.record_session(status)

    def record_event(self, event: SessionEvent) -> Deferred[None] | None:
        """Forwarded, unless the session was given away."""
        if self._disowned(str(event.session_id)):
            return None
        return self._recorder.record_event(event)

    def record_apdus(self, traces: Sequence[ApduTrace]) -> Deferred[None] | None:
        """Forwarded, unless the session was given away."""
        if traces and self._disowned(str(traces[0].session_id)):
            return None
        return self._recorder.record_apdus(traces)
