# -*- test-case-name: tests.unit.web.test_service -*-
"""The HTTP API as a service: one listening port, started and stopped with the gateway.

The listener is an endpoint string (C{tcp:8080:interface=127.0.0.1}, or
C{ssl:8443:privateKey=key.pem:certKey=cert.pem} for TLS, which is what a
deployment should use: bearer tokens must not cross a network in clear).
L{HttpApiService} is the one listening service every door uses
(L{bipgw.tls.ListeningService}), given the API's site; stopping it stops
listening, then ends the event streams and closes the API's sessions
cleanly (the cards get their C{204}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web.resource import IResource
from twisted.web.server import Site

from bipgw.tls import ListeningService
from bipgw.web._api import HttpApi
from bipgw.web._routes import ApiRoutes, refusal_response
from bipgw.web._site import mount, web_site

__all__ = ["HTTP_API_SERVICE", "HttpApiService", "api_resource", "api_site"]

HTTP_API_SERVICE = "http_api"
"""The name of the HTTP API's service in the gateway (C{getServiceNamed})."""


def api_resource(api: HttpApi) -> IResource:
    """Everything the HTTP door serves: the API's routes, mounted at the root."""
    return mount({"/": ApiRoutes(api).resource()})


def api_site(api: HttpApi, reactor: Any = None) -> Site:
    """The HTTP site serving C{api}, its request bodies capped at C{api.settings.max_body}.

    @param reactor: for the connections' idle timeouts (the global one if C{None}).
    """
    routes = ApiRoutes(api)
    return web_site(
        mount({"/": routes.resource()}),
        max_body=api.settings.max_body,
        reactor=reactor,
        limits=api.settings.limits(),
        gate=routes.gate,
        refusal=refusal_response,
    )


class HttpApiService(ListeningService):
    """Serves the HTTP API on an endpoint while running, named L{HTTP_API_SERVICE}.

    Its C{when_listening} fires with the port (the gateway's start waits
    for it); its drain is L{HttpApi.stop}.

    @ivar api: the API (its hub holds the engine and the tenant directory).
    """

    def __init__(
        self, api: HttpApi, endpoint: str | IStreamServerEndpoint, reactor: Any = None
    ) -> None:
        """
        @param api: the API to serve.
        @param endpoint: a server endpoint string or an endpoint.
        @param reactor: for endpoint strings and the connections' idle
            timeouts (the global one if C{None}).
        """
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        where = serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
        site = api_site(api, reactor)
        super().__init__(where, site, "HTTP API", drain=self._drain)
        self.api = api
        self._site = site
        self.setName(HTTP_API_SERVICE)

    def _drain(self) -> Deferred[Any]:
        """Close the API's sessions and streams; write what the access log's
        rate limit still counts (it schedules no timer past the stop)."""
        ratelog = getattr(self._site, "ratelog", None)
        if ratelog is not None:
            ratelog.flush()
        return self.api.stop()
