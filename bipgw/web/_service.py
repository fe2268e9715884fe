# -*- test-case-name: tests.unit.web.test_service -*-
"""The HTTP API as a service: one listening port, started and stopped with the gateway.

The listener is an endpoint string (C{tcp:8080:interface=127.0.0.1}, or
C{ssl:8443:privateKey=key.pem:certKey=cert.pem} for TLS, which is what a
deployment should use: bearer tokens must not cross a network in clear).
Stopping the service ends the event streams, closes the API's sessions
cleanly (the cards get their C{204}) and then the port.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.server import Request, Site

from bipgw.web._api import HttpApi


class LimitedRequest(Request):
    """A request that stops buffering its body past C{max_body} bytes.

    The resource then answers C{413}; without this a chunked body of
    unannounced length would be buffered whole before the resource runs.
    """

    max_body = 65536

    def gotLength(self, length: int | None) -> None:
        self._body_bytes = 0
        super().gotLength(length if length is None or length <= self.max_body else None)

    def handleContentChunk(self, data: bytes) -> None:
        room = self.max_body + 1 - self._body_bytes
        if room > 0:
            super().handleContentChunk(data[:room])
        self._body_bytes += len(data)


def api_site(api: HttpApi, reactor: Any = None) -> Site:
    """The HTTP site serving C{api}, its request bodies capped at C{api.settings.max_body}.

    @param reactor: for the connections' idle timeouts (the global one if C{None}).
    """
    limited = type("LimitedRequest", (LimitedRequest,), {"max_body": api.settings.max_body})
    site = Site(api.resource(), requestFactory=limited, reactor=reactor)
    site.displayTracebacks = False
    return site


class HttpApiService(Service):
    """Serves the HTTP API on an endpoint while running.

    @param api: the API (its hub holds the engine and the tenant directory).
    @param endpoint: a server endpoint string or an endpoint.
    @param reactor: for endpoint strings.
    @ivar port: the listening port, once listening.
    """

    _log = Logger()

    def __init__(
        self, api: HttpApi, endpoint: str | IStreamServerEndpoint, reactor: Any = None
    ) -> None:
        self.api = api
        self._endpoint = endpoint
        self._reactor = reactor
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        super().startService()
        endpoint = self._endpoint
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if isinstance(endpoint, str):
            endpoint = serverFromString(reactor, endpoint)
        self._listening = endpoint.listen(api_site(self.api, reactor))
        self._listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._log.info("HTTP API listening on {address}", address=port.getHost())
        return port

    def _failed(self, failure: Any) -> None:
        self._log.failure("the HTTP API could not listen", failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        closed = self.api.stop()
        port, self.port = self.port, None
        if self._listening is not None and not self._listening.called:
            self._listening.cancel()
        done: Deferred[Any] = closed
        if port is not None:
            done.addBoth(lambda _: port.stopListening())
        else:
            done.addBoth(lambda _: succeed(None))
        return done.addBoth(lambda _: None)
