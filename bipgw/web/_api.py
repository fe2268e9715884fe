# -*- test-case-name: tests.unit.web.test_sessions,tests.unit.web.test_errors -*-
"""The HTTP JSON API's sessions: what each request does, whoever routed it.

L{HttpApi} holds the API's state (one L{TenantRelay} per tenant, which
tenant opened which session, the event streams) and answers the requests
once routed (L{bipgw.web._routes}) and their bodies read
(L{bipgw.web._json}):

  - L{HttpApi.authenticate}: the bearer token, looked up in the
    L{ITenantDirectory}, whose grant is then used for
    C{grant_cache_seconds} (L{bipgw.web._grants}: a disabled tenant or a
    revoked service is refused that long after the change at most);
  - L{HttpApi.open}, L{HttpApi.status}, L{HttpApi.command},
    L{HttpApi.close}: one session, as the platform channel would do it;
  - L{HttpApi.stop}: end the streams and close every session.

Each answers a L{Reply} or raises an L{ApiError}; the full contract is the
OpenAPI document (L{bipgw.web._openapi}) and C{docs/http-api.md}.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred, DeferredList, TimeoutError
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from bipgw.codec.platform import (
    Accepted,
    Close,
    Closed,
    Command,
    ErrorMessage,
    Failed,
    Message,
    Open,
    Result,
    State,
    Status,
    Take,
)
from bipgw.core import (
    OUTCOME_FIELDS,
    CardKeyRotator,
    CardOffer,
    Handover,
    RateLimitedLog,
    SecuredSession,
    Session,
    SessionStatus,
    Tenancy,
    TenantGrant,
)
from bipgw.store import AuditRecord, IServiceRequests, MemoryServiceRequests
from bipgw.web._campaigns import CampaignApi, CampaignStreams, ICampaigns
from bipgw.web._events import EventStreams, IEventFeed
from bipgw.web._grants import GrantCache
from bipgw.web._json import ApiError, Reply, only_fields, parse_message
from bipgw.web._relay import TenantRelay
from bipgw.web._rotations import KeyRotationRequests
from bipgw.web._settings import ApiSettings

_TOKEN: Final = re.compile(r"[\x21-\x7e]{1,512}\Z")
"""A token as the platform channel's C{hello} takes it: printable ASCII, bounded."""
_OPEN_FIELDS: Final = frozenset({"iccid", "msisdn", "service", "application", "timeouts", "target"})
_COMMAND_FIELDS: Final = frozenset({"apdus", "script", "definite", "target"})
_TAKE_FIELDS: Final = frozenset({"service", "timeouts", "target"})


