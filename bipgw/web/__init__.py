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

Importing Klein imports (so installs) Twisted's default reactor: only the
gateway's builder (L{bipgw.app}, imported by C{twistd} once it has chosen
its reactor) imports this package; the configuration does not.
"""

from __future__ import annotations

from bipgw.web._api import HttpApi, status_json
from bipgw.web._campaigns import CampaignApi, CampaignStreams, ICampaigns
from bipgw.web._events import EventStreams, IEventFeed, event_json, sse_frame
from bipgw.web._json import STATUS_OF, ApiError, Reply
from bipgw.web._metrics import (
    METRICS_SERVICE,
    IReadiness,
    MetricsService,
    health_resource,
    metrics_resource,
    metrics_root,
    metrics_site,
    ready_resource,
)
from bipgw.web._openapi import ERROR_STATUSES, openapi_document
from bipgw.web._relay import TenantRelay
from bipgw.web._routes import ApiRoutes
from bipgw.web._service import HTTP_API_SERVICE, HttpApiService, api_resource, api_site
from bipgw.web._settings import ApiSettings
from bipgw.web._site import LimitedRequest, mount, web_site

__all__ = [
    "ERROR_STATUSES",
    "HTTP_API_SERVICE",
    "METRICS_SERVICE",
    "STATUS_OF",
    "ApiError",
    "ApiRoutes",
    "ApiSettings",
    "CampaignApi",
    "CampaignStreams",
    "EventStreams",
    "HttpApi",
    "HttpApiService",
    "ICampaigns",
    "IEventFeed",
    "IReadiness",
    "LimitedRequest",
    "MetricsService",
    "Reply",
    "TenantRelay",
    "api_resource",
    "api_site",
    "event_json",
    "health_resource",
    "metrics_resource",
    "metrics_root",
    "metrics_site",
    "mount",
    "openapi_document",
    "ready_resource",
    "sse_frame",
    "status_json",
    "web_site",
]
