# -*- test-case-name: tests.unit.store.test_contract,tests.unit.ingest.test_import_batches -*-
"""MSISDN changes in bulk: state read at once, decided in order, written by C{executemany}.

One change at a time took six statements (the card, the number's holder,
the latest effective time, a duplicate check, the update, the history
row): 100,000 lines in 98 s.  Here a batch reads the cards it names (by
ICCID and by number), the latest effective time per card and per number,
and the history rows that could repeat one of its changes, each by C{IN}
lists; then L{plan_msisdn_change} decides every change in order against
that state, updated as it goes (a later change sees an earlier one), and
the card updates and history rows are written by two C{executemany} calls
in the same order, so the unique number index sees the same sequence as
one statement at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Connection

import bipgw.store._schema as s
from bipgw.store._bulk import Rollback, _sql, in_rows
from bipgw.store._interfaces import plan_msisdn_change
from bipgw.store._types import BatchResult, Card, MsisdnChange, Outcome, WriteResult


class _CardView:
    """What L{plan_msisdn_change} reads of a card (its ICCID, IMSI, MSISDN), without attrs.

    A batch holds one for every card it names; L{Card}'s validators and
    converters cost a tenth of the batch's CPU, for fields nothing here reads.
    """

    __slots__ = ("iccid", "imsi", "msisdn")

    def __init__(self, iccid: str, imsi: str | None, msisdn: str | None) -> None:
        self.iccid = iccid
        self.imsi = imsi
        self.msisdn = msisdn


class _State:
    """The batch's view of the cards and the history it touches."""

    def __init__(self) -> None:
        self.cards: dict[str, _CardView] = {}
        self.holder: dict[str, str] = {}
        self.latest_card: dict[str, int] = {}
        self.latest_number: dict[str, int] = {}
        self.full: set[tuple[str, int, str | None, str | None]] = set()
        self.by_number: set[tuple[str, int, str | None]] = set()
        self.by_card: set[tuple[str, int, str | None]] = set()

    def seen(self, change: MsisdnChange) -> bool:
        op, at = change.operation.value, change.effective_at
        if change.msisdn is not None and change.iccid is not None:
            return (op, at, change.msisdn, change.iccid) in self.full
        if change.msisdn is not None:
            return (op, at, change.msisdn) in self.by_number
        return (op, at, change.iccid) in self.by_card

    def record(
        self, op: str, at: int, msisdn: str | None, iccid: str, previous: str | None
    ) -> None:
        self.full.add((op, at, msisdn, iccid))
        self.by_number.add((op, at, msisdn))
        self.by_card.add((op, at, iccid))
        self.latest_card[iccid] = max(self.latest_card.get(iccid, at), at)
        for number in (msisdn, previous):
            if number is not None:
                self.latest_number[number] = max(self.latest_number.get(number, at), at)


def _in(c: Connection, query: str, values: Sequence[Any]) -> Iterable[Any]:
    return in_rows(c, query, values)


