"""SqlStore on SQLite: the contract, the file on disk, and real threads.

The contract suite runs with L{InlineThreadPool}, so it is synchronous and
deterministic.  The concurrency tests use the store's real thread pool
and the real reactor (trial's C{TestCase}): many callers at once, two
stores on one file, and a reopen of the file, must never see an OTA
counter value twice.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import text
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from bipgw.store import (
    LATEST_VERSION,
    MIGRATIONS,
    IStore,
    MemoryStore,
    SchemaVersionError,
    SqlStore,
    StoreError,
    create_store,
    open_store,
)
from tests.unit.store import InlineReactor, InlineThreadPool
from tests.unit.store.test_contract import ICCID_A, ICCID_B, StoreContractMixin, card


def open_inline(url: str, case: SynchronousTestCase) -> SqlStore:
    """A SqlStore on C{url} whose queries run inline."""
    store: SqlStore = case.successResultOf(
        SqlStore.open(url, reactor=InlineReactor(), threadpool=InlineThreadPool())
    )
    return store


class SqliteStoreContractTests(StoreContractMixin, SynchronousTestCase):
    """SqlStore on a SQLite file passes the contract."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)


class SqliteMemoryContractTests(StoreContractMixin, SynchronousTestCase):
    """SqlStore on an in-memory SQLite database passes the contract too."""

    def make_store(self) -> IStore:
        return open_inline("sqlite://", self)


class SqliteFileTests(SynchronousTestCase):
    """The database file: created private, in WAL mode, reopened intact."""

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp()) + ".db"
        self.url = f"sqlite:///{self.path}"

    def test_createdPrivateInWalMode(self) -> None:
        """A new database file is mode 0600 and in WAL journal mode, at the latest schema."""
        store = open_inline(self.url, self)
        self.successResultOf(store.close())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with sqlite3.connect(self.path) as db:
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        self.assertEqual(version, LATEST_VERSION)

    def test_counterSurvivesReopen(self) -> None:
        """The OTA counter continues after the file is closed and opened again."""
        store = open_inline(self.url, self)
        self.successResultOf(store.upsert_cards([card(ICCID_A)]))
        before = [self.successResultOf(store.next_ota_counter(ICCID_A)) for _ in range(3)]
        self.successResultOf(store.close())
        again = open_inline(self.url, self)
        self.addCleanup(lambda: self.successResultOf(again.close()))
        self.assertEqual(before, [1, 2, 3])
        self.assertEqual(self.successResultOf(again.next_ota_counter(ICCID_A)), 4)

    def test_newerSchemaRefused(self) -> None:
        """A database written by a newer bipgw is refused, saying so, and left alone."""
        self.successResultOf(open_inline(self.url, self).close())
        with sqlite3.connect(self.path) as db:
            db.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (LATEST_VERSION + 1,))
        pool = InlineThreadPool()
        d = SqlStore.open(self.url, reactor=InlineReactor(), threadpool=pool)
        error = self.failureResultOf(d, SchemaVersionError).value
        self.assertIn(f"schema version {LATEST_VERSION + 1}", str(error))
        self.assertIn("upgrade bipgw", str(error))
        with sqlite3.connect(self.path) as db:
            rows = db.execute("SELECT count(*) FROM schema_version").fetchone()[0]
        self.assertEqual(rows, len(MIGRATIONS) + 1)

    def test_badUrls(self) -> None:
        """Unusable URLs fail with a StoreError that says why, before any thread starts."""
        for url, words in [
            ("nonsense", "not a database URL"),
            ("mysql://root@localhost/test", "unsupported database"),
            ("postgresql+nodriver://x@localhost/db", "no driver"),
            (f"sqlite:///{self.path}/missing/dir.db", "cannot create the database file"),
        ]:
            error = self.failureResultOf(SqlStore.open(url, reactor=InlineReactor()), StoreError)
            self.assertIn(words, str(error.value), url)

    def test_createTouchesNothing(self) -> None:
        """create() makes the store without running anything (no schema yet);
        start() then creates the schema; an unusable URL is refused
        by create() itself."""
        path = Path(self.path).with_name("made.db")
        store = SqlStore.create(
            f"sqlite:///{path}", reactor=InlineReactor(), threadpool=InlineThreadPool()
        )
        with sqlite3.connect(path) as raw:
            tables = raw.execute("SELECT name FROM sqlite_master").fetchall()
        self.assertEqual(tables, [])
        self.assertRaises(StoreError, SqlStore.create, "nonsense", reactor=InlineReactor())
        self.successResultOf(store.start())
        self.addCleanup(lambda: self.successResultOf(store.close()))
        self.successResultOf(store.upsert_cards([card(ICCID_A)]))
        self.assertEqual(self.successResultOf(store.count_cards()), 1)

    def test_createStoreMemoryUrl(self) -> None:
        """create_store('memory:') gives a memory store, ready once started."""
        store = create_store("memory:")
        self.assertIsInstance(store, MemoryStore)
        self.successResultOf(store.start())
        self.assertEqual(self.successResultOf(store.count_cards()), 0)

    def test_databaseErrorsHideParameters(self) -> None:
        """A failing query is reported as a StoreError without its bound parameters."""
        store = open_inline(self.url, self)
        self.addCleanup(lambda: self.successResultOf(store.close()))
        with store.engine.begin() as connection:
            connection.execute(text("DROP TABLE audit_log"))
        from bipgw.store import AuditRecord

        d = store.add_audit(AuditRecord(1.0, "secret-looking-actor", "x"))
        error = self.failureResultOf(d, StoreError).value
        self.assertIn("audit_log", str(error))
        self.assertNotIn("secret-looking-actor", str(error))

    def test_openStoreMemoryUrl(self) -> None:
        """open_store('memory:') gives a working memory store."""
        store = self.successResultOf(open_store("memory:"))
        self.successResultOf(store.upsert_cards([card(ICCID_A)]))
        self.assertEqual(self.successResultOf(store.count_cards()), 1)


