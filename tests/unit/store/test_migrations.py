"""Schema migrations: ordered, idempotent, and producing exactly the declared schema."""

from __future__ import annotations

import os

from sqlalchemy import Engine, inspect, select
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import LATEST_VERSION, MIGRATIONS, create_sql_engine, current_version, migrate
from bipgw.store._engine import WRITE_OPTION
from bipgw.store._schema import metadata, schema_version


def schema_of(engine: Engine) -> dict[str, tuple[set[str], set[tuple[str, bool]]]]:
    """Each table's column names and (index name, unique) pairs, as the database has them."""
    found = {}
    inspector = inspect(engine)
    for table in inspector.get_table_names():
        columns = {c["name"] for c in inspector.get_columns(table)}
        indexes = {(str(i["name"]), bool(i["unique"])) for i in inspector.get_indexes(table)}
        found[table] = (columns, indexes)
    return found


def declared() -> dict[str, tuple[set[str], set[tuple[str, bool]]]]:
    """The same, from the table definitions in bipgw.store._schema."""
    return {
        t.name: ({c.name for c in t.columns}, {(str(i.name), bool(i.unique)) for i in t.indexes})
        for t in metadata.sorted_tables
    }


class MigrationTests(SynchronousTestCase):
    """migrate() builds the declared schema once and then does nothing."""

    def setUp(self) -> None:
        self.engine = create_sql_engine(f"sqlite:///{os.path.abspath(self.mktemp())}.db")
        self.addCleanup(self.engine.dispose)

    def migrate(self) -> list[int]:
        with self.engine.connect() as c:
            c.execution_options(**{WRITE_OPTION: True})
            with c.begin():
                return migrate(c, now=42.0)

    def test_stepsNumberedInOrder(self) -> None:
        """Steps are numbered 1, 2, 3 ... in order, and the latest is the last one."""
        versions = [m.version for m in MIGRATIONS]
        self.assertEqual(versions, list(range(1, len(versions) + 1)))
        self.assertEqual(LATEST_VERSION, MIGRATIONS[-1].version)

    def test_emptyDatabaseIsVersionZero(self) -> None:
        """A database without the version table is at version 0."""
        with self.engine.connect() as c:
            self.assertEqual(current_version(c), 0)

    def test_migrateBuildsDeclaredSchema(self) -> None:
        """After migrating, the database has exactly the declared tables, columns and indexes."""
        self.assertEqual(self.migrate(), [m.version for m in MIGRATIONS])
        self.assertEqual(schema_of(self.engine), declared())
        self.assertIn("ix_cards_msisdn", {i for i, _ in declared()["cards"][1]})
        self.assertIn(("ix_cards_psk_identity", True), declared()["cards"][1])

    def test_migrateTwiceIsNoop(self) -> None:
        """A second migrate applies nothing and records nothing more."""
        self.migrate()
        self.assertEqual(self.migrate(), [])
        with self.engine.connect() as c:
            rows = c.execute(select(schema_version)).all()
            self.assertEqual(current_version(c), LATEST_VERSION)
        self.assertEqual([r.version for r in rows], [m.version for m in MIGRATIONS])
        self.assertEqual({r.applied_at for r in rows}, {42.0})

    def test_failedStepLeavesNothing(self) -> None:
        """A step that fails rolls back with its version row: the next run starts clean."""
        from bipgw.store import _migrations

        def broken(connection: object) -> None:
            _migrations._initial(connection)  # type: ignore[arg-type]
            raise RuntimeError("disk on fire")

        original = _migrations.MIGRATIONS
        self.patch(
            _migrations,
            "MIGRATIONS",
            (_migrations.Migration(1, original[0].description, broken), *original[1:]),
        )
        self.assertRaises(RuntimeError, self.migrate)
        with self.engine.connect() as c:
            self.assertEqual(current_version(c), 0)
        self.assertNotIn("cards", schema_of(self.engine))
        self.patch(_migrations, "MIGRATIONS", original)
        self.assertEqual(self.migrate(), [m.version for m in MIGRATIONS])
