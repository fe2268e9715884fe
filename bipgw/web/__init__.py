"""The HTTP JSON API: card sessions over request/response, for platforms without a socket.

Same semantics as the platform channel (L{bipgw.platform}), reached with a
bearer token instead of a framed TLS connection:

  - L{HttpApi} (C{_api}): the API's state over a L{bipgw.core.Tenancy}
    (share the platform server's, so limits count both doors): what each
    request does;
  - L{ApiRoutes} (C{_routes}): its routes, a Klein app, every answer JSON;
  - L{ApiError}, L{STATUS_OF} (C{_json}): the refusals and the HTTP status
    of every error code, and how request bodies are read;
  - L{mount}, L{web_site} (C{_site}): one site for every web concern, each
    its own Klein app under its own path (the operator portal will join the
    API there), request bodies capped (L{LimitedRequest});
  - L{HttpApiService} (C{_service}): listens on an endpoint string (TLS by
    C{ssl:...}), a L{bipgw.tls.ListeningService};
  - L{openapi_document}: the OpenAPI 3.1 document, served at
    C{/v1/openapi.json} and kept in C{docs/openapi.json}.

The routes and a worked exchange are in C{docs/http-api.md}.

Importing Klein imports (so installs) Twisted's default reactor, and the
configuration imports this package (for L{ApiSettings}) long before
C{twistd} has chosen a reactor.  So the names whose modules import Klein
are loaded when first used (L{__getattr__}), not when this package is.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bipgw.web._api import ApiSettings, HttpApi, status_json
from bipgw.web._events import EventStreams, event_json, sse_frame
from bipgw.web._json import STATUS_OF, ApiError, Reply
from bipgw.web._openapi import ERROR_STATUSES, openapi_document
from bipgw.web._relay import TenantRelay

if TYPE_CHECKING:
    from bipgw.web._routes import ApiRoutes
    from bipgw.web._service import HTTP_API_SERVICE, HttpApiService, api_resource, api_site
    from bipgw.web._site import LimitedRequest, mount, web_site

_WITH_KLEIN = {
    "ApiRoutes": "bipgw.web._routes",
    "HTTP_API_SERVICE": "bipgw.web._service",
    "HttpApiService": "bipgw.web._service",
    "api_resource": "bipgw.web._service",
    "api_site": "bipgw.web._service",
    "LimitedRequest": "bipgw.web._site",
    "mount": "bipgw.web._site",
    "web_site": "bipgw.web._site",
}
"""The public names whose modules import Klein, and those modules."""


def __getattr__(name: str) -> Any:
    """Load a name of L{_WITH_KLEIN} on first use (module docstring)."""
    module = _WITH_KLEIN.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ERROR_STATUSES",
    "HTTP_API_SERVICE",
    "STATUS_OF",
    "ApiError",
    "ApiRoutes",
    "ApiSettings",
    "EventStreams",
    "HttpApi",
    "HttpApiService",
    "LimitedRequest",
    "Reply",
    "TenantRelay",
    "api_resource",
    "api_site",
    "event_json",
    "mount",
    "openapi_document",
    "sse_frame",
    "status_json",
    "web_site",
]
