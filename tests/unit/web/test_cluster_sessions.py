"""Tests for the HTTP API driving a session another node holds (docs/cluster.md).

Node A is the test case's own API; node B is a second HTTP API on an engine
of its own, and the two are joined in memory by the core tests'
L{LoopbackSessions} (the cluster's transport, on Redis, is tested in
C{tests.integration.test_cluster_forwarding}).  Deterministic: one clock.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import attrs
from treq import collect
from treq.testing import StubTreq

from bipgw.core import (
    MemorySessionRecorder,
    OwnedSessions,
    SessionEngine,
    SessionId,
    Tenancy,
)
from bipgw.web import HttpApi, api_resource
from tests.unit.core.test_remote import LoopbackSessions
from tests.unit.platform import OTHER_TOKEN, TOKEN, Fleet, echo
from tests.unit.web import BASE, Answer, WebTestCase
from tests.unit.web.test_events import parse_sse

CAPDU = echo(b"\x42")


@attrs.define
class _Node:
    engine: SessionEngine
    tenancy: Tenancy
    owned: OwnedSessions


class ClusterSessionsTests(WebTestCase):
    """Node B's HTTP API answers for node A's sessions."""

    def setUp(self) -> None:
        super().setUp()
        fleet = Fleet(self.clock, 3)
        ids = (SessionId(f"b{n}") for n in itertools.count(1))
        engine = SessionEngine(
            self.clock, fleet, fleet, MemorySessionRecorder(), self.policy, new_id=lambda: next(ids)
        )
        fleet.engine = engine
        self.hub_b = Tenancy(engine, self.tenants, self.clock)
        self.api_b = HttpApi(self.hub_b, self.settings)
        self.stub_b: Any = StubTreq(api_resource(self.api_b))
        self.addCleanup(lambda: self.successResultOf(self.api_b.stop()))
        self.remote = LoopbackSessions(
            [
                _Node(self.engine, self.hub, OwnedSessions(self.hub)),  # type: ignore[list-item]
                _Node(engine, self.hub_b, OwnedSessions(self.hub_b)),  # type: ignore[list-item]
            ]
        )

    def on_b(self, method: str, path: str, body: Any = None, token: str | None = None) -> Answer:
        """A request to node B, answered once the clock has run a second."""
        stub, self.stub = self.stub, self.stub_b
        try:
            kwargs = {} if token is None else {"token": token}
            pending = self.send(method, path, body, **kwargs)
            self.advance(1)
            return self.answer(pending)
        finally:
            self.stub = stub

    def test_commandStatusClose(self) -> None:
        """B runs a command on A's session (the card's answer), shows its full
        status, closes it, then says it has ended."""
        sid = self.ready(1)
        answer = self.on_b("POST", f"/v1/sessions/{sid}/commands", {"apdus": [CAPDU]})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.body["rapdus"], ["429000"])
        answer = self.on_b("GET", f"/v1/sessions/{sid}")
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.body["state"], "connected")
        self.assertEqual(answer.body["iccid"], self.iccid(1))
        answer = self.on_b("DELETE", f"/v1/sessions/{sid}")
        self.assertEqual((answer.status, answer.body["state"]), (200, "closed"), answer.body)
        answer = self.on_b("POST", f"/v1/sessions/{sid}/commands", {"apdus": [CAPDU]})
        self.assertError(answer, 409, "session-ended")

    def test_otherTenant(self) -> None:
        """Another tenant is told there is no such session, through B as on A."""
        sid = self.ready(1)
        body = {"apdus": [CAPDU]}
        answer = self.on_b("POST", f"/v1/sessions/{sid}/commands", body, token=OTHER_TOKEN)
        self.assertError(answer, 404, "unknown-session")
        self.assertError(self.on_b("DELETE", f"/v1/sessions/{sid}", token=OTHER_TOKEN), 404, (
            "unknown-session"
        ))  # fmt: skip

    def test_waitsForTheCard(self) -> None:
        """A command through B for a session whose card is still connecting waits
        on A, as on A itself, for up to the API's C{ready_wait}."""
        sid = self.open(1)
        stub, self.stub = self.stub, self.stub_b
        try:
            pending = self.send("POST", f"/v1/sessions/{sid}/commands", {"apdus": [CAPDU]})
            self.assertNoResult(pending)
            self.advance(self.fleet.connect_delay + 1)
            answer = self.answer(pending)
        finally:
            self.stub = stub
        self.assertEqual((answer.status, answer.body["rapdus"]), (200, ["429000"]))
        self.assertEqual(self.remote.asked[-1], (sid, self.settings.ready_wait))

    def test_ownerUnreachable(self) -> None:
        """An owner that cannot be reached is answered 503 C{unavailable}."""
        sid = self.ready(1)
        self.remote.down = True
        answer = self.on_b("POST", f"/v1/sessions/{sid}/commands", {"apdus": [CAPDU]})
        self.assertError(answer, 503, "unavailable")
        self.assertIn("was lost", answer.body["message"])

    def test_unknownEverywhere(self) -> None:
        """A session no node holds is C{unknown-session}."""
        answer = self.on_b("POST", "/v1/sessions/nope/commands", {"apdus": [CAPDU]})
        self.assertError(answer, 404, "unknown-session")

    def test_notFollowed(self) -> None:
        """The HTTP API sends no notifications, so it does not follow the other
        node's session for its end (nothing to keep, nothing to check)."""
        sid = self.ready(1)
        answer = self.on_b("POST", f"/v1/sessions/{sid}/commands", {"apdus": [CAPDU]})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(self.remote.watched, {})


