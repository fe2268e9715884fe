"""Tests for the replay runner, its trace and its targets (the command: test_replay_cli)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.plugin import IPlugin
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from bipgw.client._replay import (
    GatewayTarget,
    IReplayTarget,
    IReplayTargetFactory,
    ReplayTargetError,
    ReplayTargetMaker,
    Verdict,
    find_target_factory,
    open_gateway_target,
    run_script,
    target_factories,
)
from bipgw.client._replay_trace import format_capdu, format_trace, report_json
from bipgw.client._script import parse_script
from bipgw.client._script_model import Script
from bipgw.codec.apdu import sw_is_success
from tests.unit.client import PORT, SdkTestCase
from tests.unit.platform import AID, TOKEN, echo, iccid

ISD = "A000000151000000"
CPLC = "9F7F2A" + "00" * 12 + "00000011" + "0000" + "00" * 24
# What the fake card answers, by C-APDU (hex); anything else: 6D00.
CARD = {
    f"00A4040008{ISD}00": f"6F108408{ISD}A5049F6501FF9000",
    "80CA9F7F00": CPLC + "9000",
    "80CA004200": "42048988211090 00",
    "80CA004500": "6A88",
    "80E2800003010203": "9000",
}


class Ticker:
    """A fake monotonic clock: each reading is 1.5 ms after the last."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.0015
        return self.now


@implementer(IReplayTarget)
class FakeTarget:
    """A card answering from L{CARD}; batches stop at the first failure.

    @ivar calls: each transmit call's C-APDUs, batches as one list.
    """

    description = "a fake card"

    def __init__(self, answers: dict[str, str] | None = None) -> None:
        self.answers = CARD if answers is None else answers
        self.calls: list[list[str]] = []
        self.closed = False
        self.broken: Exception | None = None

    def _answer(self, capdu: bytes) -> bytes:
        return bytes.fromhex(self.answers.get(capdu.hex().upper(), "6D00"))

    def transmit(self, capdu: bytes) -> Deferred[bytes]:
        self.calls.append([capdu.hex().upper()])
        if self.broken is not None:
            return fail(self.broken)
        return succeed(self._answer(capdu))

    def transmit_batch(self, capdus: Sequence[bytes]) -> Deferred[list[bytes]]:
        self.calls.append([c.hex().upper() for c in capdus])
        out = []
        for capdu in capdus:
            out.append(self._answer(capdu))
            if not sw_is_success(int.from_bytes(out[-1][-2:], "big")):
                break
        return succeed(out)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


def script(text: str) -> Script:
    return parse_script(text, name="t.apdu")


