"""Tests for StoreTenantDirectory: tenants, services and token digests in the store."""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import ITenantDirectory, ServiceGrant
from bipgw.store import (
    IStore,
    MemoryStore,
    Service,
    StoreTenantDirectory,
    Tenant,
    TokenDigest,
    replace_token,
    service_id,
    settings_id,
)
from tests.unit.store.test_sqlite import open_inline

TOKEN = "bgw_test-token-acme-0123456789abcdef"
AID = bytes.fromhex("A0000000871002")
TAR = bytes.fromhex("B00010")


class TokenDigestTests(SynchronousTestCase):
    """Tokens are kept as salted scrypt digests."""

    def test_matches(self) -> None:
        """A digest matches its token and nothing else."""
        digest = TokenDigest.of(TOKEN)
        self.assertTrue(digest.matches(TOKEN))
        self.assertFalse(digest.matches(TOKEN + "x"))
        self.assertFalse(digest.matches(""))

    def test_salted(self) -> None:
        """The same token hashed twice gives different salts and digests."""
        a, b = TokenDigest.of(TOKEN), TokenDigest.of(TOKEN)
        self.assertNotEqual((a.salt, a.digest), (b.salt, b.digest))

    def test_settingsRoundTrip(self) -> None:
        """A digest survives the store's settings, which never hold the token."""
        digest = TokenDigest.of(TOKEN)
        settings = digest.settings()
        self.assertEqual(TokenDigest.from_settings(settings), digest)
        self.assertNotIn(TOKEN, repr(settings))
        self.assertNotIn(digest.digest.hex(), repr(digest))

    def test_unreadableSettings(self) -> None:
        """Settings without a readable digest give none."""
        self.assertIsNone(TokenDigest.from_settings({}))
        self.assertIsNone(TokenDigest.from_settings({"token_scheme": "scrypt", "token_n": "x"}))


class DirectoryMixin:
    """The directory's behaviour over any store."""

    def make_store(self) -> IStore:
        raise NotImplementedError()

    def setUp(self) -> None:
        case: SynchronousTestCase = self  # type: ignore[assignment]
        self.store = self.make_store()
        self.directory = StoreTenantDirectory(self.store, default_max_commands=7)
        settings = {"kind": "tenant-settings", "max_sessions": 3, "common_name": "acme.example"}
        settings.update(TokenDigest.of(TOKEN).settings())
        for d in (
            self.store.put_tenant(Tenant("acme", "acme")),
            self.store.put_service(Service(settings_id("acme"), "acme", "", False, settings)),
            self.store.put_service(Service(service_id("acme", "demo"), "acme", "demo")),
            self.store.put_service(
                Service(
                    service_id("acme", "locked"),
                    "acme",
                    "locked",
                    settings={"aids": AID.hex(), "tars": TAR.hex(), "max_sessions": 2},
                )
            ),
            self.store.put_service(Service(service_id("acme", "old"), "acme", "old", False)),
        ):
            case.successResultOf(d)

    def test_isDirectory(self) -> None:
        """It provides ITenantDirectory."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        case.assertIsInstance(self.directory, ITenantDirectory)

    def test_byToken(self) -> None:
        """The right token gives the tenant with its enabled services and limits."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        grant = case.successResultOf(self.directory.by_token(TOKEN))
        assert grant is not None
        case.assertEqual(grant.tenant_id, "acme")
        case.assertEqual(set(grant.services), {"demo", "locked"})
        case.assertEqual(
            grant.services["locked"],
            ServiceGrant("locked", allowed_aids={AID}, allowed_tars={TAR}, max_sessions=2),
        )
        case.assertEqual((grant.max_sessions, grant.max_commands), (3, 7))

    def test_wrongToken(self) -> None:
        """Any other token gives nothing."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        for token in (TOKEN[:-1], TOKEN + "0", "", "x" * 600):
            case.assertIsNone(case.successResultOf(self.directory.by_token(token)))

    def test_disabled(self) -> None:
        """A disabled tenant is refused, also right after a successful (cached) lookup."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        case.assertIsNotNone(case.successResultOf(self.directory.by_token(TOKEN)))
        case.successResultOf(self.store.put_tenant(Tenant("acme", "acme", enabled=False)))
        case.assertIsNone(case.successResultOf(self.directory.by_token(TOKEN)))
        case.assertIsNone(case.successResultOf(self.directory.by_certificate("acme.example")))

    def test_newToken(self) -> None:
        """A replaced token takes over at once; the old one is refused."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        case.assertIsNotNone(case.successResultOf(self.directory.by_token(TOKEN)))
        new = "bgw_another-token-0123456789abcdef"
        case.successResultOf(Deferred.fromCoroutine(replace_token(self.store, "acme", new)))
        case.assertIsNone(case.successResultOf(self.directory.by_token(TOKEN)))
        case.assertIsNotNone(case.successResultOf(self.directory.by_token(new)))

    def test_byCertificate(self) -> None:
        """The tenant's certificate CN finds it; another CN does not."""
        case: SynchronousTestCase = self  # type: ignore[assignment]
        grant = case.successResultOf(self.directory.by_certificate("acme.example"))
        case.assertEqual(grant.tenant_id if grant else None, "acme")
        case.assertIsNone(case.successResultOf(self.directory.by_certificate("evil.example")))


class MemoryDirectoryTests(DirectoryMixin, SynchronousTestCase):
    """Over the memory store."""

    def make_store(self) -> IStore:
        return MemoryStore()


class SqliteDirectoryTests(DirectoryMixin, SynchronousTestCase):
    """Over SQLite; the file never holds the token."""

    def make_store(self) -> IStore:
        self.path = f"{os.path.abspath(self.mktemp())}.db"
        store = open_inline(f"sqlite:///{self.path}", self)
        self.addCleanup(lambda: self.successResultOf(store.close()))
        return store

    def test_tokenNotInFile(self) -> None:
        """Neither the token nor any long part of it is in the database file; its digest is."""
        self.successResultOf(self.directory.by_token(TOKEN))
        data = b""
        for suffix in ("", "-wal"):
            if os.path.exists(self.path + suffix):
                with open(self.path + suffix, "rb") as f:
                    data += f.read()
        self.assertIn(b"acme", data)
        for start in range(0, len(TOKEN) - 8):
            self.assertNotIn(TOKEN[start : start + 8].encode(), data)
        row = self.successResultOf(self.store.get_service(settings_id("acme")))
        assert row is not None
        self.assertIn(str(row.settings["token_digest"]).encode(), data)