class MemoryEventBus:
    """L{bipgw.web.IEventFeed}s of several nodes joined in memory (Redis's part
    in a cluster): one numbered log per tenant, every node's streams read it."""

    def __init__(self) -> None:
        self.followers: dict[tuple[str, str], list[Callable[[str, dict[str, Any]], object]]] = {}
        self.published: list[tuple[str, str, dict[str, Any]]] = []
        self.logs: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def feed(self, node: str) -> Any:
        bus = self

        class Feed:
            def follow(
                self,
                tenant_id: str,
                after: str | None,
                deliver: Callable[[str, dict[str, Any]], object],
            ) -> Callable[[], None]:
                if after is not None and not re.fullmatch(r"[0-9]+-[0-9]+", after):
                    raise ValueError("not an event id")
                listeners = bus.followers.setdefault((node, tenant_id), [])
                listeners.append(deliver)
                if after is not None:
                    for event_id, event in bus.logs.get(tenant_id, []):
                        if int(event_id.split("-")[0]) > int(after.split("-")[0]):
                            deliver(event_id, event)
                return lambda: listeners.remove(deliver)

            def wants(self, tenant_id: str) -> bool:
                return any(
                    tenant == tenant_id and listeners
                    for (_, tenant), listeners in bus.followers.items()
                )

            def publish(self, tenant_id: str, event: dict[str, Any]) -> None:
                bus.published.append((node, tenant_id, event))
                log = bus.logs.setdefault(tenant_id, [])
                event_id = f"{len(log) + 1}-0"
                log.append((event_id, event))
                for (_, tenant), listeners in bus.followers.items():
                    if tenant == tenant_id:
                        for deliver in list(listeners):
                            deliver(event_id, event)

        return Feed()


class ClusterEventStreamTests(ClusterSessionsTests):
    """Node B's event streams show the events of the sessions the tenant opened
    through node A's HTTP API."""

    def setUp(self) -> None:
        super().setUp()
        self.bus = MemoryEventBus()
        for name in ("api", "api_b"):
            old: HttpApi = getattr(self, name)
            self.successResultOf(old.stop())
            hub = self.hub if name == "api" else self.hub_b
            setattr(self, name, HttpApi(hub, self.settings, events=self.bus.feed(name)))
        self.stub = StubTreq(api_resource(self.api))
        self.stub_b = StubTreq(api_resource(self.api_b))

    def stream_on_b(self, query: str = "", last: str | None = None) -> list[bytes]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if last is not None:
            headers["Last-Event-ID"] = last
        d = self.stub_b.get(BASE + "/v1/events" + query, headers=headers, unbuffered=True)
        self.stub_b.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        chunks: list[bytes] = []
        collect(response, chunks.append)
        self.stub_b.flush()
        return chunks

    def test_otherNodesSessionEvents(self) -> None:
        """A stream on B gets every event of a session opened through A, in
        order, as A's own stream would; B follows the tenant only while it
        has a stream."""
        chunks = self.stream_on_b()
        self.assertEqual(list(self.bus.followers), [("api_b", "acme")])
        sid = self.ready(1)
        self.stub_b.flush()
        frames = parse_sse(b"".join(chunks))
        states = [f["data"]["state"] for f in frames if f["data"]["transition"]]
        self.assertEqual(states[0], "requested")
        self.assertEqual(states[-2:], ["awaiting-card", "connected"])
        self.assertEqual({f["data"]["session"] for f in frames}, {sid})
        # Numbered once for the cluster (the tenant's log), in order.
        self.assertEqual([f["id"] for f in frames], [f"{n}-0" for n in range(1, len(frames) + 1)])

    def test_resumeAfterLastEventId(self) -> None:
        """A stream opened with the last id its client read gets exactly the
        events after it (none missed, none twice), then the new ones; an id
        that is not the cluster's starts from now."""
        first = self.stream_on_b()
        sid = self.ready(1)
        self.stub_b.flush()
        seen = parse_sse(b"".join(first))
        resumed = self.stream_on_b(last=seen[1]["id"])
        self.assertEqual(
            [f["id"] for f in parse_sse(b"".join(resumed))], [f["id"] for f in seen[2:]]
        )
        bogus = self.stream_on_b(last="x")
        self.call("DELETE", f"/v1/sessions/{sid}")
        self.stub_b.flush()
        after = parse_sse(b"".join(resumed))[len(seen) - 2 :]
        self.assertEqual(after[-1]["data"]["state"], "closed")
        self.assertEqual(parse_sse(b"".join(bogus)), after)

    def test_oneSessionOfAnotherNode(self) -> None:
        """C{?session=ID} follows another node's session the tenant opened; an
        unknown one is refused as on one node."""
        sid = self.ready(1)
        chunks = self.stream_on_b(f"?session={sid}")
        self.call("DELETE", f"/v1/sessions/{sid}")
        self.stub_b.flush()
        last = parse_sse(b"".join(chunks))[-1]["data"]
        self.assertEqual((last["session"], last["state"]), (sid, "closed"))
        answer = self.on_b("GET", "/v1/events?session=nope")
        self.assertError(answer, 404, "unknown-session")

    def test_nothingPublishedUnheard(self) -> None:
        """While no other node has a stream for the tenant, its sessions' events
        are not published at all."""
        self.ready(1)
        self.assertEqual(self.bus.published, [])
