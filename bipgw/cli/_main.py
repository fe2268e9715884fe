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
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import Deferred, ensureDeferred

import bipgw
import bipgw.cli._audit as _audit
import bipgw.cli._campaigns as _campaigns

# Each sub-command's module by its own name, not through the package, which
# imports this module for main.
import bipgw.cli._card_keys as _card_keys
import bipgw.cli._cluster as _cluster
import bipgw.cli._demo as _demo
import bipgw.cli._init as _init
import bipgw.cli._keys as _keys
import bipgw.cli._operators as _operators
import bipgw.cli._partners as _partners
import bipgw.cli._replay as _replay
import bipgw.cli._rotate as _rotate
import bipgw.cli._tenants as _tenants
from bipgw.config import DEFAULT_CONFIG_NAME, Config, ConfigError, init_install, redacted_url
from bipgw.errors import BipGwError
from bipgw.keys import (
    MASTER_KINDS,
    ROOT_KEY_ENV,
    KeyInfo,
    KeyManagementError,
    Pkcs11RootKeys,
    TransportScheme,
    add_master_key,
    add_transport_key,
    generate_master_key,
    retire_transport_key,
)
from bipgw.store import StoreError

#: The environment variable naming the configuration file when C{-c} is not given.
CONFIG_ENV = "BIPGW_CONFIG"


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

    # -c is accepted before or after the subcommand.
    config_option = argparse.ArgumentParser(add_help=False)
    config_option.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        help=f"configuration file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG_NAME})",
    )

    keys = commands.add_parser("keys", help="manage the keystore", parents=[config_option])
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    transport = key_commands.add_parser(
        "add-transport", help="add a vendor transport key", parents=[config_option]
    )
    transport.add_argument("label")
    transport.add_argument("--from-file", required=True, metavar="FILE", help="hex key file")
    transport.add_argument(
        "--scheme",
        default=TransportScheme.AES_KWP.value,
        choices=[s.value for s in TransportScheme],
        help="how the vendor wraps secret columns",
    )
    transport.add_argument("--replace", action="store_true", help="replace a key of that label")
    retire = key_commands.add_parser(
        "retire-transport",
        help="retire a vendor transport key: files wrapped under it are refused",
        parents=[config_option],
    )
    retire.add_argument("label")
    master = key_commands.add_parser(
        "generate-master", help="generate a random master key", parents=[config_option]
    )
    master.add_argument("kind", metavar="KIND", help=", ".join(MASTER_KINDS))
    master.add_argument("label")
    master.add_argument("--length", type=int, default=16, choices=(16, 24, 32))
    master.add_argument("--kvn", type=int, help="key version it serves (--kdf 1 only; default 1)")
    master.add_argument(
        "--kdf", type=int, default=2, choices=(1, 2), help="derivation (docs/keys.md section 5)"
    )
    master.add_argument("--replace", action="store_true", help="replace a key of that label")
    imported = key_commands.add_parser(
        "add-master", help="add a master key from a hex file", parents=[config_option]
    )
    imported.add_argument("kind", metavar="KIND", help=", ".join(MASTER_KINDS))
    imported.add_argument("label")
    imported.add_argument("--from-file", required=True, metavar="FILE", help="hex key file")
    imported.add_argument("--kvn", type=int, help="key version it serves (--kdf 1 only; default 1)")
    imported.add_argument("--kdf", type=int, default=2, choices=(1, 2), help="derivation")
    imported.add_argument("--replace", action="store_true", help="replace a key of that label")
    listing = key_commands.add_parser(
        "list", help="list keys (never their values)", parents=[config_option]
    )
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--iccid", help="list this card's key versions instead")
    which.add_argument(
        "--cards", action="store_true", help="list every card's key versions instead"
    )
    _card_keys.add_parsers(key_commands, config_option)
    master.add_argument(
        "--backend",
        choices=("keystore", "pkcs11"),
        default="keystore",
        help="pkcs11: generate it inside the [keys] token, non-extractable",
    )
    key_commands.add_parser(
        "init-hsm",
        help='create the root key in the PKCS#11 token (backend = "pkcs11")',
        parents=[config_option],
    )
    _rotate.add_arguments(
        key_commands.add_parser(
            "rotate-root",
            help="new root key; re-seal the database and keystore (resumable)",
            parents=[config_option],
        )
    )

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
    _replay.add_parser(commands)
    _tenants.add_parser(commands)
    _partners.add_parser(commands)
    _operators.add_parser(commands)
    _audit.add_parser(commands)
    _campaigns.add_parser(commands)
    _demo.add_parser(commands)
    _cluster.add_parser(commands)
    return parser


