# -*- test-case-name: tests.unit.test_fronts,tests.integration.test_platform_e2e -*-
"""The platforms' front doors of the running gateway: the channel and the HTTP API.

L{build_fronts} turns the optional C{[platform]} and C{[http_api]} tables
into listening services over the gateway's session engine: a
L{PlatformService} serving the framed platform channel and an
L{bipgw.web.HttpApiService} serving the HTTP JSON API.  Both share one
L{bipgw.platform.PlatformHub}, so a tenant's session and command limits
count both doors, and both find tenants in the application store
(L{bipgw.platform.StoreTenantDirectory}), where C{bipgw tenant ...} keeps
them.  A table left out builds nothing: that door stays closed.

The fronts are the first thing stopped when the gateway stops: no new
platform gets in, and every session a platform still has is closed cleanly
(the engine lets the running command finish and answers the card C{204})
while the admin server's grace period still lets the cards finish.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, IServiceCollection, Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.config import Config
from bipgw.core import SessionEngine
from bipgw.platform import (
    ChannelSettings,
    PlatformHub,
    PlatformServerFactory,
    PlatformServerProtocol,
    listen,
)
from bipgw.platform._store_tenants import StoreTenantDirectory
from bipgw.store import IStore
from bipgw.web import HTTP_API_SERVICE, HttpApi, HttpApiService

__all__ = [
    "DROP_WAIT",
    "HTTP_API_SERVICE",
    "PLATFORM_SERVICE",
    "PlatformService",
    "build_fronts",
    "front_port",
    "start_fronts",
    "stop_fronts",
]

PLATFORM_SERVICE = "platform"
"""The name of the platform channel's service in the gateway (C{getServiceNamed})."""

DROP_WAIT = 5.0
"""Seconds a platform connection has to close on stop before it is aborted
(a peer that reads nothing must not hold the gateway's shutdown)."""


class _Waiters:
    """Deferreds waiting for a port, fired once it is known or cannot be."""

    def __init__(self) -> None:
        self.port: IListeningPort | None = None
        self._failure: Failure | None = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def wait(self) -> Deferred[IListeningPort]:
        waiter: Deferred[IListeningPort] = Deferred()
        if self.port is not None:
            waiter.callback(self.port)
        elif self._failure is not None:
            waiter.errback(self._failure)
        else:
            self._waiting.append(waiter)
        return waiter

    def listened(self, port: IListeningPort) -> None:
        self.port, self._failure = port, None
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(port)

    def failed(self, failure: Failure) -> None:
        self._failure = failure
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(failure)

    def reset(self) -> None:
        self.port = self._failure = None


class _TrackedProtocol(PlatformServerProtocol):
    """A platform connection that tells its service when it has ended."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        ended = getattr(self.factory, "ended", None)
        if ended is not None:
            ended(self)


class _TrackedFactory(PlatformServerFactory):
    """The platform server factory, whose connections report their end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gone: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> PlatformServerProtocol:
        protocol = _TrackedProtocol()
        protocol.factory = self
        return protocol

    def ended(self, protocol: PlatformServerProtocol) -> None:
        if not self.connections:
            gone, self._gone = self._gone, []
            for waiter in gone:
                waiter.callback(None)

    def when_empty(self) -> Deferred[None]:
        """Fires once no connection is open."""
        if not self.connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._gone.append(waiter)
        return waiter