class HttpApi:
    """The API's state: one relay per tenant, who owns which session, the streams.

    @param hub: the front doors' tenancy (engine, tenant directory, usage
        counts); share the platform server's so that limits count both doors.
    """

    _log = Logger()

    def __init__(
        self,
        hub: Tenancy,
        settings: ApiSettings | None = None,
        *,
        requests: IServiceRequests | None = None,
        rotator: CardKeyRotator | None = None,
        audit: Callable[[AuditRecord], Deferred[int]] | None = None,
        campaigns: ICampaigns | None = None,
        events: IEventFeed | None = None,
    ) -> None:
        """
        @param requests: where the tenants' service requests are kept
            (C{POST /v1/service-requests}); in memory if C{None}.
        @param audit: where the administrative requests of platforms (a
            service request, a card key rotation) are written to the audit log;
            C{None}: nowhere.
        @param campaigns: the gateway's campaigns (C{/v1/campaigns}); C{None}
            answers those routes C{unavailable}.
        @param events: the other nodes' session events for the event
            streams, in a cluster (L{bipgw.cluster.ClusterEventFeed}).
        """
        self.hub = hub
        self.audit = audit
        self.settings = settings or ApiSettings()
        self.rotations = KeyRotationRequests(rotator, audit, hub.clock)
        self.requests: IServiceRequests = requests or MemoryServiceRequests()
        self.campaigns: CampaignApi | None = None
        if campaigns is not None:
            streams = CampaignStreams(
                campaigns.subscribe,
                hub.clock,
                self.settings.keepalive,
                self.settings.stream_buffer,
            )
            self.campaigns = CampaignApi(campaigns, streams)
        self._relays: dict[str, TenantRelay] = {}
        self._owners: OrderedDict[str, str] = OrderedDict()
        # In a cluster: the node running a session (the registry), for its status.
        self.locate: Callable[[str], Deferred[str | None]] | None = None
        self.grants = GrantCache(hub.clock, self.settings.grant_cache_seconds)
        self.streams = EventStreams(
            hub.engine,
            hub.clock,
            self._owner,
            self.settings.keepalive,
            self.settings.stream_buffer,
            feed=events,
        )
        # Whatever a client can make fail is logged at a bounded rate.
        self.ratelog = RateLimitedLog(Logger(namespace="bipgw.web"), hub.clock)
        # Card-initiated sessions are offered while the API serves: on the
        # tenants' event streams, and in GET /v1/offers.
        self._stop_offers = hub.engine.offers.listen(self._offered)

    def _offered(self, offer: CardOffer) -> None:
        tenants = [
            tenant_id
            for tenant_id, relay in self._relays.items()
            if any(service in relay.grant.services for service in offer.services)
        ]
        if tenants:
            self.streams.offer(offer, tenants)

    def owns(self, tenant_id: str, session: str) -> bool:
        """Whether C{session} was opened by C{tenant_id} through this API."""
        return self._owners.get(session) == tenant_id

    async def may_follow(self, relay: TenantRelay, session: str) -> bool:
        """Whether the tenant may follow C{session}'s events: it opened it through
        this API, or (in a cluster) another node shows it the session in full."""
        if self.owns(relay.grant.tenant_id, session):
            return True
        if self.hub.remote is None or self.hub.engine.status(session) is not None:
            return False
        try:
            reply = await self._forwarded_status(relay, session)
        except ApiError:
            return False
        return "service" in reply.body

    def _owner(self, session: str) -> str | None:
        return self._owners.get(session)

    async def located(self, reply: Reply, session: str) -> Reply:
        """C{reply} (a session's status) with the C{node} running the session,
        in a cluster (L{locate}); as it is when the node is not known (Redis
        cannot be reached: the status is answered without it)."""
        if self.locate is None or reply.status != 200 or not isinstance(reply.body, dict):
            return reply
        try:
            node = await self.locate(session)
        except Exception:
            return reply
        if not node:
            return reply
        return attrs.evolve(reply, body={**reply.body, "node": node})

    def adopt(
        self, handover: Handover, grant: TenantGrant, reservation: str | None
    ) -> Session | SecuredSession:
        """Run a lost cluster node's queued session here, under its id, as if
        C{grant}'s tenant had opened it through this API: it drives it with
        C{/v1/sessions/{id}} on this node (L{bipgw.core.reopen}).

        @raise SessionError: it cannot run again (see L{bipgw.core.reopen}).
        """
        relay = self._relays.get(grant.tenant_id)
        if relay is None:
            relay = self._relays[grant.tenant_id] = TenantRelay(self.hub, grant)
        relay.grant = grant
        with self.streams.opening() as adopt:
            session = relay.adopt(self.hub, handover, reservation)
            self._adopt(grant.tenant_id, str(session.id))
            adopt(str(session.id))
        return session

    def stop(self) -> Deferred[Any]:
        """End every event stream and close every session; fires when closed."""
        self._stop_offers()
        self.streams.stop()
        if self.campaigns is not None:
            self.campaigns.streams.stop()
        self.ratelog.flush()
        closes = [d for relay in self._relays.values() for d in relay.close_all()]
        return DeferredList(closes, consumeErrors=True)

    # -- requests ---------------------------------------------------------------

    async def authenticate(self, request: IRequest) -> TenantRelay:
        """The relay of the tenant whose bearer token the request carries."""
        token = bearer_token(request)
        try:
            grant = await self.grants.lookup(token, self.hub.tenants.by_token)
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
        only_fields(body, _OPEN_FIELDS)
        rid = relay.next_id()
        message = parse_message(Open, {**body, "id": rid}, "open.")
        answer = relay.expect(rid)
        with self.streams.opening() as adopt:
            # Answered once the session's row is committed (group commit).
            await relay.open(message)
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

    def offers(self, relay: TenantRelay) -> Reply:
        """C{GET /v1/offers}: the card-initiated sessions the tenant's services may take."""
        grant = relay.grant
        now = self.hub.clock.seconds()
        out = []
        for offer in self.hub.engine.offers.pending():
            services = [s for s in offer.services if s in grant.services]
            if services:
                item: dict[str, Any] = {
                    "session": str(offer.session_id),
                    "iccid": offer.iccid,
                    "agent": offer.agent_id,
                    "services": services,
                    "expires_in_ms": max(0, round((offer.expires_at - now) * 1000)),
                }
                if offer.msisdn:
                    item["msisdn"] = offer.msisdn
                out.append(item)
        return Reply(200, {"offers": out})

    async def take(self, relay: TenantRelay, session: str, body: dict[str, Any]) -> Reply:
        """C{POST /v1/offers/{id}}: take a card-initiated session; answered as an open."""
        only_fields(body, _TAKE_FIELDS)
        rid = relay.next_id()
        message = parse_message(Take, {**body, "session": session, "id": rid}, "take.")
        answer = relay.expect(rid)
        with self.streams.opening() as adopt:
            await relay.take(message)
            reply = _settled(answer)
            if isinstance(reply, Accepted):
                self._adopt(relay.grant.tenant_id, reply.session)
                adopt(reply.session)
        if isinstance(reply, ErrorMessage):
            raise ApiError(reply.code, reply.message, reply.session)
        assert isinstance(reply, Accepted)
        status = self.hub.engine.status(session)
        state = status.state.value if status is not None else "connected"
        return Reply(
            201, {"session": session, "state": state}, (("Location", f"/v1/sessions/{session}"),)
        )

    async def status(self, relay: TenantRelay, session: str) -> Reply:
        """C{GET /v1/sessions/{id}}.

        A session the engine no longer holds (ended long ago, or before a
        restart: C{gateway-restart}) is answered from the recorded history
        (the tenancy's L{bipgw.core.ISessionHistory}) when its service is
        one of the tenant's: in full if this API knows the tenant opened
        it, else only its outcome (state, reason, times), without the card:
        after a restart the random session id is what proves the asker
        opened it.
        """
        held = self.hub.engine.status(session) is not None
        if not held and self.hub.remote is not None:
            return await self._forwarded_status(relay, session)
        if held or self.hub.history is None:
            return Reply(200, status_json(self._status(relay, session)))
        try:
            recorded = await self.hub.history.session_status(session)
        except Exception as e:
            raise ApiError("unavailable", "the session history cannot be read now") from e
        if recorded is None or recorded.service not in relay.grant.services:
            raise ApiError("unknown-session", f"no session {session} for this tenant", session)
        body = status_json(recorded)
        if not self.owns(relay.grant.tenant_id, session):
            body = {k: v for k, v in body.items() if k in OUTCOME_FIELDS}
        return Reply(200, body)

    async def command(self, relay: TenantRelay, session: str, body: dict[str, Any]) -> Reply:
        """C{POST /v1/sessions/{id}/commands}."""
        if self._elsewhere(relay, session):
            return await self._forwarded_command(relay, session, body)
        status = self._status(relay, session)
        only_fields(body, _COMMAND_FIELDS)
        rid = relay.next_id()
        message = parse_message(Command, {**body, "session": session, "id": rid}, "command.")
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
        reply = await _ask(relay, session, rid, lambda: relay.command(message))
        assert isinstance(reply, Result)
        return _answer_reply(reply)

    async def close(self, relay: TenantRelay, session: str) -> Reply:
        """C{DELETE /v1/sessions/{id}}."""
        if self._elsewhere(relay, session):
            rid = relay.next_id()
            await _ask(relay, session, rid, lambda: relay.close(Close(session=session, id=rid)))
            return await self._forwarded_status(relay, session)
        status = self._status(relay, session)
        if relay.tracked(session) is not None:
            rid = relay.next_id()
            reply = await _ask(
                relay, session, rid, lambda: relay.close(Close(session=session, id=rid))
            )
            assert isinstance(reply, Closed)
            status = self.hub.engine.status(session) or status
        return Reply(200, status_json(status))

    # -- another node's sessions (a cluster: bipgw.core._remote) ----------------

    def _elsewhere(self, relay: TenantRelay, session: str) -> bool:
        """Whether C{session} is to be found through the cluster: this API does
        not hold it, and this gateway is a node of a cluster."""
        if self.hub.remote is None or relay.tracked(session) is not None:
            return False
        return not self.owns(relay.grant.tenant_id, session)

    async def _forwarded_command(
        self, relay: TenantRelay, session: str, body: dict[str, Any]
    ) -> Reply:
        only_fields(body, _COMMAND_FIELDS)
        rid = relay.next_id()
        message = parse_message(Command, {**body, "session": session, "id": rid}, "command.")
        wait = self.settings.ready_wait
        reply = await _ask(relay, session, rid, lambda: relay.command(message, wait))
        assert isinstance(reply, Result)
        return _answer_reply(reply)

    async def _forwarded_status(self, relay: TenantRelay, session: str) -> Reply:
        rid = relay.next_id()
        reply = await _ask(
            relay, session, rid, lambda: relay.status(Status(id=rid, session=session))
        )
        assert isinstance(reply, State)
        return _answer_reply(reply)

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


