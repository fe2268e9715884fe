"""OTA counters are never reused across C{kill -9}, with the group commit in place.

A child process (L{tests.integration._counter_child}) allocates counters
for a few cards as fast as it can, 64 at a time, and prints every value
the moment the store hands it out; it is killed with SIGKILL mid-stream,
while transactions are in flight.  Reopening the database, every value
printed must be at or below the card's stored counter, no value may have
been printed twice, and the next values must be above everything printed:
a counter handed out is committed, so no crash can hand it out again.

Run on SQLite (the default store, a file) and on PostgreSQL (skipped, loudly,
when the server is unreachable; see L{tests.integration.test_store_postgres}).
The memory store keeps nothing across a process: its "never reused" is the
contract tests' (C{test_otaCounterManyCallers}, C{test_otaCounterOutcomesEachTheirOwn}).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import SqlStore
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration._postgres import Schema
from tests.unit.store import InlineReactor, InlineThreadPool
from tests.unit.store.test_contract import card

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ICCIDS = [f"898821100000000{n:04d}" for n in range(5)]
SEEN_BEFORE_KILL = 400
"""Values the child must have handed out before it is killed."""


if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class _StoreAccess(_Base):
    """The database under test, opened inline."""

    _url: str

    def url(self) -> str:
        return self._url

    def _store(self) -> SqlStore:
        opening = SqlStore.open(self.url(), reactor=InlineReactor(), threadpool=InlineThreadPool())
        store: SqlStore = self.successResultOf(opening)
        return store


class _CrashMixin(_StoreAccess):
    """Kill the allocating child mid-stream, reopen, check nothing was reused."""

    def _run_and_kill(self) -> dict[str, list[int]]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.integration._counter_child", self.url(), *ICCIDS],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        seen: dict[str, list[int]] = defaultdict(list)
        count = 0
        try:
            assert child.stdout is not None
            for raw in child.stdout:
                line = raw.decode().split()
                if line == ["ready"]:
                    continue
                iccid, value = line
                seen[iccid].append(int(value))
                count += 1
                if count >= SEEN_BEFORE_KILL:
                    break
            # Killed while its next transactions are in flight.
            child.send_signal(signal.SIGKILL)
            # What it printed before dying was handed out too.
            rest, errors = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        for raw in rest.decode().splitlines():
            iccid, value = raw.split()
            seen[iccid].append(int(value))
        self.assertEqual(child.returncode, -signal.SIGKILL, errors.decode()[-2000:])
        self.assertGreaterEqual(sum(map(len, seen.values())), SEEN_BEFORE_KILL)
        return seen

    def test_neverReusedAcrossKill(self) -> None:
        """Every value handed out before SIGKILL stays used after the reopen."""
        store = self._store()
        cards = [card(i, psk_identity=i.encode()) for i in ICCIDS]
        self.successResultOf(store.upsert_cards(cards))
        self.successResultOf(store.close())

        seen = self._run_and_kill()

        store = self._store()
        try:
            for iccid in ICCIDS:
                values = seen[iccid]
                self.assertEqual(len(values), len(set(values)), f"{iccid}: a value twice")
                stored = self.successResultOf(store.get_card(iccid)).ota_counter
                self.assertGreaterEqual(stored, max(values))
                after = [self.successResultOf(store.next_ota_counter(iccid)) for _ in range(3)]
                self.assertGreater(min(after), max(values), f"{iccid}: reused after the kill")
        finally:
            self.successResultOf(store.close())


class SqliteCounterCrashTests(_CrashMixin, SynchronousTestCase):
    """On the default store, a SQLite file in WAL mode with synchronous=FULL."""

    def setUp(self) -> None:
        self._url = f"sqlite:///{os.path.abspath(self.mktemp())}.db"


class PostgresCounterCrashTests(_CrashMixin, SynchronousTestCase):
    """On PostgreSQL, in a schema of the test's own."""

    skip = POSTGRES_SKIP

    def setUp(self) -> None:
        self.schema = Schema(self)
        self.addCleanup(self.schema.drop)
        self._url = self.schema.url


class PostgresCounterAcrossNodesTests(_StoreAccess, SynchronousTestCase):
    """Issue 9: the nodes of a cluster share one PostgreSQL database, and each
    allocation is one C{UPDATE ... RETURNING} committed before its value is
    used, so nodes never hand out one counter twice, even when one of them is
    killed mid-allocation while the others go on."""

    skip = POSTGRES_SKIP

    def setUp(self) -> None:
        self.schema = Schema(self)
        self.addCleanup(self.schema.drop)
        self._url = self.schema.url

    def test_neverReusedAcrossNodes(self) -> None:
        """Three allocating processes on one database, one killed with SIGKILL
        mid-stream and the others after: no value was handed out twice, by
        one node or by two, and the next values are above all of them."""
        store = self._store()
        self.successResultOf(store.upsert_cards([card(i, psk_identity=i.encode()) for i in ICCIDS]))
        self.successResultOf(store.close())
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.integration._counter_child", self.url(), *ICCIDS],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(3)
        ]
        seen: dict[str, list[int]] = defaultdict(list)
        try:
            first = children[0]
            assert first.stdout is not None
            count, pending, deadline = 0, b"", time.monotonic() + 120
            fd = first.stdout.fileno()
            while count < SEEN_BEFORE_KILL and time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 1.0)
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode().split()
                    if len(line) == 2:
                        seen[line[0]].append(int(line[1]))
                        count += 1
            self.assertGreaterEqual(count, SEEN_BEFORE_KILL, "the first node stopped allocating")
            first.send_signal(signal.SIGKILL)  # mid-allocation: others go on
            for child in children[1:]:
                child.send_signal(signal.SIGKILL)
            for child in children:
                rest, _ = child.communicate(timeout=60)
                for raw in rest.decode().splitlines():
                    line = raw.split()
                    if len(line) == 2:
                        seen[line[0]].append(int(line[1]))
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        self.assertGreater(sum(map(len, seen.values())), SEEN_BEFORE_KILL)
        store = self._store()
        try:
            for iccid in ICCIDS:
                values = seen[iccid]
                self.assertEqual(len(values), len(set(values)), f"{iccid}: a value twice")
                stored = self.successResultOf(store.get_card(iccid)).ota_counter
                self.assertGreaterEqual(stored, max(values))
                after = self.successResultOf(store.next_ota_counter(iccid))
                self.assertGreater(after, max(values), f"{iccid}: reused after the kill")
        finally:
            self.successResultOf(store.close())
