# -*- test-case-name: tests.unit.core.test_takeover -*-
"""A session another node opened and lost, re-opened here under its own id.

In a cluster (C{docs/cluster.md}) a node can die (C{kill -9}) with sessions
queued: not pushed yet, or pushed and waiting for their card.  Nothing of
them had reached a card, so a live node can run them instead: it re-opens
each under the id the platform holds, for the same card, service and
tenant, and it is pushed again (the push takes a new OTA counter, as every
push does: counters come from the shared database, never from the dead
node).  A L{Handover} is what the cluster kept of such a session (the
registry in Redis); L{reopen} starts it in this node's engine and hands it
to a door's relay (L{bipgw.core.SessionRelay.adopt}), so the tenant drives
it as if it had opened it here.

Only the cluster decides which sessions are taken over and which node does
(C{bipgw.cluster._takeover}); this module knows nothing of Redis.
"""

from __future__ import annotations

import attrs

from bipgw.codec.platform import Timeouts
from bipgw.core._grants import ServiceGrant, TenantGrant
from bipgw.core._handles import Session
from bipgw.core._relay import SessionRelay
from bipgw.core._secured import SecuredSession
from bipgw.core._tenancy import Tenancy
from bipgw.core._types import CardTarget, FailureReason, SessionError, SessionId

__all__ = ["Handover", "reopen"]


@attrs.frozen
class Handover:
    """A queued session of a dead node, as the cluster kept it.

    @ivar session_id: its id (the platform holds it).
    @ivar service: the service it was opened for.
    @ivar tenant_id: the tenant that opened it.
    @ivar iccid: its card, when known (else C{msisdn} names it).
    @ivar msisdn: the number it was opened for, when not by ICCID.
    @ivar application: the open's C{application} (TAR or AID), if any.
    @ivar target: the open's C{target} application (Amd B), if any.
    @ivar node: the dead node that opened it.
    @ivar timeouts: the platform's own C{timeouts} of its open, if any.
    @ivar waited: seconds since it was opened (the platform's C{ready}
        timeout counts from the open).
    @ivar seq: the last event number its recorded history has: its events
        here are numbered on from the next (C{GET /v1/events}, the history).
    """

    session_id: str
    service: str
    tenant_id: str
    iccid: str | None = None
    msisdn: str | None = None
    application: bytes | None = None
    target: bytes | None = None
    node: str = ""
    timeouts: Timeouts | None = None
    waited: float = 0.0
    seq: int = 0

    def card(self) -> CardTarget:
        """The card to open the session for.

        @raise SessionError: C{UNKNOWN_CARD}, when neither is known.
        """
        if self.iccid:
            return CardTarget.by_iccid(self.iccid)
        if self.msisdn:
            return CardTarget.by_msisdn(self.msisdn)
        raise SessionError(FailureReason.UNKNOWN_CARD, "the cluster kept neither ICCID nor MSISDN")


def granted(handover: Handover, tenant: TenantGrant | None) -> ServiceGrant:
    """The grant under which C{handover} runs again.

    @raise SessionError: C{SERVICE_NOT_ALLOWED}, when the tenant is unknown
        (or disabled) now, or no longer has the service or the application.
    """
    if tenant is None or tenant.tenant_id != handover.tenant_id:
        raise SessionError(
            FailureReason.SERVICE_NOT_ALLOWED,
            f"tenant {handover.tenant_id} is unknown or disabled now",
        )
    service = tenant.services.get(handover.service)
    if service is None:
        raise SessionError(
            FailureReason.SERVICE_NOT_ALLOWED,
            f"tenant {handover.tenant_id} has no service {handover.service!r} now",
        )
    for app in (handover.application, handover.target):
        if app is not None and not service.allows_application(app):
            raise SessionError(
                FailureReason.SERVICE_NOT_ALLOWED,
                f"application {app.hex().upper()} is no longer allowed for service {service.name}",
            )
    return service


def reopen(
    tenancy: Tenancy,
    relay: SessionRelay,
    handover: Handover,
    tenant: TenantGrant | None,
    reservation: str | None = None,
) -> Session | SecuredSession:
    """Start C{handover} in C{tenancy}'s engine under its own id, relayed by C{relay}.

    The session starts from the beginning (the card is looked up, claimed
    and pushed); C{relay} reports C{ready} or C{failed} to its door, and the
    tenant's commands and close go through it.

    @param tenant: the tenant's grant now (a changed grant applies).
    @param reservation: its count in the cluster's shared limits, if taken.
    @raise SessionError: the session cannot run again (L{granted},
        L{Handover.card}); or C{UNKNOWN_SESSION} when this engine already
        holds a session with that id.
    """
    service = granted(handover, tenant)
    assert tenant is not None  # granted() refused None
    card = handover.card()
    try:
        session_id = SessionId.of(handover.session_id)
    except ValueError:
        raise SessionError(
            FailureReason.UNKNOWN_SESSION, f"{handover.session_id!r} is not a session id"
        ) from None
    engine = tenancy.engine
    if engine.status(session_id) is not None:
        raise SessionError(
            FailureReason.UNKNOWN_SESSION, "this node already holds a session with that id"
        )
    session = engine.open(card, service.name, session_id=session_id, seq=max(0, handover.seq))
    relay.adopt(
        session,
        tenant,
        service,
        handover.application,
        handover.target,
        reservation,
        handover.timeouts,
        handover.waited,
    )
    return session
