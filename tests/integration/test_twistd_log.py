"""C{[log]} under a real C{twistd -n bipgw}: the level and the JSON format apply
to every line the process writes, twistd's own included."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import KeyStore, RootKey, Secret
from tests.unit.config import private_directory, write

pytestmark = pytest.mark.integration

#: The gateway's own line once everything listens (bipgw.app).
_READY = "ready"
_TIMEOUT = 60.0


def _closed_port() -> int:
    """A local TCP port nothing listens on (the SMSC the gateway keeps retrying)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _config(directory: Path, level: str) -> Path:
    root = RootKey(Secret(bytes(range(32))))
    root.save(directory / "root.key")
    KeyStore.create(directory / "keystore.json", root)
    return write(
        directory,
        "bipgw.toml",
        f"""\
[database]
url = "memory:"

[smpp]
endpoint = "tcp:host=127.0.0.1:port={_closed_port()}"
system_id = "bipgw"
password = "pw"
source_address = "12345"

[admin]
listen = "tcp:0:interface=127.0.0.1"
public_host = "192.0.2.10"
public_port = 8443

[services.isd]

[log]
level = "{level}"
format = "json"
""",
    )


def _run_twistd(case: SynchronousTestCase, level: str) -> list[dict[str, Any]]:
    """Run C{twistd -n bipgw} until the gateway is ready, stop it with SIGTERM,
    and return its standard output, each line read as JSON."""
    directory = private_directory(case)
    config = _config(directory, level)
    out_path, err_path = directory / "out.log", directory / "err.log"
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(
            [*command, "-n", "--pidfile=", "bipgw", "--config", str(config)],
            stdout=out,
            stderr=err,
            cwd=directory,
        )
        try:
            deadline = time.monotonic() + _TIMEOUT
            while _READY not in out_path.read_text() and process.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=_TIMEOUT)
    text = out_path.read_text()
    # twistd ends a run stopped by SIGTERM by sending itself that signal again.
    case.assertIn(status, (0, -signal.SIGTERM), f"twistd failed:\n{err_path.read_text()}\n{text}")
    case.assertIn(_READY, text, "the gateway never said it was ready")
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            event = json.loads(line)
        except ValueError:
            case.fail(f"line {number} is not JSON: {line!r}")
        case.assertIsInstance(event, dict)
        events.append(event)
    return events


def _levels(events: list[dict[str, Any]]) -> set[str]:
    return {event["log_level"]["name"] for event in events}


class TwistdLogTests(SynchronousTestCase):
    """format = "json" and level are what twistd -n bipgw writes."""

    def test_jsonAtInfo(self) -> None:
        """At level info every line is a JSON object, twistd's start-up and
        shut-down lines included, and no debug event is written."""
        events = _run_twistd(self, "info")
        formats = [event.get("log_format", "") for event in events]
        self.assertTrue(any("starting up" in f for f in formats), formats)
        self.assertTrue(any("Server Shut Down" in f for f in formats), formats)
        self.assertNotIn("debug", _levels(events))
        self.assertFalse(any(f.startswith("configuration ") for f in formats), formats)

    def test_debugWritten(self) -> None:
        """At level debug the debug events appear (the one makeService logs at
        least), so the level, not the lack of events, kept them out above."""
        events = _run_twistd(self, "debug")
        debug = [event for event in events if event["log_level"]["name"] == "debug"]
        self.assertTrue(
            any(event.get("output_format") == "json" for event in debug),
            [event.get("log_format") for event in debug],
        )
