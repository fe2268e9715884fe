"""Tests for the per-service command rate: the token buckets, the grant's
C{rate} from the store, and C{rate-limited} on the platform channel."""

from __future__ import annotations

import argparse
import io
import math
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli._tenants import add_parser, execute
from bipgw.codec.platform import ErrorCode
from bipgw.core import ALL_INSTRUCTIONS, CommandRates, ServiceGrant, TenantGrant
from bipgw.store import MemoryStore, Service, StoreTenantDirectory, service_grant, service_id
from tests.unit.platform import (
    OTHER_TOKEN,
    TOKEN,
    PlatformTestCase,
    RawPlatform,
    echo,
    iccid,
)

METERED = ServiceGrant("metered", rate=2, isd_commands=ALL_INSTRUCTIONS)
SLOW = ServiceGrant("slow", rate=0.5, isd_commands=ALL_INSTRUCTIONS)


class ServiceGrantRateTests(SynchronousTestCase):
    """A grant's C{rate} is a positive, finite number of commands per second, or none."""

    def test_default(self) -> None:
        """Without a rate a service is not metered."""
        self.assertIsNone(ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS).rate)

    def test_accepted(self) -> None:
        """Whole and fractional rates are kept as given."""
        self.assertEqual(ServiceGrant("a", rate=5).rate, 5)
        self.assertEqual(ServiceGrant("a", rate=0.25).rate, 0.25)

    def test_refused(self) -> None:
        """Zero, negative, infinite, NaN, boolean and non-numeric rates are refused."""
        for bad in (0, -1, 0.0, math.inf, math.nan, True, "5"):
            with self.assertRaises(ValueError, msg=repr(bad)) as caught:
                ServiceGrant("a", rate=bad)  # type: ignore[arg-type]
            self.assertIn("rate", str(caught.exception))


