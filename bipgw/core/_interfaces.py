# -*- test-case-name: tests.unit.core.test_recorder -*-
"""The engine's collaborators, as structural interfaces, and the memory recorder.

The engine is pure logic: it reaches the SMSC, the card database and the
session store only through these three small interfaces, so each side can be
built and tested alone.  They are L{typing.Protocol}s (checked by mypy, no
registration needed): the SMPP service, the store and the test fakes just
have to have the methods.

L{MemorySessionRecorder} is the recorder used in tests and when the gateway
runs without a database; the SQL store implements L{ISessionRecorder} the
same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from twisted.internet.defer import Deferred

from bipgw.core._types import (
    ApduTrace,
    CardRecord,
    CardTarget,
    PushOrder,
    PushReceipt,
    SessionEvent,
    SessionId,
    SessionStatus,
)


@runtime_checkable
class IPushSender(Protocol):
    """Sends the push SMS that makes a card open its SCP81 channel.

    The implementation (the SMPP service with the push builder) allocates
    and persists the card's OTA counter, secures the trigger with the card's
    keys and submits every SMS part.
    """

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        """Submit the push for C{order}.

        @return: fires with the receipt once the SMSC accepted every part;
            fails with L{bipgw.core.PushError} (C{permanent=True} when a
            retry cannot help) or any exception, which counts as transient.
        """


@runtime_checkable
class ICardDirectory(Protocol):
    """Finds a card by ICCID or MSISDN (the application database)."""

    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        """The card C{target} names, or C{None} when there is none.

        An MSISDN that has been unmapped (C{DEL}) names no card.
        """


@runtime_checkable
class ISessionRecorder(Protocol):
    """Keeps every session's history and APDU trace (the portal shows them).

    Methods may return a Deferred (a database write) or C{None}; the engine
    never waits for them, only logs their failures, so a slow store cannot
    slow a card down.  Calls for one session arrive in order.
    """

    def record_session(self, status: SessionStatus) -> Deferred[None] | None:
        """Create or update the session's row with this snapshot.

        Called when the session is opened, when its card is resolved, and
        when it ends (with the final state and reason).
        """

    def record_event(self, event: SessionEvent) -> Deferred[None] | None:
        """Append one transition or note to the session's history."""

    def record_apdus(self, traces: Sequence[ApduTrace]) -> Deferred[None] | None:
        """Append the trace of one command script (every C-APDU, answered or not)."""


class MemorySessionRecorder:
    """An L{ISessionRecorder} that keeps everything in lists, for tests and demos.

    @ivar sessions: the latest snapshot of every session, by id.
    @ivar events: every event, in the order recorded.
    @ivar apdus: every APDU trace, in the order recorded.
    """

    def __init__(self) -> None:
        self.sessions: dict[SessionId, SessionStatus] = {}
        self.events: list[SessionEvent] = []
        self.apdus: list[ApduTrace] = []

    def record_session(self, status: SessionStatus) -> None:
        """Keep C{status} as the session's latest snapshot."""
        self.sessions[status.session_id] = status

    def record_event(self, event: SessionEvent) -> None:
        """Append C{event}."""
        self.events.append(event)

    def record_apdus(self, traces: Sequence[ApduTrace]) -> None:
        """Append C{traces}."""
        self.apdus.extend(traces)

    def history(self, session_id: SessionId) -> list[SessionEvent]:
        """The events of one session, in order."""
        return [e for e in self.events if e.session_id == session_id]

    def trace(self, session_id: SessionId) -> list[ApduTrace]:
        """The APDU trace of one session, in order."""
        return [t for t in self.apdus if t.session_id == session_id]
