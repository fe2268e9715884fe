# -*- test-case-name: tests.unit.cli.test_tenants,tests.unit.cli.test_partners -*-
"""What the store-editing commands (C{tenant}/C{service}, C{partner}/C{imports}) parse alike.

Each command family adds the same C{-c/--config} option after its action
and reads counts the same way; kept here once so they cannot drift.
"""

from __future__ import annotations

import argparse
from typing import Final

from bipgw.config import DEFAULT_CONFIG_NAME

__all__ = ["CONFIG_ENV", "config_parent", "positive"]

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


def positive(value: str) -> int:
    """A whole number >= 1, or a usage error naming the value."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not >= 1")
    return n
