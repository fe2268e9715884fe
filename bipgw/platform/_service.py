# -*- test-case-name: tests.unit.platform.test_service,tests.integration.test_platform_e2e -*-
"""The platform channel as a service of the gateway: one listener, drained on stop.

L{platform_service} serves a L{PlatformServerFactory} on an endpoint with
the one listening service every door uses (L{bipgw.tls.ListeningService}).
Stopping it stops listening, then ends every platform connection; each
connection that ends closes its card sessions cleanly (the engine lets the
running command finish and answers the card C{204}).  A connection that
does not close within L{DROP_WAIT} seconds (a peer that reads nothing) is
aborted, so that it cannot hold the gateway's shutdown.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from bipgw.platform._protocol import PlatformServerFactory
from bipgw.tls import ListeningService

__all__ = ["DROP_WAIT", "PLATFORM_SERVICE", "drain_connections", "platform_service"]

PLATFORM_SERVICE = "platform"
"""The name of the platform channel's service in the gateway (C{getServiceNamed})."""

DROP_WAIT = 5.0
"""Seconds a platform connection has to close on stop before it is aborted."""

_log = Logger()


def platform_service(
    factory: PlatformServerFactory,
    endpoint: str | IStreamServerEndpoint,
    reactor: Any,
    *,
    tls: Any = None,
    drop_wait: float = DROP_WAIT,
) -> ListeningService:
    """A service serving the platform channel on C{endpoint} while it runs.

    @param factory: the platform server (its tenancy is shared with the HTTP API).
    @param endpoint: a server endpoint string (C{ssl:...} brings its own TLS)
        or an endpoint.
    @param reactor: for endpoint strings, and the clock of L{DROP_WAIT}.
    @param tls: TLS server options to wrap the connections in (they may
        verify client certificates); C{None} when the endpoint does TLS
        itself, or for plain TCP on loopback.
    @param drop_wait: seconds a connection has to close on stop.
    @return: a L{ListeningService} named L{PLATFORM_SERVICE}; its
        C{when_listening} fires with the port.
    """
    where = serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    serving: Any = factory if tls is None else TLSMemoryBIOFactory(tls, False, factory)
    encrypted = tls is not None or (
        isinstance(endpoint, str) and endpoint.startswith(("ssl:", "tls:"))
    )

    def describe(port: IListeningPort) -> str:
        return "TLS" if encrypted else "no TLS: keep it on loopback"

    service = ListeningService(
        where,
        serving,
        "platform channel",
        drain=lambda: drain_connections(factory, reactor, drop_wait),
        describe=describe,
    )
    service.setName(PLATFORM_SERVICE)
    return service


def drain_connections(
    factory: PlatformServerFactory, clock: IReactorTime, wait: float = DROP_WAIT
) -> Deferred[None]:
    """End every connection of C{factory}; abort those still open after C{wait} s.

    @return: fires once no connection is left.
    """
    connections = list(factory.connections)
    if connections:
        _log.info("closing {n} platform connection(s): their sessions close", n=len(connections))
    for protocol in connections:
        protocol.close("the gateway is stopping")
    gone = factory.when_empty()
    if not gone.called:
        timer = clock.callLater(wait, _abort, factory, wait)

        def closed(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        gone.addCallback(closed)
    return gone


def _abort(factory: PlatformServerFactory, wait: float) -> None:
    left = [p for p in factory.connections if p.transport is not None]
    _log.warn(
        "{n} platform connection(s) did not close in {wait} s: aborted", n=len(left), wait=wait
    )
    for protocol in left:
        protocol.abort(f"did not close within {wait:g} s")