class PlatformService(Service):
    """Serves the platform channel on an endpoint while running.

    Stopping stops listening, then ends every connection; each connection
    that ends closes its card sessions cleanly (L{bipgw.platform}).

    @ivar factory: the server factory (its C{hub} is shared with the HTTP API).
    """

    _log = Logger()

    def __init__(
        self, factory: PlatformServerFactory, endpoint: str, reactor: Any, *, tls: Any = None
    ) -> None:
        self.factory = factory
        self._endpoint = endpoint
        self._reactor = reactor
        self._tls = tls
        self._ports = _Waiters()
        self._listening: Deferred[IListeningPort] | None = None

    @property
    def port(self) -> IListeningPort | None:
        """The listening port, while listening."""
        return self._ports.port

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fire with the port once listening (fails if listening failed)."""
        return self._ports.wait()

    def startService(self) -> None:
        super().startService()
        self._ports.reset()
        self._listening = listen(self._reactor, self._endpoint, self.factory, tls=self._tls)
        self._listening.addCallbacks(self._listened, self._not_listening)

    def _listened(self, port: IListeningPort) -> None:
        self._log.info(
            "platform channel listening on {address} ({tls})",
            address=port.getHost(),
            tls="TLS"
            if self._tls is not None or self._endpoint.startswith(("ssl:", "tls:"))
            else "no TLS: keep it on loopback",
        )
        self._ports.listened(port)

    def _not_listening(self, failure: Failure) -> None:
        self._log.failure("the platform channel could not listen", failure)
        self._ports.failed(failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is not None and not listening.called:
            listening.cancel()
        port = self._ports.port
        self._ports.reset()
        stopped: Deferred[Any] = maybeDeferred(port.stopListening) if port else succeed(None)
        return stopped.addBoth(lambda _: self._drop_connections())

    def _drop_connections(self) -> Deferred[None]:
        connections = list(self.factory.connections)
        if connections:
            self._log.info(
                "closing {n} platform connection(s): their sessions close", n=len(connections)
            )
        for protocol in connections:
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        factory = self.factory
        if not isinstance(factory, _TrackedFactory):
            return succeed(None)
        gone = factory.when_empty()
        if not gone.called:
            timer = self._reactor.callLater(DROP_WAIT, self._abort_connections)

            def closed(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            gone.addBoth(closed)
        return gone

    def _abort_connections(self) -> None:
        left = [p for p in self.factory.connections if p.transport is not None]
        self._log.warn(
            "{n} platform connection(s) did not close in {wait} s: aborted",
            n=len(left),
            wait=DROP_WAIT,
        )
        for protocol in left:
            protocol.transport.abortConnection()  # type: ignore[union-attr]


def build_fronts(
    config: Config,
    engine: SessionEngine,
    store: IStore,
    reactor: Any,
    *,
    platform_tls: Any = None,
    opener: Any = None,
) -> list[IService]:
    """The front doors C{config} opens, as services to start with the gateway.

    @param opener: how the doors open card sessions (C{(target, service) ->
        session}); the gateway's C{open_session}, so that secured services
        are wrapped.  C{None}: the engine's C{open}.
    @param platform_tls: the TLS server options of C{[platform]}
        (L{bipgw.config.PlatformSection.tls_options}, read when the gateway
        was built so that a bad file stops it early); C{None} for none.
    @return: a L{PlatformService} named L{PLATFORM_SERVICE} if C{[platform]}
        is given, then an L{bipgw.web.HttpApiService} named L{HTTP_API_SERVICE} if
        C{[http_api]} is; both over one hub.  Empty when neither is given.
    """
    tenants = StoreTenantDirectory(store)
    services: list[IService] = []
    hub: PlatformHub
    if config.platform is not None:
        factory = _TrackedFactory(
            engine,
            tenants,
            clock=reactor,
            settings=config.platform.channel_settings(),
            max_connections=config.platform.max_connections,
        )
        hub = factory.hub
        channel = PlatformService(factory, config.platform.listen, reactor, tls=platform_tls)
        channel.setName(PLATFORM_SERVICE)
        services.append(channel)
    else:
        hub = PlatformHub(engine, tenants, reactor, ChannelSettings())
    if opener is not None:
        hub.open_session = opener
    if config.http_api is not None:
        api = HttpApi(hub, config.http_api.api_settings())
        services.append(HttpApiService(api, config.http_api.listen, reactor))
    return services


def start_fronts(services: list[IService], parent: IServiceCollection) -> Deferred[None]:
    """Start C{services} as children of the (running) C{parent}.

    @return: fires once every front listens; fails with the first failure
        to listen (a port taken), so that the gateway's start fails.
    """
    for service in services:
        service.setServiceParent(parent)
    waiting = [getattr(service, "when_listening")() for service in services]  # noqa: B009
    listening: Deferred[list[Any]] = gatherResults(waiting, consumeErrors=True)
    done: Deferred[None] = Deferred()
    listening.addCallbacks(lambda _: done.callback(None), lambda f: done.errback(_first(f)))
    return done


def _first(failure: Failure) -> Failure:
    sub = getattr(failure.value, "subFailure", None)
    return sub if isinstance(sub, Failure) else failure


def front_port(services: list[IService], name: str) -> int | None:
    """The TCP port the front named C{name} listens on, if it is built and listening."""
    front = next((s for s in services if s.name == name), None)
    port = getattr(front, "port", None)
    return None if port is None else int(port.getHost().port)


def stop_fronts(services: list[IService]) -> Deferred[Any]:
    """Stop the running fronts together; fires when all have stopped."""
    stopping = [maybeDeferred(s.stopService) for s in services if s.running]
    return DeferredList(stopping, consumeErrors=True)
