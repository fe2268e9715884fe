# -*- test-case-name: tests.integration.test_replay_direct,tests.unit.client.test_replay -*-
"""C{bipgw replay SCRIPT}: run an APDU script against a card and check the answers.

  - through the gateway: C{bipgw replay SCRIPT --iccid N|--msisdn N
    --gateway ENDPOINT [--service NAME]}, a session on the platform channel,
    so the commands reach the card over the air as any platform's would;
  - straight into a simulated card: C{bipgw replay SCRIPT --direct
    FLEET_DIR --iccid N} (the C{direct} target plugin of simcard).

The trace is printed as the replay goes (C{--json} prints one JSON report
at the end instead).  Exit status: 0 when every command answered what the
script expects, 1 when one did not or the target failed during the run, 2
when the arguments or the script are wrong or the target cannot be opened
(nothing was sent then).  The script format is in docs/apdu-scripts.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from bipgw.client._replay import (
    IReplayTarget,
    ReplayReport,
    ReplayTargetError,
    find_target_factory,
    open_gateway_target,
    run_script,
)
from bipgw.client._replay_trace import TraceWriter, format_capdu, report_json
from bipgw.client._script import load_script, parse_variable
from bipgw.client._script_lines import ScriptError
from bipgw.client._script_model import Script
from bipgw.errors import BipGwError
from bipgw.keys import read_operator_file

__all__ = ["GATEWAY_ENV", "TOKEN_ENV", "add_parser", "run"]

GATEWAY_ENV: Final = "BIPGW_GATEWAY"
"""The environment variable giving the platform channel endpoint when C{--gateway} is not."""
TOKEN_ENV: Final = "BIPGW_PLATFORM_TOKEN"
"""The environment variable holding the platform API token when C{--token-file} is not given."""

_USAGE: Final = 2
_MAX_VAR_FILE: Final = 65535


class _UsageError(Exception):
    """Wrong arguments: exit status 2, nothing sent."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the C{replay} command to the C{bipgw} sub-command parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="run an APDU script against a card and check the answers",
        description="Run an APDU script (docs/apdu-scripts.md) against one card, through the"
        " gateway or straight into a simulated card, and check every answer. Exit status:"
        " 0 all matched, 1 a mismatch or the target failed, 2 bad arguments or script.",
    )
    p.add_argument("script", metavar="SCRIPT", help="the APDU script file")
    card = p.add_mutually_exclusive_group(required=True)
    card.add_argument("--iccid", metavar="N", help="the card's ICCID")
    card.add_argument("--msisdn", metavar="N", help="the card's MSISDN (gateway only)")
    p.add_argument(
        "--gateway",
        metavar="ENDPOINT",
        help=f"the platform channel's client endpoint string, e.g. tls:gw.example:7443"
        f" (default: ${GATEWAY_ENV})",
    )
    p.add_argument("--service", default="isd", help="the gateway service to use (default: isd)")
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file whose first line is the platform API token (default: ${TOKEN_ENV})",
    )
    p.add_argument("--ready-timeout", type=float, metavar="S", help="seconds for the card to come")
    p.add_argument("--command-timeout", type=float, metavar="S", help="seconds per command")
    p.add_argument(
        "--direct", metavar="FLEET_DIR", help="a simulated card of this fleet, no gateway"
    )
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=HEX",
        help="set a script variable (wins over the script's own set)",
    )
    p.add_argument(
        "--var-file",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="set a script variable to a binary file's bytes (a DER certificate...)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON report instead of a trace")
    p.add_argument("--keep-going", action="store_true", help="go on after a mismatch")
    p.add_argument("--full", action="store_true", help="show all data bytes in the trace")
    p.add_argument("--dry-run", action="store_true", help="check the script, send nothing")
    return p


def _prefixed(prefix: str, message: str) -> _UsageError:
    return _UsageError(prefix + message)


def _variables(args: argparse.Namespace) -> dict[str, bytes]:
    variables: dict[str, bytes] = {}
    for item in args.var:
        name, value = parse_variable(item)
        variables[name] = value
    for item in args.var_file:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise _UsageError(f"--var-file {item!r} is not NAME=FILE")
        name, _ = parse_variable(f"{name}=")
        refused = functools.partial(_prefixed, f"--var-file {name}: ")
        variables[name] = read_operator_file(path, _MAX_VAR_FILE, path, refused)
    return variables