class RunnerTests(SynchronousTestCase):
    """run_script sends, checks and reports."""

    def run_text(self, text: str, target: FakeTarget | None = None, **kwargs: Any) -> Any:
        return self.successResultOf(
            run_script(script(text), target or FakeTarget(), timer=Ticker(), **kwargs)
        )

    def test_allMatch(self) -> None:
        """Every command sent in order; all match; exit code 0; times from the timer."""
        target = FakeTarget()
        report = self.run_text(
            f"00A4040008{ISD}00 => 9000 data: 6F XX 84 08 *\n80CA9F7F00 => data: 9F7F 2A XX{{42}}",
            target,
        )
        self.assertEqual(target.calls, [[f"00A4040008{ISD}00"], ["80CA9F7F00"]])
        self.assertEqual([o.verdict for o in report.outcomes], [Verdict.PASSED] * 2)
        self.assertEqual((report.passed, report.exit_code, report.error), (True, 0, None))
        self.assertEqual([round(o.elapsed, 6) for o in report.outcomes], [0.0015, 0.0015])
        self.assertEqual(round(report.elapsed, 6), 0.0075)
        self.assertEqual(report.outcomes[1].data, bytes.fromhex(CPLC))
        self.assertEqual(report.outcomes[1].sw, 0x9000)
        self.assertFalse(target.closed)

    def test_stopsAtFirstMismatch(self) -> None:
        """A mismatch fails the run; later commands are not sent."""
        target = FakeTarget()
        report = self.run_text("80CA004500\n80CA9F7F00\n80CA004200", target)
        self.assertEqual(target.calls, [["80CA004500"]])
        self.assertEqual(
            [o.verdict for o in report.outcomes],
            [Verdict.FAILED, Verdict.NOT_RUN, Verdict.NOT_RUN],
        )
        self.assertEqual(
            report.outcomes[0].problems,
            ("status word 6A88 (referenced data not found), expected 9000",),
        )
        self.assertEqual((report.passed, report.exit_code), (False, 1))
        self.assertIsNone(report.outcomes[1].response)

    def test_keepGoing(self) -> None:
        """With keep_going every command is sent and checked."""
        target = FakeTarget()
        report = self.run_text(
            "80CA004500\n80CA9F7F00 => data: 9F 7F 2B *", target, keep_going=True
        )
        self.assertEqual(len(target.calls), 2)
        self.assertEqual([o.verdict for o in report.outcomes], [Verdict.FAILED] * 2)
        mismatch = report.outcomes[1].data_mismatch
        self.assertEqual((mismatch.offset, mismatch.reason), (2, "byte 2: expected 2B, got 2A"))

    def test_expectedErrorPasses(self) -> None:
        """An error status word the script expects is a pass."""
        report = self.run_text("80CA004500 => 6A8X|6A82\n80CA006600 => 6D00 data:")
        self.assertTrue(report.passed)

    def test_batchSentTogether(self) -> None:
        """A batch block goes to the target in one call, with one elapsed time."""
        target = FakeTarget()
        report = self.run_text(
            "80CA004200\nbatch\n80CA9F7F00\n80E2800003010203\nend\n80CA004200", target
        )
        self.assertEqual(
            target.calls,
            [["80CA004200"], ["80CA9F7F00", "80E2800003010203"], ["80CA004200"]],
        )
        self.assertTrue(report.passed)
        self.assertEqual(report.outcomes[1].elapsed, report.outcomes[2].elapsed)

    def test_batchCutShort(self) -> None:
        """Commands the card did not run after a failure in a batch fail, saying why."""
        report = self.run_text(
            "batch\n80CA004500 => 6A88\n80CA9F7F00\n80CA004200\nend", keep_going=True
        )
        first, second, third = report.outcomes
        self.assertEqual(first.verdict, Verdict.PASSED)
        self.assertEqual((second.verdict, second.response), (Verdict.FAILED, None))
        self.assertEqual(second.problems, ("not executed: the card stopped the batch after #1",))
        self.assertEqual(third.verdict, Verdict.FAILED)

    def test_targetFailure(self) -> None:
        """A target that fails stops the run, with the reason in the report."""
        target = FakeTarget()
        target.broken = ConnectionError("the card left")
        report = self.run_text("80CA004200\n80CA9F7F00", target, keep_going=True)
        self.assertEqual(
            report.error, "the target failed at command #1: ConnectionError: the card left"
        )
        self.assertEqual([o.verdict for o in report.outcomes], [Verdict.FAILED, Verdict.NOT_RUN])
        self.assertEqual(report.exit_code, 1)

    def test_tooManyAnswers(self) -> None:
        """A target that answers more R-APDUs than C-APDUs is a failed target."""
        target = FakeTarget()
        target.transmit_batch = lambda capdus: succeed([b"\x90\x00"] * 3)  # type: ignore[method-assign]
        report = self.run_text("batch\n80CA004200\nend")
        self.assertIsNone(report.error)
        report = self.successResultOf(
            run_script(script("batch\n80CA004200\nend"), target, timer=Ticker())
        )
        self.assertIn("3 R-APDUs came back for 1 C-APDUs", report.error)

    def test_noStatusWord(self) -> None:
        """An R-APDU shorter than a status word fails its command."""
        report = self.run_text("80CA004200", FakeTarget({"80CA004200": "90"}))
        self.assertEqual(report.outcomes[0].problems, ("the R-APDU has 1 bytes, no status word",))
        self.assertIsNone(report.outcomes[0].sw)

    def test_observerSeesEachOutcome(self) -> None:
        """The observer gets every outcome, in order, as it is known."""
        seen: list[int] = []
        self.run_text(
            "80CA004200\n80CA004500\n80CA004200", observer=lambda o: seen.append(o.command.index)
        )
        self.assertEqual(seen, [1, 2, 3])

    def test_regexChecked(self) -> None:
        """A regex expectation is checked against the data's hex."""
        report = self.run_text(
            '80CA004200 => regex: "4204(89|90).*"\n80CA004200 => regex: "43.*"', keep_going=True
        )
        self.assertEqual([o.verdict for o in report.outcomes], [Verdict.PASSED, Verdict.FAILED])


