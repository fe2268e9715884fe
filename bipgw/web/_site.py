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

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes as unquote

from klein import Klein
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from werkzeug.routing import PathConverter

from bipgw.core import RateLimitedLog
from bipgw.web._guard import ConnectionLimits, GuardedSite
from bipgw.web._json import ApiError

__all__ = ["LimitedRequest", "mount", "web_site"]


class LimitedRequest(Request):
    """A request that stops buffering its body past C{max_body} bytes, and
    runs its site's C{gate} (the API's authentication) before any body byte.

    The resource then answers C{413}; without this a chunked body of
    unannounced length would be buffered whole before the resource runs.
    The gate starts once the headers are in; while it runs, the connection
    is not read, so no body byte is taken before it has decided.  A request
    it refuses gets C{refusal(failure)} at once (when it has a body) and the
    connection closes after the body, drained and never kept; the resource
    reads the gate's outcome with L{gate_outcome} instead of deciding again.
    """

    max_body = 65536
    gate: Callable[[IRequest], Deferred[Any]] | None = None
    refusal: Callable[[Failure], bytes] | None = None
    _body_bytes = 0
    _discard = False
    _refused = False
    _outcome: list[Any] | None = None
    _waiters: list[Deferred[Any]] | None = None

    def gotLength(self, length: int | None) -> None:
        self._body_bytes = 0
        kinds = self.requestHeaders.getRawHeaders(b"content-type") or []
        if any(not _PRINTABLE.fullmatch(kind) for kind in kinds):
            # twisted parses a POST's Content-Type with the email package, which
            # raises out of dataReceived on a control byte such as 0x1c (found by
            # the fuzzer): such a type is no media type, the API answers 415.
            self.requestHeaders.setRawHeaders(b"content-type", [b"invalid"])
        elif kinds and kinds[0].split(b";", 1)[0].strip().lower() == b"application/json":
            # A JSON body is never form arguments: skip twisted's parse of the
            # type with the email package (≈ 0.4 ms per API request, issue 14).
            self._parsePOSTFormSubmission = False
        super().gotLength(length if length is None or length <= self.max_body else None)
        gate = type(self).gate
        if gate is None:
            return
        self._outcome, self._waiters = None, []
        decided = gate(self)
        producer = IPushProducer(self.channel.transport, None) if length != 0 else None
        if decided.called:
            producer = None
        elif producer is not None:
            producer.pauseProducing()  # no body byte before the gate decides
        decided.addBoth(self._gated, length != 0, producer)

    def _gated(self, outcome: Any, has_body: bool, paused: IPushProducer | None) -> None:
        self._outcome = [outcome]
        waiters, self._waiters = self._waiters or [], []
        for waiter in waiters:
            waiter.callback(None)
        refusal = type(self).refusal
        channel = getattr(self, "channel", None)  # gone once the connection is lost
        if isinstance(outcome, Failure) and has_body:
            self._discard = True
            if refusal is not None and channel is not None:
                self._refused = True
                channel.persistent = False
                # Refused before twisted answers "Expect: 100-continue": it must not.
                self.requestHeaders.removeHeader(b"expect")
                channel.transport.write(refusal(outcome))
        if paused is not None and channel is not None:
            paused.resumeProducing()

    def gate_outcome(self) -> Deferred[Any] | None:
        """The gate's outcome (its result, or its failure), or C{None} when no gate ran."""
        if self._waiters is None:
            return None
        if self._outcome is not None:
            return succeed(None).addCallback(lambda _: _replay(self._outcome))
        waiter: Deferred[Any] = Deferred()
        self._waiters.append(waiter)
        return waiter.addCallback(lambda _: _replay(self._outcome))

    def handleContentChunk(self, data: bytes) -> None:
        room = self.max_body + 1 - self._body_bytes
        if room > 0 and not self._discard:
            super().handleContentChunk(data[:room])
        self._body_bytes += len(data)

    def process(self) -> None:
        if self._refused:  # answered when the headers came; the body was drained
            self.channel.loseConnection()
            return
        refusal = type(self).refusal
        if refusal is not None and not _utf8_url(self):
            # Klein would answer 400 and log a traceback for each such request
            # (one per request, from anyone): refused here instead, and closed.
            error = ApiError("not-found", "no resource: the path or Host header is not UTF-8")
            self.channel.persistent = False
            if self.channel.transport is not None:
                self.channel.transport.write(refusal(Failure(error)))
            self.channel.loseConnection()
            return
        super().process()


