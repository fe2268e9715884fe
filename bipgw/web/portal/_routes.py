# -*- test-case-name: tests.unit.web.portal.test_routes -*-
"""The portal's pages that read: login, dashboard and its live stream, sessions, cards, audit.

L{portal_app} builds the one Klein app of the portal: these routes, the
administrative ones (L{bipgw.web.portal._admin_routes}), the static files
and the error pages.  Every route but the login page, the static files
and C{/metrics} asks L{Portal.require} first.
"""

from __future__ import annotations

import calendar
import json
import time
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter

from bipgw.store import AuditSearch, SessionFilter, card_key_versions_for
from bipgw.web.portal._auth import longest
from bipgw.web.portal._charts import line_chart
from bipgw.web.portal._dashboard import chart_keys
from bipgw.web.portal._portal import (
    COOKIE,
    LOGIN_COOKIE,
    Portal,
    RefusedError,
    SeeOtherError,
    field,
    fields,
    remote_address,
    secure_headers,
)
from bipgw.web.portal._trace import apdu_script, decode_trace

__all__ = ["numbers_json", "page_number", "parse_time", "portal_app"]

PAGE = 50
_CHART_TITLES = {
    "sessions_open": "sessions open",
    "setups": "session setups / s",
    "apdus": "APDUs relayed / s",
    "smpp_queue": "SMPP queue depth",
}
_STATIC = {"portal.css": b"text/css; charset=utf-8", "portal.js": b"text/javascript; charset=utf-8"}


class _Id(BaseConverter):
    """An id in a path (session, tenant, service): nothing a path could smuggle."""

    regex = "[A-Za-z0-9_.:@~-]{1,64}"


def _cookie(
    request: IRequest, name: str, value: str, portal: Portal, *, max_age: int | None = None
) -> None:
    assert isinstance(request, Request)
    request.addCookie(
        name.encode(),
        value.encode(),
        path=b"/",
        httpOnly=True,
        secure=portal.settings.secure_cookies,
        sameSite="strict",
        max_age=None if max_age is None else str(max_age).encode(),
    )


def parse_time(text: str | None, name: str) -> float | None:
    """A time filter: C{YYYY-MM-DD}, C{YYYY-MM-DDTHH:MM} (UTC) or epoch seconds."""
    if not text:
        return None
    text = text.strip()
    for shape in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
        try:
            return float(calendar.timegm(time.strptime(text, shape)))
        except ValueError:
            continue
    try:
        value = float(text)
    except ValueError:
        raise RefusedError(
            400, f"{name}: not a time (use YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)"
        ) from None
    if not 0 <= value < 2**33:
        raise RefusedError(400, f"{name}: out of range")
    return value


def page_number(request: IRequest) -> int:
    """The C{page} query field (1-based), bounded."""
    text = field(request, "page") or "1"
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise RefusedError(400, "page: a whole number from 1")
    return int(text)


