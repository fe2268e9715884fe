"""A whole MSISDN file applied at once (IStore.apply_msisdn_rows) against the batch path.

The set-based SQLite path (L{bipgw.store._msisdn_rows}) decides the lines
from state read once and writes each card once; the batch path
(L{IStore.apply_msisdn_changes}, the importer's until now) reads and writes
a batch at a time.  On random files over a few cards and numbers (numbers
moving between cards, repeats, unknown cards, wrong IMSIs, DELs by number
or card, ties in time, a history from before the file) both must leave the
same cards and history and report the same outcomes and errors.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest._msisdn_file import MsisdnLines, MsisdnRowsRefused, MsisdnScan
from bipgw.store import IStore, LineError, MemoryStore, Outcome, SqlStore
from bipgw.store._msisdn_rows import apply_rows_sqlite
from tests.unit.store.test_contract import card
from tests.unit.store.test_sqlite import open_inline

ICCIDS = ["8988211000000000018", "8988211000000000026", "8988211000000000034"]
UNKNOWN = "8988211000000000042"
IMSIS = ["001010000000001", "001010000000002", "001010000000003"]
NUMBERS = [f"3360000000{n}" for n in range(1, 5)]
TIMES = ["20250101000000", "20250101000001", "20250101000002", ""]
#: The time of an empty EFFECTIVE_TIME: the file's (2025-01-01 00:00:01), the history's.
NOW, EARLIER = 1_735_689_601, 1_735_689_600

_line = st.tuples(
    st.sampled_from(["ADD", "ADD", "DEL", "CHG", "CHG"]),
    st.sampled_from([None, *NUMBERS, *NUMBERS]),
    st.sampled_from([None, *ICCIDS, *ICCIDS, UNKNOWN]),
    st.sampled_from([None, None, None, None, "right", "wrong"]),
    st.sampled_from(TIMES),
)


@st.composite
def _files(draw: st.DrawFn) -> tuple[list[Any], list[Any]]:
    """A history's lines and a file's, drawn from one pool: repeats are common."""
    pool = draw(st.lists(_line, min_size=3, max_size=10))
    pick = st.one_of(st.sampled_from(pool), _line)
    return draw(st.lists(pick, max_size=6)), draw(st.lists(pick, min_size=4, max_size=16))


def render(lines: list[tuple[Any, ...]]) -> bytes:
    """The file of C{lines} (some invalid: the parser's errors come along)."""
    out = []
    for op, msisdn, iccid, imsi, at in lines:
        if imsi == "right":
            imsi = IMSIS[ICCIDS.index(iccid)] if iccid in ICCIDS else IMSIS[0]
        elif imsi == "wrong":
            imsi = "001019999999999"
        out.append(f"{msisdn or ''},{iccid or ''},{imsi or ''},{op},{at}")
    return ("\n".join(out) + "\n").encode()


def _result(store: IStore, case: SynchronousTestCase) -> Any:
    cards = [case.successResultOf(store.get_card(i)).msisdn for i in ICCIDS]
    history = [
        (h.operation, h.msisdn, h.iccid, h.imsi, h.previous_msisdn, h.effective_at, h.source)
        for h in case.successResultOf(store.msisdn_history())
    ]
    return cards, history


def batch_path(
    store: IStore, data: bytes, atomic: bool, size: int, case: SynchronousTestCase
) -> tuple[Any, ...]:
    """The importer's batch path: time order, C{size} changes a call, rejections by line."""
    scan = MsisdnScan(data, default_time=NOW, source="m.csv")
    if atomic and scan.rejected:
        return ("refused", scan.rejected, list(scan.errors))
    counts = dict.fromkeys(Outcome, 0)
    errors = []
    committed = True
    for batch in scan.in_effective_order(max(scan.valid, 1) if atomic else size):
        d = store.apply_msisdn_changes([c for _, c in batch], atomic=atomic, applied_at=99.0)
        result = case.successResultOf(d)
        for item in result.results:
            counts[item.outcome] += 1
            if item.outcome is Outcome.REJECTED:
                line = batch[int(item.key)][0]
                errors.append(LineError(line, item.field, item.reason or "rejected"))
        committed = committed and result.committed
    found = (counts[Outcome.ADDED], counts[Outcome.UPDATED], counts[Outcome.UNCHANGED])
    return (committed, *found, counts[Outcome.REJECTED], errors, scan.records, scan.rejected)


def rows_path(
    store: IStore, data: bytes, atomic: bool, size: int, case: SynchronousTestCase
) -> tuple[Any, ...]:
    """IStore.apply_msisdn_rows on the one-pass reader's rows."""
    lines = MsisdnLines(data, default_time=NOW, all_or_nothing=atomic)
    d = store.apply_msisdn_rows(
        lines.rows(),
        atomic=atomic,
        applied_at=99.0,
        source="m.csv",
        max_errors=10_000,
        batch_size=size,
    )
    failure = case.failureResultOf(d) if atomic and lines.rejected else None
    if failure is not None:
        failure.trap(MsisdnRowsRefused)
        return ("refused", lines.rejected, lines.errors)
    r = case.successResultOf(d)
    counts = (r.added, r.updated, r.unchanged, r.rejected)
    return (r.committed, *counts, list(r.errors), lines.records, lines.rejected)


class SetBasedAgainstBatchesTests(SynchronousTestCase):
    """The set-based path and the batch path agree, on SQLite and on the memory store."""

    def setUp(self) -> None:
        self.rows_store: SqlStore = open_inline(f"sqlite:///{self.mktemp()}.db", self)
        self.batch_store: SqlStore = open_inline("sqlite://", self)
        for store in (self.rows_store, self.batch_store):
            self.addCleanup(lambda s=store: self.successResultOf(s.close()))

    def reset(self, store: SqlStore) -> None:
        def clear(c: Any) -> None:
            c.exec_driver_sql("DELETE FROM msisdn_history")
            c.exec_driver_sql("DELETE FROM cards")

        self.successResultOf(store.transaction(clear, write=True))
        self.fill(store)

    def fill(self, store: IStore) -> None:
        cards = [card(i, imsi=imsi) for i, imsi in zip(ICCIDS, IMSIS, strict=True)]
        self.successResultOf(store.upsert_cards(cards))

    def check(
        self, before: list[Any], lines: list[Any], atomic: bool = False, size: int = 2
    ) -> None:
        memory = MemoryStore()
        self.fill(memory)
        stores: list[IStore] = [self.rows_store, self.batch_store, memory]
        for store in (self.rows_store, self.batch_store):
            self.reset(store)
        # A history from before the file (applied the same way everywhere).
        prior = MsisdnScan(render(before), default_time=EARLIER, source="old.csv")
        changes = [c for batch in prior.in_effective_order(100) for _, c in batch]
        for store in stores:
            self.successResultOf(store.apply_msisdn_changes(changes, applied_at=1.0))
        data = render(lines)
        expected = batch_path(self.batch_store, data, atomic, size, self)
        self.assertEqual(rows_path(self.rows_store, data, atomic, size, self), expected)
        self.assertEqual(rows_path(memory, data, atomic, size, self), expected)
        state = _result(self.batch_store, self)
        self.assertEqual(_result(self.rows_store, self), state)
        self.assertEqual(_result(memory, self), state)

    def test_repeatOfAnotherTime(self) -> None:
        """The same line at another time is not a repeat: ADD, DEL, ADD again applies."""
        a, n = ICCIDS[0], NUMBERS[0]
        t0, t1, t2 = TIMES[:3]
        self.check(
            [], [("ADD", n, a, None, t0), ("DEL", None, a, None, t1), ("ADD", n, a, None, t2)]
        )

    def test_numberTakenTwiceAtOneTime(self) -> None:
        """One number given to two cards in turn at one time, then both lines again."""
        a, b, n = ICCIDS[0], ICCIDS[1], NUMBERS[0]
        t0 = TIMES[0]
        first = [("ADD", n, a, None, t0), ("DEL", n, None, None, t0), ("ADD", n, b, None, t0)]
        again = [("ADD", n, a, None, t0), ("ADD", n, b, None, t0)]
        self.check([], first + again)
        self.check(first, again)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(files=_files(), atomic=st.sampled_from([False, False, True]), size=st.integers(1, 4))
    def test_sameStateAndReport(
        self, files: tuple[list[Any], list[Any]], atomic: bool, size: int
    ) -> None:
        """Same cards, same history, same counts and errors, in the same order."""
        before, lines = files
        self.check(before, lines, atomic, size)


class SetBasedSqliteTests(SynchronousTestCase):
    """What the set-based path promises beyond the batch path's results."""

    def setUp(self) -> None:
        self.path = f"{self.mktemp()}.db"
        self.store = open_inline(f"sqlite:///{self.path}", self)
        self.addCleanup(lambda: self.successResultOf(self.store.close()))
        cards = [card(i, imsi=imsi) for i, imsi in zip(ICCIDS, IMSIS, strict=True)]
        self.successResultOf(self.store.upsert_cards(cards))

    def apply(self, text: str, **kw: Any) -> Any:
        lines = MsisdnLines(text.encode(), default_time=NOW)
        args = {"applied_at": 99.0, "source": "m.csv", "max_errors": 10, **kw}
        return self.store.apply_msisdn_rows(lines.rows(), **args)

    def indexes(self) -> list[str]:
        with sqlite3.connect(self.path) as c:
            rows = c.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'msisdn_history'"
                " AND type = 'index' AND sql IS NOT NULL ORDER BY name"
            )
            return [sql for (sql,) in rows]

    def numbers(self, *iccids: str) -> list[str | None]:
        return [self.successResultOf(self.store.get_card(i)).msisdn for i in iccids]

    def test_numberPassesToACardWrittenEarlier(self) -> None:
        """B takes A's number (B's ICCID sorts first): A is cleared before B is written."""
        a, b = ICCIDS[1], ICCIDS[0]
        self.successResultOf(self.apply(f"33600000001,{a},,ADD,20250101000000\n"))
        result = self.successResultOf(
            self.apply(
                f",{a},,DEL,20250101000001\n"
                f"33600000001,{b},,ADD,20250101000002\n"
                f"33600000002,{a},,ADD,20250101000003\n"
            )
        )
        self.assertEqual((result.added, result.updated, result.rejected), (2, 1, 0))
        self.assertEqual(self.numbers(a, b), ["33600000002", "33600000001"])

    def test_numbersSwapped(self) -> None:
        """Two cards exchange numbers within one file (through a free one)."""
        a, b = ICCIDS[0], ICCIDS[1]
        self.successResultOf(
            self.apply(
                f"33600000001,{a},,ADD,20250101000000\n33600000002,{b},,ADD,20250101000000\n"
            )
        )
        self.successResultOf(
            self.apply(
                f"33600000009,{a},,CHG,20250101000001\n"
                f"33600000001,{b},,CHG,20250101000002\n"
                f"33600000002,{a},,CHG,20250101000003\n"
            )
        )
        self.assertEqual(self.numbers(a, b), ["33600000002", "33600000001"])

    def test_historyIndexesKept(self) -> None:
        """Dropped and made again for a file larger than the history: the same indexes after."""
        before = self.indexes()
        self.assertEqual(len(before), 3)
        text = "".join(f"3360000000{n},{ICCIDS[n]},,ADD,20250101000000\n" for n in range(3))
        self.successResultOf(self.apply(text))
        self.assertEqual(self.indexes(), before)

    def test_sameFileAgainKeepsIndexes(self) -> None:
        """A file all repeats writes nothing: the indexes dropped for it are taken back."""
        before = self.indexes()
        text = "".join(f"3360000000{n},{ICCIDS[n]},,ADD,20250101000000\n" for n in range(3))
        self.successResultOf(self.apply(text))
        again = self.successResultOf(self.apply(text))
        self.assertEqual((again.added, again.updated, again.unchanged), (0, 0, 3))
        self.assertEqual(self.indexes(), before)
        self.assertEqual(len(self.successResultOf(self.store.msisdn_history())), 3)

    def test_failureRollsBackEverything(self) -> None:
        """An error in the middle (here the reader's) leaves nothing written, the indexes too."""
        before = self.indexes()

        def rows() -> Any:
            yield (1, "ADD", "33600000001", ICCIDS[0], None, 1_735_689_600)
            raise OSError("disk gone")

        self.failureResultOf(
            self.store.apply_msisdn_rows(rows(), applied_at=1.0, source=None, max_errors=10),
            OSError,
        )
        self.assertEqual(self.numbers(ICCIDS[0]), [None])
        self.assertEqual(self.successResultOf(self.store.msisdn_history()), [])
        self.assertEqual(self.indexes(), before)

    def test_invalidRowRefused(self) -> None:
        """A row no valid line gives (ADD without a number) fails the whole file."""
        rows = [
            (1, "ADD", "33600000001", ICCIDS[0], None, 10),
            (2, "ADD", None, ICCIDS[1], None, 10),
        ]
        d = self.store.apply_msisdn_rows(rows, applied_at=1.0, source=None, max_errors=10)
        failure = self.failureResultOf(d, ValueError)
        self.assertIn("line 2: ADD needs the MSISDN", str(failure.value))
        self.assertEqual(self.numbers(ICCIDS[0]), [None])

    def test_atomicRejectionWritesNothing(self) -> None:
        """All-or-nothing: one unknown card, nothing written, the rejection reported."""
        result = self.successResultOf(
            self.apply(
                f"33600000001,{ICCIDS[0]},,ADD,20250101000000\n"
                f"33600000002,{UNKNOWN},,ADD,20250101000000\n",
                atomic=True,
            )
        )
        self.assertFalse(result.committed)
        self.assertEqual([(e.line, e.column) for e in result.errors], [(2, "ICCID")])
        self.assertEqual(self.numbers(ICCIDS[0]), [None])
        self.assertEqual(self.successResultOf(self.store.msisdn_history()), [])

    def test_errorsCapped(self) -> None:
        """At most max_errors errors kept; every rejection counted."""
        text = "".join(f"3360000000{n},{UNKNOWN},,ADD,20250101000000\n" for n in range(5))
        result = self.successResultOf(self.apply(text, max_errors=2))
        self.assertEqual((result.rejected, len(result.errors)), (5, 2))

    def test_temporaryTableGone(self) -> None:
        """The connection is left without the file's temporary table."""
        self.successResultOf(self.apply(f"33600000001,{ICCIDS[0]},,ADD,20250101000000\n"))

        def tables(c: Any) -> list[Any]:
            return c.exec_driver_sql("SELECT name FROM sqlite_temp_master").fetchall()

        self.assertEqual(self.successResultOf(self.store.transaction(tables, write=False)), [])

    def test_outOfOrderRows(self) -> None:
        """apply_rows_sqlite sorts by time itself (rows given out of order)."""
        rows = [
            (2, "CHG", "33600000002", ICCIDS[0], None, 20),
            (1, "ADD", "33600000001", ICCIDS[0], None, 10),
        ]
        result = apply_rows_sqlite(
            self.store.engine,
            rows,
            atomic=False,
            applied_at=1.0,
            source=None,
            max_errors=5,
            batch_size=1,
        )
        self.assertEqual((result.added, result.updated), (1, 1))
        history = self.successResultOf(self.store.msisdn_history(iccid=ICCIDS[0]))
        self.assertEqual([h.operation.value for h in history], ["ADD", "CHG"])
