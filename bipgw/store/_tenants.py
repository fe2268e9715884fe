# -*- test-case-name: tests.unit.store.test_tenants,tests.unit.cli.test_tenants -*-
"""Tenants from the application store: the L{bipgw.core.ITenantDirectory} of a real install.

The operator manages tenants and their services with C{bipgw tenant ...} and
C{bipgw service ...} (L{bipgw.cli._tenants}); this module is what both that
command and the gateway agree on about how they are kept in the store:

  - a tenant is a L{bipgw.store.Tenant} (its id is the name the operator
    chose; C{enabled=False} refuses it everywhere);
  - each service it may use is a L{bipgw.store.Service} with id
    C{<tenant>/<service>}, C{name} the gateway service (C{[services.NAME]})
    and C{settings} holding C{aids}/C{tars} (hex, space separated),
    C{max_sessions} and C{rate};
  - what the store's tenant row has no column for (the API token, the
    certificate CN, the tenant's limits) is kept in one reserved, disabled
    service row C{<tenant>/~tenant} (L{TENANT_SETTINGS}).

An API token is never stored: only a random salt and its scrypt digest, so
a copy of the database does not let anyone call the API, and an index
(a fast keyed digest, L{bipgw.store._token_index}) that finds the one
tenant whose digest to check, so an unknown token costs one indexed read
and no scrypt; tokens already checked are remembered in memory, keyed by
an HMAC under a key that lives only in this process.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from bipgw.core import ServiceGrant, TenantGrant, parse_isd_commands
from bipgw.store._interfaces import IStore
from bipgw.store._token_index import (
    index_row_id,
    indexed,
    is_index_row,
    token_index,
    write_index,
)
from bipgw.store._types import Service, Tenant

TENANT_SETTINGS: Final = "~tenant"
"""The service-id suffix of the row holding a tenant's credentials and limits."""
SCRYPT_N: Final = 2**14
"""scrypt cost (CPU/memory): 16 MiB and some tens of milliseconds per check."""
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SALT: Final = 16
_DIGEST: Final = 32
_MAX_TOKEN: Final = 512


@attrs.frozen(repr=False)
class TokenDigest:
    """A token as it is stored: scrypt parameters, salt and digest, never the token.

    @ivar salt: random bytes, different for every token.
    @ivar digest: C{scrypt(token, salt, n, r, p)}.
    """

    salt: bytes
    digest: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def of(cls, token: str, *, n: int = SCRYPT_N, salt: bytes | None = None) -> TokenDigest:
        """Hash C{token} with a fresh random salt (or C{salt})."""
        salt = os.urandom(_SALT) if salt is None else salt
        return cls(salt, _scrypt(token, salt, n, SCRYPT_R, SCRYPT_P), n)

    def matches(self, token: str) -> bool:
        """Whether C{token} is the one this digest was made from (constant time)."""
        if not token or len(token) > _MAX_TOKEN:
            return False
        return hmac.compare_digest(_scrypt(token, self.salt, self.n, self.r, self.p), self.digest)

    def settings(self) -> dict[str, str | int]:
        """The digest as store settings (JSON scalars)."""
        return {
            "token_scheme": "scrypt",
            "token_n": self.n,
            "token_r": self.r,
            "token_p": self.p,
            "token_salt": self.salt.hex(),
            "token_digest": self.digest.hex(),
        }

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> TokenDigest | None:
        """The digest kept in C{settings}, or C{None} if there is none (or it is unreadable)."""
        if settings.get("token_scheme") != "scrypt":
            return None
        try:
            n, r, p = (int(str(settings[k])) for k in ("token_n", "token_r", "token_p"))
            salt = bytes.fromhex(str(settings["token_salt"]))
            digest = bytes.fromhex(str(settings["token_digest"]))
        except (KeyError, ValueError):
            return None
        return cls(salt, digest, n, r, p)

    def __repr__(self) -> str:
        return f"<TokenDigest scrypt n={self.n}>"


def _scrypt(token: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        token.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=_DIGEST
    )


def new_token() -> str:
    """A fresh API token: 256 random bits, URL-safe, with a recognisable prefix."""
    return "bgw_" + secrets.token_urlsafe(32)


def settings_id(tenant_id: str) -> str:
    """The id of the service row holding the tenant's credentials and limits."""
    return f"{tenant_id}/{TENANT_SETTINGS}"


def service_id(tenant_id: str, service: str) -> str:
    """The store id of the tenant's grant of gateway service C{service}."""
    return f"{tenant_id}/{service}"


