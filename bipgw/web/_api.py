# -*- test-case-name: tests.unit.web.test_sessions,tests.unit.web.test_errors -*-
"""The HTTP JSON API: card sessions for platforms that prefer request/response.

The routes (the full contract is the OpenAPI document,
L{bipgw.web._openapi}, and C{docs/http-api.md}):

  - C{POST /v1/sessions} opens a session, C{201 {session, state}};
  - C{GET /v1/sessions/{id}} its status;
  - C{POST /v1/sessions/{id}/commands} runs C-APDUs (waiting, bounded,
    while the card is still connecting), C{200 {rapdus, sw, meanings ...}};
  - C{DELETE /v1/sessions/{id}} closes it;
  - C{GET /v1/events[?session=ID]}, the engine's events for the tenant's
    sessions as Server-Sent Events (L{bipgw.web._events});
  - C{GET /v1/openapi.json}, the document itself (no authentication).

Every other request carries C{Authorization: Bearer <token>}, looked up in
the L{ITenantDirectory} on every request (a disabled tenant is refused at
once).  Errors are C{{code, message}} with the HTTP status of
L{STATUS_OF}; the codes are the platform channel's and the engine's.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Final

import attrs
from twisted.internet.defer import CancelledError, Deferred, DeferredList, TimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from bipgw.codec.platform import (
    Accepted,
    Close,
    Closed,
    Command,
    ErrorMessage,
    Failed,
    Message,
    MessageError,
    Open,
    Result,
)
from bipgw.core import SessionStatus, Tenancy, TenantGrant
from bipgw.web._events import EventStreams
from bipgw.web._openapi import openapi_document
from bipgw.web._relay import TenantRelay

STATUS_OF: Final[dict[str, int]] = {
    "invalid-json": 400,
    "invalid-message": 400,
    "invalid-command": 400,
    "auth-failed": 401,
    "service-not-allowed": 403,
    "application-not-allowed": 403,
    "not-found": 404,
    "unknown-session": 404,
    "unknown-card": 404,
    "method-not-allowed": 405,
    "card-busy": 409,
    "session-closing": 409,
    "session-ended": 409,
    "cancelled": 409,
    "body-too-large": 413,
    "unsupported-media-type": 415,
    "limit-reached": 429,
    "rate-limited": 429,
    "queue-full": 429,
    "internal-error": 500,
    "unavailable": 503,
    "shutdown": 503,
    "not-connected": 504,
    "ready-timeout": 504,
    "command-timeout": 504,
    "card-timeout": 504,
    "push-timeout": 504,
    "queue-timeout": 504,
    "close-timeout": 504,
    "idle-timeout": 504,
}
"""The HTTP status of each error code; any other (a card or push failure) is 502."""

_OPEN_FIELDS: Final = frozenset({"iccid", "msisdn", "service", "application", "timeouts"})
_COMMAND_FIELDS: Final = frozenset({"apdus", "script", "definite"})
_SESSION_PATH: Final = re.compile(r"/v1/sessions/([A-Za-z0-9_-]{1,64})(/commands)?\Z")


@attrs.frozen(kw_only=True)
class ApiSettings:
    """How the HTTP API behaves.

    @ivar max_body: the largest request body accepted, in bytes (C{413} above).
    @ivar ready_wait: how long a command waits for a session whose card is
        still connecting before it is answered C{504 not-connected}.
    @ivar keepalive: seconds between comment lines on an idle event stream,
        so proxies keep it open.
    @ivar keep_sessions: ended sessions whose status stays visible to their tenant.
    """

    max_body: int = attrs.field(default=65536, validator=attrs.validators.ge(256))
    ready_wait: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    keepalive: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))
    keep_sessions: int = attrs.field(default=10000, validator=attrs.validators.ge(1))


class ApiError(Exception):
    """A request refused: answered C{{code, message[, session]}} with C{status}."""

    def __init__(
        self, code: str, message: str, session: str | None = None, *, allow: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.session = session
        self.allow = allow
        self.status = STATUS_OF.get(code, 502)


@attrs.frozen
class Reply:
    """A JSON answer to send."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Coroutine[Any, Any, Reply | None]]


