"""Card imports with the parsing, unwrapping and sealing in a worker process.

Most of the card import and batch-boundary tests run again with every file
imported from a path and L{bipgw.ingest._card_worker.WORKER_MIN_CARDS} at
0, so each of their imports starts a real worker process: the reports,
counts, line errors and stored keys must be the single-process import's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import IngestError, _card_worker, import_cards
from bipgw.ingest._card_stream import CardStream
from bipgw.keys import FileRootKeyRing, KeyStore, TransportScheme
from bipgw.store import BulkSealer, ImportReport, IStore, open_card_key
from tests.unit.ingest import ICCIDS, TRANSPORT_KEY, clear_keys, vendor_file
from tests.unit.ingest.test_import_batches import BatchImportMixin
from tests.unit.ingest.test_import_cards import ROOT, CardImportMixin
from tests.unit.store.test_sqlite import open_inline


class _ThroughWorker:
    """Every import from a file, in a worker process (counted)."""

    store: IStore
    keystore: KeyStore

    def force_worker(self, test: SynchronousTestCase) -> None:
        test.patch(_card_worker, "WORKER_MIN_CARDS", 0)
        self.workers = 0
        original = _card_worker.run

        def counted(*a: Any, **kw: Any) -> Any:
            self.workers += 1
            return original(*a, **kw)

        test.patch(_card_worker, "run", counted)

    def import_file(
        self, test: SynchronousTestCase, data: bytes, file_name: str, **kw: Any
    ) -> ImportReport:
        directory = Path(test.mktemp())
        directory.mkdir()
        path = directory / file_name
        path.write_bytes(data)
        before = self.workers
        report: ImportReport = test.successResultOf(
            import_cards(self.store, self.keystore, ROOT, path, **kw)
        )
        if report.fatal is None:
            test.assertEqual(self.workers, before + 1, "the import ran in this process")
        return report


def _picked(mixin: type, tests: tuple[str, ...]) -> type:
    """C{mixin} with only the C{tests} named (a worker start costs ~1.6 s of CPU)."""
    body = {
        name: value
        for name, value in vars(mixin).items()
        if not name.startswith("__") and (not name.startswith("test_") or name in tests)
    }
    return type(f"Picked{mixin.__name__}", (), body)


_CardTests: Any = _picked(
    CardImportMixin,
    (
        "test_sampleFile",
        "test_sameFileTwiceIsUnchanged",
        "test_changedKeyUpdatesOneCard",
        "test_badLinesReportedGoodOnesImported",
        "test_errorListCapped",
        "test_quantityMismatchImportsNothing",
        "test_wrongTransportKeyImportsNothing",
        "test_oneDamagedValue",
        "test_allOrNothing",
        "test_des3EcbWithCheckValues",
    ),
)
_BatchTests: Any = _picked(
    BatchImportMixin,
    (
        "test_errorInLaterBatch",
        "test_duplicateAcrossBatches",
        "test_allOrNothingErrorInLaterBatch",
        "test_allOrNothingStoreRejectionRollsBackEarlierBatches",
        "test_storeRejectionInBatch",
        "test_truncatedFileWritesNothing",
        "test_cutInsideLineWritesNothing",
        "test_cutInsideLastLineWritesNothing",
        "test_lastLineWithoutEndIsACard",
    ),
)


class WorkerCardImportTests(_ThroughWorker, _CardTests, SynchronousTestCase):
    """Card import tests, each import through a worker process (SQLite)."""

    def make_store(self) -> IStore:
        self.db_path = os.path.abspath(self.mktemp()) + ".db"
        return open_inline(f"sqlite:///{self.db_path}", self)

    def setUp(self) -> None:
        super().setUp()
        self.force_worker(self)

    def run_import(self, data: bytes, **kw: Any) -> ImportReport:
        return self.import_file(self, data, "B0001.out", now=lambda: 1000.0, **kw)


class WorkerBatchImportTests(_ThroughWorker, _BatchTests, SynchronousTestCase):
    """Batch-boundary tests, each card import through a worker process (SQLite)."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)

    def setUp(self) -> None:
        super().setUp()
        self.force_worker(self)

    def cards(self, data: bytes, **kw: Any) -> ImportReport:
        return self.import_file(self, data, "b.out", **kw)


