# -*- test-case-name: tests.unit.cli.test_tenants -*-
"""C{bipgw tenant ...} and C{bipgw service ...}: who may use the gateway's APIs.

  - C{bipgw tenant add NAME [--token-file FILE] [--cert-cn CN]}: a new
    tenant; without C{--token-file} a token is generated and printed once
    (only its salted scrypt digest is stored, so it cannot be shown again);
  - C{bipgw tenant list}, C{bipgw tenant disable NAME};
  - C{bipgw service add NAME --tenant T [--aid HEX]... [--tar HEX]...
    [--isd-commands NAMES]
    [--rate N] [--max-sessions N]}: let tenant C{T} open sessions of the
    gateway service C{NAME}, for those applications only (none: any applet;
    the ISD only for the commands C{--isd-commands} names);
  - C{bipgw service list [--tenant T]}.

Everything is kept in the configured database by the library functions
of L{bipgw.store} (which the demo calls too), in the layout
the gateway's tenant directory reads, so a change applies from the tenant's
next connection or request.  Refusals are one line on standard error and
exit status 1.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from typing import Any, Final, TextIO

from bipgw.cli._args import CONFIG_ENV, config_parent, positive, run_on_store
from bipgw.cli._audit import audit
from bipgw.config import Config
from bipgw.core import parse_isd_commands
from bipgw.errors import BipGwError
from bipgw.store import (
    IStore,
    TokenDigest,
    add_tenant,
    disable_tenant,
    grant_service,
    is_reserved_row,
    is_settings_row,
)

__all__ = ["CONFIG_ENV", "TenantCommandError", "add_parser", "execute", "run"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}\Z")
_TOKEN: Final = re.compile(r"[\x21-\x7e]{16,512}\Z")
_MAX_TOKEN_FILE: Final = 4096


class TenantCommandError(BipGwError):
    """A C{bipgw tenant}/C{service} command was given something it cannot use."""


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: 1-32 letters, digits, '_', '.', ':' or '-',"
            " starting with a letter or digit"
        )
    return value


def _hex(size: str) -> Any:
    lengths = {"aid": range(5, 17), "tar": range(3, 4)}[size]

    def parse(value: str) -> str:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not hex") from None
        if len(raw) not in lengths:
            raise argparse.ArgumentTypeError(
                f"{value!r}: an {size.upper()} is {lengths.start}"
                + (f"-{lengths.stop - 1}" if len(lengths) > 1 else "")
                + " bytes"
            )
        return raw.hex().upper()

    return parse


def _isd_commands(value: str) -> list[str]:
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    try:
        parse_isd_commands(names)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return names


def _positive_rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(rate) or rate <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive rate")
    return rate


def add_parser(subparsers: Any) -> None:
    """Add the C{tenant} and C{service} commands to the C{bipgw} sub-command parsers."""
    config = config_parent()
    tenant = subparsers.add_parser("tenant", help="manage API tenants", parents=[config])
    actions = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a tenant (prints a new token once)", parents=[config])
    add.add_argument("name", metavar="NAME", type=_name)
    add.add_argument("--token-file", metavar="FILE", help="file whose first line is the token")
    add.add_argument("--cert-cn", metavar="CN", help="also accept this TLS client certificate CN")
    add.add_argument("--max-sessions", type=positive, help="sessions open at once (all services)")
    add.add_argument("--max-commands", type=positive, help="commands in flight at once")
    actions.add_parser("list", help="list tenants (never their tokens)", parents=[config])
    disable = actions.add_parser("disable", help="refuse a tenant from now on", parents=[config])
    disable.add_argument("name", metavar="NAME", type=_name)

    service = subparsers.add_parser("service", help="manage tenants' services", parents=[config])
    actions = service.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="grant a tenant a gateway service", parents=[config])
    add.add_argument(
        "name", metavar="NAME", type=_name, help="the gateway service ([services.NAME])"
    )
    add.add_argument("--tenant", required=True, type=_name, help="the tenant it is granted to")
    add.add_argument("--aid", action="append", type=_hex("aid"), default=[], help="allowed AID")
    add.add_argument("--tar", action="append", type=_hex("tar"), default=[], help="allowed TAR")
    add.add_argument(
        "--isd-commands",
        metavar="NAMES",
        type=_isd_commands,
        default=[],
        help="commands that may reach the card's ISD, comma-separated (get-status,get-data;"
        " all; or an INS in hex); default none: the ISD may not be reached",
    )
    add.add_argument(
        "--rate", type=_positive_rate, help="commands per second the tenant may send (e.g. 0.5)"
    )
    add.add_argument("--max-sessions", type=positive, help="sessions of it open at once")
    listing = actions.add_parser("list", help="list services", parents=[config])
    listing.add_argument("--tenant", type=_name, help="only this tenant's")


def run(
    args: argparse.Namespace,
    stdout: TextIO,
    stderr: TextIO,
    environ: Mapping[str, str],
) -> int:
    """Run a parsed C{bipgw tenant|service} command on the configured store."""
    return run_on_store(
        args,
        stderr,
        environ,
        lambda store, config: execute(store, args, stdout, stderr, config=config),
    )


async def execute(
    store: IStore,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    *,
    config: Config | None = None,
) -> int:
    """Run the command in C{args} against C{store}; return the exit status.

    @param config: when given, C{service add} warns about a service the
        configuration does not define.
    @raise TenantCommandError: for an unusable token file.
    @raise bipgw.store.UnknownRecordError: for an unknown tenant.
    @raise bipgw.store.DuplicateRecordError: for a tenant or grant that exists.
    """
    if args.command == "tenant":
        if args.tenant_command == "add":
            return await _add_tenant(store, args, out)
        if args.tenant_command == "disable":
            return await _disable_tenant(store, args.name, out)
        return await _list_tenants(store, out)
    if args.service_command == "add":
        if config is not None and args.name not in config.services:
            err.write(f"bipgw: warning: the configuration defines no service {args.name!r}\n")
        return await _add_service(store, args, out)
    return await _list_services(store, args.tenant, out)


def read_token_file(path: str) -> str:
    """The token on the first line of C{path}; the error never shows the file's text."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_TOKEN_FILE + 1)
    except OSError as e:
        raise TenantCommandError(f"cannot read token file {path}: {e.strerror}") from None
    lines = data.decode("ascii", errors="replace").splitlines()
    token = lines[0].strip() if lines else ""
    if len(data) > _MAX_TOKEN_FILE or not _TOKEN.match(token):
        raise TenantCommandError(
            f"token file {path}: the first line must be a token of 16-512 printable ASCII"
            " characters without spaces"
        )
    return token


