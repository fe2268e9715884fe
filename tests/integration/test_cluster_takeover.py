"""Three node processes, one killed (SIGKILL): its queued sessions taken over, its connected lost.

The test runs a redis-server and a PostgreSQL schema of its own and the
simulated fleet (its SMSC and cards); three gateway nodes run each in a
process of its own (L{tests.integration._node_child}), with an HTTP API.
A tenant opens, through node C's API:

  - a session that reaches its card (C{connected});
  - a second session for the same card, queued behind the first (not
    pushed yet);
  - a session for a card that ignores its push (pushed, waiting for it).

Node C is killed with SIGKILL.  Within 10 s one live node notices; the
connected session ends with C{node-lost}; the two queued ones are taken
over by a live node under their ids, pushed again with new OTA counters,
reach their cards on it, run the tenant's command through its HTTP API and
close.  An event stream the tenant holds on node A hears both outcomes.
Every push the cards received is decoded: no OTA counter was used twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from subprocess import PIPE
from typing import Any

import pytest
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from bipgw.cluster import ClusterRedis, RedisAddress
from bipgw.store import add_tenant, grant_service
from simcard.fleet import FleetService
from simcard.ota_receiver import OtaReceiver
from tests.integration._cluster_setup import ANY_PORT, ClusterBed, read_line, spawn
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration.gateway_loop import FAST_SESSIONS

pytestmark = pytest.mark.integration

NODES = ("gw-a", "gw-b", "gw-c")
SESSIONS = dict(FAST_SESSIONS, push_timeout=60, card_timeout=60, queue_timeout=60, idle_timeout=60)


class _Counters:
    """A card's OTA counter store that remembers every counter it is shown."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def last(self, kvn: int) -> int:
        return 0  # every packet is decoded, even a replay

    def record(self, kvn: int, counter: int) -> None:
        self.seen.append(counter)


class _Nothing:
    """Answers 9000 to any APDU: the spy only decodes, the card itself runs it."""

    def transmit(self, capdu: bytes) -> bytes:
        return b"\x90\x00"


def spy_on_pushes(fleet: FleetService) -> dict[str, list[int]]:
    """Decode the OTA counter of every SMS the fleet's cards receive (even
    those a card ignores), by ICCID."""
    router: Any = fleet.router
    seen: dict[str, list[int]] = {}
    spies: dict[str, OtaReceiver] = {}
    deliver = router.deliver

    def spying(msisdn: str, tpdu: bytes) -> Any:
        iccid = router._pool.iccid_for_msisdn(msisdn)
        if iccid is not None:
            spy = spies.get(iccid)
            if spy is None:
                card = router._pool.get(iccid).card

                def keys_for_kvn(kvn: int, card: Any = card) -> Any:
                    keys = card.profile.ota_key_set(kvn)
                    return keys.ota_keys() if keys is not None else None

                spy = spies[iccid] = OtaReceiver(
                    keys_for_kvn,
                    _Counters(seen.setdefault(iccid, [])),
                    _Nothing(),
                    admin=card.profile.admin,
                    agent_id=card.profile.agent_id,
                )
            spy.receive_sms_deliver(tpdu, time.monotonic())
        return deliver(msisdn, tpdu)

    router.deliver = spying
    return seen


