"""Every administrative command leaves an audit record (who, when, from where, what,
never a secret), and C{bipgw audit list} finds them."""

from __future__ import annotations

import argparse
import io
import os
import pwd
import socket
import time
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

import bipgw.cli._audit as cli_audit
import bipgw.cli._partners as cli_partners
import bipgw.cli._tenants as cli_tenants
from bipgw.cli._audit import cli_actor, cli_origin, parse_since
from bipgw.config import Config, init_install
from bipgw.store import AuditRecord, IStore, MemoryStore
from tests.unit.cli import run
from tests.unit.config import private_directory, write
from tests.unit.store.test_sqlite import open_inline

TOKEN = "tenant-token-0123456789abcdefXYZ"
PASSWORD = "partner-password-0123456789"
TK_HEX = "00112233445566778899AABBCCDDEEFF"
USER = pwd.getpwuid(os.geteuid()).pw_name


def parse(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bipgw")
    module.add_parser(parser.add_subparsers(dest="command", required=True))  # type: ignore[attr-defined]
    return parser.parse_args(argv)


class CommandAuditTests(SynchronousTestCase):
    """The store-editing commands each write one record."""

    def make_store(self) -> IStore:
        return MemoryStore()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.dir = Path(os.path.abspath(self.mktemp()))
        self.dir.mkdir()
        self.outputs: list[str] = []

    def tenants(self, *argv: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        args = parse(cli_tenants, list(argv))
        self.successResultOf(
            Deferred.fromCoroutine(cli_tenants.execute(self.store, args, out, err))
        )
        self.outputs.append(out.getvalue())

    def partners(self, *argv: str) -> None:
        out = io.StringIO()
        args = parse(cli_partners, list(argv))
        self.successResultOf(Deferred.fromCoroutine(cli_partners.execute(self.store, args, out)))

    def audit_list(self, *argv: str) -> str:
        out = io.StringIO()
        args = parse(cli_audit, ["audit", "list", *argv])
        self.successResultOf(Deferred.fromCoroutine(cli_audit.execute(self.store, args, out)))
        return out.getvalue()

    def records(self) -> list[AuditRecord]:
        return list(reversed(self.successResultOf(self.store.list_audit(limit=100))))

    def test_eachCommand(self) -> None:
        """tenant add/disable, service add, partner add/disable: one record each,
        by cli:<user> from this host, naming the object and what changed."""
        before = time.time()
        self.tenants("tenant", "add", "acme", "--cert-cn", "acme.example", "--max-sessions", "4")
        self.tenants("service", "add", "isd", "--tenant", "acme", "--aid", "A000000151000000")
        self.tenants("tenant", "disable", "acme")
        password = write(self.dir, "pw", PASSWORD + "\n")
        self.partners(
            "partner", "add", "vendor1", "--kind", "cards", "--password-file", str(password)
        )
        self.partners("partner", "disable", "vendor1")
        records = self.records()
        self.assertEqual(
            [(r.action, r.target) for r in records],
            [
                ("tenant.add", "acme"),
                ("service.grant", "acme/isd"),
                ("tenant.disable", "acme"),
                ("partner.add", "vendor1"),
                ("partner.disable", "vendor1"),
            ],
        )
        for r in records:
            self.assertEqual(r.actor, f"cli:{USER}")
            self.assertEqual(r.origin, f"host {socket.gethostname()}")
            self.assertGreaterEqual(r.at, before)
        self.assertIn("certificate CN acme.example", records[0].detail)
        self.assertIn("max_sessions 4", records[0].detail)
        self.assertIn("aids A000000151000000", records[1].detail)
        self.assertIn("password set", records[3].detail)

    def test_noSecret(self) -> None:
        """Neither a generated token, a token from a file, nor a password is in any record."""
        self.tenants("tenant", "add", "gen")
        generated = self.outputs[-1].strip().splitlines()[-1]
        self.assertGreaterEqual(len(generated), 16)
        token = write(self.dir, "token", TOKEN + "\n")
        self.tenants("tenant", "add", "filed", "--token-file", str(token))
        password = write(self.dir, "pw", PASSWORD + "\n")
        self.partners("partner", "add", "v", "--kind", "msisdn", "--password-file", str(password))
        text = repr(self.records()) + self.audit_list()
        for secret in (generated, TOKEN, PASSWORD):
            self.assertNotIn(secret, text)
        self.assertIn("token generated", text)
        self.assertIn("token from a file", text)

    def test_listFilters(self) -> None:
        """audit list filters by actor, action (or object) and time, newest first."""
        self.tenants("tenant", "add", "a1")
        self.tenants("tenant", "disable", "a1")
        self.successResultOf(
            self.store.add_audit(AuditRecord(at=1000.0, actor="acme", action="session.open"))
        )
        everything = self.audit_list().splitlines()
        self.assertEqual(len(everything), 3)
        self.assertTrue(everything[0].startswith("#3\t"))
        self.assertIn("tenant.disable", everything[1])
        mine = self.audit_list("--actor", f"cli:{USER}").splitlines()
        self.assertEqual(len(mine), 2)
        self.assertEqual(len(self.audit_list("--action", "tenant").splitlines()), 2)
        self.assertEqual(len(self.audit_list("--action", "tenant.add").splitlines()), 1)
        self.assertEqual(len(self.audit_list("--since", "1h").splitlines()), 2)
        self.assertEqual(len(self.audit_list("--limit", "1").splitlines()), 1)
        self.assertEqual(self.audit_list("--actor", "x' OR '1'='1"), "no audit records\n")
        self.assertEqual(self.audit_list("--action", "%"), "no audit records\n")
        line = self.audit_list("--actor", "acme")
        self.assertIn("1970-01-01T00:16:40Z\tacme\t-\tsession.open\t-", line)

    def test_sinceParsing(self) -> None:
        """--since takes an ISO date/time (UTC without an offset) or an age."""
        self.assertEqual(parse_since("1970-01-02"), 86400.0)
        self.assertEqual(parse_since("1970-01-01T01:00+01:00"), 0.0)
        self.assertEqual(parse_since("2h", now=10_000.0), 10_000.0 - 7200)
        self.assertRaises(argparse.ArgumentTypeError, parse_since, "yesterday")

    def test_origin(self) -> None:
        """The origin says the host, and the SSH client's address in an SSH session."""
        self.assertEqual(cli_actor(), f"cli:{USER}")
        origin = cli_origin({"SSH_CLIENT": "203.0.113.9 50022 22"})
        self.assertEqual(origin, f"host {socket.gethostname()}, ssh 203.0.113.9")


class SqlCommandAuditTests(CommandAuditTests):
    """The same, on SQLite."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)


class KeysAuditTests(SynchronousTestCase):
    """keys add-transport and generate-master are audited in the install's database."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        self.install = self.base / "gw"
        init_install(self.install, environ={})
        self.config_path = str(self.install / "bipgw.toml")

    def records(self) -> list[AuditRecord]:
        config = Config.from_file(self.config_path)
        sql = open_inline(config.database.url, self)
        records = list(reversed(self.successResultOf(sql.list_audit(limit=10))))
        self.successResultOf(sql.close())
        return records

    def test_keysCommands(self) -> None:
        """Each key command leaves a record naming the label, kind, size and KCV,
        never the key."""
        key_file = write(self.base, "tk.hex", TK_HEX + "\n")
        status, _, err = run(
            ["keys", "add-transport", "TK1", "--from-file", str(key_file), "-c", self.config_path]
        )
        self.assertEqual((status, err), (0, ""))
        status, out2, err = run(
            ["keys", "generate-master", "master-scp03-enc", "M1", "-c", self.config_path]
        )
        self.assertEqual((status, err), (0, ""), out2)
        records = self.records()
        self.assertEqual(
            [(r.action, r.target) for r in records],
            [("keys.add-transport", "TK1"), ("keys.generate-master", "M1")],
        )
        self.assertIn("KCV", records[0].detail)
        self.assertIn("16 bytes", records[0].detail)
        self.assertNotIn(TK_HEX, repr(records).upper())
        self.assertEqual(records[0].actor, f"cli:{USER}")
        config = Config.from_file(self.config_path)
        keystore = config.keys.open_keystore(config.keys.load_root_key({}))
        master = keystore.get("M1").reveal().hex()
        self.assertNotIn(master, repr(records).lower())
        self.assertIn("every key version (kdf 2), generated", records[1].detail)

    def test_init(self) -> None:
        """bipgw init's root key is the install's first audit record, by id, never by value;
        a --force run that keeps the key writes none."""
        install = self.base / "gw2"
        status, out, err = run(["init", str(install)])
        self.assertEqual((status, err), (0, ""), out)
        self.config_path = str(install / "bipgw.toml")
        (record,) = self.records()
        config = Config.from_file(self.config_path)
        root = config.keys.load_root_key({})
        self.assertEqual((record.action, record.target), ("keys.init", root.key_id))
        self.assertIn("root key created in ", record.detail)
        self.assertEqual(record.actor, f"cli:{USER}")
        key_text = (install / "root.key").read_text().strip()
        self.assertNotIn(key_text, repr(record))
        status, out, err = run(["init", str(install), "--force"])
        self.assertEqual((status, err), (0, ""), out)
        self.assertEqual(len(self.records()), 1)

    def test_addMaster(self) -> None:
        """add-master is audited like generate-master; a v1 master's record names its version."""
        key_file = write(self.base, "m.hex", TK_HEX + "\n")
        argv = ["add-master", "psk", "P1", "--from-file", str(key_file), "--kdf", "1"]
        status, out, err = run(["keys", *argv, "--kvn", "64", "-c", self.config_path])
        self.assertEqual((status, err), (0, ""), out)
        (record,) = self.records()
        self.assertEqual((record.action, record.target), ("keys.add-master", "P1"))
        self.assertIn("master-psk, 16 bytes, KCV ", record.detail)
        self.assertIn("KVN 64, from a file", record.detail)
        self.assertNotIn(TK_HEX, repr(record).upper())

    def test_retireTransport(self) -> None:
        """keys retire-transport: audited, listed RETIRED, and a vendor file
        wrapped under the key is refused by the importer, naming it."""
        from bipgw.ingest import import_card_data
        from tests.unit.ingest import vendor_file

        def imported() -> object:
            config = Config.from_file(self.config_path)
            root = config.keys.load_root_key({})
            keystore = config.keys.open_keystore(root)
            store = MemoryStore()
            report = self.successResultOf(
                import_card_data(store, keystore, root, vendor_file(), file_name="b.out")
            )
            return report

        key_file = write(self.base, "tk.hex", TK_HEX + "\n")
        config = ["-c", self.config_path]
        run(["keys", "add-transport", "TK1", "--from-file", str(key_file), *config])
        self.assertEqual(imported().added, 3)  # type: ignore[attr-defined]
        status, out, err = run(["keys", "retire-transport", "TK1", *config])
        self.assertEqual((status, err), (0, ""), out)
        status, out, err = run(["keys", "list", *config])
        self.assertIn("RETIRED ", out)
        record = self.records()[-1]
        self.assertEqual((record.action, record.target), ("keys.retire-transport", "TK1"))
        self.assertIn("retired: vendor files wrapped under it are refused", record.detail)
        self.assertNotIn(TK_HEX, repr(record).upper())
        report = imported()
        self.assertEqual(report.added, 0)  # type: ignore[attr-defined]
        self.assertIn(
            "the transport key 'TK1' named by the header was retired on",
            report.fatal,  # type: ignore[attr-defined]
        )
        status, _, err = run(["keys", "retire-transport", "TK1", *config])
        self.assertEqual(status, 1)
        self.assertIn("already retired", err)
        status, _, err = run(["keys", "retire-transport", "nope", *config])
        self.assertEqual(status, 1)
        self.assertIn("nope", err)

    def test_kvnOfV2MasterRefused(self) -> None:
        """--kvn with a v2 master (which serves every version) is refused, nothing stored."""
        key_file = write(self.base, "m.hex", TK_HEX + "\n")
        for argv in (
            ["generate-master", "psk", "G1", "--kvn", "65"],
            ["add-master", "psk", "A1", "--from-file", str(key_file), "--kvn", "65"],
            ["add-master", "psk", "A1", "--from-file", str(key_file), "--kdf", "2", "--kvn", "1"],
        ):
            with self.subTest(argv=argv):
                status, out, err = run(["keys", *argv, "-c", self.config_path])
                self.assertEqual(status, 1, out)
                self.assertIn("a --kdf 2 master (the default) serves every key version", err)
        self.assertEqual(self.records(), [])
        status, out, _ = run(["keys", "list", "-c", self.config_path])
        self.assertNotIn("G1", out)
        self.assertNotIn("A1", out)