class HttpApi:
    """The API's state: one relay per tenant, who owns which session, the streams.

    @param hub: the front doors' tenancy (engine, tenant directory, usage
        counts); share the platform server's so that limits count both doors.
    """

    _log = Logger()

    def __init__(self, hub: Tenancy, settings: ApiSettings | None = None) -> None:
        self.hub = hub
        self.settings = settings or ApiSettings()
        self._relays: dict[str, TenantRelay] = {}
        self._owners: OrderedDict[str, str] = OrderedDict()
        self.streams = EventStreams(hub.engine, hub.clock, self._owner, self.settings.keepalive)

    def resource(self) -> Resource:
        """The root resource to serve (it routes every path itself)."""
        return ApiResource(self)

    def owns(self, tenant_id: str, session: str) -> bool:
        """Whether C{session} was opened by C{tenant_id} through this API."""
        return self._owners.get(session) == tenant_id

    def _owner(self, session: str) -> str | None:
        return self._owners.get(session)

    def stop(self) -> Deferred[Any]:
        """End every event stream and close every session; fires when closed."""
        self.streams.stop()
        closes = [d for relay in self._relays.values() for d in relay.close_all()]
        return DeferredList(closes, consumeErrors=True)

    # -- requests ---------------------------------------------------------------

    async def authenticate(self, request: Request) -> TenantRelay:
        """The relay of the tenant whose bearer token the request carries."""
        header = (request.getHeader("authorization") or "").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError("auth-failed", "send Authorization: Bearer <token>")
        try:
            grant = await self.hub.tenants.by_token(token)
        except Exception:
            self._log.failure("the tenant directory failed")
            raise ApiError("unavailable", "the tenant directory is unavailable") from None
        if not isinstance(grant, TenantGrant):
            raise ApiError("auth-failed", "unknown or disabled token")
        relay = self._relays.get(grant.tenant_id)
        if relay is None:
            relay = self._relays[grant.tenant_id] = TenantRelay(self.hub, grant)
        relay.grant = grant
        return relay

    async def open(self, relay: TenantRelay, body: dict[str, Any]) -> Reply:
        """C{POST /v1/sessions}."""
        _only(body, _OPEN_FIELDS)
        rid = relay.next_id()
        message = _parse(Open, {**body, "id": rid}, "open.")
        answer = relay.expect(rid)
        with self.streams.opening() as adopt:
            relay.open(message)
            reply = _settled(answer)
            if isinstance(reply, Accepted):
                self._adopt(relay.grant.tenant_id, reply.session)
                adopt(reply.session)
        if isinstance(reply, ErrorMessage):
            raise ApiError(reply.code, reply.message, reply.session)
        assert isinstance(reply, Accepted)
        sid = reply.session
        failed = relay.failed(sid)
        if failed is not None:  # refused at once (a busy card, an unknown card)
            raise ApiError(failed.reason, failed.message, sid)
        status = self.hub.engine.status(sid)
        state = status.state.value if status is not None else "requested"
        return Reply(201, {"session": sid, "state": state}, (("Location", f"/v1/sessions/{sid}"),))

    def status(self, relay: TenantRelay, session: str) -> Reply:
        """C{GET /v1/sessions/{id}}."""
        status = self._status(relay, session)
        return Reply(200, status_json(status))

    async def command(self, relay: TenantRelay, session: str, body: dict[str, Any]) -> Reply:
        """C{POST /v1/sessions/{id}/commands}."""
        status = self._status(relay, session)
        _only(body, _COMMAND_FIELDS)
        rid = relay.next_id()
        message = _parse(Command, {**body, "session": session, "id": rid}, "command.")
        tracked = relay.tracked(session)
        if tracked is None:
            raise _ended(status)
        if not tracked.ready and not tracked.closing:
            try:
                ready = await relay.when_ready(session, self.settings.ready_wait)
            except TimeoutError:
                wait = self.settings.ready_wait
                raise ApiError(
                    "not-connected", f"the card did not connect within {wait:g} s", session
                ) from None
            if isinstance(ready, Failed):
                raise ApiError(ready.reason, ready.message, session)
        answer = relay.expect(rid)
        relay.command(message)
        reply = await answer
        if isinstance(reply, ErrorMessage):
            raise ApiError(reply.code, reply.message, session)
        assert isinstance(reply, Result)
        out = reply.to_json()
        del out["type"], out["id"]
        return Reply(200, out)

    async def close(self, relay: TenantRelay, session: str) -> Reply:
        """C{DELETE /v1/sessions/{id}}."""
        status = self._status(relay, session)
        if relay.tracked(session) is not None:
            rid = relay.next_id()
            answer = relay.expect(rid)
            relay.close(Close(session=session, id=rid))
            reply = await answer
            if isinstance(reply, ErrorMessage):
                raise ApiError(reply.code, reply.message, session)
            assert isinstance(reply, Closed)
            status = self.hub.engine.status(session) or status
        return Reply(200, status_json(status))

    def _status(self, relay: TenantRelay, session: str) -> SessionStatus:
        status = self.hub.engine.status(session)
        if status is None or not self.owns(relay.grant.tenant_id, session):
            raise ApiError("unknown-session", f"no session {session} for this tenant", session)
        return status

    def _adopt(self, tenant_id: str, session: str) -> None:
        self._owners[session] = tenant_id
        while len(self._owners) > self.settings.keep_sessions:
            oldest = next(iter(self._owners))
            status = self.hub.engine.status(oldest)
            if status is not None and not status.state.terminal:
                self._owners.move_to_end(oldest)
                break
            del self._owners[oldest]


def status_json(status: SessionStatus) -> dict[str, Any]:
    """A session's status as the API shows it."""
    out: dict[str, Any] = {
        "session": str(status.session_id),
        "state": status.state.value,
        "service": status.service,
        "iccid": status.iccid,
        "msisdn": status.msisdn,
        "opened_at": status.opened_at,
        "updated_at": status.updated_at,
        "ended_at": status.ended_at,
        "scripts": status.scripts,
        "push_attempts": status.push_attempts,
        "reason": status.reason.value if status.reason else None,
        "detail": status.detail or None,
    }
    return {k: v for k, v in out.items() if v is not None}


