"""Tests for the C{bipgw replay} command: arguments, exit status, output."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from bipgw.cli import _replay as cli
from bipgw.client._replay import IReplayTarget, IReplayTargetFactory, ReplayTargetError
from tests.unit.client.test_replay import FakeTarget, Ticker


@implementer(IReplayTargetFactory)
class FakeFactory:
    """A "direct" kind serving one L{FakeTarget} (or refusing)."""

    name = "direct"
    description = "fake"

    def __init__(self) -> None:
        self.target = FakeTarget()
        self.opened: list[tuple[str, str]] = []
        self.refuse: str | None = None

    def open(self, location: str, iccid: str) -> IReplayTarget:
        if self.refuse is not None:
            raise ReplayTargetError(self.refuse)
        self.opened.append((location, iccid))
        return self.target


class CommandLineTests(SynchronousTestCase):
    """bipgw replay: arguments, exit status, output."""

    def setUp(self) -> None:
        self.factory = FakeFactory()
        self.patch(cli, "find_target_factory", lambda name: self.factory)
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def write(self, text: str, name: str = "s.apdu") -> str:
        path = self.dir / name
        path.write_text(text)
        return str(path)

    def replay(self, *argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
        top = argparse.ArgumentParser(prog="bipgw")
        cli.add_parser(top.add_subparsers(dest="command"))
        args = top.parse_args(["replay", *argv])
        out, err = io.StringIO(), io.StringIO()
        code = cli.run(args, out, err, environ or {}, timer=Ticker())
        return code, out.getvalue(), err.getvalue()

    def test_passes(self) -> None:
        """A matching replay prints the trace as it goes and exits 0; the target is closed."""
        path = self.write("80CA004200 => data: 42 04 ${IIN}", "ok.apdu")
        code, out, err = self.replay(
            path, "--direct", "FLEET", "--iccid", "89", "--var", "IIN=89882110"
        )
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith(f"replay {path}: 1 command\ntarget: a fake card\n"))
        self.assertIn("\u2713 PASSED: all 1 commands matched", out)
        self.assertEqual(self.factory.opened, [("FLEET", "89")])
        self.assertTrue(self.factory.target.closed)

    def test_mismatchExitsOne(self) -> None:
        """A mismatch exits 1 (the trace says why)."""
        code, out, _ = self.replay(self.write("80CA004500"), "--direct", "F", "--iccid", "89")
        self.assertEqual(code, 1)
        self.assertIn("\u2717 FAILED: 0 passed, 1 failed, 0 not run of 1 commands", out)
        self.assertTrue(self.factory.target.closed)

    def test_json(self) -> None:
        """--json prints only the JSON report."""
        code, out, _ = self.replay(
            self.write("80CA004200\n80CA004500 => 6A88"), "--direct", "F", "--iccid", "89", "--json"
        )
        doc = json.loads(out)
        self.assertEqual((code, doc["passed"], len(doc["commands"])), (0, True, 2))

    def test_keepGoingAndFull(self) -> None:
        """--keep-going sends everything; --full shows all data."""
        self.factory.target.answers = {"80CA004200": "AB" * 100 + "9000"}
        code, out, _ = self.replay(
            self.write("80CA004500\n80CA004200"),
            "--direct",
            "F",
            "--iccid",
            "1",
            "--keep-going",
            "--full",
        )
        self.assertEqual((code, len(self.factory.target.calls)), (1, 2))
        self.assertNotIn("in all)", out)

    def test_varFile(self) -> None:
        """--var-file sets a variable to a file's bytes."""
        (self.dir / "blob.bin").write_bytes(b"\x01\x02\xff")
        self.factory.target.answers = {"80E2800003 0102FF".replace(" ", ""): "9000"}
        code, _, err = self.replay(
            self.write("80E28000 (${BLOB})"),
            "--direct",
            "F",
            "--iccid",
            "1",
            "--var-file",
            f"BLOB={self.dir / 'blob.bin'}",
        )
        self.assertEqual((code, err), (0, ""))

    def test_dryRun(self) -> None:
        """--dry-run checks and lists the commands; no target is opened."""
        code, out, _ = self.replay(
            self.write("step s\n80CA004200 => 9000|6310 data: 42 *"), "--iccid", "1", "--dry-run"
        )
        self.assertEqual(code, 0)
        self.assertIn("1 commands, nothing sent", out)
        self.assertIn("  >   80 CA 00 42 | Le 00\n  =>  9000|6310 data: 42 *\n", out)
        self.assertEqual(self.factory.opened, [])

    def test_usageErrors(self) -> None:
        """Bad arguments exit 2 with one line on stderr, and nothing is sent."""
        ok = self.write("80CA004200")
        cases = [
            ((ok, "--direct", "F", "--msisdn", "4915"), "--direct needs --iccid"),
            ((ok, "--direct", "F", "--gateway", "tcp:h:1", "--iccid", "1"), "exclude each other"),
            ((ok, "--iccid", "1"), "--gateway ENDPOINT (or $BIPGW_GATEWAY), or --direct"),
            ((ok, "--iccid", "1", "--var", "X"), "'X' is not NAME=VALUE"),
            ((ok, "--iccid", "1", "--var-file", "X"), "--var-file 'X' is not NAME=FILE"),
            (
                (ok, "--iccid", "1", "--var-file", "X=/no/such"),
                "--var-file X: cannot read /no/such",
            ),
            ((str(self.dir / "none.apdu"), "--iccid", "1"), "cannot read the script"),
        ]
        for argv, message in cases:
            code, out, err = self.replay(*argv)
            self.assertEqual((code, out), (2, ""), argv)
            self.assertTrue(err.startswith("bipgw replay: error: "), err)
            self.assertIn(message, err)
        self.assertEqual(self.factory.target.calls, [])

    def test_scriptErrorNamesPlace(self) -> None:
        """A script error exits 2 naming file:line:col."""
        path = self.write("80CA004200\n80CA 0Q")
        code, _, err = self.replay(path, "--direct", "F", "--iccid", "1")
        self.assertEqual(code, 2)
        self.assertEqual(err, f"bipgw replay: error: {path}:2:7: 'Q' is not a hex digit\n")

    def test_targetRefused(self) -> None:
        """A target that cannot be opened exits 2."""
        self.factory.refuse = "no card 1 in F"
        code, _, err = self.replay(self.write("80CA004200"), "--direct", "F", "--iccid", "1")
        self.assertEqual((code, err), (2, "bipgw replay: error: no card 1 in F\n"))

    def test_closeFailureWarns(self) -> None:
        """A target that fails to close is reported; the verdict stands."""
        self.factory.target.close = lambda: fail(OSError("disk full"))  # type: ignore[method-assign]
        code, _, err = self.replay(self.write("80CA004200"), "--direct", "F", "--iccid", "1")
        self.assertEqual(code, 0)
        self.assertEqual(err, "bipgw replay: warning: closing the target failed: disk full\n")

    def fake_gateway(self, refuse: Exception | None = None) -> list[dict[str, Any]]:
        """Replace the gateway connection and the reactor run by fakes; return the calls."""
        calls: list[dict[str, Any]] = []

        def opener(reactor: object, endpoint: str, **kwargs: Any) -> Deferred[FakeTarget]:
            calls.append({"endpoint": endpoint, **kwargs})
            return fail(refuse) if refuse is not None else succeed(self.factory.target)

        def react(main: Callable[[object], Deferred[None]]) -> None:
            done: list[object] = []
            main(object()).addBoth(done.append)
            self.assertEqual(done, [None])  # everything ran without a real reactor
            raise SystemExit(0)

        self.patch(cli, "open_gateway_target", opener)
        self.patch(task, "react", react)
        return calls

    def test_gateway(self) -> None:
        """Through the gateway: endpoint and token from the environment, the options passed on."""
        calls = self.fake_gateway()
        code, out, err = self.replay(
            self.write("80CA004200"),
            "--msisdn",
            "4915100",
            "--service",
            "demo",
            "--command-timeout",
            "20",
            environ={cli.GATEWAY_ENV: "tls:gw.example:7443", cli.TOKEN_ENV: "tok"},
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn("\u2713 PASSED", out)
        self.assertEqual(
            calls,
            [
                {
                    "endpoint": "tls:gw.example:7443",
                    "token": "tok",
                    "service": "demo",
                    "iccid": None,
                    "msisdn": "4915100",
                    "ready_timeout": None,
                    "command_timeout": 20.0,
                }
            ],
        )
        self.assertTrue(self.factory.target.closed)

    def test_gatewayRefused(self) -> None:
        """A session the gateway cannot open exits 2 with its reason."""
        self.fake_gateway(refuse=ConnectionRefusedError("no route"))
        code, out, err = self.replay(
            self.write("80CA004200"), "--iccid", "1", "--gateway", "tcp:host=gw:port=1"
        )
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(
            err, "bipgw replay: error: cannot open a session with the card: no route\n"
        )

    def test_token(self) -> None:
        """The token comes from --token-file's first line, else the environment."""
        path = self.write("tok-123\nignored\n", "token")
        ns = argparse.Namespace(token_file=path)
        self.assertEqual(cli._token(ns, {}), "tok-123")
        self.assertEqual(cli._token(argparse.Namespace(token_file=None), {cli.TOKEN_ENV: "e"}), "e")
        self.assertIsNone(cli._token(argparse.Namespace(token_file=None), {}))
        empty = self.write("\n", "empty")
        self.assertRaises(cli._UsageError, cli._token, argparse.Namespace(token_file=empty), {})