class CommandRatesTests(SynchronousTestCase):
    """The token buckets, on a clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.rates = CommandRates(self.clock)

    def takes(
        self, count: int, tenant: str = "acme", service: ServiceGrant = METERED
    ) -> list[bool]:
        """Try C{count} commands at once; which got a token."""
        return [self.rates.take(tenant, service) is None for _ in range(count)]

    def test_unlimited(self) -> None:
        """A service without a rate never refuses and keeps no bucket."""
        self.assertEqual(
            self.takes(1000, service=ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)),
            [True] * 1000,
        )
        self.assertEqual(
            self.rates.available("acme", ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)),
            math.inf,
        )

    def test_burst(self) -> None:
        """A full bucket pays a burst of C{rate} commands, then refuses."""
        self.assertEqual(self.takes(3), [True, True, False])
        self.assertEqual(self.rates.available("acme", METERED), 0)

    def test_burstAtLeastOne(self) -> None:
        """A rate under one per second still allows one command, then one every 1/rate s."""
        self.assertEqual(self.takes(2, service=SLOW), [True, False])
        self.clock.advance(1.5)
        self.assertEqual(self.takes(1, service=SLOW), [False])
        self.clock.advance(0.5)
        self.assertEqual(self.takes(2, service=SLOW), [True, False])

    def test_fractionalBurst(self) -> None:
        """A fractional rate over one bursts its whole part."""
        self.assertEqual(self.takes(3, service=ServiceGrant("a", rate=2.5)), [True, True, False])

    def test_refill(self) -> None:
        """Tokens come back at C{rate} per second, up to the burst and no further."""
        self.takes(2)
        self.clock.advance(0.25)
        self.assertEqual(self.takes(1), [False])
        self.clock.advance(0.25)
        self.assertEqual(self.takes(2), [True, False])
        self.clock.advance(3600)
        self.assertEqual(self.rates.available("acme", METERED), 2)
        self.assertEqual(self.takes(3), [True, True, False])

    def test_refusalIsFree(self) -> None:
        """A refused command spends nothing: the next token comes when it would have."""
        self.takes(2)
        for _ in range(4):
            self.clock.advance(0.1)
            self.assertEqual(self.takes(1), [False])
        self.clock.advance(0.1)
        self.assertEqual(self.takes(1), [True])

    def test_sustained(self) -> None:
        """Commands spaced at exactly 1/rate all pass, for as long as they keep the pace."""
        rate = ServiceGrant("three", rate=3)
        self.takes(3, service=rate)
        passed = []
        for _ in range(300):
            self.clock.advance(1 / 3)
            passed.append(self.rates.take("acme", rate) is None)
        self.assertEqual(passed, [True] * 300)

    def test_message(self) -> None:
        """The refusal names the service, its rate and the wait for the next token."""
        self.takes(2)
        self.clock.advance(0.2)
        why = self.rates.take("acme", METERED)
        self.assertEqual(
            why, "service metered allows 2 commands per second (its rate); the next one in 0.3 s"
        )

    def test_separateBuckets(self) -> None:
        """Each tenant has its own bucket for each service."""
        other = ServiceGrant("other", rate=2)
        self.assertEqual(self.takes(3), [True, True, False])
        self.assertEqual(self.takes(3, service=other), [True, True, False])
        self.assertEqual(self.takes(3, tenant="globex"), [True, True, False])
        self.assertEqual(self.takes(1), [False])

    def test_rateChanged(self) -> None:
        """A new grant's rate applies at once; a lower one caps the saved tokens."""
        self.clock.advance(10)
        self.assertEqual(self.takes(1, service=ServiceGrant("metered", rate=1)), [True])
        self.assertEqual(self.takes(1), [False])
        self.clock.advance(0.5)
        self.assertEqual(self.takes(2), [True, False])
        self.assertEqual(self.takes(3, service=ServiceGrant("metered", rate=100)), [False] * 3)
        self.clock.advance(0.05)
        self.assertEqual(self.takes(6, service=ServiceGrant("metered", rate=100)).count(True), 5)

    def test_clockBack(self) -> None:
        """A clock set back refills nothing, and refilling resumes from the new time."""
        self.takes(2)
        self.clock.rightNow -= 100
        self.assertEqual(self.takes(1), [False])
        self.clock.advance(0.5)
        self.assertEqual(self.takes(2), [True, False])

    def test_noTimers(self) -> None:
        """Metering schedules nothing on the clock."""
        self.takes(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class StoreRateTests(SynchronousTestCase):
    """The rate the operator stored reaches the grant."""

    def grant(self, rate: object) -> ServiceGrant:
        return service_grant(
            Service(service_id("acme", "isd"), "acme", "isd", settings={"rate": rate})
        )

    def test_mapped(self) -> None:
        """Whole and fractional stored rates become the grant's rate."""
        self.assertEqual(self.grant(5).rate, 5.0)
        self.assertEqual(self.grant(0.5).rate, 0.5)

    def test_unusable(self) -> None:
        """A missing or unusable stored rate is no limit, never a locked-out tenant."""
        self.assertIsNone(service_grant(Service(service_id("acme", "isd"), "acme", "isd")).rate)
        for bad in (0, -3, True, "5", None, math.inf):
            self.assertIsNone(self.grant(bad).rate, repr(bad))

    def test_fromCommandLine(self) -> None:
        """C{bipgw service add --rate N} gives the tenant's grant a rate of N."""
        store = MemoryStore()
        parser = argparse.ArgumentParser(prog="bipgw")
        add_parser(parser.add_subparsers(dest="command", required=True))
        outputs = []
        for argv in (
            ["tenant", "add", "acme"],
            ["service", "add", "isd", "--tenant", "acme", "--rate", "3"],
            ["service", "add", "demo", "--tenant", "acme"],
        ):
            out = io.StringIO()
            d = Deferred.fromCoroutine(execute(store, parser.parse_args(argv), out, io.StringIO()))
            self.assertEqual(self.successResultOf(d), 0)
            outputs.append(out.getvalue())
        token = outputs[0].splitlines()[-1]
        grant = self.successResultOf(StoreTenantDirectory(store).by_token(token))
        assert grant is not None
        self.assertEqual(grant.services["isd"].rate, 3.0)
        self.assertIsNone(grant.services["demo"].rate)


class ChannelRateTests(PlatformTestCase):
    """C{rate-limited} on the platform channel, over a real engine and fake cards."""

    def setUp(self) -> None:
        super().setUp()
        self.tenants.add(
            TenantGrant(
                "acme",
                services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS), METERED],
                max_sessions=30,
                max_commands=64,
            ),
            tokens=[TOKEN],
        )
        self.tenants.add(
            TenantGrant(
                "globex", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS), METERED]
            ),
            tokens=[OTHER_TOKEN],
        )

    def session(self, platform: RawPlatform, n: int, service: str = "metered") -> str:
        """Open a session of C{service} with card C{n} and let the card connect."""
        platform.send(type="open", id=f"o{n}", iccid=iccid(n), service=service)
        self.flush()
        [accepted] = platform.take()
        self.assertEqual(accepted["type"], "accepted", accepted)
        self.advance(self.fleet.connect_delay)
        [ready] = platform.take()
        self.assertEqual(ready["type"], "ready", ready)
        return str(accepted["session"])

    def commands(self, platform: RawPlatform, session: str, *ids: str) -> None:
        """Send one command per id, all at once."""
        for rid in ids:
            platform.send(type="command", id=rid, session=session, apdus=[echo(rid.encode())])
        self.flush()

    def answers(self, platform: RawPlatform, seconds: float = 3) -> dict[str, Any]:
        """What each request id got within C{seconds}: its result or its error code."""
        self.advance(seconds)
        out: dict[str, Any] = {}
        for message in platform.take():
            out[message["id"]] = (
                "result" if message["type"] == "result" else message.get("code", message)
            )
        return out

    def test_underRatePasses(self) -> None:
        """Commands at the service's rate all run on the card."""
        platform = self.login()
        session = self.session(platform, 1)
        got = {}
        for i in range(8):
            self.commands(platform, session, f"c{i}")
            got.update(self.answers(platform, 0.5))
        got.update(self.answers(platform, 3))
        self.assertEqual(got, {f"c{i}": "result" for i in range(8)})
        self.assertEqual(len(self.fleet.card(1).scripts), 8)

    def test_burstOverRefused(self) -> None:
        """A burst over the rate: the extra command gets rate-limited at once, naming
        the service and the limit, and never reaches the card; the connection goes on."""
        platform = self.login()
        session = self.session(platform, 1)
        self.commands(platform, session, "c1", "c2", "c3")
        [error] = platform.take()
        self.assertEqual(
            (error["type"], error["code"], error["id"], error["session"]),
            ("error", ErrorCode.RATE_LIMITED, "c3", session),
        )
        self.assertIn("service metered", error["message"])
        self.assertIn("2 commands per second", error["message"])
        self.assertEqual(self.factory.tenancy.usage.commands("acme"), 2)
        self.assertEqual(self.answers(platform), {"c1": "result", "c2": "result"})
        self.assertEqual(len(self.fleet.card(1).scripts), 2)
        self.assertEqual(self.factory.tenancy.usage.commands("acme"), 0)

    def test_refill(self) -> None:
        """Once time has refilled the bucket, commands pass again."""
        platform = self.login()
        session = self.session(platform, 1)
        self.commands(platform, session, "c1", "c2", "c3")
        self.assertEqual(self.answers(platform, 0.25)["c3"], "rate-limited")
        self.advance(0.25)
        self.commands(platform, session, "c4", "c5")
        got = self.answers(platform)
        self.assertEqual((got["c4"], got["c5"]), ("result", "rate-limited"))
        self.advance(1)
        self.commands(platform, session, "c6", "c7")
        self.assertEqual(self.answers(platform), {"c6": "result", "c7": "result"})

    def test_otherServiceUnaffected(self) -> None:
        """A service without a rate, on the same tenant, is not held back."""
        platform = self.login()
        metered = self.session(platform, 1)
        free = self.session(platform, 2, "demo")
        self.commands(platform, metered, "m1", "m2", "m3")
        self.commands(platform, free, *(f"d{i}" for i in range(6)))
        got = self.answers(platform, 5)
        self.assertEqual(got.pop("m3"), "rate-limited")
        self.assertEqual(set(got.values()), {"result"})
        self.assertEqual(len(got), 8)

    def test_otherTenantUnaffected(self) -> None:
        """Another tenant has its own bucket for the same service."""
        acme, globex = self.login(), self.login(OTHER_TOKEN)
        a, g = self.session(acme, 1), self.session(globex, 2)
        self.commands(acme, a, "a1", "a2", "a3")
        self.commands(globex, g, "g1", "g2")
        self.assertEqual(self.answers(acme)["a3"], "rate-limited")
        self.assertEqual(self.answers(globex), {"g1": "result", "g2": "result"})

    def test_sharedAcrossConnections(self) -> None:
        """The tenant's bucket holds over all its connections: a second one does
        not get a fresh burst."""
        first, second = self.login(), self.login()
        s1, s2 = self.session(first, 1), self.session(second, 2)
        self.commands(first, s1, "a1", "a2")
        self.commands(second, s2, "b1")
        self.assertEqual(self.answers(second), {"b1": "rate-limited"})
        self.assertEqual(self.answers(first), {"a1": "result", "a2": "result"})

    def test_otherRefusalsFree(self) -> None:
        """A command refused for another reason spends no token."""
        platform = self.login()
        session = self.session(platform, 1)
        platform.send(type="command", id="bad", session="nope", apdus=[echo(b"x")])
        self.commands(platform, session, "c1", "c1")
        self.commands(platform, session, "c2")
        got = platform.take()
        self.assertEqual(
            [m["code"] for m in got if m["type"] == "error"], ["unknown-session", "duplicate-id"]
        )
        self.assertEqual(self.answers(platform), {"c1": "result", "c2": "result"})
