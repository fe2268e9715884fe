# -*- test-case-name: tests.unit.cluster.test_renewal -*-
"""What a node holds in Redis under an expiry, and renews together every few seconds.

Card locks (C{_locks}), the tenants' session counts (C{_limits}), their
commands in flight (C{_commands}) and campaign leases (C{_campaign_lease})
are each a set of members that expire in Redis unless their node renews
them: a node killed with C{kill -9} lets them all go within their TTL.
Each of those holders composes one L{Renewal}: the members it holds (with
what it needs to renew each), one timer, one call a round, the members the
call found lost forgotten (and handed to the holder), and one warning per
outage of Redis rather than one per round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["Renewal"]

V = TypeVar("V")

Renew = Callable[[list[tuple[str, V]]], "Deferred[Iterable[str] | None]"]
"""Renews the members given (with their values) in one call; fires with
those it found lost (expired, or another node's now), or C{None}."""


class Renewal(Generic[V]):
    """A set of members held in Redis, renewed every C{every} seconds.

    @param clock: times the rounds.
    @param renew: renews the members held, in one call (L{Renew}).
    @param every: seconds between two rounds.
    @param ttl: seconds a member lives in Redis unless renewed (must exceed C{every}).
    @param what: what the members are, in words, for the logs (C{"card locks"}).
    @ivar on_lost: called with each member a round found lost and its value,
        once it is forgotten.
    @ivar failures: rounds that failed (Redis unreachable) since the start.
    """

    _log = Logger()

    def __init__(
        self, clock: IReactorTime, renew: Renew[V], *, every: float, ttl: float, what: str
    ) -> None:
        if not 0 < every < ttl:
            raise ValueError(f"renew_every ({every}) must be between 0 and ttl ({ttl})")
        self.every = every
        self.ttl = ttl
        self.what = what
        self._renew = renew
        self._held: dict[str, V] = {}
        self._view = MappingProxyType(self._held)
        self._loop = LoopingCall(self.renew)
        self._loop.clock = clock
        self._down = False
        self.failures = 0
        self.on_lost: Callable[[str, V], object] | None = None

    @property
    def held(self) -> Mapping[str, V]:
        """The members held now and their values (a read-only view)."""
        return self._view

    @property
    def running(self) -> bool:
        """Whether the rounds run."""
        return bool(self._loop.running)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, member: object) -> bool:
        return member in self._held

    def add(self, member: str, value: V) -> None:
        """Hold C{member} (renewed from the next round on)."""
        self._held[member] = value

    def discard(self, member: str) -> V | None:
        """Stop holding C{member}; its value, or C{None} if it was not held."""
        return self._held.pop(member, None)

    def renew(self) -> Deferred[None]:
        """One round now: renew every member held; forget (and hand to
        L{on_lost}) those found lost.  Never fails: a failed round is
        logged, once per outage."""
        if not self._held:
            return succeed(None)
        items = sorted(self._held.items())
        d = self._renew(items)

        def renewed(lost: Iterable[str] | None) -> None:
            if self._down:
                self._log.info("{what} renewed again", what=self.what)
            self._down = False
            for member in lost or ():
                if member not in self._held:
                    continue  # released meanwhile
                value = self._held.pop(member)
                if self.on_lost is not None:
                    self.on_lost(member, value)

        def failed(failure: Failure) -> None:
            self.failures += 1
            if not self._down:
                self._log.warn(
                    "renewing {what} failed: {why} (they expire in {ttl:g} s unless renewed)",
                    what=self.what,
                    why=failure.getErrorMessage() or type(failure.value).__name__,
                    ttl=self.ttl,
                )
            self._down = True

        return d.addCallbacks(renewed, failed)

    def start(self) -> None:
        """Renew every C{every} seconds from now on (the first round in C{every} s)."""
        if not self._loop.running:
            self._loop.start(self.every, now=False)

    def stop(self) -> None:
        """Stop renewing (what is held expires in Redis by itself)."""
        if self._loop.running:
            self._loop.stop()
