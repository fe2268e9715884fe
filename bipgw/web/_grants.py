# -*- test-case-name: tests.unit.web.test_grants -*-
"""The HTTP API's short-lived memory of the grants its bearer tokens were given.

A platform calling the HTTP API sends its token with every request, and
the tenant directory of a real install (L{bipgw.store.StoreTenantDirectory})
reads the token's index row, the tenant's settings, the tenant and its
services for each: four store reads per request, most of an C{open}'s CPU.
L{GrantCache} remembers each grant for C{[http_api] grant_cache_seconds}
after it was read, so that is how long a change to a tenant or its
services (disabled, a service revoked or changed, a token replaced) can
take to reach the HTTP API; C{0} reads the directory on every request.

Only grants are remembered, never refusals (an unknown token cannot fill
the memory, and a tenant enabled again is served at once); entries are
keyed by an HMAC of the token under a key of this process, so the tokens
themselves are not kept; there are at most C{max_entries}.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from twisted.internet.interfaces import IReactorTime

from bipgw.core import TenantGrant

__all__ = ["GrantCache"]

MAX_ENTRIES: Final = 4096


class GrantCache:
    """Grants by token, each for C{seconds} after it was read (module docstring).

    @param clock: the time of the reads (the reactor).
    @param seconds: how long a grant is used without asking the directory
        again; C{0}: never remembered.
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

    def __len__(self) -> int:
        return len(self._grants)

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def get(self, token: str) -> TenantGrant | None:
        """The grant read for C{token} less than C{seconds} ago, else C{None}."""
        if not self.seconds or not self._grants:
            return None
        key = self._digest(token)
        entry = self._grants.get(key)
        if entry is None:
            return None
        if self._clock.seconds() >= entry[0]:
            del self._grants[key]
            return None
        return entry[1]

    def put(self, token: str, grant: TenantGrant) -> None:
        """Remember C{grant}, just read from the directory for C{token}."""
        if not self.seconds:
            return
        now = self._clock.seconds()
        if len(self._grants) >= self._max:
            self._grants = {k: v for k, v in self._grants.items() if v[0] > now}
            if len(self._grants) >= self._max:
                self._grants.clear()
        self._grants[self._digest(token)] = (now + self.seconds, grant)
