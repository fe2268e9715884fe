# -*- test-case-name: tests.unit.config.test_install,tests.unit.cli.test_init -*-
"""A new gateway install that works before anything is edited (C{bipgw init DIR}).

An install is a directory holding the configuration (C{bipgw.toml}, every
key commented), the gateway root key (C{root.key}, mode 0600), an empty
keystore sealed under it, the SMSC password file and the data directory.
Nothing here ever replaces a root key or a keystore: losing either loses
every stored key, so even C{--force} (which rewrites the configuration)
keeps them, after checking that they still open each other.  If anything
fails half-way, the files this run created are removed again, so a failed
init never leaves a half-made install behind.

L{init_install} is the library function: the C{bipgw init} command
(L{bipgw.cli}) and the demo (L{bipgw.demo}) both call it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from bipgw.config._model import Config
from bipgw.config._tables import DEFAULT_CONFIG_NAME
from bipgw.errors import BipGwError
from bipgw.keys import ROOT_KEY_ENV, KeyStore, RootKey

__all__ = ["PASSWORD_FILE_NAME", "InitError", "InitResult", "init_install"]

#: The name of the SMSC password file C{init} creates next to the configuration.
PASSWORD_FILE_NAME = "smpp.password"
_MAX_PASSWORD_FILE = 4096


class InitError(BipGwError):
    """An install was refused, or could not be finished; nothing was left half-made."""


@attrs.frozen
class InitResult:
    """What L{init_install} made, for the summary C{bipgw init} prints.

    @ivar config: the configuration written (and read back).
    @ivar created: the files and directories created by this run.
    @ivar kept: existing key files that were kept (with C{--force}).
    @ivar root_key_from_environment: the root key came from C{BIPGW_ROOT_KEY},
        so no root key file was written.
    @ivar password_empty: the SMSC password file is empty and needs editing.
    """

    config: Config
    config_path: Path
    root_key_id: str
    created: tuple[Path, ...]
    kept: tuple[Path, ...]
    root_key_from_environment: bool
    password_empty: bool


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write C{path} atomically: a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_new(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _password_from(source: Path) -> bytes:
    try:
        with open(source, "rb") as f:
            data = f.read(_MAX_PASSWORD_FILE + 1)
    except OSError as e:
        raise InitError(f"cannot read the SMSC password file {source}: {e.strerror}") from None
    lines = data.splitlines()
    return (lines[0] if lines else b"") + b"\n"


class _Undo:
    """The paths one run created, removed again if the run fails."""

    def __init__(self) -> None:
        self.created: list[Path] = []

    def made(self, path: Path) -> Path:
        self.created.append(path)
        return path

    def rollback(self) -> None:
        for path in reversed(self.created):
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
            except OSError:
                pass  # a directory someone else filled meanwhile: leave it


def init_install(
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
    password_source: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    public_host: str = "127.0.0.1",
    public_port: int | None = None,
    listen: str = "tcp:8443",
    smpp_endpoint: str = "tcp:host=127.0.0.1:port=2775",
    system_id: str = "bipgw",
    source_address: str = "12345",
    node_id: str = "gw1",
) -> InitResult:
    """Create (or, with C{force}, refresh) a gateway install in C{directory}.

    @param force: rewrite an existing C{bipgw.toml}; an existing root key and
        keystore are kept and checked, never replaced.
    @param password_source: a file whose first line is the ESME password,
        copied into the install's C{smpp.password} (mode 0600).  Without it
        an empty password file is created (unless one exists).
    @param environ: where C{BIPGW_ROOT_KEY} is looked up; when it is set,
        that key is used and no root key file is written.
    @raise InitError: if an install exists and C{force} is false, or if the
        existing keys do not open each other.
    @raise bipgw.config.ConfigError: if an option is not a valid value for
        the key it sets (the error's C{key} names it).
    """
    env = os.environ if environ is None else environ
    base = Path(os.path.abspath(directory))
    config_path = base / DEFAULT_CONFIG_NAME
    root_path = base / "root.key"
    keystore_path = base / "keystore.json"
    password_path = base / PASSWORD_FILE_NAME
    existing = [p for p in (config_path, root_path, keystore_path) if os.path.lexists(p)]
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise InitError(
            f"{base} already holds a bipgw install ({names}); nothing was changed."
            " Use --force to rewrite bipgw.toml (the root key and keystore are kept)"
        )
    if base.exists() and not base.is_dir():
        raise InitError(f"{base} exists and is not a directory")
    undo = _Undo()
    try:
        return _create(
            undo,
            base,
            config_path,
            root_path,
            keystore_path,
            password_path,
            password_source=None if password_source is None else Path(password_source),
            env=env,
            make_config=functools.partial(
                Config.defaults_for_init,
                base,
                public_host=public_host,
                public_port=public_port,
                listen=listen,
                smpp_endpoint=smpp_endpoint,
                system_id=system_id,
                password_file=PASSWORD_FILE_NAME,
                source_address=source_address,
                node_id=node_id,
            ),
        )
    except BaseException:
        undo.rollback()
        raise


def _create(
    undo: _Undo,
    base: Path,
    config_path: Path,
    root_path: Path,
    keystore_path: Path,
    password_path: Path,
    *,
    password_source: Path | None,
    env: Mapping[str, str],
    make_config: Callable[[], Config],
) -> InitResult:
    if not base.exists():
        base.mkdir(mode=0o700, parents=True)
        undo.made(base)
    kept: list[Path] = []
    if password_source is not None:
        data = _password_from(password_source)
        if password_path.exists():
            _replace(password_path, data, 0o600)
        else:
            _write_new(undo.made(password_path), data, 0o600)
    elif not password_path.exists():
        _write_new(undo.made(password_path), b"", 0o600)
    # Checks every option by the key it sets, before any key is generated.
    config = make_config()
    from_env = env.get(ROOT_KEY_ENV) is not None
    if from_env:
        root = RootKey.from_environment(env)
    elif root_path.exists():
        root = RootKey.load(root_path)
        kept.append(root_path)
    else:
        root = RootKey.generate()
        root.save(undo.made(root_path))
    if keystore_path.exists():
        KeyStore.open(keystore_path, root)
        kept.append(keystore_path)
    else:
        KeyStore.create(undo.made(keystore_path), root)
    data_dir = config.gateway.data_dir
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)
        undo.made(data_dir)
    text = config.render().encode("utf-8")
    if config_path.exists():
        _replace(config_path, text, 0o640)
    else:
        _write_new(undo.made(config_path), text, 0o640)
    written = Config.from_file(config_path)
    if written != config:  # pragma: no cover - the renderer's own tests cover this
        raise InitError(f"{config_path} does not read back as written; please report this")
    return InitResult(
        config=written,
        config_path=config_path,
        root_key_id=root.key_id,
        created=tuple(undo.created),
        kept=tuple(kept),
        root_key_from_environment=from_env,
        password_empty=written.smpp.password == "",
    )
