# -*- test-case-name: tests.unit.cli.test_tenants,tests.unit.cli.test_partners -*-
"""What the store-editing commands (C{tenant}/C{service}, C{partner}/C{imports}) parse alike.

Each command family adds the same C{-c/--config} option after its action
and reads counts the same way; kept here once so they cannot drift.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO

from bipgw.config import DEFAULT_CONFIG_NAME, Config
from bipgw.errors import BipGwError

if TYPE_CHECKING:
    from bipgw.store import IStore

__all__ = ["CONFIG_ENV", "config_parent", "config_path", "positive"]

CONFIG_ENV: Final = "BIPGW_CONFIG"
"""The environment variable naming the configuration file when C{-c} is not given."""


def config_parent() -> argparse.ArgumentParser:
    """A parent parser with the C{-c/--config} option, for every action of a command."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        help=f"configuration file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG_NAME})",
    )
    return config


def config_path(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The configuration file a command reads: C{-c}, else C{$BIPGW_CONFIG},
    else C{./bipgw.toml}."""
    return getattr(args, "config", None) or environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME


def positive(value: str) -> int:
    """A whole number >= 1, or a usage error naming the value."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not >= 1")
    return n


def run_on_store(
    args: argparse.Namespace,
    stderr: TextIO,
    environ: Mapping[str, str],
    work: Callable[[IStore, Config], Awaitable[int]],
) -> int:
    """Open the configured store, run C{work} on it under a reactor, close it.

    What the store commands (C{tenant}, C{service}, C{partner}, C{imports},
    C{operator}, C{audit}) share: C{work}'s status is the exit status; a
    L{BipGwError} or C{ValueError} it raises is one C{bipgw: error:} line
    and status 1.
    """
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted.internet.task import react

    from bipgw.store import open_store

    config = Config.from_file(config_path(args, environ))
    status = 1

    def main(reactor: Any) -> Deferred[None]:
        async def go() -> None:
            nonlocal status
            store = await open_store(config.database.url, reactor=reactor)
            try:
                status = await work(store, config)
            except (BipGwError, ValueError) as e:
                stderr.write(f"bipgw: error: {e}\n")
            finally:
                await store.close()

        return ensureDeferred(go())

    try:
        react(main)
    except SystemExit:
        pass  # react always exits; the status is the command's own
    return status
