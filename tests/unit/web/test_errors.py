"""Tests for the HTTP API's refusals: every error code, its HTTP status and its reason."""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred, fail

from bipgw.core import BusyPolicy, TenantGrant
from bipgw.web import ERROR_STATUSES, STATUS_OF
from tests.unit.platform import GET_DATA, OTHER_AID, OTHER_TOKEN, POLICY, echo
from tests.unit.web import WebTestCase


class MalformedTests(WebTestCase):
    """400, 413, 415: bodies the API cannot use, with the field named."""

    def test_notJson(self) -> None:
        """A body that is not JSON is refused before anything else happens."""
        answer = self.call("POST", "/v1/sessions", raw=b"{not json")
        self.assertError(answer, 400, "invalid-json")
        self.assertEqual(self.fleet.pushes, [])

    def test_notAnObject(self) -> None:
        """The body must be a JSON object."""
        self.assertError(self.call("POST", "/v1/sessions", [1, 2]), 400, "invalid-json")

    def test_unknownField(self) -> None:
        """A misspelt field is refused and named."""
        answer = self.call("POST", "/v1/sessions", {"iccid": self.iccid(1), "servce": "demo"})
        self.assertError(answer, 400, "invalid-message")
        self.assertIn("'servce'", answer.body["message"])

    def test_badField(self) -> None:
        """A field with a wrong value is named without the channel's message prefix."""
        answer = self.call("POST", "/v1/sessions", {"iccid": "12", "service": "demo"})
        self.assertError(answer, 400, "invalid-message")
        self.assertIn("field 'iccid'", answer.body["message"])

    def test_bothTargets(self) -> None:
        """Exactly one of iccid and msisdn."""
        body = {"iccid": self.iccid(1), "msisdn": "4915100000001", "service": "demo"}
        self.assertError(self.call("POST", "/v1/sessions", body), 400, "invalid-message")

    def test_badApdu(self) -> None:
        """A C-APDU that is not hex is named by its index; nothing reaches the card."""
        session = self.ready(1)
        answer = self.call("POST", f"/v1/sessions/{session}/commands", {"apdus": ["zz"]})
        self.assertError(answer, 400, "invalid-message")
        self.assertIn("apdus[0]", answer.body["message"])
        self.assertEqual(self.fleet.card(1).scripts, [])

    def test_tooLarge(self) -> None:
        """A body over the limit is answered 413."""
        body = {"iccid": self.iccid(1), "service": "demo", "pad": "x" * 2000}
        self.assertError(self.call("POST", "/v1/sessions", body), 413, "body-too-large")

    def test_wrongMediaType(self) -> None:
        """A body that is not declared JSON is answered 415."""
        answer = self.call(
            "POST", "/v1/sessions", raw=b"{}", headers={"Content-Type": "text/plain"}
        )
        self.assertError(answer, 415, "unsupported-media-type")


class AuthTests(WebTestCase):
    """401 and 503: who is calling."""

    def test_noToken(self) -> None:
        """No Authorization header: 401 with a Bearer challenge."""
        answer = self.call("GET", "/v1/sessions/s1", token=None)
        self.assertError(answer, 401, "auth-failed")
        self.assertEqual(answer.headers["www-authenticate"], 'Bearer realm="bipgw"')

    def test_unknownToken(self) -> None:
        """An unknown token: 401, and nothing is opened."""
        answer = self.call(
            "POST",
            "/v1/sessions",
            {"iccid": self.iccid(1), "service": "demo"},
            token="tok-nobody-000000",
        )
        self.assertError(answer, 401, "auth-failed")
        self.assertEqual(self.fleet.pushes, [])

    def test_otherScheme(self) -> None:
        """Basic authentication is not a bearer token."""
        answer = self.call(
            "GET", "/v1/sessions/s1", token=None, headers={"Authorization": "Basic YTpi"}
        )
        self.assertError(answer, 401, "auth-failed")

    def test_removedTenant(self) -> None:
        """A tenant removed from the directory is refused once its grant is older
        than C{grant_cache_seconds} (tests.unit.web.test_grants has the rest)."""
        session = self.open(1)
        self.tenants.remove("acme")
        self.clock.advance(self.settings.grant_cache_seconds)
        self.assertError(self.call("GET", f"/v1/sessions/{session}"), 401, "auth-failed")
        self.tenants.add(TenantGrant("acme"), tokens=["tok-acme-0123456789"])

    def test_directoryDown(self) -> None:
        """A failing tenant directory: 503, the failure is logged."""

        def broken(token: str) -> Deferred[TenantGrant | None]:
            return fail(RuntimeError("database down"))

        self.patch(self.tenants, "by_token", broken)
        self.assertError(self.call("GET", "/v1/sessions/s1"), 503, "unavailable")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_openApiNeedsNoToken(self) -> None:
        """The OpenAPI document is public."""
        answer = self.call("GET", "/v1/openapi.json", token=None)
        self.assertEqual((answer.status, answer.body["openapi"]), (200, "3.1.0"))


