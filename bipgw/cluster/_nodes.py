# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""Node heartbeats, and the cluster's view of its nodes (C{bipgw cluster status}).

Every L{BEAT_EVERY} seconds a node writes, in one Lua call, the hash
C{bipgw:node:NAME} (its admin address, when it started, the cards it holds)
and its score in the sorted set C{bipgw:nodes}: the Redis server's own
time in milliseconds, so the nodes' clocks need not agree.  A node whose
last beat is older than L{NODE_TIMEOUT} seconds is dead (killed, or cut
off from Redis): noticed at most L{NODE_TIMEOUT} + L{BEAT_EVERY} seconds
after its last beat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.cluster._registry import node_sessions_key

__all__ = [
    "BEAT_EVERY",
    "NODE_TIMEOUT",
    "NodeHeartbeat",
    "NodeInfo",
    "list_nodes",
    "status_lines",
]

BEAT_EVERY: Final = 2.0
"""Seconds between two heartbeats of a node."""
NODE_TIMEOUT: Final = 8.0
"""Seconds without a heartbeat after which a node counts as dead."""

NODES = f"{PREFIX}nodes"

_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'admin', ARGV[2], 'cards', ARGV[3], 'beat', now)
local fresh = redis.call('HSETNX', KEYS[1], 'started', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
return {redis.call('ZCARD', KEYS[2]), fresh}
"""

_LIST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local names = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {now}
for i = 1, #names, 2 do
  local name = names[i]
  local info = redis.call('HMGET', ARGV[1] .. name, 'admin', 'cards', 'started')
  local sessions = redis.call('SCARD', ARGV[1] .. name .. ':sessions')
  table.insert(out, name)
  table.insert(out, names[i + 1])
  table.insert(out, info[1] or '')
  table.insert(out, info[2] or '0')
  table.insert(out, sessions)
end
return out
"""


def node_key(node: str) -> str:
    """The hash describing a node."""
    return f"{PREFIX}node:{node}"


@attrs.frozen
class NodeInfo:
    """What the cluster knows of one node.

    @ivar age: seconds since its last heartbeat (Redis's clock).
    @ivar alive: whether that is under L{NODE_TIMEOUT}.
    @ivar sessions: sessions it owns and has not ended.
    @ivar cards: card locks it held at its last beat.
    """

    name: str
    admin: str
    age: float
    alive: bool
    sessions: int
    cards: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def list_nodes(redis: ClusterRedis, node_timeout: float = NODE_TIMEOUT) -> Deferred[list[NodeInfo]]:
    """Every node that beat and has not left, by name; C{alive} when its last
    beat is at most C{node_timeout} seconds old."""

    def parse(raw: Any) -> list[NodeInfo]:
        now = int(raw[0])
        rows = raw[1:]
        nodes = []
        for i in range(0, len(rows), 5):
            name, beat, admin, cards, sessions = (_text(v) for v in rows[i : i + 5])
            age = max(0.0, (now - int(float(beat))) / 1000)
            nodes.append(
                NodeInfo(name, admin, age, age <= node_timeout, int(sessions), int(cards or 0))
            )
        return sorted(nodes, key=lambda n: n.name)

    return redis.script(_LIST, [NODES], [f"{PREFIX}node:"]).addCallback(parse)


def status_lines(where: object, nodes: list[NodeInfo]) -> list[str]:
    """C{bipgw cluster status}'s table of C{nodes} (of the Redis at C{where}):
    a header, then one line a node."""
    lines = [
        f"cluster on {where}: {len(nodes)} node(s)",
        f"{'node':16} {'state':6} {'beat':>8} {'admin':22} sessions cards",
    ]
    for n in nodes:
        state = "alive" if n.alive else "DEAD"
        lines.append(f"{n.name:16} {state:6} {n.age:7.1f}s {n.admin:22} {n.sessions:8} {n.cards:5}")
    return lines


class NodeHeartbeat:
    """Beats for one node every L{BEAT_EVERY} seconds.

    @param redis: the node's Redis connections.
    @param node: its name.
    @param admin: its public admin address, C{host:port} (a callable: the
        port may be known only once the admin server listens).
    @param cards: how many card locks it holds now.
    @ivar nodes: the nodes registered at the last beat (this one included).
    @ivar on_forgotten: called when a beat finds Redis no longer knew this
        node (it restarted without its data, or a node took this one for
        dead): what the node keeps there must be written again.
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        clock: IReactorTime,
        admin: Callable[[], str],
        cards: Callable[[], int],
        every: float = BEAT_EVERY,
    ) -> None:
        self._every = every
        self._redis = redis
        self.node = node
        self._admin = admin
        self._cards = cards
        self._loop = LoopingCall(self.beat)
        self._loop.clock = clock
        self._down = False
        self._beaten = False
        self._clock = clock
        self._up_since: float | None = None
        self._ok_sent: float | None = None
        self.nodes = 1
        self.on_forgotten: Callable[[], object] | None = None

    def address(self) -> str:
        """This node's public admin address (C{host:port}), as it beats it."""
        return self._admin()

    def beat(self) -> Deferred[None]:
        """One heartbeat now."""
        sent = self._clock.seconds()
        d = self._redis.script(
            _BEAT, [node_key(self.node), NODES], [self.node, self._admin(), self._cards()]
        )

        def beaten(answer: Any) -> None:
            count, fresh = answer
            self.nodes = int(count)
            self._ok_sent = max(sent, self._ok_sent or sent)
            if self._down:
                self._log.info("heartbeat of node {node} written again", node=self.node)
            self._down = False
            if self._up_since is None:
                self._up_since = self._clock.seconds()
            if int(fresh) and self._beaten:
                self._log.warn(
                    "Redis no longer knew node {node} (restarted without its data, or the"
                    " node was taken for dead): its sessions are written again",
                    node=self.node,
                )
                if self.on_forgotten is not None:
                    self.on_forgotten()
            self._beaten = True

        def missed(failure: Any) -> None:
            if not self._down:
                self._log.warn(
                    "heartbeat of node {node} not written: {why}",
                    node=self.node,
                    why=failure.getErrorMessage() or type(failure.value).__name__,
                )
            self._down = True
            self._up_since = None

        return d.addCallbacks(beaten, missed)

    def up_for(self) -> float:
        """Seconds this node's beats have been written without a miss (0 when
        the last was missed, or none was written yet)."""
        if self._up_since is None:
            return 0.0
        return max(0.0, self._clock.seconds() - self._up_since)

    def silent_for(self) -> float:
        """Seconds since the last beat that went through was sent (0 before
        the first): at least how old the other nodes find this node's last
        beat, so a node silent for L{NODE_TIMEOUT} may have been taken for dead."""
        if self._ok_sent is None or not self._loop.running:
            return 0.0
        return max(0.0, self._clock.seconds() - self._ok_sent)

    def start(self) -> None:
        """Beat now and every L{BEAT_EVERY} seconds."""
        if not self._loop.running:
            self._loop.start(self._every, now=True)

    def stop(self) -> Deferred[Any]:
        """Stop beating and leave the cluster (a clean shutdown: the node is
        removed at once, not after L{NODE_TIMEOUT})."""
        if self._loop.running:
            self._loop.stop()
        d = self._redis.call("ZREM", NODES, self.node)
        d.addCallback(lambda _: self._redis.call("DEL", node_key(self.node)))
        d.addCallback(lambda _: self._redis.call("DEL", node_sessions_key(self.node)))
        return d.addErrback(lambda _: None)
