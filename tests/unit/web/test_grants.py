"""Tests for the HTTP API's grant cache: C{[http_api] grant_cache_seconds}.

The API runs over the tenant directory of a real install
(L{bipgw.store.StoreTenantDirectory} over a L{bipgw.store.MemoryStore}),
whose reads are counted, on the test's clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import TenantGrant
from bipgw.store import (
    MemoryStore,
    StoreTenantDirectory,
    add_tenant,
    disable_tenant,
    grant_service,
    replace_token,
    service_id,
)
from bipgw.web import ApiSettings
from bipgw.web._grants import GrantCache
from tests.unit.web import SETTINGS, WebTestCase

STORE_TOKEN = "bgw_grant-cache-test-0123456789abcdef"


class _CountingStore(MemoryStore):
    """A memory store that counts the reads the tenant directory makes."""

    reads = 0

    def get_service(self, service_id: str) -> Any:
        self.reads += 1
        return super().get_service(service_id)

    def get_tenant(self, tenant_id: str) -> Any:
        self.reads += 1
        return super().get_tenant(tenant_id)

    def list_services(self, **kwargs: Any) -> Any:
        self.reads += 1
        return super().list_services(**kwargs)


class _StoreDirectoryCase(WebTestCase):
    """The API's tenant is in a store; the cache keeps its grant C{seconds}."""

    seconds = 5.0

    def setUp(self) -> None:
        self.settings = ApiSettings(
            max_body=SETTINGS.max_body,
            ready_wait=SETTINGS.ready_wait,
            keepalive=SETTINGS.keepalive,
            grant_cache_seconds=self.seconds,
        )
        super().setUp()
        self.store = store = _CountingStore()
        for step in (
            add_tenant(store, "acme", token=STORE_TOKEN, max_sessions=5),
            grant_service(store, "acme", "demo", isd_commands=["all"]),
        ):
            self.successResultOf(Deferred.fromCoroutine(step))
        self.hub.tenants = StoreTenantDirectory(store)
        store.reads = 0

    def status(self) -> int:
        """The HTTP status of an authenticated request (an unknown session: 404)."""
        return self.call("GET", "/v1/sessions/s404", token=STORE_TOKEN).status

    def change(self, step: Any) -> None:
        self.successResultOf(Deferred.fromCoroutine(step))


