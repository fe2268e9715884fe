# -*- test-case-name: tests.unit.web -*-
"""The HTTP API's routes, on Klein: which request goes to which part of L{HttpApi}.

  - C{POST /v1/sessions} opens a session, C{201 {session, state}};
  - C{GET /v1/sessions/{id}} its status;
  - C{POST /v1/sessions/{id}/commands} runs C-APDUs (waiting, bounded,
    while the card is still connecting), C{200 {rapdus, sw, meanings ...}};
  - C{DELETE /v1/sessions/{id}} closes it;
  - C{GET /v1/events[?session=ID]}, the engine's events for the tenant's
    sessions as Server-Sent Events (L{bipgw.web._events});
  - C{/v1/campaigns...}: a tenant's campaigns (L{bipgw.web._campaigns});
  - C{GET /v1/openapi.json}, the document itself (no authentication).

Every answer is JSON, errors included: L{ApiRoutes}' error handlers turn
an L{ApiError}, a path Klein does not know (C{404 not-found}), a method the
path does not take (C{405 method-not-allowed} with C{Allow}) and anything
unexpected (C{500 internal-error}, logged) into C{{code, message}}.  The
routes are one Klein app of their own, so that the operator portal's can
be mounted beside them in one site (L{bipgw.web._site.mount}).

Werkzeug lets every C{GET} rule answer C{HEAD} too; the API never served
C{HEAD} (an event stream's C{HEAD} would hold a connection for nothing),
so the C{GET} routes refuse it as they refuse any other method.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from klein import Klein
from klein.interfaces import IKleinRequest
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter

from bipgw.store import AuditRecord
from bipgw.web._api import HttpApi
from bipgw.web._campaigns import CampaignApi
from bipgw.web._json import ApiError, Reply, json_body
from bipgw.web._openapi import openapi_document
from bipgw.web._relay import TenantRelay
from bipgw.web._service_requests import request_status, submit_request

__all__ = ["ApiRoutes", "refusal_response"]

_METHOD_ORDER: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The order methods are named in an C{Allow} header (C{HEAD} never is)."""


class _SessionId(BaseConverter):
    """A session id in a path: what the engine hands out, nothing a path could smuggle."""

    regex = "[A-Za-z0-9_-]{1,64}"


class _RequestId(BaseConverter):
    """A service request's number in a path."""

    regex = "[0-9]{1,18}"


def _wall(clock: Any) -> float:
    """Wall-clock seconds (the reactor's, which tests replace)."""
    return float(clock.seconds())


