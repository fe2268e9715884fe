# -*- test-case-name: tests.unit.core.test_recorder -*-
"""The engine's collaborators, as structural interfaces, and the memory recorder.

The engine is pure logic: it reaches the SMSC, the card database and the
session store only through these small interfaces, so each side can be
built and tested alone.  They are L{typing.Protocol}s (checked by mypy, no
registration needed): the push sender, the store and the test fakes just
have to have the methods.

The SMS side runs downward only: the engine hands pushes to its
L{IPushSender} (L{bipgw.push.PushSender}, which secures them with a counter
from an L{ICounterAllocator} and submits them through the SMPP door), and
the SMPP door reports what comes back (delivery receipts, SMS from cards) to
the engine's L{ISmsEvents} door, knowing nothing of sessions or keys.

L{MemorySessionRecorder} is the recorder used in tests and when the gateway
runs without a database; the SQL store implements L{ISessionRecorder} the
same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs
from twisted.internet.defer import Deferred, succeed

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


@attrs.frozen
class PorReport:
    """A card's proof of receipt, opened and checked with the card's keys.

    @ivar status: the PoR status byte (C{00} OK, C{06} counter low, ...).
    @ivar counter: the counter the card echoed (C{0} in a clear error PoR).
    @ivar data: the response data after the status (e.g. a compact result).
    """

    status: int
    counter: int
    data: bytes = b""


@runtime_checkable
class IPushSender(Protocol):
    """Sends the push SMS that makes a card open its SCP81 channel, and checks its PoRs.

    The implementation (L{bipgw.push.PushSender}) allocates and persists the
    card's OTA counter, secures the trigger with the card's keys and submits
    every SMS part; it alone holds the keys, so it also opens the PoRs.
    """

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        """Submit the push for C{order}.

        @return: fires with the receipt (the SMSC's message ids, the OTA
            counter) once the SMSC accepted every part; fails with
            L{bipgw.core.PushError} (C{permanent=True} when a retry cannot
            help) or any exception, which counts as transient.
        """

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        """Open and check a PoR user data (C{02 71 00 ...}) from card C{iccid}.

        @return: fires with the L{PorReport}; fails when the PoR cannot be
            believed (no keys, bad checksum, wrong TAR, malformed).
        """


@runtime_checkable
class IScriptSender(Protocol):
    """Sends a command script as secured SMS-PP command packets, and checks its PoR.

    The SMS transport's sender (L{bipgw.push.PushSender} again: same keys,
    same counters, same SMS link as the pushes).  The order's C{attempt} is
    the script's number in its session.
    """

    def send_script(self, order: PushOrder, data: bytes) -> Deferred[PushReceipt]:
        """Secure C{data} (a TS 102 226 script) with the card's next counter and submit it.

        @return: fires with the SMSC's message ids and the counter once every
            part is accepted; fails with L{bipgw.core.PushError}.
        """

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        """As L{IPushSender.verify_por}: the PoR of the last packet sent to the card."""


@runtime_checkable
class ICounterAllocator(Protocol):
    """Hands out a card's OTA counters, each persisted before it is returned (the store)."""

    def next_ota_counter(self, iccid: str) -> Deferred[int]:
        """The card's next counter (its last plus one), already stored.

        A push is never secured with a counter a crash could hand out again.
        """


@runtime_checkable
class ISmsEvents(Protocol):
    """What the SMS door reports to the engine (L{bipgw.core.SessionEngine}).

    The SMSC knows message ids and MSISDNs; the engine maps them back to the
    session and push they are about, and has each PoR verified by its
    L{IPushSender} before believing it.
    """

    def delivery_receipt(
        self, message_id: str, delivered: bool, detail: str = "", user_data: bytes | None = None
    ) -> None:
        """A final delivery receipt for the SMS part the SMSC accepted as C{message_id}.

        @param delivered: C{False} for a final non-delivery (undeliverable,
            expired, rejected).
        @param detail: the receipt's state and error, for the history.
        @param user_data: the card's PoR, when the SMSC carries it in the
            receipt (PoR by SMS-DELIVER-REPORT).
        """

    def sms_received(self, msisdn: str, user_data: bytes) -> Deferred[None]:
        """An SMS from a card (a PoR sent by SMS-SUBMIT: C{02 71 00 ...}), whole.

        @return: fires once handled (reported, or logged and dropped); never fails.
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
    slow a card down.  Calls for one session arrive in order.  The one
    exception is L{record_opened}: a door waits for it before it tells the
    platform the session exists, so that no session the platform was told
    about is missing from the store after a crash.
    """

    def record_opened(self, status: SessionStatus) -> Deferred[None] | None:
        """Create the session's row with its opening snapshot, durably.

        Fires (or returns) once the row is committed; fails if it could
        not be.  The engine calls it instead of L{record_session} for the
        first snapshot of every session.
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


@runtime_checkable
class ISessionHistory(Protocol):
    """Answers for sessions the engine no longer holds: what was recorded.

    The engine keeps the last C{keep_finished} ended sessions in memory and
    nothing across a restart; a platform that reconnects after a crash asks
    the door for a session's final state, and the door asks this (the
    store, L{bipgw.store.StoreSessionHistory}).
    """

    def session_status(self, session_id: str) -> Deferred[SessionStatus | None]:
        """The session's last recorded status, or C{None} if none was recorded."""


@runtime_checkable
class ICardLocks(Protocol):
    """The one-session-per-card rule beyond this engine: which node holds a card.

    The engine keeps its own cards' owners and queues; before a session
    starts on a card no session of this engine holds, it takes the card's
    lock here.  One node alone needs nothing more (L{LocalCardLocks}); the
    nodes of a cluster share their locks in Redis
    (L{bipgw.cluster.RedisCardLocks}), each held by a node, with an expiry
    its holder keeps renewing, so a dead node cannot hold a card for ever.
    """

    def acquire(self, iccid: str) -> Deferred[bool]:
        """Take card C{iccid} for this node: C{True} if taken (or already held
        by this node), C{False} if another node holds it; fails when the
        locks cannot be reached."""

    def release(self, iccid: str) -> None:
        """This node no longer needs card C{iccid} (a no-op if it does not hold it)."""


class LocalCardLocks:
    """The L{ICardLocks} of a gateway alone: every card is free for it.

    The engine's own table is the whole rule, so taking a lock costs one
    already-fired Deferred.
    """

    def acquire(self, iccid: str) -> Deferred[bool]:
        """See L{ICardLocks.acquire}: always taken."""
        return succeed(True)

    def release(self, iccid: str) -> None:
        """See L{ICardLocks.release}: nothing to do."""


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

    def record_opened(self, status: SessionStatus) -> None:
        """Keep C{status}: kept at once, as durable as this recorder gets."""
        self.sessions[status.session_id] = status

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