class TakeoverTests(TestCase):
    """kill -9 of one of three node processes (module docstring)."""

    timeout = 180
    skip = POSTGRES_SKIP

    async def _start(self) -> None:
        bed = await ClusterBed.create(self, cards=4)
        assert bed.fleet is not None
        self.fleet, self.redis = bed.fleet, bed.redis
        self.pushes = spy_on_pushes(self.fleet)
        configs = {name: bed.install(name, SESSIONS, http_api=ANY_PORT) for name in NODES}
        # The cards, their keys and the tenant, through a node of this process
        # that leaves before the three start.
        setup = await bed.start_gateway(configs[NODES[0]], stop_after=False)
        self.iccids = sorted(await bed.load_fleet(setup))
        self.token = await add_tenant(setup.store, "acme", max_sessions=10)
        await grant_service(setup.store, "acme", "isd", isd_commands=["all"])
        self.store_url = bed.database_url
        await setup.stopService()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        for name in NODES:
            path = str(configs[name])
            command = [sys.executable, "-m", "tests.integration._node_child", path]
            self.children[name] = spawn(self, command, stdout=PIPE, stderr=PIPE)
        for name, child in self.children.items():
            line = b""
            deadline = time.monotonic() + 90
            while not line.startswith(b"ready ") and time.monotonic() < deadline:
                line = await read_line(child)
                if not line and child.poll() is not None:
                    break
            assert line.startswith(b"ready "), (name, child.stderr.read().decode()[-3000:])
            self.ports[name] = int(line.split()[1])
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.check = ClusterRedis(RedisAddress.from_url(self.redis.url), reactor)
        await self.check.connect()
        self.addCleanup(self.check.disconnect)

    async def call(self, method: str, node: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": [f"Bearer {self.token}"], "Content-Type": ["application/json"]}
        url = f"http://127.0.0.1:{self.ports[node]}/v1/{path}"
        data = None if body is None else json.dumps(body).encode()
        response = await treq.request(method, url, data=data, headers=headers, pool=self.pool)
        return response.code, json.loads(await response.content() or b"null")

    async def until(self, what: Callable[[], Any], wait: float, step: float = 0.25) -> Any:
        deadline = time.monotonic() + wait
        while True:
            value = await what()
            if value or time.monotonic() > deadline:
                return value
            await deferLater(reactor, step, lambda: None)

    async def events(self, node: str) -> list[dict[str, Any]]:
        """The tenant's event stream on C{node}: the C{data} of each frame, as it comes."""
        headers = {"Authorization": [f"Bearer {self.token}"]}
        url = f"http://127.0.0.1:{self.ports[node]}/v1/events"
        response = await treq.get(url, headers=headers, unbuffered=True, pool=self.pool)
        self.assertEqual(response.code, 200)
        stream = _Frames()
        response.deliverBody(stream)

        async def close() -> None:
            if stream.transport is not None:
                stream.transport.stopProducing()
            await stream.done

        self.addCleanup(close)
        return stream.frames

    async def test_killedNodesQueuedSessionsTakenOver(self) -> None:
        """Module docstring."""
        await self._start()
        busy, deaf = self.iccids[0], self.iccids[1]
        self.fleet.faults.set_card(deaf, {"ignore_push": True})
        c = NODES[2]
        code, first = await self.call("POST", c, "sessions", {"iccid": busy, "service": "isd"})
        self.assertEqual(code, 201, first)
        connected = first["session"]
        code, result = await self.call(
            "POST", c, f"sessions/{connected}/commands", {"apdus": ["80CA9F7F00"]}
        )
        self.assertEqual(code, 200, result)
        code, second = await self.call("POST", c, "sessions", {"iccid": busy, "service": "isd"})
        self.assertEqual(code, 201, second)
        queued = second["session"]
        code, third = await self.call("POST", c, "sessions", {"iccid": deaf, "service": "isd"})
        self.assertEqual(code, 201, third)
        waiting = third["session"]

        async def pushed() -> bool:
            code, seen = await self.call("GET", c, f"sessions/{waiting}")
            return bool(code == 200 and seen["state"] == "awaiting-card")

        self.assertTrue(await self.until(pushed, 20))
        code, seen = await self.call("GET", c, f"sessions/{queued}")
        self.assertEqual((code, seen["state"], seen.get("push_attempts", 0)), (200, "requested", 0))
        frames = await self.events(NODES[0])
        await deferLater(reactor, 0.5, lambda: None)  # the registry's batched writes

        self.children[c].send_signal(signal.SIGKILL)
        self.children[c].wait()
        killed = time.time()
        self.fleet.faults.set_card(deaf, {"ignore_push": False})

        async def lost() -> Any:
            code, seen = await self.call("GET", NODES[0], f"sessions/{connected}")
            return seen if code == 200 and seen["state"] == "failed" else None

        ended = await self.until(lost, 30)
        self.assertIsNotNone(ended, "the connected session did not end")
        self.assertEqual(ended["reason"], "node-lost")
        noticed = ended["ended_at"] - killed
        # Noticed within NODE_TIMEOUT + BEAT_EVERY = 10 s of the kill; the
        # rest is reading the registry and the rows on a loaded machine.
        self.assertLessEqual(noticed, 12.0, f"noticed {noticed:.1f} s after the kill")
        print(f"node-lost {noticed:.2f} s after the kill", file=sys.stderr)

        # The queued sessions run on the node that took them over.
        for sid in (queued, waiting):

            async def owner(sid: str = sid) -> Any:
                raw = await self.check.call("HGET", f"bipgw:session:{sid}", "node")
                node = raw.decode() if isinstance(raw, bytes) else raw
                return node if node in NODES[:2] else None

            node = await self.until(owner, 10)
            self.assertIn(node, NODES[:2], sid)
            for asked in NODES[:2]:  # status from any node names the new owner
                code, seen = await self.call("GET", asked, f"sessions/{sid}")
                self.assertEqual((code, seen.get("node")), (200, node), (asked, seen))
            code, result = await self.call(
                "POST", node, f"sessions/{sid}/commands", {"apdus": ["80CA9F7F00"]}
            )
            self.assertEqual(code, 200, (sid, result))
            self.assertEqual(result["rapdus"][-1][-4:], "9000")
            code, final = await self.call("DELETE", node, f"sessions/{sid}")
            self.assertEqual((code, final["state"]), (200, "closed"), final)
            other = NODES[1] if node == NODES[0] else NODES[0]

            async def closed_elsewhere(sid: str = sid, other: str = other) -> Any:
                code, seen = await self.call("GET", other, f"sessions/{sid}")
                return code == 200 and seen["state"] == "closed"

            self.assertTrue(await self.until(closed_elsewhere, 10), sid)

        # The tenant's stream on node A heard what became of each.
        heard = {(f["session"], f.get("cluster")) for f in frames if "cluster" in f}
        self.assertEqual(
            heard, {(connected, "node-lost"), (queued, "taken-over"), (waiting, "taken-over")}
        )
        # No OTA counter was used twice on a card, across the three nodes.
        self.assertEqual(sorted(self.pushes), sorted([busy, deaf]))
        for iccid, counters in self.pushes.items():
            self.assertEqual(len(counters), len(set(counters)), (iccid, counters))
        self.assertGreaterEqual(len(self.pushes[deaf]), 2)  # before and after the kill
        self.assertGreaterEqual(len(self.pushes[busy]), 2)
        print(f"OTA counters of every push: {self.pushes}", file=sys.stderr)


class _Frames(Protocol):
    """Collects the C{data} of each Server-Sent Events frame."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.done: Deferred[None] = Deferred()
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n\n" in self._buffer:
            frame, _, self._buffer = self._buffer.partition(b"\n\n")
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    self.frames.append(json.loads(line[6:]))

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)
