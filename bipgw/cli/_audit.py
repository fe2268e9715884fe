# -*- test-case-name: tests.unit.cli.test_audit -*-
"""The commands' audit trail: who ran which administrative command, and C{bipgw audit list}.

Every command that changes what the gateway lets in (C{tenant add|disable},
C{service add}, C{partner add|disable}, C{keys add-transport|generate-master},
C{import}) writes an L{AuditRecord} once it is done:

  - I{who}: C{cli:<user>}, the effective OS user running the command (from
    the password database, not from C{$USER}, which a caller sets at will);
  - I{from where}: C{host <hostname>}, with C{ssh <client address>} when the
    command runs in an SSH session;
  - I{what}: the action (C{tenant.add}), the object (the tenant's name), and
    what changed in words, never a secret: a token or password is said to
    be I{set}, a key is named by label, kind, size and check value.

C{bipgw audit list [--actor A] [--action X] [--since WHEN] [--limit N]}
prints the trail, newest first (L{bipgw.store.find_audit}).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from bipgw.cli._args import config_parent, positive, run_on_store
from bipgw.config import Config
from bipgw.store import (
    MAX_AUDIT_LIMIT,
    AuditFilter,
    AuditRecord,
    IStore,
    StoreError,
    add_audit_now,
    find_audit,
)

__all__ = [
    "add_parser",
    "audit",
    "audited",
    "cli_actor",
    "cli_origin",
    "execute",
    "parse_since",
    "record_now",
    "run",
]

_RELATIVE: Final = re.compile(r"(\d+)([smhd])\Z")
_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def cli_actor() -> str:
    """C{cli:<user>}: the effective OS user running this command."""
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    return f"cli:{user}"


def cli_origin(environ: Mapping[str, str] | None = None) -> str:
    """C{host <hostname>}, and the SSH client's address when there is one."""
    env = os.environ if environ is None else environ
    origin = f"host {socket.gethostname()}"
    client = env.get("SSH_CLIENT", "").split()
    if client:
        origin += f", ssh {client[0]}"
    return origin


def _record(
    action: str, target: str, detail: str, environ: Mapping[str, str] | None
) -> AuditRecord:
    return AuditRecord(
        at=time.time(),
        actor=cli_actor(),
        action=action,
        target=target,
        detail=detail,
        origin=cli_origin(environ),
    )


async def audit(
    store: IStore,
    action: str,
    target: str,
    detail: str = "",
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Write the audit record of a command that just changed C{target}."""
    await store.add_audit(_record(action, target, detail, environ))


def record_now(
    config: Config,
    action: str,
    target: str,
    detail: str = "",
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Write an audit record for a command that does not otherwise open the
    store (C{keys ...}), synchronously, in the configured database.

    A C{memory:} database belongs to one process: nothing is written.

    @raise bipgw.store.StoreError: the database cannot be opened or written.
    """
    add_audit_now(config.database.url, _record(action, target, detail, environ))


def audited(
    config: Config, err: TextIO, env: Mapping[str, str], action: str, target: str, detail: str
) -> int:
    """Write a key command's audit record; the exit status (1 if it could not be written)."""
    try:
        record_now(config, action, target, detail, environ=env)
    except StoreError as e:
        err.write(f"bipgw: error: the key is stored, but its audit record was not written: {e}\n")
        return 1
    return 0


def parse_since(value: str, *, now: float | None = None) -> float:
    """C{--since}: an ISO 8601 date or time (UTC when no offset is given), or
    an age such as C{30m}, C{12h}, C{7d}."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        current = time.time() if now is None else now
        return current - int(relative.group(1)) * _UNIT[relative.group(2)]
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give an ISO date or time (2026-12-07, 2026-12-07T04:00)"
            " or an age (30m, 12h, 7d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _limit(value: str) -> int:
    n = positive(value)
    if n > MAX_AUDIT_LIMIT:
        raise argparse.ArgumentTypeError(f"{value!r} is more than {MAX_AUDIT_LIMIT}")
    return n


def add_parser(subparsers: Any) -> None:
    """Add C{audit list} to the C{bipgw} sub-command parsers."""
    config = config_parent()
    command = subparsers.add_parser(
        "audit", help="the administrative audit trail", parents=[config]
    )
    actions = command.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="audit records, newest first", parents=[config])
    listing.add_argument("--actor", help="only this actor's (e.g. cli:root, a tenant's name)")
    listing.add_argument("--action", help="only this action (tenant.add), or an object's (tenant)")
    listing.add_argument(
        "--since", type=parse_since, help="only since then: 2026-12-07, 2026-12-07T04:00Z, 12h"
    )
    listing.add_argument("--limit", type=_limit, default=50, help="at most this many (50)")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(text: str) -> str:
    # One record a line, whatever a name holds.
    return "".join(c if c.isprintable() and c != "\t" else " " for c in text)


async def execute(store: IStore, args: argparse.Namespace, out: TextIO) -> int:
    """Print the records C{args} asks for; return the exit status."""
    query = AuditFilter(actor=args.actor, action=args.action, since=args.since, limit=args.limit)
    records = await find_audit(store, query)
    if not records:
        out.write("no audit records\n")
    for r in records:
        fields = [_when(r.at), r.actor, r.origin or "-", r.action, r.target or "-", r.detail]
        out.write(f"#{r.audit_id}\t" + "\t".join(_clean(f) for f in fields) + "\n")
    return 0


def run(
    args: argparse.Namespace,
    stdout: TextIO,
    stderr: TextIO,
    environ: Mapping[str, str],
) -> int:
    """Run a parsed C{bipgw audit} command on the configured store."""
    return run_on_store(args, stderr, environ, lambda store, _: execute(store, args, stdout))
