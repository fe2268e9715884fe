# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""The cluster's session registry: which node owns each session, its card and state.

A session of this node is written to the hash C{bipgw:session:ID}
(C{node}, C{iccid}, C{service}, C{state}) when it is opened, reached by
its card and ended (not at each push or script: each write costs the
gateway CPU, bench/RESULTS.md), and the
session's id kept in the set C{bipgw:node:NAME:sessions} until it ends;
an ended session's hash stays a day (L{KEEP_ENDED}), so any node can tell
where a session ran.  The writes of a burst go together, every
L{FLUSH_EVERY} seconds, as one Lua call (the hashes, the set and the
expiries change at once), over one connection, in order.

A session opened here counts as recorded (the doors answer C{accepted} /
C{201}) only once the call carrying its opening write has returned
(L{SessionRegistry.written}, held through
L{bipgw.core.SessionEngine.hold_openings}): a node that dies after that has
the session in its set, for the node that takes it over.  The wait is at
most L{FLUSH_EVERY} plus one Redis call, shared by a whole burst.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.codec.platform import MAX_TIMEOUT, Timeouts
from bipgw.core import SessionEngine, SessionEvent, SessionState
from bipgw.core._engine import OFFERED

__all__ = [
    "KEEP_ENDED",
    "RegistryNotWrittenError",
    "SessionRegistry",
    "node_sessions_key",
    "session_key",
]

KEEP_ENDED: Final = 86_400
"""Seconds an ended session's registry entry is kept."""

# KEYS[1]: the node's set; then per write KEYS[i+1] the session's hash and
# ARGV (after the node and the expiry) 9 values: id, state, iccid, service,
# ended, and the open's context: tenant, application, target (hex), the
# platform's timeouts (L{encode_timeouts}).  A write with no state only adds
# the context.
_RECORD = """
for i = 2, #KEYS do
  local a = 3 + (i - 2) * 9
  local key, sid = KEYS[i], ARGV[a]
  if ARGV[a + 1] ~= '' then
    redis.call('HSET', key, 'node', ARGV[1], 'state', ARGV[a + 1])
  end
  if ARGV[a + 2] ~= '' then redis.call('HSET', key, 'iccid', ARGV[a + 2]) end
  if ARGV[a + 3] ~= '' then redis.call('HSET', key, 'service', ARGV[a + 3]) end
  if ARGV[a + 5] ~= '' then
    redis.call('HSET', key, 'tenant', ARGV[a + 5], 'app', ARGV[a + 6], 'target', ARGV[a + 7],
      'timeouts', ARGV[a + 8])
  end
  if ARGV[a + 4] == '1' then
    redis.call('SREM', KEYS[1], sid)
    redis.call('EXPIRE', key, ARGV[2])
  elseif ARGV[a + 1] ~= '' then
    redis.call('SADD', KEYS[1], sid)
  end
end
return 1
"""

_QUEUED: Final = frozenset(
    {
        SessionState.REQUESTED,
        SessionState.PUSHING,
        SessionState.AWAITING_CARD,
    }
)
"""States of a session that has not reached its card (another node may take it over)."""

# KEYS[1]: the node's set; then per session KEYS[i+1] its hash and ARGV
# (after the node) 8 values: id, state, iccid, service, tenant, app, target,
# timeouts.
# A hash naming another node (it took the session over), or marked failed
# (a node that took this one for dead ended it), or dealt to another node
# (to take over or end), is left alone: its id, that node and its state
# are returned.
_REWRITE = """
local out = {}
for i = 2, #KEYS do
  local a = 2 + (i - 2) * 8
  local key, sid = KEYS[i], ARGV[a]
  local owner = redis.call('HGET', key, 'node')
  local state = redis.call('HGET', key, 'state')
  local dealt = redis.call('HGET', key, 'dealt')
  if dealt and dealt ~= ARGV[1] and owner == ARGV[1] then owner = dealt end
  if owner and (owner ~= ARGV[1] or state == 'failed') then
    table.insert(out, sid)
    table.insert(out, owner)
    table.insert(out, state or '')
  else
    redis.call('HSET', key, 'node', ARGV[1], 'state', ARGV[a + 1], 'service', ARGV[a + 3])
    if ARGV[a + 2] ~= '' then redis.call('HSET', key, 'iccid', ARGV[a + 2]) end
    if ARGV[a + 4] ~= '' then
      redis.call('HSET', key, 'tenant', ARGV[a + 4], 'app', ARGV[a + 5], 'target', ARGV[a + 6],
        'timeouts', ARGV[a + 7])
    end
    redis.call('SADD', KEYS[1], sid)
  end
end
return out
"""

