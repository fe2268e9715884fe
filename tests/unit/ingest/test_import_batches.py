"""Streamed imports at their batch boundaries, on every store.

The card importer writes L{bipgw.ingest._importer.CARD_BATCH_SIZE} cards a
transaction (patched small here) and the MSISDN importer
L{bipgw.ingest._importer.BATCH_SIZE} changes; what a batch boundary must not
change: line numbers of errors, duplicates found across batches, the
all-or-nothing promise (one transaction for every batch), re-imports
counted unchanged, the order of DEL and CHG records.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import _importer, import_card_data, import_msisdn_data
from bipgw.keys import KeyStore, RootKey, Secret, psk_identity_for
from bipgw.store import CardUpsert, ImportReport, IStore, MemoryStore
from tests.unit.ingest import TRANSPORT_KEY, card_line, vendor_file
from tests.unit.store.test_sqlite import open_inline

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

ROOT = RootKey(Secret(bytes(range(32))))


def iccid(n: int) -> str:
    return f"89882110000000{n:05d}"


def lines(count: int, start: int = 1) -> list[str]:
    return [card_line(iccid(n), f"0010100000{n:05d}") for n in range(start, start + count)]


class BatchImportMixin(_Base):
    """Batch-boundary tests; mixed with a store factory and SynchronousTestCase."""

    def make_store(self) -> IStore:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(lambda: self.done(self.store.close()))
        self.keystore = KeyStore.create(os.path.abspath(self.mktemp()), ROOT)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        self.patch(_importer, "CARD_BATCH_SIZE", 3)
        self.patch(_importer, "BATCH_SIZE", 3)

    def done(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def cards(self, data: bytes, **kw: Any) -> ImportReport:
        d = import_card_data(self.store, self.keystore, ROOT, data, file_name="b.out", **kw)
        report: ImportReport = self.done(d)
        return report

    def counts(self, report: ImportReport) -> tuple[int, int, int, int]:
        return (report.added, report.updated, report.unchanged, report.rejected)

    def test_exactMultipleAndOneOver(self) -> None:
        """Six cards (two full batches) and seven (one card in a third) all arrive."""
        report = self.cards(vendor_file(lines(6)))
        self.assertEqual((report.records, *self.counts(report)), (6, 6, 0, 0, 0))
        report = self.cards(vendor_file(lines(7)))
        self.assertEqual((report.records, *self.counts(report)), (7, 1, 0, 6, 0))
        self.assertEqual(self.done(self.store.count_cards()), 7)

    def test_errorInLaterBatch(self) -> None:
        """A bad line in the second batch is reported on its own line; the others are written."""
        body = lines(7)
        body[4] = body[4].replace(" 0010100000", " 00X0100000")
        report = self.cards(vendor_file(body))
        self.assertEqual([(e.line, e.column) for e in report.errors], [(13, "IMSI")])
        self.assertEqual(self.counts(report), (6, 0, 0, 1))
        self.assertIsNone(self.done(self.store.get_card(iccid(5))))
        self.assertIsNotNone(self.done(self.store.get_card(iccid(7))))

    def test_duplicateAcrossBatches(self) -> None:
        """An ICCID repeated in a later batch is refused, naming the first line."""
        body = [*lines(4), lines(1)[0]]
        report = self.cards(vendor_file(body))
        self.assertEqual(
            [(e.line, e.column) for e in report.errors], [(13, "ICCID"), (13, "PSK_ID1")]
        )
        self.assertIn("also on line 9", report.errors[0].message)
        self.assertEqual(self.counts(report), (4, 0, 0, 1))

    def test_reimportUnchanged(self) -> None:
        """The same file again, over several batches, is all unchanged."""
        self.cards(vendor_file(lines(8)))
        again = self.cards(vendor_file(lines(8)))
        self.assertEqual(self.counts(again), (0, 0, 8, 0))

    def test_allOrNothingErrorInLaterBatch(self) -> None:
        """All-or-nothing: a bad line in batch three: nothing written, every error listed."""
        body = lines(8)
        body[1] = body[1].replace(" 0010100000", " 00X0100000")
        body[7] = body[7].replace(" 0010100000", " 00Y0100000")
        report = self.cards(vendor_file(body), all_or_nothing=True)
        self.assertIn("nothing imported", report.fatal)
        self.assertEqual([e.line for e in report.errors], [10, 16])
        self.assertEqual(self.done(self.store.count_cards()), 0)

    def test_allOrNothingStoreRejectionRollsBackEarlierBatches(self) -> None:
        """All-or-nothing: a card refused by the store in batch two undoes batch one."""
        owner = CardUpsert(iccid=iccid(99), psk_identity=psk_identity_for(iccid(5)))
        self.done(self.store.upsert_cards([owner]))
        report = self.cards(vendor_file(lines(6)), all_or_nothing=True)
        self.assertIn("nothing imported", report.fatal)
        self.assertEqual([(e.line, e.column) for e in report.errors], [(13, "PSK_ID1")])
        self.assertEqual(self.done(self.store.count_cards()), 1)

    def test_storeRejectionInBatch(self) -> None:
        """Without all-or-nothing, the store's rejection is one line; the rest is written."""
        owner = CardUpsert(iccid=iccid(99), psk_identity=psk_identity_for(iccid(5)))
        self.done(self.store.upsert_cards([owner]))
        report = self.cards(vendor_file(lines(6)))
        self.assertEqual([(e.line, e.column) for e in report.errors], [(13, "PSK_ID1")])
        self.assertEqual(self.counts(report), (5, 0, 0, 1))

    def test_truncatedFileWritesNothing(self) -> None:
        """A Quantity above the card lines (a cut upload) is refused before any batch."""
        report = self.cards(vendor_file(lines(7), quantity=9))
        self.assertIn("Quantity", report.fatal)
        self.assertEqual(self.done(self.store.count_cards()), 0)

    def test_cutInsideLineWritesNothing(self) -> None:
        """A file ending inside a line (an upload cut short) names the line; nothing is written."""
        whole = vendor_file(lines(7), quantity=9)
        report = self.cards(whole[: whole.index(iccid(5).encode()) + 30])
        self.assertIn("line 13: the file ends inside this line", report.fatal)
        self.assertIn("Quantity says 9 cards and the file has 5 card lines", report.fatal)
        self.assertEqual(self.done(self.store.count_cards()), 0)

    def test_cutInsideLastLineWritesNothing(self) -> None:
        """Cut inside the last line (Quantity still right): refused, line and column named."""
        whole = vendor_file(lines(7))
        for cut, column in ((9, "PSK1"), (16, "PSK1"), (60, None)):
            report = self.cards(whole[:-cut])
            assert report.fatal is not None
            where = "line 15, field PSK1: " if column else "line 15: "
            self.assertTrue(report.fatal.startswith(where + "the file ends inside"), report.fatal)
            self.assertEqual(self.done(self.store.count_cards()), 0)

    def test_lastLineWithoutEndIsACard(self) -> None:
        """A good last line without its newline is a card like the others."""
        report = self.cards(vendor_file(lines(7)).rstrip(b"\n"))
        self.assertIsNone(report.fatal)
        self.assertEqual(self.counts(report), (7, 0, 0, 0))

    def test_wrongTransportKeyWritesNothing(self) -> None:
        """Every value failing its integrity check, over several batches: fatal, nothing written."""
        self.keystore.put(
            "TK1", "transport", Secret(b"\x01" * 16), {"scheme": "aes-kwp"}, replace=True
        )
        report = self.cards(vendor_file(lines(7)))
        self.assertIn("does not open", report.fatal)
        self.assertEqual(self.done(self.store.count_cards()), 0)

    def test_wrongTransportKeyGivesUpEarly(self) -> None:
        """Once a batch end finds enough values failed and none opened, the
        rest of the file is not tried: the same refusal, nothing written,
        the file's card lines counted, but only the first batches opened."""
        from bipgw.ingest import _card_produce
        from bipgw.ingest._unwrap import CardOpener

        self.keystore.put(
            "TK1", "transport", Secret(b"\x01" * 16), {"scheme": "aes-kwp"}, replace=True
        )
        self.patch(_card_produce, "WRONG_KEY_AFTER", 4)
        tried: list[int] = []
        real = CardOpener.open_rows

        def counting(opener: CardOpener, cards: Any, *args: Any) -> Any:
            cards = list(cards)
            tried.append(len(cards))
            return real(opener, cards, *args)

        self.patch(CardOpener, "open_rows", counting)
        report = self.cards(vendor_file(lines(30)))
        self.assertIn("the transport key 'TK1' does not open this file", report.fatal)
        self.assertEqual(report.records, 30)
        self.assertEqual(self.done(self.store.count_cards()), 0)
        self.assertLess(sum(tried), 30)
        self.assertGreater(sum(tried), 0)

    def test_msisdnDelAndChgOrderWithinBatch(self) -> None:
        """ADD, CHG, DEL of one card in one batch apply in time order, not file order."""
        self.cards(vendor_file(lines(2)))
        a, b = iccid(1), iccid(2)
        text = (
            f",{a},,DEL,20250101000300\n"
            f"33600000009,{a},,CHG,20250101000200\n"
            f"33600000001,{a},,ADD,20250101000100\n"
            f"33600000002,{b},,ADD,20250101000100\n"
            f"33600000003,{b},,CHG,20250101000400\n"
        )
        d = import_msisdn_data(self.store, text.encode(), file_name="m.csv")
        report: ImportReport = self.done(d)
        self.assertEqual(report.rejected, 0, report.errors)
        self.assertIsNone(self.done(self.store.get_card(a)).msisdn)
        self.assertEqual(self.done(self.store.get_card(b)).msisdn, "33600000003")
        history = self.done(self.store.msisdn_history(iccid=a))
        self.assertEqual([h.operation.value for h in history], ["ADD", "CHG", "DEL"])


class MemoryBatchImportTests(BatchImportMixin, SynchronousTestCase):
    """Batch boundaries on the memory store."""

    def make_store(self) -> IStore:
        return MemoryStore()


class SqliteBatchImportTests(BatchImportMixin, SynchronousTestCase):
    """Batch boundaries on SqlStore with SQLite."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)


class FewerCollectionsTests(SynchronousTestCase):
    """The import's garbage-collector thresholds: raised while imports run, then put back."""

    def test_raisedThenRestored(self) -> None:
        """Nested (two imports at once): the outermost restores the thresholds it found."""
        import gc

        from bipgw.ingest._card_produce import IMPORT_GC_THRESHOLD, fewer_collections

        before = gc.get_threshold()
        with fewer_collections():
            self.assertEqual(gc.get_threshold()[0], IMPORT_GC_THRESHOLD)
            with fewer_collections():
                self.assertEqual(gc.get_threshold()[0], IMPORT_GC_THRESHOLD)
            self.assertEqual(gc.get_threshold()[0], IMPORT_GC_THRESHOLD)
        self.assertEqual(gc.get_threshold(), before)
