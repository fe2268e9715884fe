"""The SCP81 admin service: listening from an endpoint string, counters, graceful stop.

The reactor is a L{MemoryReactorClock}: listening is recorded rather than
done, and connections to the recorded factory run over iosim with real
TLS-PSK on both ends.
"""

from __future__ import annotations

import itertools
import resource
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import AdminRequest
from bipgw.core import (
    CardTarget,
    MemorySessionRecorder,
    SessionEngine,
    SessionError,
    SessionId,
    SessionState,
)
from bipgw.scp81 import AdminServer, AdminStats
from bipgw.scp81._service import FILE_HEADROOM, open_files_limit
from bipgw.tls import ListeningService, PskServerStats, TlsConfigError
from tests.unit.core import ICCID, POLICY, FakeDirectory, FakePushSender
from tests.unit.scp81 import KEY, KEY2, TlsLink

FIRST = AdminRequest(target="/admin", admin_from="agent-1")


class _Port:
    def __init__(self) -> None:
        self.stopped = False

    def stopListening(self) -> Deferred[None]:
        self.stopped = True
        return succeed(None)

    def getHost(self) -> str:
        return "fake:8443"


class _Endpoint:
    """An endpoint that records the factory it listens with."""

    def __init__(self, error: Exception | None = None) -> None:
        self.factory: Any = None
        self.port = _Port()
        self.error = error

    def listen(self, factory: Any) -> Deferred[_Port]:
        if self.error is not None:
            return fail(self.error)
        self.factory = factory
        return succeed(self.port)


