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
    """The cache alone."""

    def test_bounded(self) -> None:
        """At most C{max_entries} tokens; expired ones go first, then all."""
        clock = Clock()
        cache = GrantCache(clock, 10.0, max_entries=3)
        grant = TenantGrant("acme")
        cache.put("a", grant)
        clock.advance(11)
        cache.put("b", grant)
        cache.put("c", grant)
        cache.put("d", grant)  # "a" expired: dropped
        self.assertEqual(len(cache), 3)
        self.assertIsNone(cache.get("a"))
        self.assertIs(cache.get("d"), grant)
        cache.put("e", grant)  # none expired: all dropped
        self.assertEqual(len(cache), 1)
        self.assertIs(cache.get("e"), grant)

    def test_negative(self) -> None:
        """A negative bound is refused."""
        self.assertRaises(ValueError, GrantCache, Clock(), -1.0)

    def test_keysAreNotTokens(self) -> None:
        """The token itself is not kept."""
        cache = GrantCache(Clock(), 1.0)
        cache.put("bgw_secret-token", TenantGrant("acme"))
        self.assertNotIn("bgw_secret-token", repr(cache.__dict__))