class ApiRoutes:
    """The HTTP API as a Klein app over an L{HttpApi}.

    @ivar app: the routes (class-level, bound to each instance by Klein).
    """

    app = Klein()
    app.url_map.merge_slashes = False  # "/v1//sessions" is unknown, not a redirect
    app.url_map.converters["session_id"] = _SessionId
    app.url_map.converters["request_id"] = _RequestId
    _log = Logger()

    def __init__(self, api: HttpApi) -> None:
        """
        @param api: answers the requests once routed.
        """
        self._api = api

    def resource(self) -> IResource:
        """The routes as a resource (a leaf: it reads the whole path itself)."""
        resource: IResource = self.app.resource()
        return resource

    # -- routes -------------------------------------------------------------------

    @app.route("/v1/openapi.json", methods=["GET"])
    def openapi(self, request: Request) -> bytes:
        """The OpenAPI document (no authentication)."""
        _refuse_head(request)
        return _answer(request, Reply(200, openapi_document()))

    def gate(self, request: IRequest) -> Deferred[Any]:
        """Authenticate C{request} as soon as its headers are in, before its body
        (L{bipgw.web._site.LimitedRequest}); the public document needs no token."""
        if request.path == b"/v1/openapi.json":
            return succeed(None)
        return Deferred.fromCoroutine(self._api.authenticate(request))

    async def _tenant(self, request: IRequest) -> TenantRelay:
        """The request's tenant: the gate's outcome when it ran, else authenticated now."""
        early = getattr(request, "gate_outcome", None)
        decided = early() if early is not None else None
        if decided is not None:
            relay: TenantRelay = await decided
            return relay
        return await self._api.authenticate(request)

    @app.route("/v1/sessions", methods=["POST"])
    async def open(self, request: Request) -> bytes:
        """Open a session (the token first, then the body)."""
        api = self._api
        relay = await self._tenant(request)
        body = json_body(request, api.settings.max_body)
        return _answer(request, await api.open(relay, body))

    @app.route("/v1/sessions/<session_id:session>", methods=["GET"])
    async def status(self, request: Request, session: str) -> bytes:
        """A session's status."""
        _refuse_head(request)
        relay = await self._tenant(request)
        reply = await self._api.status(relay, session)
        return _answer(request, await self._api.located(reply, session))

    @app.route("/v1/sessions/<session_id:session>", methods=["DELETE"])
    async def close(self, request: Request, session: str) -> bytes:
        """Close a session after the commands already sent."""
        relay = await self._tenant(request)
        return _answer(request, await self._api.close(relay, session))

    @app.route("/v1/sessions/<session_id:session>/commands", methods=["POST"])
    async def command(self, request: Request, session: str) -> bytes:
        """Run C-APDUs in a session (the token first, then the body)."""
        api = self._api
        relay = await self._tenant(request)
        body = json_body(request, api.settings.max_body)
        return _answer(request, await api.command(relay, session, body))

    @app.route("/v1/offers", methods=["GET"])
    async def offers(self, request: Request) -> bytes:
        """The card-initiated sessions on offer to the tenant's services."""
        _refuse_head(request)
        relay = await self._tenant(request)
        return _answer(request, self._api.offers(relay))

    @app.route("/v1/offers/<session_id:session>", methods=["POST"])
    async def take(self, request: Request, session: str) -> bytes:
        """Take a card-initiated session (the token first, then the body)."""
        api = self._api
        relay = await self._tenant(request)
        body = json_body(request, api.settings.max_body)
        return _answer(request, await api.take(relay, session, body))

    @app.route("/v1/cards/<iccid>/key-rotations", methods=["POST"])
    async def rotate_keys(self, request: Request, iccid: str) -> bytes:
        """Rotate a card's keys (the token first, then the body)."""
        api = self._api
        relay = await self._tenant(request)
        body = json_body(request, api.settings.max_body)
        return _answer(request, await api.rotations.rotate(relay, iccid, body, _peer(request)))

    @app.route("/v1/events", methods=["GET"])
    async def events(self, request: Request) -> None:
        """The tenant's session events as Server-Sent Events, until either side ends them.

        The stream writes to the request itself (L{bipgw.web._events}); the
        route waits until the request has finished, so Klein neither
        finishes it early nor writes after it.
        """
        _refuse_head(request)
        api = self._api
        relay = await self._tenant(request)
        session = _query(request, "session")
        if session is not None and not await api.may_follow(relay, session):
            raise ApiError("unknown-session", f"no session {session} for this tenant")
        api.streams.start(request, relay.grant.tenant_id, session)
        await _finished(request)

    @app.route("/v1/service-requests", methods=["POST"])
    async def service_request(self, request: Request) -> bytes:
        """Ask for a gateway service (waits for an operator: docs/portal.md)."""
        api = self._api
        relay = await self._tenant(request)
        body = json_body(request, api.settings.max_body)
        clock = api.hub.clock
        tenant_id = relay.grant.tenant_id
        reply = await submit_request(api.requests, tenant_id, body, lambda: _wall(clock))
        if api.audit is not None:
            kept = reply.body
            detail = (
                f"service {kept['service']!r}, AIDs {', '.join(kept['aids']) or 'none'},"
                f" TARs {', '.join(kept['tars']) or 'none'}, {kept['expected_volume']} a day"
            )
            await api.audit(
                AuditRecord(
                    _wall(clock),
                    f"tenant:{tenant_id}",
                    "service-request-submitted",
                    f"service-request:{kept['id']}",
                    detail[:1000],
                    origin=_peer(request),
                )
            )
        return _answer(request, reply)

    @app.route("/v1/service-requests/<request_id:number>", methods=["GET"])
    async def service_request_status(self, request: Request, number: str) -> bytes:
        """Where the tenant's own service request stands."""
        _refuse_head(request)
        relay = await self._tenant(request)
        reply = await request_status(self._api.requests, relay.grant.tenant_id, number)
        return _answer(request, reply)

    # -- campaigns (bipgw.web._campaigns) ------------------------------------------

    def _campaigns(self) -> CampaignApi:
        if self._api.campaigns is None:
            raise ApiError("unavailable", "campaigns are not available on this gateway")
        return self._api.campaigns

    @app.route("/v1/campaigns", methods=["POST"])
    async def campaign_create(self, request: Request) -> bytes:
        """Create a campaign (the token first, then the body)."""
        relay = await self._tenant(request)
        body = json_body(request, self._api.settings.max_body)
        reply = await self._campaigns().create(relay.grant, body)
        await self._audit_campaign(request, relay.grant.tenant_id, "create", reply)
        return _answer(request, reply)

    @app.route("/v1/campaigns", methods=["GET"])
    async def campaign_list(self, request: Request) -> bytes:
        """The tenant's campaigns."""
        _refuse_head(request)
        relay = await self._tenant(request)
        return _answer(request, await self._campaigns().list(relay.grant))

    @app.route("/v1/campaigns/<session_id:campaign>", methods=["GET"])
    async def campaign_status(self, request: Request, campaign: str) -> bytes:
        """A campaign, its cards counted per state."""
        _refuse_head(request)
        relay = await self._tenant(request)
        return _answer(request, await self._campaigns().status(relay.grant, campaign))

    @app.route("/v1/campaigns/<session_id:campaign>/targets", methods=["POST"])
    async def campaign_targets(self, request: Request, campaign: str) -> bytes:
        """Add cards to a campaign not started yet."""
        relay = await self._tenant(request)
        body = json_body(request, self._api.settings.max_body)
        api = self._campaigns()
        reply = await api.add_targets(relay.grant, campaign, body)
        await self._audit_campaign(request, relay.grant.tenant_id, "add-targets", reply)
        return _answer(request, reply)

    @app.route(
        "/v1/campaigns/<session_id:campaign>/<any(start,pause,resume,cancel):action>",
        methods=["POST"],
    )
    async def campaign_action(self, request: Request, campaign: str, action: str) -> bytes:
        """Start, pause, resume or cancel a campaign."""
        relay = await self._tenant(request)
        reply = await self._campaigns().act(relay.grant, campaign, action)
        await self._audit_campaign(request, relay.grant.tenant_id, action, reply)
        return _answer(request, reply)

    async def _audit_campaign(
        self, request: Request, tenant_id: str, action: str, reply: Reply
    ) -> None:
        """A tenant changed a campaign: who, from where, what it is now (never its script)."""
        api = self._api
        if api.audit is None:
            return
        kept = reply.body
        detail = (
            f"{kept['name']!r}, service {kept['service']!r}, {kept['cards']} cards,"
            f" now {kept['state']}"
        )
        await api.audit(
            AuditRecord(
                _wall(api.hub.clock),
                f"tenant:{tenant_id}",
                f"campaign.{action}",
                f"campaign:{kept['campaign']}",
                detail[:1000],
                origin=_peer(request),
            )
        )

    @app.route("/v1/campaigns/<session_id:campaign>/cards", methods=["GET"])
    async def campaign_cards(self, request: Request, campaign: str) -> bytes:
        """A page of the campaign's cards and their results."""
        _refuse_head(request)
        relay = await self._tenant(request)
        offset, limit = _query(request, "offset"), _query(request, "limit")
        api = self._campaigns()
        return _answer(request, await api.cards(relay.grant, campaign, offset, limit))

    @app.route("/v1/campaigns/<session_id:campaign>/events", methods=["GET"])
    async def campaign_events(self, request: Request, campaign: str) -> None:
        """The campaign's events as Server-Sent Events, until either side ends them."""
        _refuse_head(request)
        relay = await self._tenant(request)
        await self._campaigns().events(relay.grant, campaign, request)
        await _finished(request)

    # -- errors (Klein tries them in this order) ----------------------------------

    @app.handle_errors(ApiError)
    def refused(self, request: IRequest, failure: Failure) -> bytes:
        """A request the API refuses, with the reason it gives."""
        error = failure.value
        assert isinstance(error, ApiError)
        return _refusal(request, error)

    @app.handle_errors(MethodNotAllowed)
    def wrong_method(self, request: IRequest, failure: Failure) -> bytes:
        """A known path that does not take the method: C{405} with C{Allow}."""
        error = failure.value
        assert isinstance(error, MethodNotAllowed)
        return _refusal(request, _not_allowed(error.valid_methods or ()))

    @app.handle_errors(HTTPException)
    def unknown(self, request: IRequest, failure: Failure) -> bytes:
        """A path no route knows."""
        path = (request.path or b"/").decode("utf-8", "replace")
        return _refusal(request, ApiError("not-found", f"no resource {path[:100]}"))

    @app.handle_errors(Exception)
    def failed(self, request: IRequest, failure: Failure) -> bytes:
        """Anything unexpected: logged with its traceback, answered C{500}."""
        # A client may trigger this at will (a bug it found): rate-limited.
        self._api.ratelog.emit(
            "web-request-failed",
            LogLevel.critical,
            "HTTP API request {path} failed",
            path=request.path,
            log_failure=failure,
        )
        error = ApiError("internal-error", "internal error (logged by the gateway)")
        return _refusal(request, error)


