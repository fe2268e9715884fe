# -*- test-case-name: tests.unit.store.test_msisdn_rows,tests.unit.ingest.test_import_msisdn -*-
"""A whole MSISDN file applied at once (L{IStore.apply_msisdn_rows}).

SQLite, set-based (L{apply_rows_sqlite}): a batch at a time
(L{bipgw.store._bulk_msisdn}) read every card, number and history row a
batch names by random index lookups into million-row tables, and wrote
each change as it came; a million lines took 110 s.  Here:

 1. the rows go into a temporary table (one C{executemany}, the parse
    running inside it), outside the write transaction;
 2. in one write transaction, the state the file needs is read by a few
    statements whose C{IN (SELECT ...)} walk the indexes in key order: the
    cards named by ICCID, the cards holding the numbers named, and, only
    if the history has rows, the latest effective time per card and per
    number and the lines that repeat a history row;
 3. the lines are decided in effective-time order (file order for equal
    times) in Python, against that state updated as it goes: the common
    cases (an ADD to a free number, a CHG to a free number, a DEL by ICCID)
    inline, every other line by L{plan_msisdn_change} itself, with the very
    inputs L{bipgw.store._bulk_msisdn} would give it;
 4. history rows are written by C{executemany} as the lines are decided
    (in that order: entry ids keep the order of application), and each
    card changed is written once, with its final number, in ICCID order.

Why the decisions need no more state than that: lines are applied in time
order, so a change applied earlier in the file is never later than the
line being decided, and the "a later change was already applied" rule can
only be met by the history from before the file; and a line can only
repeat an earlier line of the file with the same effective time, so the
file's own changes are remembered one effective time at a time.

Writing each card once, with its final number, could meet the unique
number index in an order no single change would: a card taking a number
that another card, written later, gives up.  The cards that give up a
number another card ends with are set to C{NULL} first.

When the file has at least as many lines as the history has rows, the
history's secondary indexes are dropped before its rows are written and
made again after (their definitions read back from C{sqlite_master}):
building an index from a sorted scan costs half of keeping it up to date
row by row.  SQLite's DDL is transactional: a crash or a rollback leaves
the indexes as they were, like the rest of the file.

Memory: the file's rows live in the temporary table (SQLite's temporary
file, with its own page cache), not in Python.  Python holds, for the
cards the file touches, their IMSI and number (a dict of two-item lists),
the number-to-card map of the numbers named, each changed card's number
before the file, the file's changes of the current effective time (for
repeats), and the history rows not yet written (at most C{batch_size}).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from typing import Any, cast

from sqlalchemy import Engine

import bipgw.store._schema as s
from bipgw.store._bulk_msisdn import _CardView
from bipgw.store._engine import describe_error
from bipgw.store._interfaces import plan_msisdn_change
from bipgw.store._types import (
    BatchResult,
    Card,
    LineError,
    MsisdnChange,
    MsisdnRow,
    MsisdnRowsResult,
    Outcome,
    StoreError,
)

_TEMP = "bipgw_msisdn_in"
#: SQLite's page cache (KiB) on the connection applying a file.  The batch
#: path's 64 MiB kept its random index pages; here the indexes are walked in
#: key order or built by a sort: on 1,000,000 lines 16 MiB took no more CPU
#: (26.0 s against 28.6 s) and 80 MB less memory.
SQLITE_CACHE_KIB = 16384


def sorted_rows(rows: Iterable[MsisdnRow]) -> list[MsisdnRow]:
    """C{rows} in effective-time order, file order for equal times (a stable sort)."""
    return sorted(rows, key=lambda row: row[5])


def apply_in_batches(
    rows: Iterable[MsisdnRow],
    apply: Callable[[Sequence[MsisdnChange]], BatchResult],
    *,
    source: str | None,
    max_errors: int,
    batch_size: int,
) -> MsisdnRowsResult:
    """The rows in time order, C{batch_size} changes at a time through C{apply}.

    For the stores without a set-based path: C{apply} is their
    L{IStore.apply_msisdn_changes}, inside one transaction.  The rows are
    all read (and sorted) before the first change is applied.
    """
    ordered = sorted_rows(rows)
    counts = dict.fromkeys(Outcome, 0)
    errors: list[LineError] = []
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        changes = [MsisdnChange(op, n, i, imsi, at, source) for _, op, n, i, imsi, at in chunk]
        for row, result in zip(chunk, apply(changes).results, strict=True):
            counts[result.outcome] += 1
            if result.outcome is Outcome.REJECTED and len(errors) < max_errors:
                errors.append(LineError(row[0], result.field, result.reason or "rejected"))
    return MsisdnRowsResult(
        counts[Outcome.ADDED],
        counts[Outcome.UPDATED],
        counts[Outcome.UNCHANGED],
        counts[Outcome.REJECTED],
        tuple(errors),
        committed=True,
    )


def apply_rows_sqlite(
    engine: Engine,
    rows: Iterable[MsisdnRow],
    *,
    atomic: bool,
    applied_at: float,
    source: str | None,
    max_errors: int,
    batch_size: int,
) -> MsisdnRowsResult:
    """L{IStore.apply_msisdn_rows} on SQLite, set-based (see the module's text)."""
    with engine.connect() as connection:
        raw = cast(sqlite3.Connection, connection.connection.driver_connection)
        cursor = raw.cursor()
        try:
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            cursor.execute(f"DROP TABLE IF EXISTS temp.{_TEMP}")
            cursor.execute(
                f"CREATE TEMP TABLE {_TEMP} (seq INTEGER PRIMARY KEY, line INTEGER NOT NULL,"
                " op TEXT NOT NULL, msisdn TEXT, iccid TEXT, imsi TEXT, at INTEGER NOT NULL)"
            )
            # Only the temporary database is written: the main one is not locked.
            cursor.execute("BEGIN")
            cursor.executemany(
                f"INSERT INTO temp.{_TEMP} (line, op, msisdn, iccid, imsi, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            cursor.execute("COMMIT")
            cursor.execute("BEGIN IMMEDIATE")
            applying = _Apply(raw, applied_at, source, max_errors, batch_size)
            result = applying.run(atomic)
            cursor.execute("COMMIT" if result.committed else "ROLLBACK")
            return result
        except sqlite3.Error as e:
            raise StoreError(describe_error(e)) from None
        finally:
            with suppress(sqlite3.Error):
                if raw.in_transaction:
                    raw.rollback()
                cursor.execute(f"DROP TABLE IF EXISTS temp.{_TEMP}")
            cursor.close()


class _Apply:
    """One file's decisions and writes, in the open write transaction."""

    def __init__(
        self,
        raw: sqlite3.Connection,
        applied_at: float,
        source: str | None,
        max_errors: int,
        flush: int,
    ) -> None:
        self.raw = raw
        self.flush = flush
        self.applied_at = applied_at
        self.source = source
        self.max_errors = max_errors
        #: ICCID -> [IMSI, MSISDN now, MSISDN before the file, ICCID] of every card the
        #: file touches (the ICCID: the key's own string, which the other maps share).
        self.cards: dict[str, list[Any]] = {}
        #: MSISDN -> ICCID of the card holding it now (the numbers the file names).
        self.holders: dict[str, str] = {}
        #: The history before the file: latest effective time by card, by number.
        self.latest_card: dict[str, int] = {}
        self.latest_number: dict[str, int] = {}
        #: Lines (their seq) that repeat a history row from before the file.
        self.repeats: set[int] = set()

    def run(self, atomic: bool) -> MsisdnRowsResult:
        c = self.raw.cursor()
        try:
            self._load(c)
            c.execute("SAVEPOINT bipgw_msisdn_indexes")
            indexes = self._drop_history_indexes(c)
            result = self._decide(c, atomic)
            if not result.committed:
                return result  # rolled back: the indexes come back with the rest
            if indexes and not (result.added or result.updated):
                # Nothing written since the indexes were dropped: take them back
                # as they were rather than build them again.
                c.execute("ROLLBACK TO bipgw_msisdn_indexes")
                indexes = []
            c.execute("RELEASE bipgw_msisdn_indexes")
            self._write_cards(c)
            for sql in indexes:
                c.execute(sql)
            return result
        finally:
            c.close()

    def _load(self, c: sqlite3.Cursor) -> None:
        cards, holders = self.cards, self.holders
        table, history = s.cards.name, s.msisdn_history.name
        for column in ("iccid", "msisdn"):
            # The subquery's values are sorted: the index is walked in key order.
            query = (
                f"SELECT iccid, imsi, msisdn FROM {table}"
                f" WHERE {column} IN (SELECT {column} FROM temp.{_TEMP})"
            )
            for iccid, imsi, msisdn in c.execute(query):
                if iccid in cards:
                    continue
                cards[iccid] = [imsi, msisdn, msisdn, iccid]
                if msisdn is not None:
                    holders[msisdn] = iccid
        if c.execute(f"SELECT EXISTS (SELECT 1 FROM {history})").fetchone()[0]:
            self._load_history(c)

    def _load_history(self, c: sqlite3.Cursor) -> None:
        history, table = s.msisdn_history.name, s.cards.name
        latest_card, latest_number = self.latest_card, self.latest_number
        for cards in (
            f"SELECT iccid FROM temp.{_TEMP}",
            f"SELECT iccid FROM {table} WHERE msisdn IN (SELECT msisdn FROM temp.{_TEMP})",
        ):
            query = (
                f"SELECT iccid, MAX(effective_at) FROM {history}"
                f" WHERE iccid IN ({cards}) GROUP BY iccid"
            )
            for iccid, at in c.execute(query):
                latest_card[iccid] = int(at)
        for column in ("msisdn", "previous_msisdn"):
            query = (
                f"SELECT {column}, MAX(effective_at) FROM {history}"
                f" WHERE {column} IN (SELECT msisdn FROM temp.{_TEMP}) GROUP BY {column}"
            )
            for number, at in c.execute(query):
                known = latest_number.get(number)
                if known is None or int(at) > known:
                    latest_number[number] = int(at)
        same = "h.operation = t.op AND h.effective_at = t.at"
        query = (
            f"SELECT t.seq FROM temp.{_TEMP} t WHERE t.iccid IS NOT NULL AND EXISTS"
            f" (SELECT 1 FROM {history} h WHERE h.iccid = t.iccid AND {same}"
            " AND (t.msisdn IS NULL OR h.msisdn = t.msisdn))"
            f" UNION ALL SELECT t.seq FROM temp.{_TEMP} t WHERE t.iccid IS NULL AND EXISTS"
            f" (SELECT 1 FROM {history} h WHERE h.msisdn = t.msisdn AND {same})"
        )
        self.repeats.update(seq for (seq,) in c.execute(query))

    def _drop_history_indexes(self, c: sqlite3.Cursor) -> list[str]:
        """Drop the history's secondary indexes if the file is as large as the history.

        @return: the statements that make them again.
        """
        history = s.msisdn_history.name
        (lines,) = c.execute(f"SELECT COUNT(*) FROM temp.{_TEMP}").fetchone()
        (rows,) = c.execute(f"SELECT COALESCE(MAX(entry_id), 0) FROM {history}").fetchone()
        if lines < max(rows, 1):
            return []
        indexes = c.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL",
            (history,),
        ).fetchall()
        for name, _ in indexes:
            c.execute(f'DROP INDEX "{name}"')
        return [sql for _, sql in indexes]

    def _decide(self, c: sqlite3.Cursor, atomic: bool) -> MsisdnRowsResult:
        cards, holders = self.cards, self.holders
        repeats, history_known = self.repeats, bool(self.latest_card or self.latest_number)
        applied_at, source, max_errors = self.applied_at, self.source, self.max_errors
        flush = self.flush
        added_, updated_, rejected_ = Outcome.ADDED, Outcome.UPDATED, Outcome.REJECTED
        added = updated = unchanged = rejected = 0
        errors: list[LineError] = []
        pending: list[tuple[Any, ...]] = []
        insert = (
            f"INSERT INTO {s.msisdn_history.name} (operation, msisdn, iccid, imsi,"
            " previous_msisdn, effective_at, applied_at, source) VALUES (?,?,?,?,?,?,?,?)"
        )
        writing = True
        # The changes applied at the current effective time (a line can only
        # repeat these): by operation, number -> card(s); the cards a DEL unmapped.
        group_at: int | None = None
        by_number: dict[str, dict[str, Any]] = {}
        deleted: set[str] = set()
        (ordered,) = c.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM (SELECT at < LAG(at) OVER (ORDER BY seq) AS back"
            f" FROM temp.{_TEMP}) WHERE back)"
        ).fetchone()
        order = "seq" if ordered else "at, seq"
        reader = self.raw.cursor()
        query = f"SELECT seq, line, op, msisdn, iccid, imsi, at FROM temp.{_TEMP} ORDER BY {order}"
        number: Any
        target: list[Any]
        for seq, line, op, msisdn, iccid, imsi, at in reader.execute(query):
            if at != group_at:
                group_at, deleted, by_number = at, set(), {}
            # Does the line repeat a change already made (before the file, or now)?
            if repeats and seq in repeats:
                duplicate = True
            elif msisdn is None:
                if op == "DEL":
                    duplicate = iccid in deleted
                else:
                    raise ValueError(f"line {line}: {op} needs the MSISDN (a valid line's rows)")
            else:
                targets = by_number.get(op)
                made = targets.get(msisdn) if targets is not None else None
                if made is None:
                    duplicate = False
                elif iccid is None:
                    duplicate = True
                else:
                    duplicate = made == iccid or (type(made) is set and iccid in made)
            if duplicate:
                unchanged += 1  # plan_msisdn_change's first rule
                continue
            card = cards.get(iccid) if iccid is not None else None
            holder_iccid = holders.get(msisdn) if msisdn is not None else None
            outcome = None
            if (
                card is not None
                and not duplicate
                and (imsi is None or card[0] is None or imsi == card[0])
                and not (history_known and self._later(iccid, holder_iccid, msisdn, at))
            ):
                # The common cases, decided as plan_msisdn_change decides them.
                previous = card[1]
                if op == "ADD":
                    if holder_iccid is None and previous is None:
                        outcome, new = added_, msisdn
                elif op == "CHG":
                    if holder_iccid is None and previous != msisdn:
                        outcome, new = updated_, msisdn
                elif msisdn is None and previous is not None:
                    outcome, new = updated_, None
                target_iccid, target = card[3], card
            if outcome is None:
                plan = self._plan(op, msisdn, iccid, imsi, at, card, holder_iccid, duplicate)
                outcome = plan.outcome
                if outcome is rejected_:
                    rejected += 1
                    writing = writing and not atomic
                    if len(errors) < max_errors:
                        errors.append(LineError(line, plan.field, plan.reason or "rejected"))
                    continue
                if outcome is not added_ and outcome is not updated_:
                    unchanged += 1
                    continue
                new, previous = plan.new_msisdn, plan.previous_msisdn
                target = cards[plan.iccid]
                target_iccid = target[3]
            if outcome is added_:
                added += 1
            else:
                updated += 1
            # Apply it to the state: the card's number, the numbers' holders.
            if previous is not None and holders.get(previous) == target_iccid:
                del holders[previous]
            target[1] = new
            if new is not None:
                holders[new] = target_iccid
            # (An applied DEL had a number: msisdn or the card's.)
            number = msisdn if msisdn is not None else previous
            # Remember it for the repeats of this effective time.
            if op == "DEL":
                deleted.add(target_iccid)
            numbers_now = by_number.get(op)
            if numbers_now is None:
                numbers_now = by_number[op] = {}
            seen = numbers_now.get(number)
            if seen is None:
                numbers_now[number] = target_iccid
            elif type(seen) is set:
                seen.add(target_iccid)
            elif seen != target_iccid:
                numbers_now[number] = {seen, target_iccid}
            if writing:
                pending.append((op, number, target_iccid, imsi, previous, at, applied_at, source))
                if len(pending) >= flush:
                    c.executemany(insert, pending)
                    pending.clear()
        reader.close()
        if writing and pending:
            c.executemany(insert, pending)
        return MsisdnRowsResult(
            added, updated, unchanged, rejected, tuple(errors), committed=writing or not atomic
        )

    def _later(self, iccid: str, holder: str | None, msisdn: str | None, at: int) -> bool:
        """Whether the history from before the file holds a later change for the line."""
        return any(
            t is not None and t > at
            for t in (
                self.latest_card.get(iccid),
                self.latest_card.get(holder) if holder is not None else None,
                self.latest_number.get(msisdn) if msisdn is not None else None,
            )
        )

    def _plan(
        self,
        op: str,
        msisdn: str | None,
        iccid: str | None,
        imsi: str | None,
        at: int,
        card: list[Any] | None,
        holder_iccid: str | None,
        duplicate: bool,
    ) -> Any:
        """L{plan_msisdn_change} for a line off the common path, with its full inputs."""
        card_view = None
        if card is not None:
            assert iccid is not None
            card_view = _CardView(iccid, card[0], card[1])
        holder_view = None
        if holder_iccid is not None:
            held = self.cards[holder_iccid]
            holder_view = _CardView(holder_iccid, held[0], held[1])
        latest = None
        for t in (
            self.latest_number.get(msisdn) if msisdn is not None else None,
            self.latest_card.get(iccid) if card is not None and iccid is not None else None,
            self.latest_card.get(holder_iccid) if holder_iccid is not None else None,
        ):
            if t is not None and (latest is None or t > latest):
                latest = t
        return plan_msisdn_change(
            MsisdnChange(op, msisdn, iccid, imsi, at, self.source),
            card=cast(Card | None, card_view),
            holder=cast(Card | None, holder_view),
            latest_at=latest,
            duplicate=duplicate,
        )

    def _write_cards(self, c: sqlite3.Cursor) -> None:
        """Each changed card once, its final number, in ICCID order (see the module's text)."""
        changed: list[tuple[str | None, str]] = []
        finals: dict[str, str] = {}
        for iccid, (_, new, old, _) in self.cards.items():
            if new != old:
                changed.append((new, iccid))
                if new is not None:
                    finals[new] = iccid
        first = sorted(
            (None, iccid)
            for _, iccid in changed
            if (old := self.cards[iccid][2]) is not None and finals.get(old, iccid) != iccid
        )
        update = f"UPDATE {s.cards.name} SET msisdn = ? WHERE iccid = ?"
        if first:
            c.executemany(update, first)
        changed.sort(key=lambda item: item[1])
        c.executemany(update, changed)
