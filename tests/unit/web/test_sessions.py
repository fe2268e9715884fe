"""Tests for the HTTP API's success paths: open, status, commands, close."""

from __future__ import annotations

from bipgw.codec.ram import CommandScript
from tests.unit.platform import GET_DATA, echo, msisdn
from tests.unit.web import WebTestCase


class OpenTests(WebTestCase):
    """POST /v1/sessions."""

    def test_openByIccid(self) -> None:
        """Opening answers 201 with the session id, its state and its location, and pushes."""
        answer = self.call("POST", "/v1/sessions", {"iccid": self.iccid(1), "service": "demo"})
        self.assertEqual(answer.status, 201)
        self.assertEqual(answer.body, {"session": "s1", "state": "awaiting-card"})
        self.assertEqual(answer.headers["location"], "/v1/sessions/s1")
        self.assertEqual([o.iccid for o in self.fleet.pushes], [self.iccid(1)])
        self.assertEqual(self.hub.usage.sessions("acme", "demo"), 1)

    def test_openByMsisdn(self) -> None:
        """A session may name its card by MSISDN; the status then shows the ICCID."""
        answer = self.call("POST", "/v1/sessions", {"msisdn": msisdn(3), "service": "demo"})
        self.assertEqual(answer.status, 201)
        self.advance(self.fleet.connect_delay)
        status = self.call("GET", f"/v1/sessions/{answer.body['session']}").body
        self.assertEqual((status["iccid"], status["state"]), (self.iccid(3), "connected"))

    def test_applicationAllowed(self) -> None:
        """An application the service allows is accepted."""
        self.open(1, service="locked", application=TAR_HEX)
        self.open(2, service="locked", application=AID_HEX)


TAR_HEX = "B00010"
AID_HEX = "A0000000871002"


class StatusTests(WebTestCase):
    """GET /v1/sessions/{id}."""

    def test_statusFollowsTheSession(self) -> None:
        """The status shows the engine's state, the card and the counts as the session goes."""
        session = self.open(2)
        before = self.call("GET", f"/v1/sessions/{session}")
        self.assertEqual(before.status, 200)
        self.assertEqual(before.body["state"], "awaiting-card")
        self.assertEqual(before.body["service"], "demo")
        self.advance(self.fleet.connect_delay)
        after = self.call("GET", f"/v1/sessions/{session}").body
        self.assertEqual(after["state"], "connected")
        self.assertEqual((after["iccid"], after["msisdn"]), (self.iccid(2), msisdn(2)))
        self.assertEqual((after["push_attempts"], after["scripts"]), (1, 0))
        self.assertNotIn("reason", after)


class CommandTests(WebTestCase):
    """POST /v1/sessions/{id}/commands."""

    def test_apdus(self) -> None:
        """C-APDUs run on the card; the answer has R-APDUs, status words, meanings and timing."""
        session = self.ready(1)
        d = self.send(
            "POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x01\x02"), GET_DATA]}
        )
        self.assertNoResult(d)
        self.advance(self.fleet.answer_delay)
        answer = self.answer(d)
        self.assertEqual(answer.status, 200)
        body = answer.body
        self.assertEqual(body["rapdus"], ["01029000", "6A88"])
        self.assertEqual(body["sw"], ["9000", "6A88"])
        self.assertEqual(body["executed"], 2)
        self.assertEqual(body["elapsed_ms"], 500)
        self.assertTrue(body["complete"])
        self.assertEqual(len(body["meanings"]), 2)
        self.assertIn("referenced data", body["meanings"][1].lower())
        self.assertEqual(body["session"], session)
        self.assertEqual(self.hub.usage.commands("acme"), 0)

    def test_script(self) -> None:
        """An expanded command script is accepted as is; its form decides the length coding."""
        session = self.ready(1)
        script = CommandScript((bytes.fromhex(echo(b"\x07")),), definite=True).encode()
        d = self.send("POST", f"/v1/sessions/{session}/commands", {"script": script.hex()})
        self.advance(self.fleet.answer_delay)
        self.assertEqual(self.answer(d).body["rapdus"], ["079000"])
        self.assertEqual(self.fleet.card(1).scripts, [script])

    def test_definite(self) -> None:
        """C{definite: true} sends the card an AA (definite length) script."""
        session = self.ready(1)
        body = {"apdus": [echo(b"\x07")], "definite": True}
        d = self.send("POST", f"/v1/sessions/{session}/commands", body)
        self.advance(self.fleet.answer_delay)
        self.assertEqual(self.answer(d).status, 200)
        self.assertEqual(self.fleet.card(1).scripts[0][0], 0xAA)

    def test_waitsUntilReady(self) -> None:
        """A command for a session whose card is still connecting waits, then runs."""
        session = self.open(4)
        d = self.send("POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x09")]})
        self.advance(self.fleet.connect_delay)
        self.assertNoResult(d)
        self.assertEqual(len(self.fleet.card(4).scripts), 1)
        self.advance(self.fleet.answer_delay)
        self.assertEqual(self.answer(d).body["rapdus"], ["099000"])

    def test_cardErrorIsAnAnswer(self) -> None:
        """An error status word from the card is its answer (200), not an HTTP error."""
        session = self.ready(1)
        d = self.send(
            "POST", f"/v1/sessions/{session}/commands", {"apdus": [GET_DATA, echo(b"\x01")]}
        )
        self.advance(self.fleet.answer_delay)
        body = self.answer(d).body
        self.assertEqual((body["sw"], body["complete"]), (["6A88"], False))


class CloseTests(WebTestCase):
    """DELETE /v1/sessions/{id}."""

    def test_close(self) -> None:
        """Closing answers the final status; the card got its 204 and the session is released."""
        session = self.ready(1)
        answer = self.call("DELETE", f"/v1/sessions/{session}")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.body["state"], "closed")
        self.assertEqual(self.fleet.card(1).closes, 1)
        self.assertEqual(self.hub.usage.sessions("acme"), 0)
        self.assertEqual(self.call("GET", f"/v1/sessions/{session}").body["state"], "closed")

    def test_closeAgain(self) -> None:
        """Closing an ended session answers its final status again."""
        session = self.ready(1)
        self.call("DELETE", f"/v1/sessions/{session}")
        again = self.call("DELETE", f"/v1/sessions/{session}")
        self.assertEqual((again.status, again.body["state"]), (200, "closed"))
        self.assertEqual(self.fleet.card(1).closes, 1)

    def test_closeBeforeReady(self) -> None:
        """Closing a session whose card has not connected cancels it."""
        session = self.open(1)
        answer = self.call("DELETE", f"/v1/sessions/{session}")
        self.assertEqual(answer.status, 200)
        self.assertEqual((answer.body["state"], answer.body["reason"]), ("failed", "cancelled"))
        self.advance(self.fleet.connect_delay)
        self.assertEqual(self.fleet.card(1).scripts, [])

    def test_closeAfterCommand(self) -> None:
        """A close sent while a command runs waits for it, and both are answered."""
        session = self.ready(1)
        command = self.send("POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x01")]})
        close = self.send("DELETE", f"/v1/sessions/{session}")
        self.assertNoResult(close)
        self.advance(self.fleet.answer_delay)
        self.assertEqual(self.answer(command).status, 200)
        self.assertEqual(self.answer(close).body["state"], "closed")