class CachedTests(_StoreDirectoryCase):
    """C{grant_cache_seconds = 5}: a grant read is used for 5 s, then read again."""

    def test_readsOncePerBound(self) -> None:
        """Requests within the bound read nothing from the store; the next one after it does."""
        self.assertEqual(self.status(), 404)
        first = self.store.reads
        self.assertEqual(first, 4)  # index row, settings, tenant, services
        for _ in range(10):
            self.assertEqual(self.status(), 404)
        self.assertEqual(self.store.reads, first)
        self.clock.advance(self.seconds)
        self.assertEqual(self.status(), 404)
        self.assertEqual(self.store.reads, 2 * first)

    def test_disabledTenantWithinBound(self) -> None:
        """A tenant disabled in the store is refused at most C{seconds} later."""
        self.assertEqual(self.status(), 404)
        self.change(disable_tenant(self.store, "acme"))
        self.clock.advance(self.seconds - 0.5)
        self.assertEqual(self.status(), 404)  # the documented staleness
        self.clock.advance(0.5)
        self.assertError(self.call("GET", "/v1/sessions/s1", token=STORE_TOKEN), 401, "auth-failed")

    def test_revokedServiceWithinBound(self) -> None:
        """A service removed from the tenant stops being opened at most C{seconds} later."""
        body = {"iccid": self.iccid(1), "service": "demo"}
        self.assertEqual(self.call("POST", "/v1/sessions", body, token=STORE_TOKEN).status, 201)
        self.successResultOf(self.store.delete_service(service_id("acme", "demo")))
        self.clock.advance(self.seconds)
        body = {"iccid": self.iccid(2), "service": "demo"}
        answer = self.call("POST", "/v1/sessions", body, token=STORE_TOKEN)
        self.assertEqual(answer.status // 100, 4, answer.body)
        self.assertEqual(len(self.fleet.pushes), 1)

    def test_replacedTokenWithinBound(self) -> None:
        """A replaced token is refused at most C{seconds} later; the new one at once."""
        self.assertEqual(self.status(), 404)
        new = "bgw_grant-cache-new-0123456789abcdef"
        self.change(replace_token(self.store, "acme", new))
        self.assertEqual(self.call("GET", "/v1/sessions/s404", token=new).status, 404)
        self.clock.advance(self.seconds)
        self.assertEqual(self.status(), 401)

    def test_refusalsNotKept(self) -> None:
        """An unknown token is asked of the directory every time, and not remembered."""
        for _ in range(3):
            self.assertEqual(self.call("GET", "/v1/sessions/s1", token="bgw_nobody-0").status, 401)
        self.assertEqual(len(self.api.grants), 0)
        reads = self.store.reads
        self.call("GET", "/v1/sessions/s1", token="bgw_nobody-0")
        self.assertGreater(self.store.reads, reads)


class UncachedTests(_StoreDirectoryCase):
    """C{grant_cache_seconds = 0}: every request reads the directory."""

    seconds = 0.0

    def test_everyRequestReads(self) -> None:
        """Each request reads the store; a disabled tenant is refused at once."""
        self.assertEqual(self.status(), 404)
        first = self.store.reads
        self.assertEqual(self.status(), 404)
        self.assertEqual(self.store.reads, 2 * first)
        self.change(disable_tenant(self.store, "acme"))
        self.assertEqual(self.status(), 401)
        self.assertEqual(len(self.api.grants), 0)


class GrantCacheTests(SynchronousTestCase):
    """The cache alone, over a directory the test answers by hand."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.asked: list[tuple[str, Deferred[TenantGrant | None]]] = []

    def ask(self, token: str) -> Deferred[TenantGrant | None]:
        d: Deferred[TenantGrant | None] = Deferred()
        self.asked.append((token, d))
        return d

    def answered(self, cache: GrantCache, token: str, grant: TenantGrant | None) -> None:
        d = cache.lookup(token, self.ask)
        self.asked.pop()[1].callback(grant)
        self.assertIs(self.successResultOf(d), grant)

    def test_oneLookupForABurst(self) -> None:
        """Requests arriving while their token is being looked up share that lookup."""
        cache = GrantCache(self.clock, 1.0)
        waiting = [cache.lookup("tok", self.ask) for _ in range(5)]
        self.assertEqual(len(self.asked), 1)
        grant = TenantGrant("acme")
        self.asked[0][1].callback(grant)
        self.assertEqual([self.successResultOf(d) for d in waiting], [grant] * 5)
        self.assertEqual(cache.lookups, 1)

    def test_noJoinPastTheBound(self) -> None:
        """A lookup that began C{seconds} ago or more is not joined: a new one starts."""
        cache = GrantCache(self.clock, 1.0)
        first = cache.lookup("tok", self.ask)
        self.clock.advance(1.0)
        second = cache.lookup("tok", self.ask)
        self.assertEqual(len(self.asked), 2)
        old, new = TenantGrant("old"), TenantGrant("new")
        self.asked[1][1].callback(new)
        self.asked[0][1].callback(old)
        self.assertIs(self.successResultOf(first), old)
        self.assertIs(self.successResultOf(second), new)
        # The old answer came back after its bound: not remembered over the new one.
        self.assertIs(self.successResultOf(cache.lookup("tok", self.ask)), new)

    def test_boundFromTheStartOfTheLookup(self) -> None:
        """The grant is used until C{seconds} after its lookup began, not after it ended."""
        cache = GrantCache(self.clock, 1.0)
        d = cache.lookup("tok", self.ask)
        self.clock.advance(0.75)
        self.asked.pop()[1].callback(TenantGrant("acme"))
        self.successResultOf(d)
        self.clock.advance(0.25)
        cache.lookup("tok", self.ask)
        self.assertEqual(len(self.asked), 1)

    def test_failureShared(self) -> None:
        """A failing lookup fails every request waiting on it, and is not remembered."""
        cache = GrantCache(self.clock, 1.0)
        a, b = cache.lookup("tok", self.ask), cache.lookup("tok", self.ask)
        self.asked.pop()[1].errback(RuntimeError("database down"))
        for d in (a, b):
            self.failureResultOf(d, RuntimeError)
        cache.lookup("tok", self.ask)
        self.assertEqual(len(self.asked), 1)

    def test_cancelledWaiter(self) -> None:
        """A waiting request that gave up is skipped when the answer comes."""
        cache = GrantCache(self.clock, 1.0)
        first, gone = cache.lookup("tok", self.ask), cache.lookup("tok", self.ask)
        gone.cancel()
        self.failureResultOf(gone)
        self.asked.pop()[1].callback(TenantGrant("acme"))
        self.assertEqual(self.successResultOf(first).tenant_id, "acme")

    def test_bounded(self) -> None:
        """At most C{max_entries} tokens; expired ones go first, then all."""
        cache = GrantCache(self.clock, 10.0, max_entries=3)
        grant = TenantGrant("acme")
        self.answered(cache, "a", grant)
        self.clock.advance(11)
        for token in "bcd":  # "a" expired: dropped
            self.answered(cache, token, grant)
        self.assertEqual(len(cache), 3)
        self.answered(cache, "e", grant)  # none expired: all dropped
        self.assertEqual(len(cache), 1)
        self.assertIs(self.successResultOf(cache.lookup("e", self.ask)), grant)
        self.assertEqual(self.asked, [])

    def test_off(self) -> None:
        """C{0}: every lookup asks, even in a burst."""
        cache = GrantCache(self.clock, 0.0)
        for _ in range(3):
            cache.lookup("tok", self.ask)
        self.assertEqual((len(self.asked), cache.lookups, len(cache)), (3, 3, 0))

    def test_negative(self) -> None:
        """A negative bound is refused."""
        self.assertRaises(ValueError, GrantCache, Clock(), -1.0)

    def test_keysAreNotTokens(self) -> None:
        """The token itself is not kept."""
        cache = GrantCache(self.clock, 1.0)
        self.answered(cache, "bgw_secret-token", TenantGrant("acme"))
        self.assertNotIn("bgw_secret-token", repr(cache.__dict__))
