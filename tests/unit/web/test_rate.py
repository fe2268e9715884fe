"""Tests for the per-service command rate through the HTTP API: C{429 rate-limited},
and one bucket shared with the tenant's platform-channel connections."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from bipgw.codec.platform import Message
from bipgw.core import ALL_INSTRUCTIONS, ServiceGrant, TenantGrant
from bipgw.platform import ChannelSettings, PlatformChannel
from bipgw.web import STATUS_OF, openapi_document
from tests.unit.platform import AID, OTHER_TOKEN, TAR, TOKEN, echo
from tests.unit.web import Answer, WebTestCase


class RateTests(WebTestCase):
    """C{POST /v1/sessions/{id}/commands} over the service's rate."""

    def setUp(self) -> None:
        super().setUp()
        self.tenants.add(
            TenantGrant(
                "acme",
                services=[
                    ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS),
                    ServiceGrant("locked", allowed_aids={AID}, allowed_tars={TAR}, max_sessions=2),
                    ServiceGrant("metered", rate=2, isd_commands=ALL_INSTRUCTIONS),
                ],
                max_sessions=5,
                max_commands=8,
            ),
            tokens=[TOKEN],
        )
        self.tenants.add(
            TenantGrant(
                "globex",
                services=[
                    ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS),
                    ServiceGrant("metered", rate=2, isd_commands=ALL_INSTRUCTIONS),
                ],
            ),
            tokens=[OTHER_TOKEN],
        )

    def start(self, session: str, data: bytes, token: str = TOKEN) -> Deferred[Any]:
        """Start a command on C{session} that the card echoes C{data} to."""
        body = {"apdus": [echo(data)]}
        return self.send("POST", f"/v1/sessions/{session}/commands", body, token=token)

    def finish(self, *requests: Deferred[Any], seconds: float = 3) -> list[Answer]:
        """Let the cards answer; the answers, in order."""
        self.advance(seconds)
        return [self.answer(d) for d in requests]

    def test_statusMapped(self) -> None:
        """rate-limited is a 429, described in the OpenAPI document."""
        self.assertEqual(STATUS_OF["rate-limited"], 429)
        doc = openapi_document()
        op = doc["paths"]["/v1/sessions/{id}/commands"]["post"]
        self.assertIn("rate-limited", op["responses"]["429"]["description"])

    def test_underRatePasses(self) -> None:
        """Commands at the service's rate all get the card's answer."""
        session = self.ready(1, service="metered")
        for i in range(6):
            [answer] = self.finish(self.start(session, bytes([i])), seconds=0.5)
            self.assertEqual(answer.status, 200, answer.body)
            self.assertEqual(answer.body["rapdus"], [f"{i:02X}9000"])
        self.assertEqual(len(self.fleet.card(1).scripts), 6)

    def test_burstOverRefused(self) -> None:
        """The command over the burst is answered 429 rate-limited at once, naming the
        service and its rate, and never reaches the card."""
        session = self.ready(1, service="metered")
        first, second = self.start(session, b"\x01"), self.start(session, b"\x02")
        third = self.answer(self.start(session, b"\x03"))
        self.assertError(third, 429, "rate-limited")
        self.assertEqual(third.body["session"], session)
        self.assertIn("service metered", third.body["message"])
        self.assertIn("2 commands per second", third.body["message"])
        self.assertEqual([a.status for a in self.finish(first, second)], [200, 200])
        self.assertEqual(len(self.fleet.card(1).scripts), 2)

    def test_refill(self) -> None:
        """Once time has refilled the bucket, a command passes again."""
        session = self.ready(1, service="metered")
        held = [self.start(session, b"\x01"), self.start(session, b"\x02")]
        self.advance(0.25)
        self.assertError(self.answer(self.start(session, b"\x03")), 429, "rate-limited")
        self.advance(0.25)
        passed = self.start(session, b"\x04")
        self.assertError(self.answer(self.start(session, b"\x05")), 429, "rate-limited")
        answers = self.finish(*held, passed)
        self.assertEqual([a.body["rapdus"] for a in answers], [["019000"], ["029000"], ["049000"]])

    def test_otherServiceUnaffected(self) -> None:
        """The tenant's service without a rate is not held back."""
        metered = self.ready(1, service="metered")
        free = self.ready(2)
        held = [self.start(metered, b"\x01"), self.start(metered, b"\x02")]
        self.assertError(self.answer(self.start(metered, b"\x03")), 429, "rate-limited")
        answers = self.finish(*held, *(self.start(free, bytes([i])) for i in range(5)))
        self.assertEqual([a.status for a in answers], [200] * 7)

    def test_otherTenantUnaffected(self) -> None:
        """Another tenant's bucket for the same service is its own."""
        mine = self.ready(1, service="metered")
        held = [self.start(mine, b"\x01"), self.start(mine, b"\x02")]
        self.assertError(self.answer(self.start(mine, b"\x03")), 429, "rate-limited")
        answer = self.call(
            "POST",
            "/v1/sessions",
            {"iccid": self.iccid(2), "service": "metered"},
            token=OTHER_TOKEN,
        )
        theirs = answer.body["session"]
        self.advance(self.fleet.connect_delay)
        answers = self.finish(
            *held,
            self.start(theirs, b"\x04", OTHER_TOKEN),
            self.start(theirs, b"\x05", OTHER_TOKEN),
        )
        self.assertEqual([a.status for a in answers], [200] * 4)

    def test_sharedWithChannel(self) -> None:
        """The HTTP API and a platform connection over one tenancy spend one bucket."""
        sent: list[Message] = []
        channel = PlatformChannel(self.hub, ChannelSettings(), sent.append, lambda why: None)
        channel.connected()
        channel.received({"type": "hello", "id": "h", "token": TOKEN})
        channel.received({"type": "open", "id": "o", "iccid": self.iccid(2), "service": "metered"})
        self.advance(self.fleet.connect_delay)
        self.assertEqual([m.to_json()["type"] for m in sent], ["auth_ok", "accepted", "ready"])
        [over_channel] = channel.sessions
        session = self.ready(1, service="metered")
        held = [self.start(session, b"\x01"), self.start(session, b"\x02")]
        channel.received(
            {"type": "command", "id": "c", "session": over_channel, "apdus": [echo(b"\x03")]}
        )
        refused = sent[-1].to_json()
        self.assertEqual((refused["type"], refused["code"]), ("error", "rate-limited"))
        self.assertEqual([a.status for a in self.finish(*held)], [200, 200])
        channel.lost("test over")
