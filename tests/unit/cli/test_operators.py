"""Tests for bipgw operator ...: the portal's operators from the command line."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli._operators import OperatorCommandError, add_parser, execute
from bipgw.store import DuplicateRecordError, Role, SqlOperators, UnknownRecordError
from tests.unit.web.portal import InlineClock, result_of, sql_store


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bipgw")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


class OperatorCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = sql_store(InlineClock())
        self.addCleanup(lambda: result_of(self.store.close()))
        self.dir = Path(os.path.abspath(self.mktemp()))
        self.dir.mkdir()
        self.prompts: list[str] = []

    def prompt(self, text: str) -> str:
        self.prompts.append(text)
        return "typed password 1"

    def run_command(self, *argv: str) -> str:
        out = io.StringIO()
        d = Deferred.fromCoroutine(
            execute(self.store, parse(list(argv)), out, prompt=self.prompt, now=lambda: 100.0)
        )
        self.assertEqual(result_of(d), 0)
        return out.getvalue()

    def test_addFromFile(self) -> None:
        """The password comes from the file's first line; only its digest is kept; audited."""
        path = self.dir / "pw"
        path.write_text("file password 12\nignored\n")
        text = self.run_command(
            "operator", "add", "ada", "--role", "admin", "--password-file", str(path)
        )
        self.assertEqual(text, "operator ada added (admin)\n")
        found = result_of(SqlOperators(self.store).get("ada"))
        self.assertEqual(found.role, Role.ADMIN)
        self.assertTrue(found.password.matches("file password 12"))
        (record,) = result_of(self.store.list_audit())
        self.assertEqual((record.action, record.target), ("operator.add", "ada"))
        self.assertTrue(record.actor.startswith("cli:"))
        self.assertNotIn("file password", repr(record))

    def test_addPrompted(self) -> None:
        """Without a file, the password is asked twice."""
        self.run_command("operator", "add", "vic", "--role", "viewer")
        self.assertEqual(self.prompts, ["password: ", "again: "])
        self.assertTrue(
            result_of(SqlOperators(self.store).get("vic")).password.matches("typed password 1")
        )

    def test_mismatchAndShort(self) -> None:
        answers = iter(["first password 1", "other password 2"])
        with self.assertRaises(OperatorCommandError):
            result_of(
                Deferred.fromCoroutine(
                    execute(
                        self.store,
                        parse(["operator", "add", "x", "--role", "viewer"]),
                        io.StringIO(),
                        prompt=lambda _: next(answers),
                    )
                )
            )
        path = self.dir / "short"
        path.write_text("short\n")
        with self.assertRaises(OperatorCommandError) as caught:
            self.run_command(
                "operator", "add", "x", "--role", "viewer", "--password-file", str(path)
            )
        self.assertNotIn("short\n", str(caught.exception))

    def test_listDisableRole(self) -> None:
        self.run_command("operator", "add", "otto", "--role", "operator")
        self.run_command("operator", "set-role", "otto", "viewer")
        self.run_command("operator", "disable", "otto")
        self.assertEqual(self.run_command("operator", "list"), "otto\tviewer\tdisabled\n")
        self.run_command("operator", "enable", "otto")
        self.assertEqual(self.run_command("operator", "list"), "otto\tviewer\tenabled\n")
        actions = [r.action for r in result_of(self.store.list_audit())]
        self.assertEqual(
            actions, ["operator.enable", "operator.disable", "operator.set-role", "operator.add"]
        )

    def test_refusals(self) -> None:
        self.run_command("operator", "add", "otto", "--role", "operator")
        with self.assertRaises(DuplicateRecordError):
            self.run_command("operator", "add", "otto", "--role", "operator")
        with self.assertRaises(UnknownRecordError):
            self.run_command("operator", "disable", "nobody")
        with self.assertRaises(SystemExit):
            parse(["operator", "add", "bad name", "--role", "admin"])
        with self.assertRaises(SystemExit):
            parse(["operator", "add", "x", "--role", "root"])
