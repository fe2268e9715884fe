# -*- test-case-name: tests.unit.cli.test_rotate -*-
"""C{bipgw keys rotate-root}, C{init-hsm}: the root key's life.

C{rotate-root} makes a new root key and re-seals every sealed value under it.

The work is L{bipgw.store.RootRotation}; here it is given the install's
root keys (a root key file, or a PKCS#11 token), database and keystore,
and its progress is printed: rows done of the total and the rate, at most
once a second.  Interrupted (even by C{kill -9}), the same command resumes
where it stopped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from bipgw.cli._audit import cli_actor
from bipgw.config import Config, KeyBackend
from bipgw.keys import (
    ROOT_KEY_ENV,
    IRotatableRootKeys,
    KeyManagementError,
    KeyStore,
    Pkcs11MasterKeys,
    Pkcs11RootKeys,
    master_kind,
    token_master_label,
)

if TYPE_CHECKING:
    from bipgw.store import Progress

__all__ = ["add_arguments", "generate_token_master", "init_hsm", "rotate_root"]


def _token_backend(config: Config, command: str) -> None:
    if config.keys.backend is not KeyBackend.PKCS11:
        raise KeyManagementError(
            f'{command} needs [keys] backend = "pkcs11" (and the hsm_* keys) in {config.source}'
        )


def init_hsm(config: Config, out: TextIO) -> tuple[str, str]:
    """Create the root key in the configured token, and the keystore if there
    is none; the audit record's target and detail (ids, never a key)."""
    _token_backend(config, "bipgw keys init-hsm")
    token = config.keys.open_token()
    try:
        root = Pkcs11RootKeys.initialise(token)
        detail = f"root key {root.key_id} created in the {root.describe()}"
        out.write(detail + "\n")
        if not config.keys.keystore.exists():
            KeyStore.create(config.keys.keystore, root)
            out.write(f"empty keystore {config.keys.keystore} created\n")
            detail += f"; empty keystore {config.keys.keystore} created"
    finally:
        token.close()
    return "root-key", detail


def generate_token_master(config: Config, args: argparse.Namespace, out: TextIO) -> tuple[str, str]:
    """C{generate-master --backend pkcs11}: a master key made inside the token;
    the audit record's target and detail (never a key)."""
    _token_backend(config, "generate-master --backend pkcs11")
    if args.replace:
        raise KeyManagementError("--replace: a master key in the token is never replaced")
    if args.kvn is not None:
        raise KeyManagementError(
            "--kvn: a master key in the token has no key version (a v1 token master serves every"
            " version as the only v1 master of its kind)"
        )
    kind = master_kind(args.kind)
    # The kind and derivation are in the token label: the token has no
    # metadata field (bipgw.keys._pkcs11_masters).
    name = token_master_label(kind, args.label, args.kdf)
    token = config.keys.open_token()
    try:
        Pkcs11MasterKeys(token).generate(name, args.length)
    finally:
        token.close()
    out.write(
        f"{args.label}\t{kind.value}\t{args.length} bytes\tkdf={args.kdf}\tgenerated in the"
        " token, non-extractable\n"
    )
    return args.label, (
        f"{kind.value}, {args.length} bytes, kdf {args.kdf}, generated in the PKCS#11 token"
        f" as {name!r}, non-extractable"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of C{bipgw keys rotate-root}."""
    parser.add_argument(
        "--batch", type=int, default=1000, metavar="ROWS", help="rows re-sealed per transaction"
    )
    parser.add_argument(
        "--resume-only",
        action="store_true",
        help="only finish an interrupted rotation; do nothing when none is under way",
    )


def rotate_root(
    config: Config, args: argparse.Namespace, out: TextIO, environ: Mapping[str, str]
) -> int:
    """Run (or resume) the rotation; the exit status."""
    if args.batch < 1:
        raise KeyManagementError(f"--batch must be at least 1, got {args.batch}")
    url = config.database.url
    if not url.startswith(("sqlite", "postgresql")):
        raise KeyManagementError(
            f"database {url.split(':', 1)[0]}: only a SQL database holds sealed keys to rotate"
        )
    root = config.keys.load_root_key(environ)
    try:
        return _rotate(config, args, out, root)
    finally:
        if isinstance(root, Pkcs11RootKeys):
            root.close()


def _rotate(config: Config, args: argparse.Namespace, out: TextIO, root: object) -> int:
    from bipgw.store import RootRotation, create_sql_engine

    url = config.database.url
    if not isinstance(root, IRotatableRootKeys):
        raise KeyManagementError(
            f"the root key comes from ${ROOT_KEY_ENV}: rotation needs it in a file"
            ' ([keys] root_key_file) or a PKCS#11 token ([keys] backend = "pkcs11")'
        )
    rotatable = root
    engine = create_sql_engine(url)
    last = [0.0]

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or p.done == p.total:
            last[0] = now
            out.write(f"  {p}\n")
            out.flush()

    try:
        rotation = RootRotation(
            engine,
            rotatable,
            str(config.keys.keystore),
            batch=args.batch,
            actor=cli_actor(),
            progress=progress,
        )
        pending = rotation.pending()
        if pending is None and args.resume_only:
            out.write(f"no rotation under way in {rotatable.describe()}\n")
            return 0
        if pending is None:
            out.write(f"rotating root key {rotatable.key_id} in {rotatable.describe()}\n")
        else:
            out.write(f"resuming the rotation to root key {pending[1]}\n")
        result = rotation.run()
    finally:
        engine.dispose()
    out.write(
        f"root key {result.new_key_id} is current; {result.old_key_id or 'the old key'} retired"
        f" ({result.rows} rows and {result.keystore_entries} keystore entries re-sealed"
        f" in {result.seconds:.1f} s)\n"
    )
    return 0