class WorkerTests(_ThroughWorker, SynchronousTestCase):
    """The worker's own cases: which root keys it may use, a worker that fails."""

    def setUp(self) -> None:
        self.store = open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)
        self.keystore = KeyStore.create(os.path.abspath(self.mktemp()), ROOT)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        self.force_worker(self)

    def test_derivedKeysOnly(self) -> None:
        """The worker is given the sealing and fingerprint keys, never the root key."""
        keys = _card_worker.usable(ROOT)
        assert keys is not None
        key_id, seal_key, fingerprint_key = keys
        self.assertEqual(key_id, ROOT.key_id)
        self.assertNotIn(ROOT.secret.reveal(), (seal_key, fingerprint_key))
        here = BulkSealer(ROOT).seal_parts(ICCIDS[0], "KIC1", bytes(16))
        there = BulkSealer.from_derived(keys).seal_parts(ICCIDS[0], "KIC1", bytes(16))
        self.assertEqual(here[1], there[1])  # same fingerprint
        opened = ROOT.unseal(f"card:{ICCIDS[0]}:KIC1", there[0])
        self.assertEqual(opened.reveal(), bytes(16))

    def test_noRootKeyInEnvironment(self) -> None:
        """A root key given in the environment (BIPGW_ROOT_KEY) is not passed on to the worker."""
        self.patch(os, "environ", {**os.environ, "BIPGW_ROOT_KEY": "secret", "OTHER": "kept"})
        env = _card_worker._environment()
        self.assertNotIn("BIPGW_ROOT_KEY", env)
        self.assertEqual(env["OTHER"], "kept")
        self.assertTrue(env["PYTHONPATH"].startswith(str(Path(__file__).resolve().parents[3])))

    def test_keyRing(self) -> None:
        """A root key ring lends its sealing key's derivations; a token would lend none."""
        path = os.path.abspath(self.mktemp())
        ROOT.save(path)
        ring = FileRootKeyRing(path)
        self.assertEqual(_card_worker.usable(ring), _card_worker.usable(ROOT))
        self.assertIsNone(_card_worker.usable(object()))  # type: ignore[arg-type]

    def test_importThroughWorker(self) -> None:
        """A file imported by a worker: its cards' keys open to the clear keys."""
        report = self.import_file(self, vendor_file(), "B0001.out")
        self.assertEqual((report.added, report.rejected), (3, 0), report.errors)
        self.assertEqual(self.workers, 1)
        keys = self.successResultOf(self.store.get_card_keys(ICCIDS[1]))
        for purpose in ("KIC", "KID", "KIK", "PSK"):
            key = open_card_key(ROOT, keys.find(purpose, 1))
            self.assertEqual(key.reveal(), clear_keys(ICCIDS[1])[f"{purpose}1"])

    def test_smallFileInProcess(self) -> None:
        """Below WORKER_MIN_CARDS cards, the import stays in this process."""
        self.patch(_card_worker, "WORKER_MIN_CARDS", 4)
        report = self.import_file_unchecked(vendor_file())
        self.assertEqual(report.added, 3)
        self.assertEqual(self.workers, 0)

    def import_file_unchecked(self, data: bytes) -> ImportReport:
        path = Path(self.mktemp())
        path.write_bytes(data)
        report: ImportReport = self.successResultOf(
            import_cards(self.store, self.keystore, ROOT, path)
        )
        return report

    def test_workerFails(self) -> None:
        """A worker that dies is an IngestError saying so (the feed retries the file)."""
        self.patch(sys, "executable", "/bin/false")
        path = Path(self.mktemp())
        path.write_bytes(vendor_file())
        failure = self.failureResultOf(
            import_cards(self.store, self.keystore, ROOT, path), IngestError
        )
        self.assertIn("the import worker process failed", str(failure.value))
        self.assertIsNone(self.successResultOf(self.store.get_card(ICCIDS[0])))

    def test_streamEvents(self) -> None:
        """The worker's events are L{produce}'s: the stream reports it ran there."""
        path = Path(self.mktemp())
        path.write_bytes(vendor_file())
        from bipgw.ingest._vendor_file import read_header

        with path.open("rb") as f:
            header, columns, _, _ = read_header(iter(enumerate(f.read().split(b"\n"), 1)))
        stream = CardStream(
            lambda: path.open("rb"),
            TRANSPORT_KEY,
            TransportScheme.AES_KWP,
            ROOT,
            batch_size=2,
            all_or_nothing=False,
            header=header,
            columns=columns,
            path=str(path),
            workers=True,
        )
        batches = list(stream.batches())
        self.assertTrue(stream.in_worker)
        self.assertEqual([len(b) for b in batches], [2, 1])
        self.assertEqual((stream.records, stream.rejected, stream.verified), (3, 0, 12))
        self.assertEqual(len(stream.sha256), 64)
