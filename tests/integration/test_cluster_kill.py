"""A gateway node killed with SIGKILL: noticed, its session ended with node-lost, its card freed.

A live node (in this process) and a doomed node (a child process,
L{tests.integration._cluster_child}) share a PostgreSQL schema and a
redis-server of the test's own.  The doomed node opens a session (no SMSC
answers: the session waits for its push) and is killed with SIGKILL.  The
live node notices within the node timeout, ends the session in the shared
database with C{node-lost}, and its own session for the same card gets the
card once the dead node's lock has expired.
"""

from __future__ import annotations

import signal
import sys
import time
from subprocess import PIPE

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.core import SessionState
from tests.integration._cluster_setup import ClusterBed, read_line, spawn
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration.gateway_loop import FAST_SESSIONS

pytestmark = pytest.mark.integration


class KillTests(TestCase):
    """kill -9 of a node process (module docstring)."""

    timeout = 120
    skip = POSTGRES_SKIP

    async def test_killedNodeNoticedAndItsSessionEnded(self) -> None:
        """The killed node's session ends with node-lost within 10 s of its
        last heartbeat (plus the time to notice), and its card is free."""
        # No fleet: nobody listens on its SMSC port, so pushes wait for a bind.
        bed = await ClusterBed.create(self, cards=1, seed=9, fleet=False)
        sessions = dict(FAST_SESSIONS, push_timeout=600, card_timeout=600, queue_timeout=60)
        configs = {name: bed.install(name, sessions) for name in ("gw-live", "gw-doomed")}
        live = await bed.start_gateway(configs["gw-live"])
        [iccid] = await bed.load_fleet(live)
        command = [sys.executable, "-m", "tests.integration._cluster_child"]
        child = spawn(self, [*command, str(configs["gw-doomed"]), iccid], stdout=PIPE, stderr=PIPE)
        line = await deferLater(reactor, 0, lambda: b"")
        deadline = time.monotonic() + 60
        while not line.startswith(b"session ") and time.monotonic() < deadline:
            line = await read_line(child)
            if not line and child.poll() is not None:
                break
        self.assertTrue(
            line.startswith(b"session "),
            child.stderr.read().decode()[-2000:] if child.poll() is not None else "",
        )
        session_id = line.split()[1].decode()
        row = await live.store.get_session(session_id)
        self.assertIsNone(row.ended_at, (row.state, row.reason, row.detail))

        # The live node's session for the same card waits: the doomed node holds it.
        waiting = live.open_session(iccid, "isd")
        waiting.ready.addErrback(lambda _: None)
        await deferLater(reactor, 1.5, lambda: None)
        self.assertIs(waiting.status().state, SessionState.REQUESTED)

        child.send_signal(signal.SIGKILL)
        child.wait()
        killed = time.monotonic()
        while time.monotonic() - killed < 20:
            row = await live.store.get_session(session_id)
            if row.ended_at is not None:
                break
            await deferLater(reactor, 0.5, lambda: None)
        noticed = time.monotonic() - killed
        self.assertEqual((row.state, row.reason), ("failed", "node-lost"))
        self.assertIn("gw-doomed", row.detail)
        self.assertLessEqual(noticed, 12.0)
        while waiting.status().state is SessionState.REQUESTED and time.monotonic() - killed < 20:
            await deferLater(reactor, 0.5, lambda: None)
        self.assertIs(waiting.status().state, SessionState.PUSHING)
        live.engine.stop()
