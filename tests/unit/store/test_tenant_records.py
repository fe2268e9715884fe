"""Tenants added and services granted as a library (L{bipgw.store._tenant_records}),
as the demo does; C{tests/unit/cli/test_tenants.py} covers the C{bipgw
tenant|service} commands built on them."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import DuplicateRecordError, MemoryStore, StoreTenantDirectory, UnknownRecordError
from bipgw.store._tenant_records import add_tenant, disable_tenant, grant_service

AID = "a0000000871002"


class TenantRecordTests(SynchronousTestCase):
    """What the functions write is what the gateway's tenant directory reads."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.directory = StoreTenantDirectory(self.store)

    def add(self, name: str, **kwargs: Any) -> str:
        return self.successResultOf(Deferred.fromCoroutine(add_tenant(self.store, name, **kwargs)))

    def test_generatedToken(self) -> None:
        """Without a token, a new one is made and returned; it authenticates
        the tenant, with the limits given."""
        token = self.add("acme", max_sessions=3, max_commands=7)
        grant = self.successResultOf(self.directory.by_token(token))
        assert grant is not None
        self.assertEqual((grant.tenant_id, grant.max_sessions, grant.max_commands), ("acme", 3, 7))
        self.assertNotEqual(self.add("globex"), token)

    def test_givenTokenAndCertificate(self) -> None:
        """A given token is the one accepted, and the CN authenticates too."""
        token = "t" * 32
        self.assertEqual(self.add("acme", token=token, common_name="acme.example"), token)
        self.assertIsNotNone(self.successResultOf(self.directory.by_token(token)))
        self.assertIsNotNone(self.successResultOf(self.directory.by_certificate("acme.example")))

    def test_grantService(self) -> None:
        """The grant carries its AIDs (upper-case, once each), TARs, rate and limit."""
        token = self.add("acme")
        d = Deferred.fromCoroutine(
            grant_service(
                self.store, "acme", "isd", aids=[AID, AID.upper()], tars=["b00010"], rate=2.0,
                max_sessions=4,
            )
        )  # fmt: skip
        self.successResultOf(d)
        grant = self.successResultOf(self.directory.by_token(token))
        assert grant is not None
        service = grant.services["isd"]
        self.assertEqual(service.allowed_aids, {bytes.fromhex(AID)})
        self.assertEqual(service.allowed_tars, {bytes.fromhex("B00010")})
        self.assertEqual((service.rate, service.max_sessions), (2.0, 4))
        row = self.successResultOf(self.store.get_service("acme/isd"))
        assert row is not None
        self.assertEqual(row.settings["rate"], 2)
        self.assertIsInstance(row.settings["rate"], int)

    def test_isdCommands(self) -> None:
        """ISD commands are stored by name and read back as instructions; a name that is
        none is refused before anything is written; a hand-edited row's unknown name
        grants nothing (the grant fails closed), its known ones still apply."""
        from bipgw.store import Service

        token = self.add("acme")
        d = grant_service(self.store, "acme", "isd", isd_commands=["get-status", "Get-Data"])
        self.successResultOf(Deferred.fromCoroutine(d))
        row = self.successResultOf(self.store.get_service("acme/isd"))
        assert row is not None
        self.assertEqual(row.settings["isd_commands"], "get-status get-data")
        grant = self.successResultOf(self.directory.by_token(token))
        assert grant is not None
        self.assertEqual(grant.services["isd"].isd_commands, {0xF2, 0xCA, 0xCB})
        bad = Deferred.fromCoroutine(grant_service(self.store, "acme", "x", isd_commands=["zap"]))
        self.assertIn("'zap'", str(self.failureResultOf(bad, ValueError).value))
        self.assertIsNone(self.successResultOf(self.store.get_service("acme/x")))
        edited = Service("acme/y", "acme", "y", True, {"isd_commands": "zap delete"})
        self.successResultOf(self.store.put_service(edited))
        grant = self.successResultOf(self.directory.by_token(token))
        assert grant is not None
        self.assertEqual(grant.services["y"].isd_commands, {0xE4})

    def test_refusals(self) -> None:
        """A tenant or grant twice is a L{DuplicateRecordError}; an unknown
        tenant an L{UnknownRecordError}."""
        self.add("acme")
        dup = Deferred.fromCoroutine(add_tenant(self.store, "acme"))
        self.assertEqual(
            str(self.failureResultOf(dup, DuplicateRecordError).value), "tenant acme already exists"
        )
        for call in (
            disable_tenant(self.store, "nobody"),
            grant_service(self.store, "nobody", "isd"),
        ):
            failure = self.failureResultOf(Deferred.fromCoroutine(call), UnknownRecordError)
            self.assertEqual(str(failure.value), "no tenant nobody")
        self.successResultOf(Deferred.fromCoroutine(grant_service(self.store, "acme", "isd")))
        again = Deferred.fromCoroutine(grant_service(self.store, "acme", "isd"))
        self.failureResultOf(again, DuplicateRecordError)

    def test_disable(self) -> None:
        """A disabled tenant's token no longer authenticates."""
        token = self.add("acme")
        self.successResultOf(Deferred.fromCoroutine(disable_tenant(self.store, "acme")))
        self.assertIsNone(self.successResultOf(self.directory.by_token(token)))
