"""An unknown token costs one indexed read, never a scrypt (issue 15, item 5).

Scrypt calls are counted by wrapping the real function: the digests are
real, only counted.  Tenants are written as the gateway's own commands
write them (L{add_tenant}), and as an older bipgw did (a digest, no
index), which must keep working and get its index on first use.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

import bipgw.store._tenants as tenants_module
from bipgw.store import (
    IStore,
    MemoryStore,
    Service,
    StoreTenantDirectory,
    Tenant,
    TokenDigest,
    add_tenant,
    grant_service,
    in_threads,
    is_reserved_row,
    replace_token,
    service_grant,
    settings_id,
)
from bipgw.store._token_index import index_row_id, token_index
from tests.unit.store.test_sqlite import open_inline

LEGACY_TOKEN = "bgw_legacy-token-0123456789abcdef"


class ScryptCounter:
    """Counts the scrypt computations of the tenant directory (the real ones)."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.calls = 0
        real = tenants_module._scrypt

        def counted(*args: Any) -> bytes:
            self.calls += 1
            return real(*args)

        case.patch(tenants_module, "_scrypt", counted)


class IndexMixin:
    """The directory's token lookups over any store."""

    def make_store(self) -> IStore:
        raise NotImplementedError()

    def wait(self, coroutine: Any) -> Any:
        case: SynchronousTestCase = self  # type: ignore[assignment]
        return case.successResultOf(ensureDeferred(coroutine))

    def setUp(self) -> None:
        self.store = self.make_store()
        self.tokens = {}
        for n in range(10):
            name = f"tenant{n}"
            self.tokens[name] = self.wait(add_tenant(self.store, name))
            self.wait(grant_service(self.store, name, "demo"))
        self.directory = StoreTenantDirectory(self.store)
        self.scrypt = ScryptCounter(self)  # type: ignore[arg-type]

    def lookup(self, token: str) -> Any:
        case: SynchronousTestCase = self  # type: ignore[assignment]
        return case.successResultOf(self.directory.by_token(token))

    def add_legacy(self, name: str = "legacy") -> None:
        """A tenant as an older bipgw wrote it: a digest and no index."""
        settings = {"kind": "tenant-settings", **TokenDigest.of(LEGACY_TOKEN).settings()}
        self.wait(self.store.put_tenant(Tenant(name, name)))
        self.wait(self.store.put_service(Service(settings_id(name), name, "", False, settings)))
        self.scrypt.calls = 0  # making the digest was one

    def test_unknownTokenNoScrypt(self) -> None:
        """With ten tenants, an unknown token is refused without one scrypt."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        for n in range(20):
            case.assertIsNone(self.lookup(f"bgw_not-a-token-{n:04d}-0123456789"))
        case.assertEqual(self.scrypt.calls, 0)

    def test_knownTokenOnce(self) -> None:
        """A tenant's token is found; its digest is checked once per process."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        for _ in range(3):
            for name, token in self.tokens.items():
                grant = self.lookup(token)
                case.assertEqual(grant.tenant_id if grant else None, name)
        case.assertEqual(self.scrypt.calls, len(self.tokens))

    def test_replacedToken(self) -> None:
        """A replaced token is refused (its index row is gone, and a stale
        row would not be believed); the new one works."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        old = self.tokens["tenant3"]
        self.lookup(old)
        new = self.wait(replace_token(self.store, "tenant3"))
        case.assertIsNone(self.lookup(old))
        case.assertEqual(self.lookup(new).tenant_id, "tenant3")
        case.assertIsNone(self.wait(self.store.get_service(index_row_id(token_index(old)))))

    def test_legacyTenantMigrated(self) -> None:
        """A tenant without index still gets in, and gets its index: from
        then on, unknown tokens cost no scrypt again."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        self.add_legacy()
        case.assertIsNone(self.lookup("bgw_not-a-token-0000-0123456789"))
        case.assertEqual(self.scrypt.calls, 1, "one scrypt per unindexed tenant")
        grant = self.lookup(LEGACY_TOKEN)
        case.assertEqual(grant.tenant_id if grant else None, "legacy")
        row = self.wait(self.store.get_service(settings_id("legacy")))
        case.assertEqual(row.settings["token_index"], token_index(LEGACY_TOKEN))
        calls = self.scrypt.calls
        case.assertIsNone(self.lookup("bgw_not-a-token-0001-0123456789"))
        case.assertEqual(self.scrypt.calls, calls)
        case.assertEqual(self.lookup(LEGACY_TOKEN).tenant_id, "legacy")

    def test_legacyChecksBounded(self) -> None:
        """Checks of unindexed tenants run in run_slow, at most max_slow at a
        time: more are refused at once, without a scrypt."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        self.add_legacy()
        pending: list[Deferred[Any]] = []

        def run_slow(check: Any) -> Deferred[Any]:
            waiting: Deferred[Any] = Deferred()
            pending.append(waiting)
            return waiting

        directory = StoreTenantDirectory(self.store, run_slow=run_slow, max_slow=2)
        lookups = [directory.by_token(f"bgw_guess-{n:04d}-0123456789") for n in range(5)]
        case.assertEqual(len(pending), 2)
        for refused in lookups[2:]:
            case.assertIsNone(case.successResultOf(refused))
        case.assertEqual(directory.slow_refused, 3)
        for waiting in pending:
            waiting.callback(-1)
        for done in lookups[:2]:
            case.assertIsNone(case.successResultOf(done))
        case.assertEqual(self.scrypt.calls, 0)

    def test_indexRowsGrantNothing(self) -> None:
        """Index rows are reserved: no grant, no listed service."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        rows = self.wait(self.store.list_services(tenant_id="tenant0"))
        case.assertEqual([r.name for r in rows if not is_reserved_row(r)], ["demo"])
        grant = self.lookup(self.tokens["tenant0"])
        case.assertEqual(set(grant.services), {"demo"})
        case.assertEqual(service_grant(rows[0]).name, rows[0].name)


class MemoryIndexTests(IndexMixin, SynchronousTestCase):
    """Over the memory store."""

    def make_store(self) -> IStore:
        return MemoryStore()


class SqliteIndexTests(IndexMixin, SynchronousTestCase):
    """Over SQLite (PostgreSQL: tests.integration.test_store_postgres)."""

    def make_store(self) -> IStore:
        path = f"{os.path.abspath(self.mktemp())}.db"
        store = open_inline(f"sqlite:///{path}", self)
        self.addCleanup(lambda: self.successResultOf(store.close()))
        return store


class ThreadTests(TestCase):
    """in_threads runs the checks in the reactor's thread pool."""

    async def test_inThreads(self) -> None:
        store = MemoryStore()
        settings = {"kind": "tenant-settings", **TokenDigest.of(LEGACY_TOKEN).settings()}
        await store.put_tenant(Tenant("legacy", "legacy"))
        await store.put_service(Service(settings_id("legacy"), "legacy", "", False, settings))
        directory = StoreTenantDirectory(store, run_slow=in_threads(reactor))
        grant = await directory.by_token(LEGACY_TOKEN)
        self.assertEqual(grant.tenant_id if grant else None, "legacy")
        self.assertIsNone(await directory.by_token("bgw_nope-0123456789abcdef"))
