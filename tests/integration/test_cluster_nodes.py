"""Three gateway nodes on one Redis and one PostgreSQL, against one simulated fleet.

The whole loop, as in C{test_gateway_e2e}, with three gateways in one
process sharing a PostgreSQL schema of the test's own and a redis-server of
the test's own: sessions opened on every node reach their cards and run
their scripts; a node whose pushes name another node's admin address has its
cards arrive at the wrong node, which relays them; two nodes opening a
session for one card at once take turns; C{bipgw cluster status}'s view
lists the three nodes alive.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.app import Gateway
from bipgw.cluster import list_nodes
from bipgw.core import CardTarget, SessionState
from tests.integration._cluster_setup import ANY_PORT, ClusterBed
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration.gateway_loop import FAST_SESSIONS, ISD_SCRIPT

pytestmark = pytest.mark.integration

NODES = ("gw-a", "gw-b", "gw-c")


class ThreeNodesTests(TestCase):
    """Three nodes, one fleet (module docstring)."""

    timeout = 120
    skip = POSTGRES_SKIP

    async def _start(self, cards: int = 6) -> None:
        bed = await ClusterBed.create(self, cards=cards)
        assert bed.fleet is not None
        self.fleet = bed.fleet
        # A session waiting for a card another node holds may wait while
        # that node's session runs (slow on a loaded machine).
        sessions = dict(FAST_SESSIONS, queue_timeout=60)
        self.gateways: dict[str, Gateway] = {}
        for name in NODES:
            extra = ""
            if name == NODES[2]:
                # gw-c's pushes name gw-a's admin address: its cards reach gw-a.
                admin = self.gateways[NODES[0]].admin_port
                extra = f'admin_host = "127.0.0.1"\nadmin_port = {admin}\n'
            config = bed.install(name, sessions, extra, http_api=ANY_PORT)
            self.gateways[name] = await bed.start_gateway(config)
        self.iccids = await bed.load_fleet(self.gateways[NODES[0]])
        for gateway in self.gateways.values():
            await gateway.when_bound()

    async def test_sessionsOnEveryNodeAndWrongNodeRelayed(self) -> None:
        """A session opened on each node runs its script with its card's own
        answers and closes; gw-c's card, told gw-a's address, arrives at gw-a
        and is relayed to gw-c; the nodes are listed alive."""
        await self._start()
        results = {}
        for index, name in enumerate(NODES):
            session = self.gateways[name].open_session(self.iccids[index], "isd")
            ready = await session.ready
            self.assertEqual(ready.state, SessionState.CONNECTED)
            result = await session.execute(ISD_SCRIPT)
            self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
            final = await session.close()
            self.assertEqual(final.state, SessionState.CLOSED)
            results[name] = result
        a, c = self.gateways[NODES[0]].cluster, self.gateways[NODES[2]].cluster
        assert a is not None and a.cards is not None and c is not None and c.cards is not None
        self.assertEqual((a.cards.relayed_out, c.cards.relayed_in), (1, 1))
        self.assertEqual(self.fleet.router.stats.sessions_completed, 3)
        nodes = await list_nodes(a.redis)
        self.assertEqual([(n.name, n.alive) for n in nodes], [(n, True) for n in NODES])

    async def test_wrongNodeCardServedOnFirstPush(self) -> None:
        """gw-c's push names gw-a's address, and gw-a reads keys slowly (0.3 s
        a read): gw-c holds the SMS until gw-a says it holds the card's keys,
        so the card's first handshake on gw-a succeeds (no PSK miss, one push
        run by the card) and is relayed to gw-c (issue 9: it used to wait
        for the next push)."""
        await self._start(cards=2)
        a, c = self.gateways[NODES[0]], self.gateways[NODES[2]]
        assert c.cluster is not None and c.cluster.invalidation is not None
        waits = c.cluster.invalidation.waits
        assert waits is not None
        waits.timeout = 10.0  # a loaded machine may be slow; the bound is tested in unit tests
        for _ in range(20):  # gw-c learns gw-a names its address at its next watch
            if NODES[0] in c.cluster.invalidation.peers:
                break
            await deferLater(reactor, 0.25, lambda: None)
        self.assertEqual(c.cluster.invalidation.peers, frozenset({NODES[0]}))
        b = self.gateways[NODES[1]].cluster
        assert b is not None and b.invalidation is not None
        self.assertEqual(b.invalidation.peers, frozenset())  # its own address: never waits
        read_many = a.keys._read_many
        assert read_many is not None

        def slow(iccids: Any) -> Any:
            return deferLater(reactor, 0.3, read_many, iccids)

        a.keys._read_many = slow
        iccid = self.iccids[1]
        self.assertNotIn(iccid, a.keys)
        misses, executed = a.keys.misses, self.fleet.router.stats.sms_executed
        session = c.open_session(iccid, "isd")
        ready = await session.ready
        self.assertEqual(ready.state, SessionState.CONNECTED)
        await session.execute(ISD_SCRIPT)
        await session.close()
        self.assertEqual(
            (
                a.keys.misses - misses,
                self.fleet.router.stats.sms_executed - executed,
                waits.timeouts,
            ),
            (0, 1, 0),
        )
        assert a.cluster is not None and a.cluster.cards is not None
        self.assertEqual(a.cluster.cards.relayed_out, 1)

    async def test_oneSessionPerCardAcrossNodes(self) -> None:
        """Two nodes open a session for one card at once: one reaches the card,
        the other waits for it, and reaches it once the first is closed."""
        from twisted.internet.defer import DeferredList

        await self._start(cards=2)
        iccid = self.iccids[0]
        sessions = [
            self.gateways[name].open_session(CardTarget.by_iccid(iccid), "isd")
            for name in NODES[:2]
        ]
        # Whichever node took the card's lock first gets it.
        _, index = await DeferredList(
            [s.ready for s in sessions], fireOnOneCallback=True, fireOnOneErrback=True
        )
        first, second = sessions[index], sessions[1 - index]
        self.assertEqual(first.status().state, SessionState.CONNECTED)
        self.assertFalse(second.ready.called)
        self.assertNotEqual(second.status().state, SessionState.CONNECTED)
        await first.execute(ISD_SCRIPT)
        await first.close()
        ready = await second.ready
        self.assertEqual(ready.state, SessionState.CONNECTED)
        await second.execute(ISD_SCRIPT)
        final = await second.close()
        self.assertEqual(final.state, SessionState.CLOSED)

    async def test_httpApiAndSharedLimitsAcrossNodes(self) -> None:
        """A tenant allowed one session opens one through node A's HTTP API;
        a second through node B's is refused by the cluster-wide limit; A
        runs a command and closes; node B's HTTP API then answers for the
        session (asking A, which held it), and B may open one again."""
        import json

        import treq

        from bipgw.store import add_tenant, grant_service

        await self._start(cards=2)
        a, b = self.gateways[NODES[0]], self.gateways[NODES[1]]
        token = await add_tenant(a.store, "acme", max_sessions=1)
        await grant_service(a.store, "acme", "isd", isd_commands=["all"])
        headers = {"Authorization": [f"Bearer {token}"], "Content-Type": ["application/json"]}
        from twisted.web.client import HTTPConnectionPool

        pool = HTTPConnectionPool(reactor, persistent=False)

        def url(gateway: Gateway, path: str) -> str:
            return f"http://127.0.0.1:{gateway.http_api_port}/v1/{path}"

        async def call(method: str, gateway: Gateway, path: str, body: Any = None) -> Any:
            data = None if body is None else json.dumps(body).encode()
            response = await treq.request(
                method, url(gateway, path), data=data, headers=headers, pool=pool
            )
            return response.code, json.loads(await response.content() or b"null")

        opened = {"iccid": self.iccids[0], "service": "isd"}
        code, created = await call("POST", a, "sessions", opened)
        self.assertEqual(code, 201, created)
        sid = created["session"]
        code, refused = await call("POST", b, "sessions", {**opened, "iccid": self.iccids[1]})
        self.assertEqual(code, 429, refused)
        self.assertIn("cluster", json.dumps(refused))
        code, result = await call("POST", a, f"sessions/{sid}/commands", {"apdus": ["80CA9F7F00"]})
        self.assertEqual(code, 200, result)
        code, final = await call("DELETE", a, f"sessions/{sid}")
        self.assertEqual(code, 200, final)
        for _ in range(40):  # the history is written behind (every 0.1 s)
            code, seen = await call("GET", b, f"sessions/{sid}")
            if code == 200 and seen.get("state") == "closed":
                break
            await deferLater(reactor, 0.25, lambda: None)
        self.assertEqual(code, 200, seen)
        self.assertEqual((seen["session"], seen["state"]), (sid, "closed"))
        code, again = await call("POST", b, "sessions", {**opened, "iccid": self.iccids[1]})
        self.assertEqual(code, 201, again)
        await call("DELETE", b, f"sessions/{again['session']}")
        # The other nodes read the card's keys when its push went out: let
        # those reads end before the stores close.
        await deferLater(reactor, 1.0, lambda: None)
