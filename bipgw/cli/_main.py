# -*- test-case-name: tests.unit.cli.test_main,tests.unit.cli.test_keys,tests.unit.cli.test_init -*-
"""The C{bipgw} command: everything an operator does before the gateway runs.

  - C{bipgw init DIR}: a new install (configuration, root key, keystore);
  - C{bipgw check-config FILE}: check a configuration and the keys it names;
  - C{bipgw keys add-transport|retire-transport|generate-master|add-master|list}: the keystore;
  - C{bipgw keys rotate-root}: a new root key, the database and keystore re-sealed;
  - C{bipgw import cards|msisdn FILE}: load a card-vendor or MSISDN file;
  - C{bipgw replay SCRIPT ...}: run an APDU script against a card (docs/apdu-scripts.md);
  - C{bipgw tenant|service ...}: business platforms and what they may reach;
  - C{bipgw partner|imports ...}: the file feeds' partners, and import reports;
  - C{bipgw operator ...}: the operator portal's operators;
  - C{bipgw campaign ...}: one script on many cards, through the running
    gateway's HTTP API (docs/campaigns.md);
  - C{bipgw demo [DIR]}: the whole loop against a generated simulated fleet.

The gateway itself runs under twistd (C{twistd -n bipgw --config FILE}).
Every refusal is one line on standard error naming what is wrong (the key,
the file, the line), never a traceback, and the exit status is 1; usage
mistakes exit with 2, as argparse does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import bipgw
import bipgw.cli._audit as _audit
import bipgw.cli._campaigns as _campaigns

# Each sub-command's module by its own name, not through the package, which
# imports this module for main.
import bipgw.cli._cluster as _cluster
import bipgw.cli._demo as _demo
import bipgw.cli._import as _import
import bipgw.cli._init as _init
import bipgw.cli._keys as _keys
import bipgw.cli._operators as _operators
import bipgw.cli._partners as _partners
import bipgw.cli._replay as _replay
import bipgw.cli._tenants as _tenants
from bipgw.cli._args import CONFIG_ENV
from bipgw.config import DEFAULT_CONFIG_NAME, Config, ConfigError, init_install, redacted_url
from bipgw.errors import BipGwError
from bipgw.keys import (
    ROOT_KEY_ENV,
    KeyManagementError,
    Pkcs11RootKeys,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bipgw",
        description="BIP/OTA gateway: set up an install, manage its keys, import cards."
        " The gateway itself runs under twistd: twistd -n bipgw --config FILE.",
    )
    parser.add_argument("--version", action="version", version=f"bipgw {bipgw.__version__}")
    # Accepted before the command too (bipgw -c FILE import ...); a -c after
    # the command wins, since the sub-commands' option never sets a default.
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"configuration file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG_NAME})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create a new install in DIR")
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--public-host", default="127.0.0.1", help="IPv4 address cards connect to")
    init.add_argument("--public-port", type=int, default=None, help="port cards connect to")
    init.add_argument("--listen", default="tcp:8443", help="admin listener endpoint string")
    init.add_argument(
        "--smpp", default="tcp:host=127.0.0.1:port=2775", help="SMSC client endpoint string"
    )
    init.add_argument("--system-id", default="bipgw", help="the ESME system_id")
    init.add_argument("--smpp-password-file", help="file whose first line is the ESME password")
    init.add_argument("--source-address", default="12345", help="the gateway's OTA address")
    init.add_argument("--node-id", default="gw1", help="this node's name")
    init.add_argument(
        "--force", action="store_true", help="rewrite bipgw.toml (keys are always kept)"
    )

    check = commands.add_parser("check-config", help="check a configuration file and its keys")
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--no-keys", action="store_true", help="do not open the root key and keystore"
    )

    _keys.add_parser(commands)
    _import.add_parser(commands)
    _replay.add_parser(commands)
    _tenants.add_parser(commands)
    _partners.add_parser(commands)
    _operators.add_parser(commands)
    _audit.add_parser(commands)
    _campaigns.add_parser(commands)
    _demo.add_parser(commands)
    _cluster.add_parser(commands)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run one C{bipgw} command; return the exit status.

    @param argv: the arguments after the program name (default: C{sys.argv[1:]}).
    @param stdout: where results go (default: C{sys.stdout}).
    @param stderr: where errors go (default: C{sys.stderr}).
    @param environ: the environment (C{BIPGW_CONFIG}, C{BIPGW_ROOT_KEY}).
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    env = os.environ if environ is None else environ
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 2
    try:
        return _COMMANDS[args.command](args, out, err, env)
    except BipGwError as e:
        err.write(f"bipgw: error: {e}\n")
        return 1
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        err.write(f"bipgw: error:{where} {e.strerror or e}\n")
        return 1
    except KeyboardInterrupt:
        err.write("bipgw: interrupted\n")
        return 130


def _init_command(
    args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]
) -> int:
    try:
        result = init_install(
            args.directory,
            force=args.force,
            password_source=args.smpp_password_file,
            environ=env,
            public_host=args.public_host,
            public_port=args.public_port,
            listen=args.listen,
            smpp_endpoint=args.smpp,
            system_id=args.system_id,
            source_address=args.source_address,
            node_id=args.node_id,
        )
    except ConfigError as e:
        raise _init.with_option(e) from None
    out.write(_init.describe(result))
    # The install's first audit record: the root key it made (or took from
    # the environment), by id; kept keys were audited when they were made.
    if result.root_key_from_environment:
        detail = f"root key taken from ${ROOT_KEY_ENV}"
    elif result.config.keys.root_key_file in result.kept:
        return 0
    else:
        detail = f"root key created in {result.config.keys.root_key_file}"
    return _audit.audited(result.config, err, env, "keys.init", result.root_key_id, detail)


def _check_command(
    args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]
) -> int:
    config = Config.from_file(args.file)
    out.write(summary(config))
    if args.no_keys:
        return 0
    try:
        keys = _keys.Keys.open(config, env)
    except KeyManagementError as e:
        err.write(f"bipgw: error: {e}\n")
        return 1
    where: object = (
        f"${ROOT_KEY_ENV}" if env.get(ROOT_KEY_ENV) is not None else config.keys.root_key_file
    )
    if isinstance(keys.root, Pkcs11RootKeys):
        where = keys.root.describe()
    out.write(f"  root key {keys.root.key_id} from {where}\n")
    out.write(f"  keystore {keys.store.path}: {len(keys.store)} keys\n")
    keys.close()
    return 0


def summary(config: Config) -> str:
    """What a configuration makes the gateway do, in a few lines (no secrets)."""
    admin = config.admin
    smpp = config.smpp
    url = config.database.url
    lines = [
        f"{config.source or '<configuration>'}: configuration OK",
        f"  node {config.gateway.node_id}, data in {config.gateway.data_dir}",
        f"  database {redacted_url(url)}",
        f"  SMSC {smpp.endpoint} as {smpp.system_id} ({smpp.bind.value}),"
        f" pushes from {smpp.source_address}",
        f"  admin server on {admin.listen}; cards connect to"
        f" {admin.public_host}:{admin.public_port}{admin.uri_prefix}",
        "  services: "
        + ", ".join(
            f"{name} (TAR {s.tar.hex().upper()}, {s.trigger.value})"
            for name, s in config.services.items()
        ),
    ]
    if config.ingest is not None:
        feeds = config.ingest
        lines.append(
            f"  partner feeds in {feeds.incoming_dir}: FTP {feeds.ftp_listen or 'off'},"
            f" SFTP {feeds.sftp_listen or 'off'}, watched every {feeds.poll_interval:g} s"
        )
    if config.metrics is not None:
        auth = "bearer token" if config.metrics.token_file is not None else "loopback, no token"
        lines.append(f"  /metrics, /healthz, /readyz on {config.metrics.listen} ({auth})")
    return "\n".join(lines) + "\n"


_Command = Callable[[argparse.Namespace, TextIO, TextIO, Mapping[str, str]], int]

_COMMANDS: dict[str, _Command] = {
    "init": _init_command,
    "check-config": _check_command,
    "keys": _keys.run,
    "import": _import.run,
    "replay": _replay.run,
    "tenant": _tenants.run,
    "service": _tenants.run,
    "partner": _partners.run,
    "imports": _partners.run,
    "operator": _operators.run,
    "audit": _audit.run,
    "campaign": _campaigns.run,
    "demo": lambda args, out, err, env: _demo.run(args, out, err),
    "cluster": _cluster.run,
}
