"""Tests for the HTTP API's part in a cluster's take-over (docs/cluster.md).

A lost node's queued session re-opened here (L{bipgw.web.HttpApi.adopt}) is
the tenant's on this API: it runs commands and closes through
C{/v1/sessions/{id}}, its events reach the tenant's stream, and another
tenant does not see it.  What became of a session of a lost node that this
node does not run reaches the tenant's streams (L{EventStreams.elsewhere}).
"""

from __future__ import annotations

from twisted.internet.defer import fail, succeed

from bipgw.core import FailureReason, Handover, SessionError
from tests.unit.platform import OTHER_TOKEN, echo
from tests.unit.web import WebTestCase, test_events
from tests.unit.web.test_events import parse_sse

SID = "0123456789abcdef0123456789abcdef"


class AdoptTests(WebTestCase):
    """L{HttpApi.adopt} (module docstring)."""

    def handover(self, **changes: object) -> Handover:
        values: dict[str, object] = {
            "session_id": SID,
            "service": "demo",
            "tenant_id": "acme",
            "iccid": self.iccid(2),
            "node": "gw-c",
        }
        values.update(changes)
        return Handover(**values)  # type: ignore[arg-type]

    def grant(self, tenant: str = "acme") -> object:
        return self.successResultOf(self.tenants.by_id(tenant))

    def test_drivenThroughTheApi(self) -> None:
        """The adopted session is pushed, reaches its card, runs a command
        and closes through this API, under its own id."""
        session = self.api.adopt(self.handover(), self.grant(), None)  # type: ignore[arg-type]
        self.assertEqual(str(session.id), SID)
        self.advance(self.fleet.connect_delay)
        status = self.call("GET", f"/v1/sessions/{SID}")
        self.assertEqual((status.status, status.body["state"]), (200, "connected"))
        sent = self.send("POST", f"/v1/sessions/{SID}/commands", {"apdus": [echo(b"\x42")]})
        self.advance(self.fleet.answer_delay)
        result = self.answer(sent)
        self.assertEqual(result.status, 200, result.body)
        closed = self.send("DELETE", f"/v1/sessions/{SID}")
        self.advance(1)
        self.assertEqual(self.answer(closed).body["state"], "closed")

    def test_otherTenantDoesNotSeeIt(self) -> None:
        """Another tenant is told the session is unknown."""
        self.api.adopt(self.handover(), self.grant(), None)  # type: ignore[arg-type]
        self.advance(self.fleet.connect_delay)
        other = self.call("GET", f"/v1/sessions/{SID}", token=OTHER_TOKEN)
        self.assertError(other, 404, "unknown-session")
        self.call("DELETE", f"/v1/sessions/{SID}")
        self.advance(1)

    def test_refused(self) -> None:
        """A handover the tenant's grant no longer allows is refused: nothing opened."""
        with self.assertRaises(SessionError) as raised:
            self.api.adopt(self.handover(service="gone"), self.grant(), None)  # type: ignore[arg-type]
        self.assertIs(raised.exception.reason, FailureReason.SERVICE_NOT_ALLOWED)
        self.assertEqual(self.engine.sessions(), [])


class LocateTests(WebTestCase):
    """In a cluster the status names the node running the session."""

    def test_node(self) -> None:
        """The registry's node is added; a registry that fails, or knows no
        node, leaves it out; an error answer is untouched."""
        session = self.ready(1)
        self.api.locate = lambda sid: succeed("gw-b" if sid == session else None)
        self.assertEqual(self.call("GET", f"/v1/sessions/{session}").body["node"], "gw-b")
        self.api.locate = lambda sid: fail(ConnectionError("redis down"))
        self.assertNotIn("node", self.call("GET", f"/v1/sessions/{session}").body)
        self.api.locate = lambda sid: succeed(None)
        self.assertNotIn("node", self.call("GET", f"/v1/sessions/{session}").body)
        self.api.locate = lambda sid: succeed("gw-b")
        self.assertError(self.call("GET", f"/v1/sessions/{'f' * 32}"), 404, "unknown-session")
        self.call("DELETE", f"/v1/sessions/{session}")
        self.advance(1)


class ElsewhereTests(WebTestCase):
    """L{EventStreams.elsewhere}: only the tenant's streams, of all or that session."""

    stream = test_events.EventStreamTests.stream

    def test_elsewhere(self) -> None:
        """A session of a lost node reaches the tenant's streams, not another tenant's."""
        mine, theirs = self.stream(), self.stream(token=OTHER_TOKEN)
        sent = self.api.streams.elsewhere(
            "acme", SID, {"state": "failed", "reason": "node-lost", "cluster": "node-lost"}
        )
        self.assertEqual(sent, 1)
        self.stub.flush()
        (frame,) = parse_sse(b"".join(mine))
        self.assertEqual(
            frame["data"],
            {"session": SID, "state": "failed", "reason": "node-lost", "cluster": "node-lost"},
        )
        self.assertEqual(parse_sse(b"".join(theirs)), [])
        narrowed = self.stream(f"?session={self.open(1)}")
        self.advance(self.fleet.connect_delay)
        before = len(parse_sse(b"".join(narrowed)))
        self.assertEqual(self.api.streams.elsewhere("acme", SID, {"state": "failed"}), 1)
        self.stub.flush()
        self.assertEqual(len(parse_sse(b"".join(narrowed))), before)
        self.call("DELETE", f"/v1/sessions/{self.engine.sessions()[0].session_id}")
        self.advance(1)