async def _add_tenant(store: IStore, args: argparse.Namespace, out: TextIO) -> int:
    name: str = args.name
    generated = args.token_file is None
    token = await add_tenant(
        store,
        name,
        token=None if generated else read_token_file(args.token_file),
        common_name=args.cert_cn,
        max_sessions=args.max_sessions,
        max_commands=args.max_commands,
    )
    details = ["token generated" if generated else "token from a file"]
    if args.cert_cn:
        details.append(f"certificate CN {args.cert_cn}")
    if args.max_sessions:
        details.append(f"max_sessions {args.max_sessions}")
    if args.max_commands:
        details.append(f"max_commands {args.max_commands}")
    await audit(store, "tenant.add", name, "; ".join(details))
    out.write(f"tenant {name} added\n")
    if generated:
        out.write(f"API token (shown once, only its digest is stored):\n{token}\n")
    return 0


async def _disable_tenant(store: IStore, name: str, out: TextIO) -> int:
    await disable_tenant(store, name)
    await audit(store, "tenant.disable", name, "refused from now on")
    out.write(f"tenant {name} disabled\n")
    return 0


async def _list_tenants(store: IStore, out: TextIO) -> int:
    tenants = await store.list_tenants()
    if not tenants:
        out.write("no tenants\n")
    for tenant in tenants:
        rows = await store.list_services(tenant_id=tenant.tenant_id)
        services = sorted(r.name for r in rows if not is_reserved_row(r))
        auth = []
        for row in rows:
            if is_settings_row(row):
                if TokenDigest.from_settings(row.settings) is not None:
                    auth.append("token")
                if row.settings.get("common_name"):
                    auth.append(f"cn={row.settings['common_name']}")
        state = "enabled" if tenant.enabled else "disabled"
        out.write(
            f"{tenant.tenant_id}\t{state}\tauth: {', '.join(auth) or 'none'}"
            f"\tservices: {', '.join(services) or 'none'}\n"
        )
    return 0


async def _add_service(store: IStore, args: argparse.Namespace, out: TextIO) -> int:
    await grant_service(
        store,
        args.tenant,
        args.name,
        aids=args.aid,
        tars=args.tar,
        isd_commands=args.isd_commands,
        rate=args.rate,
        max_sessions=args.max_sessions,
    )
    limits = [
        f"aids {' '.join(args.aid) or 'any'}",
        f"tars {' '.join(args.tar) or 'any'}",
        f"isd_commands {','.join(args.isd_commands) or 'none'}",
        f"rate {args.rate if args.rate is not None else '-'}",
        f"max_sessions {args.max_sessions or '-'}",
    ]
    await audit(store, "service.grant", f"{args.tenant}/{args.name}", "; ".join(limits))
    out.write(f"service {args.name} granted to tenant {args.tenant}\n")
    return 0


async def _list_services(store: IStore, tenant: str | None, out: TextIO) -> int:
    rows = [r for r in await store.list_services(tenant_id=tenant) if not is_reserved_row(r)]
    if not rows:
        out.write("no services\n")
    for row in rows:
        s = row.settings
        details = [
            f"aids: {s.get('aids') or 'any'}",
            f"tars: {s.get('tars') or 'any'}",
            f"isd_commands: {s.get('isd_commands') or 'none'}",
            f"max_sessions: {s.get('max_sessions') or '-'}",
            f"rate: {s.get('rate') or '-'}",
        ]
        state = "enabled" if row.enabled else "disabled"
        out.write(f"{row.tenant_id}\t{row.name}\t{state}\t" + "\t".join(details) + "\n")
    return 0
