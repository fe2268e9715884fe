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

# KEYS[1]: the nodes.  ARGV: the node timeout (ms), the nodes' key prefix,
# this node's name, the sessions' key prefix.  Each dead node is removed (one
# caller wins it); its open sessions, and the sessions it had been dealt and
# not yet claimed, are dealt round-robin to the live nodes ('DEAD SID' in
# PREFIX..LIVE..':adopt'), from an offset that changes with the time, and
# each session's entry says at once which node it was dealt to ('dealt': so
# the dead node, if it was only cut off, finds on its return that it is no
# longer its own; 'node' changes when that node runs it).
# Returns, per dead node won, its name and how many sessions were dealt.
_REAP: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
local mine = false
for _, name in ipairs(live) do
  if name == ARGV[3] then mine = true end
end
if not mine then table.insert(live, ARGV[3]) end
local out = {}
local turn = tonumber(t[2]) % #live
for _, name in ipairs(dead) do
  if name ~= ARGV[3] and redis.call('ZREM', KEYS[1], name) == 1 then
    local base = ARGV[2] .. name
    local work = {}
    for _, sid in ipairs(redis.call('SMEMBERS', base .. ':sessions')) do
      table.insert(work, name .. ' ' .. sid)
    end
    for _, entry in ipairs(redis.call('SMEMBERS', base .. ':adopt')) do
      table.insert(work, entry)
    end
    redis.call('DEL', base .. ':sessions', base, base .. ':adopt')
    for _, entry in ipairs(work) do
      turn = turn % #live + 1
      redis.call('SADD', ARGV[2] .. live[turn] .. ':adopt', entry)
      local key = ARGV[4] .. string.sub(entry, string.find(entry, ' ', 1, true) + 1)
      if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'dealt', live[turn]) end
    end
    table.insert(out, name)
    table.insert(out, #work)
  end
end
return out
"""

# KEYS[1]: this node's share of dead nodes' sessions.  ARGV[1]: how many at
# most.  Each entry is taken by this node alone (SPOP).
_CLAIM: Final = """
return redis.call('SPOP', KEYS[1], ARGV[1])
"""

# KEYS[1]: the nodes.  ARGV: the node timeout (ms), the nodes' key prefix,
# this node's name, the sessions' key prefix.  This node leaves: the dead
# nodes' sessions it was dealt and has not claimed are dealt to the other
# live nodes (none: they stay, for this node's next start).  Returns how many.
_HAND_BACK: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
local since = '(' .. (now - tonumber(ARGV[1]))
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf')) do
  if name ~= ARGV[3] then table.insert(live, name) end
end
if #live == 0 then return 0 end
local mine = ARGV[2] .. ARGV[3] .. ':adopt'
local work = redis.call('SMEMBERS', mine)
local turn = tonumber(t[2]) % #live
for _, entry in ipairs(work) do
  turn = turn % #live + 1
  redis.call('SADD', ARGV[2] .. live[turn] .. ':adopt', entry)
  local key = ARGV[4] .. string.sub(entry, string.find(entry, ' ', 1, true) + 1)
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'dealt', live[turn]) end
end
redis.call('DEL', mine)
return #work
"""

CLAIM_BATCH: Final = 500
"""Dead nodes' sessions a node takes over (or ends) per round, at most."""


def adopt_key(node: str) -> str:
    """The set of the dead nodes' sessions dealt to C{node}, not yet claimed."""
    return f"{PREFIX}node:{node}:adopt"


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
    @ivar judged: the dead nodes this node won (and dealt the sessions of).
    @ivar reaped: per batch of a dead node's sessions this node claimed, the
        dead node and how many of them it ended C{node-lost}.
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
        self.judged: list[str] = []
        self.on_dead: Callable[[str], object] | None = None
        self.takeover = SessionTakeover(redis, node, store, clock)
        self.ready: Callable[[], bool] | None = None

    def reap(self) -> Deferred[Any]:
        """One round: look for dead nodes (their sessions are dealt to the
        live nodes), then take over or end this node's share.

        Dead nodes are judged only while L{ready} says so: a node that has
        just (re)joined has not seen the others beat yet (after an outage of
        Redis, every node's last beat is old until it beats again).  Its
        share it claims whenever it is dealt one.
        """
        if self.ready is not None and not self.ready():
            judged: Deferred[Any] = succeed(None)
        else:
            judged = self._redis.script(
                _REAP,
                [NODES],
                [self._timeout_ms, f"{PREFIX}node:", self.node, f"{PREFIX}session:"],
            )
            judged.addCallback(self._won)
            judged.addErrback(
                lambda f: self._log.warn(
                    "looking for dead nodes failed: {why}", why=f.getErrorMessage()
                )
            )
        return judged.addCallback(lambda _: self.claim())

    def hand_back(self) -> Deferred[int]:
        """This node leaves: deal the dead nodes' sessions it has not claimed
        yet to the other live nodes; fires with how many (never fails)."""
        d = self._redis.script(
            _HAND_BACK,
            [NODES],
            [self._timeout_ms, f"{PREFIX}node:", self.node, f"{PREFIX}session:"],
        )

        def failed(failure: Any) -> int:
            self._log.warn(
                "dead nodes' sessions not handed back: {why}", why=failure.getErrorMessage()
            )
            return 0

        return d.addCallbacks(int, failed)

    def claim(self) -> Deferred[Any]:
        """Take over or end the dead nodes' sessions dealt to this node (at
        most L{CLAIM_BATCH} a round: each taken by this node alone)."""
        d = self._redis.script(_CLAIM, [adopt_key(self.node)], [CLAIM_BATCH])

        def claimed(raw: Any) -> Deferred[Any]:
            by_dead: dict[str, list[str]] = {}
            for value in raw or ():
                entry = value.decode() if isinstance(value, bytes) else str(value)
                dead, _, sid = entry.partition(" ")
                if sid:
                    by_dead.setdefault(dead, []).append(sid)
            if not by_dead:
                return succeed(None)
            work = [self._end(dead, sorted(ids)) for dead, ids in sorted(by_dead.items())]
            return DeferredList(work, consumeErrors=True)

        d.addCallback(claimed)
        d.addErrback(
            lambda f: self._log.warn(
                "taking dead nodes' sessions failed: {why}", why=f.getErrorMessage()
            )
        )
        return d

    def _won(self, raw: Any) -> None:
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw or ()]
        for i in range(0, len(values), 2):
            dead, count = values[i], int(values[i + 1])
            self.judged.append(dead)
            self._log.warn(
                "node {dead} stopped answering: node {node} deals its {n} session(s) to the"
                " live nodes",
                dead=dead,
                node=self.node,
                n=count,
            )
            if self.on_dead is not None:
                self.on_dead(dead)

    def _end(self, dead: str, ids: list[str]) -> Deferred[None]:
        self._log.warn(
            "node {node} takes over or ends {n} session(s) of lost node {dead}",
            dead=dead,
            node=self.node,
            n=len(ids),
        )

        def ended(count: int) -> None:
            self.reaped.append((dead, count))

        return self.takeover.handle(dead, ids).addCallback(ended)
