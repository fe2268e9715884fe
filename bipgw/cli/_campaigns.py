# -*- test-case-name: tests.integration.test_campaigns -*-
"""C{bipgw campaign ...}: run one APDU script on many cards, through a running gateway.

A campaign runs inside the gateway (it must keep going while nobody
watches, and after a restart), so this command talks to the running
gateway's HTTP API (C{[http_api]}) as a tenant, with the tenant's token,
through the SDK (L{bipgw.client.CampaignClient}) — exactly what a
platform's own code does:

  - C{bipgw campaign create SCRIPT --service S (--targets FILE | --iccid N ... | --batch B)
    [--rate R --concurrency C --attempts N --backoff S --window HH:MM-HH:MM
    --idempotent --start]}: prints the campaign id;
  - C{bipgw campaign start|pause|resume|cancel ID};
  - C{bipgw campaign status ID [--follow]}: counts per state (C{--follow}:
    a live progress bar until it ends);
  - C{bipgw campaign list};
  - C{bipgw campaign export ID [--format csv|json] [--output FILE]}: every
    card's state, failure reason and R-APDUs.

Where: C{--api URL} (or C{$BIPGW_API}), the token from C{--token-file}
(or C{$BIPGW_PLATFORM_TOKEN}).  Exit status: 0 done, 1 refused by the
gateway (the message says why), 2 bad arguments; C{status --follow} exits
0 only when every card succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TextIO

from twisted.internet.defer import ensureDeferred

from bipgw.client._campaign import (
    CampaignApiError,
    CampaignClient,
    read_targets,
    write_csv,
    write_json,
)
from bipgw.keys import read_operator_file

__all__ = ["API_ENV", "add_parser", "progress_line", "run"]

API_ENV: Final = "BIPGW_API"
"""The environment variable giving the HTTP API's base URL when C{--api} is not."""
TOKEN_ENV: Final = "BIPGW_PLATFORM_TOKEN"
_MAX_SCRIPT: Final = 1 << 20


