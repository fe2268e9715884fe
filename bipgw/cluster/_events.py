# -*- test-case-name: tests.integration.test_cluster_forwarding -*-
"""The HTTP API's event streams over every node: one numbered log of events per tenant.

A tenant's C{GET /v1/events} stream on any node shows the events of the
sessions it opened through the HTTP API of every node (docs/cluster.md),
numbered once for the whole cluster: each node appends its sessions'
events to the tenant's Redis stream C{bipgw:evlog:T} (C{XADD}, the writes of
L{FLUSH_EVERY} seconds in one call), whose entry ids (C{MS-N}) only grow;
every node reads, every L{POLL_EVERY} seconds and in one call, what was
appended after each of its streams' last id (C{XRANGE}), in order.  So a
stream's events carry the same increasing id on every node, before and
after a take-over, and a platform that reconnects with the last id it
read (C{Last-Event-ID}) gets exactly the events after it: none missed,
none twice (as long as they are in the log: its last L{LOG_KEEP} entries,
for L{RESUME_WINDOW} seconds).

Events are logged only for a tenant some node has (or had, within
L{RESUME_WINDOW}) a stream for: a node with a stream open for tenant T
says so in the sorted set C{bipgw:streams} (member C{T<newline>NODE},
scored with its expiry, renewed every L{REFRESH_EVERY} seconds), and every
node reads which tenants are listed as often.  So a stream sees another
node's events from at most L{REFRESH_EVERY} seconds after it opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.core import RateLimitedLog

__all__ = [
    "EVENT_ID",
    "INTEREST_TTL",
    "LOG_KEEP",
    "REFRESH_EVERY",
    "RESUME_WINDOW",
    "ClusterEventFeed",
    "log_key",
]

REFRESH_EVERY: Final = 1.0
"""Seconds between two renewals of this node's interests and reads of the others'."""
INTEREST_TTL: Final = 5.0
"""Seconds a node's interest in a tenant's events lives unless renewed."""
RESUME_WINDOW: Final = 300.0
"""Seconds a tenant's events are still logged (and its log kept) after its
last stream closed: a platform that reconnects within it resumes."""
LOG_KEEP: Final = 10_000
"""Entries a tenant's log keeps (about: Redis trims whole blocks)."""
FLUSH_EVERY: Final = 0.02
"""Seconds a node's events wait, to be appended in one call."""
POLL_EVERY: Final = 0.1
"""Seconds between two reads of the logs this node's streams follow."""
READ_COUNT: Final = 200
"""Entries one read takes per stream, at most."""
MAX_PENDING: Final = 10_000
"""Events waiting to be appended, at most (more are dropped, counted, logged)."""

STREAMS: Final = f"{PREFIX}streams"

EVENT_ID: Final = re.compile(r"\A[0-9]{1,16}-[0-9]{1,10}\Z")
"""An entry id of a tenant's log (C{Last-Event-ID} is checked against it)."""

# ARGV: ttl (ms), the resume window (ms), then this node's members; returns
# every member listed (the expired ones dropped, those within the resume
# window kept).
_REFRESH: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2])) end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: the tenants' logs; ARGV: the most kept, the expiry (ms), then one
# event (JSON) per key.
_APPEND: Final = """
for i, key in ipairs(KEYS) do
  redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i + 2])
  redis.call('PEXPIRE', key, ARGV[2])
end
return #KEYS
"""

# KEYS: logs; ARGV: how many at most, then per key the id to read after
# ('' : none yet, the log's last id is returned).  Per key: {'c', id}, or
# {'e', id, event, id, event, ...}.
_READ: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  local after = ARGV[i + 1]
  if after == '' then
    local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
    if #last > 0 then table.insert(out, {'c', last[1][1]}) else table.insert(out, {'c', '0-0'}) end
  else
    local got = {'e'}
    for _, entry in ipairs(redis.call('XRANGE', key, '(' .. after, '+', 'COUNT', ARGV[1])) do
      table.insert(got, entry[1])
      table.insert(got, entry[2][2])
    end
    table.insert(out, got)
  end
end
return out
"""


def log_key(tenant_id: str) -> str:
    """The Redis stream of a tenant's session events."""
    return f"{PREFIX}evlog:{tenant_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


Deliver = Callable[[str, dict[str, Any]], object]
"""Gets each event of a followed log: its id and its data (L{bipgw.web.event_json})."""


@attrs.define(eq=False)
class _Tail:
    tenant_id: str
    after: str  # '' until the log's end is read
    deliver: Deliver
    placing: bool = False  # its start (the log's end) is being read


