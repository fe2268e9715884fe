"""Tests for bipgw partner/imports: arguments, the store rows, passwords never kept."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli._partners import PartnerCommandError, add_parser, execute
from bipgw.ingest._partners import PartnerPasswords
from bipgw.store import (
    DuplicateRecordError,
    ImportKind,
    ImportReport,
    IStore,
    LineError,
    MemoryStore,
    TokenDigest,
    UnknownRecordError,
)
from tests.unit.store.test_sqlite import open_inline

PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFgUvAGlvmZnNzkBSoYt7cgpwbGkjLqU2kbnLqQCFQ2 vendor@x"
)


def parse(argv: list[str]) -> argparse.Namespace:
    """C{argv} parsed as the bipgw command would (only the partner and imports commands)."""
    parser = argparse.ArgumentParser(prog="bipgw")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


class PartnerCommandTests(SynchronousTestCase):
    """The commands against a store."""

    def make_store(self) -> IStore:
        return MemoryStore()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.dir = Path(os.path.abspath(self.mktemp()))
        self.dir.mkdir()

    def file(self, name: str, text: str) -> str:
        path = self.dir / name
        path.write_text(text)
        return str(path)

    def run_command(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        d = Deferred.fromCoroutine(execute(self.store, parse(list(argv)), out))
        return self.successResultOf(d), out.getvalue()

    def refused(self, *argv: str) -> str:
        failure = self.failureResultOf(
            Deferred.fromCoroutine(execute(self.store, parse(list(argv)), io.StringIO())),
            PartnerCommandError,
            DuplicateRecordError,
            UnknownRecordError,
            ValueError,
        )
        return str(failure.value)

    def test_addWithPassword(self) -> None:
        """The password is checked by the FTP checker; only its digest is stored."""
        password = self.file("pw", "vendor-password-1\n")
        status, out = self.run_command(
            "partner", "add", "vendor", "--kind", "cards", "--password-file", password
        )
        self.assertEqual((status, out), (0, "partner vendor added (cards files)\n"))
        partner = self.successResultOf(self.store.get_partner("vendor"))
        assert partner is not None and partner.password is not None
        self.assertNotIn("vendor-password-1", repr(partner))
        digest = TokenDigest.from_settings(partner.password)
        assert digest is not None
        self.assertTrue(digest.matches("vendor-password-1"))
        checker = PartnerPasswords(self.store)

        class Creds:
            username = b"vendor"
            password = b"vendor-password-1"

        self.assertEqual(self.successResultOf(checker.requestAvatarId(Creds())), b"vendor")

    def test_addWithKeyAndTransportKey(self) -> None:
        """An SSH key and a transport key are kept; the listing shows them, not the password."""
        key = self.file("id.pub", PUBLIC_KEY + "\n")
        status, _ = self.run_command(
            "partner", "add", "vendor", "--kind", "cards", "--ssh-key", key,
            "--transport-key", "TK1",
        )  # fmt: skip
        self.assertEqual(status, 0)
        partner = self.successResultOf(self.store.get_partner("vendor"))
        assert partner is not None
        self.assertEqual(partner.ssh_keys, (" ".join(PUBLIC_KEY.split()[:2]),))
        self.assertEqual(partner.transport_key, "TK1")
        _, out = self.run_command("partner", "list")
        self.assertEqual(out, "vendor\tcards\tenabled\tauth: ssh keys: 1\ttransport key: TK1\n")

    def test_refusals(self) -> None:
        """No credential, a bad password or key file, a duplicate, a misplaced transport key."""
        self.assertIn("--password-file", self.refused("partner", "add", "p", "--kind", "cards"))
        short = self.file("short", "abc\n")
        message = self.refused("partner", "add", "p", "--kind", "cards", "--password-file", short)
        self.assertIn("12-512", message)
        self.assertNotIn("abc", message)
        bad_key = self.file("bad.pub", "not a key\n")
        self.assertIn(
            "OpenSSH public key",
            self.refused("partner", "add", "p", "--kind", "cards", "--ssh-key", bad_key),
        )
        good = self.file("pw", "vendor-password-1\n")
        self.assertIn(
            "kind cards",
            self.refused(
                "partner", "add", "p", "--kind", "msisdn", "--password-file", good,
                "--transport-key", "TK1",
            ),
        )  # fmt: skip
        self.run_command("partner", "add", "p", "--kind", "msisdn", "--password-file", good)
        self.assertIn(
            "already exists",
            self.refused("partner", "add", "p", "--kind", "msisdn", "--password-file", good),
        )
        self.assertIn("no partner", self.refused("partner", "disable", "nobody"))

    def test_disable(self) -> None:
        """A disabled partner cannot log in any more."""
        good = self.file("pw", "vendor-password-1\n")
        self.run_command("partner", "add", "p", "--kind", "msisdn", "--password-file", good)
        self.assertEqual(self.run_command("partner", "disable", "p"), (0, "partner p disabled\n"))
        _, out = self.run_command("partner", "list")
        self.assertIn("\tdisabled\t", out)

        class Creds:
            username = b"p"
            password = b"vendor-password-1"

        self.failureResultOf(PartnerPasswords(self.store).requestAvatarId(Creds()))

    def test_imports(self) -> None:
        """imports list shows the latest; imports show one report with its line errors."""
        self.assertEqual(self.run_command("imports", "list"), (0, "no imports\n"))
        report = ImportReport(
            kind=ImportKind.CARDS,
            file_name="B0001.out",
            sha256="ab" * 32,
            imported_at=0.0,
            records=3,
            added=2,
            rejected=1,
            applied=True,
            errors=(LineError(10, "IMSI", "not digits"),),
        )
        self.successResultOf(self.store.record_import(report))
        _, out = self.run_command("imports", "list")
        self.assertEqual(
            out,
            "#1\t1970-01-01 00:00:00 UTC\tcards\tB0001.out\t3 records"
            "\tadded 2, updated 0, unchanged 0, rejected 1\n",
        )
        _, out = self.run_command("imports", "show", "1")
        self.assertIn("cards import #1 of B0001.out", out)
        self.assertIn("line 10, column IMSI: not digits", out)
        self.assertIn("no import #2", self.refused("imports", "show", "2"))


class SqlitePartnerCommandTests(PartnerCommandTests):
    """The same commands against SQLite."""

    def make_store(self) -> IStore:
        return open_inline("sqlite://", self)
