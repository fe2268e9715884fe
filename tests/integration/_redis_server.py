"""A redis-server of the test's own, on a free port, that the test may kill and restart.

The machine's Redis (127.0.0.1:6379) is shared; a test that restarts Redis
or fills it runs its own.  Without C{redis-server} on the PATH the test is
skipped, loudly, except under CI (C{CI} set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SkipTest

IN_CI = bool(os.environ.get("CI"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One C{redis-server} process: L{start}, L{kill} (SIGKILL), L{start} again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            why = "redis-server is not installed (apt-get install redis-server)"
            if IN_CI:
                raise RuntimeError(why)
            raise SkipTest(why)
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bipgw-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server; the first time, on another free port if its own
        was taken meanwhile (a port is free when chosen, not when bound); once
        started, always on the same port (the nodes were told it)."""
        for _ in range(1 if self._started else 5):
            if self._launch():
                self._started = True
                return
            if self._started:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def _launch(self) -> bool:
        process = self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.05)
        self.kill()  # it exited (its port was taken), or never answered
        return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_redis(case: Any) -> RedisServer:
    """A redis-server of C{case}'s own, started, stopped after its cleanups."""
    redis = RedisServer()
    case.addCleanup(redis.stop)
    redis.start()
    return redis
