"""MSISDN imports with the file checked and batched in a worker process.

The MSISDN import tests run again with
L{bipgw.ingest._msisdn_worker.WORKER_MIN_BYTES} at 0, so each import starts
a real worker process: the reports, counts, line errors and the mapping
stored must be the single-process import's.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import IngestError, _importer, _msisdn_worker, import_msisdn_data
from bipgw.ingest._msisdn_file import MsisdnScan
from bipgw.store import IStore, MemoryStore
from tests.unit.ingest.test_import_msisdn import A, B, C, MsisdnImportMixin
from tests.unit.store.test_sqlite import open_inline


class _ThroughWorker(MsisdnImportMixin):
    """Every import in a worker process (counted)."""

    def setUp(self) -> None:
        super().setUp()
        self.patch(_msisdn_worker, "WORKER_MIN_BYTES", 0)
        self.workers = 0
        original = _msisdn_worker.WorkerScan

        def counted(*a: Any, **kw: Any) -> Any:
            self.workers += 1
            return original(*a, **kw)

        self.patch(_msisdn_worker, "WorkerScan", counted)
        self.patch(_importer, "MsisdnScan", _refused)

    def test_sameAsInProcess(self) -> None:
        """A file with bad lines, store rejections and several batches: the same report."""
        self.patch(_importer, "BATCH_SIZE", 2)
        text = (
            f"MSISDN,ICCID,IMSI,OPERATION,EFFECTIVE_TIME\n"
            f"33600000001,{A},001010000000001,ADD,20250101000000\n"
            f"33600000002,{B},,ADD,20250101000001\n"
            "\n"
            f"bad,{C},,ADD,\n"
            f"33600000009,{C},,CHG,20241231000000\n"
            f",{B},,DEL,20250102000000\n"
            f"+33600000003,{A},,CHG,20250101000005\n"
            "33600000004,8988211000000000000,,ADD,20250101000003\n"
            f"33600000003,{B},,ADD,20250101000009\n"
        )
        data = text.encode()
        direct = MsisdnScan(data, default_time=2_000_000_000, source="m.csv")
        worker = _msisdn_worker.WorkerScan(data, default_time=2_000_000_000, source="m.csv")
        self.addCleanup(worker.close)
        self.assertEqual(
            (worker.records, worker.rejected, worker.valid, worker.errors),
            (direct.records, direct.rejected, direct.valid, direct.errors),
        )
        self.assertEqual(list(worker.in_effective_order(3)), list(direct.in_effective_order(3)))
        before = self.workers
        report = self.run_import(text)
        self.assertEqual(self.workers, before + 1)
        self.assertEqual(
            [(e.line, e.column, e.message) for e in report.errors],
            [
                (5, "MSISDN", "MSISDN 'bad' must be 5 to 15 digits (an optional + first)"),
                (9, "ICCID", "unknown ICCID 8988211000000000000"),
                (10, "MSISDN", f"MSISDN 33600000003 is mapped to card {A} (it needs a DEL first)"),
            ],
        )
        self.assertEqual(self.counts(report), (2, 3, 0, 3))
        self.assertEqual(self.numbers(), ["33600000003", None, "33600000009"])

    def test_workerFails(self) -> None:
        """A worker that dies is an IngestError saying so (the feed retries the file)."""
        self.patch(sys, "executable", "/bin/false")
        failure = self.failureResultOf(
            import_msisdn_data(self.store, f"33600000001,{A},,ADD,\n".encode(), file_name="m"),
            IngestError,
        )
        self.assertIn("the import worker process failed", str(failure.value))
        self.assertEqual(self.numbers(), [None, None, None])


def _refused(*a: object, **kw: object) -> MsisdnScan:
    raise AssertionError("the import ran in this process")


class MemoryMsisdnWorkerTests(_ThroughWorker, SynchronousTestCase):
    """MSISDN imports into the memory store, through a worker."""

    def make_store(self) -> IStore:
        return MemoryStore()


class SqliteMsisdnWorkerTests(_ThroughWorker, SynchronousTestCase):
    """MSISDN imports into SqlStore on SQLite, through a worker."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)
