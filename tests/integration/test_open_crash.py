"""No session a platform was told about is lost across C{kill -9}.

A child process (L{tests.integration._open_child}) opens sessions through
the core relay (what the platform channel and the HTTP API both use) with
the gateway's batching recorder over a SQLite file, and prints every
C{accepted} as the relay emits it; it is killed with SIGKILL mid-stream.
Reopening the database and running start-up recovery, every printed id must
have a row, and every row must be final with a recorded reason
(C{gateway-restart} for those the kill interrupted): nothing accepted is
lost without a recorded reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import SqlStore
from bipgw.store._recovery import end_sessions_left_open
from tests.unit.store import InlineReactor, InlineThreadPool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ACCEPTED_BEFORE_KILL = 300


class OpenCrashTests(SynchronousTestCase):
    """Kill the opening child mid-stream, recover, find every accepted session."""

    def setUp(self) -> None:
        self.url = f"sqlite:///{os.path.abspath(self.mktemp())}.db"

    def _store(self) -> SqlStore:
        opening = SqlStore.open(self.url, reactor=InlineReactor(), threadpool=InlineThreadPool())
        store: SqlStore = self.successResultOf(opening)
        return store

    def test_acceptedSurvivesKill(self) -> None:
        """Every id answered C{accepted} before SIGKILL is recorded, and ended with a reason."""
        self.successResultOf(self._store().close())  # the schema, before the child
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.integration._open_child", self.url],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        accepted: list[str] = []
        try:
            assert child.stdout is not None
            for raw in child.stdout:
                line = raw.decode().split()
                if line and line[0] == "accepted":
                    accepted.append(line[1])
                    if len(accepted) >= ACCEPTED_BEFORE_KILL:
                        break
            child.send_signal(signal.SIGKILL)
            rest, errors = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        lines = rest.decode().splitlines()
        accepted += [ln.split()[1] for ln in lines if ln.startswith("accepted")]
        self.assertEqual(child.returncode, -signal.SIGKILL, errors.decode()[-2000:])
        self.assertGreaterEqual(len(accepted), ACCEPTED_BEFORE_KILL, errors.decode()[-2000:])

        store = self._store()
        try:
            clock = Clock()
            clock.advance(2e9)  # after every session the child opened
            self.successResultOf(end_sessions_left_open(store, clock))
            restarted = 0
            for session in accepted:
                row = self.successResultOf(store.get_session(session))
                self.assertIsNotNone(row, f"accepted session {session} has no row")
                assert row is not None
                self.assertIn(row.state, ("closed", "failed"), session)
                if row.state == "failed":
                    self.assertTrue(row.reason, f"{session} failed without a reason")
                restarted += row.reason == "gateway-restart"
            self.assertGreater(restarted, 0)  # the kill did interrupt sessions
        finally:
            self.successResultOf(store.close())
