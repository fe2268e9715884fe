"""Tests for L{bipgw.tls.ListeningService}, the one listening service of every door."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.tls import ListeningService


class _Endpoint:
    """A server endpoint on a L{MemoryReactorClock}, or one that refuses."""

    def __init__(self, reactor: MemoryReactorClock, refuse: bool = False) -> None:
        self.reactor = reactor
        self.refuse = refuse
        self.pending: Deferred[object] | None = None

    def listen(self, factory: Factory) -> Deferred[object]:
        if self.refuse:
            return fail(CannotListenError("127.0.0.1", 1, OSError("address in use")))
        return succeed(self.reactor.listenTCP(0, factory))


class ListeningServiceTests(SynchronousTestCase):
    """Start, report the port, stop, drain."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = Factory.forProtocol(Protocol)

    def test_port_before_and_after_start(self) -> None:
        """A waiter asked before the start fires with the port once listening;
        one asked afterwards fires at once with the same port."""
        service = ListeningService(_Endpoint(self.reactor), self.factory, "test door")
        early = service.when_listening()
        self.assertNoResult(early)
        service.startService()
        port = self.successResultOf(early)
        self.assertIs(port, service.port)
        self.assertIs(self.successResultOf(service.when_listening()), port)

    def test_failure_reported_to_waiters(self) -> None:
        """A listen that fails fails every waiter, early and late, until the
        next start."""
        service = ListeningService(_Endpoint(self.reactor, refuse=True), self.factory, "door")
        early = service.when_listening()
        service.startService()
        self.failureResultOf(early, CannotListenError)
        self.failureResultOf(service.when_listening(), CannotListenError)
        self.assertIsNone(service.port)
        self.flushLoggedErrors(CannotListenError)

    def test_stop_closes_port_then_drains(self) -> None:
        """Stopping stops listening first, then runs the drain, and fires only
        when the drain's Deferred fires."""
        order: list[str] = []
        drained: Deferred[None] = Deferred()

        def drain() -> Deferred[None]:
            order.append("drain")
            self.assertEqual(self.reactor.tcpServers[0][0], 0)
            return drained

        service = ListeningService(_Endpoint(self.reactor), self.factory, "door", drain=drain)
        service.startService()
        port = service.port
        assert port is not None
        stopping = service.stopService()
        self.assertEqual(order, ["drain"])
        self.assertIsNone(service.port)
        self.assertNoResult(stopping)
        drained.callback(None)
        self.assertIsNone(self.successResultOf(stopping))

    def test_restart_listens_again(self) -> None:
        """A stopped service can start again and reports its new port."""
        service = ListeningService(_Endpoint(self.reactor), self.factory, "door")
        service.startService()
        self.successResultOf(service.stopService())
        waiter = service.when_listening()
        self.assertNoResult(waiter)
        service.startService()
        self.assertIs(self.successResultOf(waiter), service.port)