_PRINTABLE = re.compile(rb"[\t\x20-\x7e]*")


def _utf8_url(request: Request) -> bool:
    """Whether the path (percent-decoded, as Klein decodes it) and Host are UTF-8."""
    try:
        unquote(request.path).decode("utf-8")
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _replay(outcome: list[Any] | None) -> Any:
    assert outcome is not None
    value = outcome[0]
    if isinstance(value, Failure):
        value.raiseException()
    return value


def mount(mounts: Mapping[str, IResource]) -> IResource:
    """One resource serving each of C{mounts} under its path prefix.

    @param mounts: path prefix (C{"/"}, or C{"/portal/"} with its trailing
        slash) to the resource that serves the paths under it; the longest
        prefix that matches wins, whatever the order given.
    """
    root = Klein()
    root.url_map.merge_slashes = False  # the mounted apps see the path as sent
    root.url_map.converters["path"] = _AnyPath  # a %0A in a path is the mount's to refuse
    for prefix, resource in mounts.items():
        if not prefix.startswith("/"):
            raise ValueError(f"mount {prefix!r}: a prefix starts with /")
        root.route(prefix, branch=True, endpoint=f"mount {prefix}")(_serving(resource))
    composed: IResource = root.resource()
    return composed


class _AnyPath(PathConverter):
    """Werkzeug's C{path}, but matching a newline too: every path under a
    mount reaches it (werkzeug's own would answer an HTML 404 for C{%0A})."""

    regex = "(?s:[^/].*?)"


def _serving(resource: IResource) -> Any:
    def serve(request: IRequest) -> IResource:
        return resource

    return serve


_ACCESS = Logger(namespace="bipgw.web.access")
"""The access log of answered requests (refused ones go through the site's rate limit)."""


class _Site(GuardedSite):
    """A guarded site whose access-log lines for refused requests are rate-limited."""

    ratelog: RateLimitedLog

    def log(self, request: Any) -> None:
        line = self._logFormatter(self._logDateTime, request)
        if getattr(request, "code", 200) < 400:
            # One event per answered request, emitted directly (Site.log's
            # write to the legacy log file split and re-emitted each line:
            # a third of the line's cost, issue 14).
            _ACCESS.info("{line}", line=line)
            return
        self.ratelog.info("web-refused-request", "{line}", line=line)


def web_site(
    root: IResource,
    *,
    max_body: int,
    reactor: Any = None,
    limits: ConnectionLimits | None = None,
    gate: Callable[[IRequest], Deferred[Any]] | None = None,
    refusal: Callable[[Failure], bytes] | None = None,
) -> Site:
    """The HTTP site serving C{root}, its request bodies capped at C{max_body} bytes.

    @param reactor: for the connections' timeouts and the access log's rate
        limit (the global one if C{None}).
    @param limits: the connections' timeouts and per-peer limit
        (L{bipgw.web._guard}); the defaults if C{None}.
    @param gate: run on every request once its headers are in, before its
        body is read (L{LimitedRequest}); fails to refuse the request.
    @param refusal: the complete HTTP response refusing a request the gate
        failed, sent before its body.
    """
    attributes: dict[str, Any] = {"max_body": max_body}
    if gate is not None:
        attributes["gate"] = staticmethod(gate)
    if refusal is not None:
        attributes["refusal"] = staticmethod(refusal)
    limited = type("LimitedRequest", (LimitedRequest,), attributes)
    site = _Site(root, limits or ConnectionLimits(), requestFactory=limited, reactor=reactor)
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    site.ratelog = RateLimitedLog(Logger(namespace="bipgw.web.access"), reactor)
    site.displayTracebacks = False
    return site
