"""Importing card-vendor output files into the store.

The importer runs against the memory store and SqlStore on SQLite.  The
keys it stores are checked by opening them and comparing with values
computed independently: the sample file's keys are the KDF test vectors of
C{docs/keys.md}, written here as literals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import IngestError, import_card_data, import_cards, render_report
from bipgw.keys import (
    KeyAlgorithm,
    KeyStore,
    RootKey,
    Secret,
    check_value,
    psk_identity_for,
    wrap_for_transport,
)
from bipgw.store import ImportReport, IStore, MemoryStore, open_card_key
from tests.unit.ingest import COLUMNS, ICCIDS, TRANSPORT_KEY, card_line, clear_keys, vendor_file
from tests.unit.store.test_contract import card
from tests.unit.store.test_sqlite import open_inline

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fleet" / "sample-vendor.out"
ROOT = RootKey(Secret(bytes(range(32))))
OTHER_KEY = Secret(bytes.fromhex("0F0E0D0C0B0A09080706050403020100"))
DES_KEY = Secret(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
#: docs/keys.md section 5: master 000102..0F, ICCID 8988211000000000018, AES-128.
VECTORS = {
    ("KIC", 1): "04C6F85264D52AA3685E2F53EA090118",
    ("KID", 1): "DB2FB4F5502FE704AAB932177EE144DA",
    ("KIK", 1): "A1D44C521F8EBDB8B8943063E48BF609",
    ("PSK", 1): "64467BFC0F8C038EF3F73BB6B7337B17",
}


class CardImportMixin(_Base):
    """Card import tests; mixed with a store factory and SynchronousTestCase."""

    def make_store(self) -> IStore:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(lambda: self.done(self.store.close()))
        path = os.path.abspath(self.mktemp())
        self.keystore = KeyStore.create(path, ROOT)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})

    def done(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def run_import(self, data: bytes, **kw: Any) -> ImportReport:
        d = import_card_data(
            self.store, self.keystore, ROOT, data, file_name="B0001.out", now=lambda: 1000.0, **kw
        )
        report: ImportReport = self.done(d)
        return report

    def counts(self, report: ImportReport) -> tuple[int, int, int, int]:
        return (report.added, report.updated, report.unchanged, report.rejected)

    def key_of(self, iccid: str, purpose: str, kvn: int = 1) -> bytes:
        keys = self.done(self.store.get_card_keys(iccid))
        return open_card_key(ROOT, keys.find(purpose, kvn)).reveal()

    # good files ------------------------------------------------------------------

    def test_sampleFile(self) -> None:
        """The sample file imports three cards whose keys are the KDF test vectors."""
        report = self.done(
            import_cards(self.store, self.keystore, ROOT, SAMPLE, now=lambda: 1000.0)
        )
        self.assertTrue(report.ok, render_report(report))
        self.assertEqual((report.records, *self.counts(report)), (3, 3, 0, 0, 0))
        self.assertEqual(report.file_name, "sample-vendor.out")
        for (purpose, kvn), expected in VECTORS.items():
            self.assertEqual(self.key_of(ICCIDS[0], purpose, kvn).hex().upper(), expected)
        stored = self.done(self.store.get_card(ICCIDS[0]))
        self.assertEqual(
            (stored.imsi, stored.psk_identity, stored.batch, stored.customer, stored.card_type),
            ("001010000000001", psk_identity_for(ICCIDS[0]), "B0001", "bipgw-demo", "USIM-BIP"),
        )
        algorithms = {
            k.purpose.value: k.algorithm
            for k in self.done(self.store.get_card_keys(ICCIDS[0])).keys
        }
        self.assertEqual(
            algorithms, {"KIC": "aes-128", "KID": "aes-128", "KIK": "aes-128", "PSK": "psk"}
        )

    def test_reportRecordedAndAudited(self) -> None:
        """Each import is recorded with its header and hash, and audited."""
        data = vendor_file()
        report = self.run_import(data, actor="alice")
        assert report.import_id is not None
        self.assertEqual(self.done(self.store.get_import(report.import_id)), report)
        self.assertEqual(report.header["Batch"], "B0001")
        import hashlib

        self.assertEqual(report.sha256, hashlib.sha256(data).hexdigest())
        (audit,) = self.done(self.store.list_audit())
        self.assertEqual(
            (audit.actor, audit.action, audit.target), ("alice", "import.cards", "B0001.out")
        )
        self.assertIn(f"import #{report.import_id}: added 3", audit.detail)

    def test_sameFileTwiceIsUnchanged(self) -> None:
        """Importing the same file again adds nothing and points at the first import."""
        first = self.run_import(vendor_file())
        second = self.run_import(vendor_file())
        self.assertEqual(self.counts(second), (0, 0, 3, 0))
        self.assertEqual(second.previous_import_id, first.import_id)
        self.assertEqual(self.done(self.store.count_cards()), 3)
        self.assertEqual(self.key_of(ICCIDS[1], "KID"), clear_keys(ICCIDS[1])["KID1"])
        self.assertIn(f"as import #{first.import_id}", render_report(second))

    def test_changedKeyUpdatesOneCard(self) -> None:
        """A file where one card's key changed updates that card only."""
        self.run_import(vendor_file())
        new_kic = wrap_for_transport(TRANSPORT_KEY, Secret(b"\x42" * 16))
        lines = [
            card_line(i, f"00101000000000{n + 1}", override={"KIC1": new_kic} if n == 2 else None)
            for n, i in enumerate(ICCIDS)
        ]
        report = self.run_import(vendor_file(lines))
        self.assertEqual(self.counts(report), (0, 1, 2, 0))
        self.assertEqual(self.key_of(ICCIDS[2], "KIC"), b"\x42" * 16)
        self.assertEqual(self.key_of(ICCIDS[2], "KID"), clear_keys(ICCIDS[2])["KID1"])

    # bad lines and bad files ---------------------------------------------------------

    def test_badLinesReportedGoodOnesImported(self) -> None:
        """Each kind of bad line is reported with line and column; the good lines go in."""
        lines = [
            card_line(ICCIDS[0], "001010000000001"),
            card_line(ICCIDS[1], "001010000000002", override={"KIC1": "ABCDXYZ0" * 6}),
            card_line(ICCIDS[2], "00101"),
            "8988211000000000042 001010000000004",
            card_line("8988211000000000059", "001010000000005", override={"PSK1": "AB" * 20}),
        ]
        report = self.run_import(vendor_file(lines))
        self.assertEqual((report.records, *self.counts(report)), (5, 1, 0, 0, 4))
        self.assertTrue(report.applied)
        self.assertEqual(
            [(e.line, e.column) for e in report.errors],
            [(10, "KIC1"), (11, "IMSI"), (12, None), (13, "PSK1")],
        )
        text = render_report(report)
        self.assertIn("line 10, column KIC1: not hex (character 5 of 48)", text)
        self.assertIn("line 13, column PSK1:", text)
        self.assertEqual(self.done(self.store.count_cards()), 1)

    def test_errorListCapped(self) -> None:
        """Past the report's limit, line errors are counted but not all listed."""
        from bipgw.ingest import _report

        self.patch(_report, "MAX_REPORTED_ERRORS", 2)
        lines = [card_line(f"89882110000000000{n}0", "x") for n in range(4)]
        report = self.run_import(vendor_file(lines))
        self.assertEqual((report.rejected, len(report.errors)), (4, 2))
        self.assertIn(
            "only the first 2 line errors are listed (4 lines were refused)", report.notices
        )

    def test_quantityMismatchImportsNothing(self) -> None:
        """A file whose Quantity is not its card count is refused whole."""
        report = self.run_import(vendor_file(quantity=5))
        self.assertIn("Quantity says 5 cards but the file has 3 card lines", report.fatal)
        self.assertFalse(report.applied)
        self.assertEqual(self.done(self.store.count_cards()), 0)
        self.assertIn("REFUSED", render_report(report))
        assert report.import_id is not None
        self.assertEqual(self.done(self.store.get_import(report.import_id)).fatal, report.fatal)

    def test_wrongTransportKeyImportsNothing(self) -> None:
        """A file wrapped under another key is refused with a clear error, nothing stored."""
        lines = [card_line(i, "001010000000001", transport=OTHER_KEY) for i in ICCIDS]
        report = self.run_import(vendor_file(lines))
        self.assertIn("the transport key 'TK1' does not open this file", report.fatal)
        self.assertEqual(self.done(self.store.count_cards()), 0)
        self.assertEqual(report.errors, ())

    def test_oneDamagedValue(self) -> None:
        """One value that fails its integrity check rejects its line only."""
        bad = wrap_for_transport(OTHER_KEY, Secret(b"\x01" * 16))
        lines = [
            card_line(i, "001010000000001", override={"KIK1": bad} if n == 1 else None)
            for n, i in enumerate(ICCIDS)
        ]
        report = self.run_import(vendor_file(lines))
        self.assertEqual(self.counts(report), (2, 0, 0, 1))
        (error,) = report.errors
        self.assertEqual((error.line, error.column), (10, "KIK1"))
        self.assertIn("integrity check failed", error.message)

    def test_unknownOrWrongKindTransportKey(self) -> None:
        """A header naming no keystore entry, or a master key, refuses the file."""
        report = self.run_import(vendor_file(header={"Transport_key": "TK9"}))
        self.assertIn("'TK9' named by the header is not in the keystore", report.fatal)
        self.keystore.put("M1", "master-ota-kic", OTHER_KEY)
        report = self.run_import(vendor_file(header={"Transport_key": "M1"}))
        self.assertIn("is a master-ota-kic key, not a transport key", report.fatal)
        self.assertEqual(self.done(self.store.count_cards()), 0)

    def test_allOrNothing(self) -> None:
        """With all_or_nothing, one bad line stops every line; a clean file goes in whole."""
        lines = [card_line(ICCIDS[0], "001010000000001"), card_line(ICCIDS[1], "x")]
        report = self.run_import(vendor_file(lines), all_or_nothing=True)
        self.assertIn("1 of 2 records were refused", report.fatal)
        self.assertEqual([(e.line, e.column) for e in report.errors], [(10, "IMSI")])
        self.assertEqual(self.done(self.store.count_cards()), 0)
        report = self.run_import(vendor_file(), all_or_nothing=True)
        self.assertEqual(self.counts(report), (3, 0, 0, 0))

    def test_allOrNothingDatabaseConflict(self) -> None:
        """With all_or_nothing, a PSK identity taken in the database rolls everything back."""
        self.done(
            self.store.upsert_cards(
                [card("8988211000000000000", psk_identity=psk_identity_for(ICCIDS[2]))]
            )
        )
        report = self.run_import(vendor_file(), all_or_nothing=True)
        self.assertIsNotNone(report.fatal)
        self.assertEqual([(e.line, e.column) for e in report.errors], [(11, "PSK_ID1")])
        self.assertEqual(self.done(self.store.count_cards()), 1)
        report = self.run_import(vendor_file())
        self.assertEqual(self.counts(report), (2, 0, 0, 1))
        self.assertIn("already belongs to card 8988211000000000000", report.errors[0].message)

    def test_wrongKeyLength(self) -> None:
        """A key of a length its algorithm cannot have is refused, naming the length."""
        wrapped = wrap_for_transport(TRANSPORT_KEY, Secret(b"\x01" * 20))
        lines = [card_line(ICCIDS[0], "001010000000001", override={"KID1": wrapped})]
        report = self.run_import(vendor_file(lines))
        self.assertEqual(report.errors[0].column, "KID1")
        self.assertIn("an AES key is 16, 24 or 32 bytes, not 20", report.errors[0].message)

    def test_des3EcbWithCheckValues(self) -> None:
        """3DES-ECB: right KCVs import, a wrong one rejects its line, a wrong key the file."""
        self.keystore.put("TK3", "transport", DES_KEY, {"scheme": "3des-ecb"})
        columns = ("ICCID", "KIC1", "KIC1_KCV", "KID1")

        def line(iccid: str, transport: Secret = DES_KEY, kcv: str | None = None) -> str:
            clear = Secret(clear_keys(iccid)["KIC1"])
            return card_line(
                iccid,
                "",
                columns,
                transport=transport,
                scheme="3des-ecb",
                override={"KIC1_KCV": kcv or check_value(clear, KeyAlgorithm.DES3_2KEY)},
            )

        header = {"Transport_key": "TK3", "Ota_algorithm": "3DES"}
        lines = [line(ICCIDS[0]), line(ICCIDS[1], kcv="000000")]
        report = self.run_import(vendor_file(lines, columns=columns, header=header))
        self.assertEqual(self.counts(report), (1, 0, 0, 1))
        self.assertEqual([(e.line, e.column) for e in report.errors], [(10, "KIC1_KCV")])
        self.assertEqual(self.key_of(ICCIDS[0], "KIC"), clear_keys(ICCIDS[0])["KIC1"])
        kic = self.done(self.store.get_card_keys(ICCIDS[0])).find("KIC", 1)
        self.assertEqual(kic.algorithm, "3des-2key")
        self.assertTrue(any("3des-ecb cannot detect" in n and "KID1" in n for n in report.notices))
        wrong = Secret(bytes.fromhex("00112233445566778899AABBCCDDEEFF"))
        lines = [line(ICCIDS[2], transport=wrong)]
        report = self.run_import(vendor_file(lines, columns=columns, header=header))
        self.assertIn("does not open", report.fatal)

    def test_secretLookingColumnsDropped(self) -> None:
        """Columns like KI and OPC are never stored, and the report says so."""
        columns = (*COLUMNS, "KI", "ACC")
        report = self.run_import(vendor_file(columns=columns))
        stored = self.done(self.store.get_card(ICCIDS[0]))
        self.assertEqual(dict(stored.extras), {"ACC": "acc-18"})
        self.assertIn("column(s) KI look like secrets", " ".join(report.notices))

    def test_unreadableFile(self) -> None:
        """A path that cannot be read fails with an IngestError naming it."""
        d = import_cards(self.store, self.keystore, ROOT, "/nonexistent/B1.out")
        error = self.failureResultOf(d, IngestError).value
        self.assertIn("/nonexistent/B1.out", str(error))

    def test_noClearKeyInLogs(self) -> None:
        """The import's log lines mention counts, never a key."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.run_import(vendor_file())
        text = " ".join(formatEvent(e) for e in events)
        self.assertIn("added 3", text)
        for iccid in ICCIDS:
            for key in clear_keys(iccid).values():
                self.assertNotIn(key.hex(), text.lower())


class MemoryCardImportTests(CardImportMixin, SynchronousTestCase):
    """Card imports into the memory store."""

    def make_store(self) -> IStore:
        return MemoryStore()


class SqliteCardImportTests(CardImportMixin, SynchronousTestCase):
    """Card imports into SqlStore on SQLite."""

    def make_store(self) -> IStore:
        self.db_path = os.path.abspath(self.mktemp()) + ".db"
        return open_inline(f"sqlite:///{self.db_path}", self)

    def test_noClearSecretInDatabaseFile(self) -> None:
        """After importing, no clear key (in bytes or hex) is anywhere in the SQLite files."""
        report = self.run_import(vendor_file())
        self.assertEqual(report.added, 3)
        self.assertEqual(self.key_of(ICCIDS[0], "PSK"), clear_keys(ICCIDS[0])["PSK1"])
        raw = b"".join(
            Path(self.db_path + suffix).read_bytes()
            for suffix in ("", "-wal", "-shm")
            if os.path.exists(self.db_path + suffix)
        )
        self.assertIn(psk_identity_for(ICCIDS[0]), raw)  # the search does see the data
        for iccid in ICCIDS:
            for column, key in clear_keys(iccid).items():
                for form in (key, key.hex().encode(), key.hex().upper().encode()):
                    self.assertNotIn(form, raw, f"{iccid} {column}")