def bearer_token(request: IRequest) -> str:
    """The token of the request's one C{Authorization: Bearer} header.

    Read from the raw header bytes: a header that is not ASCII, or two
    C{Authorization} headers (which one would a proxy have checked?), are
    refused with C{auth-failed}, never decoded into a C{500}.

    @raise ApiError: C{auth-failed}, saying what is wrong with the header.
    """
    raw = request.requestHeaders.getRawHeaders(b"authorization") or []
    if len(raw) > 1:
        raise ApiError("auth-failed", f"{len(raw)} Authorization headers: send exactly one")
    try:
        header = raw[0].decode("ascii").strip() if raw else ""
    except UnicodeDecodeError:
        raise ApiError("auth-failed", "the Authorization header is not ASCII") from None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError("auth-failed", "send Authorization: Bearer <token>")
    if not _TOKEN.match(token):
        raise ApiError("auth-failed", "a token is 1 to 512 printable ASCII characters")
    return token


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


def _settled(d: Deferred[Message]) -> Message:
    box: list[Message] = []
    d.addCallback(box.append)
    if not box:  # the relay has answered once its open fired; anything else is a bug
        d.cancel()
        raise ApiError("internal-error", "the session could not be opened")
    return box[0]


def _ended(status: SessionStatus) -> ApiError:
    reason = status.reason.value if status.reason else None
    why = f" ({reason})" if reason else ""
    return ApiError(
        "session-ended", f"the session has ended{why}: {status.state.value}", str(status.session_id)
    )


async def _ask(relay: TenantRelay, session: str, rid: str, send: Callable[[], object]) -> Any:
    """Send a request (C{send}) whose answer comes back as C{rid}: the answer,
    or the C{ApiError} of an error answer."""
    answer = relay.expect(rid)
    send()
    reply = await answer
    if isinstance(reply, ErrorMessage):
        raise ApiError(reply.code, reply.message, session)
    return reply


def _answer_reply(reply: Result | State) -> Reply:
    """A channel answer as the HTTP API's body: the same fields, without the
    channel's C{type} and request C{id}."""
    out = reply.to_json()
    del out["type"], out["id"]
    return Reply(200, out)
