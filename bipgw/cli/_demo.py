# -*- test-case-name: tests.unit.cli.test_demo -*-
"""C{bipgw demo [DIR]}: the whole loop against a simulated fleet (L{bipgw.demo}).

The dispatcher (L{bipgw.cli._main}) adds the subcommand with L{add_parser}
and runs it with L{run}.  Progress and the summary go to standard output;
the gateway's and the fleet's own log goes to C{DIR/demo.log}, so the
terminal stays readable.  Exit status: 0 when every session and every
replayed script succeeded, 1 otherwise (the summary ends with the first
failure's trace), or when a step failed (one line on standard error says
which, e.g. that the checkout's C{examples/} is missing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import Deferred

__all__ = ["add_parser", "run"]

#: L{bipgw.demo.DEFAULT_REDIS} and L{bipgw.demo.DEFAULT_POSTGRES}, for the
#: help: importing L{bipgw.demo} here would install a reactor before twistd
#: chooses one (C{tests/unit/cli/test_console_script.py}); a test checks
#: they are the same.
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add C{demo} to the C{bipgw} subcommands (an C{add_subparsers} result)."""
    demo: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the whole loop against a simulated fleet",
        description="Generate a simulated fleet, set up a gateway for it, connect a platform"
        " client to its platform channel and, with every card, open a session and replay the"
        " example APDU scripts of the checkout (examples/); print progress and a summary."
        " Exit status 1 if a session or a script failed (the first failure's trace is shown).",
    )
    demo.add_argument(
        "directory",
        metavar="DIR",
        nargs="?",
        help="a new or empty directory for the fleet and the install (default: a temporary one)",
    )
    demo.add_argument("--cards", type=int, default=100, metavar="N", help="cards (default 100)")
    demo.add_argument(
        "--concurrency", type=int, default=50, metavar="N", help="sessions at once (default 50)"
    )
    demo.add_argument("--seed", type=int, help="reproducible card keys")
    demo.add_argument(
        "--derived-keys",
        action="store_true",
        help="no per-card secret in the vendor file: keys derived from master keys,"
        " then the first card's keys rotated over the air",
    )
    demo.add_argument(
        "--serve", action="store_true", help="keep the gateway and the fleet running (Ctrl-C stops)"
    )
    demo.add_argument(
        "--campaign",
        action="store_true",
        help="run one campaign over the fleet (one card in 20 faulty) and print its summary;"
        " exit 0 only if every card ended as expected",
    )
    nodes = demo.add_argument_group(
        "several nodes",
        "With --nodes N (2 or more), N gateway processes run as one cluster on Redis and"
        " PostgreSQL (docs/cluster.md); the demo creates a database of its own on the"
        " PostgreSQL server and drops it at the end.",
    )
    nodes.add_argument(
        "--nodes",
        type=int,
        default=1,
        metavar="N",
        help="gateway nodes, each its own process (default 1: one gateway, SQLite, no Redis)",
    )
    nodes.add_argument(
        "--redis", metavar="URL", help=f"the Redis the nodes share (default {DEFAULT_REDIS})"
    )
    nodes.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server the demo may create a database on, and the database to"
        f" connect to for that (default {DEFAULT_POSTGRES})",
    )
    return demo


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo the parsed C{args} describe on the global reactor; the exit status."""
    from twisted.internet.task import react
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from bipgw.demo import LOG_NAME, DemoError, DemoOptions, demo_directory, run_demo

    stdout = sys.stdout if out is None else out
    stderr = sys.stderr if err is None else err
    if args.nodes < 2 and (args.redis or args.postgres):
        stderr.write("bipgw: error: --redis and --postgres are for --nodes 2 or more\n")
        return 1
    try:
        base = demo_directory(Path(args.directory) if args.directory else None)
    except DemoError as e:
        stderr.write(f"bipgw: error: {e}\n")
        return 1
    log = open(base / LOG_NAME, "a", encoding="utf-8")  # noqa: SIM115 (open for the run)
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(log), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)]
            )
        ],
        redirectStandardIO=False,
    )
    stdout.write(f"log: {base / LOG_NAME}\n")
    options = DemoOptions(
        directory=base,
        cards=args.cards,
        concurrency=args.concurrency,
        seed=args.seed,
        serve=args.serve,
        derived_keys=args.derived_keys,
        campaign=args.campaign,
        nodes=args.nodes,
        redis=args.redis or DEFAULT_REDIS,
        postgres=args.postgres or DEFAULT_POSTGRES,
    )
    status = [1]

    def main(reactor: Any) -> Deferred[None]:
        stop: Deferred[None] = Deferred()

        async def go() -> None:
            try:
                summary = await run_demo(reactor, options, stdout, serving=stop)
            except DemoError as e:
                stderr.write(f"bipgw: error: {e}\n")
                return
            status[0] = 0 if summary.all_ok else 1

        done = Deferred.fromCoroutine(go())
        if options.serve:

            def interrupted() -> Deferred[None]:
                # Ctrl-C: let the demo stop the gateway and the fleet first.
                if not stop.called:
                    stop.callback(None)
                return waiter(done)

            reactor.addSystemEventTrigger("before", "shutdown", interrupted)
        return done

    try:
        react(main)
    except SystemExit:
        pass
    finally:
        log.close()
    return status[0]


def waiter(d: Deferred[None]) -> Deferred[None]:
    """A Deferred that fires (with C{None}) when C{d} does, leaving C{d} alone."""
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if not out.called:
            out.callback(None)
        return result

    d.addBoth(fire)
    return out
