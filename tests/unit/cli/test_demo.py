"""C{bipgw demo}: its options, its directory rule, its summary arithmetic.

The demo itself (fleet, gateway, sessions) runs in
C{tests/integration/test_demo.py}.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from twisted.internet.defer import fail
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli import _demo
from bipgw.client import PlatformError
from bipgw.codec.apdu import CommandApdu
from bipgw.demo import (
    EXAMPLES,
    ISD_SCRIPT,
    LOG_NAME,
    DemoError,
    DemoProgress,
    DemoSummary,
    demo_directory,
    examples_directory,
    load_scripts,
    percentile,
    tune,
)
from bipgw.demo._sessions import SessionTarget


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

    def test_tuneRaisesTheServiceCeiling(self) -> None:
        """A demo more concurrent than the isd service's ceiling of 100 raises
        it to its concurrency; one within it leaves the line alone."""
        text = "rate = 1\nwindow = 1\nmax_connections = 1\nmax_concurrent_sessions = 100\n"
        self.assertIn("max_concurrent_sessions = 250\n", tune(text, 250))
        self.assertIn("max_concurrent_sessions = 100\n", tune(text, 50))

    def test_summary(self) -> None:
        """The summary counts sessions, scripts and APDUs, gives the rate and the
        percentiles, and says why sessions failed."""
        summary = DemoSummary(
            ok=3,
            failed=1,
            reasons={"card-timeout": 1},
            scripts_passed=12,
            scripts_failed=0,
            apdus=78,
            elapsed=2.0,
            setup=(0.1, 0.2, 0.3),
            round_trips=(0.004, 0.006),
            sessions=(0.5,),
        )
        text = "\n".join(summary.lines())
        self.assertIn("sessions: 4 in 2.00 s (2.0/s): ok 3, failed 1", text)
        self.assertIn("scripts: passed 12, failed 0", text)
        self.assertIn("APDUs through the platform channel: 78", text)
        self.assertIn("sessions failed with card-timeout: 1", text)
        self.assertIn("setup (open -> card connected): p50 200.0 ms", text)
        self.assertIn("APDU round trip (platform -> card -> platform): p50 4.0 ms", text)
        self.assertIn("whole session (open -> closed): p50 500.0 ms", text)
        self.assertNotIn("first failure", text)
        self.assertFalse(summary.all_ok)

    def test_summaryAllOk(self) -> None:
        """Every session and every script must succeed (and one session at
        least run) for the demo to succeed: a script that did not match fails
        it even though its session closed cleanly."""
        self.assertTrue(DemoSummary(ok=1, failed=0, scripts_passed=4).all_ok)
        self.assertFalse(DemoSummary(ok=0, failed=0).all_ok)
        self.assertFalse(DemoSummary(ok=2, failed=0, scripts_passed=7, scripts_failed=1).all_ok)

    def test_summaryFirstFailure(self) -> None:
        """The first failure's text (a replay trace) ends the summary, indented,
        with no trailing blanks on its empty lines."""
        trace = "replay mismatch.apdu\n\n#2 x\n   got 00\n"
        summary = DemoSummary(ok=1, failed=0, scripts_failed=1, first_failure=trace)
        lines = summary.lines()
        where = lines.index("first failure:")
        self.assertEqual(
            lines[where + 1 :], ["  replay mismatch.apdu", "", "  #2 x", "     got 00"]
        )

    def test_isdScript(self) -> None:
        """The fixed script the benchmarks time is well formed: SELECT of the ISD
        by AID, GET STATUS, GET DATA CPLC."""
        select = CommandApdu.decode(ISD_SCRIPT[0])
        self.assertEqual((select.ins, select.p1), (0xA4, 0x04))
        self.assertEqual(select.data, bytes.fromhex("A000000151000000"))
        self.assertEqual(CommandApdu.decode(ISD_SCRIPT[1]).ins, 0xF2)
        cplc = CommandApdu.decode(ISD_SCRIPT[2])
        self.assertEqual((cplc.ins, cplc.p1, cplc.p2), (0xCA, 0x9F, 0x7F))


class DemoProgressTests(SynchronousTestCase):
    """L{DemoProgress}: counts, and a line each tenth of the sessions."""

    def test_everyTenth(self) -> None:
        """With 100 sessions, a line comes after sessions 10, 20, ... 100 only."""
        progress = DemoProgress(100)
        shown = [n for n in range(1, 101) if progress.session(ok=True) is not None]
        self.assertEqual(shown, list(range(10, 101, 10)))

    def test_fewSessions(self) -> None:
        """With fewer than ten sessions, each one completes a tenth: a line each."""
        progress = DemoProgress(6)
        self.assertEqual(sum(progress.session(ok=True) is not None for _ in range(6)), 6)

    def test_counts(self) -> None:
        """The line counts sessions done and failed, and scripts ok and mismatched."""
        progress = DemoProgress(4)
        progress.script(passed=True)
        progress.script(passed=True)
        progress.script(passed=False)
        self.assertEqual(
            progress.session(ok=False),
            "  1/4 sessions done (1 failed), scripts: 2 ok, 1 mismatched",
        )
        self.assertEqual((progress.ok, progress.failed), (0, 1))
        line = progress.session(ok=True)
        assert line is not None
        self.assertIn("2/4 sessions done (1 failed)", line)


class DemoExamplesTests(SynchronousTestCase):
    """Which example scripts the demo replays, and where it finds them."""

    def test_checkoutExamples(self) -> None:
        """The checkout's examples/ holds every script the demo runs, each parses,
        and the one that fails on purpose is not among them."""
        base = examples_directory()
        self.assertEqual(base.name, "examples")
        scripts = load_scripts([base / name for name in EXAMPLES])
        self.assertEqual(len(scripts), len(EXAMPLES))
        self.assertTrue(all(s.commands for s in scripts))
        self.assertNotIn("mismatch.apdu", EXAMPLES)
        self.assertIn("read-cplc.apdu", EXAMPLES)

    def test_missingDirectory(self) -> None:
        """Without examples/ (an installed package, no checkout) the demo says
        where it looked and why it needs them."""
        root = Path(self.mktemp())
        root.mkdir()
        e = self.assertRaises(DemoError, examples_directory, root)
        self.assertIn(str(root / "examples"), str(e))
        self.assertIn("checkout", str(e))

    def test_missingExample(self) -> None:
        """An examples/ that lacks one of the scripts is refused, naming it."""
        root = Path(self.mktemp())
        (root / "examples").mkdir(parents=True)
        for name in EXAMPLES[1:]:
            (root / "examples" / name).write_text("")
        e = self.assertRaises(DemoError, examples_directory, root)
        self.assertIn(f"missing: {EXAMPLES[0]}", str(e))

    def test_badScript(self) -> None:
        """A script that does not parse stops the demo before anything starts,
        naming the file and line."""
        bad = Path(self.mktemp())
        bad.write_text("80 CA 9F 7F 00 => 9000\nnot a command\n")
        e = self.assertRaises(DemoError, load_scripts, [bad])
        self.assertIn(f"{bad}:2", str(e))


class _FakeSession:
    """A card session whose every command fails with C{error}."""

    iccid = "89882110000000000011"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def send(self, apdus: object, *, definite: bool = False) -> object:
        return fail(self.error)

    def close(self) -> object:
        return fail(self.error)


class DemoTargetTests(SynchronousTestCase):
    """The replay target over an open session."""

    def test_remembersChannelError(self) -> None:
        """When the channel fails a command, the target keeps the gateway's error
        (its code goes into the summary) and the replay still sees the failure."""
        error = PlatformError("card-timeout", "the card did not answer")
        target = SessionTarget(_FakeSession(error), "8988211000000000011")  # type: ignore[arg-type]
        self.assertIn("8988211000000000011", target.description)
        failure = self.failureResultOf(target.transmit(b"\x80\xca\x9f\x7f\x00"))
        self.assertIs(failure.value, error)
        self.assertIs(target.error, error)

    def test_otherErrorsNotKept(self) -> None:
        """A failure that is not the gateway's leaves no code behind."""
        target = SessionTarget(_FakeSession(ValueError("x")), "1")  # type: ignore[arg-type]
        self.assertIsInstance(self.failureResultOf(target.transmit(b"\x00")), Failure)
        self.assertIsNone(target.error)
