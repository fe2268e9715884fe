# -*- test-case-name: tests.unit.fleet.test_config -*-
"""The fleet's one error family.

An operator runs C{simfleet} by hand and reads its errors on a terminal, so
each says which file, key, card or value is wrong and why, and the command
line prints it without a traceback.  Key bytes never appear in one.
"""

from __future__ import annotations

__all__ = ["FleetConfigError", "FleetError", "GenerateError"]


class FleetError(Exception):
    """Something the fleet cannot do as asked; the message says what and why."""


class FleetConfigError(FleetError, ValueError):
    """A C{fleet.toml} (or a fault setting) that cannot be used.

    The message names the file and the dotted key, e.g.
    C{fleet.toml: faults.cards.8988211000000000018.slow = -1: expected ...}.
    """


class GenerateError(FleetError):
    """A fleet cannot be generated with these arguments (or at this place)."""
