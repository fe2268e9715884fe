# -*- test-case-name: tests.unit.cli.test_keys -*-
"""C{bipgw keys ...}: the install's keystore, opened for a command, and its listing.

What a key command does to the keystore is library code
(L{bipgw.keys.add_transport_key}, L{bipgw.keys.generate_master_key});
here the command is parsed (L{add_parser}) and run (L{run}), the root key
and keystore are opened from the configuration, each change is audited,
and keys are shown by label, kind, size and check value.  A card's keys
(C{show}, C{rotate-card}) are handled in L{bipgw.cli._card_keys}, the root
key's rotation in L{bipgw.cli._rotate}.  Nothing here ever prints, logs or
echoes key bytes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any, TextIO

import attrs
from twisted.internet.defer import Deferred, ensureDeferred

import bipgw.cli._audit as _audit
import bipgw.cli._card_keys as _card_keys
import bipgw.cli._rotate as _rotate
from bipgw.cli._args import config_parent, config_path
from bipgw.config import Config
from bipgw.keys import (
    MASTER_KINDS,
    IRootKeys,
    KeyInfo,
    KeyManagementError,
    KeyStore,
    Pkcs11MasterKeys,
    Pkcs11RootKeys,
    TokenMaster,
    TransportScheme,
    add_master_key,
    add_transport_key,
    generate_master_key,
    key_check_value,
    retire_transport_key,
    retired_since,
)

__all__ = ["Keys", "add_parser", "describe", "describe_token_master", "list_keys", "run"]


@attrs.frozen
class Keys:
    """The install's root key and keystore, opened together."""

    root: IRootKeys
    store: KeyStore

    @classmethod
    def open(cls, config: Config, environ: Mapping[str, str] | None = None) -> Keys:
        """Load the root key (file or C{BIPGW_ROOT_KEY}) and open the keystore with it."""
        root = config.keys.load_root_key(environ)
        try:
            return cls(root, config.keys.open_keystore(root))
        except BaseException:
            if isinstance(root, Pkcs11RootKeys):
                root.close()
            raise

    def close(self) -> None:
        """Close the token session of a PKCS#11 root key (nothing to do for a file)."""
        if isinstance(self.root, Pkcs11RootKeys):
            self.root.close()


def describe(info: KeyInfo, check: str) -> str:
    """One line about a key: label, kind, size, KCV and metadata; never the key."""
    meta = " ".join(f"{k}={v}" for k, v in sorted(info.meta.items()))
    line = f"{info.label}\t{info.kind.value}\t{info.length} bytes\tKCV {check}\t{meta}".rstrip()
    retired = retired_since(info)
    if retired is not None:
        line += "\tRETIRED " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(retired))
    return line


def describe_token_master(entry: TokenMaster) -> str:
    """One line about a master key in the token: label, kind, size, kdf; never the key."""
    kind = entry.kind.value if entry.kind is not None else "(no kind: not used by the gateway)"
    size = f"{entry.length} bytes" if entry.length is not None else "size unknown"
    where = "in token, non-extractable" if entry.protected else "in token, EXTRACTABLE"
    return f"{entry.label}\t{kind}\t{size}\tkdf={entry.kdf}\t{where}"


def list_keys(keys: Keys, out: TextIO) -> int:
    """Print one line per key (see L{describe}), then one per master key in
    the PKCS#11 token (L{describe_token_master}); return how many there are."""
    labels = keys.store.labels()
    in_token: list[TokenMaster] = []
    where = ""
    if isinstance(keys.root, Pkcs11RootKeys):
        where = keys.root.describe()
        token = Pkcs11MasterKeys.held_by(keys.root.token)
        in_token = token.entries() if token is not None else []
    if not labels:
        out.write(f"no keys in {keys.store.path}\n")
    for label in labels:
        info = keys.store.info(label)
        try:
            check = key_check_value(info, keys.store.get(label))
        except KeyManagementError:
            check = "(cannot open)"
        out.write(describe(info, check) + "\n")
    if in_token:
        out.write(f"master keys in the {where}:\n")
    for entry in in_token:
        out.write(describe_token_master(entry) + "\n")
    return len(labels) + len(in_token)


def add_parser(commands: Any) -> None:
    """Add C{bipgw keys ACTION} to the command's sub-parsers."""
    # -c is accepted before or after the subcommand.
    config_option = config_parent()
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


def run(args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]) -> int:
    """Run C{bipgw keys ACTION}; the exit status."""
    config = Config.from_file(config_path(args, env))
    card_keys = args.keys_command in ("show", "rotate-card") or (
        args.keys_command == "list" and (args.iccid or args.cards)
    )
    if card_keys:
        return _card_keys_command(config, args, out)
    if args.keys_command == "rotate-root":
        return _rotate.rotate_root(config, args, out, env)
    if args.keys_command == "init-hsm":
        target, detail = _rotate.init_hsm(config, out)
        return _audit.audited(config, err, env, "keys.init-hsm", target, detail)
    if args.keys_command == "generate-master" and args.backend == "pkcs11":
        target, detail = _rotate.generate_token_master(config, args, out)
        return _audit.audited(config, err, env, "keys.generate-master", target, detail)
    keys = Keys.open(config, env)
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
    return _audit.audited(config, err, env, f"keys.{args.keys_command}", info.label, detail)


def _keystore_command(
    args: argparse.Namespace, out: TextIO, keys: Keys
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
        list_keys(keys, out)
        return None
    out.write(f"stored in {keys.store.path}:\n{describe(info, check)}\n")
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
