# -*- test-case-name: tests.unit.web.portal.test_service -*-
"""The portal as a service: its own listener (C{[portal] listen}), started with the gateway.

The site is the one every web concern of the gateway uses
(L{bipgw.web._site.web_site}): bodies capped (at C{max_upload} plus room
for the form around the file), connections timed and limited per peer,
tracebacks hidden, refused requests' log lines rate-limited.  Its gate
refuses, before reading a byte of the body, an upload announced larger
than that cap (C{413} with a page saying so: nothing is imported).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Site

from bipgw.tls import ListeningService
from bipgw.web._guard import ConnectionLimits
from bipgw.web._site import web_site
from bipgw.web.portal._portal import Portal, RefusedError
from bipgw.web.portal._routes import portal_app

__all__ = ["PORTAL_SERVICE", "PortalService", "portal_resource", "portal_site"]

PORTAL_SERVICE = "portal"
"""The name of the portal's service in the gateway (C{getServiceNamed})."""
FORM_ROOM = 64 * 1024
"""Bytes an upload's body may hold beyond the file itself (the form's other fields)."""


def portal_resource(portal: Portal) -> IResource:
    """The portal's pages as one resource."""
    resource: IResource = portal_app(portal).resource()
    return resource


def _gate(limit: int) -> Any:
    def gate(request: IRequest) -> Deferred[None]:
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return fail(
                RefusedError(
                    413, f"the upload is over {limit - FORM_ROOM} bytes: nothing was imported"
                )
            )
        return succeed(None)

    return gate


def refusal_page(failure: Failure) -> bytes:
    """A complete HTTP response refusing a request before its body (C{Connection: close})."""
    error = failure.value
    status, message = (
        (error.status, error.message) if isinstance(error, RefusedError) else (404, "no such page")
    )
    from markupsafe import escape

    body = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{status}</title></head>'
        f'<body><h1>{status}</h1><p id="message">{escape(message)}</p></body></html>'
    ).encode()
    reason = RESPONSES.get(status, b"Error")
    head = [
        b"HTTP/1.1 %d %s" % (status, reason),
        b"Content-Type: text/html; charset=utf-8",
        b"Cache-Control: no-store",
        b"Connection: close",
        b"Content-Length: %d" % len(body),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def portal_site(portal: Portal, reactor: Any = None) -> Site:
    """The portal's HTTP site (module docstring)."""
    limit = portal.settings.max_upload + FORM_ROOM
    return web_site(
        portal_resource(portal),
        max_body=limit,
        reactor=reactor,
        limits=ConnectionLimits(body_timeout=120.0, idle_timeout=60.0),
        gate=_gate(limit),
        refusal=refusal_page,
    )


class PortalService(ListeningService):
    """Serves the portal on an endpoint while running, named L{PORTAL_SERVICE};
    samples the metrics for the dashboard's charts meanwhile."""

    def __init__(
        self, portal: Portal, endpoint: str | IStreamServerEndpoint, reactor: Any = None
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        where = serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
        self.portal = portal
        self.site = portal_site(portal, reactor)
        super().__init__(where, self.site, "operator portal", drain=self._drain)
        self.setName(PORTAL_SERVICE)

    def startService(self) -> None:
        """Start sampling, then listen."""
        self.portal.sampler.start()
        super().startService()

    def _drain(self) -> None:
        self.portal.sampler.stop()
        events = getattr(self.portal, "events", None)
        if events is not None:
            events.stop()
        ratelog = getattr(self.site, "ratelog", None)
        if ratelog is not None:
            ratelog.flush()
