"""A service's rules (C{[services.NAME]}, L{bipgw.core.ServiceRules}) seen
through the platform channel: the engine applies them, the wire shows them.

The fake cards keep every command script they get, so the script form
(C{AA} or C{AE 80}) and a command that never reached the card are seen
where they matter.
"""

from __future__ import annotations

from bipgw.codec.ram import CommandScript
from bipgw.core import ServiceRules
from tests.unit.platform import (
    AID,
    GET_DATA,
    OTHER_AID,
    OTHER_TOKEN,
    PlatformTestCase,
    iccid,
)


class ServiceRulesTests(PlatformTestCase):
    """definite_scripts, max_concurrent_sessions and allowed_aids of "demo"."""

    services = {
        "demo": ServiceRules(
            definite_scripts=True, max_concurrent_sessions=2, allowed_aids=frozenset({AID})
        ),
        "locked": ServiceRules(),
    }

    def test_definiteByService(self) -> None:
        """A command that does not choose a form reaches the card as C{AA},
        the service's form; one that asks for C{definite: false} as C{AE 80}."""
        platform = self.login()
        session = self.opened(platform)
        platform.send(type="command", session=session, id="c1", apdus=[GET_DATA])
        self.advance(0.5)
        [result] = platform.take()
        self.assertEqual((result["type"], result["executed"]), ("result", 1))
        platform.send(type="command", session=session, id="c2", apdus=[GET_DATA], definite=False)
        self.advance(0.5)
        self.assertEqual([m["type"] for m in platform.take()], ["result"])
        first, second = self.fleet.card(1).scripts
        self.assertEqual(first, CommandScript((bytes.fromhex(GET_DATA),), True).encode())
        self.assertEqual(second[:2], b"\xae\x80")

    def test_selectOutsideTheCeiling(self) -> None:
        """A SELECT of an AID the service does not list is refused with
        application-not-allowed, though the tenant's grant names no AIDs; the
        card gets nothing, and the session goes on."""
        platform = self.login()
        session = self.opened(platform)
        select = "00A4040007" + OTHER_AID.hex().upper()
        platform.send(type="command", session=session, id="c1", apdus=[select])
        self.advance(0.5)
        [error] = platform.take()
        self.assertEqual((error["type"], error["code"]), ("error", "application-not-allowed"))
        self.assertIn(OTHER_AID.hex().upper(), error["message"])
        self.assertEqual(self.fleet.card(1).scripts, [])
        allowed = "00A4040007" + AID.hex().upper()
        platform.send(type="command", session=session, id="c2", apdus=[allowed])
        self.advance(0.5)
        self.assertEqual([m["type"] for m in platform.take()], ["result"])

    def test_sessionLimitAcrossTenants(self) -> None:
        """Two sessions of "demo" are open (acme's); globex's open fails
        with limit-reached, then succeeds once one of them is closed."""
        acme = self.login()
        first = self.opened(acme, 1, rid="o1")
        self.opened(acme, 2, rid="o2")
        globex = self.login(OTHER_TOKEN)
        globex.send(type="open", id="g1", iccid=iccid(3), service="demo")
        self.flush()
        accepted, failed = globex.take()
        self.assertEqual(accepted["type"], "accepted")
        self.assertEqual((failed["type"], failed["reason"]), ("failed", "limit-reached"))
        self.assertIn("demo", failed["message"])
        acme.send(type="close", id="x1", session=first)
        self.advance(0.5)
        self.assertEqual([m["type"] for m in acme.take()], ["closed"])
        self.assertTrue(self.opened(globex, 3, rid="g2"))
