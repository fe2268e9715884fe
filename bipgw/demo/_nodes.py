# -*- test-case-name: tests.integration.test_demo_nodes -*-
"""The gateway nodes of C{bipgw demo --nodes N}: one C{twistd -n bipgw} process each.

Every node gets an install of its own (L{node_install}): a copy of the
demo's first install (so one root key and one keystore: every node opens
the same sealed card keys), with its own admin, platform-channel and
metrics ports on 127.0.0.1, the shared PostgreSQL database and a
C{[cluster]} table naming the shared Redis and the node.  The last node's
pushes name the first node's admin address (C{[cluster] admin_host}/
C{admin_port}): its cards connect to a node that does not own their
session, which relays them (docs/cluster.md).

L{NodeProcess} starts the process, waits for its C{/readyz} (database,
SMSC bind and listeners), reads its C{/metrics} and its CPU time, and stops
it (C{SIGTERM}, then C{SIGKILL} if it lingers).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from bipgw.demo._options import DemoError

__all__ = ["NodeProcess", "node_install", "node_names", "parse_metrics"]

_LISTEN = 'listen = "tcp:{port}:interface=127.0.0.1"'


def node_names(count: int) -> list[str]:
    """The nodes' names: C{gw-1} ... C{gw-N}."""
    return [f"gw-{i}" for i in range(1, count + 1)]


def node_install(
    template: Path,
    target: Path,
    *,
    name: str,
    ports: dict[str, int],
    template_ports: dict[str, int],
    database: str,
    redis: str,
    advertised_port: int,
) -> Path:
    """Copy the install C{template} to C{target} and make it node C{name}'s; its
    configuration file.

    @param ports: the node's own C{admin}, C{platform} and C{metrics} ports.
    @param template_ports: the C{admin} and C{platform} ports of the template.
    @param advertised_port: the admin port its pushes name (its own, or
        another node's for the wrong-node cards).
    """
    shutil.copytree(template, target, ignore=shutil.ignore_patterns("data", "*.log"))
    config = target / "bipgw.toml"
    text = config.read_text(encoding="utf-8")
    for what in ("admin", "platform"):
        old = _LISTEN.format(port=template_ports[what])
        if text.count(old) != 1:
            raise DemoError(f"{config}: no single {what} listener line to give {name} its port")
        text = text.replace(old, _LISTEN.format(port=ports[what]))
    text, found = re.subn(r'(?m)^node_id = ".*"$', f'node_id = "{name}"', text, count=1)
    if found != 1 or text.count("[database]\n") != 1:
        raise DemoError(f"{config}: no node_id line or [database] table to fill in")
    text = text.replace("[database]\n", f'[database]\nurl = "{database}"\n')
    text += (
        "\n[metrics]\n# /metrics and /readyz: the demo waits for and counts with them.\n"
        f"{_LISTEN.format(port=ports['metrics'])}\n"
        "\n[cluster]\n# One node of the demo's cluster (docs/cluster.md).\n"
        f'redis = "{redis}"\nnode = "{name}"\n'
        f'admin_host = "127.0.0.1"\nadmin_port = {advertised_port}\n'
    )
    config.write_text(text, encoding="utf-8")
    return config


def _twistd() -> list[str]:
    """How to run twistd: the script next to this Python, else its module."""
    beside = Path(sys.executable).with_name("twistd")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus' text format as C{{'name{labels}': value}} (comments skipped)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            found[key] = float(value)
        except ValueError:
            continue
    return found


class _Watch(ProcessProtocol):
    """Knows when the process ended, and with which exit code."""

    def __init__(self) -> None:
        self.ended: Deferred[int | None] = Deferred()
        self.code: int | None = None
        self.signal: int | None = None
        self.waiters: list[Deferred[None]] = []

    def processEnded(self, reason: Failure) -> None:
        """Remember the exit code; fire L{ended} and the waiters."""
        self.code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.signal = getattr(reason.value, "signal", None)
        self.ended.callback(self.code)
        for waiter in self.waiters:
            if not waiter.called:
                waiter.callback(None)


