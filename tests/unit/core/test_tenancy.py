"""Tenant grants, the memory directory and the usage counts behind the limits."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    ITenantDirectory,
    MemoryTenantDirectory,
    ServiceGrant,
    TenantGrant,
    TenantUsage,
)

AID = bytes.fromhex("A0000000871002")
TAR = bytes.fromhex("B00010")


class GrantTests(SynchronousTestCase):
    """What a service grant allows."""

    def test_applications(self) -> None:
        """A 3-byte application is checked against the TARs, a longer one
        against the AIDs; an empty list allows any."""
        grant = ServiceGrant("svc", allowed_aids=[AID], allowed_tars=[TAR])
        self.assertTrue(grant.allows_application(AID))
        self.assertTrue(grant.allows_application(TAR))
        self.assertFalse(grant.allows_application(b"\x00\x00\x00"))
        self.assertFalse(grant.allows_application(AID + b"\x01"))
        self.assertTrue(ServiceGrant("open").allows_application(b"\x00\x00\x00"))
        self.assertTrue(ServiceGrant("open").allows_select(AID))
        self.assertFalse(grant.allows_select(b"\xa0\x00\x00\x00\x04"))

    def test_checks(self) -> None:
        """Grants refuse values that cannot work, naming them."""
        self.assertRaises(ValueError, ServiceGrant, "")
        self.assertRaises(ValueError, ServiceGrant, "s", max_sessions=0)
        self.assertRaises(TypeError, ServiceGrant, "s", allowed_aids=["A000"])
        self.assertRaises(ValueError, TenantGrant, "t", max_commands=True)
        self.assertRaises(ValueError, TenantGrant, "two\nlines")
        with self.assertRaises(ValueError) as ctx:
            TenantGrant("t", services=[ServiceGrant("a"), ServiceGrant("a")])
        self.assertIn("distinct", str(ctx.exception))

    def test_servicesByName(self) -> None:
        """Services given as a list are found by name, and cannot be changed."""
        grant = TenantGrant("t", services=[ServiceGrant("a"), ServiceGrant("b")])
        self.assertEqual(sorted(grant.services), ["a", "b"])
        with self.assertRaises(TypeError):
            grant.services["c"] = ServiceGrant("c")  # type: ignore[index]
        self.assertEqual(hash(grant), hash(TenantGrant("t", services=[ServiceGrant("x")])))


class MemoryDirectoryTests(SynchronousTestCase):
    """The memory directory finds tenants by token and by certificate CN."""

    def setUp(self) -> None:
        self.directory = MemoryTenantDirectory()
        self.acme = TenantGrant("acme", services=[ServiceGrant("demo")])
        self.directory.add(self.acme, tokens=["tok-1", "tok-2"], common_names=["acme.example"])

    def test_provides(self) -> None:
        """It is an ITenantDirectory."""
        self.assertIsInstance(self.directory, ITenantDirectory)

    def test_lookups(self) -> None:
        """Each credential finds the tenant; anything else finds nothing."""
        for token in ("tok-1", "tok-2"):
            self.assertIs(self.successResultOf(self.directory.by_token(token)), self.acme)
        self.assertIs(
            self.successResultOf(self.directory.by_certificate("acme.example")), self.acme
        )
        self.assertIsNone(self.successResultOf(self.directory.by_token("tok-3")))
        self.assertIsNone(self.successResultOf(self.directory.by_token("acme.example")))
        self.assertIsNone(self.successResultOf(self.directory.by_certificate("tok-1")))

    def test_remove(self) -> None:
        """A removed tenant is found by none of its credentials."""
        self.directory.remove("acme")
        self.assertIsNone(self.successResultOf(self.directory.by_token("tok-1")))
        self.assertIsNone(self.successResultOf(self.directory.by_certificate("acme.example")))

    def test_replace(self) -> None:
        """Adding a tenant again replaces its grant and keeps its credentials."""
        newer = TenantGrant("acme", max_sessions=3)
        self.directory.add(newer)
        self.assertIs(self.successResultOf(self.directory.by_token("tok-1")), newer)

    def test_credentialsAreOneTenants(self) -> None:
        """A token or CN already used by another tenant is refused."""
        other = TenantGrant("other")
        self.assertRaises(ValueError, self.directory.add, other, tokens=["tok-1"])
        self.assertRaises(ValueError, self.directory.add, other, common_names=["acme.example"])
        self.assertRaises(ValueError, self.directory.add, other, tokens=[""])

    def test_tokensNotKept(self) -> None:
        """Only digests of tokens are held: no token appears in its state."""
        self.assertNotIn("tok-1", repr(vars(self.directory)))


class UsageTests(SynchronousTestCase):
    """Counting sessions and commands per tenant, over all connections."""

    def setUp(self) -> None:
        self.usage = TenantUsage()
        self.service = ServiceGrant("svc", max_sessions=2)
        self.tenant = TenantGrant("t", services=[self.service], max_sessions=3, max_commands=1)

    def test_sessionLimits(self) -> None:
        """The service limit and then the tenant limit refuse, in words."""
        other = ServiceGrant("other")
        for _ in range(2):
            self.assertIsNone(self.usage.check_open(self.tenant, self.service))
            self.usage.opened("t", "svc")
        self.assertIn("service svc", self.usage.check_open(self.tenant, self.service) or "")
        self.assertIsNone(self.usage.check_open(self.tenant, other))
        self.usage.opened("t", "other")
        self.assertIn("tenant t", self.usage.check_open(self.tenant, other) or "")
        self.usage.ended("t", "svc")
        self.assertEqual((self.usage.sessions("t"), self.usage.sessions("t", "svc")), (2, 1))
        self.assertIsNone(self.usage.check_open(self.tenant, self.service))

    def test_commands(self) -> None:
        """Commands in flight are counted and limited."""
        self.assertIsNone(self.usage.check_command(self.tenant))
        self.usage.command_sent("t")
        self.assertIn("1 commands", self.usage.check_command(self.tenant) or "")
        self.usage.command_done("t")
        self.assertEqual(self.usage.commands("t"), 0)

    def test_overRelease(self) -> None:
        """Releasing more than was reserved is a bug, reported at once."""
        self.assertRaises(RuntimeError, self.usage.ended, "t", "svc")
        self.assertRaises(RuntimeError, self.usage.command_done, "t")
