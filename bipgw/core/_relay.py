# -*- test-case-name: tests.unit.core.test_relay,tests.unit.platform.test_channel -*-
"""A tenant's card sessions relayed for a front door: open, commands, close.

Both front doors (the platform channel, L{bipgw.platform}, and the HTTP API,
L{bipgw.web}) speak the platform channel's messages
(L{bipgw.codec.platform}) and share one L{bipgw.core.Tenancy}: the engine,
the tenant directory, what each tenant has open and how fast it sends
commands, so a tenant's limits hold over both doors.

Each door holds a L{SessionRelay} per connection (or per tenant) and calls
it with the requests it decoded (L{SessionRelay.open},
L{SessionRelay.command}, L{SessionRelay.close}, L{SessionRelay.status}).  The relay turns them into
calls on the session engine, enforces the tenant's and the service's
limits (sessions, commands in flight, the service's command rate, its
applications) and the platform's own C{timeouts}, and answers through the
door's L{RelayHost} with C{accepted}/C{ready}/C{failed},
C{result}/C{error} and C{closed}, or a C{notification} when a ready
session ends on its own.

Every session is released exactly once (L{SessionRelay._forget}), whichever
way it ends: its usage count, its timers and its route in the tenancy.
Time comes from the tenancy's clock only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.platform import (
    MAX_TEXT,
    MSISDN,
    Accepted,
    Close,
    Closed,
    Command,
    ErrorCode,
    ErrorMessage,
    Failed,
    Notification,
    NotificationEvent,
    Offer,
    Open,
    Ready,
    Result,
    Status,
    Take,
)
from bipgw.core._engine import Session
from bipgw.core._lookup import SessionLookup, look_up, state_message
from bipgw.core._offers import CardOffer
from bipgw.core._secured import SecuredSession
from bipgw.core._tenancy import ServiceGrant, Tenancy, TenantGrant
from bipgw.core._tracked import RelayHost, Tracked, accesses
from bipgw.core._types import (
    CardTarget,
    FailureReason,
    ScriptResult,
    SessionError,
    SessionEvent,
    SessionStatus,
)

__all__ = ["SessionRelay"]

_EVENTS: Final = {
    FailureReason.CARD_DROPPED: NotificationEvent.CARD_DROPPED,
    FailureReason.IDLE_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.COMMAND_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.CLOSE_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.SHUTDOWN: NotificationEvent.SHUTDOWN,
}


class SessionRelay:
    """One door's sessions for one connection (or one tenant): see the module docstring.

    A door makes one per connection (or tenant); it calls L{open}, L{command} and
    L{close} with requests it has parsed and authorised (the tenant is the
    one whose grant rules the request), L{close_all} when it goes away, and
    hears back through its L{RelayHost}.
    """

    _log = Logger()

    def __init__(self, tenancy: Tenancy, host: RelayHost) -> None:
        """
        @param tenancy: what the doors share (engine, usage, rates).
        @param host: the door's side: where the relay's messages go.
        """
        self._tenancy = tenancy
        self._host = host
        self._clock = tenancy.clock
        self._sessions: dict[str, Tracked] = {}
        self._closed = False
        self._stop_offers: Callable[[], None] | None = None

    @property
    def sessions(self) -> list[str]:
        """The ids of the live sessions, oldest first."""
        return list(self._sessions)

    def tracked(self, session: str) -> Tracked | None:
        """The live session C{session}, if this relay has it."""
        return self._sessions.get(session)

    def _reply(
        self, code: str, text: str, request_id: str | None = None, session: str | None = None
    ) -> None:
        self._host.emit(
            ErrorMessage(code=code, message=text[:MAX_TEXT], id=request_id, session=session)
        )

    # -- sessions -------------------------------------------------------------

    def open(self, request: Open, tenant: TenantGrant) -> Deferred[None]:
        """Open a session as C{request} asks, within C{tenant}'s grant.

        C{accepted} is emitted only once the session's opening row is
        durable in the store (L{bipgw.core.Session.recorded}), so that a
        session the platform was told about survives a crash as a row that
        start-up recovery ends with C{gateway-restart}.  If the row cannot
        be written, the request is answered C{unavailable} and the session
        is cancelled: the platform never holds its id.

        @return: fires once the request is answered (C{accepted}, and
            C{failed} too for a session refused at once; or an error);
            never fails.
        """
        done: Deferred[None] = Deferred()
        self._open(request, tenant, done)
        return done

    def _open(self, request: Open, tenant: TenantGrant, done: Deferred[None]) -> None:
        done_now = done.callback
        service = tenant.services.get(request.service)
        if service is None:
            self._reply(
                ErrorCode.SERVICE_NOT_ALLOWED,
                f"tenant {tenant.tenant_id} has no service {request.service!r}",
                request.id,
            )
            done_now(None)
            return
        app = request.application
        if app is not None and not service.allows_application(app):
            kind = "TAR" if len(app) == 3 else "AID"
            self._reply(
                ErrorCode.APPLICATION_NOT_ALLOWED,
                f"{kind} {app.hex().upper()} is not allowed for service {service.name}",
                request.id,
            )
            done_now(None)
            return
        why = _target_refused(request, service)
        if why is not None:
            self._reply(ErrorCode.APPLICATION_NOT_ALLOWED, why, request.id)
            done_now(None)
            return
        usage = self._tenancy.usage
        refused = usage.check_open(tenant, service)
        if refused is not None:
            self._reply(ErrorCode.LIMIT_REACHED, refused, request.id)
            done_now(None)
            return
        shared = self._tenancy.shared_limits
        if shared is None:
            self._start(request, tenant, service, done, None)
            return
        reserved = shared.reserve(tenant, service)
        reserved.addCallback(self._reserved, request, tenant, service, done)
        reserved.addErrback(self._not_reserved, request, done)

    def _reserved(
        self,
        outcome: tuple[str | None, str | None],
        request: Open,
        tenant: TenantGrant,
        service: ServiceGrant,
        done: Deferred[None],
    ) -> None:
        token, refused = outcome
        if token is None or self._closed:
            if token is not None and self._tenancy.shared_limits is not None:
                self._tenancy.shared_limits.release(token)
            if refused is not None:
                self._reply(ErrorCode.LIMIT_REACHED, refused, request.id)
            done.callback(None)
            return
        self._start(request, tenant, service, done, token)

    def _not_reserved(self, failure: Failure, request: Open, done: Deferred[None]) -> None:
        why = failure.getErrorMessage() or type(failure.value).__name__
        self._reply(
            ErrorCode.UNAVAILABLE,
            f"the cluster's session limits cannot be reached ({why}); try again later",
            request.id,
        )
        done.callback(None)

    def _start(
        self,
        request: Open,
        tenant: TenantGrant,
        service: ServiceGrant,
        done: Deferred[None],
        reservation: str | None,
    ) -> None:
        done_now = done.callback
        if request.iccid is not None:
            target = CardTarget.by_iccid(request.iccid)
        else:
            target = CardTarget.by_msisdn(str(request.msisdn))
        try:
            session = self._tenancy.engine.open(target, service.name)
        except Exception:
            self._log.failure("opening a session for {target} failed", target=target)
            self._reply(ErrorCode.INTERNAL_ERROR, "the gateway could not open it", request.id)
            if reservation is not None and self._tenancy.shared_limits is not None:
                self._tenancy.shared_limits.release(reservation)
            done_now(None)
            return
        self._track(session, tenant, service, request, request.application, reservation).addBoth(
            done_now
        )

    def _track(
        self,
        session: Session | SecuredSession,
        tenant: TenantGrant,
        service: ServiceGrant,
        request: Open | Take,
        app: bytes | None,
        reservation: str | None = None,
    ) -> Deferred[None]:
        """Relay C{session} from now on; C{accepted} once its row is durable.

        @param reservation: its count in the cluster's shared limits, if any.
        """
        tracked = Tracked(
            session, tenant.tenant_id, service, app, request.timeouts, target=request.target
        )
        tracked.reservation = reservation
        self._sessions[tracked.id] = tracked
        self._tenancy.usage.opened(tenant.tenant_id, service.name)
        self._tenancy.opened(tracked.id, tenant.tenant_id)
        self._tenancy.route(tracked.id, self)
        return session.recorded.addCallbacks(
            self._recorded,
            self._not_recorded,
            callbackArgs=(tracked, request),
            errbackArgs=(tracked, request),
        )

    # -- card-initiated sessions ----------------------------------------------

    def watch_offers(self, tenant: Callable[[], TenantGrant | None]) -> None:
        """Tell the platform of every card-initiated session one of C{tenant}'s
        services may take (L{Offer}), until L{close_all}.

        @param tenant: the connection's current grant (it may be renewed).
        """
        if self._stop_offers is None and not self._closed:
            desk = self._tenancy.engine.offers

            def offered(offer: CardOffer) -> None:
                grant = tenant()
                services = tuple(s for s in offer.services if grant and s in grant.services)
                if services and not self._closed:
                    left = max(0, round((offer.expires_at - self._clock.seconds()) * 1000))
                    self._host.emit(
                        Offer(
                            session=str(offer.session_id),
                            iccid=offer.iccid,
                            msisdn=offer.msisdn
                            if offer.msisdn and MSISDN.match(offer.msisdn)
                            else None,
                            agent=offer.agent_id[:MAX_TEXT],
                            services=services,
                            expires_in_ms=left,
                        )
                    )

            self._stop_offers = desk.listen(offered)

    def take(self, request: Take, tenant: TenantGrant) -> Deferred[None]:
        """Take the card-initiated session C{request} names, within C{tenant}'s grant.

        Answered as L{open} is: C{accepted}, then C{ready} at once (the card
        is connected); or an error naming why (not on offer, service not
        granted or not taking such sessions, a limit).

        @return: fires once the request is answered; never fails.
        """
        rid = request.id
        if self._tenancy.engine.offers.offered(request.session) is None:
            text = f"no card-initiated session {request.session} is on offer"
            self._reply(FailureReason.UNKNOWN_SESSION.value, text, rid, request.session)
            return succeed(None)
        service = tenant.services.get(request.service)
        if service is None:
            text = f"tenant {tenant.tenant_id} has no service {request.service!r}"
            self._reply(ErrorCode.SERVICE_NOT_ALLOWED, text, rid, request.session)
            return succeed(None)
        why = _target_refused(request, service)
        if why is not None:
            self._reply(ErrorCode.APPLICATION_NOT_ALLOWED, why, rid, request.session)
            return succeed(None)
        refused = self._tenancy.usage.check_open(tenant, service)
        if refused is not None:
            self._reply(ErrorCode.LIMIT_REACHED, refused, rid, request.session)
            return succeed(None)
        try:
            session = self._tenancy.engine.take(request.session, service.name)
        except SessionError as e:
            self._reply(e.reason.value, e.detail, rid, request.session)
            return succeed(None)
        return self._track(session, tenant, service, request, None)

    def _recorded(self, _: object, tracked: Tracked, request: Open | Take) -> None:
        """The opening row is durable: tell the platform, then watch for ready."""
        if not self._closed:
            self._host.emit(Accepted(id=request.id, session=tracked.id))
            ready = request.timeouts.ready if request.timeouts else None
            if ready is not None and not tracked.closing:
                tracked.timer = self._clock.callLater(ready, self._ready_timed_out, tracked, ready)
        tracked.session.ready.addCallbacks(
            self._ready, self._not_ready, callbackArgs=(tracked,), errbackArgs=(tracked,)
        )

    def _not_recorded(self, failure: Failure, tracked: Tracked, request: Open | Take) -> None:
        """The store could not record the session: refuse the open, cancel the session."""
        if not self._closed:
            why = failure.getErrorMessage() or type(failure.value).__name__
            self._reply(
                ErrorCode.UNAVAILABLE,
                f"the session could not be recorded in the store ({why}); try again later",
                request.id,
            )
        tracked.closing = True
        tracked.session.ready.addErrback(lambda _: None)
        self._tenancy.engine.close(tracked.id).addBoth(self._forget_quietly, tracked)

    def _ready(self, status: SessionStatus, tracked: Tracked) -> None:
        tracked.cancel_ready_timer()
        tracked.ready = True
        # A number stored in another form is left out rather than sent invalid.
        number = status.msisdn if status.msisdn and MSISDN.match(status.msisdn) else None
        self._host.emit(Ready(session=tracked.id, iccid=status.iccid, msisdn=number))

    def _not_ready(self, failure: Failure, tracked: Tracked) -> None:
        tracked.cancel_ready_timer()
        if tracked.timed_out is not None:
            reason, text = tracked.timed_out
            self._host.emit(Failed(session=tracked.id, reason=reason, message=text))
        elif not tracked.closing:
            code, text = self._host.describe(failure)
            self._host.emit(Failed(session=tracked.id, reason=code, message=text))
        self._forget(tracked)

    def _ready_timed_out(self, tracked: Tracked, wait: float) -> None:
        tracked.timer = None
        text = f"the card did not connect within {wait:g} s (timeouts.ready)"
        self._close_for_timeout(tracked, ErrorCode.READY_TIMEOUT, text)

    def _close_for_timeout(self, tracked: Tracked, code: str, text: str) -> None:
        if tracked.closing:
            return
        tracked.closing = True
        tracked.timed_out = (code, text)
        self._tenancy.engine.close(tracked.id).addBoth(self._forget_quietly, tracked)

    def session_ended(self, event: SessionEvent) -> None:
        """One of this relay's sessions ended (the tenancy routes the engine's event)."""
        tracked = self._sessions.get(str(event.session_id))
        if tracked is None:
            return
        if not self._closed:
            if not tracked.ready:
                return  # the ready errback reports it as failed
            if tracked.timed_out is not None:
                kind, (reason, text) = NotificationEvent.TIMEOUT, tracked.timed_out
            elif tracked.closing:
                return  # the answer to the platform's close reports it
            else:
                why = event.reason
                kind = _EVENTS.get(why, NotificationEvent.ENDED) if why else NotificationEvent.ENDED
                reason, text = why.value if why else "", event.detail
            self._host.emit(
                Notification(
                    session=tracked.id, event=kind, reason=reason or None, message=text[:MAX_TEXT]
                )
            )
        self._forget(tracked)

    def close(self, request: Close) -> None:
        """End a session as C{request} asks, after the commands already sent."""
        tracked = self._sessions.get(request.session)
        if tracked is None:
            self._reply(
                ErrorCode.UNKNOWN_SESSION,
                "no such session on this connection",
                request.id,
                request.session,
            )
            return
        tracked.closing = True
        done = self._tenancy.engine.close(tracked.id)
        done.addCallbacks(
            self._closed_ok,
            self._close_failed,
            callbackArgs=(tracked, request.id),
            errbackArgs=(tracked, request.id),
        )

    def close_all(self) -> list[Deferred[None]]:
        """Close every session cleanly (the door is going away), answering nothing.

        From then on a session that ends is only released, not reported.

        @return: the engine's closes, each firing once its session is released.
        """
        self._closed = True
        if self._stop_offers is not None:
            self._stop_offers()
            self._stop_offers = None
        closing = []
        for tracked in list(self._sessions.values()):
            tracked.cancel_timers()
            if not tracked.closing:
                tracked.closing = True
                done = self._tenancy.engine.close(tracked.id)
                closing.append(done.addBoth(self._forget_quietly, tracked))
        return closing

    def _closed_ok(self, status: SessionStatus, tracked: Tracked, request_id: str) -> None:
        self._forget(tracked)
        self._host.emit(Closed(session=tracked.id, id=request_id))

    def _close_failed(self, failure: Failure, tracked: Tracked, request_id: str) -> None:
        self._forget(tracked)
        code, text = self._host.describe(failure)
        self._reply(code, text, request_id, tracked.id)

    def _forget(self, tracked: Tracked) -> None:
        """The session ended: release what it held, once."""
        if self._sessions.pop(tracked.id, None) is None:
            return
        tracked.cancel_timers()
        self._tenancy.unroute(tracked.id)
        self._tenancy.usage.ended(tracked.tenant_id, tracked.service.name)
        shared = self._tenancy.shared_limits
        if tracked.reservation is not None and shared is not None:
            shared.release(tracked.reservation)

    def _forget_quietly(self, _: object, tracked: Tracked) -> None:
        """L{_forget}, as a callback that swallows the close's outcome."""
        self._forget(tracked)

    # -- status ---------------------------------------------------------------

    def status(self, request: Status, tenant: TenantGrant) -> None:
        """Answer what became of a session C{tenant} may see (L{bipgw.core._lookup}):
        C{state}, or C{error} C{unknown-session} (or C{unavailable} when the
        recorded history cannot be read)."""
        found = look_up(self._tenancy, tenant, request.session)
        found.addCallbacks(
            self._state, self._status_failed, callbackArgs=(request,), errbackArgs=(request,)
        )

    def _state(self, found: SessionLookup | None, request: Status) -> None:
        if found is None:
            text = f"no session {request.session} for this tenant"
            self._reply(ErrorCode.UNKNOWN_SESSION, text, request.id, request.session)
            return
        self._host.emit(state_message(found, request.id))

    def _status_failed(self, failure: Failure, request: Status) -> None:
        self._log.failure(
            "reading the history of session {session} failed", failure, session=request.session
        )
        text = "the session history cannot be read now"
        self._reply(ErrorCode.UNAVAILABLE, text, request.id, request.session)

    # -- commands -------------------------------------------------------------

    def command(self, request: Command, tenant: TenantGrant) -> None:
        """Run C{request} on its session, within C{tenant}'s (current) grant."""
        rid, sid = request.id, request.session
        tracked = self._sessions.get(sid)
        if tracked is None:
            self._reply(ErrorCode.UNKNOWN_SESSION, "no such session on this connection", rid, sid)
            return
        if tracked.closing:
            self._reply(ErrorCode.SESSION_CLOSING, "the session is closing", rid, sid)
            return
        if rid in tracked.commands:
            self._reply(ErrorCode.DUPLICATE_ID, f"command {rid!r} is still in flight", rid, sid)
            return
        usage = self._tenancy.usage
        refused = usage.check_command(tenant)
        if refused is not None:
            self._reply(ErrorCode.LIMIT_REACHED, refused, rid, sid)
            return
        capdus = request.capdus
        # The tenant's current grant rules (the HTTP API renews it per request).
        service = tenant.services.get(tracked.service.name, tracked.service)
        access = accesses(tracked, service, tenant.tenant_id)
        target = request.target if request.target is not None else tracked.target
        why = tracked.session.refusal(capdus, access, target)
        if why is not None:
            self._reply(ErrorCode.APPLICATION_NOT_ALLOWED, why.detail, rid, sid)
            return
        # Last, so that only a command that will run spends a token.
        refused = self._tenancy.rates.take(tenant.tenant_id, service)
        if refused is not None:
            self._reply(ErrorCode.RATE_LIMITED, refused, rid, sid)
            return
        usage.command_sent(tenant.tenant_id)
        wait = tracked.timeouts.command if tracked.timeouts else None
        timer = (
            None
            if wait is None
            else self._clock.callLater(wait, self._command_timed_out, tracked, rid, wait)
        )
        tracked.commands[rid] = timer
        # Through the session object, not the engine: a secured service's
        # session wraps every command in the card's SCP03 channel.
        done = maybeDeferred(
            tracked.session.execute,
            capdus,
            definite=request.definite_length,
            access=access,
            target=target,
        )
        done.addCallbacks(
            self._result,
            self._command_failed,
            callbackArgs=(tracked, rid),
            errbackArgs=(tracked, rid),
        )

    def _settle(self, tracked: Tracked, request_id: str) -> bool:
        """The engine answered a command: stop counting it; C{True} if it is still owed."""
        self._tenancy.usage.command_done(tracked.tenant_id)
        if request_id not in tracked.commands:
            return False  # timed out: the platform has had its error
        timer = tracked.commands.pop(request_id)
        if timer is not None and timer.active():
            timer.cancel()
        return True

    def _result(self, result: ScriptResult, tracked: Tracked, request_id: str) -> None:
        if self._settle(tracked, request_id):
            self._host.emit(
                Result.relayed(
                    session=tracked.id,
                    id=request_id,
                    rapdus=result.responses,
                    executed=result.executed,
                    elapsed_ms=max(0, round(result.duration * 1000)),
                    complete=result.complete,
                )
            )

    def _command_failed(self, failure: Failure, tracked: Tracked, request_id: str) -> None:
        if self._settle(tracked, request_id):
            code, text = self._host.describe(failure)
            self._reply(code, text, request_id, tracked.id)

    def _command_timed_out(self, tracked: Tracked, request_id: str, wait: float) -> None:
        tracked.commands.pop(request_id, None)
        text = f"no answer within {wait:g} s (timeouts.command); the session is closed"
        self._reply(ErrorCode.COMMAND_TIMEOUT, text, request_id, tracked.id)
        self._close_for_timeout(tracked, ErrorCode.COMMAND_TIMEOUT, text)


def _target_refused(request: Open | Take, service: ServiceGrant) -> str | None:
    """Why the session's C{target} application is refused, if it is (an open's or a take's)."""
    target = request.target
    if target is None or service.allows_application(target):
        return None
    return f"target application {target.hex().upper()} is not allowed for service {service.name}"