class NodeProcess:
    """One node's C{twistd -n bipgw} process.

    @ivar name: the node's name.
    @ivar config: its configuration file.
    @ivar ports: its C{admin}, C{platform} and C{metrics} ports.
    @ivar twistd_options: more options for twistd (the benchmarks' C{--profile}).
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        config: Path,
        ports: dict[str, int],
        *,
        twistd_options: tuple[str, ...] = (),
    ) -> None:
        self.reactor = reactor
        self.twistd_options = twistd_options
        self.name = name
        self.config = config
        self.ports = ports
        self.log = config.parent / "node.log"
        self._watch = _Watch()
        self._transport: Any = None

    @property
    def command(self) -> str:
        """The command the node runs, for the terminal."""
        return f"twistd -n --logfile {self.log} bipgw --config {self.config}"

    def start(self) -> None:
        """Start the process (its log in C{node.log} beside its configuration)."""
        argv = [
            *_twistd(),
            "-n",
            *self.twistd_options,
            "--logfile",
            str(self.log),
            "--pidfile",
            str(self.config.parent / "twistd.pid"),
            "bipgw",
            "--config",
            str(self.config),
        ]
        self._transport = self.reactor.spawnProcess(
            self._watch, argv[0], argv, env=dict(os.environ), path=str(self.config.parent)
        )

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return None if self._transport is None else self._transport.pid

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the node's log, for an error message."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def get(self, path: str) -> tuple[int, str]:
        """C{GET} C{path} on the node's metrics listener: the status and body."""
        import treq

        response = await treq.get(
            f"http://127.0.0.1:{self.ports['metrics']}{path}", timeout=5, persistent=False
        )
        body = await response.text()
        return int(response.code), str(body)

    async def ready(self, timeout: float) -> None:
        """Wait until the node's C{/readyz} answers 200.

        @raise DemoError: the process ended, or it was not ready in time
            (with the end of its log).
        """
        deadline = self.reactor.seconds() + timeout
        while True:
            if self._watch.ended.called:
                raise DemoError(
                    f"node {self.name} exited before it was ready; the end of {self.log}:\n"
                    + self.log_tail()
                )
            try:
                code, _ = await self.get("/readyz")
                if code == 200:
                    return
            except Exception:
                pass  # not listening yet
            if self.reactor.seconds() > deadline:
                raise DemoError(
                    f"node {self.name} was not ready in {timeout:g} s; the end of {self.log}:\n"
                    + self.log_tail()
                )
            await deferLater(self.reactor, 0.5, lambda: None)

    async def metrics(self) -> dict[str, float]:
        """The node's C{/metrics}, parsed (L{parse_metrics})."""
        code, body = await self.get("/metrics")
        if code != 200:
            raise DemoError(f"node {self.name}'s /metrics answered {code}")
        return parse_metrics(body)

    def cpu_seconds(self) -> float | None:
        """The process's CPU time so far (user + system), or C{None} when the
        platform has no C{/proc}."""
        pid = self.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return None
        # After the command's ")": state is field 3, utime 14 and stime 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self, grace: float = 20.0) -> str:
        """Stop the node (C{SIGTERM}: it leaves the cluster cleanly and twistd
        ends by that signal), killing it if it has not exited after C{grace}
        seconds; how it ended, in words."""
        if self._transport is None:
            return "not started"
        killed = False
        for signal, wait in (("TERM", grace), ("KILL", 5.0)):
            if self._watch.ended.called:
                break
            try:
                self._transport.signalProcess(signal)
            except ProcessExitedAlready:
                break
            killed = signal == "KILL"
            waited: Deferred[None] = Deferred()
            self._watch.waiters.append(waited)
            timer = self.reactor.callLater(wait, lambda d=waited: d.called or d.callback(None))
            await waited
            if timer.active():
                timer.cancel()
        if killed:
            return f"killed after {grace:g} s"
        if self._watch.code is not None:
            return f"exit {self._watch.code}"
        return "stopped by SIGTERM" if self._watch.signal == 15 else f"signal {self._watch.signal}"
