"""SqlStore on a real PostgreSQL server: the contract, migrations, real concurrency.

Each test gets a schema of its own (L{tests.integration._postgres.Schema}),
so runs never see each other's data; without a server the tests are
skipped, loudly (a failure under CI when the driver is missing).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from bipgw.store import MIGRATIONS, IStore, SqlStore
from tests.integration._postgres import SKIP, Schema
from tests.unit.ingest.test_import_batches import BatchImportMixin
from tests.unit.ingest.test_import_cards import CardImportMixin
from tests.unit.ingest.test_import_msisdn import MsisdnImportMixin
from tests.unit.store import InlineReactor, InlineThreadPool, test_audit
from tests.unit.store.test_campaigns import CampaignStoreMixin
from tests.unit.store.test_card_key_source import LifecycleMixin
from tests.unit.store.test_contract import ICCID_A, StoreContractMixin, card
from tests.unit.store.test_feeds import FeedsContractMixin
from tests.unit.store.test_migrations import declared, schema_of
from tests.unit.store.test_token_index import IndexMixin

pytestmark = pytest.mark.integration


def _inline_store(case: SynchronousTestCase, url: str) -> SqlStore:
    store: SqlStore = case.successResultOf(
        SqlStore.open(url, reactor=InlineReactor(), threadpool=InlineThreadPool())
    )
    return store


class _PostgresMixin:
    """Creates the schema before the test's own setUp, drops it after its cleanups."""

    skip = SKIP

    def setUp(self) -> None:
        self.schema = Schema(self)
        self.addCleanup(self.schema.drop)  # type: ignore[attr-defined]
        super().setUp()  # type: ignore[misc]

    def make_store(self) -> IStore:
        return _inline_store(self, self.schema.url)  # type: ignore[arg-type]


class PostgresContractTests(_PostgresMixin, StoreContractMixin, SynchronousTestCase):
    """SqlStore on PostgreSQL passes the store contract."""


class PostgresCardKeyLifecycleTests(_PostgresMixin, LifecycleMixin, SynchronousTestCase):
    """Card key versions (pending, active, retired) on PostgreSQL."""


class PostgresCampaignStoreTests(_PostgresMixin, CampaignStoreMixin, SynchronousTestCase):
    """The campaign store on PostgreSQL passes the campaign store contract."""

    def make(self) -> Any:
        from bipgw.store import SqlCampaignStore

        return SqlCampaignStore(self.make_store())  # type: ignore[arg-type]


class PostgresFeedsTests(_PostgresMixin, FeedsContractMixin, SynchronousTestCase):
    """Partners and delivered files on PostgreSQL."""


class PostgresCardImportTests(_PostgresMixin, CardImportMixin, SynchronousTestCase):
    """Vendor files import into PostgreSQL as into the other stores."""


class PostgresMsisdnImportTests(_PostgresMixin, MsisdnImportMixin, SynchronousTestCase):
    """MSISDN files import into PostgreSQL as into the other stores."""


class PostgresBatchImportTests(_PostgresMixin, BatchImportMixin, SynchronousTestCase):
    """Streamed imports at their batch boundaries on PostgreSQL."""


class PostgresTokenIndexTests(_PostgresMixin, IndexMixin, SynchronousTestCase):
    """Tokens are found by index on PostgreSQL too; unindexed tenants migrate."""


class PostgresFindAuditTests(_PostgresMixin, test_audit.FindAuditMemoryTests):
    """The audit trail's filters on PostgreSQL (its collation, its LIKE)."""


class PostgresMigrationTests(SynchronousTestCase):
    """Migrations on PostgreSQL build the declared schema, once."""

    skip = SKIP

    def test_declaredSchemaAndIdempotent(self) -> None:
        """A new schema gets exactly the declared tables; opening again migrates nothing."""
        schema = Schema(self)
        self.addCleanup(schema.drop)
        store = _inline_store(self, schema.url)
        self.assertEqual(schema_of(store.engine), declared())
        self.successResultOf(store.close())
        again = _inline_store(self, schema.url)
        with again.engine.connect() as c:
            versions = c.execute(text("SELECT version FROM schema_version")).scalars().all()
        self.successResultOf(again.close())
        self.assertEqual(versions, [m.version for m in MIGRATIONS])


class PostgresConcurrencyTests(TestCase):
    """Real threads and connections: OTA counters never repeat."""

    skip = SKIP
    timeout = 120

    def setUp(self) -> None:
        self.schema = Schema(self)
        self.addCleanup(self.schema.drop)

    @defer.inlineCallbacks
    def test_concurrentCallersTwoStores(self) -> Any:
        """200 calls at once over two stores of 4 threads each get exactly 1..200."""
        first = yield SqlStore.open(self.schema.url, reactor=reactor, threads=4)
        self.addCleanup(first.close)
        second = yield SqlStore.open(self.schema.url, reactor=reactor, threads=4)
        self.addCleanup(second.close)
        yield first.upsert_cards([card(ICCID_A)])
        calls = [(first if n % 2 else second).next_ota_counter(ICCID_A) for n in range(200)]
        values = yield defer.gatherResults(calls)
        self.assertEqual(sorted(values), list(range(1, 201)))

    @defer.inlineCallbacks
    def test_increasingAcrossReopen(self) -> Any:
        """After closing and reopening, the counter continues above every earlier value."""
        store = yield SqlStore.open(self.schema.url, reactor=reactor)
        yield store.upsert_cards([card(ICCID_A)])
        before = yield defer.gatherResults([store.next_ota_counter(ICCID_A) for _ in range(30)])
        yield store.close()
        store = yield SqlStore.open(self.schema.url, reactor=reactor)
        self.addCleanup(store.close)
        after = yield defer.gatherResults([store.next_ota_counter(ICCID_A) for _ in range(30)])
        self.assertEqual(sorted(before + after), list(range(1, 61)))
        self.assertGreater(min(after), max(before))