def _only(body: dict[str, Any], fields: frozenset[str]) -> None:
    for key in body:
        if key not in fields:
            raise ApiError("invalid-message", f"field {key!r}: unknown field")


def _parse(kind: Any, obj: dict[str, Any], prefix: str) -> Any:
    try:
        return kind.from_json(obj)
    except MessageError as e:
        field = (e.field or "").removeprefix(prefix)
        raise ApiError("invalid-message", f"field {field!r}: {e.reason}") from None


def _settled(d: Deferred[Message]) -> Message:
    box: list[Message] = []
    d.addCallback(box.append)
    if not box:  # the relay answers open at once; anything else is a bug
        d.cancel()
        raise ApiError("internal-error", "the session could not be opened")
    return box[0]


def _ended(status: SessionStatus) -> ApiError:
    reason = status.reason.value if status.reason else None
    why = f" ({reason})" if reason else ""
    return ApiError(
        "session-ended", f"the session has ended{why}: {status.state.value}", str(status.session_id)
    )


class ApiResource(Resource):
    """Routes every request of the API and writes JSON answers."""

    isLeaf = True
    _log = Logger()

    def __init__(self, api: HttpApi) -> None:
        super().__init__()
        self._api = api

    def render(self, request: Request) -> int:
        path = (request.path or b"/").decode("utf-8", "replace")
        method = (request.method or b"").decode("ascii", "replace")
        d = Deferred.fromCoroutine(self._route(request, method, path))
        gone: list[bool] = []

        def disconnected(_: object) -> None:
            gone.append(True)
            d.cancel()

        request.notifyFinish().addErrback(disconnected)
        d.addCallbacks(
            self._write, self._error, callbackArgs=(request, gone), errbackArgs=(request, gone)
        )
        d.addErrback(self._error_write, request, gone)
        return NOT_DONE_YET

    async def _route(self, request: Request, method: str, path: str) -> Reply | None:
        api = self._api
        if path == "/v1/openapi.json":
            _allow(method, "GET")
            return Reply(200, openapi_document())
        if path == "/v1/sessions":
            _allow(method, "POST")
            body = _json_body(request, api.settings.max_body)
            return await api.open(await api.authenticate(request), body)
        if path == "/v1/events":
            _allow(method, "GET")
            relay = await api.authenticate(request)
            session = _query(request, "session")
            if session is not None and not api.owns(relay.grant.tenant_id, session):
                raise ApiError("unknown-session", f"no session {session} for this tenant")
            api.streams.start(request, relay.grant.tenant_id, session)
            return None
        match = _SESSION_PATH.match(path)
        if match is None:
            raise ApiError("not-found", f"no resource {path[:100]}")
        session, commands = match.group(1), match.group(2)
        if commands:
            _allow(method, "POST")
            body = _json_body(request, api.settings.max_body)
            return await api.command(await api.authenticate(request), session, body)
        _allow(method, "GET", "DELETE")
        relay = await api.authenticate(request)
        if method == "DELETE":
            return await api.close(relay, session)
        return api.status(relay, session)

    def _write(self, reply: Reply | None, request: Request, gone: list[bool]) -> None:
        if reply is None or gone:
            return
        data = json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
        request.setResponseCode(reply.status)
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        for name, value in reply.headers:
            request.setHeader(name, value)
        request.setHeader("Content-Length", str(len(data)))
        request.write(data)
        request.finish()

    def _error(self, failure: Failure, request: Request, gone: list[bool]) -> None:
        if failure.check(CancelledError) and gone:
            return
        error = failure.value
        if not isinstance(error, ApiError):
            self._log.failure("HTTP API request {path} failed", failure, path=request.path)
            error = ApiError("internal-error", "internal error (logged by the gateway)")
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.session is not None:
            body["session"] = error.session
        headers: tuple[tuple[str, str], ...] = ()
        if error.status == 401:
            headers = (("WWW-Authenticate", 'Bearer realm="bipgw"'),)
        elif error.status == 405:
            headers = (("Allow", error.allow),)
        self._write(Reply(error.status, body, headers), request, gone)

    def _error_write(self, failure: Failure, request: Request, gone: list[bool]) -> None:
        self._log.failure("writing an HTTP API answer failed", failure)


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise ApiError(
            "method-not-allowed", f"use {' or '.join(allowed)}", allow=", ".join(allowed)
        )


def _query(request: Request, name: str) -> str | None:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def _json_body(request: Request, limit: int) -> dict[str, Any]:
    length = request.getHeader("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError("body-too-large", f"the body is over {limit} bytes")
    kind = (request.getHeader("content-type") or "application/json").split(";")[0].strip()
    if kind.lower() != "application/json":
        raise ApiError("unsupported-media-type", "send the body as application/json")
    assert request.content is not None
    data = request.content.read(limit + 1)
    if len(data) > limit:
        raise ApiError("body-too-large", f"the body is over {limit} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError("invalid-json", f"the body is not UTF-8 JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError("invalid-json", "the body must be a JSON object")
    return body
