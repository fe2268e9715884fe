"""Hostile peers on the platform channel: what they may cost (issue 15, item 1).

A peer that does not read, floods frames before authenticating, opens many
connections or guesses tokens is held to bounded memory and time, and the
connection that breaks a limit is aborted (not closed after a flush it
would never let happen).  StringTransport plays the socket: the protocol
is its transport's push producer, so a test says "the peer stopped
reading" the way a TCP transport does, by calling C{pauseProducing}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bipgw.codec.platform import FrameDecoder, encode_frame
from bipgw.core import MemoryTenantDirectory, TenantGrant
from bipgw.platform import ChannelSettings, PeerGuard, PeerLimits, PlatformServerProtocol
from bipgw.platform._guard import MAX_TRACKED
from tests.unit.platform import SETTINGS, TOKEN, PlatformTestCase

HOST = "203.0.113.7"


def frame(**message: object) -> bytes:
    return encode_frame(message)


class CountingDirectory:
    """The test's tenant directory, counting the lookups it is asked for."""

    def __init__(self, inner: MemoryTenantDirectory) -> None:
        self.inner = inner
        self.lookups = 0

    def by_token(self, token: str) -> Deferred[TenantGrant | None]:
        self.lookups += 1
        return self.inner.by_token(token)

    def by_certificate(self, common_name: str) -> Deferred[TenantGrant | None]:
        self.lookups += 1
        return self.inner.by_certificate(common_name)


class HardeningTestCase(PlatformTestCase):
    """Connections over StringTransports from chosen addresses."""

    def setUp(self) -> None:
        super().setUp()
        self.transports: list[tuple[PlatformServerProtocol, StringTransport]] = []
        self.addCleanup(self._close_all)

    def _close_all(self) -> None:
        for protocol, transport in self.transports:
            if protocol.transport is not None and not getattr(transport, "_lost", False):
                transport._lost = True  # type: ignore[attr-defined]
                protocol.connectionLost(Failure(ConnectionError("test over")))

    def open(
        self, host: str = HOST, port: int = 40000
    ) -> tuple[PlatformServerProtocol, StringTransport]:
        peer = IPv4Address("TCP", host, port + len(self.transports))
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        self.transports.append((protocol, transport))
        return protocol, transport

    def lose(self, protocol: PlatformServerProtocol, transport: StringTransport) -> None:
        transport._lost = True  # type: ignore[attr-defined]
        protocol.connectionLost(Failure(ConnectionError("closed")))

    def login(self, token: str = TOKEN) -> Any:  # type: ignore[override]
        protocol, transport = self.open()
        protocol.dataReceived(frame(type="hello", id="h", token=token))
        [reply] = FrameDecoder().feed(transport.value())
        self.assertEqual(reply["type"], "auth_ok")  # type: ignore[index]
        transport.clear()
        return protocol, transport


class TimeoutTests(HardeningTestCase):
    """Timeouts end in an abort: nothing waits for a flush."""

    def test_authTimeoutAborts(self) -> None:
        """A connection that does not authenticate in time is aborted, not
        closed after a flush (a peer that does not read would never let the
        flush end)."""
        _, transport = self.open()
        self.clock.advance(SETTINGS.auth_timeout)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.disconnected, "closed with loseConnection, not aborted")

    def test_closeTimeout(self) -> None:
        """A connection closed after an error (bad credentials) that has not
        gone close_timeout seconds later is aborted."""
        protocol, transport = self.open()
        protocol.dataReceived(frame(type="hello", id="h", token="not-a-token-at-all"))
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.assertIn(b"auth-failed", transport.value())
        self.clock.advance(SETTINGS.close_timeout)
        self.assertTrue(transport.disconnected)


