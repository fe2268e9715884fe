# -*- test-case-name: tests.unit.fleet.test_cli -*-
"""The C{simfleet} command: make a simulated fleet, run it, look at it.

  - C{simfleet generate --cards N --out DIR [--seed S] [--admin-host H
    --admin-port P] [--algorithm aes|3des]}: a new fleet directory;
  - C{simfleet run DIR [--smsc tcp:2775] [--control ENDPOINT]}: run it (the
    same service as C{twistd -n simfleet --fleet DIR}) until Ctrl-C;
  - C{simfleet info DIR}: what a fleet directory holds.

Refusals are one line on standard error naming what is wrong, never a
traceback; the exit status is 1 (2 for usage mistakes, as argparse does).
Key material is never printed: transport keys are named by label and
check value.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from twisted.python import usage

from bipgw.keys import KeyAlgorithm, Secret, check_value
from simcard import tap
from simcard.fleet import (
    FleetAlgorithm,
    FleetConfig,
    FleetError,
    generate_fleet,
)
from simcard.state import FleetState, FleetStateError

__all__ = ["main"]

_PROGRESS_FROM = 2000
"""Fleets at least this big report progress on standard error."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simfleet",
        description="A simulated SIM fleet and SMSC for the BIP/OTA gateway (docs/simfleet.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="make a new fleet directory")
    generate.add_argument("--cards", type=int, required=True, metavar="N", help="how many cards")
    generate.add_argument("--out", required=True, metavar="DIR", help="a new directory")
    generate.add_argument("--seed", type=int, help="reproducible (test) keys from this seed")
    generate.add_argument(
        "--admin-host", default="127.0.0.1", help="the admin server the cards know by default"
    )
    generate.add_argument("--admin-port", type=int, default=8443, help="its port")
    generate.add_argument("--admin-uri", default="/admin", help="the path cards POST to")
    generate.add_argument(
        "--algorithm",
        choices=[a.value for a in FleetAlgorithm],
        default="aes",
        help="the OTA keys' algorithm",
    )
    generate.add_argument("--batch", default="B0001", help="the production batch name")
    generate.add_argument(
        "--derived-keys",
        action="store_true",
        help="keys derived (v2) by the gateway from master keys in gateway/masters/;"
        " the vendor file has no secret column",
    )

    run = commands.add_parser("run", help="run a fleet until interrupted")
    run.add_argument("directory", metavar="DIR")
    run.add_argument("--smsc", metavar="ENDPOINT", help="where the SMSC listens (tcp:2775)")
    run.add_argument("--control", metavar="ENDPOINT", help="open the control port here")

    info = commands.add_parser("info", help="describe a fleet directory")
    info.add_argument("directory", metavar="DIR")
    return parser


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run C{simfleet} with C{argv} (default: C{sys.argv[1:]}); return the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args, out, err)
        if args.command == "info":
            return _info(Path(args.directory), out)
        return _run(args, err)
    except (FleetError, usage.UsageError) as e:
        err.write(f"simfleet: error: {e}\n")
        return 1


def _generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    reported = [0]

    def progress(done: int, total: int) -> None:
        tenth = done * 10 // total
        if total >= _PROGRESS_FROM and tenth > reported[0]:
            reported[0] = tenth
            err.write(f"simfleet: {done}/{total} cards\n")
            err.flush()

    result = generate_fleet(
        args.out,
        cards=args.cards,
        seed=args.seed,
        admin_host=args.admin_host,
        admin_port=args.admin_port,
        admin_uri=args.admin_uri,
        algorithm=args.algorithm,
        batch=args.batch,
        progress=progress,
        derived_keys=args.derived_keys,
    )
    d = result.directory
    out.write(
        f"generated {result.cards} cards in {d} ({result.seconds:.1f} s)\n"
        f"  cards:          {result.cards_db}\n"
        f"  vendor file:    {result.vendor_file} (transport key {result.transport_label})\n"
        f"  MSISDN file:    {result.msisdn_file}\n"
        f"  transport key:  {result.transport_keys} (mode 0600)\n"
        f"  ESME password:  {d / 'gateway' / 'smpp.password'} (mode 0600)\n"
        f"run it with:      simfleet run {d}\n"
    )
    return 0


