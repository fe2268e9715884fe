# -*- test-case-name: tests.unit.core.test_relay,tests.unit.platform.test_channel -*-
"""How a relay's sessions begin: opens and takes, checked and admitted.

A L{bipgw.core.SessionRelay} hands each C{open} and C{take} to its
L{RelayOpens}: the tenant's grant must name the service, allow the
application and the target application, and the tenant's and service's
session limits must leave room (L{bipgw.core.TenantUsage}; in a cluster
the shared limits are reserved too, L{bipgw.core.ISharedLimits}).  Then
the engine opens (or hands over) the session and the relay tracks it from
there; a request refused is answered with an C{error} naming why.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.platform import ErrorCode, Open, Take
from bipgw.core._grants import ServiceGrant, TenantGrant
from bipgw.core._handles import Session
from bipgw.core._secured import SecuredSession
from bipgw.core._tenancy import Tenancy
from bipgw.core._tracked import RelayHost, reply_error
from bipgw.core._types import CardTarget, FailureReason, SessionError

__all__ = ["RelayOpens", "Track"]

Track = Callable[
    [Session | SecuredSession, TenantGrant, ServiceGrant, Open | Take, bytes | None, str | None],
    Deferred[None],
]
"""Relays a session from now on: C{(session, tenant, service, request,
application, reservation)}; fires once the request is answered."""


class RelayOpens:
    """The opens and takes of one relay (module docstring).

    @param tenancy: what the doors share (engine, usage, the cluster's limits).
    @param host: the door: where refusals go.
    @param track: the relay's way to track a session it opened or took.
    @param closed: whether the relay's door has gone away.
    """

    _log = Logger()

    def __init__(
        self, tenancy: Tenancy, host: RelayHost, track: Track, closed: Callable[[], bool]
    ) -> None:
        self._tenancy = tenancy
        self._host = host
        self._track = track
        self._closed = closed

    def _reply(
        self, code: str, text: str, request_id: str | None = None, session: str | None = None
    ) -> None:
        reply_error(self._host, code, text, request_id, session)

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
        if token is None or self._closed():
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
        return self._track(session, tenant, service, request, None, None)


def _target_refused(request: Open | Take, service: ServiceGrant) -> str | None:
    """Why the session's C{target} application is refused, if it is (an open's or a take's)."""
    target = request.target
    if target is None or service.allows_application(target):
        return None
    return f"target application {target.hex().upper()} is not allowed for service {service.name}"