def _token(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    if args.token_file is None:
        return environ.get(TOKEN_ENV) or None
    try:
        with open(args.token_file, encoding="utf-8") as f:
            first = f.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else str(e)
        raise _UsageError(f"cannot read the token file {args.token_file}: {reason}") from None
    if not first:
        raise _UsageError(f"the token file {args.token_file} is empty")
    return first


def _dry_run(script: Script, out: TextIO, limit: int | None) -> int:
    out.write(f"{script.name}: {len(script.commands)} commands, nothing sent\n")
    for c in script.commands:
        step = f"  ({c.step})" if c.step else ""
        expect = f"{c.sw}" + (f" data: {c.data}" if c.data is not None else "")
        out.write(f"#{c.index}  {c.location}{step}\n  >   {format_capdu(c.apdu, limit)}\n")
        out.write(f"  =>  {expect}\n")
    return 0


async def _replay(
    script: Script,
    target: IReplayTarget,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    timer: Callable[[], float],
) -> int:
    writer = TraceWriter(out.write, limit=None if args.full else 64)
    if not args.json:
        writer.header(script, target.description)
    try:
        report: ReplayReport = await run_script(
            script,
            target,
            timer=timer,
            keep_going=args.keep_going,
            observer=None if args.json else writer.outcome,
        )
    finally:
        try:
            await target.close()
        except Exception as e:
            err.write(f"bipgw replay: warning: closing the target failed: {e}\n")
    if args.json:
        out.write(json.dumps(report_json(report), indent=2) + "\n")
    else:
        writer.summary(report)
    return report.exit_code


def _direct(
    script: Script, args: argparse.Namespace, out: TextIO, err: TextIO, timer: Callable[[], float]
) -> int:
    if args.iccid is None:
        raise _UsageError("--direct needs --iccid (a simulated card is found by its ICCID)")
    factory = find_target_factory("direct")
    target = factory.open(args.direct, args.iccid)
    done = ensureDeferred(_replay(script, target, args, out, err, timer))
    return _wait(done)


def _wait(done: Deferred[int]) -> int:
    """The result of C{done}; runs the reactor only if it has not fired yet."""
    result: list[int | Failure] = []
    done.addBoth(result.append)
    if not result:  # pragma: no cover - the direct target answers at once
        from twisted.internet import reactor

        done.addBoth(lambda _: reactor.stop())
        reactor.run()
    outcome = result[0]
    if isinstance(outcome, Failure):
        outcome.raiseException()
    assert isinstance(outcome, int)
    return outcome


def _gateway(
    script: Script,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    timer: Callable[[], float],
) -> int:
    endpoint = args.gateway or environ.get(GATEWAY_ENV)
    if not endpoint:
        raise _UsageError(
            f"say where the card is: --gateway ENDPOINT (or ${GATEWAY_ENV}), or --direct FLEET_DIR"
        )
    token = _token(args, environ)
    from twisted.internet.task import react

    status = [_USAGE]

    async def go(reactor: Any) -> None:
        try:
            target = await open_gateway_target(
                reactor,
                endpoint,
                token=token,
                service=args.service,
                iccid=args.iccid,
                msisdn=args.msisdn,
                ready_timeout=args.ready_timeout,
                command_timeout=args.command_timeout,
            )
        except Exception as e:
            err.write(f"bipgw replay: error: cannot open a session with the card: {e}\n")
            return
        status[0] = await _replay(script, target, args, out, err, timer)

    try:
        react(lambda reactor: ensureDeferred(go(reactor)))
    except SystemExit:
        pass
    return status[0]


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    timer: Callable[[], float] = time.perf_counter,
) -> int:
    """Run C{bipgw replay} with parsed C{args}; return the exit status.

    @param out: where the trace or JSON report goes (default: standard output).
    @param err: where errors go (default: standard error).
    @param environ: for C{BIPGW_GATEWAY} and C{BIPGW_PLATFORM_TOKEN}.
    @param timer: the monotonic clock the elapsed times are read from.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    env = os.environ if environ is None else environ
    try:
        if args.direct is not None and args.gateway is not None:
            raise _UsageError("--direct and --gateway exclude each other")
        script = load_script(args.script, variables=_variables(args))
        if args.dry_run:
            return _dry_run(script, out, None if args.full else 64)
        if args.direct is not None:
            return _direct(script, args, out, err, timer)
        return _gateway(script, args, out, err, env, timer)
    except (_UsageError, ScriptError, ReplayTargetError) as e:
        err.write(f"bipgw replay: error: {e}\n")
        return _USAGE
    except BipGwError as e:
        err.write(f"bipgw replay: error: {e}\n")
        return 1
