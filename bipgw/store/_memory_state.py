# -*- test-case-name: tests.unit.store.test_contract -*-
"""What L{bipgw.store.MemoryStore} holds, and its writes that follow the store's rules.

The memory store's methods answer with Deferreds; the rules of its larger
writes (a card upsert, an MSISDN change, ending the sessions a crash left
open) are plain functions on its L{MemoryState} here, as the SQL store's are
in C{_queries}.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from attrs import evolve

from bipgw.store._feed_types import FeedFile, Partner
from bipgw.store._interfaces import plan_msisdn_change
from bipgw.store._types import (
    FINAL_SESSION_STATES,
    ApduTraceRecord,
    AuditRecord,
    Card,
    CardKey,
    CardUpsert,
    ImportReport,
    KeyPurpose,
    MsisdnChange,
    MsisdnMapping,
    Outcome,
    Service,
    SessionEvent,
    SessionRecord,
    Tenant,
    WriteResult,
)

__all__ = ["MemoryState", "apply_one", "card_holding", "end_unfinished", "upsert_one"]


class CardTable(dict[str, Card]):
    """The cards by ICCID, with the two lookups the store's rules make on
    every write indexed as the SQL store's are (PSK identity, MSISDN): a
    scan of every card there made an import of M{n} cards take M{n²}
    (15,000 cards: 633 s).  Every write goes through C{[iccid] = card}."""

    def __init__(self) -> None:
        super().__init__()
        self.by_psk: dict[bytes, str] = {}
        self.by_msisdn: dict[str, str] = {}

    def __setitem__(self, iccid: str, card: Card) -> None:
        old = self.get(iccid)
        if old is not None:
            self._forget(old)
        super().__setitem__(iccid, card)
        if card.psk_identity is not None:
            self.by_psk.setdefault(card.psk_identity, iccid)
        if card.msisdn is not None:
            self.by_msisdn.setdefault(card.msisdn, iccid)

    def __delitem__(self, iccid: str) -> None:
        self._forget(self[iccid])
        super().__delitem__(iccid)

    def _forget(self, card: Card) -> None:
        if card.psk_identity is not None and self.by_psk.get(card.psk_identity) == card.iccid:
            del self.by_psk[card.psk_identity]
        if card.msisdn is not None and self.by_msisdn.get(card.msisdn) == card.iccid:
            del self.by_msisdn[card.msisdn]

    def with_psk(self, identity: bytes) -> Card | None:
        iccid = self.by_psk.get(identity)
        return None if iccid is None else self[iccid]

    def with_msisdn(self, msisdn: str) -> Card | None:
        iccid = self.by_msisdn.get(msisdn)
        return None if iccid is None else self[iccid]

    def __copy__(self) -> CardTable:
        new = CardTable()
        dict.update(new, self)
        new.by_psk = dict(self.by_psk)
        new.by_msisdn = dict(self.by_msisdn)
        return new


class HistoryLog(list[MsisdnMapping]):
    """The MSISDN history in order, indexed by ICCID and by number (its
    C{msisdn} and C{previous_msisdn}): each change reads only its own
    entries, not the whole history.  Only appended to."""

    def __init__(self) -> None:
        super().__init__()
        self.by_iccid: dict[str, list[MsisdnMapping]] = {}
        self.by_number: dict[str, list[MsisdnMapping]] = {}

    def append(self, entry: MsisdnMapping) -> None:
        super().append(entry)
        if entry.iccid is not None:
            self.by_iccid.setdefault(entry.iccid, []).append(entry)
        for number in {entry.msisdn, entry.previous_msisdn}:
            if number is not None:
                self.by_number.setdefault(number, []).append(entry)

    def __copy__(self) -> HistoryLog:
        new = HistoryLog()
        list.extend(new, self)
        new.by_iccid = {k: list(v) for k, v in self.by_iccid.items()}
        new.by_number = {k: list(v) for k, v in self.by_number.items()}
        return new


class MemoryState:
    """Everything the store holds; copied whole for atomic batches."""

    def __init__(self) -> None:
        self.cards = CardTable()
        self.keys: dict[str, dict[tuple[KeyPurpose, int], CardKey]] = {}
        self.history = HistoryLog()
        self.tenants: dict[str, Tenant] = {}
        self.services: dict[str, Service] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.events: list[SessionEvent] = []
        self.traces: list[ApduTraceRecord] = []
        self.audit: list[AuditRecord] = []
        self.imports: list[ImportReport] = []
        self.partners: dict[str, Partner] = {}
        self.feed_files: dict[tuple[str, str], FeedFile] = {}

    def copy(self) -> MemoryState:
        """A copy whose containers can change without touching this one.

        Records are frozen, so sharing them is safe.
        """
        new = MemoryState()
        new.__dict__.update({name: copy.copy(value) for name, value in self.__dict__.items()})
        new.keys = {iccid: dict(keys) for iccid, keys in self.keys.items()}
        return new


def upsert_one(state: MemoryState, item: CardUpsert) -> WriteResult:
    if item.psk_identity is not None:
        owner = state.cards.with_psk(item.psk_identity)
        if owner is not None and owner.iccid != item.iccid:
            reason = f"PSK identity already belongs to card {owner.iccid}"
            return WriteResult(item.iccid, Outcome.REJECTED, reason, "psk_identity")
    current = state.cards.get(item.iccid)
    stored = state.keys.get(item.iccid, {})
    keys = [
        key
        for key in item.keys
        if (old := stored.get((key.purpose, key.kvn))) is None or old.fingerprint != key.fingerprint
    ]
    fields = {
        "imsi": item.imsi,
        "psk_identity": item.psk_identity,
        "batch": item.batch,
        "customer": item.customer,
        "card_type": item.card_type,
        "extras": item.extras,
    }
    if current is None:
        outcome = Outcome.ADDED
        state.cards[item.iccid] = Card(item.iccid, **fields)  # type: ignore[arg-type]
    elif item.differs_from(current) or keys:
        outcome = Outcome.UPDATED
        state.cards[item.iccid] = evolve(current, **fields)  # type: ignore[arg-type]
    else:
        return WriteResult(item.iccid, Outcome.UNCHANGED)
    stored = state.keys.setdefault(item.iccid, {})
    for key in keys:
        stored[(key.purpose, key.kvn)] = evolve(key, iccid=item.iccid)
    return WriteResult(item.iccid, outcome)


def card_holding(state: MemoryState, msisdn: str | None) -> Card | None:
    if msisdn is None:
        return None
    return state.cards.with_msisdn(msisdn)


def apply_one(
    state: MemoryState, index: int, change: MsisdnChange, applied_at: float
) -> WriteResult:
    card = state.cards.get(change.iccid) if change.iccid is not None else None
    holder = card_holding(state, change.msisdn)
    involved = {c.iccid for c in (card, holder) if c is not None}
    history = state.history
    related = [e for iccid in involved for e in history.by_iccid.get(iccid, ())]
    if change.msisdn is not None:
        related += history.by_number.get(change.msisdn, ())
    times = [h.effective_at for h in related]
    # A duplicate names the change's ICCID or number: its entries are among
    # those indexed under them (all of the history only when it names neither).
    if change.iccid is not None:
        candidates: Sequence[MsisdnMapping] = history.by_iccid.get(change.iccid, ())
    elif change.msisdn is not None:
        candidates = history.by_number.get(change.msisdn, ())
    else:
        candidates = history
    duplicate = any(
        h.operation is change.operation
        and h.effective_at == change.effective_at
        and (change.msisdn is None or h.msisdn == change.msisdn)
        and (change.iccid is None or h.iccid == change.iccid)
        for h in candidates
    )
    plan = plan_msisdn_change(
        change,
        card=card,
        holder=holder,
        latest_at=max(times, default=None),
        duplicate=duplicate,
    )
    if plan.iccid is not None and plan.outcome in (Outcome.ADDED, Outcome.UPDATED):
        target = state.cards[plan.iccid]
        state.cards[plan.iccid] = evolve(target, msisdn=plan.new_msisdn)
        state.history.append(
            MsisdnMapping(
                entry_id=len(state.history) + 1,
                operation=change.operation,
                msisdn=change.msisdn if change.msisdn is not None else plan.previous_msisdn,
                iccid=plan.iccid,
                imsi=change.imsi,
                previous_msisdn=plan.previous_msisdn,
                effective_at=change.effective_at,
                applied_at=applied_at,
                source=change.source,
            )
        )
    return WriteResult(str(index), plan.outcome, plan.reason, plan.field)


def end_unfinished(
    state: MemoryState, reason: str, detail: str, at: float, opened_before: float
) -> int:
    """L{IStore.end_unfinished_sessions} on C{state}."""
    st = state
    left = [r for r in st.sessions.values() if r.state not in FINAL_SESSION_STATES]
    left = [r for r in left if r.opened_at <= opened_before]
    for r in left:
        seq = max((e.seq for e in st.events if e.session_id == r.session_id), default=0)
        event = SessionEvent(r.session_id, seq + 1, at, "failed", r.state, reason, detail)
        st.events.append(event)
        st.sessions[r.session_id] = evolve(
            r, state="failed", updated_at=at, ended_at=at, reason=reason, detail=detail
        )
    return len(left)
