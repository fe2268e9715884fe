# -*- test-case-name: tests.unit.fleet.test_tap -*-
"""The twistd plugin's options and service: C{twistd -n simfleet --fleet DIR}.

C{fleet.toml} is read and checked while twistd parses its options, so a
bad file stops twistd with a usage error naming the key, before anything
listens.  C{simfleet run DIR} builds the same service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from simcard.fleet import FleetConfig, FleetConfigError, FleetService

__all__ = ["FLEET_ENV", "Options", "makeService"]

FLEET_ENV = "SIMFLEET_DIR"
"""The environment variable read when C{--fleet} is not given."""

_PARSING_REACTOR = MemoryReactor()


def _endpoint(what: str, value: str) -> str:
    try:
        serverFromString(_PARSING_REACTOR, value)
    except Exception as e:
        raise usage.UsageError(f"--{what} {value!r} is not a server endpoint string: {e}") from None
    return value


class Options(usage.Options):
    """C{twistd simfleet} options: the fleet directory, and two overrides.

    @ivar config: the checked C{fleet.toml}, once L{postOptions} has run.
    """

    synopsis = "--fleet DIR [--smsc ENDPOINT] [--control ENDPOINT]"
    optParameters = [
        [
            "fleet",
            "d",
            None,
            f"The fleet directory from 'simfleet generate' (default: ${FLEET_ENV}).",
        ],
        ["smsc", None, None, "Listen for the gateway's SMPP binds here (overrides [smsc] listen)."],
        ["control", None, None, "Open the control port here (overrides [control] listen)."],
    ]
    longdesc = (
        "Run a simulated SIM fleet: the SMSC the gateway binds to, and the cards behind it."
        " Make a fleet with 'simfleet generate --cards N --out DIR'."
    )

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """
        @param environ: where C{SIMFLEET_DIR} is looked up (default: C{os.environ}).
        """
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self.config: FleetConfig | None = None

    def postOptions(self) -> None:
        """Read and check the fleet's C{fleet.toml} and the endpoint overrides.

        @raise usage.UsageError: no directory, no C{fleet.toml} in it, or a
            bad key or value (the message names it).
        """
        directory = self["fleet"] or self._environ.get(FLEET_ENV)
        if not directory:
            raise usage.UsageError(
                f"--fleet DIR is required (or set ${FLEET_ENV}); 'simfleet generate' makes one"
            )
        path = Path(directory) / "fleet.toml"
        if not path.is_file():
            raise usage.UsageError(f"{path}: no such file; is {directory} a fleet directory?")
        for what in ("smsc", "control"):
            if self[what] is not None:
                _endpoint(what, self[what])
        try:
            self.config = FleetConfig.from_file(path)
        except FleetConfigError as e:
            raise usage.UsageError(str(e)) from None
        if not self.config.fleet.cards_db.is_file():
            raise usage.UsageError(f"{self.config.fleet.cards_db}: no such file (fleet.cards_db)")
        self["fleet"] = directory


def makeService(options: Options, reactor: Any = None) -> FleetService:
    """The fleet service for C{options}' directory.

    @param reactor: the reactor the fleet runs on; the global one (the one
        twistd installed) if C{None}.
    """
    if options.config is None:
        options.postOptions()
    assert options.config is not None
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    return FleetService(
        options.config, reactor, smsc_listen=options["smsc"], control_listen=options["control"]
    )