def _config_path(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    return getattr(args, "config", None) or environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME


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
    return _audited(result.config, err, env, "keys.init", result.root_key_id, detail)


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


def _keys_command(
    args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]
) -> int:
    config = Config.from_file(_config_path(args, env))
    card_keys = args.keys_command in ("show", "rotate-card") or (
        args.keys_command == "list" and (args.iccid or args.cards)
    )
    if card_keys:
        return _card_keys_command(config, args, out)
    if args.keys_command == "rotate-root":
        return _rotate.rotate_root(config, args, out, env)
    if args.keys_command == "init-hsm":
        target, detail = _rotate.init_hsm(config, out)
        return _audited(config, err, env, "keys.init-hsm", target, detail)
    if args.keys_command == "generate-master" and args.backend == "pkcs11":
        target, detail = _rotate.generate_token_master(config, args, out)
        return _audited(config, err, env, "keys.generate-master", target, detail)
    keys = _keys.Keys.open(config, env)
    try:
        changed = _keystore_command(args, out, keys)
    finally:
        keys.close()
    if changed is None:
        return 0
    info, check, what = changed
    detail = f"{info.kind.value}, {info.length} bytes, KCV {check}, {what}"
    if getattr(args, "replace", False):
        detail += ", replacing the key of that label"
    return _audited(config, err, env, f"keys.{args.keys_command}", info.label, detail)


def _audited(
    config: Config, err: TextIO, env: Mapping[str, str], action: str, target: str, detail: str
) -> int:
    """Write a key command's audit record; the exit status (1 if it could not be written)."""
    try:
        _audit.record_now(config, action, target, detail, environ=env)
    except StoreError as e:
        err.write(f"bipgw: error: the key is stored, but its audit record was not written: {e}\n")
        return 1
    return 0


def _keystore_command(
    args: argparse.Namespace, out: TextIO, keys: _keys.Keys
) -> tuple[KeyInfo, str, str] | None:
    """Run a keystore command; what it stored (key, check value, words for the
    audit record), or C{None} for C{keys list}."""
    if args.keys_command in ("generate-master", "add-master"):
        kvn = _master_kvn(args)
        version = f"KVN {kvn}" if args.kdf == 1 else "every key version (kdf 2)"
    if args.keys_command == "add-transport":
        info, check = add_transport_key(
            keys.store, args.label, args.from_file, scheme=args.scheme, replace=args.replace
        )
        what = f"scheme {args.scheme}"
    elif args.keys_command == "retire-transport":
        info, check = retire_transport_key(keys.store, args.label, at=time.time())
        what = "retired: vendor files wrapped under it are refused from now on"
    elif args.keys_command == "generate-master":
        info, check = generate_master_key(
            keys.store,
            args.kind,
            args.label,
            length=args.length,
            kvn=kvn,
            kdf=args.kdf,
            replace=args.replace,
        )
        what = f"{version}, generated"
    elif args.keys_command == "add-master":
        info, check = add_master_key(
            keys.store,
            args.kind,
            args.label,
            args.from_file,
            kvn=kvn,
            kdf=args.kdf,
            replace=args.replace,
        )
        what = f"{version}, from a file"
    else:
        _keys.list_keys(keys, out)
        return None
    out.write(f"stored in {keys.store.path}:\n{_keys.describe(info, check)}\n")
    return info, check, what


def _master_kvn(args: argparse.Namespace) -> int:
    """The key version a keystore master serves: C{--kvn} (default 1) for a
    v1 master; a v2 master serves every version, so C{--kvn} is refused."""
    if args.kdf == 2 and args.kvn is not None:
        raise KeyManagementError(
            f"--kvn {args.kvn}: a --kdf 2 master (the default) serves every key version,"
            " the version being part of the derivation; --kvn is for a --kdf 1 master"
        )
    return 1 if args.kvn is None else int(args.kvn)


def _card_keys_command(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """C{keys show}, C{keys list --iccid|--cards} (the database), C{keys
    rotate-card} (the running gateway's HTTP API)."""
    from twisted.internet.task import react

    from bipgw.store import open_store

    status = 1

    def run(reactor: Any) -> Deferred[None]:
        async def go() -> None:
            nonlocal status
            if args.keys_command == "rotate-card":
                url = _card_keys.api_url(config, args.api)
                status = await _card_keys.rotate_card(
                    reactor, url, args.token_file, args.iccid, args.purpose, args.service, out
                )
                return
            store = await open_store(config.database.url, reactor=reactor)
            try:
                status = await _card_keys.show_card(store, args.iccid, out)
            finally:
                await store.close()

        return ensureDeferred(go())

    failure: list[BaseException] = []

    def main(reactor: Any) -> Deferred[None]:
        d = run(reactor)

        def caught(f: Any) -> None:
            failure.append(f.value)

        return d.addErrback(caught)

    try:
        react(main)
    except SystemExit:
        pass
    if failure:
        raise failure[0]
    return status


def _import_command(
    args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]
) -> int:
    from twisted.internet.task import react

    config = Config.from_file(_config_path(args, env))
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


_Command = Callable[[argparse.Namespace, TextIO, TextIO, Mapping[str, str]], int]

_COMMANDS: dict[str, _Command] = {
    "init": _init_command,
    "check-config": _check_command,
    "keys": _keys_command,
    "import": _import_command,
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