def _transport_kcv(path: Path) -> str:
    """The check value of the first transport key in C{transport-keys.toml}, or C{?}."""
    try:
        data = tomllib.loads(path.read_text(encoding="ascii"))
        key = Secret.from_hex(data["transport_key"][0]["key"])
        return check_value(key, KeyAlgorithm.AES_128)
    except Exception:
        return "?"


def _info(directory: Path, out: TextIO) -> int:
    path = directory / "fleet.toml"
    if not path.is_file():
        raise FleetError(f"{path}: no such file; is {directory} a fleet directory?")
    config = FleetConfig.from_file(path)
    db = config.fleet.cards_db
    if not db.is_file():
        raise FleetError(f"{db}: no such file (fleet.cards_db)")
    try:
        with FleetState.open(db) as state:
            iccids = state.iccids()
            first = state.load_card(iccids[0]) if iccids else None
    except FleetStateError as e:
        raise FleetError(str(e)) from None
    lines = [
        f"fleet:          {directory} ({config.fleet.name})",
        f"cards:          {len(iccids)} in {db} ({db.stat().st_size / 1e6:.1f} MB)",
    ]
    if first is not None:
        ident = first.identity
        lines.append(
            f"first card:     ICCID {ident.iccid} IMSI {ident.imsi} MSISDN {ident.msisdn or '-'}"
        )
        lines.append(f"last card:      ICCID {iccids[-1]}")
    g = config.generated
    if g is not None:
        seed = f"seed {g.seed}" if g.seed is not None else "random keys"
        kcv = _transport_kcv(directory / "gateway" / "transport-keys.toml")
        lines += [
            f"generated:      {g.created} ({seed}), {g.cards} cards, batch {g.batch},"
            f" OTA {g.algorithm}",
            f"admin default:  {g.admin_host}:{g.admin_port}{g.admin_uri}",
            f"vendor file:    {directory / g.vendor_file} (transport key {g.transport_key},"
            f" KCV {kcv})",
            f"MSISDN file:    {directory / g.msisdn_file}",
        ]
    smsc = config.smsc
    lines += [
        f"SMSC:           {smsc.listen}, ESME account(s): {', '.join(smsc.accounts)}",
        f"live cards:     at most {config.fleet.live_cards};"
        f" sessions at once: {config.fleet.max_sessions}",
        f"faults:         fleet-wide {config.faults.describe()};"
        f" {len(config.card_faults)} card(s) with their own",
        f"control port:   {config.control_listen or 'none'}",
    ]
    out.write("\n".join(lines) + "\n")
    return 0


def _run(args: argparse.Namespace, err: TextIO) -> int:
    from twisted.internet import reactor as installed
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    reactor: Any = installed
    argv = ["--fleet", args.directory]
    if args.smsc:
        argv += ["--smsc", args.smsc]
    if args.control:
        argv += ["--control", args.control]
    options = tap.Options()
    options.parseOptions(argv)
    service = tap.makeService(options, reactor)
    assert options.config is not None
    listen = options["smsc"] or options.config.smsc.listen
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(err),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)],
            )
        ],
        redirectStandardIO=False,
    )
    status: list[int] = [0]

    def fail(message: str) -> None:
        err.write(f"simfleet: error: {message}\n")
        status[0] = 1
        if reactor.running:
            reactor.stop()

    def start() -> None:
        try:
            service.startService()
        except FleetError as e:
            fail(str(e))
            return
        service.smsc_listener.when_listening().addErrback(
            lambda f: fail(f"the SMSC cannot listen on {listen}: {f.getErrorMessage()}")
        )

    def stop() -> Any:
        return service.stopService() if service.running else None

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    return status[0]


if __name__ == "__main__":
    sys.exit(main())
