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

#: SQLite's page cache (KiB) on the connection applying MSISDN batches (the
#: default is 2 MiB).
SQLITE_CACHE_KIB = 65536


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
    if c.dialect.name == "sqlite":
        # The batch's updates land all over the cards' number index and the
        # history's three indexes: with SQLite's default 2 MiB page cache the
        # transaction's dirty pages spill to the WAL and are read back.
        c.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    state = _load(c, items)
    results = []
    updates: list[tuple[str | None, str]] = []
    inserts: list[tuple[Any, ...]] = []
    cards, holders = state.cards, state.holder
    latest_card, latest_number = state.latest_card, state.latest_number
    full, by_number, by_card = state.full, state.by_number, state.by_card
    added, updated = Outcome.ADDED, Outcome.UPDATED
    for index, change in enumerate(items):
        # The loop runs once a line: state lookups inlined (no helper calls,
        # no enum attribute access), the rules left to plan_msisdn_change.
        iccid, msisdn, at = change.iccid, change.msisdn, change.effective_at
        op = str(change.operation)
        card = cards.get(iccid) if iccid is not None else None
        holder = None
        latest = None
        if msisdn is not None:
            holder_iccid = holders.get(msisdn)
            if holder_iccid is not None:
                holder = cards.get(holder_iccid)
            latest = latest_number.get(msisdn)
            if iccid is not None:
                duplicate = (op, at, msisdn, iccid) in full
            else:
                duplicate = (op, at, msisdn) in by_number
        else:
            duplicate = (op, at, iccid) in by_card
        for known in (card, holder):
            if known is not None:
                t = latest_card.get(known.iccid)
                if t is not None and (latest is None or t > latest):
                    latest = t
        plan = plan_msisdn_change(
            change,
            card=cast(Card | None, card),
            holder=cast(Card | None, holder),
            latest_at=latest,
            duplicate=duplicate,
        )
        outcome = plan.outcome
        target_iccid = plan.iccid
        if target_iccid is not None and (outcome is added or outcome is updated):
            target = cards[target_iccid]
            new, previous = plan.new_msisdn, plan.previous_msisdn
            if target.msisdn is not None and holders.get(target.msisdn) == target_iccid:
                del holders[target.msisdn]
            cards[target_iccid] = _CardView(target_iccid, target.imsi, new)
            if new is not None:
                holders[new] = target_iccid
            updates.append((new, target_iccid))
            number = msisdn if msisdn is not None else previous
            inserts.append(
                (op, number, target_iccid, change.imsi, previous, at, applied_at, change.source)
            )
            # _State.record, inlined.
            full.add((op, at, number, target_iccid))
            by_number.add((op, at, number))
            by_card.add((op, at, target_iccid))
            t = latest_card.get(target_iccid)
            if t is None or at > t:
                latest_card[target_iccid] = at
            for n in (number, previous):
                if n is not None:
                    t = latest_number.get(n)
                    if t is None or at > t:
                        latest_number[n] = at
        results.append(WriteResult(str(index), outcome, plan.reason, plan.field))
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