class BackpressureTests(HardeningTestCase):
    """The peer that does not read."""

    def test_registersAsProducer(self) -> None:
        """The protocol is its transport's streaming producer, so a full
        send buffer reaches it."""
        protocol, transport = self.open()
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)

    def test_notReadingBeforeAuthAborts(self) -> None:
        """Before authentication a peer that stops reading is aborted at once."""
        protocol, transport = self.open()
        for n in range(5):
            protocol.dataReceived(frame(type="open", id=f"o{n}", iccid="1", service="demo"))
        protocol.pauseProducing()
        self.assertTrue(transport.disconnected)

    def test_pipelinedNotReadStopsReading(self) -> None:
        """An authenticated peer that sends requests and reads nothing: once
        the transport says its buffer is full, the socket is no longer read
        and no further request is served, however many arrive; they are
        served once the peer reads again."""
        protocol, transport = self.login()
        pings = [frame(type="ping", id=f"p{n}") for n in range(200)]
        protocol.dataReceived(b"".join(pings[:100]))
        served = len(FrameDecoder().feed(transport.value()))
        self.assertEqual(served, 100)
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        before = len(transport.value())
        protocol.dataReceived(b"".join(pings[100:]))  # already in flight
        self.assertEqual(len(transport.value()), before)
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(FrameDecoder().feed(transport.value())), 200)
        self.assertFalse(transport.disconnecting)

    def test_pausedMidChunk(self) -> None:
        """A pause in the middle of a read keeps the rest of its frames for later."""
        protocol, transport = self.login()
        written: list[bytes] = []

        def write(data: bytes) -> None:
            written.append(data)
            if len(written) == 3:
                protocol.pauseProducing()

        transport.write = write  # type: ignore[method-assign]
        protocol.dataReceived(b"".join(frame(type="ping", id=f"p{n}") for n in range(10)))
        self.assertEqual(len(written), 3)
        protocol.resumeProducing()
        self.assertEqual(len(written), 10)

    def test_stallTimeout(self) -> None:
        """An authenticated peer that reads nothing for stall_timeout seconds
        is aborted."""
        protocol, transport = self.login()
        protocol.pauseProducing()
        self.clock.advance(SETTINGS.stall_timeout - 0.5)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.5)
        self.assertTrue(transport.disconnected)

    def test_heldBytesBounded(self) -> None:
        """While paused, what the gateway still has to send (answers of
        commands in flight) is capped at max_send_buffer: then aborted."""
        self.factory = self.make_factory(
            settings=ChannelSettings(auth_timeout=10, heartbeat_interval=None, max_send_buffer=4096)
        )
        protocol, transport = self.login()
        protocol.pauseProducing()
        channel = protocol.channel
        assert channel is not None
        from bipgw.codec.platform import Pong

        for n in range(1000):
            channel.emit(Pong(id=f"{n:08d}"))
            if transport.disconnected:
                break
        self.assertTrue(transport.disconnected)
        self.assertLess(len(transport.value()), 4096 + 100)

    def test_resumeCancelsStall(self) -> None:
        """A peer that reads again in time keeps its connection."""
        protocol, transport = self.login()
        protocol.pauseProducing()
        self.clock.advance(SETTINGS.stall_timeout / 2)
        protocol.resumeProducing()
        self.clock.advance(SETTINGS.stall_timeout)
        self.assertFalse(transport.disconnecting)


