# -*- test-case-name: tests.unit.store.test_recovery -*-
"""After a crash: sessions left open are ended, and their outcome stays answerable.

A gateway killed (C{kill -9}, a power cut) leaves the session rows it had
not ended in C{requested}, C{pushing}, C{awaiting-card}, C{connected} ...
with no reason.  L{end_sessions_left_open} runs once at start-up, after the
store is open and before the engine takes any session: every such row is
ended with C{gateway-restart} and a recorded transition.  Queued sessions
are ended, not resumed (C{docs/reliability.md} says why).

The engine keeps only its last ended sessions in memory, and none across a
restart; L{StoreSessionHistory} is the core's L{ISessionHistory} on the
store, which the doors ask for a session the engine does not know.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.core import (
    CardTarget,
    FailureReason,
    SessionId,
    SessionState,
    SessionStatus,
)
from bipgw.store._interfaces import IStore
from bipgw.store._types import SessionRecord

__all__ = ["RESTART_DETAIL", "StoreSessionHistory", "end_sessions_left_open", "session_status"]

RESTART_DETAIL = "the gateway stopped before the session ended; ended at its next start"

_log = Logger()


def end_sessions_left_open(store: IStore, clock: IReactorTime) -> Deferred[int]:
    """End every session a previous run left open, with C{gateway-restart}.

    Call once at start-up, once C{store} is started and before the engine
    opens any session (the gateway's C{recovery} step, L{bipgw.app}); the
    sessions opened from now on are left alone whatever the order.

    @return: how many sessions were ended (logged when any).
    """
    now = clock.seconds()
    done = store.end_unfinished_sessions(
        FailureReason.GATEWAY_RESTART.value, RESTART_DETAIL, now, opened_before=now
    )

    def ended(count: int) -> int:
        if count:
            _log.warn(
                "{count} session(s) left open by the previous run ended: gateway-restart",
                count=count,
            )
        return count

    return done.addCallback(ended)


def session_status(record: SessionRecord) -> SessionStatus:
    """The engine's view of a stored session (unknown codes are shown as none)."""
    try:
        state = SessionState(record.state)
    except ValueError:
        state = SessionState.FAILED
    try:
        reason = None if record.reason is None else FailureReason(record.reason)
    except ValueError:
        reason = None
    if record.iccid is not None:
        target = CardTarget.by_iccid(record.iccid)
    else:
        target = CardTarget.by_msisdn(record.msisdn or "0")
    return SessionStatus(
        session_id=SessionId(record.session_id),
        service=record.service,
        target=target,
        state=state,
        opened_at=record.opened_at,
        updated_at=record.updated_at,
        iccid=record.iccid,
        msisdn=record.msisdn,
        agent_id=record.agent_id,
        push_attempts=record.push_attempts,
        scripts=record.scripts,
        ended_at=record.ended_at,
        reason=reason,
        detail=record.detail,
    )


class StoreSessionHistory:
    """The core's L{bipgw.core.ISessionHistory} on a store."""

    def __init__(self, store: IStore) -> None:
        self._store = store

    def session_status(self, session_id: str) -> Deferred[SessionStatus | None]:
        """See L{bipgw.core.ISessionHistory.session_status}."""
        found = self._store.get_session(session_id)
        return found.addCallback(lambda r: None if r is None else session_status(r))
