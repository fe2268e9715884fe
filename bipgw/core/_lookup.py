# -*- test-case-name: tests.unit.core.test_lookup,tests.unit.platform.test_status -*-
"""A session's state for the tenant asking, live or recorded: the C{status} request.

A platform that reconnects, after its connection broke or after the
gateway restarted, asks what became of the sessions it had.  The engine
answers for the sessions it holds (live, or among its last ended ones);
for the others the tenancy's L{bipgw.core.ISessionHistory} (the store)
answers from what was recorded: after a restart, every session that had not
ended was ended there with reason C{gateway-restart}.

Who sees what (the HTTP API's C{GET /v1/sessions/{id}} applies the same rules):
  - the tenant that opened the session in this run sees it in full
    (service, card, counts);
  - a session the engine no longer holds, recorded for one of the
    tenant's services, shows only its outcome (state, reason, times), not
    the card: after a restart nothing but the random session id proves the
    asker opened it;
  - anything else is unknown to the tenant, whether or not it exists.
"""

from __future__ import annotations

from typing import Final

import attrs
from twisted.internet.defer import Deferred, succeed

from bipgw.codec.platform import MAX_TEXT, MSISDN, State
from bipgw.codec.platform._fields import ICCID, NAME
from bipgw.core._grants import TenantGrant
from bipgw.core._tenancy import Tenancy
from bipgw.core._types import SessionStatus

__all__ = ["OUTCOME_FIELDS", "SessionLookup", "look_up", "state_message"]

OUTCOME_FIELDS: Final = frozenset(
    {"session", "state", "reason", "opened_at", "updated_at", "ended_at"}
)
"""What a recorded session shows a tenant that cannot be shown to have opened it."""


@attrs.frozen
class SessionLookup:
    """A session's status, and whether the asker may see all of it.

    @ivar full: C{False}: only the L{OUTCOME_FIELDS} may be shown.
    """

    status: SessionStatus
    full: bool


def look_up(tenancy: Tenancy, tenant: TenantGrant, session: str) -> Deferred[SessionLookup | None]:
    """What C{tenant} may know of C{session}; C{None}: unknown to it.

    Fires at once for a session the engine holds; otherwise once the
    history has answered, or fails as the history failed.
    """
    mine = tenancy.owner(session) == tenant.tenant_id
    live = tenancy.engine.status(session)
    if live is not None or tenancy.history is None:
        return succeed(SessionLookup(live, True) if live is not None and mine else None)

    def recorded(status: SessionStatus | None) -> SessionLookup | None:
        if status is None or status.service not in tenant.services:
            return None
        return SessionLookup(status, mine)

    return tenancy.history.session_status(session).addCallback(recorded)


def state_message(found: SessionLookup, request_id: str) -> State:
    """The C{state} answer to status request C{request_id}.

    A value the channel cannot carry (a number stored in another form, a
    service name from an older configuration) is left out, not sent invalid.
    """
    status = found.status
    outcome = State(
        id=request_id,
        session=str(status.session_id),
        state=status.state.value,
        reason=status.reason.value if status.reason else None,
        opened_at=status.opened_at,
        updated_at=status.updated_at,
        ended_at=status.ended_at,
    )
    if not found.full:
        return outcome
    return attrs.evolve(
        outcome,
        detail=status.detail[:MAX_TEXT] or None,
        service=status.service if NAME.match(status.service) else None,
        iccid=status.iccid if status.iccid and ICCID.match(status.iccid) else None,
        msisdn=status.msisdn if status.msisdn and MSISDN.match(status.msisdn) else None,
        scripts=status.scripts,
        push_attempts=status.push_attempts,
    )
