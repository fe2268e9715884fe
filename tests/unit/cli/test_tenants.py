"""Tests for bipgw tenant/service: arguments, the store rows, tokens shown once and never kept."""

from __future__ import annotations

import argparse
import io
import os
from contextlib import redirect_stderr
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli._tenants import TenantCommandError, add_parser, execute
from bipgw.store import (
    DuplicateRecordError,
    IStore,
    MemoryStore,
    StoreTenantDirectory,
    UnknownRecordError,
    settings_id,
)
from tests.unit.store.test_sqlite import open_inline

AID = "A0000000871002"


def parse(argv: list[str]) -> argparse.Namespace:
    """C{argv} parsed as the bipgw command would (only the tenant and service commands)."""
    parser = argparse.ArgumentParser(prog="bipgw")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


class TenantCommandTests(SynchronousTestCase):
    """The commands against a store."""

    def make_store(self) -> IStore:
        return MemoryStore()

    def setUp(self) -> None:
        self.store = self.make_store()

    def run_command(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        d = Deferred.fromCoroutine(execute(self.store, parse(list(argv)), out, err))
        return self.successResultOf(d), out.getvalue(), err.getvalue()

    def refused(self, *argv: str) -> str:
        failure = self.failureResultOf(
            Deferred.fromCoroutine(
                execute(self.store, parse(list(argv)), io.StringIO(), io.StringIO())
            ),
            TenantCommandError,
            DuplicateRecordError,
            UnknownRecordError,
        )
        return str(failure.value)

    def test_addPrintsTokenOnce(self) -> None:
        """A generated token is printed once, works, and is not in the store or the listing."""
        status, out, _ = self.run_command("tenant", "add", "acme")
        self.assertEqual(status, 0)
        token = out.splitlines()[-1]
        self.assertTrue(token.startswith("bgw_") and len(token) > 40, out)
        directory = StoreTenantDirectory(self.store)
        grant = self.successResultOf(directory.by_token(token))
        self.assertEqual(grant.tenant_id if grant else None, "acme")
        row = self.successResultOf(self.store.get_service(settings_id("acme")))
        assert row is not None
        self.assertNotIn(token, repr(row))
        _, listing, _ = self.run_command("tenant", "list")
        self.assertEqual(listing, "acme\tenabled\tauth: token\tservices: none\n")

    def test_tokenFile(self) -> None:
        """--token-file takes the token from the file's first line and prints no token."""
        path = Path(self.mktemp())
        path.write_text("tok-from-file-0123456789\n# comment\n")
        status, out, _ = self.run_command("tenant", "add", "acme", "--token-file", str(path))
        self.assertEqual((status, out), (0, "tenant acme added\n"))
        grant = self.successResultOf(
            StoreTenantDirectory(self.store).by_token("tok-from-file-0123456789")
        )
        self.assertIsNotNone(grant)

    def test_weakTokenFile(self) -> None:
        """A token file with a short token is refused without showing the token."""
        path = Path(self.mktemp())
        path.write_text("short\n")
        message = self.refused("tenant", "add", "acme", "--token-file", str(path))
        self.assertIn("16-512 printable ASCII", message)
        self.assertNotIn("short", message.replace(str(path), ""))

    def test_duplicate(self) -> None:
        """A tenant cannot be added twice."""
        self.run_command("tenant", "add", "acme")
        self.assertEqual(self.refused("tenant", "add", "acme"), "tenant acme already exists")

    def test_limitsAndCn(self) -> None:
        """--max-sessions, --max-commands and --cert-cn reach the tenant's grant."""
        self.run_command(
            "tenant", "add", "acme", "--max-sessions", "4", "--max-commands", "9",
            "--cert-cn", "acme.example",
        )  # fmt: skip
        grant = self.successResultOf(
            StoreTenantDirectory(self.store).by_certificate("acme.example")
        )
        assert grant is not None
        self.assertEqual((grant.max_sessions, grant.max_commands), (4, 9))

    def test_disable(self) -> None:
        """A disabled tenant's token stops working and the listing says so."""
        token = self.run_command("tenant", "add", "acme")[1].splitlines()[-1]
        self.assertEqual(self.run_command("tenant", "disable", "acme")[1], "tenant acme disabled\n")
        self.assertIsNone(self.successResultOf(StoreTenantDirectory(self.store).by_token(token)))
        self.assertIn("acme\tdisabled", self.run_command("tenant", "list")[1])
        self.assertEqual(self.refused("tenant", "disable", "nobody"), "no tenant nobody")

    def test_serviceAdd(self) -> None:
        """A service grant with AIDs, a TAR and limits reaches the grant and the listing."""
        token = self.run_command("tenant", "add", "acme")[1].splitlines()[-1]
        status, out, _ = self.run_command(
            "service", "add", "isd", "--tenant", "acme", "--aid", AID.lower(), "--tar", "b00010",
            "--rate", "5", "--max-sessions", "2",
        )  # fmt: skip
        self.assertEqual((status, out), (0, "service isd granted to tenant acme\n"))
        grant = self.successResultOf(StoreTenantDirectory(self.store).by_token(token))
        assert grant is not None
        service = grant.services["isd"]
        self.assertEqual(service.allowed_aids, {bytes.fromhex(AID)})
        self.assertEqual(service.allowed_tars, {bytes.fromhex("B00010")})
        self.assertEqual(service.max_sessions, 2)
        listing = self.run_command("service", "list")[1]
        self.assertEqual(
            listing,
            f"acme\tisd\tenabled\taids: {AID}\ttars: B00010\tisd_commands: none"
            "\tmax_sessions: 2\trate: 5\n",
        )
        self.assertIn("services: isd", self.run_command("tenant", "list")[1])
        self.assertEqual(service.isd_commands, frozenset())

    def test_serviceAddIsdCommands(self) -> None:
        """--isd-commands reaches the grant as instructions and the listing by name;
        a name that is no ISD command is refused, naming it."""
        token = self.run_command("tenant", "add", "acme")[1].splitlines()[-1]
        status, _, _ = self.run_command(
            "service", "add", "isd", "--tenant", "acme", "--isd-commands", "get-status,GET-DATA,e4"
        )
        self.assertEqual(status, 0)
        grant = self.successResultOf(StoreTenantDirectory(self.store).by_token(token))
        assert grant is not None
        self.assertEqual(grant.services["isd"].isd_commands, {0xF2, 0xCA, 0xCB, 0xE4})
        listing = self.run_command("service", "list")[1]
        self.assertIn("isd_commands: get-status get-data e4", listing)
        stderr = io.StringIO()
        with self.assertRaises(SystemExit) as caught, redirect_stderr(stderr):
            parse(["service", "add", "x", "--tenant", "acme", "--isd-commands", "get-status,wipe"])
        self.assertEqual(caught.exception.code, 2)
        self.assertIn("'wipe' is not an ISD command", stderr.getvalue())

    def test_serviceRefusals(self) -> None:
        """A service for an unknown tenant, or granted twice, is refused."""
        self.assertEqual(self.refused("service", "add", "isd", "--tenant", "x"), "no tenant x")
        self.run_command("tenant", "add", "acme")
        self.run_command("service", "add", "isd", "--tenant", "acme")
        self.assertEqual(
            self.refused("service", "add", "isd", "--tenant", "acme"),
            "tenant acme already has service isd",
        )

    def test_serviceListByTenant(self) -> None:
        """service list --tenant shows that tenant's services only."""
        for tenant in ("acme", "globex"):
            self.run_command("tenant", "add", tenant)
            self.run_command("service", "add", f"svc-{tenant}", "--tenant", tenant)
        listing = self.run_command("service", "list", "--tenant", "globex")[1]
        self.assertEqual(listing.split("\t")[:2], ["globex", "svc-globex"])
        self.assertEqual(listing.count("\n"), 1)


class SqliteTenantCommandTests(TenantCommandTests):
    """The same on SQLite; the file never holds a token."""

    def make_store(self) -> IStore:
        self.path = f"{os.path.abspath(self.mktemp())}.db"
        store = open_inline(f"sqlite:///{self.path}", self)
        self.addCleanup(lambda: self.successResultOf(store.close()))
        return store

    def test_tokenNotInFile(self) -> None:
        """The generated token is nowhere in the database file (nor its WAL)."""
        token = self.run_command("tenant", "add", "acme")[1].splitlines()[-1]
        data = b""
        for suffix in ("", "-wal"):
            if os.path.exists(self.path + suffix):
                with open(self.path + suffix, "rb") as f:
                    data += f.read()
        self.assertIn(b"token_digest", data)
        secret = token.removeprefix("bgw_").encode()
        for start in range(0, len(secret) - 8):
            self.assertNotIn(secret[start : start + 8], data)


class ArgumentTests(SynchronousTestCase):
    """Bad arguments are usage errors (argparse exits 2)."""

    def test_badValues(self) -> None:
        """Bad names, AIDs, TARs and limits are refused by the parser."""
        for argv in (
            ["tenant", "add", "-bad"],
            ["tenant", "add", "x" * 40],
            ["service", "add", "isd", "--tenant", "acme", "--aid", "A000"],
            ["service", "add", "isd", "--tenant", "acme", "--aid", "zz"],
            ["service", "add", "isd", "--tenant", "acme", "--tar", "B0001011"],
            ["service", "add", "isd", "--tenant", "acme", "--rate", "0"],
            ["service", "add", "isd"],
        ):
            with self.assertRaises(SystemExit) as caught:
                parse(argv)
            self.assertEqual(caught.exception.code, 2, argv)


class FractionalRateTests(SynchronousTestCase):
    """--rate takes fractional commands per second and refuses non-positive ones."""

    def test_parse(self) -> None:
        """0.5 is a rate; 0, -1, inf and text are refused naming the value."""
        from bipgw.cli._tenants import _positive_rate

        self.assertEqual(_positive_rate("0.5"), 0.5)
        for bad in ("0", "-1", "inf", "nan", "fast"):
            with self.assertRaises(argparse.ArgumentTypeError) as ctx:
                _positive_rate(bad)
            self.assertIn(repr(bad), str(ctx.exception))