TRACE_PASS = """\
replay t.apdu: 3 commands
target: a fake card

== select the ISD ==
#1  t.apdu:2
  >   00 A4 04 00 | Lc 08 | A0 00 00 01 51 00 00 00 | Le 00
  <   6F 10 84 08 A0 00 00 01 51 00 00 00 A5 04 9F 65
      01 FF
  SW  9000  normal ending of the command
  \u2713   1.50 ms  expected 9000, data 6F XX 84 08 *

== read ==
#2  t.apdu:5  [batch 1]
  >   80 CA 9F 7F | Le 00
  <   9F 7F 2A 00 00 00 00 00 00 00 00 00 00 00 00 00
      00 00 11 00 00 00 00 00 00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00 00 00 00 00 00
  SW  9000  normal ending of the command
  \u2713   1.50 ms  expected 9000

#3  t.apdu:6  [batch 1]
  >   80 E2 80 00 | Lc 03 | 01 02 03
  SW  9000  normal ending of the command
  \u2713   1.50 ms  expected 9000

\u2713 PASSED: all 3 commands matched in 7.50 ms (t.apdu)
"""

TRACE_FAIL = """\
replay t.apdu: 3 commands
target: a fake card

#1  t.apdu:1
  >   80 CA 00 42 | Le 00
  <   42 04 89 88 21 10
  SW  9000  normal ending of the command
  \u2713   1.50 ms  expected 9000|6310, data 42 04 89 88 *

#2  t.apdu:2
  >   80 CA 9F 7F | Le 00
  <   9F 7F 2A 00 00 00 00 00 00 00 00 00 00 00 00 00
      00 00 11 00 00 00 00 00 00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00 00 00 00 00 00
  SW  9000  normal ending of the command
  \u2717   1.50 ms  data: byte 18: expected 12, got 11
      expected  9F 7F 2A 00{12} 00 00 00 12 *
      got       \u2026 00 00 00 00 00 00 00 00 11 00 00 00 00 00 00 00 \u2026
                                          ^^ byte 18

#3  t.apdu:3
  >   80 CA 00 45 | Le 00
  -   not run (an earlier command failed)

\u2717 FAILED: 1 passed, 1 failed, 1 not run of 3 commands in 7.50 ms
  #2 t.apdu:2: data: byte 18: expected 12, got 11
"""


