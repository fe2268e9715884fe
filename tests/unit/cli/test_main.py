"""Tests for the bipgw command's dispatcher: check-config, import, usage and errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

import bipgw
from bipgw.cli._import import run_import
from bipgw.config import Config, init_install
from bipgw.keys import ROOT_KEY_ENV, KeyKind
from tests.unit.cli import run
from tests.unit.config import private_directory, with_keys, write
from tests.unit.ingest import ICCIDS, TRANSPORT_KEY, card_line, vendor_file


class UsageTests(SynchronousTestCase):
    """argparse behaviour: help, version and usage errors."""

    def test_version(self) -> None:
        """--version prints the package version."""
        status, out, _ = run(["--version"])
        self.assertEqual((status, out.strip()), (0, f"bipgw {bipgw.__version__}"))

    def test_help(self) -> None:
        """--help lists the commands and points at twistd."""
        status, out, _ = run(["--help"])
        self.assertEqual(status, 0)
        for command in ("init", "check-config", "keys", "import", "twistd -n bipgw"):
            self.assertIn(command, out)

    def test_usageErrors(self) -> None:
        """A missing or unknown command exits with 2 and a usage message."""
        for argv in ([], ["frobnicate"], ["keys"], ["import", "sims", "f"], ["init"]):
            with self.subTest(argv=argv):
                status, out, err = run(argv)
                self.assertEqual((status, out), (2, ""))
                self.assertIn("usage: bipgw", err)


class CheckConfigTests(SynchronousTestCase):
    """bipgw check-config FILE."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        init_install(self.base, environ={}, public_host="192.0.2.4")
        self.path = self.base / "bipgw.toml"

    def test_valid(self) -> None:
        """A valid install: a summary of what the gateway will do, and the keys."""
        status, out, err = run(["check-config", str(self.path)])
        self.assertEqual((status, err), (0, ""))
        root = Config.from_file(self.path).keys.load_root_key({})
        self.assertIn(f"{self.path}: configuration OK", out)
        self.assertIn("cards connect to 192.0.2.4:8443/admin", out)
        self.assertIn("isd (TAR 000000, push)", out)
        self.assertIn(f"root key {root.key_id} from {self.base / 'root.key'}", out)
        self.assertIn("0 keys", out)

    def test_invalid(self) -> None:
        """An invalid file: one line naming the key, status 1."""
        write(self.base, "bipgw.toml", with_keys(self.path.read_text(), "smpp", window="1000"))
        status, out, err = run(["check-config", str(self.path)])
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(
            err,
            f"bipgw: error: {self.path}: smpp.window = 1000: expected an integer from 1 to 100\n",
        )

    def test_ingestChecked(self) -> None:
        """[ingest] is read and checked: a table without incoming_dir is refused by name."""
        write(
            self.base,
            "bipgw.toml",
            with_keys(self.path.read_text(), "ingest", ftp_listen='"tcp:2121"'),
        )
        status, out, err = run(["check-config", "--no-keys", str(self.path)])
        self.assertEqual((status, out), (1, ""))
        self.assertIn(f"{self.path}: ingest.incoming_dir: missing", err)
        text = with_keys(self.path.read_text(), "ingest", incoming_dir='"feeds"')
        write(self.base, "bipgw.toml", text)
        status, out, err = run(["check-config", "--no-keys", str(self.path)])
        self.assertEqual((status, err), (0, ""))
        self.assertIn(
            f"partner feeds in {self.base / 'feeds'}: FTP tcp:2121, SFTP off, watched every 5 s",
            out,
        )

    def test_metricsChecked(self) -> None:
        """[metrics] is checked (an exposed listener without a token is refused by
        naming metrics.token_file) and summarised."""
        text = with_keys(self.path.read_text(), "metrics", listen='"tcp:9108"')
        write(self.base, "bipgw.toml", text)
        status, out, err = run(["check-config", "--no-keys", str(self.path)])
        self.assertEqual((status, out), (1, ""))
        self.assertIn("metrics.token_file: missing", err)
        text = with_keys(self.path.read_text(), "metrics", listen='"tcp:9108:interface=127.0.0.1"')
        write(self.base, "bipgw.toml", text)
        status, out, err = run(["check-config", "--no-keys", str(self.path)])
        self.assertEqual((status, err), (0, ""))
        self.assertIn(
            "/metrics, /healthz, /readyz on tcp:9108:interface=127.0.0.1 (loopback, no token)", out
        )

    def test_keysChecked(self) -> None:
        """A root key that does not open the keystore fails the check; --no-keys skips it."""
        (self.base / "root.key").unlink()
        env = {ROOT_KEY_ENV: base64.b64encode(bytes(32)).decode()}
        status, _, err = run(["check-config", str(self.path)], env)
        self.assertEqual(status, 1)
        self.assertIn("not under the loaded root key", err)
        self.assertEqual(run(["check-config", "--no-keys", str(self.path)], env)[0], 0)

    def test_passwordHidden(self) -> None:
        """The summary never shows the SMPP or database password."""
        text = with_keys(
            self.path.read_text(), "database", url='"postgresql+psycopg://gw:dbsecret@db/x"'
        )
        write(self.base, "pw.txt", "esmepw\n")
        write(self.base, "bipgw.toml", with_keys(text, "smpp", password_file='"pw.txt"'))
        _, out, _ = run(["check-config", "--no-keys", str(self.path)])
        self.assertNotIn("dbsecret", out)
        self.assertNotIn("esmepw", out)
        self.assertIn("gw:***@db/x", out)


