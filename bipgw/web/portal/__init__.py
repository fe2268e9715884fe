"""The operator portal: a server-rendered web UI of the gateway (docs/portal.md).

Served on its own listener (C{[portal] listen}) by L{PortalService}:
operators log in (L{bipgw.store.SqlOperators}: roles viewer, operator,
admin), see the dashboard (the metrics registry, sampled into charts of
the last hour, live numbers over Server-Sent Events), browse sessions
with their event timelines and decoded APDU traces, search cards, manage
tenants and their services, decide service requests, upload imports and
read the audit log.  Klein routes, Jinja2 templates (autoescaped), a
small stylesheet and script: nothing to build.
"""

from bipgw.web.portal._auth import Backoff, LoginForm, Logins, PortalLogin
from bipgw.web.portal._charts import line_chart
from bipgw.web.portal._dashboard import DashboardSampler, quantile
from bipgw.web.portal._portal import Importer, Portal, PortalSettings, RefusedError
from bipgw.web.portal._service import PORTAL_SERVICE, PortalService, portal_resource, portal_site
from bipgw.web.portal._trace import TraceRow, apdu_script, decode_trace

__all__ = [
    "PORTAL_SERVICE",
    "Backoff",
    "DashboardSampler",
    "Importer",
    "LoginForm",
    "Logins",
    "Portal",
    "PortalLogin",
    "PortalService",
    "PortalSettings",
    "RefusedError",
    "TraceRow",
    "apdu_script",
    "decode_trace",
    "line_chart",
    "portal_resource",
    "portal_site",
    "quantile",
]
