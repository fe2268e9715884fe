"""Two cluster nodes through a Redis restart, and through a PostgreSQL restart.

Two gateway nodes (in this process) share a redis-server and a PostgreSQL
schema of the test's own, against the simulated fleet.

  - Redis is killed (its data gone, as a restart without persistence) and
    started again on its port: a connected session keeps running its
    commands; a session opened meanwhile ends with a reason
    (C{directory-error}: its card cannot be claimed); nothing crashes; the
    nodes reconnect by themselves, beat again, and write their live
    sessions to the registry again (a node killed later would have them
    taken over or ended); new sessions run.
  - PostgreSQL is reached through a TCP proxy, which is stopped (every
    connection reset, new ones refused) and started again, as a restart
    looks to the nodes: a connected session keeps running; a session
    opened meanwhile ends with a reason; the nodes go on without a restart,
    their heartbeats too, and new sessions run once it is back.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import make_url
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.protocols.portforward import ProxyFactory
from twisted.trial.unittest import TestCase

from bipgw.app import Gateway
from bipgw.cluster import RegistryNotWrittenError, list_nodes
from bipgw.core import SessionError, SessionState
from bipgw.store import StoreError
from tests.integration._cluster_setup import ClusterBed
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration._redis_server import free_port
from tests.integration.gateway_loop import FAST_SESSIONS, ISD_SCRIPT

pytestmark = pytest.mark.integration

NODES = ("gw-a", "gw-b")


class _Proxy:
    """A TCP proxy to PostgreSQL on a port of its own, that can be stopped and started."""

    def __init__(self, host: str, port: int) -> None:
        self.factory = ProxyFactory(host, port)
        self.port = free_port()
        self.listening: IListeningPort | None = None
        self.connections: list[Any] = []
        build = self.factory.buildProtocol

        def tracked(addr: Any) -> Any:
            protocol = build(addr)
            self.connections.append(protocol)
            return protocol

        self.factory.buildProtocol = tracked  # type: ignore[method-assign]

    def start(self) -> None:
        self.listening = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self.listening is not None:
            await self.listening.stopListening()
            self.listening = None
        for protocol in self.connections:
            transport = protocol.transport
            if transport is not None:
                transport.abortConnection()
            peer = getattr(protocol, "peer", None)
            if peer is not None and peer.transport is not None:
                peer.transport.abortConnection()
        self.connections.clear()
        await deferLater(reactor, 0.2, lambda: None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class RestartTests(TestCase):
    """Redis and PostgreSQL restarts under two nodes (module docstring)."""

    timeout = 180
    skip = POSTGRES_SKIP

    async def _start(self, *, proxy: bool = False) -> None:
        bed = await ClusterBed.create(self, cards=4)
        assert bed.fleet is not None
        self.fleet, self.redis = bed.fleet, bed.redis
        self.proxy: _Proxy | None = None
        if proxy:
            real = make_url(bed.database_url)
            self.proxy = _Proxy(real.host or "127.0.0.1", real.port or 5432)
            self.proxy.start()
            self.addCleanup(self.proxy.stop)
            bed.database_url = real.set(port=self.proxy.port).render_as_string(hide_password=False)
        sessions = dict(FAST_SESSIONS, idle_timeout=60, queue_timeout=3, retry_delay=1)
        self.gateways, iccids = await bed.start_nodes(NODES, sessions)
        self.iccids = sorted(iccids)

    async def _connected(self, gateway: Gateway, iccid: str) -> Any:
        session = gateway.open_session(iccid, "isd")
        ready = await session.ready
        self.assertEqual(ready.state, SessionState.CONNECTED)
        return session

    async def _fails(self, gateway: Gateway, iccid: str) -> str:
        """A session opened now: the reason it ends with (it must end)."""
        session = gateway.open_session(iccid, "isd")
        # Its opening row may not be written (the store is down): nobody waits for it.
        session.recorded.addErrback(lambda _: None)
        try:
            await session.ready
        except SessionError as e:
            return e.reason.value
        await session.close()
        self.fail("the session reached its card")

    async def test_redisRestartSurvived(self) -> None:
        """Module docstring, first part."""
        await self._start()
        a, b = (self.gateways[n] for n in NODES)
        running = await self._connected(a, self.iccids[0])
        cluster = a.cluster
        assert cluster is not None and cluster.registry is not None
        await _sleep(0.3)  # the registry's batched write
        key = f"bipgw:node:{NODES[0]}:sessions"
        members = await cluster.redis.call("SMEMBERS", key)
        self.assertEqual({_text(m) for m in members}, {str(running.id)})

        self.redis.kill()
        result = await running.execute(ISD_SCRIPT)
        self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
        self.assertEqual(await self._fails(b, self.iccids[1]), "directory-error")

        self.redis.start()
        for _ in range(60):  # back within a few beats, by itself
            members = await cluster.redis.call("SMEMBERS", key).addErrback(lambda _: None)
            if members:
                break
            await _sleep(0.5)
        self.assertEqual({_text(m) for m in members or ()}, {str(running.id)})
        for _ in range(20):
            nodes = await list_nodes(cluster.redis)
            if [(n.name, n.alive) for n in nodes] == [(n, True) for n in NODES]:
                break
            await _sleep(0.5)
        self.assertEqual([(n.name, n.alive) for n in nodes], [(n, True) for n in NODES])
        result = await running.execute(ISD_SCRIPT)
        self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
        final = await running.close()
        self.assertEqual(final.state, SessionState.CLOSED)
        again = await self._connected(b, self.iccids[1])
        await again.execute(ISD_SCRIPT)
        self.assertEqual((await again.close()).state, SessionState.CLOSED)
        for gateway in self.gateways.values():
            self.assertTrue(gateway.running)
        await _sleep(1.0)  # key reads of the other node end before the stores close
        # The card lock of the session opened during the outage timed out, and
        # its registry entry could not be written (logged).
        self.flushLoggedErrors(defer.TimeoutError, RegistryNotWrittenError)

    async def test_postgresRestartSurvived(self) -> None:
        """Module docstring, second part."""
        await self._start(proxy=True)
        assert self.proxy is not None
        a, b = (self.gateways[n] for n in NODES)
        running = await self._connected(a, self.iccids[0])
        await self.proxy.stop()
        result = await running.execute(ISD_SCRIPT)
        self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
        reason = await self._fails(b, self.iccids[1])
        self.assertIn(reason, ("directory-error", "push-failed"))
        cluster = a.cluster
        assert cluster is not None
        nodes = await list_nodes(cluster.redis)
        self.assertEqual([(n.name, n.alive) for n in nodes], [(n, True) for n in NODES])

        self.proxy.start()
        result = await running.execute(ISD_SCRIPT)
        self.assertEqual(result.status_words, (0x9000, 0x9000, 0x9000))
        self.assertEqual((await running.close()).state, SessionState.CLOSED)
        again = await self._connected(b, self.iccids[2])
        await again.execute(ISD_SCRIPT)
        self.assertEqual((await again.close()).state, SessionState.CLOSED)
        for _ in range(40):  # the history written once the store is back
            row = await a.store.get_session(str(again.id))
            if row is not None and row.state == "closed":
                break
            await _sleep(0.25)
        self.assertEqual(row.state if row else None, "closed")
        for gateway in self.gateways.values():
            self.assertTrue(gateway.running)
        await _sleep(1.0)
        # The outage's failures were logged (with their tracebacks): expected here.
        self.flushLoggedErrors(StoreError)