FLUSH_EVERY: Final = 0.02
"""Seconds the writes of a burst of sessions wait, to go as one Lua call."""


_RECORDED: Final = frozenset(
    {
        SessionState.REQUESTED,
        SessionState.CONNECTED,
        SessionState.CLOSED,
        SessionState.FAILED,
    }
)


def encode_timeouts(timeouts: Timeouts | None) -> str:
    """The platform's C{timeouts} of an open as the registry keeps them:
    C{READY:COMMAND} in seconds, either empty when absent (C{""}: none)."""
    if timeouts is None or (timeouts.ready is None and timeouts.command is None):
        return ""
    return ":".join("" if v is None else repr(float(v)) for v in (timeouts.ready, timeouts.command))


def decode_timeouts(text: str) -> Timeouts | None:
    """The timeouts L{encode_timeouts} wrote; C{None} for none, or for
    anything else (a value out of the platform's bounds is dropped)."""
    parts = text.split(":")
    if len(parts) != 2 or len(text) > 64:
        return None
    values: list[float | None] = []
    for part in parts:
        try:
            value = float(part) if part else None
        except ValueError:
            return None
        if value is not None and not 0 < value <= MAX_TIMEOUT:
            value = None
        values.append(value)
    if values == [None, None]:
        return None
    return Timeouts(ready=values[0], command=values[1])