class AdminServerTests(SynchronousTestCase):
    """The service owns the port and the connections' lifetime."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.addCleanup(lambda: self.assertEqual(self.reactor.getDelayedCalls(), []))
        self.sender = FakePushSender()
        self.sender.auto_accept = True
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.reactor,
            self.sender,
            FakeDirectory(),
            MemorySessionRecorder(),
            POLICY,
            new_id=lambda: next(ids),
        )
        self.keys = {ICCID.encode(): KEY}

    def server(self, **kwargs: Any) -> AdminServer:
        kwargs.setdefault("listen", "tcp:8443:interface=127.0.0.1")
        kwargs.setdefault("grace_period", 10)
        return AdminServer(
            self.reactor,
            self.engine,
            psk_lookup=self.keys.get,
            identity_to_iccid=lambda identity: identity.decode(),
            **kwargs,
        )

    def test_listensOnEndpointString(self) -> None:
        """startService listens where the endpoint string says, with TLS-PSK on top."""
        server = self.server()
        server.startService()
        ((port, factory, _, interface),) = self.reactor.tcpServers
        self.assertEqual((port, interface), (8443, "127.0.0.1"))
        self.assertIs(factory.wrappedFactory, server.factory)
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        self.assertIs(self.successResultOf(server.when_listening()), server.port)
        self.successResultOf(server.stopService())
        self.assertIsNone(server.port)

    def test_sessionThroughService(self) -> None:
        """A card connecting to the listening factory reaches its session; the
        counters show the handshake and the requests."""
        server = self.server()
        server.startService()
        session = self.engine.open(CardTarget.by_iccid(ICCID), "svc")
        link = TlsLink(self.reactor.tcpServers[0][1], ICCID.encode(), KEY, self.reactor)
        link.card.post(FIRST)
        link.pump.flush()
        self.assertIs(self.successResultOf(session.ready).state, SessionState.CONNECTED)
        closing = session.close()
        link.pump.flush()
        self.assertIs(self.successResultOf(closing).state, SessionState.CLOSED)
        self.assertEqual(server.tls_stats, PskServerStats(completed=1))
        self.assertEqual(server.stats, AdminStats(connections=1, requests=1))
        self.successResultOf(server.stopService())

    def test_wrongKeyCounted(self) -> None:
        """A handshake with a wrong key is refused and counted by the service."""
        server = self.server()
        server.startService()
        link = TlsLink(self.reactor.tcpServers[0][1], ICCID.encode(), KEY2, self.reactor)
        self.assertFalse(link.card.handshook)
        self.assertEqual(server.tls_stats, PskServerStats(key_mismatch=1))
        self.successResultOf(server.stopService())

    def test_stopWaitsForSessionsToFinish(self) -> None:
        """Stop stops listening at once but waits for open connections; a session
        that closes within the grace period ends normally."""
        endpoint = _Endpoint()
        server = self.server(listen=endpoint)
        server.startService()
        session = self.engine.open(CardTarget.by_iccid(ICCID), "svc")
        link = TlsLink(endpoint.factory, ICCID.encode(), KEY, self.reactor)
        link.card.post(FIRST)
        link.pump.flush()
        stopping = server.stopService()
        self.assertTrue(endpoint.port.stopped)
        self.assertNoResult(stopping)
        self.reactor.advance(5)
        self.assertNoResult(stopping)
        closing = session.close()
        link.pump.flush()
        self.assertIs(self.successResultOf(closing).state, SessionState.CLOSED)
        self.assertIsNone(self.successResultOf(stopping))

    def test_graceOverDropsConnections(self) -> None:
        """After the grace period the remaining connections are dropped; their
        sessions fail with CARD_DROPPED and the stop completes."""
        endpoint = _Endpoint()
        server = self.server(listen=endpoint)
        server.startService()
        session = self.engine.open(CardTarget.by_iccid(ICCID), "svc")
        link = TlsLink(endpoint.factory, ICCID.encode(), KEY, self.reactor)
        link.card.post(FIRST)
        link.pump.flush()
        running = session.execute([bytes.fromhex("80ca008500")])
        link.pump.flush()
        stopping = server.stopService()
        self.reactor.advance(9.9)
        self.assertNoResult(stopping)
        self.reactor.advance(0.1)
        link.pump.flush()
        self.successResultOf(stopping)
        error = self.failureResultOf(running, SessionError).value
        self.assertEqual(error.reason.value, "card-dropped")  # type: ignore[attr-defined]
        self.assertIsNotNone(link.card.lost)

    def test_stopWithoutConnections(self) -> None:
        """With no connection open, stop completes at once and leaves no timer."""
        server = self.server(listen=_Endpoint())
        server.startService()
        self.successResultOf(server.stopService())

    def test_listenFailure(self) -> None:
        """A port that cannot be opened is logged and reported to when_listening."""
        server = self.server(listen=_Endpoint(CannotListenError("127.0.0.1", 8443, OSError())))
        waiting = server.when_listening()
        server.startService()
        self.failureResultOf(waiting, CannotListenError)
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 1)
        self.successResultOf(server.stopService())

    def test_lateWaiterLearnsFailure(self) -> None:
        """Asked after a failed start, when_listening fails at once too."""
        server = self.server(listen=_Endpoint(CannotListenError("127.0.0.1", 8443, OSError())))
        server.startService()
        self.failureResultOf(server.when_listening(), CannotListenError)
        self.flushLoggedErrors(CannotListenError)
        self.successResultOf(server.stopService())

    def test_listenerIsTheSharedService(self) -> None:
        """The port is held by a L{ListeningService} with the admin factory,
        started and stopped with the server."""
        endpoint = _Endpoint()
        server = self.server(listen=endpoint)
        self.assertIsInstance(server.listener, ListeningService)
        self.assertIs(server.listener.factory, server.factory)
        server.startService()
        self.assertTrue(server.listener.running)
        self.assertIs(server.port, server.listener.port)
        self.successResultOf(server.stopService())
        self.assertFalse(server.listener.running)
        self.assertTrue(endpoint.port.stopped)

    def test_stopBeforeListening(self) -> None:
        """Stopping while the listen is still pending cancels it."""
        pending: Deferred[_Port] = Deferred()

        class Slow:
            def listen(self, factory: Any) -> Deferred[_Port]:
                return pending

        server = self.server(listen=Slow())
        server.startService()
        self.successResultOf(server.stopService())
        self.assertTrue(pending.called)
        self.flushLoggedErrors()

    def test_cipherPolicy(self) -> None:
        """Suites are configurable; NULL/3DES need allow_weak, and then work."""
        self.assertEqual(
            self.server(ciphers="PSK-AES128-CBC-SHA").tls_options.suites, ("PSK-AES128-CBC-SHA",)
        )
        with self.assertRaises(TlsConfigError) as ctx:
            self.server(ciphers="PSK-NULL-SHA256")
        self.assertIn("allow_weak", str(ctx.exception))
        weak = self.server(ciphers="PSK-NULL-SHA256:PSK-AES128-CBC-SHA256", allow_weak=True)
        self.assertIn("PSK-NULL-SHA256", weak.tls_options.suites)
        self.assertRaises(ValueError, self.server, grace_period=-1)


class FileLimitTests(SynchronousTestCase):
    """max_connections is checked against the open-file limit at start."""

    def start(self, max_connections: int, limit: int | None) -> list[str]:
        reactor = MemoryReactorClock()
        server = AdminServer(
            reactor,
            SessionEngine(reactor, FakePushSender(), FakeDirectory(), MemorySessionRecorder()),
            psk_lookup={}.get,
            identity_to_iccid=lambda identity: None,
            listen="tcp:8443:interface=127.0.0.1",
            max_connections=max_connections,
            files_limit=lambda: limit,
        )
        seen: list[str] = []
        observer = lambda event: seen.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        try:
            server.startService()
        finally:
            globalLogPublisher.removeObserver(observer)
        self.successResultOf(server.stopService())
        return [line for line in seen if "max_connections" in line]

    def test_tooCloseToTheLimit(self) -> None:
        """max_connections leaving under FILE_HEADROOM files: a warning saying what fits."""
        (line,) = self.start(19900, 20000)
        self.assertIn("max_connections = 19900", line)
        self.assertIn(f"lower max_connections to {20000 - FILE_HEADROOM}", line)

    def test_withinTheLimit(self) -> None:
        """Room enough, or no limit: nothing said."""
        self.assertEqual(self.start(20000 - FILE_HEADROOM, 20000), [])
        self.assertEqual(self.start(10**6, None), [])

    def test_processLimit(self) -> None:
        """The default reads the process's soft limit."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        expected = None if soft == resource.RLIM_INFINITY else soft
        self.assertEqual(open_files_limit(), expected)
