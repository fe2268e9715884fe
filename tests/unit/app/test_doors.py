"""Tests for L{bipgw.app.front_doors}: the front doors built from [platform] and [http_api].

The platform channel's service itself is tested in tests.unit.platform.test_service.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import HTTP_API_SERVICE, PLATFORM_SERVICE, front_doors
from bipgw.config import Config, HttpApiSection, PlatformSection
from bipgw.core import SessionEngine
from bipgw.platform import ChannelSettings, PlatformServerFactory
from bipgw.store import MemoryStore, StoreTenantDirectory
from bipgw.tls import ListeningService
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
    header_timeout=4.0,
    body_timeout=6.0,
    idle_timeout=8.0,
    max_connections_per_peer=9,
    stream_buffer=8192,
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
        return list(front_doors(config, self.engine, self.store, self.reactor))


class BuildTests(SynchronousTestCase):
    """Which services are built, and from what."""

    def setUp(self) -> None:
        self.parts = _Parts()

    def test_noTables(self) -> None:
        """Without [platform] and [http_api] no door is built."""
        self.assertEqual(self.parts.build(), [])

    def test_both(self) -> None:
        """Both tables give the channel then the API, named, over one tenancy."""
        channel, http = self.parts.build(platform=PLATFORM, http_api=HTTP_API)
        self.assertIsInstance(channel, ListeningService)
        self.assertIsInstance(http, HttpApiService)
        self.assertEqual((channel.name, http.name), (PLATFORM_SERVICE, HTTP_API_SERVICE))
        factory = channel.factory
        self.assertIsInstance(factory, PlatformServerFactory)
        self.assertIs(http.api.hub, factory.tenancy)
        self.assertIs(factory.tenancy.engine, self.parts.engine)
        self.assertIsInstance(factory.tenancy.tenants, StoreTenantDirectory)
        self.assertEqual(factory.max_connections, 7)
        self.assertEqual(
            factory.settings,
            ChannelSettings(auth_timeout=5.0, heartbeat_interval=None, max_frame=4096),
        )
        self.assertEqual(
            http.api.settings,
            ApiSettings(
                max_body=1024,
                ready_wait=3.0,
                keepalive=2.0,
                keep_sessions=5,
                header_timeout=4.0,
                body_timeout=6.0,
                idle_timeout=8.0,
                max_connections_per_peer=9,
                stream_buffer=8192,
            ),
        )
        # The connection limits reach the site the API listens with, and the
        # token gate its requests.
        site = http.factory
        self.assertEqual(
            (site.limits.header_timeout, site.limits.idle_timeout, site.limits.max_per_peer),
            (4.0, 8.0, 9),
        )
        self.assertIsNotNone(site.requestFactory.gate)

    def test_httpOnly(self) -> None:
        """[http_api] alone builds the API over a tenancy of its own."""
        (http,) = self.parts.build(http_api=HTTP_API)
        self.assertIsInstance(http, HttpApiService)
        self.assertIs(http.api.hub.engine, self.parts.engine)
        self.assertIsInstance(http.api.hub.tenants, StoreTenantDirectory)

    def test_platformOnly(self) -> None:
        """[platform] alone builds only the channel."""
        (channel,) = self.parts.build(platform=PLATFORM)
        self.assertEqual(channel.name, PLATFORM_SERVICE)


class BacklogTests(SynchronousTestCase):
    """Each door listens with its table's backlog (issue 15): Twisted's 50 is too few."""

    def test_backlog(self) -> None:
        """The channel and the API pass backlog to listen; 1024 by default."""
        parts = _Parts()
        doors = parts.build(platform=attrs.evolve(PLATFORM, backlog=77), http_api=HTTP_API)
        for door in doors:
            door.startService()
        listened = {port: backlog for port, _, backlog, _ in parts.reactor.tcpServers}
        self.assertEqual(listened, {7443: 77, 8080: 1024})
        for door in doors:
            door.stopService()


class _FailingEndpoint:
    """A server endpoint whose port is taken."""

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return fail(CannotListenError("127.0.0.1", 7443, OSError("in use")))


class HttpApiServiceTests(SynchronousTestCase):
    """The HTTP API's listener says when it listens."""

    def test_whenListening(self) -> None:
        """when_listening fires with the port once the API listens, and resets on stop."""
        parts = _Parts()
        (http,) = parts.build(http_api=HTTP_API)
        http.startService()
        port = self.successResultOf(http.when_listening())
        self.assertIs(http.port, port)
        self.assertEqual(parts.reactor.tcpServers[0][0], 8080)
        self.successResultOf(http.stopService())
        self.assertNoResult(http.when_listening())

    def test_listenFailure(self) -> None:
        """A port that cannot be had fails when_listening."""
        parts = _Parts()
        api = parts.build(http_api=HTTP_API)[0].api
        http = HttpApiService(api, _FailingEndpoint(), parts.reactor)  # type: ignore[arg-type]
        http.startService()
        self.failureResultOf(http.when_listening(), CannotListenError)
        self.flushLoggedErrors(CannotListenError)


class DemoTableTests(SynchronousTestCase):
    """The [platform] table bipgw demo adds is a valid, plain loopback listener."""

    def test_demoTable(self) -> None:
        """platform_table(port) reads back as a channel on that port of 127.0.0.1, without TLS."""
        from bipgw.demo import platform_table

        platform = Config.from_string(MINIMAL + platform_table(47823)).platform
        assert platform is not None
        self.assertEqual(platform.listen, "tcp:47823:interface=127.0.0.1")
        self.assertFalse(platform.encrypted)
