"""Any node drives any session: two gateway nodes on one Redis and one PostgreSQL.

Two gateways in one process share a PostgreSQL schema of the test's own and
a redis-server of the test's own, with the simulated fleet: a session opened
through node A's HTTP API is driven through node B's HTTP API and through
a platform-channel connection (the SDK) on node B: commands whose R-APDUs
are the card's own, its status, its close, and its end notified to B's
platform; the tenant's command rate and commands in flight are counted
over both nodes (docs/cluster.md, "Any node drives any session").
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import treq
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from bipgw.app import Gateway
from bipgw.client import PlatformError, connect
from bipgw.cluster import ClusterRedis, RedisAddress
from bipgw.cluster._commands import RedisCommandLimits, commands_key
from bipgw.core import ServiceGrant, TenantGrant
from bipgw.store import add_tenant, grant_service
from tests.integration._cluster_setup import ANY_PORT, ClusterBed, start_redis
from tests.integration._postgres import SKIP as POSTGRES_SKIP

pytestmark = pytest.mark.integration

NODES = ("gw-a", "gw-b")
GET_DATA = "80CA9F7F00"  # GET DATA (CPLC): the card answers with its own data


class TwoNodesTests(TestCase):
    """Two nodes, one fleet (module docstring)."""

    timeout = 120
    skip = POSTGRES_SKIP

    async def _start(self, cards: int = 3) -> None:
        bed = await ClusterBed.create(self, cards=cards)
        assert bed.fleet is not None
        self.fleet = bed.fleet
        self.gateways, self.iccids = await bed.start_nodes(
            NODES, http_api=ANY_PORT, platform=ANY_PORT
        )
        self.a, self.b = (self.gateways[n] for n in NODES)
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def _tenant(self, **limits: Any) -> str:
        """Start the nodes; add tenant acme, granted the ISD service."""
        await self._start()
        rate = limits.pop("rate", None)
        token = await add_tenant(self.a.store, "acme", **limits)
        await grant_service(self.a.store, "acme", "isd", isd_commands=["all"], rate=rate)
        self.headers = {"Authorization": [f"Bearer {token}"], "Content-Type": ["application/json"]}
        return token

    async def call(self, method: str, gateway: Gateway, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        url = f"http://127.0.0.1:{gateway.http_api_port}/v1/{path}"
        response = await treq.request(method, url, data=data, headers=self.headers, pool=self.pool)
        return response.code, json.loads(await response.content() or b"null")

    async def _settle(self) -> None:
        # The other node read the card's keys when its push went out: let
        # those reads end before the stores close.
        await deferLater(reactor, 1.0, lambda: None)

    async def test_sessionOnADrivenThroughB(self) -> None:
        """A session opened through A's HTTP API: B's HTTP API runs a command on
        its card (waiting for the card to connect) and shows its status in full;
        an SDK connection to B's platform channel runs commands and closes it;
        B's HTTP API then shows it closed."""
        token = await self._tenant()
        code, created = await self.call("POST", self.a, "sessions", {
            "iccid": self.iccids[0], "service": "isd"
        })  # fmt: skip
        self.assertEqual(code, 201, created)
        sid = created["session"]
        code, result = await self.call(
            "POST", self.b, f"sessions/{sid}/commands", {"apdus": [GET_DATA]}
        )
        self.assertEqual(code, 200, result)
        self.assertEqual(result["rapdus"][0][-4:], "9000")
        code, seen = await self.call("GET", self.b, f"sessions/{sid}")
        self.assertEqual(code, 200, seen)
        self.assertEqual((seen["state"], seen["iccid"]), ("connected", self.iccids[0]))

        client = await connect(reactor, f"tcp:127.0.0.1:{self.b.platform_port}", token=token)
        self.addCleanup(client.disconnect)
        session = client.attach(sid, service="isd")
        first = await session.send([GET_DATA])
        self.assertEqual(first.rapdus[0].hex().upper(), result["rapdus"][0].upper())
        state = await client.status(sid)
        self.assertEqual(
            (state.state, state.iccid, state.scripts), ("connected", self.iccids[0], 2)
        )
        await session.close()
        self.assertEqual(session.ended_by.TYPE if session.ended_by else None, "closed")
        code, final = await self.call("GET", self.b, f"sessions/{sid}")
        self.assertEqual((code, final["state"]), (200, "closed"))
        code, again = await self.call(
            "POST", self.b, f"sessions/{sid}/commands", {"apdus": [GET_DATA]}
        )
        self.assertEqual((code, again["code"]), (409, "session-ended"), again)
        forwarding_a, forwarding_b = (g.cluster.forwarding for g in (self.a, self.b))  # type: ignore[union-attr]
        assert forwarding_a is not None and forwarding_b is not None
        self.assertEqual((forwarding_b.forwarded, forwarding_a.served), (7, 7))
        self.assertEqual(forwarding_b.pending, 0)
        self.assertEqual(self.fleet.router.stats.sessions_completed, 1)
        await self._settle()

    async def test_endReachesPlatformOnB(self) -> None:
        """A platform on B that drove A's session hears of its end (closed
        through A's HTTP API) as a notification; another tenant on B cannot
        touch the session at all."""
        token = await self._tenant()
        other = await add_tenant(self.a.store, "rival")
        await grant_service(self.a.store, "rival", "isd", isd_commands=["all"])
        code, created = await self.call("POST", self.a, "sessions", {
            "iccid": self.iccids[1], "service": "isd"
        })  # fmt: skip
        sid = created["session"]
        client = await connect(reactor, f"tcp:127.0.0.1:{self.b.platform_port}", token=token)
        self.addCleanup(client.disconnect)
        rival = await connect(reactor, f"tcp:127.0.0.1:{self.b.platform_port}", token=other)
        self.addCleanup(rival.disconnect)
        for _ in range(60):  # the card connects to A
            code, seen = await self.call("GET", self.a, f"sessions/{sid}")
            if seen.get("state") == "connected":
                break
            await deferLater(reactor, 0.25, lambda: None)
        stolen = rival.attach(sid)
        error = await self.assertFailure(stolen.send([GET_DATA]), PlatformError)
        self.assertEqual(error.code, "unknown-session")
        error = await self.assertFailure(stolen.close(), PlatformError)
        self.assertEqual(error.code, "unknown-session")
        session = client.attach(sid)
        await session.send([GET_DATA])
        code, final = await self.call("DELETE", self.a, f"sessions/{sid}")
        self.assertEqual((code, final["state"]), (200, "closed"))
        ended = await session.when_ended()
        self.assertEqual((ended.TYPE, ended.session), ("notification", sid))
        await self._settle()

    async def test_eventStreamOnB(self) -> None:
        """A tenant's event stream on B shows the events of a session it opened
        through A's HTTP API, from its first to its close."""
        await self._tenant()
        url = f"http://127.0.0.1:{self.b.http_api_port}/v1/events"
        response = await treq.get(url, headers=self.headers, pool=self.pool, unbuffered=True)
        self.assertEqual(response.code, 200)
        chunks: list[bytes] = []
        collecting = treq.collect(response, chunks.append)
        collecting.addErrback(lambda _: None)
        self.addCleanup(lambda: response.original._transport.stopProducing())
        await deferLater(reactor, 1.5, lambda: None)  # A learns that B listens (every 1 s)
        code, created = await self.call("POST", self.a, "sessions", {
            "iccid": self.iccids[0], "service": "isd"
        })  # fmt: skip
        self.assertEqual(code, 201, created)
        sid = created["session"]

        def states() -> list[str]:
            frames = b"".join(chunks).decode().split("\n\n")
            data = [
                json.loads(line[6:])
                for frame in frames
                for line in frame.splitlines()
                if line.startswith("data: ")
            ]
            return [d["state"] for d in data if d["session"] == sid and d["transition"]]

        for _ in range(80):
            if "connected" in states():
                break
            await deferLater(reactor, 0.25, lambda: None)
        self.assertEqual(states()[0], "requested")
        self.assertIn("connected", states())
        code, _ = await self.call("DELETE", self.a, f"sessions/{sid}")
        for _ in range(40):
            if "closed" in states():
                break
            await deferLater(reactor, 0.25, lambda: None)
        self.assertEqual(states()[-1], "closed")
        await self._settle()

    async def test_commandLimitsOverBothNodes(self) -> None:
        """A tenant allowed one command per second and one in flight, with a
        session on each node: commands sent at once through A and B are
        admitted once over the cluster; the refusals say the limit is the
        cluster's; once answered, nothing stays counted."""
        await self._tenant(max_sessions=4, max_commands=1, rate=0.2)
        sids = []
        for gateway, iccid in ((self.a, self.iccids[0]), (self.b, self.iccids[1])):
            code, created = await self.call(
                "POST", gateway, "sessions", {"iccid": iccid, "service": "isd"}
            )
            self.assertEqual(code, 201, created)
            sids.append(created["session"])
        for sid, gateway in zip(sids, (self.a, self.b), strict=True):
            for _ in range(60):
                code, seen = await self.call("GET", gateway, f"sessions/{sid}")
                if seen.get("state") == "connected":
                    break
                await deferLater(reactor, 0.25, lambda: None)
        # One through each node's own session, one through B for A's session.
        sent = [
            self.call("POST", self.a, f"sessions/{sids[0]}/commands", {"apdus": [GET_DATA]}),
            self.call("POST", self.b, f"sessions/{sids[1]}/commands", {"apdus": [GET_DATA]}),
            self.call("POST", self.b, f"sessions/{sids[0]}/commands", {"apdus": [GET_DATA]}),
        ]
        from twisted.internet.defer import Deferred

        answers = await DeferredList([Deferred.fromCoroutine(c) for c in sent])
        outcomes = [value for _, value in answers]
        codes = sorted(code for code, _ in outcomes)
        self.assertEqual(codes, [200, 429, 429], outcomes)
        for code, body in outcomes:
            if code == 429:
                self.assertIn(body["code"], ("rate-limited", "limit-reached"))
                self.assertIn("cluster", body["message"])
        redis = self.a.cluster.redis  # type: ignore[union-attr]
        self.assertEqual(int(await redis.call("ZCARD", commands_key("acme"))), 0)
        for sid, gateway in zip(sids, (self.a, self.b), strict=True):
            await self.call("DELETE", gateway, f"sessions/{sid}")
        await self._settle()


