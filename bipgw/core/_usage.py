# -*- test-case-name: tests.unit.core.test_tenancy -*-
"""How much each tenant uses the front doors: what it has open, how fast it sends.

L{TenantUsage} counts what every tenant has open, across all its
connections and both doors, so that a limit holds however many connections
it opens; L{CommandRates} meters how fast it sends commands to each
service, likewise.  In a cluster the same limits are counted over every
node as well (L{bipgw.core.ISharedLimits}, L{bipgw.core.ISharedCommands}).
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs
from twisted.internet.interfaces import IReactorTime

from bipgw.core._grants import ServiceGrant, TenantGrant

__all__ = ["CommandRates", "TenantUsage"]


class TenantUsage:
    """What each tenant has open now, over all its connections.

    The channel reserves before it acts and releases exactly once when the
    thing ends, so the counts never drift; L{check_open} and
    L{check_command} say why a limit refuses, in words for the platform.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, int] = {}
        self._by_service: dict[tuple[str, str], int] = {}
        self._commands: dict[str, int] = {}

    def sessions(self, tenant_id: str, service: str | None = None) -> int:
        """Sessions open now, for the tenant or one of its services."""
        if service is None:
            return self._sessions.get(tenant_id, 0)
        return self._by_service.get((tenant_id, service), 0)

    def commands(self, tenant_id: str) -> int:
        """Commands in flight now for the tenant."""
        return self._commands.get(tenant_id, 0)

    def check_open(self, tenant: TenantGrant, service: ServiceGrant) -> str | None:
        """Why one more session of C{service} is refused, or C{None} if allowed."""
        tid = tenant.tenant_id
        if self.sessions(tid) >= tenant.max_sessions:
            return f"tenant {tid} already has {tenant.max_sessions} sessions open (its limit)"
        limit = service.max_sessions
        if limit is not None and self.sessions(tid, service.name) >= limit:
            return f"service {service.name} already has {limit} sessions open (its limit)"
        return None

    def opened(self, tenant_id: str, service: str) -> None:
        """Count one more session."""
        self._sessions[tenant_id] = self.sessions(tenant_id) + 1
        key = (tenant_id, service)
        self._by_service[key] = self._by_service.get(key, 0) + 1

    def ended(self, tenant_id: str, service: str) -> None:
        """Count one session less."""
        _decrement(self._sessions, tenant_id)
        _decrement(self._by_service, (tenant_id, service))

    def check_command(self, tenant: TenantGrant) -> str | None:
        """Why one more command in flight is refused, or C{None} if allowed."""
        if self.commands(tenant.tenant_id) >= tenant.max_commands:
            return (
                f"tenant {tenant.tenant_id} already has {tenant.max_commands} commands"
                " in flight (its limit)"
            )
        return None

    def command_sent(self, tenant_id: str) -> None:
        """Count one more command in flight."""
        self._commands[tenant_id] = self.commands(tenant_id) + 1

    def command_done(self, tenant_id: str) -> None:
        """Count one command in flight less."""
        _decrement(self._commands, tenant_id)


def _decrement(counts: dict[Any, int], key: object) -> None:
    left = counts.get(key, 0) - 1
    if left < 0:
        raise RuntimeError(f"usage of {key!r} released more often than reserved")
    if left:
        counts[key] = left
    else:
        del counts[key]


_SLACK: Final = 1e-9
"""Tokens a bucket may lack and still pay: refills are sums of float products."""


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


class CommandRates:
    """How fast each tenant sends commands to each of its services: token buckets.

    A service granted a C{rate} of R commands per second gets, per tenant, a
    bucket of C{max(1, R)} tokens, full at first; each command takes one,
    and tokens flow back at R per second.  So a platform may send a burst
    of C{max(1, R)} commands at once and R per second on average, and a
    service slower than one per second still gets its one command.  A
    command that finds no token is refused (L{take} says why) rather than
    queued: a queue would hide the limit from the platform, delay commands
    behind its back and grow without bound.

    One instance lives in the L{bipgw.core.Tenancy} both front doors share,
    so a bucket is shared by all the tenant's connections and the HTTP API.  There is a
    bucket per (tenant, granted service), so memory is bounded by the
    grants.  Time comes from the injected clock only (the reactor in the
    gateway, a L{twisted.internet.task.Clock} in tests); it never schedules
    anything, so it leaves no timer behind.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def available(self, tenant_id: str, service: ServiceGrant) -> float:
        """The tokens the tenant's bucket for C{service} holds now (C{inf} if unlimited)."""
        if service.rate is None:
            return math.inf
        return self._refilled(tenant_id, service, service.rate).tokens

    def take(self, tenant_id: str, service: ServiceGrant) -> str | None:
        """Spend a token on one command of C{service}: why not, or C{None} once spent.

        Nothing is spent when the command is refused, so a platform that
        retries too early only waits, never falls further behind.
        """
        rate = service.rate
        if rate is None:
            return None
        bucket = self._refilled(tenant_id, service, rate)
        self._buckets[(tenant_id, service.name)] = bucket
        if bucket.tokens < 1 - _SLACK:
            wait = (1 - bucket.tokens) / rate
            return (
                f"service {service.name} allows {rate:g} commands per second (its rate);"
                f" the next one in {wait:.3g} s"
            )
        bucket.tokens = max(0.0, bucket.tokens - 1)
        return None

    def _refilled(self, tenant_id: str, service: ServiceGrant, rate: float) -> _Bucket:
        now = self._clock.seconds()
        burst = max(1.0, rate)
        bucket = self._buckets.get((tenant_id, service.name))
        if bucket is None:
            return _Bucket(burst, now)
        # A clock set back refills nothing; a rate changed in a new grant
        # applies at once, its burst capping what the old one saved.
        elapsed = max(0.0, now - bucket.stamp)
        return _Bucket(min(burst, bucket.tokens + elapsed * rate), now)
