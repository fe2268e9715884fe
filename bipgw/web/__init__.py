"""The HTTP JSON API: card sessions over request/response, for platforms without a socket.

Same semantics as the platform channel (L{bipgw.platform}), reached with a
bearer token instead of a framed TLS connection:

  - L{HttpApi}: the API's state over a L{bipgw.core.Tenancy} (share the
    platform server's, so limits count both doors), and its resource;
  - L{HttpApiService}: listens on an endpoint string (TLS by C{ssl:...});
  - L{openapi_document}: the OpenAPI 3.1 document, served at
    C{/v1/openapi.json} and kept in C{docs/openapi.json};
  - L{STATUS_OF}: the HTTP status of every error code.

The routes and a worked exchange are in C{docs/http-api.md}.
"""

from bipgw.web._api import STATUS_OF, ApiError, ApiResource, ApiSettings, HttpApi, status_json
from bipgw.web._events import EventStreams, event_json, sse_frame
from bipgw.web._openapi import ERROR_STATUSES, openapi_document
from bipgw.web._relay import TenantRelay
from bipgw.web._service import HttpApiService, LimitedRequest, api_site

__all__ = [
    "ERROR_STATUSES",
    "STATUS_OF",
    "ApiError",
    "ApiResource",
    "ApiSettings",
    "EventStreams",
    "HttpApi",
    "HttpApiService",
    "LimitedRequest",
    "TenantRelay",
    "api_site",
    "event_json",
    "openapi_document",
    "sse_frame",
    "status_json",
]
