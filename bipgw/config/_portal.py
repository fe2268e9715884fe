# -*- test-case-name: tests.unit.config.test_portal -*-
"""The optional C{[portal]} table: the operator portal's listener and its limits.

Left out, the gateway serves no portal.  TLS comes from the endpoint
string (C{ssl:8444:privateKey=key.pem:certKey=cert.pem}), as for
C{[http_api]}; over TLS the session cookie is marked C{Secure}.  A plain
C{tcp:} listener belongs on a loopback interface or behind a TLS proxy.
"""

from __future__ import annotations

from typing import Any

import attrs

from bipgw.config._kinds import SECONDS, Integer
from bipgw.config._listen import backlog_field, listen_field
from bipgw.config._netkinds import brings_tls, with_backlog
from bipgw.config._schema import keyword_setting

#: The portal's own defaults (bipgw.web.portal.PortalSettings has the same).
PORTAL_DEFAULTS: dict[str, Any] = {
    "idle_timeout": 900.0,
    "max_event_clients": 32,
    "max_upload": 64 * 1024 * 1024,
    "login_free_failures": 3,
    "login_backoff": 1.0,
    "login_backoff_max": 300.0,
}


@attrs.frozen(kw_only=True)
class PortalSection:
    """C{[portal]}: the operator portal (docs/portal.md)."""

    listen: str = listen_field(
        "Where the operator portal listens, as a Twisted server endpoint string"
        " (ssl:... for TLS, which also marks the session cookie Secure).",
    )
    backlog: int = backlog_field()
    idle_timeout: float = keyword_setting(
        SECONDS,
        PORTAL_DEFAULTS["idle_timeout"],
        "Seconds an operator's login lasts without a request; then it must log in again.",
    )
    max_event_clients: int = keyword_setting(
        Integer(1, 10_000),
        PORTAL_DEFAULTS["max_event_clients"],
        "Live dashboard streams (Server-Sent Events) served at once; more get 503.",
    )
    max_upload: int = keyword_setting(
        Integer(1024, 1 << 30),
        PORTAL_DEFAULTS["max_upload"],
        "The largest file an operator may upload for import, in bytes (larger: refused,"
        " nothing imported).",
    )
    login_free_failures: int = keyword_setting(
        Integer(1, 1000),
        PORTAL_DEFAULTS["login_free_failures"],
        "Failed logins in a row (per operator name and per source address) before"
        " logins from it must wait.",
    )
    login_backoff: float = keyword_setting(
        SECONDS,
        PORTAL_DEFAULTS["login_backoff"],
        "The first wait after too many failed logins; it doubles with every further failure.",
    )
    login_backoff_max: float = keyword_setting(
        SECONDS,
        PORTAL_DEFAULTS["login_backoff_max"],
        "The longest wait; a name or address quiet this long starts afresh.",
    )

    @property
    def encrypted(self) -> bool:
        """Whether the portal is served over TLS (its cookie is then C{Secure})."""
        return brings_tls(self.listen)

    @property
    def endpoint(self) -> str:
        """L{listen} with L{backlog} applied: the endpoint string to listen on."""
        return with_backlog(self.listen, self.backlog)
