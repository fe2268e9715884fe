"""What the benchmark scripts share around a run: the work directory, the log, child processes.

Each script (C{bench.gateway}, C{bench.platform}, C{bench.push},
C{bench.soak}, C{bench.campaign}) runs the gateway in this process with its
log in a work directory, and some drive it from child processes that
print their figures as one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)


@contextmanager
def work_directory(
    given: str | None,
    prefix: str,
    *,
    level: LogLevel = LogLevel.warn,
    line_buffered: bool = False,
    contents: str = "gateway.log, fleet.log",
) -> Iterator[Path]:
    """The run's work directory, with this process's log in its C{gateway.log}.

    Prints the machine line and the directory; a temporary directory (when
    C{given} is C{None}) is removed afterwards, a given one is kept.

    @param level: the lowest level written to the log.
    @param line_buffered: write the log line by line (for a run that
        measures it while it grows).
    @param contents: what the printed line says is in the directory.
    """
    from bench.gateway import _machine

    base = Path(given) if given else Path(tempfile.mkdtemp(prefix=prefix))
    base.mkdir(parents=True, exist_ok=True)
    log = open(base / "gateway.log", "a", buffering=1 if line_buffered else -1)  # noqa: SIM115
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(log), [LogLevelFilterPredicate(level)])],
        redirectStandardIO=False,
    )
    print(_machine(), flush=True)
    print(f"work directory {base} ({contents})", flush=True)
    try:
        yield base
    finally:
        log.close()
        if not given:
            shutil.rmtree(base, ignore_errors=True)


class JsonLineChild(ProcessProtocol):
    """A child process whose last stdout line is its figures, as JSON.

    @ivar ended: fires with those figures, or fails with the child's stderr.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.out = io.BytesIO()
        self.err = io.BytesIO()
        self.ended: Deferred[dict[str, Any]] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out.write(data)

    def errReceived(self, data: bytes) -> None:
        self.err.write(data)

    def processEnded(self, reason: Any) -> None:
        lines = self.out.getvalue().decode().strip().splitlines()
        try:
            self.ended.callback(json.loads(lines[-1]))
        except (IndexError, ValueError):
            self.ended.errback(RuntimeError(f"{self.name} failed:\n{self.err.getvalue().decode()}"))


def spawn_json_child(reactor: Any, name: str, argv: Sequence[str]) -> JsonLineChild:
    """Start C{argv} (a Python command line) with this process's C{sys.path}."""
    child = JsonLineChild(name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    reactor.spawnProcess(child, argv[0], list(argv), env=env, path=os.getcwd())
    return child


async def open_front_doors(reactor: Any, gateway: Any, config: Any, fronts: list[Any]) -> list[int]:
    """Start the front doors C{config} names on C{gateway}; their ports, in order.

    The doors are appended to C{fronts} as they are built, so the caller
    stops them even when one fails to listen.
    """
    from bipgw.app import front_doors

    fronts.extend(front_doors(config, gateway.engine, gateway.store, reactor))
    for front in fronts:
        front.startService()
    return [int((await f.when_listening()).getHost().port) for f in fronts]


async def add_isd_tenant(
    store: Any, base: Path, tenant: str, token: str, limits: Sequence[str] = ()
) -> None:
    """C{bipgw tenant add TENANT} with C{token} (and C{limits}), granted the ISD service."""
    from bipgw.cli._tenants import add_parser, execute

    token_file = base / "token"
    token_file.write_text(token + "\n")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    for argv in (
        ["tenant", "add", tenant, "--token-file", str(token_file), *limits],
        ["service", "add", "isd", "--tenant", tenant, "--isd-commands", "all"],
    ):
        await execute(store, parser.parse_args(argv), io.StringIO(), sys.stderr)