class RegistryNotWrittenError(Exception):
    """The registry write of a session's opening did not go through (Redis)."""


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

    def __init__(
        self, redis: ClusterRedis, node: str, engine: SessionEngine, clock: IReactorTime
    ) -> None:
        self._redis = redis
        self.node = node
        self._engine = engine
        self._clock = clock
        self._unsubscribe: Any = None
        self._failures = 0
        self._waiting: list[tuple[str, ...]] = []
        # The open's context (tenant, application, target) of each live
        # session a tenant opened: written again after Redis lost it.
        self._contexts: dict[str, tuple[str, str, str, str]] = {}
        self._flush: IDelayedCall | None = None
        # Told of each live session of this node the cluster gave away or
        # ended while the node was cut off (L{rewrite}): id, node, state.
        self.on_disowned: Callable[[str, str, str], object] | None = None
        # Whether a session's entry is another node's now (not written here).
        self.disowned: Callable[[str], bool] = lambda _: False
        # Openings waiting for the call that carries the writes now waiting.
        self._openings: list[Deferred[None]] = []
        self._release: Any = None

    def start(self) -> None:
        """Follow the engine's sessions from now on."""
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._event)
            self._release = self._engine.hold_openings(self.written)

    def stop(self) -> None:
        """Stop following (what waits is written now)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._release()
            self._unsubscribe = self._release = None
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
            self.flush()

    def flush(self) -> Deferred[Any]:
        """Write what waits now, as one call."""
        self._flush = None
        writes, self._waiting = self._waiting, []
        openings, self._openings = self._openings, []
        if not writes:
            for opening in openings:
                opening.callback(None)
            return succeed(None)
        keys = [node_sessions_key(self.node), *(session_key(w[0]) for w in writes)]
        args: list[object] = [self.node, KEEP_ENDED]
        for write in writes:
            args.extend(write)
        d = self._redis.script(_RECORD, keys, args)
        if openings:
            d.addBoth(self._written, openings)
        return d.addErrback(self._failed)

    def written(self, session_id: object = None) -> Deferred[None]:
        """Fires once the writes waiting now (the opening of C{session_id},
        just queued) have been written; fails with L{RegistryNotWrittenError} if
        Redis could not be written."""
        opening: Deferred[None] = Deferred()
        if not self._waiting:
            opening.callback(None)
        else:
            self._openings.append(opening)
        return opening

    def _written(self, result: Any, openings: list[Deferred[None]]) -> Any:
        if isinstance(result, Failure):
            if result.check(DeferredTimeout):
                why = "no answer in time"
            else:
                why = result.getErrorMessage() or type(result.value).__name__
            error = RegistryNotWrittenError(
                f"the cluster's session registry (Redis) is unreachable: {why}"
            )
            for opening in openings:
                opening.errback(error)
        else:
            for opening in openings:
                opening.callback(None)
        return result

    def context(
        self,
        session_id: str,
        tenant_id: str,
        application: bytes | None,
        target: bytes | None,
        timeouts: Timeouts | None = None,
    ) -> None:
        """Keep who opened C{session_id}, for what and with which timeouts,
        so that another node can take it over if this one dies
        (L{bipgw.core.Tenancy.contexts})."""
        context = (
            tenant_id,
            (application or b"").hex(),
            (target or b"").hex(),
            encode_timeouts(timeouts),
        )
        self._contexts[session_id] = context
        self._queue((session_id, "", "", "", "0", *context))

    def rewrite(self) -> Deferred[Any]:
        """Write every live session of this node again (Redis lost them: it
        restarted without its data, or a node took this one for dead).

        A session another node runs now (it took it over while this node was
        cut off), or that such a node ended (C{failed}), is left to that
        entry, logged, and handed to L{on_disowned}.
        """
        keys = [node_sessions_key(self.node)]
        args: list[object] = [self.node]
        for status in self._engine.sessions():
            if status.state.terminal or status.service == OFFERED:
                continue
            sid = str(status.session_id)
            state = (
                SessionState.REQUESTED.value
                if status.state in _QUEUED
                else SessionState.CONNECTED.value
            )
            keys.append(session_key(sid))
            args.extend((sid, state, status.iccid or "", status.service))
            args.extend(self._contexts.get(sid, ("", "", "", "")))

        def written(raw: Any) -> None:
            taken = [v.decode() if isinstance(v, bytes) else str(v) for v in raw or ()]
            self._log.info(
                "node {node}'s {n} live session(s) written to the registry again",
                node=self.node,
                n=len(keys) - 1 - len(taken) // 3,
            )
            for i in range(0, len(taken), 3):
                session, other, state = taken[i : i + 3]
                if other != self.node:
                    self._log.warn(
                        "session {session} runs on node {other} now (taken over while node"
                        " {node} was cut off from Redis); this node's copy is not registered",
                        session=session,
                        other=other,
                        node=self.node,
                    )
                else:
                    self._log.warn(
                        "session {session} was ended by the cluster (node {node} was taken"
                        " for dead while cut off from Redis); this node's copy is not registered",
                        session=session,
                        node=self.node,
                    )
                if self.on_disowned is not None:
                    self.on_disowned(session, other, state)

        d = self._redis.script(_REWRITE, keys, args)
        return d.addCallbacks(written, self._failed)

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
        ended = "1" if event.state.terminal else "0"
        sid = str(event.session_id)
        if self.disowned(sid):
            # Its entry names the node that took it over, or says how it ended.
            self._contexts.pop(sid, None)
            return
        if event.state.terminal:
            self._contexts.pop(sid, None)
        self._queue((sid, state.value, iccid, service, ended, "", "", "", ""))

    def _queue(self, write: tuple[str, ...]) -> None:
        self._waiting.append(write)
        if self._flush is None:
            self._flush = self._clock.callLater(FLUSH_EVERY, self.flush)

    def _failed(self, failure: Any) -> None:
        # Redis down: every transition would log; say it once per outage.
        self._failures += 1
        if self._failures == 1 or self._failures % 1000 == 0:
            self._log.warn(
                "session registry not written ({n} so far): {why}",
                n=self._failures,
                why=failure.getErrorMessage() or type(failure.value).__name__,
            )