class CommandCountExpiryTests(TestCase):
    """A dead node's commands in flight stop counting (real Redis)."""

    timeout = 30

    async def test_deadNodesCountsExpire(self) -> None:
        """Commands admitted by a node that stops renewing (it died) stop counting
        once their time to live passes; a live node's renewals keep them."""
        server = start_redis(self)
        redis = ClusterRedis(RedisAddress.from_url(server.url), reactor)
        self.addCleanup(redis.disconnect)
        await redis.connect()
        tenant = TenantGrant("acme", services=[ServiceGrant("isd")], max_commands=1)
        service = tenant.services["isd"]
        dead = RedisCommandLimits(redis, reactor, ttl=0.6, renew_every=0.2)  # never started
        live = RedisCommandLimits(redis, reactor, ttl=0.6, renew_every=0.2)
        token, _, _ = await dead.admit(tenant, service)
        self.assertIsNotNone(token)
        refused = await live.admit(tenant, service)
        self.assertEqual(refused[:2], (None, "limit-reached"))
        await deferLater(reactor, 0.8, lambda: None)
        kept, _, _ = await live.admit(tenant, service)
        self.assertIsNotNone(kept)
        live.start()
        self.addCleanup(live.stop)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual((await dead.admit(tenant, service))[1], "limit-reached")
        assert kept is not None
        live.done(kept)
        await deferLater(reactor, 0.1, lambda: None)
        self.assertIsNotNone((await dead.admit(tenant, service))[0])

    async def test_rateOverNodes(self) -> None:
        """Two nodes share one bucket: a rate of 2 per second admits 2 at once
        over both, then one more after half a second."""
        server = start_redis(self)
        redis = ClusterRedis(RedisAddress.from_url(server.url), reactor)
        self.addCleanup(redis.disconnect)
        await redis.connect()
        tenant = TenantGrant("acme", services=[ServiceGrant("isd", rate=2)], max_commands=50)
        service = tenant.services["isd"]
        nodes = [RedisCommandLimits(redis, reactor), RedisCommandLimits(redis, reactor)]
        outcomes = [await nodes[i % 2].admit(tenant, service) for i in range(4)]
        self.assertEqual([o[1] for o in outcomes], [None, None, "rate-limited", "rate-limited"])
        self.assertIn("over the cluster's nodes", str(outcomes[2][2]))
        await deferLater(reactor, 0.55, lambda: None)
        self.assertIsNone((await nodes[1].admit(tenant, service))[1])


