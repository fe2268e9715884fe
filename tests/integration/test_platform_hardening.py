"""Hostile platform peers on real 127.0.0.1 sockets: memory stays bounded (issue 15).

The platform channel listens on loopback with the real reactor, over a real
engine and an in-memory tenant directory; the peers are Twisted client
connections that stop reading their socket and then write as fast as the
kernel lets them.  What is checked is what a flood used to cost: the bytes
the gateway holds for a peer (its transport's send buffer) and the process's
RSS stay bounded, the connections are aborted, and once they are gone
nothing of them is kept.  Waits are bounded polls, never timed assertions.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import TestCase

from bipgw.codec.platform import FrameDecoder, encode_frame
from bipgw.core import (
    MemorySessionRecorder,
    MemoryTenantDirectory,
    ServiceGrant,
    SessionEngine,
    Tenancy,
    TenantGrant,
)
from bipgw.platform import ChannelSettings, PeerLimits, PlatformServerFactory, listen
from tests.unit.platform import POLICY, Fleet, make_pki

pytestmark = pytest.mark.integration

TOKEN = "tok-acme-0123456789"
JUNK = b"\x00\x00\x00\x02[]"  # a frame whose every copy earns an error reply
MIB = 1 << 20


def rss() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def held(protocol: Any) -> int:
    """Bytes a server-side connection holds to send (its TCP transport's buffer)."""
    transport = protocol.transport
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport = transport.transport
    buffered = getattr(transport, "dataBuffer", b"")
    return len(buffered) + int(getattr(transport, "_tempDataLen", 0))


class Deaf(Protocol):
    """A peer that stops reading: at its first reply (after its TLS handshake,
    which needs reading), or once authenticated when it logs in."""

    def __init__(self, login: bool = False) -> None:
        self.login = login
        self.lost = False
        self.authenticated = not login
        self.decoder = FrameDecoder()

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.login:
            self.transport.write(encode_frame({"type": "hello", "id": "h", "token": TOKEN}))

    def dataReceived(self, data: bytes) -> None:
        if not self.login:
            self.transport.pauseProducing()  # type: ignore[attr-defined, union-attr]
        elif not self.authenticated and any(
            isinstance(m, dict) and m.get("type") == "auth_ok" for m in self.decoder.feed(data)
        ):
            self.authenticated = True
            self.transport.pauseProducing()  # type: ignore[attr-defined, union-attr]

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


class HostilePeerTests(TestCase):
    """Peers that do not read, against the real reactor (plain TCP)."""

    timeout = 60
    tls = False

    async def asyncSetUp(self) -> None:
        fleet = Fleet(reactor, 2)
        self.engine = SessionEngine(reactor, fleet, fleet, MemorySessionRecorder(), POLICY)
        fleet.engine = self.engine
        tenants = MemoryTenantDirectory()
        tenants.add(TenantGrant("acme", services=[ServiceGrant("demo")]), tokens=[TOKEN])
        self.factory = PlatformServerFactory(
            Tenancy(self.engine, tenants, reactor),
            settings=ChannelSettings(
                auth_timeout=30,
                heartbeat_interval=None,
                stall_timeout=2,
                peer_limits=PeerLimits(preauth_rate=50, preauth_burst=100),
            ),
        )
        self.pki = make_pki()
        options = PrivateCertificate.loadPEM(self.pki.server).options() if self.tls else None
        self.port = await listen(
            reactor, "tcp:0:interface=127.0.0.1:backlog=256", self.factory, tls=options
        )
        self.addCleanup(self.port.stopListening)

    async def connect(self, peer: Deaf) -> Deaf:
        where: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        if self.tls:
            trust = Certificate.loadPEM(self.pki.ca)
            where = wrapClientTLS(optionsForClientTLS("localhost", trustRoot=trust), where)
        await where.connect(Factory.forProtocol(lambda: peer))
        self.addCleanup(lambda: peer.transport.abortConnection() if not peer.lost else None)  # type: ignore[union-attr]
        return peer

    async def until(self, done: Any, polls: int = 400) -> int:
        """Poll every 25 ms until C{done()} (at most C{polls} times); the most held."""
        most = 0
        for _ in range(polls):
            most = max([most, *(held(p) for p in self.factory.connections)])
            if done():
                return most
            await deferLater(reactor, 0.025, lambda: None)
        return most

    async def test_junkFloodNeverRead(self) -> None:
        """Four connections send 4 MiB of invalid frames each and read
        nothing: each is aborted after its address's pre-authentication
        budget, holding a few KiB at most; RSS does not follow the flood;
        nothing is kept once they are gone."""
        await self.asyncSetUp()
        before = rss()
        peers = [await self.connect(Deaf()) for _ in range(4)]
        for peer in peers:
            peer.transport.write(JUNK * (4 * MIB // len(JUNK)))  # type: ignore[union-attr]
        most = await self.until(lambda: all(p.lost for p in peers))
        self.assertTrue(all(p.lost for p in peers), "the gateway kept a deaf flooder")
        self.assertLess(most, 64 * 1024)
        self.assertLess(rss() - before, 48 * MIB)
        await self.until(lambda: not self.factory.connections)
        self.assertEqual(self.factory.connections, set())

    async def test_pipelinedNeverRead(self) -> None:
        """An authenticated peer pipelines pings (6 MiB) and reads nothing:
        the gateway stops reading it, holds a bounded send buffer, and
        aborts it after stall_timeout."""
        await self.asyncSetUp()
        peer = await self.connect(Deaf(login=True))
        await self.until(lambda: peer.authenticated)
        self.assertTrue(peer.authenticated)
        before = rss()
        ping = encode_frame({"type": "ping", "id": "p"})
        peer.transport.write(ping * (6 * MIB // len(ping)))  # type: ignore[union-attr]
        paused = []
        most = await self.until(
            lambda: paused.extend(p.paused for p in self.factory.connections) or peer.lost
        )
        self.assertTrue(any(paused), "the gateway never stopped reading")
        self.assertTrue(peer.lost, "not aborted after stall_timeout")
        self.assertLess(most, 4 * MIB)
        self.assertLess(rss() - before, 48 * MIB)
        await self.until(lambda: not self.factory.connections)
        self.assertEqual(self.factory.guard.connections("127.0.0.1"), 0)


class TlsHostilePeerTests(HostilePeerTests):
    """The same peers over TLS (the protocol is a producer through TLSMemoryBIO)."""

    tls = True
