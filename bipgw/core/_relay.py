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

An open's or a take's checks and admission are the relay's L{RelayOpens}
(L{bipgw.core._relay_opens}); a command's checks, limits and answer its
L{RelayCommands} (L{bipgw.core._relay_commands}).  In a cluster, a command, close or status
for a session this relay does not hold goes to the node holding it
(L{bipgw.core._remote}: the tenancy's C{remote}); alone, it is answered
C{unknown-session} as before.

Every session is released exactly once (L{SessionRelay._forget}), whichever
way it ends: its usage count, its timers and its route in the tenancy.
Time comes from the tenancy's clock only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from twisted.internet.defer import Deferred
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
    Failed,
    Message,
    Notification,
    NotificationEvent,
    Offer,
    Open,
    Ready,
    Status,
    Take,
    Timeouts,
)
from bipgw.core._grants import ServiceGrant, TenantGrant
from bipgw.core._handles import Session
from bipgw.core._lookup import SessionLookup, look_up, state_message
from bipgw.core._offers import CardOffer
from bipgw.core._relay_commands import RelayCommands
from bipgw.core._relay_opens import RelayOpens
from bipgw.core._remote import RemoteDoor
from bipgw.core._secured import SecuredSession
from bipgw.core._tenancy import Tenancy
from bipgw.core._tracked import RelayHost, Tracked, reply_error
from bipgw.core._types import (
    FailureReason,
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
        self._remote: RemoteDoor | None = None
        self._commands = RelayCommands(tenancy, host, self._sessions, self._close_for_timeout)
        self._opens = RelayOpens(tenancy, host, self._track, lambda: self._closed)

    @property
    def sessions(self) -> list[str]:
        """The ids of the live sessions, oldest first."""
        return list(self._sessions)

    def tracked(self, session: str) -> Tracked | None:
        """The live session C{session}, if this relay has it."""
        return self._sessions.get(session)

    def _reply(
        self,
        code: str,
        text: str,
        request_id: str | None = None,
        session: str | None = None,
        emit: Callable[[Message], object] | None = None,
    ) -> None:
        reply_error(self._host, code, text, request_id, session, emit)

    def _remote_door(self) -> RemoteDoor | None:
        """The door to other nodes' sessions, in a cluster (L{bipgw.core._remote})."""
        remote = self._tenancy.remote
        if remote is None or self._closed:
            return None
        if self._remote is None:
            self._remote = RemoteDoor(remote, self._host)
        return self._remote

    # -- sessions -------------------------------------------------------------

    def open(self, request: Open, tenant: TenantGrant) -> Deferred[None]:
        """Open a session as C{request} asks, within C{tenant}'s grant
        (L{RelayOpens.open}).

        @return: fires once the request is answered; never fails.
        """
        return self._opens.open(request, tenant)

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
        self._tenancy.opened(tracked.id, tenant.tenant_id, app, tracked.target, request.timeouts)
        self._tenancy.route(tracked.id, self)
        return session.recorded.addCallbacks(
            self._recorded,
            self._not_recorded,
            callbackArgs=(tracked, request),
            errbackArgs=(tracked, request),
        )

    def adopt(
        self,
        session: Session | SecuredSession,
        tenant: TenantGrant,
        service: ServiceGrant,
        application: bytes | None,
        target: bytes | None,
        reservation: str | None = None,
        timeouts: Timeouts | None = None,
        waited: float = 0.0,
    ) -> None:
        """Relay C{session}, which this door did not open: a session another
        node of a cluster opened and lost, re-opened here under its id
        (L{bipgw.core.reopen}).

        The platform has its id already: no C{accepted} is emitted; C{ready}
        or C{failed}, then notifications, as for a session it opened here.

        @param timeouts: the platform's own, from its open: C{command} applies
            as on the node it opened on; C{ready} counts from the open, so
            what is left after C{waited} seconds (at once when nothing is).
        """
        tracked = Tracked(session, tenant.tenant_id, service, application, timeouts, target=target)
        tracked.reservation = reservation
        self._sessions[tracked.id] = tracked
        self._tenancy.usage.opened(tenant.tenant_id, service.name)
        self._tenancy.opened(tracked.id, tenant.tenant_id, application, target, timeouts)
        self._tenancy.route(tracked.id, self)
        ready = timeouts.ready if timeouts else None
        if ready is not None:
            left = max(0.0, ready - max(0.0, waited))
            tracked.timer = self._clock.callLater(left, self._ready_timed_out, tracked, ready)
        # Its row exists (the lost node wrote it); a failed rewrite is logged
        # by the engine, and the session goes on.
        session.recorded.addErrback(lambda _: None)
        session.ready.addCallbacks(
            self._ready, self._not_ready, callbackArgs=(tracked,), errbackArgs=(tracked,)
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
        """Take the card-initiated session C{request} names, within C{tenant}'s
        grant (L{RelayOpens.take}).

        @return: fires once the request is answered; never fails.
        """
        return self._opens.take(request, tenant)

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
        """The store (or a cluster's registry) could not record the session:
        refuse the open, cancel the session."""
        why = failure.getErrorMessage() or type(failure.value).__name__
        if not self._closed:
            self._reply(
                ErrorCode.UNAVAILABLE,
                f"the session could not be recorded ({why}); try again later",
                request.id,
            )
        tracked.closing = True
        tracked.session.ready.addErrback(lambda _: None)
        # Not the platform's close: it was never told the session existed.
        detail = f"the open was refused (unavailable): the session could not be recorded ({why})"
        self._tenancy.engine.abandon(tracked.id, FailureReason.DIRECTORY_ERROR, detail)
        self._forget(tracked)

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

    def close(self, request: Close, tenant: TenantGrant | None = None) -> None:
        """End a session as C{request} asks, after the commands already sent.

        In a cluster, a session this relay does not hold is closed on the
        node holding it, if it is C{tenant}'s (L{bipgw.core._remote}).
        """
        remote = None if request.session in self._sessions else self._remote_door()
        if remote is not None and tenant is not None:
            remote.forward(tenant, request, lambda: self.run_close(request))
            return
        self.run_close(request)

    def run_close(self, request: Close, emit: Callable[[Message], object] | None = None) -> None:
        """L{close} on this relay's own session, answering through C{emit}
        (the door's by default; a forwarded request's answer on its owner)."""
        tracked = self._sessions.get(request.session)
        if tracked is None:
            self._reply(
                ErrorCode.UNKNOWN_SESSION,
                "no such session on this connection",
                request.id,
                request.session,
                emit,
            )
            return
        tracked.closing = True
        done = self._tenancy.engine.close(tracked.id)
        done.addCallbacks(
            self._closed_ok,
            self._close_failed,
            callbackArgs=(tracked, request.id, emit),
            errbackArgs=(tracked, request.id, emit),
        )

    def close_all(self) -> list[Deferred[None]]:
        """Close every session cleanly (the door is going away), answering nothing.

        From then on a session that ends is only released, not reported.

        @return: the engine's closes, each firing once its session is released.
        """
        self._closed = True
        if self._remote is not None:
            self._remote.close()
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

    def _closed_ok(
        self,
        status: SessionStatus,
        tracked: Tracked,
        request_id: str,
        emit: Callable[[Message], object] | None,
    ) -> None:
        self._forget(tracked)
        (emit or self._host.emit)(Closed(session=tracked.id, id=request_id))

    def _close_failed(
        self,
        failure: Failure,
        tracked: Tracked,
        request_id: str,
        emit: Callable[[Message], object] | None,
    ) -> None:
        self._forget(tracked)
        code, text = self._host.describe(failure)
        self._reply(code, text, request_id, tracked.id, emit)

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
        recorded history cannot be read).

        In a cluster, a session this node's engine does not hold is answered
        by the node holding it (in full if it is the tenant's), else from
        the recorded history.
        """
        held = self._tenancy.engine.status(request.session) is not None
        remote = None if held else self._remote_door()
        if remote is not None:
            remote.forward(tenant, request, lambda: self._look_up(request, tenant))
            return
        self._look_up(request, tenant)

    def _look_up(self, request: Status, tenant: TenantGrant) -> None:
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

    def command(self, request: Command, tenant: TenantGrant, ready_wait: float = 0.0) -> None:
        """Run C{request} on its session, within C{tenant}'s (current) grant.

        In a cluster, a session this relay does not hold is run on the node
        holding it, if it is the tenant's (L{bipgw.core._remote}), waiting
        there up to C{ready_wait} seconds for its card to connect.
        """
        remote = None if request.session in self._sessions else self._remote_door()
        if remote is not None:
            remote.forward(tenant, request, lambda: self.run_command(request, tenant), ready_wait)
            return
        self.run_command(request, tenant)

    def run_command(
        self,
        request: Command,
        tenant: TenantGrant,
        emit: Callable[[Message], object] | None = None,
    ) -> None:
        """L{command} on this relay's own session, answering through C{emit}
        (the door's by default; a forwarded request's answer on its owner)."""
        self._commands.run(request, tenant, emit)
