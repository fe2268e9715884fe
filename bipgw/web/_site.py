# -*- test-case-name: tests.unit.web.test_service -*-
"""One HTTP site for every web concern of the gateway, each mounted under its own path.

Each concern is a Klein app of its own (today the HTTP API's routes,
L{bipgw.web._routes}; the operator portal will be another).  L{mount}
composes them into one root resource: the concern mounted at C{"/"} takes
every path no other mount claims (the API, so that an unknown path gets
the API's JSON C{404}), and one mounted at C{"/portal/"} gets the paths
under it with C{/portal} as its script name.  L{web_site} serves that root
with request bodies capped (L{LimitedRequest}) and tracebacks hidden.

The access log keeps a line per answered request, but requests answered
with an error (400 and above: bad tokens, malformed bodies, unknown paths,
anything a client without credentials can send at will) go through a
L{bipgw.core.RateLimitedLog}: a flood of them costs a few lines and a count
per minute (issue 15).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from bipgw.core import RateLimitedLog

__all__ = ["LimitedRequest", "mount", "web_site"]


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


def mount(mounts: Mapping[str, IResource]) -> IResource:
    """One resource serving each of C{mounts} under its path prefix.

    @param mounts: path prefix (C{"/"}, or C{"/portal/"} with its trailing
        slash) to the resource that serves the paths under it; the longest
        prefix that matches wins, whatever the order given.
    """
    root = Klein()
    root.url_map.merge_slashes = False  # the mounted apps see the path as sent
    for prefix, resource in mounts.items():
        if not prefix.startswith("/"):
            raise ValueError(f"mount {prefix!r}: a prefix starts with /")
        root.route(prefix, branch=True, endpoint=f"mount {prefix}")(_serving(resource))
    composed: IResource = root.resource()
    return composed


def _serving(resource: IResource) -> Any:
    def serve(request: IRequest) -> IResource:
        return resource

    return serve


class _Site(Site):
    """A site whose access-log lines for refused requests are rate-limited."""

    ratelog: RateLimitedLog

    def log(self, request: Any) -> None:
        if getattr(request, "code", 200) < 400:
            super().log(request)
            return
        line = self._logFormatter(self._logDateTime, request)
        self.ratelog.info("web-refused-request", "{line}", line=line)


def web_site(root: IResource, *, max_body: int, reactor: Any = None) -> Site:
    """The HTTP site serving C{root}, its request bodies capped at C{max_body} bytes.

    @param reactor: for the connections' idle timeouts and the access log's
        rate limit (the global one if C{None}).
    """
    limited = type("LimitedRequest", (LimitedRequest,), {"max_body": max_body})
    site = _Site(root, requestFactory=limited, reactor=reactor)
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    site.ratelog = RateLimitedLog(Logger(namespace="bipgw.web.access"), reactor)
    site.displayTracebacks = False
    return site
