# -*- test-case-name: tests.unit.web.test_metrics_site,tests.integration.test_metrics_e2e -*-
"""C{/metrics}, C{/healthz} and C{/readyz}: what Prometheus and load balancers ask.

  - C{GET /metrics}: the gateway's registry in Prometheus' text format,
    served by prometheus_client's own Twisted resource
    (C{prometheus_client.twisted.MetricsResource}, which renders in the
    reactor's thread pool);
  - C{GET /healthz}: C{200 {"status": "alive"}} while the process answers;
  - C{GET /readyz}: C{200} with every check passed, else C{503} with a
    JSON body naming each check that is not (C{store}: the database answers
    C{SELECT 1}; C{smpp}: bound to the SMSC; C{listeners}: the gateway's
    parts started and its doors listening).

They are served on their own listener (C{[metrics] listen}, loopback by
default) by L{MetricsService}; the operator portal may mount the same
resources (L{metrics_resource}, L{health_resource}, L{ready_resource}).
Every listener authenticates: with C{[metrics] token_file} set, every
request needs C{Authorization: Bearer <token>} (compared in constant
time; C{401} otherwise); without it the listener must be on a loopback
interface (the configuration refuses anything else), so only local
processes, the node's own Prometheus agent, reach it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from bipgw.tls import ListeningService
from bipgw.web._site import web_site

__all__ = [
    "METRICS_SERVICE",
    "IReadiness",
    "MetricsService",
    "health_resource",
    "metrics_resource",
    "metrics_root",
    "metrics_site",
    "ready_resource",
]

METRICS_SERVICE: Final = "metrics"
"""The name of the metrics listener's service in the gateway."""

_JSON: Final = b"application/json"
#: Requests are GETs: a body is refused past this.
_MAX_BODY: Final = 1024


class IReadiness(Protocol):
    """What C{/readyz} asks (the gateway, L{bipgw.app.Gateway.readiness})."""

    def readiness(self) -> Deferred[Mapping[str, str | None]]:
        """Each check by name: C{None} when it passes, else why it does not.

        Never fails: a check that cannot be made is reported as not passing.
        """


def _json(request: Request, code: int, body: object) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", _JSON)
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


class _Leaf(Resource):
    """A resource at one path, for GET and HEAD only, answered by C{answer}:
    a JSON 404 below it, a JSON 405 for any other method (never twisted's
    HTML error pages)."""

    isLeaf = True

    def __init__(self, answer: Callable[[Request], Any]) -> None:
        super().__init__()
        self._answer = answer

    def render(self, request: Request) -> Any:
        if request.postpath and request.postpath != [b""]:
            return _json(request, 404, {"error": "not-found", "message": "no such resource"})
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            body = {"error": "method-not-allowed", "message": "only GET and HEAD"}
            return _json(request, 405, body)
        return self._answer(request)


def _alive(request: Request) -> bytes:
    return _json(request, 200, {"status": "alive"})


class _Ready:
    """Answers C{/readyz} from the readiness checks."""

    _log = Logger()

    def __init__(self, readiness: IReadiness) -> None:
        self._readiness = readiness

    def __call__(self, request: Request) -> Any:
        checks = self._readiness.readiness()
        checks.addCallbacks(
            self._answer, self._broken, callbackArgs=(request,), errbackArgs=(request,)
        )
        return NOT_DONE_YET

    def _answer(self, checks: Mapping[str, str | None], request: Request) -> None:
        failing = {name: why for name, why in checks.items() if why is not None}
        body: dict[str, object] = {"ready": not failing, "checks": {n: "ok" for n in checks}}
        body["checks"].update(failing)  # type: ignore[attr-defined]
        if failing:
            body["not_ready"] = sorted(failing)
        self._finish(request, _json(request, 503 if failing else 200, body))

    def _broken(self, failure: Failure, request: Request) -> None:
        self._log.failure("the readiness checks failed", failure)
        body = {"ready": False, "checks": {}, "not_ready": ["readiness"]}
        self._finish(request, _json(request, 503, body))

    @staticmethod
    def _finish(request: Request, body: bytes) -> None:
        if request.channel is None or getattr(request, "_disconnected", False):
            return
        request.write(body)
        request.finish()


