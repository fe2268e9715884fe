"""The feed's queue: each ready file imported exactly once, failures retried.

The store is the memory store (one that can be told to fail, for the
store-error cases); time is a L{Clock}; files are real files in a
temporary home.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest._feed import FeedProcessor
from bipgw.ingest._homes import Homes
from bipgw.keys import KeyStore, RootKey, Secret
from bipgw.store import (
    BatchResult,
    ImportKind,
    MemoryStore,
    StoreError,
    add_partner,
)
from tests.unit.ingest import TRANSPORT_KEY, vendor_file

ROOT = RootKey(Secret(bytes(range(32))))
MSISDN = b"33612345601,8988211000000000018,,ADD,20250101120000\n"


class _FailingStore(MemoryStore):
    """A memory store whose card writes fail while C{down} is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def upsert_cards(self, cards: Any, *, atomic: bool = False) -> Deferred[BatchResult]:
        if self.down:
            return fail(StoreError("database unreachable"))
        return super().upsert_cards(cards, atomic=atomic)

    def upsert_card_batches(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        if self.down:
            return fail(StoreError("database unreachable"))
        return super().upsert_card_batches(*args, **kwargs)


class FeedProcessorTests(SynchronousTestCase):
    """L{FeedProcessor} on real files, a memory store and a clock."""

    def setUp(self) -> None:
        base = Path(os.path.abspath(self.mktemp()))
        base.mkdir()
        self.homes = Homes(base / "feeds")
        self.store = _FailingStore()
        self.keystore = KeyStore.create(str(base / "keys.json"), ROOT)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        self.clock = Clock()
        self.imported: list[Any] = []
        self.processor = self.make(max_bytes=1 << 20)
        for name, kind in (("vendor", ImportKind.CARDS), ("shield", ImportKind.MSISDN)):
            add = add_partner(self.store, name, kind, password="partner-password")
            self.successResultOf(Deferred.fromCoroutine(add))
            self.homes.home(name)

    def make(self, max_bytes: int) -> FeedProcessor:
        return FeedProcessor(
            self.store,
            self.homes,
            keystore=self.keystore,
            root=ROOT,
            max_file_bytes=max_bytes,
            clock=self.clock,
            retry_after=30.0,
            now=lambda: 1000.0,
            imported=self.imported.append,
        )

    def drop(self, name: str, data: bytes, partner: str = "vendor") -> None:
        (self.homes.root / partner / "incoming" / name).write_bytes(data)

    def listing(self, partner: str = "vendor") -> dict[str, list[str]]:
        home = self.homes.root / partner
        return {
            sub: sorted(os.listdir(home / sub)) for sub in ("incoming", "processed", "rejected")
        }

    def report(self, name: str, partner: str = "vendor") -> str:
        return (self.homes.root / partner / "reports" / f"{name}.report").read_text()

    def test_imported(self) -> None:
        """A ready file is imported, reported and moved; the callback sees the report."""
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.assertEqual(self.listing()["processed"], ["B1.out"])
        self.assertIn("added 3", self.report("B1.out"))
        self.assertEqual([r.added for r in self.imported], [3])

    def test_storeErrorRetried(self) -> None:
        """A store error leaves the file in incoming/; it is imported on the retry."""
        self.store.down = True
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.assertEqual(self.listing()["incoming"], ["B1.out"])
        self.assertFalse((self.homes.root / "vendor" / "reports" / "B1.out.report").exists())
        self.processor.scan()  # a poll does not jump the retry's turn
        self.store.down = False
        self.clock.advance(30)
        self.assertEqual(self.listing()["processed"], ["B1.out"])
        self.assertIn("added 3", self.report("B1.out"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_diskFullRetriedWithoutImportingAgain(self) -> None:
        """The report cannot be written: the file stays, and the retry finishes
        the job from the recorded import instead of importing again."""
        reports = self.homes.root / "vendor" / "reports"
        # A file where the directory should be: every write fails (even as root).
        reports.rename(reports.with_name("reports.away"))
        reports.write_bytes(b"")
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.assertEqual(self.listing()["incoming"], ["B1.out"])
        self.assertEqual(len(self.successResultOf(self.store.list_imports())), 1)
        reports.unlink()
        reports.with_name("reports.away").rename(reports)
        self.clock.advance(30)
        self.assertEqual(self.listing()["processed"], ["B1.out"])
        imports = self.successResultOf(self.store.list_imports())
        self.assertEqual(len(imports), 1)
        self.assertIn("#1 of B1.out", self.report("B1.out"))

    def test_restartFinishesRecordedFile(self) -> None:
        """A file whose import is recorded but which was not moved is finished, not re-imported."""
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        os.rename(
            self.homes.root / "vendor" / "processed" / "B1.out",
            self.homes.root / "vendor" / "incoming" / "B1.out",
        )
        os.unlink(self.homes.root / "vendor" / "reports" / "B1.out.report")
        self.make(1 << 20).scan()
        self.assertEqual(self.listing()["processed"], ["B1.out"])
        self.assertIn("added 3", self.report("B1.out"))
        self.assertEqual(len(self.successResultOf(self.store.list_imports())), 1)

    def test_duplicateContent(self) -> None:
        """The same content again, under another name, is not imported again."""
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.drop("B1-again.out", vendor_file())
        self.processor.scan()
        self.assertEqual(self.listing()["processed"], ["B1-again.out", "B1.out"])
        self.assertIn("not imported again", self.report("B1-again.out"))
        self.assertEqual(len(self.successResultOf(self.store.list_imports())), 1)

    def test_sameNameLater(self) -> None:
        """A new file under a name already processed is kept beside the first one."""
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.drop("B1.out", vendor_file(header={"Batch": "B0002"}))
        self.processor.scan()
        self.assertEqual(self.listing()["processed"], ["B1.out", "B1.out.1"])
        self.assertIn("unchanged 0", self.report("B1.out.1"))

    def test_oversized(self) -> None:
        """A file over the limit is refused whole, and the refusal recorded."""
        self.processor = self.make(max_bytes=100)
        self.drop("big.out", vendor_file())
        self.processor.scan()
        self.assertEqual(self.listing()["rejected"], ["big.out"])
        self.assertIn("more than max_file_bytes (100)", self.report("big.out"))
        self.assertEqual(self.successResultOf(self.store.count_cards()), 0)
        self.assertIsNotNone(self.successResultOf(self.store.list_imports())[0].fatal)

    def test_notProcessed(self) -> None:
        """Files being written (.part, hidden) and homes of unknown partners are left alone."""
        self.drop("B1.out.part", vendor_file())
        self.drop(".upload-1234", vendor_file())
        (self.homes.root / "stranger" / "incoming").mkdir(parents=True)
        (self.homes.root / "stranger" / "incoming" / "x.out").write_bytes(vendor_file())
        self.processor.scan()
        self.assertEqual(self.listing()["incoming"], [".upload-1234", "B1.out.part"])
        self.assertEqual(os.listdir(self.homes.root / "stranger" / "incoming"), ["x.out"])

    def test_disabledPartnerLeftAlone(self) -> None:
        """A disabled partner's waiting files are not imported."""
        from bipgw.store import disable_partner

        self.successResultOf(Deferred.fromCoroutine(disable_partner(self.store, "vendor")))
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.assertEqual(self.listing()["incoming"], ["B1.out"])
        self.assertEqual(self.successResultOf(self.store.count_cards()), 0)

    def test_msisdnAndKinds(self) -> None:
        """The MSISDN partner's file is applied; a vendor file from it is refused."""
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.drop("map.csv", MSISDN, "shield")
        self.drop("cards.out", vendor_file(header={"Batch": "X"}), "shield")
        self.processor.scan()
        self.assertEqual(self.listing("shield")["processed"], ["map.csv"])
        self.assertEqual(self.listing("shield")["rejected"], ["cards.out"])
        self.assertIn("added 1", self.report("map.csv", "shield"))

    def test_cutOffRefused(self) -> None:
        """A file that does not end with a line end is refused whole."""
        self.drop("cut.csv", MSISDN[:-5], "shield")
        self.processor.scan()
        self.assertEqual(self.listing("shield")["rejected"], ["cut.csv"])
        self.assertIn("cut off", self.report("cut.csv", "shield"))

    def test_stop(self) -> None:
        """After stop, nothing more is taken and pending retries are cancelled."""
        self.store.down = True
        self.drop("B1.out", vendor_file())
        self.processor.scan()
        self.successResultOf(self.processor.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.processor.submit("vendor", "B1.out")
        self.assertEqual(self.listing()["incoming"], ["B1.out"])
