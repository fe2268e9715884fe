# -*- test-case-name: tests.unit.web.test_grants -*-
"""The HTTP API's short-lived memory of the grants its bearer tokens were given.

A platform calling the HTTP API sends its token with every request, and
the tenant directory of a real install (L{bipgw.store.StoreTenantDirectory})
reads the token's index row, the tenant's settings, the tenant and its
services for each: four store reads per request, most of an C{open}'s CPU.
L{GrantCache} remembers each grant for C{[http_api] grant_cache_seconds}
from when its lookup began, so that is how long a change to a tenant or
its services (disabled, a service revoked or changed, a token replaced)
can take to reach the HTTP API; C{0} reads the directory on every request.

Only grants are remembered, never refusals (an unknown token cannot fill
the memory, and a tenant enabled again is served at once); entries are
keyed by an HMAC of the token under a key of this process, so the tokens
themselves are not kept; there are at most C{max_entries}.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Final

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from bipgw.core import TenantGrant

__all__ = ["GrantCache"]

MAX_ENTRIES: Final = 4096


class GrantCache:
    """Grants by token, each for C{seconds} after its read began (module docstring).

    Requests with the same token that arrive while its lookup is under way
    wait for that lookup instead of starting one each (a burst of requests
    on a cold cache would otherwise make one store lookup per request), as
    long as it began less than C{seconds} ago.

    @param clock: the time of the reads (the reactor).
    @param seconds: how long a grant is used without asking the directory
        again, counted from when the lookup began; C{0}: never remembered,
        every request asks.
    @param max_entries: tokens remembered at once; when full, expired
        entries are dropped, and if none is, all of them.
    """

    def __init__(self, clock: IReactorTime, seconds: float, *, max_entries: int = MAX_ENTRIES):
        if seconds < 0:
            raise ValueError(f"grant cache seconds must be >= 0, not {seconds!r}")
        self._clock = clock
        self.seconds = seconds
        self._max = max_entries
        self._key = os.urandom(32)
        self._grants: dict[bytes, tuple[float, TenantGrant]] = {}
        self._asking: dict[bytes, tuple[float, list[Deferred[TenantGrant | None]]]] = {}
        self.lookups = 0
        """Lookups made in the directory (for tests and the benches)."""

    def __len__(self) -> int:
        return len(self._grants)

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def lookup(
        self, token: str, ask: Callable[[str], Deferred[TenantGrant | None]]
    ) -> Deferred[TenantGrant | None]:
        """The grant of C{token}: remembered, being asked, or asked of C{ask} now.

        Fires with what C{ask} fired with (a refusal is not remembered), or
        fails as it failed.
        """
        if not self.seconds:
            self.lookups += 1
            return maybeDeferred(ask, token)
        now = self._clock.seconds()
        key = self._digest(token)
        entry = self._grants.get(key)
        if entry is not None:
            if now < entry[0]:
                return succeed(entry[1])
            del self._grants[key]
        asking = self._asking.get(key)
        if asking is not None and now < asking[0] + self.seconds:
            waiter: Deferred[TenantGrant | None] = Deferred()
            asking[1].append(waiter)
            return waiter
        waiters: list[Deferred[TenantGrant | None]] = []
        self._asking[key] = (now, waiters)
        self.lookups += 1
        answer = maybeDeferred(ask, token)

        def settle(result: object) -> object:
            if self._asking.get(key, (None, None))[1] is waiters:
                del self._asking[key]
            if isinstance(result, TenantGrant):
                self._put(key, now + self.seconds, result)
            for waiter in waiters:
                if not waiter.called:  # a cancelled request's waiter has fired
                    if isinstance(result, Failure):
                        waiter.errback(result)
                    else:
                        waiter.callback(result)  # type: ignore[arg-type]
            return result

        return answer.addBoth(settle)

    def _put(self, key: bytes, until: float, grant: TenantGrant) -> None:
        now = self._clock.seconds()
        if now >= until:
            return
        if len(self._grants) >= self._max:
            self._grants = {k: v for k, v in self._grants.items() if v[0] > now}
            if len(self._grants) >= self._max:
                self._grants.clear()
        self._grants[key] = (until, grant)
