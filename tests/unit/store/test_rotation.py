"""Root-key rotation over a SQLite database and a keystore file (L{RootRotation})."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import FileRootKeyRing, KeyStore, RootKey, sealed_key_id
from bipgw.store import Progress, Resealer, RootRotation, create_sql_engine
from bipgw.store import _schema as s
from tests.unit.store import rotation_fixture as fx

CARDS = 150


class _Interrupt(Exception):
    pass


class RotationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir(mode=0o700)
        self.root_path = fx.make_root(self.dir)
        self.ring = FileRootKeyRing(self.root_path)
        self.keystore = fx.make_keystore(self.dir, self.ring)
        self.url = fx.sqlite_url(self.dir)
        self.rows = fx.populate(self.url, self.ring, CARDS)
        self.engine = create_sql_engine(self.url)
        self.addCleanup(self.engine.dispose)
        self.old = self.ring.key_id

    def rotation(self, ring: FileRootKeyRing | None = None, **kw: object) -> RootRotation:
        return RootRotation(
            self.engine,
            ring or FileRootKeyRing(self.root_path),
            str(self.keystore),
            batch=40,
            **kw,  # type: ignore[arg-type]
        )

    def test_rotates(self) -> None:
        """Every row and keystore entry ends under a new key, opening to its value;
        the old key file is replaced; progress reaches the total."""
        seen: list[Progress] = []
        result = self.rotation(progress=seen.append).run()
        ring = FileRootKeyRing(self.root_path)
        self.assertNotEqual(ring.key_id, self.old)
        self.assertEqual((result.old_key_id, result.new_key_id), (self.old, ring.key_id))
        self.assertEqual(result.rows, self.rows)
        self.assertEqual(result.keystore_entries, len(fx.KEYSTORE_LABELS))
        self.assertFalse(result.resumed)
        self.assertFalse(os.path.exists(str(self.root_path) + ".next"))
        fx.check_all(self, self.engine, ring, self.keystore, self.rows)
        self.assertEqual(RootKey.load(self.root_path).key_id, ring.key_id)
        self.assertEqual((seen[-1].done, seen[-1].total), (self.rows, self.rows))
        self.assertIn("rows/s", str(seen[-1]))

    def test_audited(self) -> None:
        """The start and the end are in the audit log, with key ids and counts only."""
        result = self.rotation().run()
        with self.engine.connect() as c:
            audit = [
                tuple(r) for r in c.execute(select(s.audit_log.c.action, s.audit_log.c.detail))
            ]
        self.assertEqual([a for a, _ in audit], ["root-key.rotate.begin", "root-key.rotate.finish"])
        self.assertIn(self.old, audit[0][1])
        self.assertIn(f"{self.rows} rows", audit[1][1])
        self.assertIn(result.new_key_id, audit[1][1])

    def test_interruptedThenResumed(self) -> None:
        """Stopped after two batches, every row opens under old or new key; run
        again, the rotation resumes (same new key) and completes."""
        batches = []

        def stop(p: Progress) -> None:
            batches.append(p)
            if len(batches) == 3:
                raise _Interrupt()

        self.assertRaises(_Interrupt, self.rotation(progress=stop).run)
        ring = FileRootKeyRing(self.root_path)
        pending = ring.rotation()
        assert pending is not None
        self.assertEqual(pending[0], self.old)
        counts = Resealer(self.engine, ring).count_by_key()
        self.assertEqual(counts, {self.old: self.rows - 80, pending[1]: 80})
        for label, blob, _ in fx.rows(self.engine):
            self.assertEqual(ring.unseal(label, blob), fx.value_for(label))
        result = self.rotation().run()
        self.assertTrue(result.resumed)
        self.assertEqual(result.new_key_id, pending[1])
        self.assertEqual(result.rows, self.rows - 80)
        fx.check_all(self, self.engine, FileRootKeyRing(self.root_path), self.keystore, self.rows)

    def test_readerLoadedBeforeRotation(self) -> None:
        """A process that loaded the keys before the rotation (a running gateway)
        still opens every row, re-sealed or not, and then seals under the new key."""
        reader = FileRootKeyRing(self.root_path)
        store = KeyStore.open(self.keystore, reader)
        self.rotation().run()
        for label, blob, _ in fx.rows(self.engine):
            self.assertEqual(reader.unseal(label, blob), fx.value_for(label))
        new = FileRootKeyRing(self.root_path).key_id
        self.assertEqual(sealed_key_id(reader.seal("x", b"k")), new)
        self.assertEqual(store.get("TK1"), fx.value_for("keystore:TK1"))  # read before: still opens
        self.assertEqual(
            KeyStore.open(self.keystore, reader).get("TK1"), fx.value_for("keystore:TK1")
        )

    def test_rowWrittenDuringRotationUnderOldKey(self) -> None:
        """A row a stale writer sealed under the old key after its batch passed is
        caught by the final check and re-sealed before the old key is retired."""
        stale = RootKey.load(self.root_path)
        ring = FileRootKeyRing(self.root_path)
        done = []

        def write_late(p: Progress) -> None:
            done.append(p)
            if p.done == p.total and len(done) < 10:
                fx.populate(self.url, stale, 1)  # card 0 again, under the old key

        self.rotation(ring, progress=write_late).run()
        fx.check_all(self, self.engine, FileRootKeyRing(self.root_path), self.keystore, self.rows)

    def test_noRotationWithoutNextFile(self) -> None:
        """finish_rotation refuses when no rotation is under way."""
        from bipgw.keys import RootKeyError

        self.assertRaises(RootKeyError, FileRootKeyRing(self.root_path).finish_rotation)
