# -*- test-case-name: tests.unit.web.portal.test_routes -*-
"""The portal's state and what every page needs: who is asking, may they, rendering, audit.

L{Portal} holds the parts the pages read and change (the store, the
operators, the browsing queries, the service requests, the dashboard
sampler, the importer), the logins and their back-off, and the Jinja2
environment (autoescaping on for every template: a tenant named
C{<script>} is shown as text).  The routes (L{bipgw.web.portal._routes},
L{bipgw.web.portal._admin_routes}) call L{Portal.login_of} and
L{Portal.require} first: a request without a live session is sent to the
login page (or refused C{401} on a form post), one whose operator's role
is too low is refused C{403}, and a form post whose CSRF token is not the
session's is refused C{403} before it changes anything.

Every change an operator makes is written to the audit log with the
operator's name as actor and the request's source address as origin.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from jinja2 import Environment, PackageLoader, select_autoescape
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from bipgw.core import RateLimitedLog
from bipgw.store import (
    AuditRecord,
    ImportReport,
    IOperators,
    IServiceRequests,
    IStore,
    Role,
    SqlBrowse,
    TokenDigest,
)
from bipgw.web.portal._auth import Backoff, LoginForm, Logins, PortalLogin
from bipgw.web.portal._dashboard import DashboardSampler

__all__ = ["Importer", "Portal", "PortalSettings", "RefusedError", "SeeOtherError"]

COOKIE = "bipgw_portal"
"""The session cookie's name."""
LOGIN_COOKIE = "bipgw_login"
"""The login form's nonce cookie (L{LoginForm})."""

#: An import: (kind "cards" or "msisdn", file bytes, file name, actor) -> the report.
Importer = Callable[[str, bytes, str, str], Deferred[ImportReport]]


@attrs.frozen(kw_only=True)
class PortalSettings:
    """How the portal behaves (C{[portal]}, docs/portal.md)."""

    idle_timeout: float = attrs.field(default=900.0, validator=attrs.validators.gt(0))
    max_event_clients: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    max_upload: int = attrs.field(default=64 * 1024 * 1024, validator=attrs.validators.ge(1024))
    login_free_failures: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    login_backoff: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    login_backoff_max: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    secure_cookies: bool = False
    event_interval: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))


class RefusedError(Exception):
    """A request the portal refuses: answered C{status} with C{message} on the error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SeeOtherError(Exception):
    """Answer C{303 See Other} to C{location} (after a form, or to the login page)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


_DUMMY = TokenDigest.of("not any operator's password")


