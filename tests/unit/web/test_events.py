"""Tests for GET /v1/events: the engine's events as a Server-Sent Events stream."""

from __future__ import annotations

import json
from typing import Any

from treq import collect
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bipgw.web import api_site
from tests.unit.platform import OTHER_TOKEN, TOKEN
from tests.unit.web import BASE, WebTestCase


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    """The C{event: session} frames of an SSE byte stream, as dicts (id, event, data)."""
    frames = []
    for block in data.decode().split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        if fields.get("event") == "session":
            frames.append(fields)
    return frames


class EventStreamTests(WebTestCase):
    """The stream delivers its tenant's session events, and only those."""

    def stream(self, query: str = "", token: str = TOKEN) -> list[bytes]:
        """Open a stream; the list its bytes arrive in."""
        d = self.stub.get(
            BASE + "/v1/events" + query,
            headers={"Authorization": f"Bearer {token}"},
            unbuffered=True,
        )
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/event-stream; charset=utf-8"]
        )
        chunks: list[bytes] = []
        self.done = collect(response, chunks.append)
        self.stub.flush()
        return chunks

    def test_sessionEvents(self) -> None:
        """Every transition of a session, from its first, arrives in order as JSON data."""
        chunks = self.stream()
        session = self.ready(1)
        frames = parse_sse(b"".join(chunks))
        states = [f["data"]["state"] for f in frames if f["data"]["transition"]]
        self.assertEqual(states[0], "requested")
        self.assertEqual(states[-2:], ["awaiting-card", "connected"])
        self.assertEqual({f["data"]["session"] for f in frames}, {session})
        self.assertEqual(
            [f["id"] for f in frames], [f"{session}:{f['data']['seq']}" for f in frames]
        )
        self.call("DELETE", f"/v1/sessions/{session}")
        last = parse_sse(b"".join(chunks))[-1]["data"]
        self.assertEqual((last["state"], last["previous"]), ("closed", "closing"))

    def test_failureReason(self) -> None:
        """A failed session's event carries the reason."""
        chunks = self.stream()
        self.fleet.card(1).reachable = False
        self.open(1, timeouts={"ready": 3})
        self.advance(3)
        last = parse_sse(b"".join(chunks))[-1]["data"]
        self.assertEqual((last["state"], last["reason"]), ("failed", "cancelled"))

    def test_otherTenants(self) -> None:
        """A tenant's stream never shows another tenant's sessions."""
        theirs = self.stream(token=OTHER_TOKEN)
        self.ready(1)
        self.assertEqual(parse_sse(b"".join(theirs)), [])

    def test_oneSession(self) -> None:
        """C{?session=ID} narrows the stream to that session."""
        first = self.open(1)
        chunks = self.stream(f"?session={first}")
        second = self.open(2)
        self.advance(self.fleet.connect_delay)
        sessions = {f["data"]["session"] for f in parse_sse(b"".join(chunks))}
        self.assertEqual(sessions, {first})
        self.assertNotEqual(first, second)

    def test_unknownSession(self) -> None:
        """A stream for a session the tenant does not own: 404."""
        session = self.open(1)
        answer = self.call("GET", f"/v1/events?session={session}", token=OTHER_TOKEN)
        self.assertError(answer, 404, "unknown-session")

    def test_keepalive(self) -> None:
        """An idle stream gets a comment line every keepalive seconds."""
        chunks = self.stream()
        self.advance(self.settings.keepalive * 2)
        self.assertEqual(b"".join(chunks).count(b": keepalive\n\n"), 2)

    def test_stopEndsStreams(self) -> None:
        """Stopping the API ends the streams and the engine subscription."""
        self.stream()
        self.assertEqual(self.api.streams.count, 1)
        self.successResultOf(self.api.stop())
        self.stub.flush()
        self.successResultOf(self.done)
        self.assertEqual(self.api.streams.count, 0)


class DisconnectTests(WebTestCase):
    """A client that goes away leaves nothing behind."""

    def test_clientGone(self) -> None:
        """A stream whose client disconnects is dropped, its timer cancelled."""
        protocol = api_site(self.api, self.clock).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET /v1/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\n\r\n"
        )
        self.assertIn(b"text/event-stream", transport.value())
        self.assertEqual(self.api.streams.count, 1)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.api.streams.count, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
