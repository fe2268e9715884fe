# -*- test-case-name: tests.integration.test_cluster_forwarding -*-
"""The HTTP API's event streams over every node: a tenant's session events where it listens.

A tenant's C{GET /v1/events} stream on node B shows the events of the
sessions it opened through the HTTP API of any node (docs/cluster.md).  A
node with an open stream for tenant T says so in the sorted set
C{bipgw:streams} (member C{T<newline>NODE}, scored with its expiry, renewed
every L{REFRESH_EVERY} seconds) and listens on the channel
C{bipgw:events:T}; every node reads that set as often, and publishes the
events of T's sessions on that channel only while another node listens
for T.  So a stream sees another node's events from at most
L{REFRESH_EVERY} seconds after it opened, and a node that stopped (or
died) stops being sent events within L{INTEREST_TTL} seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.core import RateLimitedLog

__all__ = ["INTEREST_TTL", "REFRESH_EVERY", "ClusterEventFeed"]

REFRESH_EVERY: Final = 1.0
"""Seconds between two renewals of this node's interests and reads of the others'."""
INTEREST_TTL: Final = 5.0
"""Seconds a node's interest in a tenant's events lives unless renewed."""

STREAMS: Final = f"{PREFIX}streams"

# ARGV: ttl (ms), then this node's members; returns every live member.
_REFRESH: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def _channel(tenant_id: str) -> str:
    return f"events:{tenant_id}"


class ClusterEventFeed:
    """The web's L{bipgw.web.IEventFeed} on Redis (module docstring).

    @param redis: this node's Redis connections.
    @param node: this node's name.
    """

    _log = Logger()

    def __init__(self, redis: ClusterRedis, node: str, clock: IReactorTime) -> None:
        self._redis = redis
        self.node = node
        self._followers: dict[str, list[Callable[[dict[str, Any]], object]]] = {}
        self._subscribed: set[str] = set()
        self.wanted: frozenset[str] = frozenset()  # tenants another node listens for
        self._refreshing = LoopingCall(self.refresh)
        self._refreshing.clock = clock
        self._ratelog = RateLimitedLog(self._log, clock)

    def start(self) -> None:
        """Renew and read the interests from now on."""
        if not self._refreshing.running:
            self._refreshing.start(REFRESH_EVERY, now=True)

    def stop(self) -> None:
        """Stop (this node's interests expire by themselves)."""
        if self._refreshing.running:
            self._refreshing.stop()

    def follow(
        self, tenant_id: str, deliver: Callable[[dict[str, Any]], object]
    ) -> Callable[[], None]:
        """Call C{deliver} with the other nodes' events of C{tenant_id}'s
        sessions (as L{bipgw.web.event_json} writes them) until the returned
        function is called."""
        followers = self._followers.setdefault(tenant_id, [])
        followers.append(deliver)
        if tenant_id not in self._subscribed:
            self._subscribed.add(tenant_id)
            self._redis.subscribe(_channel(tenant_id), lambda text: self._message(tenant_id, text))
        if self._refreshing.running:
            self.refresh()

        def stop() -> None:
            if deliver in followers:
                followers.remove(deliver)
            if not followers and self._followers.get(tenant_id) is followers:
                del self._followers[tenant_id]

        return stop

    def wants(self, tenant_id: str) -> bool:
        """Whether another node listens for C{tenant_id}'s events (as last read)."""
        return tenant_id in self.wanted

    def publish(self, tenant_id: str, event: dict[str, Any]) -> None:
        """Send C{event} of a session of C{tenant_id} to the nodes listening for it."""
        if tenant_id not in self.wanted:
            return
        message = json.dumps({"from": self.node, "event": event}, separators=(",", ":"))
        self._redis.publish(_channel(tenant_id), message).addErrback(
            lambda f: self._ratelog.warn(
                "events-not-sent", "session events not sent: {why}", why=f.getErrorMessage()
            )
        )

    def refresh(self) -> Deferred[Any]:
        """Renew this node's interests; read which tenants other nodes listen for."""
        mine = [f"{tenant}\n{self.node}" for tenant in self._followers]
        d = self._redis.script(_REFRESH, [STREAMS], [int(INTEREST_TTL * 1000), *mine])

        def read(members: Any) -> None:
            wanted = set()
            for raw in members or ():
                member = raw.decode() if isinstance(raw, bytes) else str(raw)
                tenant, _, node = member.rpartition("\n")
                if node != self.node:
                    wanted.add(tenant)
            self.wanted = frozenset(wanted)

        d.addCallback(read)
        d.addErrback(
            lambda f: self._ratelog.warn(
                "events-refresh", "event stream interests not read: {why}", why=f.getErrorMessage()
            )
        )
        return d

    def _message(self, tenant_id: str, text: str) -> None:
        try:
            message = json.loads(text)
            origin, event = message["from"], message["event"]
            if not isinstance(event, dict) or not isinstance(event.get("session"), str):
                raise ValueError("no event")
            if not isinstance(event.get("seq"), int):
                raise ValueError("no sequence number")
        except (ValueError, KeyError, TypeError):
            self._ratelog.warn("events-malformed", "malformed session event dropped")
            return
        if origin == self.node:
            return
        for deliver in list(self._followers.get(tenant_id, ())):
            try:
                deliver(event)
            except Exception:
                self._log.failure("delivering another node's session event failed")
