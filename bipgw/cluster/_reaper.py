# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""A node that stops beating is noticed, and its sessions ended with C{node-lost}.

Every live node looks, with each heartbeat, for nodes whose last beat is
older than L{bipgw.cluster.NODE_TIMEOUT} (so a node killed with C{kill -9}
is noticed at most C{NODE_TIMEOUT + BEAT_EVERY} = 10 s after its last
beat).  One Lua script removes each such node from C{bipgw:nodes} and
takes its list of open sessions: only one live node wins each dead node.
The winner takes over those still queued and ends the others in the
shared database with C{node-lost}, marking them failed in the registry
(L{bipgw.cluster._takeover.SessionTakeover}); every node hears what
became of each (C{bipgw:cluster}) and tells the session's platform.
The dead node's card locks expire by themselves, so its cards are free
for the other nodes' sessions (a taken-over session waits for its card's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.cluster._nodes import NODE_TIMEOUT, NODES
from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.cluster._takeover import SessionTakeover
from bipgw.store import IStore

__all__ = ["NodeReaper"]

_REAP: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local out = {}
for _, name in ipairs(dead) do
  if name ~= ARGV[3] and redis.call('ZREM', KEYS[1], name) == 1 then
    local sessions = redis.call('SMEMBERS', ARGV[2] .. name .. ':sessions')
    redis.call('DEL', ARGV[2] .. name .. ':sessions', ARGV[2] .. name)
    table.insert(out, name)
    table.insert(out, table.concat(sessions, ' '))
  end
end
return out
"""


class NodeReaper:
    """Ends the sessions of dead nodes (module docstring).

    @param redis: this node's Redis connections.
    @param node: this node's name (never reaped by itself).
    @param store: the shared database.
    @param node_timeout: seconds without a beat after which a node is dead.
    @ivar on_dead: called with the name of each dead node this node wins
        (the relay fails the POSTs waiting for it).
    @ivar takeover: what becomes of a dead node's sessions.
    @ivar ready: whether this node may judge the others now; C{None}: always.
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        store: IStore,
        clock: IReactorTime,
        node_timeout: float = NODE_TIMEOUT,
    ) -> None:
        self._redis = redis
        self.node = node
        self._store = store
        self._clock = clock
        self._timeout_ms = int(node_timeout * 1000)
        self.reaped: list[tuple[str, int]] = []
        self.on_dead: Callable[[str], object] | None = None
        self.takeover = SessionTakeover(redis, node, store, clock)
        self.ready: Callable[[], bool] | None = None

    def reap(self) -> Deferred[Any]:
        """Look for dead nodes once; end the sessions of those this node wins.

        Not while L{ready} says no: a node that has just (re)joined has not
        seen the others beat yet (after an outage of Redis, every node's
        last beat is old until it beats again).
        """
        if self.ready is not None and not self.ready():
            return succeed(None)
        d = self._redis.script(_REAP, [NODES], [self._timeout_ms, f"{PREFIX}node:", self.node])
        d.addCallback(self._won)
        d.addErrback(
            lambda f: self._log.warn(
                "looking for dead nodes failed: {why}", why=f.getErrorMessage()
            )
        )
        return d

    def _won(self, raw: Any) -> Deferred[Any]:
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw or ()]
        work = []
        for i in range(0, len(values), 2):
            dead, ids = values[i], values[i + 1].split()
            if self.on_dead is not None:
                self.on_dead(dead)
            work.append(self._end(dead, ids))
        if not work:
            return succeed(None)
        return DeferredList(work, consumeErrors=True)

    def _end(self, dead: str, ids: list[str]) -> Deferred[None]:
        self._log.warn(
            "node {dead} stopped answering: node {node} takes over or ends its {n} session(s)",
            dead=dead,
            node=self.node,
            n=len(ids),
        )

        def ended(count: int) -> None:
            self.reaped.append((dead, count))

        return self.takeover.handle(dead, ids).addCallback(ended)
