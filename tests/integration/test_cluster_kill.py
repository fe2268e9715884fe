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

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.app import build_gateway
from bipgw.config import Config, init_install
from bipgw.core import SessionState
from bipgw.keys import add_transport_key
from simcard.fleet import generate_fleet
from tests.integration._redis_server import RedisServer, free_port
from tests.integration.gateway_loop import FAST_SESSIONS, gateway_toml
from tests.integration.test_store_postgres import SKIP as POSTGRES_SKIP
from tests.integration.test_store_postgres import _Schema

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class KillTests(TestCase):
    """kill -9 of a node process (module docstring)."""

    timeout = 120
    skip = POSTGRES_SKIP

    async def test_killedNodeNoticedAndItsSessionEnded(self) -> None:
        """The killed node's session ends with node-lost within 10 s of its
        last heartbeat (plus the time to notice), and its card is free."""
        directory = Path(self.mktemp())
        redis = RedisServer()
        self.addCleanup(redis.stop)
        redis.start()
        schema = _Schema(self)
        self.addCleanup(schema.drop)
        generated = generate_fleet(directory / "fleet", cards=1, seed=9)
        sessions = dict(FAST_SESSIONS, push_timeout=600, card_timeout=600, queue_timeout=60)
        smsc = free_port()  # nobody listens: pushes wait for a bind
        configs = {}
        for name in ("gw-live", "gw-doomed"):
            install = directory / name
            if name == "gw-live":
                init_install(
                    install, password_source=generated.directory / "gateway" / "smpp.password"
                )
            else:
                shutil.copytree(directory / "gw-live", install)
            extra = (
                f'[database]\nurl = "{schema.url}"\n'
                f'[cluster]\nredis = "{redis.url}"\nnode = "{name}"\n'
            )
            (install / "bipgw.toml").write_text(gateway_toml(smsc, sessions, extra))
            configs[name] = install / "bipgw.toml"
        config = Config.from_file(configs["gw-live"])
        keystore = config.keys.open_keystore(config.keys.load_root_key({}))
        key_file = generated.directory / "gateway" / f"{generated.transport_label}.key"
        add_transport_key(keystore, generated.transport_label, key_file)
        live = build_gateway(config, reactor, environ={}, exit_on_failure=False)
        live.startService()
        self.addCleanup(live.stopService)
        await live.when_ready()
        assert (await live.import_cards(generated.vendor_file)).ok
        assert (await live.import_msisdn(generated.msisdn_file)).ok
        [card] = await live.store.list_cards()

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration._cluster_child",
                str(configs["gw-doomed"].resolve()),
                card.iccid,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: child.poll() is None and child.kill())
        line = await deferLater(reactor, 0, lambda: b"")
        deadline = time.monotonic() + 60
        while not line.startswith(b"session ") and time.monotonic() < deadline:
            line = await _read_line(child)
        self.assertTrue(
            line.startswith(b"session "),
            child.stderr.read().decode()[-2000:] if child.poll() is not None else "",
        )
        session_id = line.split()[1].decode()
        row = await live.store.get_session(session_id)
        self.assertIsNone(row.ended_at, (row.state, row.reason, row.detail))

        # The live node's session for the same card waits: the doomed node holds it.
        waiting = live.open_session(card.iccid, "isd")
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


def _read_line(child: subprocess.Popen[bytes]) -> Any:
    """The child's next line, read in a thread (the reactor keeps running)."""
    from twisted.internet.threads import deferToThread

    assert child.stdout is not None
    return deferToThread(child.stdout.readline)
