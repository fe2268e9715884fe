"""Tests for bipgw._fronts: the front doors built from [platform] and [http_api]."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from bipgw._fronts import (
    DROP_WAIT,
    HTTP_API_SERVICE,
    PLATFORM_SERVICE,
    PlatformService,
    build_fronts,
    stop_fronts,
)
from bipgw.config import Config, HttpApiSection, PlatformSection
from bipgw.core import SessionEngine
from bipgw.platform import ChannelSettings, PlatformServerFactory
from bipgw.platform._store_tenants import StoreTenantDirectory
from bipgw.store import MemoryStore
from bipgw.web import ApiSettings, HttpApiService
from tests.unit.config import MINIMAL
from tests.unit.platform import POLICY, Fleet

PLATFORM = PlatformSection(
    listen="tcp:7443:interface=127.0.0.1",
    tls_certificate=None,
    tls_key=None,
    tls_ca=None,
    max_frame=4096,
    auth_timeout=5.0,
    heartbeat_interval=0.0,
    max_connections=7,
)
HTTP_API = HttpApiSection(
    listen="tcp:8080:interface=127.0.0.1",
    max_body=1024,
    ready_wait=3.0,
    keepalive=2.0,
    keep_sessions=5,
)


class _Parts:
    """An engine over fake cards, a memory store and a memory reactor."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.fleet = Fleet(self.reactor, 2)
        self.engine = SessionEngine(self.reactor, self.fleet, self.fleet, policy=POLICY)
        self.fleet.engine = self.engine
        self.store = MemoryStore()

    def build(self, **tables: Any) -> list[Any]:
        config = attrs.evolve(Config.from_string(MINIMAL), **tables)
        return list(build_fronts(config, self.engine, self.store, self.reactor))


class BuildTests(SynchronousTestCase):
    """Which services are built, and from what."""

    def setUp(self) -> None:
        self.parts = _Parts()

    def test_noTables(self) -> None:
        """Without [platform] and [http_api] no door is built."""
        self.assertEqual(self.parts.build(), [])

    def test_both(self) -> None:
        """Both tables give the channel then the API, named, over one hub."""
        channel, http = self.parts.build(platform=PLATFORM, http_api=HTTP_API)
        self.assertIsInstance(channel, PlatformService)
        self.assertIsInstance(http, HttpApiService)
        self.assertEqual((channel.name, http.name), (PLATFORM_SERVICE, HTTP_API_SERVICE))
        factory = channel.factory
        self.assertIs(http.api.hub, factory.hub)
        self.assertIs(factory.hub.engine, self.parts.engine)
        self.assertIsInstance(factory.hub.tenants, StoreTenantDirectory)
        self.assertEqual(factory.max_connections, 7)
        self.assertEqual(
            factory.hub.settings,
            ChannelSettings(auth_timeout=5.0, heartbeat_interval=None, max_frame=4096),
        )
        self.assertEqual(
            http.api.settings,
            ApiSettings(max_body=1024, ready_wait=3.0, keepalive=2.0, keep_sessions=5),
        )

    def test_httpOnly(self) -> None:
        """[http_api] alone builds the API over a hub of its own, with the channel defaults."""
        (http,) = self.parts.build(http_api=HTTP_API)
        self.assertIsInstance(http, HttpApiService)
        self.assertEqual(http.api.hub.settings, ChannelSettings())
        self.assertIsInstance(http.api.hub.tenants, StoreTenantDirectory)

    def test_platformOnly(self) -> None:
        """[platform] alone builds only the channel."""
        (channel,) = self.parts.build(platform=PLATFORM)
        self.assertIsInstance(channel, PlatformService)


class _FailingEndpoint:
    """A server endpoint whose port is taken."""

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return fail(CannotListenError("127.0.0.1", 7443, OSError("in use")))


class PlatformServiceTests(SynchronousTestCase):
    """The channel's listener: listening, and what stopping it does."""

    def setUp(self) -> None:
        self.parts = _Parts()
        (self.service,) = self.parts.build(platform=PLATFORM)

    def test_listens(self) -> None:
        """Starting listens on the configured endpoint; when_listening gives the port."""
        self.service.startService()
        port = self.successResultOf(self.service.when_listening())
        (listened,) = self.parts.reactor.tcpServers
        self.assertEqual((listened[0], listened[3]), (7443, "127.0.0.1"))
        self.assertIs(self.service.port, port)

    def test_listenFailure(self) -> None:
        """A port that cannot be had fails when_listening (the gateway's start fails)."""
        service = PlatformService(self.service.factory, "tcp:1", self.parts.reactor)
        service._endpoint = _FailingEndpoint()  # type: ignore[assignment]
        service.startService()
        self.failureResultOf(service.when_listening(), CannotListenError)
        self.flushLoggedErrors(CannotListenError)

    def test_stopDropsConnections(self) -> None:
        """Stopping stops listening, ends every connection and fires once they are gone."""
        self.service.startService()
        factory = self.service.factory
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(factory.connections, {protocol})

        stopped = self.service.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        protocol.connectionLost()
        self.successResultOf(stopped)
        self.assertFalse(self.service.running)
        self.assertIsNone(self.service.port)
        self.assertEqual(self.parts.reactor.getDelayedCalls(), [])

    def test_stalledConnectionAborted(self) -> None:
        """A connection that does not close within DROP_WAIT seconds is aborted."""
        self.service.startService()
        protocol = self.service.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        stopped = self.service.stopService()
        self.parts.reactor.advance(DROP_WAIT - 0.1)
        self.assertNoResult(stopped)
        aborted: list[bool] = []
        transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        self.parts.reactor.advance(0.1)
        self.assertEqual(aborted, [True])
        protocol.connectionLost()
        self.successResultOf(stopped)
        self.assertEqual(self.parts.reactor.getDelayedCalls(), [])
        self.flushLoggedErrors()

    def test_stopFronts(self) -> None:
        """stop_fronts stops every running front and skips the others."""
        self.service.startService()
        (http,) = self.parts.build(http_api=HTTP_API)
        self.successResultOf(stop_fronts([self.service, http]))
        self.assertFalse(self.service.running)


class FactoryTests(SynchronousTestCase):
    """The channel's factory is the platform server's, with connection tracking."""

    def test_isPlatformServerFactory(self) -> None:
        """The factory is a PlatformServerFactory (the protocol and limits are unchanged)."""
        (service,) = _Parts().build(platform=PLATFORM)
        self.assertIsInstance(service.factory, PlatformServerFactory)


class DemoTableTests(SynchronousTestCase):
    """The [platform] table bipgw demo adds is a valid, plain loopback listener."""

    def test_demoTable(self) -> None:
        """platform_table(port) reads back as a channel on that port of 127.0.0.1, without TLS."""
        from bipgw.demo import platform_table

        platform = Config.from_string(MINIMAL + platform_table(47823)).platform
        assert platform is not None
        self.assertEqual(platform.listen, "tcp:47823:interface=127.0.0.1")
        self.assertFalse(platform.encrypted)
