"""Tests for the simfleet command line: generate and info (run is the twistd service)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from simcard import cli
from tests.unit.fleet.test_harness import fleet_dir, make_fleet, transport_key

_SCRIPT = Path(sys.executable).parent / "simfleet"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


class GenerateCommandTests(SynchronousTestCase):
    """simfleet generate."""

    def test_generate(self) -> None:
        """The command writes the fleet, says where everything is, and prints no key."""
        out_dir = fleet_dir(self)
        self.patch(cli, "_PROGRESS_FROM", 1)
        status, out, err = _run(
            "generate",
            "--cards",
            "4",
            "--out",
            out_dir,
            "--seed",
            "3",
            "--admin-host",
            "192.0.2.5",
            "--admin-port",
            "9443",
            "--algorithm",
            "3des",
        )
        self.assertEqual(status, 0, err)
        self.assertIn("generated 4 cards", out)
        self.assertIn("vendor/B0001.out (transport key TK-B0001)", out)
        self.assertIn(f"simfleet run {out_dir}", out)
        self.assertEqual(err, "simfleet: 4/4 cards\n")
        text = (Path(out_dir) / "vendor/B0001.out").read_text()
        self.assertIn("Ota_algorithm: 3DES", text)
        self.assertIn('admin_host = "192.0.2.5"', (Path(out_dir) / "fleet.toml").read_text())

    def test_refusal(self) -> None:
        """A refused generation is one line on stderr and status 1."""
        out_dir = Path(fleet_dir(self))
        out_dir.mkdir()
        (out_dir / "x").write_text("")
        status, out, err = _run("generate", "--cards", "1", "--out", str(out_dir))
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("simfleet: error: "), err)
        self.assertEqual(err.count("\n"), 1)

    def test_usage(self) -> None:
        """Missing arguments are argparse's usage errors (status 2)."""
        with self.assertRaises(SystemExit) as ctx:
            cli.main(["generate", "--out", "x"], io.StringIO(), io.StringIO())
        self.assertEqual(ctx.exception.code, 2)


class InfoCommandTests(SynchronousTestCase):
    """simfleet info."""

    def test_info(self) -> None:
        """info describes the fleet: counts, first card, files, transport key by KCV only."""
        result, _ = make_fleet(fleet_dir(self), cards=3)
        status, out, err = _run("info", str(result.directory))
        self.assertEqual((status, err), (0, ""))
        self.assertIn("cards:          3 in", out)
        self.assertIn("first card:     ICCID 8988211000000000011 IMSI 001010000000001", out)
        self.assertIn("(seed 42), 3 cards, batch B0001, OTA aes", out)
        self.assertIn("SMSC:           tcp:2775, ESME account(s): bipgw", out)
        _, key = transport_key(result)
        self.assertNotIn(key.reveal().hex().upper(), out)
        self.assertIn("transport key TK-B0001, KCV ", out)
        password = (result.directory / "gateway/smpp.password").read_text().strip()
        self.assertNotIn(password, out)

    def test_notAFleet(self) -> None:
        """info on another directory is a one-line error."""
        status, _, err = _run("info", self.mktemp())
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("simfleet: error: "), err)
        self.assertIn("fleet.toml: no such file", err)
        self.assertIn("a fleet directory?", err)


class ConsoleScriptTests(SynchronousTestCase):
    """The simfleet executable installed from setup.cfg's entry point."""

    def test_script(self) -> None:
        """simfleet generate runs as a program and exits 0."""
        if not _SCRIPT.exists():
            raise SkipTest(f"{_SCRIPT} is not installed (pip install -e .)")
        out_dir = fleet_dir(self)
        result = subprocess.run(
            [str(_SCRIPT), "generate", "--cards", "2", "--out", out_dir, "--seed", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertTrue((Path(out_dir) / "cards.db").is_file())