class _Engine:
    """What L{SessionForwarding} needs of an engine here: no session ever ends."""

    def subscribe(self, subscriber: object) -> Any:
        return lambda: None


class ForwardingBoundsTests(TestCase):
    """A forwarded request never waits unbounded (real Redis; the owners are
    stand-ins: a subscriber that never answers, or nobody)."""

    timeout = 30

    async def _forwarding(self, **kwargs: Any) -> Any:
        from bipgw.cluster._forwarding import SessionForwarding
        from bipgw.cluster._registry import session_key

        server = start_redis(self)
        self.redis = ClusterRedis(RedisAddress.from_url(server.url), reactor)
        self.addCleanup(self.redis.disconnect)
        await self.redis.connect()
        self.heard: list[str] = []
        self.redis.subscribe("fwd:gw-x", self.heard.append)  # gw-x listens, never answers
        for sid, node in (("s1", "gw-x"), ("s2", "gw-y"), ("s3", "gw-x")):
            await self.redis.call("HSET", session_key(sid), "node", node, "state", "connected")
        forwarding = SessionForwarding(
            self.redis,
            "gw-b",
            None,
            _Engine(),
            reactor,
            **kwargs,  # type: ignore[arg-type]
        )
        forwarding.start()
        self.addCleanup(forwarding.stop)
        await deferLater(reactor, 0.2, lambda: None)  # subscribed
        return forwarding

    async def test_deadOwner(self) -> None:
        """A request waiting for a node found dead (no heartbeat) fails within
        the next check, C{unavailable} naming it; a session watched there ends
        with reason C{node-lost}; an owner that does not listen fails at once."""
        from bipgw.core import RemoteUnavailableError

        forwarding = await self._forwarding()
        tenant = TenantGrant("acme", services=[ServiceGrant("isd")])
        from bipgw.codec.platform import Command

        waiting = forwarding.forward(tenant, Command(session="s1", id="c", apdus=(b"\0" * 4,)))
        await deferLater(reactor, 0.2, lambda: None)  # sent: gw-x holds s1
        ended: list[Any] = []
        forwarding.watch("s1", ended.append)
        failed = await self.assertFailure(
            forwarding.forward(tenant, Command(session="s2", id="d", apdus=(b"\0" * 4,))),
            RemoteUnavailableError,
        )
        self.assertIn("node gw-y, which holds the session, is not reachable", str(failed))
        error = await self.assertFailure(waiting, RemoteUnavailableError)
        self.assertIn("node gw-x, which held the session, was lost", str(error))
        self.assertEqual(len(self.heard), 1)  # the request reached gw-x
        self.assertEqual([(n.session, n.reason) for n in ended], [("s1", "node-lost")])
        self.assertEqual(forwarding.pending, 0)

    async def test_timeoutAndPendingLimit(self) -> None:
        """A live owner that does not answer fails the request after the
        timeout; beyond the pending limit a request fails at once."""
        from bipgw.cluster._nodes import NODES
        from bipgw.codec.platform import Command
        from bipgw.core import RemoteUnavailableError

        forwarding = await self._forwarding(timeout=0.5, max_pending=1)
        now = int(reactor.seconds() * 1000)
        await self.redis.call("ZADD", NODES, now + 60_000, "gw-x")  # beats (for a minute)
        tenant = TenantGrant("acme", services=[ServiceGrant("isd")])
        first = forwarding.forward(tenant, Command(session="s1", id="c", apdus=(b"\0" * 4,)))
        await deferLater(reactor, 0.1, lambda: None)
        over = await self.assertFailure(
            forwarding.forward(tenant, Command(session="s3", id="d", apdus=(b"\0" * 4,))),
            RemoteUnavailableError,
        )
        self.assertIn("(the limit)", str(over))
        error = await self.assertFailure(first, RemoteUnavailableError)
        self.assertIn("did not answer within 0.5 s", str(error))