class TraceTests(SynchronousTestCase):
    """The text trace and the JSON report."""

    def report(self, text: str, target: FakeTarget | None = None, **kwargs: Any) -> Any:
        return self.successResultOf(
            run_script(script(text), target or FakeTarget(), timer=Ticker(), **kwargs)
        )

    def test_passingTrace(self) -> None:
        """A passing run: step headings, grouped C-APDUs, data, SW meanings, ticks."""
        report = self.report(
            'step "select the ISD"\n00 A4 04 00 (A0000001 51000000) 00 => data: 6F XX 84 08 *\n'
            "step read\nbatch\n80CA9F7F00\n80E28000 (010203)\nend"
        )
        self.assertEqual(format_trace(report), TRACE_PASS)

    def test_failingTrace(self) -> None:
        """A failing run: the diff with a caret under the wrong byte, not-run lines, summary."""
        report = self.report(
            "80CA004200 => 9000|6310 data: 42 04 89 88 *\n"
            "80CA9F7F00 => data: 9F 7F 2A 00{12} 00 00 00 12 *\n"
            "80CA004500"
        )
        self.assertEqual(format_trace(report), TRACE_FAIL)

    def test_statusWordFailureLine(self) -> None:
        """A wrong status word is shown with its meaning and what was expected."""
        text = format_trace(self.report("80CA004500 => 9000|61XX"))
        self.assertIn("  SW  6A88  referenced data not found\n", text)
        self.assertIn(
            "  \u2717   1.50 ms  status word 6A88 (referenced data not found),"
            " expected 9000|61XX\n",
            text,
        )

    def test_targetErrorInSummary(self) -> None:
        """A failed target is named in the summary."""
        target = FakeTarget()
        target.broken = ConnectionError("gone")
        text = format_trace(self.report("80CA004200", target))
        self.assertIn("  the target failed at command #1: ConnectionError: gone\n", text)
        self.assertIn("  #1 t.apdu:1: no answer: ConnectionError: gone\n", text)

    def test_longDataCut(self) -> None:
        """Data much longer than the limit is cut with a count; limit=None shows all."""
        answers = {"80CA9F7F00": "AB" * 200 + "9000"}
        report = self.report("80CA9F7F00", FakeTarget(answers))
        self.assertIn("\u2026 (+136 bytes, 200 in all)", format_trace(report))
        self.assertNotIn("\u2026", format_trace(report, limit=None))

    def test_capduCases(self) -> None:
        """Every ISO 7816-4 case is split into its fields; a raw one is shown as is."""
        cases = {
            "80CA9F7F": "80 CA 9F 7F",
            "80CA9F7F00": "80 CA 9F 7F | Le 00",
            "80E2800002AABB": "80 E2 80 00 | Lc 02 | AA BB",
            "80E2800002AABB00": "80 E2 80 00 | Lc 02 | AA BB | Le 00",
            "80B00100001000": "80 B0 01 00 | Le 00 10 00",
            "80E2800000000201021000": "80 E2 80 00 | Lc 00 00 02 | 01 02 | Le 10 00",
            "00A4040005A000": "00 A4 04 00 05 A0 00  (not a well-formed C-APDU)",
        }
        self.assertEqual({k: format_capdu(bytes.fromhex(k)) for k in cases}, cases)
        long = format_capdu(bytes.fromhex("80E28000 11" + "01" * 17))
        self.assertEqual(
            long, "80 E2 80 00 | Lc 11 | data (17 bytes)\n      " + "01 " * 15 + "01\n      01"
        )

    def test_json(self) -> None:
        """The JSON report holds every byte, verdict and time (ms)."""
        report = self.report("80CA004200 => data: 42 *\n80CA004500\n80CA9F7F00")
        doc = json.loads(json.dumps(report_json(report)))
        self.assertEqual(
            {k: doc[k] for k in ("script", "files", "target", "passed", "error", "elapsed_ms")},
            {
                "script": "t.apdu",
                "files": ["t.apdu"],
                "target": "a fake card",
                "passed": False,
                "error": None,
                "elapsed_ms": 7.5,
            },
        )
        self.assertEqual(doc["counts"], {"passed": 1, "failed": 1, "not-run": 1})
        first, second, third = doc["commands"]
        self.assertEqual(
            first,
            {
                "index": 1,
                "step": None,
                "location": "t.apdu:1:1",
                "batch": None,
                "capdu": "80CA004200",
                "expected_sw": "9000",
                "expected_data": "42 *",
                "verdict": "passed",
                "rapdu": "4204898821109000",
                "data": "420489882110",
                "sw": "9000",
                "sw_meaning": "normal ending of the command",
                "elapsed_ms": 1.5,
                "problems": [],
                "mismatch_offset": None,
            },
        )
        self.assertEqual((second["verdict"], second["sw"]), ("failed", "6A88"))
        self.assertEqual(
            (third["verdict"], third["rapdu"], third["elapsed_ms"]), ("not-run", None, None)
        )