def _answer(request: IRequest, reply: Reply) -> bytes:
    """Set C{reply}'s status and headers on C{request}; its JSON body, for Klein to write."""
    data = json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
    request.setResponseCode(reply.status)
    request.setHeader("Content-Type", "application/json")
    request.setHeader("Cache-Control", "no-store")
    for name, value in reply.headers:
        request.setHeader(name, value)
    request.setHeader("Content-Length", str(len(data)))
    return data


def _refusal(request: IRequest, error: ApiError) -> bytes:
    """The answer to a refused request: C{{code, message[, session]}} and its headers."""
    headers: tuple[tuple[str, str], ...] = ()
    if error.status == 401:
        headers = (("WWW-Authenticate", 'Bearer realm="bipgw"'),)
    elif error.status == 405:
        headers = (("Allow", error.allow),)
    return _answer(request, Reply(error.status, error.to_json(), headers))


def refusal_response(failure: Failure) -> bytes:
    """A complete HTTP/1.1 response refusing a request its gate failed, before its body.

    The connection closes after it (C{Connection: close}): the body that
    follows is drained, not read.
    """
    error = failure.value
    if not isinstance(error, ApiError):
        error = ApiError("internal-error", "internal error (logged by the gateway)")
    data = json.dumps(error.to_json(), separators=(",", ":")).encode("utf-8")
    reason = RESPONSES.get(error.status, b"Error")
    head = [
        b"HTTP/1.1 %d %s" % (error.status, reason),
        b"Content-Type: application/json",
        b"Cache-Control: no-store",
        b"Connection: close",
        b"Content-Length: %d" % len(data),
    ]
    if error.status == 401:
        head.append(b'WWW-Authenticate: Bearer realm="bipgw"')
    return b"\r\n".join(head) + b"\r\n\r\n" + data


def _not_allowed(methods: Iterable[str]) -> ApiError:
    """C{method-not-allowed}, naming the methods the path takes (C{HEAD} aside)."""
    taken = {m.upper() for m in methods}
    allowed = [m for m in _METHOD_ORDER if m in taken]
    return ApiError("method-not-allowed", f"use {' or '.join(allowed)}", allow=", ".join(allowed))


def _refuse_head(request: Request) -> None:
    """Refuse C{HEAD} on a C{GET} route (module docstring)."""
    if request.method == b"HEAD":
        raise _not_allowed(IKleinRequest(request).mapper.allowed_methods())


def _peer(request: IRequest) -> str:
    """The client's address, for the audit log."""
    host = getattr(request.getClientAddress(), "host", None)
    return str(host) if host else ""


def _query(request: Request, name: str) -> str | None:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def _finished(request: Request) -> Deferred[None]:
    """Fires once C{request} has finished, whether answered or dropped."""
    done: Deferred[None] = Deferred()

    def fire(_: object) -> None:
        if not done.called:  # not already cancelled (the client went away)
            done.callback(None)

    request.notifyFinish().addBoth(fire)
    return done