def health_resource() -> IResource:
    """C{GET /healthz}: C{200 {"status": "alive"}}, as long as the process answers."""
    return _Leaf(_alive)


def ready_resource(readiness: IReadiness) -> IResource:
    """C{GET /readyz}: C{200} when every check of C{readiness} passes, else C{503}
    with C{{"ready": false, "checks": {...}, "not_ready": [names]}}."""
    return _Leaf(_Ready(readiness))


def metrics_resource(registry: CollectorRegistry) -> IResource:
    """C{GET /metrics}: C{registry} in Prometheus' text format
    (prometheus_client's Twisted resource), for GET and HEAD."""
    return _Leaf(_exposition(registry).render)


class _Bearer(Resource):
    """Every path under it needs C{Authorization: Bearer <token>} (else C{401})."""

    def __init__(self, wrapped: Resource, token: str) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._expected = b"Bearer " + token.encode("ascii")

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        given = request.getHeader(b"authorization") or b""
        if not hmac.compare_digest(given, self._expected):
            return _Refused()
        return self._wrapped.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes:
        given = request.getHeader(b"authorization") or b""
        if not hmac.compare_digest(given, self._expected):
            return _Refused().render(request)
        return self._wrapped.render(request)


class _Refused(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setHeader(b"www-authenticate", b'Bearer realm="bipgw-metrics"')
        return _json(request, 401, {"error": "unauthorized", "message": "a bearer token is needed"})


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return _json(request, 404, {"error": "not-found", "message": "no such resource"})


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> Resource:
        return _NotFound()

    def render(self, request: Request) -> bytes:
        return _json(
            request, 404, {"error": "not-found", "message": "see /metrics, /healthz, /readyz"}
        )


def _exposition(registry: CollectorRegistry) -> IResource:
    from prometheus_client.twisted import MetricsResource

    resource: IResource = MetricsResource(registry)
    return resource


def metrics_root(
    registry: CollectorRegistry,
    readiness: IReadiness,
    *,
    token: str | None = None,
    metrics: IResource | None = None,
) -> IResource:
    """The listener's resource tree: C{/metrics}, C{/healthz}, C{/readyz}.

    @param token: when given, every request needs it as a bearer token.
    @param metrics: what serves C{/metrics} (default: L{metrics_resource}
        of C{registry}).
    """
    root = _Root()
    exposition = metrics if metrics is not None else _exposition(registry)
    root.putChild(b"metrics", _Leaf(exposition.render))
    root.putChild(b"healthz", health_resource())
    root.putChild(b"readyz", ready_resource(readiness))
    if token is None:
        return root
    return _Bearer(root, token)


def metrics_site(
    registry: CollectorRegistry,
    readiness: IReadiness,
    *,
    token: str | None = None,
    reactor: Any = None,
    metrics: IResource | None = None,
) -> Site:
    """The metrics listener's site (L{metrics_root}), with the HTTP door's
    guards: small bodies only, header/idle timeouts, refusals logged at a
    bounded rate (L{bipgw.web.web_site})."""
    root = metrics_root(registry, readiness, token=token, metrics=metrics)
    return web_site(root, max_body=_MAX_BODY, reactor=reactor)


class MetricsService(ListeningService):
    """Serves L{metrics_site} on an endpoint while running, named L{METRICS_SERVICE}."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: IReadiness,
        endpoint: str | IStreamServerEndpoint,
        *,
        token: str | None = None,
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        where = serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
        site = metrics_site(registry, readiness, token=token, reactor=reactor)
        super().__init__(where, site, "metrics listener", drain=self._drain)
        self.site = site
        self.setName(METRICS_SERVICE)

    def _drain(self) -> None:
        ratelog = getattr(self.site, "ratelog", None)
        if ratelog is not None:
            ratelog.flush()