def portal_app(portal: Portal) -> Klein:
    """The portal's Klein app (module docstring)."""
    from bipgw.web.portal._admin_routes import add_admin_routes
    from bipgw.web.portal._events import add_event_route

    app = Klein()
    app.url_map.merge_slashes = False
    app.url_map.converters["id"] = _Id

    # -- login -----------------------------------------------------------------

    @app.route("/login", methods=["GET"])
    def login_page(request: IRequest) -> bytes:
        if portal.login_of(request) is not None:
            raise SeeOtherError("/")
        nonce = portal.login_form.nonce()
        _cookie(request, LOGIN_COOKIE, nonce, portal, max_age=3600)
        return portal.page(
            request, "login.html", None, token=portal.login_form.token(nonce), name="", message=None
        )

    @app.route("/login", methods=["POST"])
    async def login(request: IRequest) -> bytes:
        raw = request.getCookie(LOGIN_COOKIE.encode()) or b""
        nonce = raw.decode("ascii", "replace")
        if not portal.login_form.check(nonce, field(request, "csrf")):
            raise RefusedError(
                403, "the login form's CSRF token is missing or wrong: reload the login page"
            )
        name = (field(request, "name", 64) or "").strip()
        password = field(request, "password", 1024) or ""
        address = remote_address(request)
        keys = (f"name:{name}", f"addr:{address}")
        wait = longest(*(portal.backoff.wait(k) for k in keys))
        if wait > 0:
            request.setResponseCode(429)
            request.setHeader(b"Retry-After", str(int(wait)).encode())
            return _login_again(
                portal, request, name, f"too many failed logins: try again in {int(wait)} s"
            )
        role = await portal.check_password(name, password)
        if role is None:
            for key in keys:
                portal.backoff.failed(key)
            portal.ratelog.info(
                "portal-login-failed",
                "portal login failed for {name} from {address}",
                name=name[:64],
                address=address,
            )
            request.setResponseCode(401)
            return _login_again(portal, request, name, "wrong name or password")
        for key in keys:
            portal.backoff.succeeded(key)
        session = portal.logins.open(name, role)
        _cookie(request, COOKIE, session.sid, portal)
        await portal.audit(request, name, "portal.login", f"operator:{name}")
        raise SeeOtherError("/")

    @app.route("/logout", methods=["POST"])
    async def logout(request: IRequest) -> bytes:
        session = await portal.require(request, form=True)
        portal.logins.close(session.sid)
        _cookie(request, COOKIE, "", portal, max_age=0)
        await portal.audit(request, session, "portal.logout", f"operator:{session.operator}")
        raise SeeOtherError("/login")

    # -- dashboard -------------------------------------------------------------

    @app.route("/", methods=["GET"])
    async def dashboard(request: IRequest) -> bytes:
        session = await portal.require(request)
        numbers = portal.sampler.numbers()
        now = portal.clock.seconds()
        charts = [
            line_chart(_CHART_TITLES[key], portal.sampler.series(key), now=now)
            for key in chart_keys()
        ]
        imports = await portal.store.list_imports(limit=5)
        pending = await portal.requests.list(state=None, limit=5)
        return portal.page(
            request,
            "dashboard.html",
            session,
            n=numbers,
            charts=charts,
            imports=imports,
            requests=pending,
        )

    @app.route("/charts", methods=["GET"])
    async def charts(request: IRequest) -> bytes:
        await portal.require(request)
        now = portal.clock.seconds()
        svg = "".join(
            line_chart(_CHART_TITLES[key], portal.sampler.series(key), now=now)
            for key in chart_keys()
        )
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        secure_headers(request)
        return svg.encode()

    add_event_route(app, portal)

    # -- sessions --------------------------------------------------------------

    @app.route("/sessions", methods=["GET"])
    async def sessions(request: IRequest) -> bytes:
        session = await portal.require(request)
        f = SessionFilter(
            iccid=field(request, "iccid", 64) or None,
            msisdn=field(request, "msisdn", 64) or None,
            tenant=field(request, "tenant", 64) or None,
            service=field(request, "service", 64) or None,
            state=field(request, "state", 32) or None,
            since=parse_time(field(request, "since", 64), "since"),
            until=parse_time(field(request, "until", 64), "until"),
        )
        page = page_number(request)
        rows = await portal.browse.sessions(f, limit=PAGE, offset=(page - 1) * PAGE)
        total = await portal.browse.count_sessions(f)
        states = await portal.browse.session_states()
        query = {k: v for k, v in fields(request).items() if k != "page" and v}
        return portal.page(
            request,
            "sessions.html",
            session,
            rows=rows,
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE)),
            query=query,
            states=states,
            services=portal.services,
            link=lambda p: "/sessions?" + urlencode({**query, "page": p}),
        )

    @app.route("/sessions/<id:session_id>", methods=["GET"])
    async def session_page(request: IRequest, session_id: str) -> bytes:
        login = await portal.require(request)
        record = await portal.store.get_session(session_id)
        if record is None:
            raise RefusedError(404, f"no session {session_id}")
        events = await portal.store.session_events(session_id)
        trace = decode_trace(await portal.store.apdu_traces(session_id))
        owner = await portal.browse.session_owner(session_id)
        return portal.page(
            request,
            "session.html",
            login,
            s=record,
            events=events,
            trace=trace,
            owner=owner,
            can_close=portal.close_session is not None and record.ended_at is None,
        )

    @app.route("/sessions/<id:session_id>/trace.apdu", methods=["GET"])
    async def session_script(request: IRequest, session_id: str) -> bytes:
        await portal.require(request)
        record = await portal.store.get_session(session_id)
        if record is None:
            raise RefusedError(404, f"no session {session_id}")
        text = apdu_script(record, await portal.store.apdu_traces(session_id))
        secure_headers(request)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(
            b"Content-Disposition", f'attachment; filename="{session_id}.apdu"'.encode()
        )
        return text.encode("utf-8")

    # -- cards -----------------------------------------------------------------

    @app.route("/cards", methods=["GET"])
    async def cards(request: IRequest) -> bytes:
        login = await portal.require(request)
        text = (field(request, "q", 64) or "").strip()
        found: list[Any] = []
        lifecycle = card_key_versions_for(portal.store)
        if text:
            for card in await portal.browse.cards(text, limit=PAGE):
                keys = await portal.browse.card_keys(card.iccid)
                last = await portal.browse.last_session(card.iccid)
                # Metadata only: versions, states, sources (docs/keys.md section 8).
                versions = [] if lifecycle is None else await lifecycle.versions(card.iccid)
                found.append((card, keys, last, versions))
        return portal.page(request, "cards.html", login, q=text, cards=found)

    # -- audit -----------------------------------------------------------------

    @app.route("/audit", methods=["GET"])
    async def audit(request: IRequest) -> bytes:
        login = await portal.require(request)
        f = AuditSearch(
            actor=field(request, "actor", 255) or None,
            action=field(request, "action", 64) or None,
            target=field(request, "target", 255) or None,
            since=parse_time(field(request, "since", 64), "since"),
            until=parse_time(field(request, "until", 64), "until"),
        )
        page = page_number(request)
        records = await portal.browse.audit(f, limit=PAGE + 1, offset=(page - 1) * PAGE)
        query = {k: v for k, v in fields(request).items() if k != "page" and v}
        return portal.page(
            request,
            "audit.html",
            login,
            records=records[:PAGE],
            more=len(records) > PAGE,
            page=page,
            query=query,
            link=lambda p: "/audit?" + urlencode({**query, "page": p}),
        )

    # -- the rest ----------------------------------------------------------------

    add_admin_routes(app, portal)

    @app.route("/static/<name>", methods=["GET"])
    def static(request: IRequest, name: str) -> bytes:
        kind = _STATIC.get(name)
        if kind is None:
            raise RefusedError(404, f"no static file {name}")
        data = resources.files("bipgw.web.portal").joinpath("static", name).read_bytes()
        request.setHeader(b"Content-Type", kind)
        request.setHeader(b"Cache-Control", b"max-age=3600")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return data

    def observe(name: str) -> None:
        @app.route(f"/{name}", methods=["GET"], endpoint=f"observe_{name}")
        async def serve(request: IRequest) -> Any:
            await portal.require_scraper(request)
            resource = portal.observability.get(name)
            if resource is None:
                raise RefusedError(404, f"this portal does not serve /{name}")
            return resource

    for name in ("metrics", "healthz", "readyz"):
        observe(name)

    # -- errors ------------------------------------------------------------------

    @app.handle_errors(SeeOtherError)
    def see_other(request: IRequest, failure: Failure) -> bytes:
        assert isinstance(failure.value, SeeOtherError)
        request.setResponseCode(303)
        request.setHeader(b"Location", failure.value.location.encode())
        secure_headers(request)
        return b""

    @app.handle_errors(RefusedError)
    def refused(request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, RefusedError)
        return _error(portal, request, error.status, error.message)

    @app.handle_errors(MethodNotAllowed)
    def wrong_method(request: IRequest, failure: Failure) -> bytes:
        return _error(portal, request, 405, "this page does not take that method")

    @app.handle_errors(HTTPException)
    def unknown(request: IRequest, failure: Failure) -> bytes:
        return _error(portal, request, 404, "no such page")

    @app.handle_errors(Exception)
    def failed(request: IRequest, failure: Failure) -> bytes:
        from twisted.logger import LogLevel

        portal.ratelog.emit(
            "portal-failed",
            LogLevel.critical,
            "portal request {path} failed",
            path=request.path,
            log_failure=failure,
        )
        return _error(portal, request, 500, "internal error (logged by the gateway)")

    return app


def _login_again(portal: Portal, request: IRequest, name: str, message: str) -> bytes:
    nonce = portal.login_form.nonce()
    _cookie(request, LOGIN_COOKIE, nonce, portal, max_age=3600)
    return portal.page(
        request,
        "login.html",
        None,
        token=portal.login_form.token(nonce),
        name=name,
        message=message,
    )


def _error(portal: Portal, request: IRequest, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    return portal.page(
        request, "error.html", portal.login_of(request), status=status, message=message
    )


def numbers_json(portal: Portal) -> bytes:
    """The dashboard's numbers as the live stream sends them."""
    return json.dumps(portal.sampler.numbers(), separators=(",", ":")).encode()
