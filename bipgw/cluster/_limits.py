# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""Tenant session limits counted over every node: sorted sets in Redis.

A tenant's open sessions are the members of C{bipgw:limit:T} (and of
C{bipgw:limit:T:SERVICE} for the service's own limit), each scored with its
expiry time (Redis server time, milliseconds).  A Lua script drops the
expired members, checks both counts against the tenant's C{max_sessions}
and the service grant's, and adds the new session's token to both, at
once: two nodes opening a tenant's last allowed session at the same
moment cannot both succeed.  The node renews its tokens every few seconds
(like its card locks), so the sessions of a node that died stop counting
within L{TOKEN_TTL} seconds.
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
from bipgw.core import ServiceGrant, TenantGrant

__all__ = ["TOKEN_TTL", "RedisTenantLimits"]

TOKEN_TTL: Final = 10.0
"""Seconds a session's count lives unless its node renews it."""

_RESERVE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if tonumber(ARGV[3]) > 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return 2
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 0
"""

_RENEW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS, 2 do
  local token = ARGV[(i + 1) / 2 + 1]
  redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[1]), token)
  redis.call('ZADD', KEYS[i + 1], 'XX', now + tonumber(ARGV[1]), token)
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
end
return 1
"""


def _keys(tenant_id: str, service: str) -> list[str]:
    return [f"{PREFIX}limit:{tenant_id}", f"{PREFIX}limit:{tenant_id}:{service}"]


class RedisTenantLimits:
    """The core's L{bipgw.core.ISharedLimits} on Redis (module docstring).

    @param redis: this node's Redis connections.
    @param clock: times the renewals.
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        clock: IReactorTime,
        *,
        ttl: float = TOKEN_TTL,
        renew_every: float = 3.0,
    ) -> None:
        self._redis = redis
        self._ttl = int(ttl * 1000)
        # token -> the tenant's and the service's sorted sets
        self.renewal: Renewal[list[str]] = Renewal(
            clock, self._renew, every=renew_every, ttl=ttl, what="session counts"
        )

    @property
    def held(self) -> int:
        """Sessions this node counts now."""
        return len(self.renewal)

    def reserve(
        self, tenant: TenantGrant, service: ServiceGrant
    ) -> Deferred[tuple[str | None, str | None]]:
        """See L{bipgw.core.ISharedLimits.reserve}."""
        token = secrets.token_hex(8)
        keys = _keys(tenant.tenant_id, service.name)
        limit = service.max_sessions or 0
        d = self._redis.script(_RESERVE, keys, [token, tenant.max_sessions, limit, self._ttl])

        def decided(result: Any) -> tuple[str | None, str | None]:
            code = int(result)
            if code == 0:
                self.renewal.add(token, keys)
                return token, None
            if code == 1:
                return None, (
                    f"tenant {tenant.tenant_id} already has {tenant.max_sessions} sessions open"
                    " over the cluster's nodes (its limit)"
                )
            return None, (
                f"service {service.name} already has {limit} sessions open over the"
                " cluster's nodes (its limit)"
            )

        return d.addCallback(decided)

    def release(self, token: str) -> None:
        """See L{bipgw.core.ISharedLimits.release}."""
        keys = self.renewal.discard(token)
        if keys is None:
            return
        d = self._redis.call("ZREM", keys[0], token)
        d.addCallback(lambda _: self._redis.call("ZREM", keys[1], token))
        d.addErrback(
            lambda f: self._log.warn(
                "a session's count not released ({why}); it expires by itself",
                why=f.getErrorMessage(),
            )
        )

    def renew(self) -> Deferred[None]:
        """Renew the counts of this node's sessions now."""
        return self.renewal.renew()

    def _renew(self, held: list[tuple[str, list[str]]]) -> Deferred[Iterable[str] | None]:
        tokens = [token for token, _ in held]
        keys = [k for _, pair in held for k in pair]
        return self._redis.script(_RENEW, keys, [self._ttl, *tokens]).addCallback(lambda _: None)

    def start(self) -> None:
        """Renew every few seconds from now on."""
        self.renewal.start()

    def stop(self) -> None:
        """Stop renewing (the counts expire by themselves)."""
        self.renewal.stop()