def is_settings_row(service: Service) -> bool:
    """Whether a store service row is a tenant's reserved settings row."""
    return service.service_id == settings_id(service.tenant_id)


def is_reserved_row(service: Service) -> bool:
    """Whether a store service row is no grant: a settings or token index row."""
    return is_settings_row(service) or is_index_row(service)


def in_threads(reactor: Any) -> Callable[[Callable[[], Any]], Deferred[Any]]:
    """A C{run_slow} for L{StoreTenantDirectory}: checks in C{reactor}'s thread pool."""

    def run(check: Callable[[], Any]) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), check)

    return run


def hex_set(value: object) -> frozenset[bytes]:
    """Space-separated hex values (C{"A000000087 B00010"}) as a set of bytes."""
    if not isinstance(value, str):
        return frozenset()
    return frozenset(bytes.fromhex(v) for v in value.split())


def _limit(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _rate(value: object) -> float | None:
    # Written by "bipgw service add --rate N" as a whole number; any other
    # positive, finite JSON number is taken as well, anything else is no limit
    # (as for max_sessions): a hand-edited row must not lock a tenant out.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 < value < math.inf else None


def isd_set(value: object) -> frozenset[int]:
    """Space-separated ISD command names (C{"get-status get-data"}) as instructions.

    A name that is not one (a hand-edited row) grants nothing: the grant
    fails closed, as the ISD manages the whole card.
    """
    if not isinstance(value, str):
        return frozenset()
    granted: set[int] = set()
    for name in value.split():
        try:
            granted |= parse_isd_commands([name])
        except ValueError:
            continue
    return frozenset(granted)


def service_grant(service: Service) -> ServiceGrant:
    """The channel's view of one store service row."""
    s = service.settings
    return ServiceGrant(
        service.name,
        allowed_aids=hex_set(s.get("aids")),
        allowed_tars=hex_set(s.get("tars")),
        isd_commands=isd_set(s.get("isd_commands")),
        max_sessions=_limit(s.get("max_sessions")),
        rate=_rate(s.get("rate")),
    )


class StoreTenantDirectory:
    """An L{ITenantDirectory} over an L{IStore} (see the module docstring).

    Each lookup reads the tenant and its services afresh, so a disabled
    tenant or a changed service applies from the next connection (or the
    next HTTP request).

    A token is found through its index (L{bipgw.store._token_index}): an
    unknown token costs one read by primary key and no scrypt.  The scrypt
    digest of the tenant the index names is checked once per token and
    process (then remembered under an HMAC keyed by a secret of this
    process).  Tenants whose token has no index yet (written by an older
    bipgw) are checked with scrypt for a token the index does not know,
    in C{run_slow} and at most C{max_slow} at a time (more: refused), and
    get their index the first time their token matches.

    @param default_max_sessions: the tenant's limit when its row sets none.
    @param default_max_commands: likewise for commands in flight.
    @param run_slow: runs a scrypt check, off the reactor in the gateway
        (L{in_threads}); inline when C{None} (tests, command line).
    @param max_slow: scrypt checks of unindexed tenants in progress at once.
    @param rescan: seconds between two scans for unindexed tenants.
    @param now: the clock of C{rescan} (monotonic seconds).
    """

    _log = Logger()

    def __init__(
        self,
        store: IStore,
        *,
        default_max_sessions: int = 100,
        default_max_commands: int = 100,
        run_slow: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
        max_slow: int = 4,
        rescan: float = 10.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_sessions = default_max_sessions
        self._max_commands = default_max_commands
        self._cache_key = os.urandom(32)
        self._known: dict[bytes, tuple[str, bytes]] = {}
        self._run_slow = run_slow or (lambda check: maybeDeferred(check))
        self._max_slow = max_slow
        self._slow = 0
        self._rescan = rescan
        self._now = now
        self._legacy: list[str] | None = None
        self._scanned = -math.inf
        self.slow_refused = 0

    def by_token(self, token: str) -> Deferred[TenantGrant | None]:
        """See L{ITenantDirectory.by_token}."""
        return Deferred.fromCoroutine(self._by_token(token))

    def by_certificate(self, common_name: str) -> Deferred[TenantGrant | None]:
        """See L{ITenantDirectory.by_certificate}."""
        return Deferred.fromCoroutine(self._by_certificate(common_name))

    def by_id(self, tenant_id: str) -> Deferred[TenantGrant | None]:
        """The current grant of tenant C{tenant_id} (C{None}: unknown or
        disabled): what a campaign runs under, read afresh."""

        async def find() -> TenantGrant | None:
            return await self._grant(tenant_id, await self._settings(tenant_id))

        return Deferred.fromCoroutine(find())

    async def _by_token(self, token: str) -> TenantGrant | None:
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
            return None
        index = token_index(token)
        row = await self._store.get_service(index_row_id(index))
        if row is not None and is_index_row(row):
            settings = await self._settings(row.tenant_id)
            if settings is None or not indexed(settings, index):
                return None  # the index of a token since replaced
            found = TokenDigest.from_settings(settings)
            if found is None or not await self._verified(token, row.tenant_id, found):
                return None
            return await self._grant(row.tenant_id, settings)
        return await self._unindexed(token)

    async def _verified(self, token: str, tenant_id: str, found: TokenDigest) -> bool:
        key = hmac.new(self._cache_key, token.encode("utf-8"), hashlib.sha256).digest()
        if self._known.get(key) == (tenant_id, found.digest):
            return True
        if not await self._run_slow(lambda: found.matches(token)):
            return False
        if len(self._known) >= 4096:
            self._known.clear()
        self._known[key] = (tenant_id, found.digest)
        return True

    async def _unindexed(self, token: str) -> TenantGrant | None:
        """Check C{token} against the tenants that have no index yet (usually none)."""
        if self._legacy is None or self._now() - self._scanned >= self._rescan:
            self._scanned = self._now()
            self._legacy = await self._scan_unindexed()
        if not self._legacy:
            return None
        if self._slow >= self._max_slow:
            self.slow_refused += 1
            return None
        candidates: list[tuple[str, TokenDigest]] = []
        for tenant_id in self._legacy:
            settings = await self._settings(tenant_id)
            found = TokenDigest.from_settings(settings) if settings is not None else None
            if found is not None and settings is not None and "token_index" not in settings:
                candidates.append((tenant_id, found))

        def check() -> int:
            return next((n for n, (_, d) in enumerate(candidates) if d.matches(token)), -1)

        self._slow += 1
        try:
            match = await self._run_slow(check)
        finally:
            self._slow -= 1
        if not 0 <= match < len(candidates):
            return None
        tenant_id = candidates[match][0]
        row = await self._store.get_service(settings_id(tenant_id))
        if row is None:
            return None
        await write_index(self._store, tenant_id, token, row)
        self._log.info("tenant {tenant}: token indexed", tenant=tenant_id)
        if self._legacy is not None and tenant_id in self._legacy:
            self._legacy.remove(tenant_id)
        return await self._grant(tenant_id, row.settings)
        return None

    async def _scan_unindexed(self) -> list[str]:
        unindexed = []
        for tenant in await self._store.list_tenants():
            if not tenant.enabled:
                continue
            settings = await self._settings(tenant.tenant_id)
            if (
                settings is not None
                and "token_index" not in settings
                and TokenDigest.from_settings(settings) is not None
            ):
                unindexed.append(tenant.tenant_id)
        if unindexed:
            self._log.warn(
                "{n} tenant(s) have a token without index (written by an older bipgw):"
                " each unknown token costs a scrypt check per such tenant until their"
                " platforms authenticate once: {tenants}",
                n=len(unindexed),
                tenants=", ".join(unindexed[:20]),
            )
        return unindexed

    async def _by_certificate(self, common_name: str) -> TenantGrant | None:
        for tenant in await self._store.list_tenants():
            if not tenant.enabled:
                continue
            settings = await self._settings(tenant.tenant_id)
            if settings is not None and settings.get("common_name") == common_name:
                return await self._grant(tenant.tenant_id, settings)
        return None

    async def _settings(self, tenant_id: str) -> Mapping[str, object] | None:
        row = await self._store.get_service(settings_id(tenant_id))
        return None if row is None else row.settings

    async def _grant(
        self, tenant_id: str, settings: Mapping[str, object] | None
    ) -> TenantGrant | None:
        tenant: Tenant | None = await self._store.get_tenant(tenant_id)
        if tenant is None or not tenant.enabled:
            return None
        rows = await self._store.list_services(tenant_id=tenant_id)
        grants = [service_grant(row) for row in rows if row.enabled and not is_reserved_row(row)]
        settings = settings or {}
        return TenantGrant(
            tenant_id,
            services=grants,
            max_sessions=_limit(settings.get("max_sessions")) or self._max_sessions,
            max_commands=_limit(settings.get("max_commands")) or self._max_commands,
        )
