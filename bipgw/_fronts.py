"""The platforms' front doors of the running gateway: the channel and the HTTP API.

L{build_fronts} turns the optional C{[platform]} and C{[http_api]} tables
into listening services over the gateway's session engine: the platform
channel's service (L{bipgw.platform.platform_service}) and an
L{HttpFrontService} serving the HTTP JSON API.  Both share one
L{bipgw.core.Tenancy}, so a tenant's session and command limits count both
doors, and both find tenants in the application store
(L{bipgw.store.StoreTenantDirectory}), where C{bipgw tenant ...} keeps
them.  A table left out builds nothing: that door stays closed.

The fronts are the first thing stopped when the gateway stops: no new
platform gets in, and every session a platform still has is closed cleanly
(the engine lets the running command finish and answers the card C{204})
while the admin server's grace period still lets the cards finish.

What is left here is the HTTP side and the build/start/stop helpers; the
platform channel's service lives in L{bipgw.platform}.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, IServiceCollection
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure

from bipgw.config import Config
from bipgw.core import Opener, SessionEngine, Tenancy
from bipgw.platform import PLATFORM_SERVICE, PlatformServerFactory, platform_service
from bipgw.store import IStore, StoreTenantDirectory
from bipgw.web import HttpApi, HttpApiService

__all__ = [
    "HTTP_API_SERVICE",
    "PLATFORM_SERVICE",
    "HttpFrontService",
    "build_fronts",
    "front_port",
    "start_fronts",
    "stop_fronts",
]

HTTP_API_SERVICE = "http_api"
"""The name of the HTTP API's service in the gateway."""


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


class HttpFrontService(HttpApiService):
    """L{HttpApiService} that says when it listens (L{when_listening})."""

    def __init__(self, api: HttpApi, endpoint: str, reactor: Any) -> None:
        super().__init__(api, endpoint, reactor)
        self._ports = _Waiters()

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fire with the port once listening (fails if listening failed)."""
        return self._ports.wait()

    def startService(self) -> None:
        self._ports.reset()
        super().startService()

    def _listened(self, port: IListeningPort) -> IListeningPort:
        super()._listened(port)
        self._ports.listened(port)
        return port

    def _failed(self, failure: Any) -> None:
        super()._failed(failure)
        self._ports.failed(failure)

    def stopService(self) -> Deferred[None]:
        self._ports.reset()
        return super().stopService()


def build_fronts(
    config: Config,
    engine: SessionEngine,
    store: IStore,
    reactor: Any,
    *,
    platform_tls: Any = None,
    opener: Opener | None = None,
) -> list[IService]:
    """The front doors C{config} opens, as services to start with the gateway.

    @param opener: how the doors open card sessions (C{(target, service) ->
        session}); the gateway's C{open_session}, so that secured services
        are wrapped.  C{None}: the engine's C{open}.
    @param platform_tls: the TLS server options of C{[platform]}
        (L{bipgw.config.PlatformSection.tls_options}, read when the gateway
        was built so that a bad file stops it early); C{None} for none.
    @return: the platform channel's service named L{PLATFORM_SERVICE} if
        C{[platform]} is given, then an L{HttpFrontService} named
        L{HTTP_API_SERVICE} if C{[http_api]} is; both over one tenancy.
        Empty when neither is given.
    """
    tenancy = Tenancy(engine, StoreTenantDirectory(store), reactor, opener=opener)
    services: list[IService] = []
    if config.platform is not None:
        factory = PlatformServerFactory(
            tenancy,
            settings=config.platform.channel_settings(),
            max_connections=config.platform.max_connections,
        )
        services.append(
            platform_service(factory, config.platform.listen, reactor, tls=platform_tls)
        )
    if config.http_api is not None:
        api = HttpApi(tenancy, config.http_api.api_settings())
        http = HttpFrontService(api, config.http_api.listen, reactor)
        http.setName(HTTP_API_SERVICE)
        services.append(http)
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
