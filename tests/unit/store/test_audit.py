"""The audit trail searched (L{find_audit}) on both stores, and the audit-origin schema step."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, inspect, text
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import (
    AuditFilter,
    AuditRecord,
    IStore,
    MemoryStore,
    add_audit_now,
    find_audit,
)
from bipgw.store._engine import WRITE_OPTION
from bipgw.store._migrations import LATEST_VERSION, MIGRATIONS, migrate
from tests.unit.store.test_sqlite import open_inline

#: The audit-origin step's number.
STEP = next(m.version for m in MIGRATIONS if m.apply.__name__ == "_audit_origin")

RECORDS = [
    AuditRecord(at=100.0, actor="cli:root", action="tenant.add", target="acme", origin="host a"),
    AuditRecord(at=200.0, actor="cli:ops", action="tenant.disable", target="acme"),
    AuditRecord(at=300.0, actor="acme", action="service.request", target="acme/isd"),
    AuditRecord(at=400.0, actor="cli:root", action="tenantx.add", target="odd"),
    AuditRecord(at=500.0, actor="cli:root", action="keys.generate-master", target="M1"),
]


class FindAuditMemoryTests(SynchronousTestCase):
    """find_audit's filters, on the memory store."""

    def make_store(self) -> IStore:
        return MemoryStore()

    def setUp(self) -> None:
        self.store = self.make_store()
        for record in RECORDS:
            self.successResultOf(self.store.add_audit(record))

    def find(self, **filters: object) -> list[str]:
        found = self.successResultOf(find_audit(self.store, AuditFilter(**filters)))  # type: ignore[arg-type]
        return [f"{r.audit_id}:{r.action}" for r in found]

    def test_all(self) -> None:
        """No filter: every record, newest first, with its origin kept."""
        self.assertEqual(
            self.find(),
            [
                "5:keys.generate-master",
                "4:tenantx.add",
                "3:service.request",
                "2:tenant.disable",
                "1:tenant.add",
            ],
        )
        oldest = self.successResultOf(find_audit(self.store, AuditFilter(before_id=2)))
        self.assertEqual([(r.origin, r.target) for r in oldest], [("host a", "acme")])

    def test_actor(self) -> None:
        """An actor matches exactly."""
        self.assertEqual(self.find(actor="cli:ops"), ["2:tenant.disable"])
        self.assertEqual(self.find(actor="cli"), [])

    def test_action(self) -> None:
        """An action with a dot matches exactly; without, every action on that object."""
        self.assertEqual(self.find(action="tenant"), ["2:tenant.disable", "1:tenant.add"])
        self.assertEqual(self.find(action="tenant.add"), ["1:tenant.add"])
        self.assertEqual(self.find(action="tenantx"), ["4:tenantx.add"])

    def test_sinceLimitPage(self) -> None:
        """since, limit and before_id combine."""
        self.assertEqual(
            self.find(since=300.0, limit=2), ["5:keys.generate-master", "4:tenantx.add"]
        )
        self.assertEqual(self.find(since=300.0, before_id=4), ["3:service.request"])
        self.assertRaises(ValueError, AuditFilter, limit=0)
        self.assertRaises(ValueError, AuditFilter, limit=10**6)

    def test_metacharacters(self) -> None:
        """SQL and LIKE metacharacters are plain text: they match nothing here."""
        for value in ("%", "_", "tenant%", "' OR 1=1 --", "t_nant", "tenant.%"):
            self.assertEqual(self.find(actor=value), [], value)
            self.assertEqual(self.find(action=value), [], value)


class FindAuditSqliteTests(FindAuditMemoryTests):
    """The same on SQLite (one query)."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)


class AuditOriginMigrationTests(SynchronousTestCase):
    """The audit-origin step (reserved number 9, numbered 4 until 4-8 are merged)
    adds audit_log.origin to a database made before it."""

    def test_upgrade(self) -> None:
        """A version-2 audit_log without origin gets the column (old rows: empty)
        and the index; the store then reads and writes origins."""
        path = os.path.abspath(self.mktemp()) + ".db"
        url = f"sqlite:///{path}"
        store = open_inline(url, self)
        self.successResultOf(store.close())
        engine = create_engine(url)
        with engine.begin() as c:
            c.execute(text("DROP INDEX ix_audit_log_at"))
            c.execute(text("ALTER TABLE audit_log DROP COLUMN origin"))
            # Back to the schema before the step (later steps re-run: they check first).
            c.execute(text("DELETE FROM schema_version WHERE version >= :v"), {"v": STEP})
            c.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, target, detail)"
                    " VALUES (1, 'old', 'tenant.add', 'a', '')"
                )
            )
        with engine.connect() as c:
            c.execution_options(**{WRITE_OPTION: True})
            with c.begin():
                self.assertEqual(migrate(c, now=2.0), list(range(STEP, LATEST_VERSION + 1)))
        columns = {c["name"] for c in inspect(engine).get_columns("audit_log")}
        self.assertIn("origin", columns)
        engine.dispose()
        store = open_inline(url, self)
        self.successResultOf(
            store.add_audit(AuditRecord(at=3.0, actor="new", action="x.y", origin="host b"))
        )
        found = self.successResultOf(store.list_audit())
        self.assertEqual([(r.actor, r.origin) for r in found], [("new", "host b"), ("old", "")])
        self.successResultOf(store.close())


class AddAuditNowTests(SynchronousTestCase):
    """The synchronous writer the key commands use."""

    def test_written(self) -> None:
        """A record written at once, in a database it migrates first."""
        url = f"sqlite:///{os.path.abspath(self.mktemp())}.db"
        add_audit_now(url, AuditRecord(at=1.0, actor="cli:x", action="keys.add-transport"))
        store = open_inline(url, self)
        (record,) = self.successResultOf(store.list_audit())
        self.assertEqual((record.actor, record.action), ("cli:x", "keys.add-transport"))
        self.successResultOf(store.close())

    def test_memory(self) -> None:
        """A memory database is per process: nothing to write, no error."""
        add_audit_now("memory:", AuditRecord(at=1.0, actor="a", action="b.c"))
