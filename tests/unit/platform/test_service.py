"""Tests for the platform channel's service: listening, and draining on stop."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import MemoryTenantDirectory, SessionEngine, Tenancy
from bipgw.platform import (
    DROP_WAIT,
    PLATFORM_SERVICE,
    PlatformServerFactory,
    drain_connections,
    platform_service,
)
from bipgw.tls import ListeningService
from tests.unit.platform import POLICY, Fleet


class _FailingEndpoint:
    """A server endpoint whose port is taken."""

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return fail(CannotListenError("127.0.0.1", 7443, OSError("in use")))


class PlatformServiceTests(SynchronousTestCase):
    """The channel's listener: listening, and what stopping it does."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        fleet = Fleet(self.reactor, 2)
        engine = SessionEngine(self.reactor, fleet, fleet, policy=POLICY)
        fleet.engine = engine
        tenancy = Tenancy(engine, MemoryTenantDirectory(), self.reactor)
        self.factory = PlatformServerFactory(tenancy)
        self.service = platform_service(self.factory, "tcp:7443:interface=127.0.0.1", self.reactor)

    def connect(self) -> tuple[object, StringTransport]:
        """A platform connection to the service's factory, over a string transport."""
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_isListeningService(self) -> None:
        """The service is the one listening service, named for the gateway, serving the factory."""
        self.assertIsInstance(self.service, ListeningService)
        self.assertEqual(self.service.name, PLATFORM_SERVICE)
        self.assertIs(self.service.factory, self.factory)

    def test_tlsWrapsFactory(self) -> None:
        """With TLS options, the factory is served inside a TLS wrapper."""
        from twisted.internet.ssl import CertificateOptions

        service = platform_service(self.factory, "tcp:7443", self.reactor, tls=CertificateOptions())
        wrapped = getattr(service.factory, "wrappedFactory", None)
        self.assertIs(wrapped, self.factory)

    def test_listens(self) -> None:
        """Starting listens on the configured endpoint; when_listening gives the port."""
        self.service.startService()
        port = self.successResultOf(self.service.when_listening())
        (listened,) = self.reactor.tcpServers
        self.assertEqual((listened[0], listened[3]), (7443, "127.0.0.1"))
        self.assertIs(self.service.port, port)

    def test_listenFailure(self) -> None:
        """A port that cannot be had fails when_listening (the gateway's start fails)."""
        service = platform_service(self.factory, _FailingEndpoint(), self.reactor)  # type: ignore[arg-type]
        service.startService()
        self.failureResultOf(service.when_listening(), CannotListenError)
        self.flushLoggedErrors(CannotListenError)

    def test_stopDropsConnections(self) -> None:
        """Stopping stops listening, ends every connection and fires once they are gone."""
        self.service.startService()
        protocol, transport = self.connect()
        self.assertEqual(self.factory.connections, {protocol})

        stopped = self.service.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        protocol.connectionLost()  # type: ignore[attr-defined]
        self.successResultOf(stopped)
        self.assertFalse(self.service.running)
        self.assertIsNone(self.service.port)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stalledConnectionAborted(self) -> None:
        """A connection that does not close within DROP_WAIT seconds is aborted."""
        self.service.startService()
        protocol, transport = self.connect()
        stopped = self.service.stopService()
        self.reactor.advance(DROP_WAIT - 0.1)
        self.assertNoResult(stopped)
        aborted: list[bool] = []
        transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        self.reactor.advance(0.1)
        self.assertEqual(aborted, [True])
        protocol.connectionLost()  # type: ignore[attr-defined]
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.flushLoggedErrors()


class DrainTests(SynchronousTestCase):
    """drain_connections on its own."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        fleet = Fleet(self.clock, 1)
        engine = SessionEngine(self.clock, fleet, fleet, policy=POLICY)
        fleet.engine = engine
        self.factory = PlatformServerFactory(Tenancy(engine, MemoryTenantDirectory(), self.clock))

    def test_nothingOpen(self) -> None:
        """Without connections the drain is done at once and leaves no timer."""
        self.successResultOf(drain_connections(self.factory, self.clock, 1.0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_whenEmpty(self) -> None:
        """when_empty fires once the last connection has ended."""
        first, second = self.factory.buildProtocol(None), self.factory.buildProtocol(None)
        first.makeConnection(StringTransport())
        second.makeConnection(StringTransport())
        empty = self.factory.when_empty()
        first.connectionLost()
        self.assertNoResult(empty)
        second.connectionLost()
        self.successResultOf(empty)
        self.assertEqual(self.factory.connections, set())
        for call in self.clock.getDelayedCalls():
            call.cancel()
