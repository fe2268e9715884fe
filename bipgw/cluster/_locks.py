# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""The one-session-per-card rule across the cluster: a lock per card in Redis.

Card C{ICCID}'s lock is the key C{bipgw:card:ICCID}, holding the name of
the node whose session has the card, with an expiry (L{LOCK_TTL}).  It is
taken with a Lua script (atomic: set if absent, or renewed if this node
holds it already), released with another (deleted only if this node still
holds it), and the node renews every lock it holds every L{RENEW_EVERY}
seconds, so a node that dies (C{kill -9}) lets its cards go within
L{LOCK_TTL} seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.cluster._renewal import Renewal

__all__ = ["LOCK_TTL", "RENEW_EVERY", "RedisCardLocks"]

LOCK_TTL: Final = 10.0
"""Seconds a card lock lives unless its node renews it."""
RENEW_EVERY: Final = 3.0
"""Seconds between two renewals of a node's locks."""

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""


def card_key(iccid: str) -> str:
    """The Redis key of card C{iccid}'s lock."""
    return f"{PREFIX}card:{iccid}"


class RedisCardLocks:
    """An L{bipgw.core.ICardLocks} shared by the nodes through Redis.

    @param redis: the node's Redis connections.
    @param node: this node's name (what its locks hold).
    @param clock: times the renewals.
    @param ttl: seconds a lock lives unless renewed.
    @param renew_every: seconds between two renewals.
    @ivar renewal: the cards held, renewed together (L{Renewal}).
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        clock: IReactorTime,
        *,
        ttl: float = LOCK_TTL,
        renew_every: float = RENEW_EVERY,
    ) -> None:
        self._ttl = int(ttl * 1000)
        self._redis = redis
        self.node = node
        self.renewal: Renewal[None] = Renewal(
            clock, self._renew, every=renew_every, ttl=ttl, what="card locks"
        )
        self.renewal.on_lost = self._lost

    @property
    def held(self) -> frozenset[str]:
        """The cards this node holds."""
        return frozenset(self.renewal.held)

    def acquire(self, iccid: str) -> Deferred[bool]:
        """See L{bipgw.core.ICardLocks.acquire}."""
        d = self._redis.script(_ACQUIRE, [card_key(iccid)], [self.node, self._ttl])

        def taken(result: Any) -> bool:
            granted = int(result) == 1
            if granted:
                self.renewal.add(iccid, None)
            return granted

        return d.addCallback(taken)

    def release(self, iccid: str) -> None:
        """See L{bipgw.core.ICardLocks.release}; a failure is logged (the lock
        then expires by itself)."""
        self.renewal.discard(iccid)
        d = self._redis.script(_RELEASE, [card_key(iccid)], [self.node])
        d.addErrback(
            lambda f: self._log.warn(
                "card {iccid} not released ({why}); it frees itself in {ttl:g} s",
                iccid=iccid,
                why=f.getErrorMessage(),
                ttl=self._ttl / 1000,
            )
        )

    def renew(self) -> Deferred[None]:
        """Renew every lock this node holds now; forget those it lost (expired
        while Redis was unreachable, and taken by another node)."""
        return self.renewal.renew()

    def _renew(self, held: list[tuple[str, None]]) -> Deferred[Iterable[str] | None]:
        cards = [iccid for iccid, _ in held]
        d = self._redis.script(_RENEW, [card_key(i) for i in cards], [self.node, self._ttl])
        return d.addCallback(lambda lost: [cards[int(i) - 1] for i in lost or ()])

    def _lost(self, iccid: str, _: None) -> None:
        self._log.warn("card {iccid}'s lock was lost (expired)", iccid=iccid)

    def start(self) -> None:
        """Renew the held locks every L{RENEW_EVERY} seconds from now on."""
        self.renewal.start()

    def stop(self) -> Deferred[None]:
        """Stop renewing and release every lock held (a clean shutdown)."""
        self.renewal.stop()
        for iccid in sorted(self.renewal.held):
            self.release(iccid)
        return succeed(None)