class ImportTests(SynchronousTestCase):
    """bipgw import: the files go through bipgw.ingest into the configured store."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        init_install(self.base, environ={})
        self.path = self.base / "bipgw.toml"
        write(
            self.base, "bipgw.toml", with_keys(self.path.read_text(), "database", url='"memory:"')
        )
        self.config = Config.from_file(self.path)
        root = self.config.keys.load_root_key({})
        self.config.keys.open_keystore(root).put(
            "TK1", KeyKind.TRANSPORT, TRANSPORT_KEY, {"scheme": "aes-kwp"}
        )

    def _import(self, kind: str, path: Path, all_or_nothing: bool = False) -> tuple[int, str]:
        out = io.StringIO()
        d = Deferred.fromCoroutine(
            run_import(
                MemoryReactor(),
                self.config,
                kind,
                path,
                all_or_nothing=all_or_nothing,
                out=out,
                environ={},
            )
        )
        return self.successResultOf(d), out.getvalue()

    def test_cards(self) -> None:
        """A good vendor file: every card added, status 0."""
        status, out = self._import("cards", write(self.base, "B0001.out", vendor_file()))
        self.assertEqual(status, 0)
        self.assertIn("cards import", out)
        self.assertIn(f"of B0001.out: {len(ICCIDS)} records", out)
        self.assertIn(f"added {len(ICCIDS)}", out)

    def test_badLine(self) -> None:
        """A bad line is reported by line and column, and the status is 1."""
        lines = [
            card_line(ICCIDS[0], "001010000000001"),
            card_line(ICCIDS[1], "001010000000002", override={"KIC1": "XYZ"}),
        ]
        status, out = self._import("cards", write(self.base, "B0002.out", vendor_file(lines)))
        self.assertEqual(status, 1)
        self.assertIn("added 1", out)
        self.assertRegex(out, r"line \d+, column KIC1")
        self.assertNotIn("XYZ", out)

    def test_allOrNothing(self) -> None:
        """--all-or-nothing applies nothing when a line is bad."""
        lines = [
            card_line(ICCIDS[0], "001010000000001"),
            card_line(ICCIDS[1], "001010000000002", override={"KIC1": "00"}),
        ]
        status, out = self._import("cards", write(self.base, "B0003.out", vendor_file(lines)), True)
        self.assertEqual(status, 1)
        self.assertIn("REFUSED", out)

    def test_msisdn(self) -> None:
        """An MSISDN mapping file for cards the store does not know is reported line by line."""
        data = f"31612345678,{ICCIDS[0]},001010000000001,ADD,20240101000000\n"
        status, out = self._import("msisdn", write(self.base, "map.csv", data))
        self.assertEqual(status, 1)
        self.assertIn("msisdn import #1 of map.csv: 1 records: added 0", out)
        self.assertIn(f"line 1, column ICCID: unknown ICCID {ICCIDS[0]}", out)

    def test_missingFile(self) -> None:
        """A file that cannot be read fails the import with the file's name."""
        d = Deferred.fromCoroutine(
            run_import(
                MemoryReactor(),
                self.config,
                "cards",
                self.base / "nope.out",
                all_or_nothing=False,
                out=io.StringIO(),
                environ={},
            )
        )
        self.assertIn("nope.out", str(self.failureResultOf(d).value))

    def test_missingConfiguration(self) -> None:
        """bipgw import with no configuration stops before any reactor runs."""
        status, _, err = run(["import", "cards", "x.out", "-c", str(self.base / "none.toml")])
        self.assertEqual(status, 1)
        self.assertIn("none.toml: no such file", err)

    def test_configBeforeCommand(self) -> None:
        """-c may stand before the command as well as after it."""
        status, _, err = run(["-c", str(self.base / "none.toml"), "import", "cards", "x.out"])
        self.assertEqual(status, 1)
        self.assertIn("none.toml: no such file", err)
        status, out, _ = run(["-c", str(self.path), "keys", "list"])
        self.assertEqual(status, 0)
        self.assertIn("TK1", out)