class PeerLimitTests(HardeningTestCase):
    """Per source address: connections, frames before authentication."""

    def test_connectionsPerPeer(self) -> None:
        """More than max_connections_per_peer connections from one address
        are aborted; another address still gets in; a slot frees when a
        connection ends."""
        limit = SETTINGS.peer_limits.max_connections_per_peer
        opened = [self.open() for _ in range(limit)]
        self.assertFalse(any(t.disconnecting for _, t in opened))
        _, refused = self.open()
        self.assertTrue(refused.disconnected)
        _, other = self.open(host="203.0.113.8")
        self.assertFalse(other.disconnecting)
        self.lose(*opened[0])
        _, again = self.open()
        self.assertFalse(again.disconnecting)

    def test_preauthFlood(self) -> None:
        """Invalid frames before authentication: past the address's burst,
        the connection is aborted and its later frames cost no reply."""
        protocol, transport = self.open()
        junk = b"\x00\x00\x00\x02[]" * 10_000
        protocol.dataReceived(junk)
        self.assertTrue(transport.disconnected)
        replies = FrameDecoder().feed(transport.value())
        self.assertEqual(len(replies), SETTINGS.peer_limits.preauth_burst)
        # The same address's next connection has no budget left either...
        protocol2, transport2 = self.open()
        protocol2.dataReceived(b"\x00\x00\x00\x02[]")
        self.assertTrue(transport2.disconnected)
        # ...until the bucket refills.
        self.clock.advance(1)
        protocol3, transport3 = self.open()
        protocol3.dataReceived(frame(type="hello", id="h", token=TOKEN))
        self.assertIn(b"auth_ok", transport3.value())

    def test_manyLoginsAtOnce(self) -> None:
        """Successful hellos are refunded: a platform may open many more
        connections at once than the burst."""
        for _ in range(3 * SETTINGS.peer_limits.preauth_burst // 2):
            protocol, transport = self.login()
            self.lose(protocol, transport)

    def test_memoryReturned(self) -> None:
        """Once the connections of an address are gone and its budget is
        back, nothing about it is kept."""
        for _ in range(5):
            self.lose(*self.open())
        self.clock.advance(SETTINGS.peer_limits.preauth_burst / SETTINGS.peer_limits.preauth_rate)
        self.lose(*self.open())
        self.assertEqual(self.factory.guard.tracked, 0)


class AuthBackoffTests(HardeningTestCase):
    """Failed authentications of one address back off."""

    def setUp(self) -> None:
        super().setUp()
        self.counting = CountingDirectory(self.tenants)
        self.tenants = self.counting  # type: ignore[assignment]
        self.factory = self.make_factory()

    def hello(self, token: str, host: str = HOST) -> bytes:
        protocol, transport = self.open(host=host)
        protocol.dataReceived(frame(type="hello", id="h", token=token))
        out = transport.value()
        self.lose(protocol, transport)
        return out

    def test_backoff(self) -> None:
        """After auth_free_failures failures, an address's hellos are
        refused without a lookup until the back-off ends; other addresses
        are not affected; a success clears it."""
        limits = SETTINGS.peer_limits
        for _ in range(limits.auth_free_failures + 1):
            self.assertIn(b"auth-failed", self.hello("wrong-token-0000000"))
        looked_up = self.counting.lookups
        self.assertIn(b"auth-failed", self.hello(TOKEN))
        self.assertEqual(self.counting.lookups, looked_up, "looked up during the back-off")
        self.assertIn(b"auth_ok", self.hello(TOKEN, host="203.0.113.99"))
        self.clock.advance(limits.auth_backoff)
        self.assertIn(b"auth_ok", self.hello(TOKEN))
        self.assertIn(b"auth-failed", self.hello("wrong-token-0000000"))
        self.assertEqual(self.factory.guard.may_authenticate(HOST), 0)

    def test_backoffGrows(self) -> None:
        """Each further failure doubles the wait, up to auth_backoff_max."""
        guard = PeerGuard(self.clock, PeerLimits(auth_free_failures=1, auth_backoff_max=8))
        waits = []
        for _ in range(7):
            guard.auth_failed(HOST)
            waits.append(guard.may_authenticate(HOST))
        self.assertEqual(waits, [0, 1, 2, 4, 8, 8, 8])


class GuardTests(PlatformTestCase):
    """PeerGuard on its own."""

    def test_bounded(self) -> None:
        """At most MAX_TRACKED addresses are remembered."""
        guard = PeerGuard(self.clock)
        for n in range(MAX_TRACKED + 10):
            guard.auth_failed(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
        self.assertEqual(guard.tracked, MAX_TRACKED)

    def test_refused(self) -> None:
        """Limits are positive numbers."""
        for bad in ({"preauth_rate": 0}, {"max_connections_per_peer": True}, {"auth_backoff": -1}):
            self.assertRaises(ValueError, PeerLimits, **bad)
        self.assertRaises(ValueError, PeerLimits, auth_backoff=10, auth_backoff_max=1)
        self.assertRaises(ValueError, ChannelSettings, max_send_buffer=10)
        self.assertRaises(ValueError, ChannelSettings, stall_timeout=0)