class _UsageError(Exception):
    """Wrong arguments: exit status 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the C{campaign} command to the C{bipgw} sub-command parsers."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--api", metavar="URL", help=f"the HTTP API, e.g. https://gw:8443 (default: ${API_ENV})"
    )
    where.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file whose first line is the tenant's token (default: ${TOKEN_ENV})",
    )
    p: argparse.ArgumentParser = subparsers.add_parser(
        "campaign",
        help="run one APDU script on many cards (through the running gateway)",
        description="Campaigns: one APDU script on many cards, paced, retried, resumed after a"
        " restart. Talks to the running gateway's HTTP API as a tenant (docs/campaigns.md).",
    )
    actions = p.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="define a campaign", parents=[where])
    create.add_argument("script", metavar="SCRIPT", help="the APDU script file (no include)")
    create.add_argument("--name", help="a label (default: the script's file name)")
    create.add_argument("--service", required=True, help="the service every session uses")
    create.add_argument(
        "--targets", metavar="FILE", help="ICCIDs one a line, or CSV with an ICCID or MSISDN column"
    )
    create.add_argument(
        "--iccid", action="append", default=[], metavar="N", help="a card (repeatable)"
    )
    create.add_argument(
        "--msisdn", action="append", default=[], metavar="N", help="a card (repeatable)"
    )
    create.add_argument("--batch", help="every card of this vendor batch")
    create.add_argument("--rate", type=float, help="sessions started per second (default 10)")
    create.add_argument("--concurrency", type=int, help="sessions open at once (default 10)")
    create.add_argument(
        "--burst", type=int, help="sessions started at once after a pause (default 1)"
    )
    create.add_argument("--attempts", type=int, help="tries per card (default 3)")
    create.add_argument("--backoff", type=float, help="seconds before the 2nd try (default 60)")
    create.add_argument("--factor", type=float, help="backoff growth per try (default 2)")
    create.add_argument(
        "--max-backoff", type=float, help="longest wait between tries (default 3600)"
    )
    create.add_argument(
        "--give-up",
        action="append",
        metavar="REASON",
        help="a failure reason never retried (repeatable; replaces the defaults)",
    )
    create.add_argument(
        "--window",
        action="append",
        default=[],
        metavar="HH:MM-HH:MM",
        help="UTC window for new cards (repeatable)",
    )
    create.add_argument(
        "--idempotent", action="store_true", help="the script may run twice on a card"
    )
    create.add_argument("--start", action="store_true", help="start it at once")
    for name, text in (
        ("start", "start a created campaign"),
        ("pause", "start no new card"),
        ("resume", "start new cards again"),
        ("cancel", "stop for good"),
    ):
        action = actions.add_parser(name, help=text, parents=[where])
        action.add_argument("id", metavar="ID")
    status = actions.add_parser("status", help="a campaign's progress", parents=[where])
    status.add_argument("id", metavar="ID")
    status.add_argument("--follow", action="store_true", help="a live progress bar until it ends")
    status.add_argument("--every", type=float, default=1.0, help=argparse.SUPPRESS)
    actions.add_parser("list", help="the tenant's campaigns", parents=[where])
    export = actions.add_parser("export", help="every card's result", parents=[where])
    export.add_argument("id", metavar="ID")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument(
        "--output", "-o", metavar="FILE", help="write there (default: standard output)"
    )
    return p


def _client(args: argparse.Namespace, environ: Mapping[str, str], reactor: Any) -> CampaignClient:
    api = args.api or environ.get(API_ENV)
    if not api:
        raise _UsageError(f"say where the gateway's HTTP API is: --api URL (or ${API_ENV})")
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.readline(4096).strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else str(e)
            raise _UsageError(f"cannot read the token file {args.token_file}: {reason}") from None
    else:
        token = environ.get(TOKEN_ENV, "")
    if not token:
        raise _UsageError(f"give the tenant's token: --token-file FILE (or ${TOKEN_ENV})")
    return CampaignClient(api, token, reactor=reactor)


def progress_line(status: Mapping[str, Any], width: int = 30) -> str:
    """One line of progress: a bar of the cards that ended, and the counts."""
    counts = status.get("counts", {})
    total = max(1, int(status.get("cards", 0)))
    ended = sum(counts.get(k, 0) for k in ("succeeded", "failed", "interrupted", "cancelled"))
    filled = round(width * ended / total)
    bar = "#" * filled + "." * (width - filled)
    shown = ", ".join(
        f"{k} {counts[k]}"
        for k in ("succeeded", "failed", "interrupted", "cancelled", "running", "pending")
        if counts.get(k)
    )
    return (
        f"[{bar}] {ended}/{status.get('cards', 0)} {status.get('state')}: {shown or 'no card yet'}"
    )


def _create_body(args: argparse.Namespace) -> dict[str, Any]:
    data = read_operator_file(args.script, _MAX_SCRIPT, f"the script {args.script}", _UsageError)
    try:
        script = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _UsageError(f"the script {args.script} is not UTF-8 text") from None
    targets: list[Any] = []
    if args.targets is not None:
        try:
            with open(args.targets, encoding="utf-8") as f:
                targets = read_targets(f, args.targets)
        except OSError as e:
            raise _UsageError(f"cannot read the targets {args.targets}: {e.strerror}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise _UsageError(str(e)) from None
    targets += [{"iccid": n} for n in args.iccid] + [{"msisdn": n} for n in args.msisdn]
    if not targets and args.batch is None:
        raise _UsageError("name the cards: --targets FILE, --iccid, --msisdn or --batch")
    return {
        "name": args.name or Path(args.script).name,
        "service": args.service,
        "script": script,
        "targets": targets,
        "batch": args.batch,
        "idempotent": args.idempotent,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "burst": args.burst,
        "attempts": args.attempts,
        "backoff": args.backoff,
        "factor": args.factor,
        "max_backoff": args.max_backoff,
        "give_up": args.give_up,
        "windows": args.window,
        "start": args.start,
    }


async def _act(args: argparse.Namespace, client: CampaignClient, out: TextIO, reactor: Any) -> int:
    command = args.campaign_command
    if command == "create":
        made = await client.campaign(**_create_body(args))
        out.write(f"{made['campaign']}\n")
        out.write(f"  {made['cards']} cards, service {made['service']}, {made['state']}\n")
        return 0
    if command in ("start", "pause", "resume", "cancel"):
        done = await getattr(client, command)(args.id)
        out.write(f"{done['campaign']}: {done['state']}\n")
        return 0
    if command == "list":
        for c in await client.campaigns():
            line = f"{c['campaign']}  {c['state']:<9}  {c['cards']:>7} cards"
            out.write(f"{line}  {c['service']}  {c['name']}\n")
        return 0
    if command == "status":
        if not args.follow:
            status = await client.status(args.id)
            out.write(progress_line(status) + "\n")
            return 0
        tty = getattr(out, "isatty", lambda: False)()

        def show(status: Mapping[str, Any]) -> None:
            line = progress_line(status)
            out.write(("\r" + line + "\x1b[K") if tty else line + "\n")
            out.flush()

        final = await client.wait(args.id, every=args.every, progress=show)
        if tty:
            out.write("\n")
        counts = final.get("counts", {})
        return (
            0
            if final["state"] == "completed" and counts.get("succeeded", 0) == final["cards"]
            else 1
        )
    # export
    cards = await client.all_cards(args.id)
    writer = write_json if args.format == "json" else write_csv
    if args.output is None:
        writer(cards, out)
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            writer(cards, f)
        out.write(f"{len(cards)} cards written to {args.output}\n")
    return 0


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run C{bipgw campaign ...} with parsed C{args}; return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    env = os.environ if environ is None else environ
    from twisted.internet.task import react

    status = [1]

    async def go(reactor: Any) -> None:
        try:
            client = _client(args, env, reactor)
        except _UsageError as e:
            err.write(f"bipgw campaign: error: {e}\n")
            status[0] = 2
            return
        try:
            status[0] = await _act(args, client, out, reactor)
        except _UsageError as e:
            err.write(f"bipgw campaign: error: {e}\n")
            status[0] = 2
        except CampaignApiError as e:
            err.write(f"bipgw campaign: error: the gateway refused: {e}\n")
            status[0] = 1
        except Exception as e:  # the gateway unreachable, a broken connection
            err.write(f"bipgw campaign: error: {type(e).__name__}: {e}\n")
            status[0] = 1
        finally:
            await client.close()

    try:
        react(lambda reactor: ensureDeferred(go(reactor)))
    except SystemExit:
        pass
    return status[0]
