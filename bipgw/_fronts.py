"""The platforms' front doors of the running gateway: the channel and the HTTP API.

L{build_fronts} turns the optional C{[platform]} and C{[http_api]} tables
into listening services over the gateway's session engine: the platform
channel's service (L{bipgw.platform.platform_service}) and an
L{bipgw.web.HttpApiService} serving the HTTP JSON API.  Both share one
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
from twisted.python.failure import Failure

from bipgw.config import Config
from bipgw.core import SessionEngine, Tenancy
from bipgw.platform import PLATFORM_SERVICE, PlatformServerFactory, platform_service
from bipgw.store import IStore, StoreTenantDirectory
from bipgw.web import HTTP_API_SERVICE, HttpApi, HttpApiService

__all__ = [
    "HTTP_API_SERVICE",
    "PLATFORM_SERVICE",
    "build_fronts",
    "front_port",
    "start_fronts",
    "stop_fronts",
]


def build_fronts(
    config: Config,
    engine: SessionEngine,
    store: IStore,
    reactor: Any,
    *,
    platform_tls: Any = None,
) -> list[IService]:
    """The front doors C{config} opens, as services to start with the gateway.

    @param platform_tls: the TLS server options of C{[platform]}
        (L{bipgw.config.PlatformSection.tls_options}, read when the gateway
        was built so that a bad file stops it early); C{None} for none.
    @return: the platform channel's service named L{PLATFORM_SERVICE} if
        C{[platform]} is given, then an L{bipgw.web.HttpApiService} named
        L{HTTP_API_SERVICE} if C{[http_api]} is; both over one tenancy.
        Empty when neither is given.
    """
    tenancy = Tenancy(engine, StoreTenantDirectory(store), reactor)
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
