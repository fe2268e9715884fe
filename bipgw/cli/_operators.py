# -*- test-case-name: tests.unit.cli.test_operators -*-
"""C{bipgw operator ...}: who may log in to the operator portal (docs/portal.md).

  - C{bipgw operator add NAME --role admin|operator|viewer
    [--password-file FILE]}: a new operator; the password is read from the
    first line of FILE, or prompted for twice (never an argument, which
    other users of the machine could read); only its scrypt digest is
    stored (L{bipgw.store.SqlOperators});
  - C{bipgw operator list}: names, roles, enabled (never a password);
  - C{bipgw operator disable NAME}, C{bipgw operator enable NAME};
  - C{bipgw operator set-role NAME ROLE};
  - C{bipgw operator set-password NAME [--password-file FILE]}.

Each change is written to the audit log (actor C{cli:USER}, origin the host).
"""

from __future__ import annotations

import argparse
import getpass
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from bipgw.cli._args import config_parent, run_on_store
from bipgw.cli._audit import audit
from bipgw.config import Config
from bipgw.errors import BipGwError
from bipgw.keys import read_operator_file
from bipgw.store import (
    IStore,
    Role,
    SqlOperators,
    SqlStore,
    check_operator_name,
    check_password,
)

__all__ = ["OperatorCommandError", "add_parser", "execute", "run"]

_MAX_FILE = 4096


class OperatorCommandError(BipGwError):
    """A C{bipgw operator} command was given something it cannot use."""


def _name(value: str) -> str:
    try:
        return check_operator_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(subparsers: Any) -> None:
    """Add the C{operator} command to the C{bipgw} sub-command parsers."""
    config = config_parent()
    operator = subparsers.add_parser(
        "operator", help="manage the operator portal's operators", parents=[config]
    )
    actions = operator.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    roles = [r.value for r in Role]
    add = actions.add_parser("add", help="add an operator", parents=[config])
    add.add_argument("name", metavar="NAME", type=_name)
    add.add_argument("--role", required=True, choices=roles)
    add.add_argument(
        "--password-file",
        metavar="FILE",
        help="file whose first line is the password (default: prompt)",
    )
    actions.add_parser("list", help="list operators (never their passwords)", parents=[config])
    for action, words in (
        ("disable", "refuse an operator from now on"),
        ("enable", "let a disabled operator log in again"),
    ):
        sub = actions.add_parser(action, help=words, parents=[config])
        sub.add_argument("name", metavar="NAME", type=_name)
    role = actions.add_parser("set-role", help="change an operator's role", parents=[config])
    role.add_argument("name", metavar="NAME", type=_name)
    role.add_argument("role", metavar="ROLE", choices=roles)
    password = actions.add_parser(
        "set-password", help="change an operator's password", parents=[config]
    )
    password.add_argument("name", metavar="NAME", type=_name)
    password.add_argument("--password-file", metavar="FILE")


def read_password(path: str | None, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """The password from the first line of C{path}, or prompted for twice."""
    if path is None:
        first = prompt("password: ")
        if prompt("again: ") != first:
            raise OperatorCommandError("the two passwords differ")
        password = first
    else:
        data = read_operator_file(path, _MAX_FILE, f"password file {path}", OperatorCommandError)
        lines = data.decode("utf-8", errors="replace").splitlines()
        password = lines[0].strip() if lines else ""
    try:
        return check_password(password)
    except ValueError as e:
        raise OperatorCommandError(str(e)) from None


async def execute(
    store: SqlStore,
    args: argparse.Namespace,
    out: TextIO,
    *,
    prompt: Callable[[str], str] = getpass.getpass,
    now: Callable[[], float] = time.time,
) -> int:
    """Run the command in C{args} against C{store}; the exit status.

    @raise OperatorCommandError: an unusable password (file).
    @raise bipgw.store.UnknownRecordError: an unknown operator.
    @raise bipgw.store.DuplicateRecordError: an operator that exists.
    """
    operators = SqlOperators(store)
    command = args.operator_command
    if command == "list":
        found = await operators.list()
        if not found:
            out.write("no operators\n")
        for o in found:
            state = "enabled" if o.enabled else "disabled"
            out.write(f"{o.name}\t{o.role.value}\t{state}\n")
        return 0
    at = now()
    detail = ""
    if command == "add":
        password = read_password(args.password_file, prompt)
        await operators.add(args.name, Role(args.role), password, at=at)
        detail = f"role={args.role}"
        out.write(f"operator {args.name} added ({args.role})\n")
    elif command in ("disable", "enable"):
        await operators.set_enabled(args.name, command == "enable", at=at)
        out.write(f"operator {args.name} {command}d\n")
    elif command == "set-role":
        await operators.set_role(args.name, Role(args.role), at=at)
        detail = f"role={args.role}"
        out.write(f"operator {args.name} is now {args.role}\n")
    else:
        password = read_password(args.password_file, prompt)
        await operators.set_password(args.name, password, at=at)
        out.write(f"operator {args.name}: password changed\n")
    await audit(store, f"operator.{command}", args.name, detail)
    return 0


def run(
    args: argparse.Namespace,
    stdout: TextIO,
    stderr: TextIO,
    environ: Mapping[str, str],
) -> int:
    """Run a parsed C{bipgw operator} command on the configured database."""

    async def work(store: IStore, _: Config) -> int:
        if not isinstance(store, SqlStore):
            raise OperatorCommandError(
                "operators are kept in the database: [database] url is memory:"
            )
        return await execute(store, args, stdout)

    return run_on_store(args, stderr, environ, work)
