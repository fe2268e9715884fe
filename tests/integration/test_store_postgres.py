"""SqlStore on a real PostgreSQL server: the contract, migrations, real concurrency.

Each test gets a schema of its own (created, put first on the connection's
C{search_path}, dropped afterwards), so runs never see each other's data.
The server is C{BIPGW_TEST_POSTGRES_URL}, by default
C{postgresql+psycopg://postgres@127.0.0.1:5432/test} (trust auth, as CI has).

When the server is unreachable the tests are skipped, loudly.  A missing
driver (C{psycopg}) is a skip on a developer machine but a failure under
CI (C{CI} set), where PostgreSQL is part of the contract.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
import warnings
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from bipgw.store import MIGRATIONS, IStore, SqlStore
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

URL = os.environ.get("BIPGW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))


def _why_skip() -> str | None:
    if importlib.util.find_spec("psycopg") is None:
        if IN_CI:
            return None  # fail in setUp instead: CI must test PostgreSQL
        return "psycopg is not installed: pip install 'psycopg[binary]' to test PostgreSQL"
    try:
        engine = create_engine(URL, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
        engine.dispose()
    except SQLAlchemyError as e:
        where = make_url(URL).render_as_string()
        return f"PostgreSQL at {where} is unreachable: {e.__class__.__name__}"
    return None


SKIP = _why_skip()
if SKIP:
    # Loud on purpose: a skipped database suite must not pass unnoticed.
    print(f"\n*** SKIPPING the PostgreSQL store tests: {SKIP} ***\n", file=sys.stderr)
    warnings.warn(f"PostgreSQL store tests skipped: {SKIP}", stacklevel=1)


class _Schema:
    """A fresh schema on the server, and a store URL that uses it."""

    def __init__(self, case: Any) -> None:
        if importlib.util.find_spec("psycopg") is None:
            case.fail("psycopg is not installed, and CI must test PostgreSQL: add psycopg[binary]")
        self.name = f"bipgw_test_{os.getpid()}_{secrets.token_hex(4)}"
        self.admin = create_engine(URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{self.name}"'))
        self.url = (
            make_url(URL)
            .update_query_dict({"options": f"-csearch_path={self.name}"})
            .render_as_string(hide_password=False)
        )

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def _inline_store(case: SynchronousTestCase, url: str) -> SqlStore:
    store: SqlStore = case.successResultOf(
        SqlStore.open(url, reactor=InlineReactor(), threadpool=InlineThreadPool())
    )
    return store


class _PostgresMixin:
    """Creates the schema before the test's own setUp, drops it after its cleanups."""

    skip = SKIP

    def setUp(self) -> None:
        self.schema = _Schema(self)
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
        schema = _Schema(self)
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
        self.schema = _Schema(self)
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