class FakeSession:
    """Stands for a L{bipgw.client.CardSession}."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.iccid: str | None = "8988211000000000011"
        self.sent: list[list[bytes]] = []
        self.answers = answers
        self.closed = 0

    def send(self, apdus: Sequence[bytes | str], *, definite: bool = False) -> Deferred[Any]:
        self.sent.append([bytes(a) for a in apdus])  # type: ignore[arg-type]
        return succeed(argparse.Namespace(rapdus=tuple(self.answers.pop(0))))

    def close(self) -> Deferred[None]:
        self.closed += 1
        return succeed(None)


class GatewayTargetTests(SynchronousTestCase):
    """The gateway target maps transmits onto session scripts."""

    def test_transmit(self) -> None:
        """One APDU is one script of one command."""
        session = FakeSession([[b"\x90\x00"]])
        target = GatewayTarget(session, "gw")
        self.assertEqual(self.successResultOf(target.transmit(b"\x80\xca\x00\x42")), b"\x90\x00")
        self.assertEqual(session.sent, [[b"\x80\xca\x00\x42"]])
        self.assertTrue(verifyObject(IReplayTarget, target))

    def test_batch(self) -> None:
        """A batch is one script; a shorter answer is passed on."""
        session = FakeSession([[b"\x90\x00"]])
        target = GatewayTarget(session, "gw")
        self.assertEqual(
            self.successResultOf(target.transmit_batch([b"\x00" * 4, b"\x01" * 4])), [b"\x90\x00"]
        )
        self.assertEqual(len(session.sent[0]), 2)

    def test_wrongCount(self) -> None:
        """One transmit answered with two R-APDUs is an error."""
        target = GatewayTarget(FakeSession([[b"\x90\x00", b"\x90\x00"]]), "gw")
        self.failureResultOf(target.transmit(b"\x00" * 4), ReplayTargetError)

    def test_close(self) -> None:
        """close ends the session, then calls on_close."""
        order: list[str] = []

        def closed(what: str) -> Callable[[], Deferred[None]]:
            def close() -> Deferred[None]:
                order.append(what)
                return succeed(None)

            return close

        session = FakeSession([])
        session.close = closed("session")  # type: ignore[method-assign]
        target = GatewayTarget(session, "gw", closed("client"))
        self.successResultOf(target.close())
        self.assertEqual(order, ["session", "client"])


class GatewayEndToEndTests(SdkTestCase):
    """A replay through the real SDK, platform server and session engine, in memory."""

    def test_replayThroughGateway(self) -> None:
        """open_gateway_target opens a session; a script with a batch runs and passes."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT)
        opening = open_gateway_target(
            self.reactor, endpoint, token=TOKEN, service="demo", iccid=iccid(3), command_timeout=30
        )
        pump = iosim.ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps.append(pump)
        self.flush()
        self.advance(2)
        target = self.successResultOf(opening)
        self.assertEqual(
            target.description,
            f"card {iccid(3)} via the gateway at TCP4ClientEndpoint, service demo",
        )
        text = (
            f"00 A4 04 00 ({AID.hex()}) => 9000\n"
            f"batch\n{echo(b'hello')} => data: ${{HELLO}}\n80CA008500 => 6A88\nend\n"
            f"{echo(b'x')} => data: 78"
        )
        replay = run_script(
            parse_script(text, name="g.apdu", variables={"HELLO": b"hello"}), target, timer=Ticker()
        )
        self.advance(2)
        report = self.successResultOf(replay)
        self.assertEqual([o.verdict for o in report.outcomes], [Verdict.PASSED] * 4)
        self.assertEqual(len(self.fleet.card(3).scripts), 3)
        closing = target.close()
        self.advance(1)
        self.successResultOf(closing)
        self.assertEqual(self.fleet.card(3).closes, 1)

    def test_refusedSession(self) -> None:
        """A service the tenant may not use fails the opening, and disconnects."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT)
        opening = open_gateway_target(
            self.reactor, endpoint, token=TOKEN, service="nope", iccid=iccid(3)
        )
        pump = iosim.ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps.append(pump)
        self.advance(1)
        self.failureResultOf(opening)
        self.assertTrue(pump.clientIO.disconnected)


class PluginTests(SynchronousTestCase):
    """Replay target kinds are Twisted plugins, found by name."""

    def test_makerProvides(self) -> None:
        """A ReplayTargetMaker is a plugin providing IReplayTargetFactory."""
        maker = ReplayTargetMaker("x", "tests.unit.client.test_replay", "test kind")
        self.assertTrue(verifyObject(IReplayTargetFactory, maker))
        self.assertTrue(IPlugin.providedBy(maker))

    def test_makerImportsLazily(self) -> None:
        """open imports the named module and calls its open_target."""
        maker = ReplayTargetMaker("x", "tests.unit.client.test_replay", "test kind")
        target = maker.open("somewhere", "8988211000000000011")
        self.assertEqual(target.description, "fake at somewhere for 8988211000000000011")

    def test_directIsInstalled(self) -> None:
        """The simulated fleet's "direct" kind is discoverable (without importing simcard)."""
        factory = find_target_factory("direct")
        self.assertIsInstance(factory, ReplayTargetMaker)
        self.assertEqual(factory.module, "simcard.replay_target")  # type: ignore[attr-defined]
        self.assertIn("direct", [f.name for f in target_factories()])

    def test_unknownKind(self) -> None:
        """An unknown kind is an error listing the known ones."""
        with self.assertRaises(ReplayTargetError) as ctx:
            find_target_factory("nope")
        self.assertIn("no replay target 'nope' is installed (known: direct", str(ctx.exception))


def open_target(location: str, iccid: str) -> FakeTarget:
    """The test kind's opener, for L{PluginTests.test_makerImportsLazily}."""
    target = FakeTarget()
    target.description = f"fake at {location} for {iccid}"
    return target
