# -*- test-case-name: tests.unit.cli.test_partners -*-
"""C{bipgw partner ...} and C{bipgw imports ...}: the file feeds' partners and what came in.

  - C{bipgw partner add NAME --kind cards|msisdn [--transport-key ID]
    (--password-file FILE | --ssh-key FILE)}: a new partner, delivering one
    kind of file (a card partner may be held to one transport key); its
    FTP password is read from the first line of a file and only its scrypt
    digest is stored; its SFTP key is an OpenSSH public key file (both may
    be given);
  - C{bipgw partner list}, C{bipgw partner disable NAME};
  - C{bipgw imports list [--limit N]}: the latest imports, from the feeds
    and from C{bipgw import} alike;
  - C{bipgw imports show ID}: one import's report, line errors included.

When the configuration has an C{[ingest]} table, C{partner add} also makes
the partner's home under C{incoming_dir}.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from bipgw.cli._args import config_parent, positive, run_on_store
from bipgw.cli._audit import audit
from bipgw.config import Config
from bipgw.errors import BipGwError
from bipgw.keys import read_operator_file
from bipgw.store import (
    ImportKind,
    IStore,
    add_partner,
    disable_partner,
)

__all__ = ["PartnerCommandError", "add_parser", "execute", "run"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_PASSWORD: Final = re.compile(r"[\x21-\x7e]{12,512}\Z")
_MAX_FILE: Final = 16384


class PartnerCommandError(BipGwError):
    """A C{bipgw partner}/C{imports} command was given something it cannot use."""


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


def add_parser(subparsers: Any) -> None:
    """Add the C{partner} and C{imports} commands to the C{bipgw} sub-command parsers."""
    config = config_parent()
    partner = subparsers.add_parser("partner", help="manage file feed partners", parents=[config])
    actions = partner.add_subparsers(dest="partner_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a partner", parents=[config])
    add.add_argument("name", metavar="NAME", type=_name)
    add.add_argument("--kind", required=True, choices=["cards", "msisdn"])
    add.add_argument(
        "--transport-key", metavar="ID", help="the only transport key its card files may name"
    )
    add.add_argument(
        "--password-file", metavar="FILE", help="file whose first line is its FTP password"
    )
    add.add_argument("--ssh-key", metavar="FILE", help="its OpenSSH public key file (SFTP)")
    actions.add_parser("list", help="list partners (never their passwords)", parents=[config])
    disable = actions.add_parser("disable", help="refuse a partner from now on", parents=[config])
    disable.add_argument("name", metavar="NAME", type=_name)

    imports = subparsers.add_parser("imports", help="show import reports", parents=[config])
    actions = imports.add_subparsers(dest="imports_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the latest imports", parents=[config])
    listing.add_argument("--limit", type=positive, default=20, help="how many (default 20)")
    show = actions.add_parser("show", help="one import's report", parents=[config])
    show.add_argument("import_id", metavar="ID", type=positive)


def run(
    args: argparse.Namespace,
    stdout: TextIO,
    stderr: TextIO,
    environ: Mapping[str, str],
) -> int:
    """Run a parsed C{bipgw partner|imports} command on the configured store."""
    return run_on_store(
        args, stderr, environ, lambda store, config: execute(store, args, stdout, config=config)
    )


async def execute(
    store: IStore, args: argparse.Namespace, out: TextIO, *, config: Config | None = None
) -> int:
    """Run the command in C{args} against C{store}; return the exit status.

    @param config: when it has C{[ingest]}, C{partner add} makes the home.
    @raise PartnerCommandError: for an unusable password or key file.
    @raise ValueError: for a partner the store refuses (no credential...).
    @raise bipgw.store.UnknownRecordError: for an unknown partner.
    @raise bipgw.store.DuplicateRecordError: for a partner that exists.
    """
    if args.command == "partner":
        if args.partner_command == "add":
            return await _add(store, args, out, config)
        if args.partner_command == "disable":
            await disable_partner(store, args.name)
            await audit(store, "partner.disable", args.name, "refused from now on")
            out.write(f"partner {args.name} disabled\n")
            return 0
        return await _list(store, out)
    if args.imports_command == "show":
        return await _show(store, args.import_id, out)
    return await _list_imports(store, args.limit, out)


def _read_first_line(path: str, what: str) -> str:
    data = read_operator_file(path, _MAX_FILE, f"{what} {path}", PartnerCommandError)
    return data.decode("ascii", errors="replace")


def read_password_file(path: str) -> str:
    """The password on the first line of C{path}; the error never shows the file's text."""
    lines = _read_first_line(path, "password file").splitlines()
    password = lines[0].strip() if lines else ""
    if not _PASSWORD.match(password):
        raise PartnerCommandError(
            f"password file {path}: the first line must be a password of 12-512 printable"
            " ASCII characters without spaces"
        )
    return password


async def _add(store: IStore, args: argparse.Namespace, out: TextIO, config: Config | None) -> int:
    if args.password_file is None and args.ssh_key is None:
        raise PartnerCommandError("give --password-file (FTP), --ssh-key (SFTP), or both")
    password = None if args.password_file is None else read_password_file(args.password_file)
    keys = [] if args.ssh_key is None else [_read_first_line(args.ssh_key, "SSH key file")]
    partner = await add_partner(
        store,
        args.name,
        ImportKind(args.kind),
        password=password,
        ssh_keys=keys,
        transport_key=args.transport_key,
        now=time.time(),
    )
    details = [f"{partner.kind.value} files"]
    if password is not None:
        details.append("password set")
    if keys:
        details.append(f"{len(keys)} SSH key(s)")
    if args.transport_key:
        details.append(f"transport key {args.transport_key}")
    await audit(store, "partner.add", partner.name, "; ".join(details))
    out.write(f"partner {partner.name} added ({partner.kind.value} files)\n")
    if config is not None and config.ingest is not None:
        from bipgw.ingest._homes import Homes

        home = Homes(config.ingest.incoming_dir).home(partner.name)
        out.write(f"home: {home}\n")
    return 0


async def _list(store: IStore, out: TextIO) -> int:
    partners = await store.list_partners()
    if not partners:
        out.write("no partners\n")
    for partner in partners:
        auth = []
        if partner.password is not None:
            auth.append("password")
        if partner.ssh_keys:
            auth.append(f"ssh keys: {len(partner.ssh_keys)}")
        state = "enabled" if partner.enabled else "disabled"
        key = partner.transport_key or "any"
        out.write(
            f"{partner.name}\t{partner.kind.value}\t{state}\tauth: {', '.join(auth)}"
            f"\ttransport key: {key}\n"
        )
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _list_imports(store: IStore, limit: int, out: TextIO) -> int:
    reports = await store.list_imports(limit=limit)
    if not reports:
        out.write("no imports\n")
    for r in reports:
        outcome = (
            "REFUSED"
            if r.fatal is not None
            else f"added {r.added}, updated {r.updated}, unchanged {r.unchanged},"
            f" rejected {r.rejected}"
        )
        out.write(
            f"#{r.import_id}\t{_when(r.imported_at)}\t{r.kind.value}\t{r.file_name}"
            f"\t{r.records} records\t{outcome}\n"
        )
    return 0


async def _show(store: IStore, import_id: int, out: TextIO) -> int:
    from bipgw.ingest import render_report

    report = await store.get_import(import_id)
    if report is None:
        raise PartnerCommandError(f"no import #{import_id}")
    out.write(render_report(report))
    out.write(f"  at: {_when(report.imported_at)}\n  sha256: {report.sha256}\n")
    for key, value in report.header.items():
        out.write(f"  header {key}: {value}\n")
    return 0
