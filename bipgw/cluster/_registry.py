# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""The cluster's session registry: which node owns each session, its card and state.

A session of this node is written to the hash C{bipgw:session:ID}
(C{node}, C{iccid}, C{service}, C{state}) when it is opened, reached by
its card and ended (not at each push or script: each write costs the
gateway CPU, bench/RESULTS.md), and the
session's id kept in the set C{bipgw:node:NAME:sessions} until it ends;
an ended session's hash stays a day (L{KEEP_ENDED}), so any node can tell
where a session ran.  One Lua call per write: the hash, the set and
the expiry change at once; the calls go over one connection, in order.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.core import SessionEngine, SessionEvent, SessionState

__all__ = ["KEEP_ENDED", "SessionRegistry", "node_sessions_key", "session_key"]

KEEP_ENDED: Final = 86_400
"""Seconds an ended session's registry entry is kept."""

_RECORD = """
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'state', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'iccid', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'service', ARGV[4]) end
if ARGV[5] == '1' then
  redis.call('SREM', KEYS[2], ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
else
  redis.call('SADD', KEYS[2], ARGV[6])
end
return 1
"""


_RECORDED: Final = frozenset(
    {
        SessionState.REQUESTED,
        SessionState.CONNECTED,
        SessionState.CLOSED,
        SessionState.FAILED,
    }
)


def session_key(session_id: str) -> str:
    """The registry hash of a session."""
    return f"{PREFIX}session:{session_id}"


def node_sessions_key(node: str) -> str:
    """The set of the sessions a node owns and has not ended."""
    return f"{PREFIX}node:{node}:sessions"


class SessionRegistry:
    """Writes this node's sessions to the cluster registry, and reads anyone's.

    @param redis: the node's Redis connections.
    @param node: this node's name.
    @param engine: the node's session engine (its events are followed).
    """

    _log = Logger()

    def __init__(self, redis: ClusterRedis, node: str, engine: SessionEngine) -> None:
        self._redis = redis
        self.node = node
        self._engine = engine
        self._unsubscribe: Any = None
        self._failures = 0

    def start(self) -> None:
        """Follow the engine's sessions from now on."""
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._event)

    def stop(self) -> None:
        """Stop following."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def owner(self, session_id: str) -> Deferred[dict[str, str] | None]:
        """The registry entry of a session (C{node}, C{iccid}, C{service},
        C{state}), or C{None}."""

        def read(values: Any) -> dict[str, str] | None:
            if not values:
                return None
            items = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
            return dict(zip(items[::2], items[1::2], strict=True))

        return self._redis.call("HGETALL", session_key(session_id)).addCallback(read)

    def _event(self, event: SessionEvent) -> None:
        # What routing and recovery need: opened, reached its card, ended.
        # Not each push, nor each script's CONNECTED <-> RELAYING.
        state = event.state
        if not event.transition or state not in _RECORDED or state is event.previous:
            return
        if state is SessionState.CONNECTED and event.previous is not SessionState.AWAITING_CARD:
            return
        status = self._engine.status(event.session_id)
        iccid = "" if status is None or status.iccid is None else status.iccid
        service = "" if status is None else status.service
        sid = str(event.session_id)
        d = self._redis.script(
            _RECORD,
            [session_key(sid), node_sessions_key(self.node)],
            [
                self.node,
                event.state.value,
                iccid,
                service,
                "1" if event.state.terminal else "0",
                sid,
                KEEP_ENDED,
            ],
        )
        d.addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        # Redis down: every transition would log; say it once per outage.
        self._failures += 1
        if self._failures == 1 or self._failures % 1000 == 0:
            self._log.warn(
                "session registry not written ({n} so far): {why}",
                n=self._failures,
                why=failure.getErrorMessage() or type(failure.value).__name__,
            )
