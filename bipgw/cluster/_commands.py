# -*- test-case-name: tests.integration.test_cluster_forwarding -*-
"""Command limits counted over every node: commands in flight and each service's rate.

A tenant's commands in flight are the members of the sorted set
C{bipgw:cmds:T}, each scored with its expiry (Redis server time, ms); a
service's rate for a tenant is a token bucket in the hash
C{bipgw:rate:T:SERVICE} (C{tokens}, C{stamp}), refilled at the service's
C{rate} per second up to C{max(1, rate)} on Redis's clock, as the node's
own L{bipgw.core.CommandRates} does.  One Lua script drops the expired
members, checks the tenant's C{max_commands}, refills the bucket and
spends a token, and adds the command, at once: commands sent through
several nodes at the same moment cannot exceed either limit.  The node
renews its commands' members every few seconds, so a dead node's commands
stop counting within L{COMMAND_TTL} seconds; a bucket left alone expires
once it would be full again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.cluster._renewal import Renewal
from bipgw.codec.platform import ErrorCode
from bipgw.core import RateLimitedLog, ServiceGrant, TenantGrant

__all__ = ["COMMAND_TTL", "RedisCommandLimits"]

COMMAND_TTL: Final = 10.0
"""Seconds a command's count lives unless its node renews it."""

# KEYS: the tenant's commands in flight, the service's bucket.
# ARGV: token, max_commands, rate (0: none), ttl (ms).
# Returns {0, 0} admitted, {1, 0} max_commands, {2, wait in ms} rate.
_ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {1, 0} end
local rate = tonumber(ARGV[3])
if rate > 0 then
  local burst = math.max(1, rate)
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'stamp')
  local tokens = tonumber(b[1]) or burst
  local stamp = tonumber(b[2]) or now
  local elapsed = math.max(0, now - stamp) / 1000
  tokens = math.min(burst, tokens + elapsed * rate)
  local keep = math.ceil(burst / rate * 1000) + 1000
  if tokens < 1 - 1e-9 then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'stamp', now)
    redis.call('PEXPIRE', KEYS[2], keep)
    return {2, math.ceil((1 - tokens) / rate * 1000)}
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(math.max(0, tokens - 1)), 'stamp', now)
  redis.call('PEXPIRE', KEYS[2], keep)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {0, 0}
"""

_RENEW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return 1
"""


def commands_key(tenant_id: str) -> str:
    """The sorted set of a tenant's commands in flight over the cluster."""
    return f"{PREFIX}cmds:{tenant_id}"


def rate_key(tenant_id: str, service: str) -> str:
    """The token bucket of a tenant's commands to one service."""
    return f"{PREFIX}rate:{tenant_id}:{service}"


class RedisCommandLimits:
    """The core's L{bipgw.core.ISharedCommands} on Redis (module docstring).

    @param redis: this node's Redis connections.
    @param clock: times the renewals.
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        clock: IReactorTime,
        *,
        ttl: float = COMMAND_TTL,
        renew_every: float = 3.0,
    ) -> None:
        self._redis = redis
        self._ttl = int(ttl * 1000)
        # token -> the tenant's sorted set
        self.renewal: Renewal[str] = Renewal(
            clock, self._renew, every=renew_every, ttl=ttl, what="command counts"
        )
        self._ratelog = RateLimitedLog(self._log, clock)

    @property
    def held(self) -> int:
        """Commands in flight this node counts now."""
        return len(self.renewal)

    def admit(
        self, tenant: TenantGrant, service: ServiceGrant
    ) -> Deferred[tuple[str | None, str | None, str | None]]:
        """See L{bipgw.core.ISharedCommands.admit}."""
        token = secrets.token_hex(8)
        tid = tenant.tenant_id
        keys = [commands_key(tid), rate_key(tid, service.name)]
        rate = service.rate or 0
        d = self._redis.script(_ADMIT, keys, [token, tenant.max_commands, rate, self._ttl])

        def decided(result: Any) -> tuple[str | None, str | None, str | None]:
            code, wait = (int(v) for v in result)
            if code == 0:
                self.renewal.add(token, keys[0])
                return token, None, None
            if code == 1:
                return (
                    None,
                    ErrorCode.LIMIT_REACHED,
                    f"tenant {tid} already has {tenant.max_commands} commands in flight"
                    " over the cluster's nodes (its limit)",
                )
            return (
                None,
                ErrorCode.RATE_LIMITED,
                f"service {service.name} allows {rate:g} commands per second over the"
                f" cluster's nodes (its rate); the next one in {wait / 1000:.3g} s",
            )

        return d.addCallback(decided)

    def done(self, token: str) -> None:
        """See L{bipgw.core.ISharedCommands.done}."""
        key = self.renewal.discard(token)
        if key is None:
            return
        self._redis.call("ZREM", key, token).addErrback(
            lambda f: self._ratelog.warn(
                "command-count",
                "a command's count not released ({why}); it expires by itself",
                why=f.getErrorMessage(),
            )
        )

    def renew(self) -> Deferred[None]:
        """Renew the counts of this node's commands in flight now."""
        return self.renewal.renew()

    def _renew(self, held: list[tuple[str, str]]) -> Deferred[Iterable[str] | None]:
        tokens = [token for token, _ in held]
        keys = [key for _, key in held]
        return self._redis.script(_RENEW, keys, [self._ttl, *tokens]).addCallback(lambda _: None)

    def start(self) -> None:
        """Renew every few seconds from now on."""
        self.renewal.start()

    def stop(self) -> None:
        """Stop renewing (the counts expire by themselves)."""
        self.renewal.stop()