def _load(c: Connection, items: Sequence[MsisdnChange]) -> _State:
    state = _State()
    cards, history = s.cards.name, s.msisdn_history.name
    iccids = list({i.iccid for i in items if i.iccid is not None})
    numbers = list({i.msisdn for i in items if i.msisdn is not None})
    columns = "iccid, imsi, msisdn"
    rows = [
        *_in(c, f"SELECT {columns} FROM {cards} WHERE iccid IN ({{marks}})", iccids),
        *_in(c, f"SELECT {columns} FROM {cards} WHERE msisdn IN ({{marks}})", numbers),
    ]
    for row in rows:
        card = _CardView(row[0], row[1], row[2])
        state.cards[card.iccid] = card
        if card.msisdn is not None:
            state.holder[card.msisdn] = card.iccid
    touched = list(state.cards)
    query = (
        f"SELECT iccid, MAX(effective_at) FROM {history} WHERE iccid IN ({{marks}}) GROUP BY iccid"
    )
    for iccid, at in _in(c, query, touched):
        state.latest_card[iccid] = int(at)
    for column in ("msisdn", "previous_msisdn"):
        query = (
            f"SELECT {column}, MAX(effective_at) FROM {history}"
            f" WHERE {column} IN ({{marks}}) GROUP BY {column}"
        )
        for number, at in _in(c, query, numbers):
            state.latest_number[number] = max(state.latest_number.get(number, int(at)), int(at))
    if items:
        low = min(i.effective_at for i in items)
        high = max(i.effective_at for i in items)
        within = f"effective_at >= {int(low)} AND effective_at <= {int(high)}"
        select = f"SELECT operation, effective_at, msisdn, iccid FROM {history} WHERE {within} AND"
        for op, at, msisdn, iccid in [
            *_in(c, select + " iccid IN ({marks})", iccids),
            *_in(c, select + " msisdn IN ({marks})", numbers),
        ]:
            state.full.add((op, int(at), msisdn, iccid))
            state.by_number.add((op, int(at), msisdn))
            state.by_card.add((op, int(at), iccid))
    return state


def apply_msisdn_changes(
    c: Connection, items: Sequence[MsisdnChange], *, atomic: bool, applied_at: float
) -> BatchResult:
    """Apply MSISDN changes in order; see L{IStore.apply_msisdn_changes}."""
    state = _load(c, items)
    results = []
    updates: list[tuple[str | None, str]] = []
    inserts: list[tuple[Any, ...]] = []
    for index, change in enumerate(items):
        card = state.cards.get(change.iccid) if change.iccid else None
        holder_iccid = state.holder.get(change.msisdn) if change.msisdn else None
        holder = state.cards.get(holder_iccid) if holder_iccid else None
        times = [state.latest_card.get(x.iccid) for x in (card, holder) if x is not None] + [
            state.latest_number.get(change.msisdn) if change.msisdn else None
        ]
        known = [t for t in times if t is not None]
        plan = plan_msisdn_change(
            change,
            card=cast(Card | None, card),
            holder=cast(Card | None, holder),
            latest_at=max(known) if known else None,
            duplicate=state.seen(change),
        )
        if plan.iccid is not None and plan.outcome in (Outcome.ADDED, Outcome.UPDATED):
            target = state.cards[plan.iccid]
            if target.msisdn is not None and state.holder.get(target.msisdn) == plan.iccid:
                del state.holder[target.msisdn]
            state.cards[plan.iccid] = _CardView(target.iccid, target.imsi, plan.new_msisdn)
            if plan.new_msisdn is not None:
                state.holder[plan.new_msisdn] = plan.iccid
            updates.append((plan.new_msisdn, plan.iccid))
            number = change.msisdn if change.msisdn is not None else plan.previous_msisdn
            op = change.operation.value
            inserts.append(
                (
                    op,
                    number,
                    plan.iccid,
                    change.imsi,
                    plan.previous_msisdn,
                    change.effective_at,
                    applied_at,
                    change.source,
                )
            )
            state.record(op, change.effective_at, number, plan.iccid, plan.previous_msisdn)
        results.append(WriteResult(str(index), plan.outcome, plan.reason, plan.field))
    if atomic and any(x.outcome is Outcome.REJECTED for x in results):
        raise Rollback(BatchResult(tuple(results), committed=False))
    if updates:
        query = f"UPDATE {s.cards.name} SET msisdn = ? WHERE iccid = ?"
        c.exec_driver_sql(_sql(c, query), updates)
    if inserts:
        query = (
            f"INSERT INTO {s.msisdn_history.name} (operation, msisdn, iccid, imsi,"
            " previous_msisdn, effective_at, applied_at, source) VALUES (?,?,?,?,?,?,?,?)"
        )
        c.exec_driver_sql(_sql(c, query), inserts)
    return BatchResult(tuple(results), committed=True)
