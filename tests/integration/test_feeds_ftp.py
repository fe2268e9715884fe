"""The partners' FTP feed against Python's ftplib, an independent FTP client, over 127.0.0.1.

The gateway side is the real L{IngestService} on the real reactor with a
SQLite store; the partner is C{ftplib} in a thread.  Each test uploads,
waits for the report in C{reports/}, and checks the store and the counts.
"""

from __future__ import annotations

import ftplib
import io
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from bipgw.ingest import IngestService, IngestSettings
from bipgw.keys import KeyStore, RootKey, Secret
from bipgw.store import FeedFile, ImportKind, IStore, SqlStore, add_partner
from tests.unit.ingest import ICCIDS, TRANSPORT_KEY, vendor_file

pytestmark = pytest.mark.integration

ROOT = RootKey(Secret(bytes(range(32))))
PASSWORD = "vendor-secret-1"
TIMEOUT = 5.0
MSISDN_FILE = (
    b"33612345601,8988211000000000018,,ADD,20250101120000\n"
    b"33612345602,8988211000000000026,,ADD,20250101120000\n"
)


class FtpFeedTests(TestCase):
    """Upload, wait for the report, check the store (module docstring)."""

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        base = Path(os.path.abspath(self.mktemp()))
        base.mkdir()
        self.root = base / "feeds"
        self.db = f"sqlite:///{base / 'bipgw.db'}"
        self.keystore = KeyStore.create(str(base / "keys.json"), ROOT)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        self.keystore.put("TK2", "transport", Secret(bytes(16)), {"scheme": "aes-kwp"})
        self.store: IStore = yield SqlStore.open(self.db)
        self.addCleanup(lambda: self.store.close())
        yield Deferred.fromCoroutine(
            add_partner(self.store, "vendor", ImportKind.CARDS, password=PASSWORD)
        )
        yield Deferred.fromCoroutine(
            add_partner(self.store, "shield", ImportKind.MSISDN, password="shield-secret-1")
        )
        yield Deferred.fromCoroutine(
            add_partner(
                self.store, "strict", ImportKind.CARDS, password="strict-1", transport_key="TK2"
            )
        )
        self.service = self.start()
        yield self.service.ready
        self.port = (yield self.service.ftp.when_listening()).getHost().port

    def start(self, max_bytes: int = 1 << 20) -> IngestService:
        settings = IngestSettings(
            incoming_dir=self.root,
            ftp_listen="tcp:0:interface=127.0.0.1",
            max_file_bytes=max_bytes,
            poll_interval=0.2,
        )
        service = IngestService(
            settings, self.store, keystore=self.keystore, root=ROOT, reactor=reactor
        )
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service

    # -- the partner side, blocking, in a thread ---------------------------------

    def login(self, user: str = "vendor", password: str = PASSWORD) -> ftplib.FTP:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            ftp.login(user, password)
        except BaseException:
            ftp.close()
            raise
        return ftp

    def upload(self, name: str, data: bytes, user: str = "vendor", pw: str = PASSWORD) -> str:
        def run() -> str:
            ftp = self.login(user, pw)
            try:
                return ftp.storbinary(f"STOR {name}", io.BytesIO(data))
            finally:
                ftp.quit()

        return deferToThread(run)

    def ftp_call(self, work: Any, user: str = "vendor", pw: str = PASSWORD) -> Deferred[Any]:
        def run() -> Any:
            ftp = self.login(user, pw)
            try:
                return work(ftp)
            finally:
                ftp.close()

        return deferToThread(run)

    @inlineCallbacks
    def report(self, partner: str, name: str) -> Any:
        """Wait for (and return) the report of C{name}."""
        path = self.root / partner / "reports" / f"{name}.report"
        for _ in range(200):
            if path.exists():
                return path.read_text()
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"no report {path}")

    def fetch_report(self, name: str) -> Deferred[bytes]:
        def work(ftp: ftplib.FTP) -> bytes:
            out = io.BytesIO()
            ftp.retrbinary(f"RETR reports/{name}.report", out.write)
            return out.getvalue()

        return self.ftp_call(work)

    # -- the tests ---------------------------------------------------------------

    @inlineCallbacks
    def test_upload_imports_and_reports(self) -> Any:
        """A vendor file uploaded over FTP is imported; the report comes back over FTP."""
        reply = yield self.upload("incoming/B0001.out", vendor_file())
        self.assertTrue(reply.startswith("226"), reply)
        text = yield self.report("vendor", "B0001.out")
        self.assertIn("added 3, updated 0, unchanged 0, rejected 0", text)
        fetched = yield self.fetch_report("B0001.out")
        self.assertEqual(fetched.decode(), text)
        for iccid in ICCIDS:
            card = yield self.store.get_card(iccid)
            self.assertIsNotNone(card)
        self.assertTrue((self.root / "vendor" / "processed" / "B0001.out").exists())
        self.assertEqual(os.listdir(self.root / "vendor" / "incoming"), [])
        imports = yield self.store.list_imports()
        self.assertEqual([i.file_name for i in imports], ["B0001.out"])

    @inlineCallbacks
    def test_line_errors_in_report(self) -> Any:
        """Refused lines are in the report with line, column and reason."""
        data = vendor_file().replace(b"001010000000002", b"00101X000000002")
        yield self.upload("incoming/bad.out", data)
        text = yield self.report("vendor", "bad.out")
        self.assertIn("added 2, updated 0, unchanged 0, rejected 1", text)
        self.assertIn("line 10, column IMSI", text)

    @inlineCallbacks
    def test_same_content_twice_not_imported_again(self) -> Any:
        """The same content under another name is recognised by its hash."""
        yield self.upload("incoming/B0001.out", vendor_file())
        yield self.report("vendor", "B0001.out")
        yield self.upload("incoming/again.out", vendor_file())
        text = yield self.report("vendor", "again.out")
        self.assertIn("not imported again", text)
        imports = yield self.store.list_imports()
        self.assertEqual(len(imports), 1)

    @inlineCallbacks
    def test_msisdn_partner(self) -> Any:
        """The MSISDN partner's mapping file is applied."""
        yield self.upload("incoming/B0001.out", vendor_file())
        yield self.report("vendor", "B0001.out")
        yield self.upload("incoming/map.csv", MSISDN_FILE, "shield", "shield-secret-1")
        text = yield self.report("shield", "map.csv")
        self.assertIn("added 2", text)
        card = yield self.store.card_by_msisdn("33612345601")
        self.assertEqual(card.iccid, ICCIDS[0])

    @inlineCallbacks
    def test_wrong_kind_rejected(self) -> Any:
        """A partner may deliver only its own kind of file."""
        yield self.upload("incoming/cards.out", vendor_file(), "shield", "shield-secret-1")
        text = yield self.report("shield", "cards.out")
        self.assertIn("REFUSED", text)
        self.assertIn("delivers MSISDN mapping files", text)
        self.assertTrue((self.root / "shield" / "rejected" / "cards.out").exists())
        yield self.upload("incoming/map.csv", MSISDN_FILE)
        text = yield self.report("vendor", "map.csv")
        self.assertIn("looks like an MSISDN mapping file", text)
        self.assertEqual((yield self.store.count_cards()), 0)

    @inlineCallbacks
    def test_partner_transport_key(self) -> Any:
        """A partner tied to a transport key cannot deliver files under another."""
        yield self.upload("incoming/B0001.out", vendor_file(), "strict", "strict-1")
        text = yield self.report("strict", "B0001.out")
        self.assertIn("may only use 'TK2'", text)
        self.assertEqual((yield self.store.count_cards()), 0)

    @inlineCallbacks
    def test_wrong_transport_key_nothing_imported(self) -> Any:
        """A file whose secret columns the named key does not open imports nothing."""
        data = vendor_file().replace(b"Transport_key: TK1", b"Transport_key: TK2")
        yield self.upload("incoming/B0001.out", data)
        text = yield self.report("vendor", "B0001.out")
        self.assertIn("REFUSED", text)
        self.assertIn("nothing imported", text)
        self.assertEqual((yield self.store.count_cards()), 0)
        self.assertTrue((self.root / "vendor" / "rejected" / "B0001.out").exists())

    @inlineCallbacks
    def test_truncated_file_refused(self) -> Any:
        """A file cut mid-line is refused whole (the Quantity does not match)."""
        data = vendor_file()
        yield self.upload("incoming/cut.out", data[: len(data) - 40])
        text = yield self.report("vendor", "cut.out")
        self.assertIn("REFUSED", text)
        self.assertEqual((yield self.store.count_cards()), 0)

    @inlineCallbacks
    def test_oversized_upload_refused(self) -> Any:
        """An upload over max_file_bytes is cut off and refused; nothing is left behind."""
        yield self.service.stopService()
        self.service = self.start(max_bytes=200)
        self.port = (yield self.service.ftp.when_listening()).getHost().port
        error = yield self.assertFailure(
            self.upload("incoming/big.out", vendor_file()), ftplib.error_temp
        )
        self.assertIn("larger than the limit of 200 bytes", str(error))
        self.assertEqual(os.listdir(self.root / "vendor" / "incoming"), [])

    @inlineCallbacks
    def test_traversal_refused(self) -> Any:
        """Paths with .. or starting with / are refused; writes go to incoming/ only."""

        def work(ftp: ftplib.FTP) -> list[str]:
            errors = []
            for command in (
                "STOR ../shield/incoming/x.csv",
                "STOR /etc/x",
                "STOR incoming/../../x",
                "STOR processed/x.out",
                "STOR x.out",
                "STOR incoming/.hidden",
                "STOR incoming/.part",
            ):
                try:
                    ftp.storbinary(command, io.BytesIO(b"data"))
                except ftplib.error_perm as e:
                    errors.append(str(e)[:3])
            for command in ("CWD ..", "CWD /", "RETR ../shield/reports/x", "DELE reports/x"):
                try:
                    ftp.sendcmd(command)
                except ftplib.error_perm as e:
                    errors.append(str(e)[:3])
            return errors

        errors = yield self.ftp_call(work)
        self.assertEqual(errors, ["550"] * 11)
        self.assertEqual(os.listdir(self.root / "shield" / "incoming"), [])
        self.assertFalse((self.root / "x").exists())

    @inlineCallbacks
    def test_part_upload_renamed_when_complete(self) -> Any:
        """NAME.part is never imported; renamed (RNFR/RNTO) to NAME, it is, once."""

        def upload_part(ftp: ftplib.FTP) -> str:
            half = vendor_file()[:200]
            ftp.storbinary("STOR incoming/B0001.out.part", io.BytesIO(half))
            # Uploaded again (a resumed transfer starting over): replaced, not refused.
            return ftp.storbinary("STOR incoming/B0001.out.part", io.BytesIO(vendor_file()))

        reply = yield self.ftp_call(upload_part)
        self.assertTrue(reply.startswith("226"), reply)
        self.service.processor.scan()
        yield deferLater(reactor, 0.5, lambda: None)
        yield self.service.processor.idle()
        incoming = self.root / "vendor" / "incoming"
        self.assertEqual(os.listdir(incoming), ["B0001.out.part"])
        self.assertEqual(os.listdir(self.root / "vendor" / "reports"), [])
        self.assertEqual((incoming / "B0001.out.part").read_bytes(), vendor_file())

        def rename(ftp: ftplib.FTP) -> list[str]:
            replies = []
            for source, target in (
                ("incoming/B0001.out.part", "incoming/other.out"),
                ("incoming/B0001.out.part", "processed/B0001.out"),
                ("incoming/nothing.part", "incoming/nothing"),
                ("incoming/B0001.out.part", "incoming/B0001.out"),
            ):
                try:
                    replies.append(ftp.rename(source, target)[:3])
                except ftplib.Error as e:
                    replies.append(str(e)[:3])
            return replies

        replies = yield self.ftp_call(rename)
        self.assertEqual(replies, ["550", "550", "550", "250"])
        text = yield self.report("vendor", "B0001.out")
        self.assertIn("added 3, updated 0, unchanged 0, rejected 0", text)
        self.assertEqual(os.listdir(incoming), [])

    @inlineCallbacks
    def test_sha256_companion(self) -> Any:
        """A NAME.sha256 sent first is checked: a mismatch is rejected with a report."""
        import hashlib

        data = vendor_file()
        good = hashlib.sha256(data).hexdigest().encode() + b"  B0001.out\n"
        cut = data[: len(data) // 2]  # what a cut transfer leaves, declared whole
        yield self.upload("incoming/B0002.out.sha256", good.replace(b"B0001", b"B0002"))
        yield self.upload("incoming/B0002.out", cut)
        text = yield self.report("vendor", "B0002.out")
        self.assertIn("REFUSED", text)
        self.assertIn("B0002.out.sha256 says", text)
        rejected = sorted(os.listdir(self.root / "vendor" / "rejected"))
        self.assertEqual(rejected, ["B0002.out", "B0002.out.sha256"])
        card = yield self.store.get_card(ICCIDS[0])
        self.assertIsNone(card)
        # The right content with the right checksum is imported.
        yield self.upload("incoming/B0001.out.sha256", good)
        yield self.upload("incoming/B0001.out", data)
        text = yield self.report("vendor", "B0001.out")
        self.assertIn("added 3", text)
        processed = sorted(os.listdir(self.root / "vendor" / "processed"))
        self.assertEqual(processed, ["B0001.out", "B0001.out.sha256"])
        self.assertEqual(os.listdir(self.root / "vendor" / "incoming"), [])

    @inlineCallbacks
    def test_bad_password_refused(self) -> Any:
        """A wrong password, an unknown or a disabled partner cannot log in."""
        from bipgw.store import disable_partner

        yield Deferred.fromCoroutine(disable_partner(self.store, "strict"))
        for user, password in (("vendor", "wrong"), ("nobody", "x"), ("strict", "strict-1")):
            yield self.assertFailure(
                self.ftp_call(lambda f: None, user, password), ftplib.error_perm
            )

    @inlineCallbacks
    def test_interrupted_upload_never_processed(self) -> Any:
        """A data connection reset mid-STOR, or a partner gone mid-transfer, delivers nothing."""

        def reset(ftp: ftplib.FTP) -> None:
            conn = ftp.transfercmd("STOR incoming/reset.out")
            conn.sendall(vendor_file()[:100])
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            try:
                ftp.voidresp()
            except ftplib.Error:
                pass

        def vanish(ftp: ftplib.FTP) -> None:
            conn = ftp.transfercmd("STOR incoming/gone.out")
            conn.sendall(vendor_file()[:100])
            ftp.sock.close()
            ftp.file.close()
            time.sleep(0.3)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

        yield self.ftp_call(reset)
        yield self.ftp_call(vanish)
        yield deferLater(reactor, 0.6, lambda: None)
        yield self.service.processor.idle()
        self.assertEqual(os.listdir(self.root / "vendor" / "incoming"), [])
        self.assertEqual(os.listdir(self.root / "vendor" / "reports"), [])

    @inlineCallbacks
    def test_same_name_at_once(self) -> Any:
        """Two uploads of one name at once: one is delivered, the other refused, nothing lost."""

        def work(ftp: ftplib.FTP) -> str:
            second = self.login()
            one = ftp.transfercmd("STOR incoming/B0001.out")
            two = second.transfercmd("STOR incoming/B0001.out")
            one.sendall(vendor_file())
            two.sendall(vendor_file(header={"Batch": "B0002"}))
            one.close()
            first_reply = ftp.voidresp()
            two.close()
            try:
                second_reply = second.voidresp()
            except ftplib.error_temp as e:
                second_reply = str(e)
            second.close()
            return first_reply + " | " + second_reply

        # Stop processing so the first file still waits when the second completes.
        self.service.processor._busy = True
        replies = yield self.ftp_call(work)
        self.service.processor._busy = False
        self.assertIn("226", replies.split(" | ")[0])
        self.assertIn("still waiting to be processed", replies.split(" | ")[1])
        self.service.processor.scan()
        text = yield self.report("vendor", "B0001.out")
        self.assertIn("added 3", text)

    @inlineCallbacks
    def test_restart_picks_up_waiting_files(self) -> Any:
        """Files that arrived while no gateway ran, or were imported but not moved, are finished."""
        yield self.service.stopService()
        incoming = self.root / "vendor" / "incoming"
        (incoming / "waiting.out").write_bytes(vendor_file())
        (incoming / ".upload-0123").write_bytes(b"half an upload")
        (incoming / "copying.out.part").write_bytes(b"still being copied")
        self.service = self.start()
        text = yield self.report("vendor", "waiting.out")
        self.assertIn("added 3", text)
        self.assertEqual(sorted(os.listdir(incoming)), ["copying.out.part"])
        # Stopped after the import and its record, before the move: finished, not re-imported.
        yield self.service.stopService()
        data = vendor_file(header={"Batch": "B0009"})
        (incoming / "midway.out").write_bytes(data)
        import hashlib

        report = yield self.store.record_import(
            __import__("bipgw.store", fromlist=["ImportReport"]).ImportReport(
                kind=ImportKind.CARDS,
                file_name="midway.out",
                sha256=hashlib.sha256(data).hexdigest(),
                imported_at=1.0,
                records=3,
                added=3,
                applied=True,
            )
        )
        yield self.store.add_feed_file(
            FeedFile("vendor", report.sha256, "midway.out", 1.0, "processed", report.import_id)
        )
        self.service = self.start()
        text = yield self.report("vendor", "midway.out")
        self.assertIn(f"#{report.import_id} of midway.out", text)
        self.assertEqual((yield self.store.count_cards(batch="B0009")), 0)

    @inlineCallbacks
    def test_watched_directory(self) -> Any:
        """A file copied in as NAME.part and renamed is imported at the next poll."""
        incoming = self.root / "vendor" / "incoming"
        part = incoming / "copied.out.part"
        part.write_bytes(vendor_file())
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertTrue(part.exists())
        part.rename(incoming / "copied.out")
        text = yield self.report("vendor", "copied.out")
        self.assertIn("added 3", text)
