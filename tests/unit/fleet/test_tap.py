"""Tests for the twistd plugin (C{twistd -n simfleet --fleet DIR}) and its options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from simcard import tap
from simcard.fleet import FleetService
from tests.unit.fleet.test_harness import fleet_dir, make_fleet


class OptionsTests(SynchronousTestCase):
    """The fleet directory is checked while the options are parsed."""

    def setUp(self) -> None:
        self.result, _ = make_fleet(fleet_dir(self), cards=2)
        self.directory = str(self.result.directory)

    def test_parse(self) -> None:
        """--fleet DIR reads DIR/fleet.toml."""
        options = tap.Options(environ={})
        options.parseOptions(["--fleet", self.directory])
        assert options.config is not None
        self.assertEqual(options.config.directory, self.result.directory.resolve())

    def test_environment(self) -> None:
        """Without --fleet, SIMFLEET_DIR names the directory."""
        options = tap.Options(environ={tap.FLEET_ENV: self.directory})
        options.parseOptions([])
        self.assertIsNotNone(options.config)

    def test_missing(self) -> None:
        """No directory, or one without fleet.toml, is a usage error saying so."""
        with self.assertRaises(usage.UsageError) as ctx:
            tap.Options(environ={}).parseOptions([])
        self.assertIn("--fleet DIR is required", str(ctx.exception))
        with self.assertRaises(usage.UsageError) as ctx:
            tap.Options(environ={}).parseOptions(["--fleet", self.mktemp()])
        self.assertIn("fleet.toml: no such file", str(ctx.exception))

    def test_badFile(self) -> None:
        """A bad key in fleet.toml stops twistd with a usage error naming it."""
        toml = self.result.fleet_toml
        toml.write_text(toml.read_text() + "\n[nonsense]\n")
        with self.assertRaises(usage.UsageError) as ctx:
            tap.Options(environ={}).parseOptions(["--fleet", self.directory])
        self.assertIn("nonsense", str(ctx.exception))

    def test_badEndpoint(self) -> None:
        """--smsc and --control must be server endpoint strings."""
        with self.assertRaises(usage.UsageError) as ctx:
            tap.Options(environ={}).parseOptions(["--fleet", self.directory, "--smsc", "nope:1"])
        self.assertIn("--smsc", str(ctx.exception))

    def test_makeService(self) -> None:
        """makeService builds a FleetService on the given reactor, overrides applied."""
        options = tap.Options(environ={})
        options.parseOptions(["--fleet", self.directory, "--smsc", "tcp:12775"])
        reactor = MemoryReactorClock()
        service = tap.makeService(options, reactor)
        self.assertIsInstance(service, FleetService)
        service.startService()
        self.assertEqual(reactor.tcpServers[0][0], 12775)
        self.successResultOf(service.stopService())
        self.assertEqual(reactor.getDelayedCalls(), [])


class PluginTests(SynchronousTestCase):
    """twistd finds the plugin."""

    def test_discoverable(self) -> None:
        """Exactly one IServiceMaker named simfleet, whose module is simcard.tap."""
        makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "simfleet"]
        self.assertEqual(len(makers), 1)
        [maker] = makers
        self.assertIsInstance(maker.options(), tap.Options)
        self.assertIs(maker.makeService, tap.makeService)

    def test_noReactorInstalled(self) -> None:
        """Loading the plugin, the options and the CLI installs no reactor (twistd chooses)."""
        code = (
            "import sys\n"
            "import simcard.tap, simcard.cli, simcard.fleet\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        root = Path(__file__).resolve().parents[3]
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(result.stdout.strip(), "False")
