"""A root-key rotation killed with SIGKILL at many random points loses nothing.

A child process (L{tests.integration._rotate_child}) rotates the root key
of a database holding thousands of sealed keys, a batch per transaction;
it is killed with SIGKILL at random points (after a random number of
batches and a random few milliseconds more, so inside transactions, between
them, while the keystore is rewritten or the old key retired), 20 times,
and started again after each kill.  After every kill each row must open
under one of the keys on disk; at the end every row and keystore entry
opens to its original value, everything is sealed under the current key
and nothing under any key that was retired.

On SQLite and on PostgreSQL (skipped loudly when the server is unreachable,
see L{tests.integration.test_store_postgres}).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import FileRootKeyRing, sealed_key_id
from bipgw.store import create_sql_engine
from tests.integration._forked import ForkedChild
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration._postgres import Schema
from tests.unit.store import rotation_fixture as fx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CARDS = 2000
BATCH = 100
KILLS = 20

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class _CrashMixin(_Base):
    url: str

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(mode=0o700)
        self.root_path = fx.make_root(self.dir)
        ring = FileRootKeyRing(self.root_path)
        self.first_key = ring.key_id
        self.keystore = fx.make_keystore(self.dir, ring)
        self.rows = fx.populate(self.url, ring, CARDS)
        self.engine = create_sql_engine(self.url)
        self.addCleanup(self.engine.dispose)
        self.rng = random.Random(int.from_bytes(os.urandom(4), "big"))

    def _child(self) -> ForkedChild:
        args = [self.url, str(self.root_path), str(self.keystore), str(BATCH)]
        return ForkedChild("tests.integration._rotate_child", args)

    def _run_until(self, batches: int, delay: float) -> bool:
        """Start a child; kill it after C{batches} batch lines and C{delay} s;
        C{True} if it finished before the kill."""
        child = self._child()
        assert child.stdout is not None
        try:
            seen = 0
            while seen < batches:
                line = child.stdout.readline()
                if not line or line.startswith(b"done"):
                    break
                seen += 1
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            _, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if child.returncode != -signal.SIGKILL:
            self.assertEqual(child.returncode, 0, err.decode()[-3000:])
        return child.returncode == 0

    def _every_row_opens(self, seen_keys: set[str]) -> None:
        ring = FileRootKeyRing(self.root_path)  # only what is on disk now
        seen_keys.update(ring.key_ids)
        for label, blob, _ in fx.rows(self.engine):
            self.assertEqual(ring.unseal(label, blob), fx.value_for(label), label)

    def test_killedAtRandomPoints(self) -> None:
        """20 SIGKILLs at random points, resumed each time: nothing lost or unreadable."""
        seen_keys = {self.first_key}
        finished = 0
        for _ in range(KILLS):
            batches = self.rng.randrange(0, 2 * self.rows // BATCH // 3)
            if self._run_until(batches, self.rng.uniform(0, 0.05)):
                finished += 1
            self._every_row_opens(seen_keys)
        # The last run, not killed, finishes the rotation under way (if any).
        child = self._child()
        _, err = child.communicate(timeout=600)
        self.assertEqual(child.returncode, 0, err.decode()[-3000:])
        ring = FileRootKeyRing(self.root_path)
        fx.check_all(self, self.engine, ring, self.keystore, self.rows)
        self.assertFalse(os.path.exists(str(self.root_path) + ".next"))
        retired = seen_keys - {ring.key_id}
        self.assertTrue(retired, "no key was ever retired")
        under = {sealed_key_id(blob) for _, blob, _ in fx.rows(self.engine)}
        self.assertEqual(under & retired, set())
        print(
            f"\n{KILLS} kills, {finished} runs finished by themselves, {len(retired)} keys retired"
        )


class SqliteRotateCrashTests(_CrashMixin, SynchronousTestCase):
    """On the default store, a SQLite file."""

    def setUp(self) -> None:
        base = Path(self.mktemp())
        base.mkdir(mode=0o700)
        self.url = fx.sqlite_url(base)
        super().setUp()


class PostgresRotateCrashTests(_CrashMixin, SynchronousTestCase):
    """On PostgreSQL, in a schema of the test's own."""

    skip = POSTGRES_SKIP

    def setUp(self) -> None:
        self.schema = Schema(self)
        self.addCleanup(self.schema.drop)
        self.url = self.schema.url
        super().setUp()