class ClusterEventFeed:
    """The web's L{bipgw.web.IEventFeed} on Redis (module docstring).

    @param redis: this node's Redis connections.
    @param node: this node's name.
    @ivar logged: the tenants whose events are logged (a stream is open, or
        was within L{RESUME_WINDOW}, on some node), as last read.
    @ivar dropped: events not logged: Redis unreachable, or too many waiting.
    """

    _log = Logger()

    def __init__(self, redis: ClusterRedis, node: str, clock: IReactorTime) -> None:
        self._redis = redis
        self.node = node
        self._clock = clock
        self._tails: list[_Tail] = []
        self.logged: frozenset[str] = frozenset()
        self._pending: list[tuple[str, str]] = []
        self._flush: IDelayedCall | None = None
        self._reading = False
        self.dropped = 0
        self._refreshing = LoopingCall(self.refresh)
        self._refreshing.clock = clock
        self._polling = LoopingCall(self.poll)
        self._polling.clock = clock
        self._ratelog = RateLimitedLog(self._log, clock)

    def start(self) -> None:
        """Renew and read the interests from now on."""
        if not self._refreshing.running:
            self._refreshing.start(REFRESH_EVERY, now=True)

    def stop(self) -> None:
        """Stop (this node's interests expire by themselves); what waits is appended now."""
        if self._refreshing.running:
            self._refreshing.stop()
        if self._polling.running:
            self._polling.stop()
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
            self.flush()

    # -- the writing side ---------------------------------------------------------

    def wants(self, tenant_id: str) -> bool:
        """Whether C{tenant_id}'s events are logged now (a stream is open for
        it, or was lately, here or on another node)."""
        return tenant_id in self.logged or any(t.tenant_id == tenant_id for t in self._tails)

    def publish(self, tenant_id: str, event: dict[str, Any]) -> None:
        """Append C{event} of a session of C{tenant_id} to the tenant's log
        (with the others of the next L{FLUSH_EVERY} seconds)."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            self._ratelog.warn("events-full", "session events dropped: too many waiting")
            return
        self._pending.append((tenant_id, json.dumps(event, separators=(",", ":"))))
        if self._flush is None:
            self._flush = self._clock.callLater(FLUSH_EVERY, self.flush)

    def flush(self) -> Deferred[Any]:
        """Append what waits now, in one call."""
        self._flush = None
        pending, self._pending = self._pending, []
        if not pending:
            return succeed(None)
        keys = [log_key(tenant) for tenant, _ in pending]
        args: list[object] = [LOG_KEEP, int(RESUME_WINDOW * 1000)]
        args.extend(data for _, data in pending)

        def failed(failure: Any) -> None:
            self.dropped += len(pending)
            self._ratelog.warn(
                "events-not-sent", "session events not logged: {why}", why=failure.getErrorMessage()
            )

        return self._redis.script(_APPEND, keys, args).addErrback(failed)

    # -- the reading side ---------------------------------------------------------

    def follow(self, tenant_id: str, after: str | None, deliver: Deliver) -> Callable[[], None]:
        """Call C{deliver} with every event of C{tenant_id}'s log after the id
        C{after} (C{None}: from now on), in order, until the returned
        function is called.

        @raise ValueError: C{after} is not an event id.
        """
        if after is not None and not EVENT_ID.match(after):
            raise ValueError("not an event id")
        tail = _Tail(tenant_id, after or "", deliver)
        known = any(t.tenant_id == tenant_id for t in self._tails)
        self._tails.append(tail)
        if not known and self._refreshing.running:
            self.refresh()
        if not tail.after:
            # From now: the log's last id, read at once (not at the next
            # poll); if that fails, the next polls read it.
            tail.placing = True
            d = self._redis.script(_READ, [log_key(tenant_id)], [READ_COUNT, ""])

            def placed(raw: Any) -> None:
                tail.placing = False
                values = [_text(v) for v in raw[0] or ()]
                if values[:1] == ["c"] and not tail.after:
                    tail.after = values[1]

            def unplaced(_: Any) -> None:
                tail.placing = False

            d.addCallbacks(placed, unplaced)
        if not self._polling.running:
            self._polling.start(POLL_EVERY, now=True)

        def stop() -> None:
            if tail in self._tails:
                self._tails.remove(tail)
            if not self._tails and self._polling.running:
                self._polling.stop()

        return stop

    def poll(self) -> Deferred[Any]:
        """Read once, in one call, what each followed log has after its
        stream's last id; hand it over in order."""
        if self._reading or not self._tails:
            return succeed(None)
        groups: dict[tuple[str, str], list[_Tail]] = {}
        for tail in self._tails:
            if not tail.placing:
                groups.setdefault((tail.tenant_id, tail.after), []).append(tail)
        if not groups:
            return succeed(None)
        order = list(groups)
        keys = [log_key(tenant) for tenant, _ in order]
        self._reading = True
        d = self._redis.script(_READ, keys, [READ_COUNT, *(after for _, after in order)])

        def read(raw: Any) -> None:
            for (tenant, after), answer in zip(order, raw or (), strict=False):
                values = [_text(v) for v in answer or ()]
                if not values:
                    continue
                tails = [t for t in groups[(tenant, after)] if t in self._tails]
                if values[0] == "c":
                    for tail in tails:
                        tail.after = values[1]
                    continue
                for i in range(1, len(values) - 1, 2):
                    event_id, data = values[i], values[i + 1]
                    try:
                        event = json.loads(data)
                        if not isinstance(event, dict):
                            raise ValueError("not an object")
                    except ValueError:
                        self._ratelog.warn("events-malformed", "malformed session event skipped")
                        event = None
                    for tail in tails:
                        if tail not in self._tails:
                            continue
                        tail.after = event_id
                        if event is not None:
                            try:
                                tail.deliver(event_id, event)
                            except Exception:
                                self._log.failure("delivering a session event failed")

        def done(result: Any) -> Any:
            self._reading = False
            return result

        d.addCallback(read)
        d.addErrback(
            lambda f: self._ratelog.warn(
                "events-read", "session events not read: {why}", why=f.getErrorMessage()
            )
        )
        return d.addBoth(done)

    def refresh(self) -> Deferred[Any]:
        """Renew this node's interests; read which tenants' events are logged."""
        mine = sorted({f"{t.tenant_id}\n{self.node}" for t in self._tails})
        args = [int(INTEREST_TTL * 1000), int(RESUME_WINDOW * 1000), *mine]
        d = self._redis.script(_REFRESH, [STREAMS], args)

        def read(members: Any) -> None:
            self.logged = frozenset(_text(raw).rpartition("\n")[0] for raw in members or ())

        d.addCallback(read)
        d.addErrback(
            lambda f: self._ratelog.warn(
                "events-refresh", "event stream interests not read: {why}", why=f.getErrorMessage()
            )
        )
        return d