class ScopeTests(WebTestCase):
    """403 and 404: a tenant reaches only what its services allow, and is told why."""

    def test_serviceNotAllowed(self) -> None:
        """A service the tenant does not have: 403 naming the tenant and the service."""
        answer = self.call("POST", "/v1/sessions", {"iccid": self.iccid(1), "service": "billing"})
        self.assertError(answer, 403, "service-not-allowed")
        self.assertIn("tenant acme has no service 'billing'", answer.body["message"])

    def test_applicationNotAllowed(self) -> None:
        """An AID the service does not allow: 403 naming it."""
        body = {"iccid": self.iccid(1), "service": "locked", "application": OTHER_AID.hex()}
        answer = self.call("POST", "/v1/sessions", body)
        self.assertError(answer, 403, "application-not-allowed")
        self.assertIn(f"AID {OTHER_AID.hex().upper()} is not allowed", answer.body["message"])

    def test_selectOutsideTheSession(self) -> None:
        """A command SELECTing another AID than the session's: 403, the card never sees it."""
        session = self.ready(1, service="locked", application="A0000000871002")
        select = "00A40400" + f"{len(OTHER_AID):02X}" + OTHER_AID.hex()
        answer = self.call("POST", f"/v1/sessions/{session}/commands", {"apdus": [select]})
        self.assertError(answer, 403, "application-not-allowed")
        self.assertIn("C-APDU 0 SELECTs AID", answer.body["message"])
        self.assertEqual(self.fleet.card(1).scripts, [])

    def test_unknownSession(self) -> None:
        """A session id nobody opened: 404."""
        for method, path in (("GET", "/v1/sessions/s9"), ("DELETE", "/v1/sessions/s9")):
            self.assertError(self.call(method, path), 404, "unknown-session")
        answer = self.call("POST", "/v1/sessions/s9/commands", {"apdus": [GET_DATA]})
        self.assertError(answer, 404, "unknown-session")

    def test_otherTenantsSession(self) -> None:
        """Another tenant's session is unknown to this one (not even its existence leaks)."""
        session = self.ready(1)
        for method, path in (
            ("GET", f"/v1/sessions/{session}"),
            ("DELETE", f"/v1/sessions/{session}"),
        ):
            self.assertError(self.call(method, path, token=OTHER_TOKEN), 404, "unknown-session")
        self.assertEqual(self.call("GET", f"/v1/sessions/{session}").body["state"], "connected")

    def test_unknownCard(self) -> None:
        """A card the directory does not know: 404 naming the reason, with the session id."""
        answer = self.call(
            "POST", "/v1/sessions", {"iccid": "8988211000000099999", "service": "demo"}
        )
        self.assertError(answer, 404, "unknown-card")
        self.assertEqual(answer.body["session"], "s1")

    def test_unknownPath(self) -> None:
        """An unknown path: 404 not-found."""
        self.assertError(self.call("GET", "/v2/things"), 404, "not-found")

    def test_wrongMethod(self) -> None:
        """A path that does not take the method: 405 with Allow."""
        answer = self.call("PUT", "/v1/sessions/s1")
        self.assertError(answer, 405, "method-not-allowed")
        self.assertEqual(answer.headers["allow"], "GET, DELETE")

    def test_headRefused(self) -> None:
        """HEAD is not served, not even where GET is: 405 naming the methods the path takes."""
        for path, allow in (("/v1/openapi.json", "GET"), ("/v1/events", "GET")):
            answer = self.call("HEAD", path)
            self.assertEqual((answer.status, answer.headers["allow"]), (405, allow), path)
        answer = self.call("HEAD", "/v1/sessions/s1")
        self.assertEqual((answer.status, answer.headers["allow"]), (405, "GET, DELETE"))

    def test_badSessionId(self) -> None:
        """A session id outside the engine's alphabet, or too long, is an unknown path."""
        for session in ("a.b", "x" * 65):
            self.assertError(self.call("GET", f"/v1/sessions/{session}"), 404, "not-found")

    def test_trailingSlash(self) -> None:
        """A path with a trailing or doubled slash is unknown, not redirected."""
        for path in ("/v1/sessions/", "/v1//sessions", "/v1/openapi.json/"):
            self.assertError(self.call("GET", path), 404, "not-found")


