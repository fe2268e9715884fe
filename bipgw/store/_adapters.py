# -*- test-case-name: tests.unit.store.test_adapters -*-
"""The store as the session engine's card directory and session recorder.

L{bipgw.core} reaches the database through two small protocols,
C{ICardDirectory} and C{ISessionRecorder}; these adapters implement them
on any L{IStore}, translating the engine's types (enums, L{SessionId}) to
the store's plain records (the enums' stable C{value} codes as text), so
the store keeps no dependency on the engine's classes in its tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred

from bipgw.core import (
    ApduTrace,
    CardRecord,
    CardTarget,
    SessionEvent,
    SessionStatus,
)
from bipgw.keys import psk_identity_for
from bipgw.store._card_reads import MAX_CARDS, CardName, find_cards
from bipgw.store._group import GroupCommit
from bipgw.store._interfaces import IStore
from bipgw.store._sql import SqlStore
from bipgw.store._types import ApduTraceRecord, Card, SessionRecord
from bipgw.store._types import SessionEvent as StoredEvent


def session_record(status: SessionStatus) -> SessionRecord:
    """The store's record of an engine status snapshot."""
    return SessionRecord(
        session_id=status.session_id.value,
        service=status.service,
        state=status.state.value,
        opened_at=status.opened_at,
        updated_at=status.updated_at,
        iccid=status.iccid if status.iccid is not None else status.target.iccid,
        msisdn=status.msisdn if status.msisdn is not None else status.target.msisdn,
        agent_id=status.agent_id,
        push_attempts=status.push_attempts,
        scripts=status.scripts,
        ended_at=status.ended_at,
        reason=None if status.reason is None else status.reason.value,
        detail=status.detail,
    )


def event_record(event: SessionEvent) -> StoredEvent:
    """The store's record of an engine event."""
    return StoredEvent(
        session_id=event.session_id.value,
        seq=event.seq,
        at=event.at,
        state=event.state.value,
        previous=None if event.previous is None else event.previous.value,
        reason=None if event.reason is None else event.reason.value,
        detail=event.detail,
        transition=event.transition,
    )


def trace_record(trace: ApduTrace) -> ApduTraceRecord:
    """The store's record of one traced APDU."""
    return ApduTraceRecord(
        session_id=trace.session_id.value,
        script=trace.script,
        index=trace.index,
        capdu=trace.capdu,
        rapdu=trace.rapdu,
        sent_at=trace.sent_at,
        answered_at=trace.answered_at,
        outcome=trace.outcome,
    )


class StoreSessionRecorder:
    """The engine's C{ISessionRecorder} on a store: history and traces in the database."""

    def __init__(self, store: IStore) -> None:
        self._store = store

    def record_opened(self, status: SessionStatus) -> Deferred[None]:
        """Create the session's row; fires once the store has committed it."""
        return self._store.save_session(session_record(status))

    def record_session(self, status: SessionStatus) -> Deferred[None]:
        """Create or replace the session's row with this snapshot."""
        return self._store.save_session(session_record(status))

    def record_event(self, event: SessionEvent) -> Deferred[None]:
        """Append one transition or note."""
        return self._store.add_session_events([event_record(event)])

    def record_apdus(self, traces: Sequence[ApduTrace]) -> Deferred[None]:
        """Append one script's APDU trace, in one write."""
        return self._store.add_apdu_traces([trace_record(t) for t in traces])


class StoreCardDirectory:
    """The engine's C{ICardDirectory} on a store: cards by ICCID or MSISDN.

    MSISDNs are stored as digits (C{docs/file-formats.md}), so a leading
    C{+} in the target is dropped before the lookup.  A card imported
    without a PSK identity gets the default one (L{psk_identity_for}).
    """

    def __init__(self, store: IStore) -> None:
        self._store = store
        self._batches: GroupCommit[CardName, Card | None] | None = None
        if isinstance(store, SqlStore):
            # Sessions opened in a burst: the cards asked for while one read
            # runs are read together in the next (issue 14: one transaction
            # per open was most of the SQLite thread's work).
            self._batches = GroupCommit(self._read, limit=MAX_CARDS)

    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        """The card C{target} names, or C{None}."""
        name: CardName = (
            ("iccid", target.iccid)
            if target.iccid is not None
            else ("msisdn", (target.msisdn or "").lstrip("+"))
        )
        if self._batches is not None:
            found = self._batches.submit(name)
        elif name[0] == "iccid":
            found = self._store.get_card(name[1])
        else:
            found = self._store.card_by_msisdn(name[1])
        return found.addCallback(_card_record)

    def _read(self, names: Sequence[CardName]) -> Deferred[list[Card | Exception | None]]:
        assert isinstance(self._store, SqlStore)
        d: Deferred[list[Any]] = self._store.transaction(
            lambda c: find_cards(c, names), write=False
        )
        return d


def _card_record(card: Card | None) -> CardRecord | None:
    if card is None:
        return None
    identity = card.psk_identity or psk_identity_for(card.iccid)
    return CardRecord(iccid=card.iccid, msisdn=card.msisdn, psk_identity=identity)