class SqliteThreadedTests(TestCase):
    """Real threads, real reactor: OTA counters under concurrency."""

    timeout = 60

    def url(self) -> str:
        return f"sqlite:///{os.path.abspath(self.mktemp())}.db"

    @defer.inlineCallbacks
    def test_concurrentCallersOnePool(self) -> Any:
        """200 callers at once, over 4 threads, get exactly 1..200, each once."""
        store = yield SqlStore.open(self.url(), reactor=reactor, threads=4)
        self.addCleanup(store.close)
        yield store.upsert_cards([card(ICCID_A)])
        values = yield defer.gatherResults([store.next_ota_counter(ICCID_A) for _ in range(200)])
        self.assertEqual(sorted(values), list(range(1, 201)))

    @defer.inlineCallbacks
    def test_countersGroupCommitted(self) -> Any:
        """Counters asked for while one commits share the next transaction (group commit)."""
        store = yield SqlStore.open(self.url(), reactor=reactor)
        self.addCleanup(store.close)
        yield store.upsert_cards([card(ICCID_A), card(ICCID_B, psk_identity=b"b")])
        calls = [store.next_ota_counter(ICCID_A if n % 2 else ICCID_B) for n in range(300)]
        values = yield defer.gatherResults(calls)
        self.assertEqual(sorted(values[0::2]), list(range(1, 151)))
        self.assertEqual(sorted(values[1::2]), list(range(1, 151)))
        # The first runs alone; the 299 asked for meanwhile go in one more.
        self.assertEqual((store._counters.batches, store._counters.requests), (2, 300))

    @defer.inlineCallbacks
    def test_twoStoresOneFile(self) -> Any:
        """Two stores (as two processes would) sharing a file never hand out a value twice."""
        url = self.url()
        first = yield SqlStore.open(url, reactor=reactor, threads=2)
        self.addCleanup(first.close)
        second = yield SqlStore.open(url, reactor=reactor, threads=2)
        self.addCleanup(second.close)
        yield first.upsert_cards([card(ICCID_A), card(ICCID_B, psk_identity=b"b")])
        calls = [(first if n % 2 else second).next_ota_counter(ICCID_A) for n in range(120)]
        values = yield defer.gatherResults(calls)
        self.assertEqual(sorted(values), list(range(1, 121)))

    @defer.inlineCallbacks
    def test_increasingAcrossReopen(self) -> Any:
        """Values allocated after closing and reopening the file continue upwards."""
        url = self.url()
        store = yield SqlStore.open(url, reactor=reactor)
        yield store.upsert_cards([card(ICCID_A)])
        before = yield defer.gatherResults([store.next_ota_counter(ICCID_A) for _ in range(20)])
        yield store.close()
        store = yield open_store(url, reactor=reactor)
        self.addCleanup(store.close)
        after = yield defer.gatherResults([store.next_ota_counter(ICCID_A) for _ in range(20)])
        self.assertEqual(sorted(before + after), list(range(1, 41)))
        self.assertGreater(min(after), max(before))

    @defer.inlineCallbacks
    def test_ownPoolStoppedOnClose(self) -> Any:
        """A store's own pool runs while it is open and is stopped by close."""
        store = yield SqlStore.open(self.url(), reactor=reactor, threads=2)
        pool = store._threads._pool
        self.assertTrue(pool.started)
        self.assertIsNotNone(store._threads._trigger)
        pending = store.count_cards()
        yield store.close()
        self.assertEqual((yield pending), 0)
        self.assertFalse(pool.started)
        self.assertIsNone(store._threads._trigger)