class BusyTests(WebTestCase):
    """409: the card is busy, or the session has ended."""

    policy = attrs.evolve(POLICY, busy_policy=BusyPolicy.REFUSE)

    def test_busyCard(self) -> None:
        """A second session for a card in use is refused with 409 card-busy."""
        self.open(1)
        answer = self.call("POST", "/v1/sessions", {"iccid": self.iccid(1), "service": "demo"})
        self.assertError(answer, 409, "card-busy")
        self.assertEqual(self.hub.usage.sessions("acme"), 1)

    def test_commandAfterClose(self) -> None:
        """A command for a closed session: 409 session-ended, saying how it ended."""
        session = self.ready(1)
        self.call("DELETE", f"/v1/sessions/{session}")
        answer = self.call("POST", f"/v1/sessions/{session}/commands", {"apdus": [GET_DATA]})
        self.assertError(answer, 409, "session-ended")
        self.assertIn("closed", answer.body["message"])


class LimitTests(WebTestCase):
    """429: the tenant's and the service's limits, with the limit named."""

    def test_serviceLimit(self) -> None:
        """The service allows two sessions at once; the third is refused until one ends."""
        first = self.open(1, service="locked")
        self.open(2, service="locked")
        answer = self.call("POST", "/v1/sessions", {"iccid": self.iccid(3), "service": "locked"})
        self.assertError(answer, 429, "limit-reached")
        self.assertIn("service locked already has 2 sessions open", answer.body["message"])
        self.call("DELETE", f"/v1/sessions/{first}")
        self.open(3, service="locked")

    def test_tenantLimit(self) -> None:
        """The tenant's own limit (5) counts every service."""
        for n in range(1, 6):
            self.open(n)
        answer = self.call("POST", "/v1/sessions", {"iccid": self.iccid(6), "service": "demo"})
        self.assertError(answer, 429, "limit-reached")
        self.assertIn("tenant acme already has 5 sessions open", answer.body["message"])


class CardFailureTests(WebTestCase):
    """502 and 504: the card failed or did not answer in time."""

    def test_scriptStatus(self) -> None:
        """A card reporting a script status other than ok: 502 script-status."""
        session = self.ready(1)
        self.fleet.card(1).status = "security-error"
        d = self.send("POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x01")]})
        self.advance(self.fleet.answer_delay)
        answer = self.answer(d)
        self.assertError(answer, 502, "script-status")
        self.assertIn("security-error", answer.body["message"])

    def test_cardDropped(self) -> None:
        """The card's connection breaks during a command: 502 card-dropped."""
        session = self.ready(1)
        self.fleet.card(1).hang = True
        d = self.send("POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x01")]})
        self.fleet.card(1).drop()
        self.assertError(self.answer(d), 502, "card-dropped")
        self.assertEqual(self.call("GET", f"/v1/sessions/{session}").body["state"], "failed")

    def test_notConnectedInTime(self) -> None:
        """A command waiting for a card that does not connect: 504 after ready_wait."""
        self.fleet.card(1).reachable = False
        session = self.open(1)
        d = self.send("POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x01")]})
        self.advance(self.settings.ready_wait - 1)
        self.assertNoResult(d)
        self.advance(1)
        answer = self.answer(d)
        self.assertError(answer, 504, "not-connected")
        self.assertIn("30 s", answer.body["message"])

    def test_neverConnects(self) -> None:
        """A command waiting for a session that fails first gets the session's reason."""
        self.fleet.card(1).reachable = False
        session = self.open(1, timeouts={"ready": 5})
        d = self.send("POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x01")]})
        self.advance(5)
        self.assertError(self.answer(d), 504, "ready-timeout")

    def test_commandTimeout(self) -> None:
        """The platform's timeouts.command passes: 504 command-timeout, the session is closed."""
        session = self.ready(1, timeouts={"command": 3})
        self.fleet.card(1).hang = True
        d = self.send("POST", f"/v1/sessions/{session}/commands", {"apdus": [echo(b"\x01")]})
        self.advance(3)
        self.assertError(self.answer(d), 504, "command-timeout")
        self.advance(POLICY.command_timeout)
        status = self.call("GET", f"/v1/sessions/{session}").body
        self.assertTrue(status["state"] in ("closed", "failed"), status)


class VocabularyTests(WebTestCase):
    """The error table and the documented statuses agree."""

    def test_everyStatusDocumented(self) -> None:
        """Every HTTP status the API can answer with is described in the OpenAPI document."""
        self.assertLessEqual({*STATUS_OF.values(), 502}, set(ERROR_STATUSES))
