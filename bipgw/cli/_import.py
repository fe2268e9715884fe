# -*- test-case-name: tests.unit.cli.test_main -*-
"""C{bipgw import cards|msisdn FILE}: one data file into the configured database.

A card-vendor output file's secret columns are unwrapped with the
keystore's transport key and sealed under the root key; an MSISDN mapping
file is applied as it is.  The report printed names every line refused and
why; the exit status is 0 only when every line was applied.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import Deferred, ensureDeferred

import bipgw.cli._audit as _audit
from bipgw.cli._args import config_parent, config_path
from bipgw.config import Config
from bipgw.errors import BipGwError

__all__ = ["add_parser", "run", "run_import"]


def add_parser(commands: Any) -> None:
    """Add C{bipgw import KIND FILE} to the command's sub-parsers."""
    config_option = config_parent()
    load = commands.add_parser("import", help="import a data file", parents=[config_option])
    load_commands = load.add_subparsers(dest="import_kind", required=True, metavar="KIND")
    cards = load_commands.add_parser(
        "cards", help="a card-vendor output file", parents=[config_option]
    )
    cards.add_argument("file", metavar="FILE")
    cards.add_argument(
        "--all-or-nothing", action="store_true", help="apply nothing if any line is bad"
    )
    msisdn = load_commands.add_parser(
        "msisdn", help="an MSISDN mapping file", parents=[config_option]
    )
    msisdn.add_argument("file", metavar="FILE")
    msisdn.add_argument(
        "--all-or-nothing", action="store_true", help="apply nothing if any line is bad"
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]) -> int:
    """Run C{bipgw import cards|msisdn FILE}; the exit status."""
    from twisted.internet.task import react

    config = Config.from_file(config_path(args, env))
    status = 1

    def run(reactor: Any) -> Deferred[None]:
        async def go() -> None:
            nonlocal status
            try:
                status = await run_import(
                    reactor,
                    config,
                    args.import_kind,
                    Path(args.file),
                    all_or_nothing=args.all_or_nothing,
                    out=out,
                    environ=env,
                )
            except (BipGwError, OSError) as e:
                err.write(f"bipgw: error: {e}\n")

        return ensureDeferred(go())

    try:
        react(run)
    except SystemExit:
        pass  # react always exits; the status is the import's own
    return status


async def run_import(
    reactor: Any,
    config: Config,
    kind: str,
    path: Path,
    *,
    all_or_nothing: bool,
    out: TextIO,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Import one file into the configured database; return the exit status.

    0 when every line was accepted and applied, 1 otherwise (the report
    printed says which lines and why).

    @param kind: C{"cards"} (a card-vendor output file, whose secret columns
        are unwrapped with the keystore's transport key and sealed under the
        root key) or C{"msisdn"} (an MSISDN mapping file).
    """
    from bipgw.ingest import import_cards, import_msisdn, render_report
    from bipgw.store import open_store

    root = config.keys.load_root_key(environ)
    keystore = config.keys.open_keystore(root)
    store = await open_store(config.database.url, reactor=reactor)
    try:
        actor = _audit.cli_actor()
        if kind == "cards":
            report = await import_cards(
                store, keystore, root, path, all_or_nothing=all_or_nothing, actor=actor
            )
        else:
            report = await import_msisdn(store, path, all_or_nothing=all_or_nothing, actor=actor)
    finally:
        await store.close()
    out.write(render_report(report))
    return 0 if report.ok else 1
