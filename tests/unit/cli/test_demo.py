"""C{bipgw demo}: its options, its directory rule, its summary arithmetic.

The demo itself (fleet, gateway, sessions) runs in
C{tests/integration/test_demo.py}.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli import _demo
from bipgw.codec.apdu import CommandApdu
from bipgw.demo import (
    CREDENTIAL_AID,
    ISD_SCRIPT,
    LOG_NAME,
    SERVICE_SCRIPT,
    DemoError,
    DemoSummary,
    demo_directory,
    percentile,
    tune,
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    _demo.add_parser(commands)
    return parser.parse_args(["demo", *argv])


class DemoOptionsTests(SynchronousTestCase):
    """The C{demo} subcommand's arguments."""

    def test_defaults(self) -> None:
        """Without options: a temporary directory, 100 cards, 50 at once, no serving."""
        args = _parse()
        self.assertEqual(
            (args.directory, args.cards, args.concurrency, args.seed, args.serve),
            (None, 100, 50, None, False),
        )

    def test_options(self) -> None:
        """Every option is read."""
        args = _parse("d", "--cards", "7", "--concurrency", "3", "--seed", "9", "--serve")
        self.assertEqual(
            (args.directory, args.cards, args.concurrency, args.seed, args.serve),
            ("d", 7, 3, 9, True),
        )

    def test_nonEmptyDirectoryRefused(self) -> None:
        """A directory holding files is refused with exit status 1 and one line."""
        base = Path(self.mktemp())
        base.mkdir()
        (base / "precious.txt").write_text("keep me")
        err = io.StringIO()
        self.assertEqual(_demo.run(_parse(str(base)), io.StringIO(), err), 1)
        self.assertIn("is not empty", err.getvalue())
        self.assertEqual([p.name for p in base.iterdir()], ["precious.txt"])


class DemoPiecesTests(SynchronousTestCase):
    """The pure parts of L{bipgw.demo}."""

    def test_percentile(self) -> None:
        """Nearest-rank percentiles."""
        values = [float(v) for v in range(1, 101)]
        self.assertEqual(percentile(values, 50), 50.0)
        self.assertEqual(percentile(values, 99), 99.0)
        self.assertEqual(percentile(values, 100), 100.0)
        self.assertEqual(percentile([3.0], 99), 3.0)
        self.assertRaises(ValueError, percentile, [], 50)

    def test_directory(self) -> None:
        """An absent or empty directory (or one with only the log) is used; a new
        temporary one is made when none is given."""
        base = Path(self.mktemp())
        self.assertEqual(demo_directory(base), base.resolve())
        (base / LOG_NAME).write_text("")
        self.assertEqual(demo_directory(base), base.resolve())
        (base / "other").write_text("")
        self.assertRaises(DemoError, demo_directory, base)
        fresh = demo_directory(None)
        self.addCleanup(fresh.rmdir)
        self.assertEqual(list(fresh.iterdir()), [])

    def test_tune(self) -> None:
        """The loopback tuning rewrites exactly the lines it names."""
        text = "[smpp]\nrate = 50\nwindow = 10\n[admin]\nmax_connections = 1000\n# rate = 1\n"
        self.assertEqual(
            tune(text),
            "[smpp]\nrate = 2000\nwindow = 50\n[admin]\nmax_connections = 20000\n# rate = 1\n",
        )
        self.assertRaises(DemoError, tune, "[smpp]\nwindow = 10\n")

    def test_scripts(self) -> None:
        """The demo's commands are well-formed APDUs: SELECT by AID of the ISD and
        of the fleet's credential applet, GET STATUS, GET DATA."""
        select_isd = CommandApdu.decode(ISD_SCRIPT[0])
        self.assertEqual((select_isd.ins, select_isd.p1), (0xA4, 0x04))
        self.assertEqual(select_isd.data, bytes.fromhex("A000000151000000"))
        self.assertEqual(CommandApdu.decode(ISD_SCRIPT[1]).ins, 0xF2)
        cplc = CommandApdu.decode(ISD_SCRIPT[2])
        self.assertEqual((cplc.ins, cplc.p1, cplc.p2), (0xCA, 0x9F, 0x7F))
        self.assertEqual(CommandApdu.decode(SERVICE_SCRIPT[0]).data, CREDENTIAL_AID)
        self.assertEqual(CREDENTIAL_AID[1:8], b"bipgwCR")

    def test_summary(self) -> None:
        """The summary counts, rates and percentiles, and says why sessions failed."""
        summary = DemoSummary(
            ok=3,
            failed=1,
            reasons={"card-timeout": 1},
            apdus=15,
            elapsed=2.0,
            setup=(0.1, 0.2, 0.3),
            scripts=(0.01,),
            sessions=(0.5,),
        )
        text = "\n".join(summary.lines())
        self.assertIn("sessions: 4 in 2.00 s (2.0/s): ok 3, failed 1", text)
        self.assertIn("APDUs relayed: 15", text)
        self.assertIn("failed with card-timeout: 1", text)
        self.assertIn("p50 200.0 ms", text)
        self.assertFalse(summary.all_ok)
        self.assertTrue(
            DemoSummary(1, 0, {}, 5, 1.0, (0.1,), (0.1,), (0.1,)).all_ok,
        )