class Portal:
    """The portal's parts and state (module docstring)."""

    _log = Logger()

    def __init__(
        self,
        *,
        store: IStore,
        operators: IOperators,
        browse: SqlBrowse,
        requests: IServiceRequests,
        sampler: DashboardSampler,
        clock: IReactorTime,
        settings: PortalSettings | None = None,
        importer: Importer | None = None,
        services: Sequence[str] = (),
        close_session: Callable[[str], Any] | None = None,
        observability: Mapping[str, Any] | None = None,
        scrape_token: str | None = None,
        run_slow: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """
        @param browse: the list and search queries (L{bipgw.store.SqlBrowse}).
        @param sampler: the dashboard's view of the metrics registry.
        @param importer: imports an uploaded file (C{None}: uploads refused).
        @param services: the gateway's services (C{[services.NAME]}), for grants.
        @param close_session: closes a live session by id (C{None}: not offered).
        @param observability: the resources the portal serves as C{/metrics},
            C{/healthz} and C{/readyz} (keys C{metrics}, C{healthz},
            C{readyz}; L{bipgw.web.metrics_resource} ...), to a logged-in
            operator or a scraper with C{scrape_token}; a missing one is 404.
        @param scrape_token: the bearer token that opens those three paths
            without a login (C{[metrics] token_file}); C{None}: logins only.
        @param run_slow: runs a password check off the reactor (inline if C{None}).
        @param wall: the wall clock, for audit records and times shown.
        """
        self.store = store
        self.operators = operators
        self.browse = browse
        self.requests = requests
        self.sampler = sampler
        self.clock = clock
        self.settings = settings or PortalSettings()
        self.importer = importer
        self.services = tuple(services)
        self.close_session = close_session
        self.observability = dict(observability or {})
        self._scrape = None if scrape_token is None else b"Bearer " + scrape_token.encode("ascii")
        self.wall = wall
        self._run_slow = run_slow or (lambda check: maybeDeferred(check))
        now = clock.seconds
        s = self.settings
        self.logins = Logins(now, idle_timeout=s.idle_timeout)
        self.login_form = LoginForm()
        self.backoff = Backoff(
            now,
            free_failures=s.login_free_failures,
            backoff=s.login_backoff,
            backoff_max=s.login_backoff_max,
        )
        self.ratelog = RateLimitedLog(Logger(namespace="bipgw.web.portal"), clock)
        self.templates = Environment(
            loader=PackageLoader("bipgw.web.portal", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters["when"] = _when
        self.templates.filters["tojson_compact"] = lambda v: json.dumps(v, sort_keys=True)
        self.events: Any = None  # the live streams (bipgw.web.portal._events)

    # -- who is asking ---------------------------------------------------------

    def login_of(self, request: IRequest) -> PortalLogin | None:
        """The request's live session, if its cookie names one."""
        raw = request.getCookie(COOKIE.encode())
        try:
            sid = raw.decode("ascii") if raw else None
        except UnicodeDecodeError:
            return None
        return self.logins.find(sid)

    async def require(
        self, request: IRequest, role: Role = Role.VIEWER, *, form: bool = False
    ) -> PortalLogin:
        """The request's session, its operator (still enabled) allowed C{role}.

        @param form: a state-changing form: its C{csrf} field must be the session's.
        @raise SeeOtherError: not logged in (a page: to the login page).
        @raise RefusedError: not logged in (a form), role too low, or wrong CSRF token.
        """
        login = self.login_of(request)
        if login is None:
            if form or request.method != b"GET":
                raise RefusedError(401, "not logged in, or the session expired: log in again")
            raise SeeOtherError("/login")
        operator = await self.operators.get(login.operator)
        if operator is None or not operator.enabled:
            self.logins.close_operator(login.operator)
            raise RefusedError(401, "this operator is disabled: log in as another")
        login.role = operator.role
        if form and not login.csrf_ok(field(request, "csrf")):
            raise RefusedError(403, "the form's CSRF token is missing or wrong: reload the page")
        if not login.role.allows(role):
            raise RefusedError(
                403,
                f"operator {login.operator} ({login.role.value}) may not do this:"
                f" it needs the {role.value} role",
            )
        return login

    async def require_scraper(self, request: IRequest) -> None:
        """C{/metrics}, C{/healthz}, C{/readyz}: a request bearing the scrape
        token (Prometheus), else a logged-in operator of any role.

        @raise RefusedError: a bearer token that is not the scrape token (C{401}).
        @raise SeeOtherError: no token and not logged in (to the login page).
        """
        given = request.getHeader(b"authorization")
        if given is not None and given[:7].lower() == b"bearer ":
            if self._scrape is None or not hmac.compare_digest(given, self._scrape):
                request.setHeader(b"www-authenticate", b'Bearer realm="bipgw-metrics"')
                raise RefusedError(401, "wrong bearer token for the metrics")
            return
        await self.require(request)

    async def check_password(self, name: str, password: str) -> Role | None:
        """The role of operator C{name} if C{password} is theirs and they are enabled.

        An unknown name costs a scrypt like a known one (no timing oracle).
        """
        operator = await self.operators.get(name) if name else None
        digest = operator.password if operator is not None else _DUMMY
        matched = await self._run_slow(lambda: digest.matches(password))
        if operator is None or not operator.enabled or not matched:
            return None
        return operator.role

    # -- what it changes ---------------------------------------------------------

    def audit(
        self,
        request: IRequest,
        login: PortalLogin | str,
        action: str,
        target: str,
        detail: str = "",
    ) -> Deferred[int]:
        """Write an audit record for an operator's action (never a secret in it)."""
        actor = login if isinstance(login, str) else login.operator
        origin = remote_address(request)
        record = AuditRecord(self.wall(), actor, action, target, detail, origin=origin)
        return self.store.add_audit(record)

    # -- rendering -------------------------------------------------------------

    def page(
        self, request: IRequest, template: str, login: PortalLogin | None, **context: Any
    ) -> bytes:
        """Render C{template} as the response (HTML, with the security headers)."""
        html = self.templates.get_template(template).render(
            login=login, role=login.role.value if login else None, Role=Role, **context
        )
        data = html.encode("utf-8")
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        secure_headers(request)
        return data


def secure_headers(request: IRequest) -> None:
    """The headers every portal answer carries."""
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"X-Frame-Options", b"DENY")
    request.setHeader(b"Referrer-Policy", b"same-origin")
    request.setHeader(
        b"Content-Security-Policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        b" frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )


def field(request: IRequest, name: str, limit: int = 4096) -> str | None:
    """A form or query field as text (the first value), or C{None}; bounded."""
    values = (request.args or {}).get(name.encode())
    if not values:
        return None
    value = values[0]
    if len(value) > limit:
        raise RefusedError(400, f"the field {name} is longer than {limit} bytes")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedError(400, f"the field {name} is not UTF-8") from None


def fields(request: IRequest) -> Mapping[str, str]:
    """Every short text field of the request (for refilling forms)."""
    found = {}
    for key, values in (request.args or {}).items():
        if values and len(values[0]) <= 1024 and len(key) <= 64:
            try:
                found[key.decode("utf-8")] = values[0].decode("utf-8")
            except UnicodeDecodeError:
                continue
    return found


def remote_address(request: IRequest) -> str:
    """The request's source address (C{host}, or the peer's description)."""
    peer = request.getClientAddress()
    return str(getattr(peer, "host", peer))[:255]


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"
    )
