"""Importing MSISDN mapping files into the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import _importer, import_msisdn, import_msisdn_data, render_report
from bipgw.store import ImportReport, IStore, MemoryStore
from tests.unit.store.test_contract import card
from tests.unit.store.test_sqlite import open_inline

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fleet" / "sample-msisdn.csv"
A, B, C = "8988211000000000018", "8988211000000000026", "8988211000000000034"


class MsisdnImportMixin(_Base):
    """MSISDN import tests; mixed with a store factory and SynchronousTestCase."""

    def make_store(self) -> IStore:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(lambda: self.done(self.store.close()))
        cards = [
            card(A, imsi="001010000000001"),
            card(B, imsi="001010000000002"),
            card(C, imsi="001010000000003"),
        ]
        self.done(self.store.upsert_cards(cards))

    def done(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def run_import(self, text: str, **kw: Any) -> ImportReport:
        d = import_msisdn_data(
            self.store, text.encode(), file_name="m.csv", now=lambda: 2_000_000_000.0, **kw
        )
        report: ImportReport = self.done(d)
        return report

    def numbers(self) -> list[str | None]:
        return [self.done(self.store.get_card(i)).msisdn for i in (A, B, C)]

    def counts(self, report: ImportReport) -> tuple[int, int, int, int]:
        return (report.added, report.updated, report.unchanged, report.rejected)

    def test_sample(self) -> None:
        """The sample maps three cards, renumbers one and unmaps another."""
        report = self.done(import_msisdn(self.store, SAMPLE, now=lambda: 2_000_000_000.0))
        self.assertTrue(report.ok, render_report(report))
        self.assertEqual((report.records, *self.counts(report)), (5, 3, 2, 0, 0))
        self.assertEqual(self.numbers(), ["33612345601", None, "33612345699"])
        history = self.done(self.store.msisdn_history(iccid=C))
        self.assertEqual([h.operation for h in history], ["ADD", "CHG"])
        self.assertEqual(history[0].source, "sample-msisdn.csv")

    def test_appliedInEffectiveTimeOrder(self) -> None:
        """Records apply by effective time, not file order."""
        report = self.run_import(
            f",{A},,DEL,20250301000000\n"
            f"33600000002,{A},,CHG,20250201000000\n"
            f"33600000001,{A},,ADD,20250101000000\n"
        )
        self.assertEqual(self.counts(report), (1, 2, 0, 0))
        history = self.done(self.store.msisdn_history(iccid=A))
        self.assertEqual([h.operation for h in history], ["ADD", "CHG", "DEL"])

    def test_emptyTimeMeansNow(self) -> None:
        """A record without EFFECTIVE_TIME takes the import time, and sorts by it."""
        report = self.run_import(f"33600000009,{A},,CHG,20400101000000\n33600000001,{A},,ADD,\n")
        self.assertEqual(self.counts(report), (1, 1, 0, 0))
        self.assertEqual(self.numbers()[0], "33600000009")
        history = self.done(self.store.msisdn_history(iccid=A))
        self.assertEqual(
            [(h.operation, h.effective_at) for h in history],
            [("ADD", 2_000_000_000), ("CHG", 2_208_988_800)],
        )

    def test_unknownIccidReported(self) -> None:
        """A record for an unknown card is reported with its line and field; others apply."""
        report = self.run_import(
            f"33600000001,{A},,ADD,20250101000000\n"
            "33600000002,8988211000000000000,,ADD,20250101000000\n"
        )
        self.assertEqual(self.counts(report), (1, 0, 0, 1))
        (error,) = report.errors
        self.assertEqual((error.line, error.column), (2, "ICCID"))
        self.assertIn("unknown ICCID 8988211000000000000", error.message)
        self.assertIn("line 2, column ICCID: unknown ICCID", render_report(report))

    def test_parseAndStoreErrorsTogether(self) -> None:
        """Parse errors and store rejections are both reported, by line."""
        report = self.run_import(
            f"33600000001,{A},,ADD,20250101000000\n"
            f"33600000001,{B},,ADD,20250101000001\n"
            f"bad,{C},,ADD,\n"
        )
        self.assertEqual(
            [(e.line, e.column) for e in report.errors], [(2, "MSISDN"), (3, "MSISDN")]
        )
        self.assertEqual(report.rejected, 2)

    def test_sameFileTwice(self) -> None:
        """The same file again changes nothing and names the earlier import."""
        first = self.done(import_msisdn(self.store, SAMPLE))
        second = self.done(import_msisdn(self.store, SAMPLE))
        self.assertEqual(self.counts(second), (0, 0, 5, 0))
        self.assertEqual(second.previous_import_id, first.import_id)
        self.assertEqual(len(self.done(self.store.msisdn_history())), 5)

    def test_allOrNothing(self) -> None:
        """With all_or_nothing, a bad line or an unknown card stops the whole file."""
        text = f"33600000001,{A},,ADD,20250101000000\n"
        report = self.run_import(text + "x,y,z\n", all_or_nothing=True)
        self.assertIn("nothing imported", report.fatal)
        report = self.run_import(
            text + "33600000002,8988211000000000000,,ADD,20250101000000\n", all_or_nothing=True
        )
        self.assertIn("nothing imported", report.fatal)
        self.assertEqual([(e.line, e.column) for e in report.errors], [(2, "ICCID")])
        self.assertEqual(self.numbers(), [None, None, None])
        self.assertEqual(self.counts(self.run_import(text, all_or_nothing=True)), (1, 0, 0, 0))

    def test_errorsMappedAcrossBatches(self) -> None:
        """With several batches, each rejection is reported on its own line."""
        self.patch(_importer, "BATCH_SIZE", 2)
        report = self.run_import(
            f"33600000001,{A},,ADD,20250101000000\n"
            f"33600000002,{B},,ADD,20250101000001\n"
            f"33600000003,{C},,ADD,20250101000002\n"
            "33600000004,8988211000000000000,,ADD,20250101000003\n"
            "33600000005,8988211000000000001,,ADD,20250101000004\n"
        )
        self.assertEqual([e.line for e in report.errors], [4, 5])
        self.assertEqual(self.counts(report), (3, 0, 0, 2))


class MemoryMsisdnImportTests(MsisdnImportMixin, SynchronousTestCase):
    """MSISDN imports into the memory store."""

    def make_store(self) -> IStore:
        return MemoryStore()


class SqliteMsisdnImportTests(MsisdnImportMixin, SynchronousTestCase):
    """MSISDN imports into SqlStore on SQLite."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)
