"""Explicit FTPS (RFC 4217) on the partners' FTP feed, against Python's ftplib.FTP_TLS.

Every test of the plain FTP feed runs again over TLS (control and data
connections, C{PROT P}) with TLS required; then what only TLS has: a plain
login refused, clear data connections refused, active mode refused under
C{PROT P}, a TLS upload cut without its C{close_notify} never processed.
"""

from __future__ import annotations

import datetime
import ftplib
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from bipgw.config import IngestSection
from bipgw.ingest import IngestService, IngestSettings
from tests.integration import test_feeds_ftp as plain_ftp
from tests.integration.test_feeds_ftp import PASSWORD, ROOT, TIMEOUT
from tests.unit.ingest import vendor_file

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bipgw feeds")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ftps.crt", directory / "ftps.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class FtpsFeedTests(plain_ftp.FtpFeedTests):
    """The plain FTP feed's tests, over explicit TLS with TLS required."""

    require_tls = True

    def start(self, max_bytes: int = 1 << 20) -> IngestService:
        if not hasattr(self, "certificate"):
            directory = Path(os.path.abspath(self.mktemp()))
            directory.mkdir()
            self.certificate, key = self_signed(directory)
            # The options as the gateway makes them from [ingest] (the config's own code).
            section = IngestSection(
                incoming_dir=self.root,
                ftp_listen="tcp:0",
                ftp_tls_certificate=self.certificate,
                ftp_tls_key=key,
                ftp_require_tls=self.require_tls,
                sftp_listen=None,
                sftp_host_key=None,
                max_file_bytes=max_bytes,
                poll_interval=0.2,
            )
            self.tls_options = section.ftp_tls_options()
        settings = IngestSettings(
            incoming_dir=self.root,
            ftp_listen="tcp:0:interface=127.0.0.1",
            ftp_tls=self.tls_options,
            ftp_require_tls=self.require_tls,
            max_file_bytes=max_bytes,
            poll_interval=0.2,
        )
        service = IngestService(
            settings, self.store, keystore=self.keystore, root=ROOT, reactor=reactor
        )
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certificate))
        return context

    def login(self, user: str = "vendor", password: str = PASSWORD) -> ftplib.FTP:
        ftp = ftplib.FTP_TLS(context=self.context())
        ftp.connect("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            ftp.login(user, password)  # AUTH TLS first, then USER and PASS
            ftp.prot_p()
        except BaseException:
            ftp.close()
            raise
        return ftp

    @inlineCallbacks
    def test_same_name_at_once(self) -> Any:
        """Two uploads of one name at once over TLS: one delivered, the other refused."""

        def work(ftp: Any) -> str:
            second = self.login()
            one = ftp.transfercmd("STOR incoming/B0001.out")
            two = second.transfercmd("STOR incoming/B0001.out")
            one.sendall(vendor_file())
            two.sendall(vendor_file(header={"Batch": "B0002"}))
            one.unwrap().close()  # the TLS end of the file: close_notify
            first_reply = ftp.voidresp()
            two.unwrap().close()
            try:
                second_reply = second.voidresp()
            except ftplib.error_temp as e:
                second_reply = str(e)
            second.close()
            return first_reply + " | " + second_reply

        self.service.processor._busy = True
        replies = yield self.ftp_call(work)
        self.service.processor._busy = False
        self.assertIn("226", replies.split(" | ")[0])
        self.assertIn("still waiting to be processed", replies.split(" | ")[1])
        self.service.processor.scan()
        text = yield self.report("vendor", "B0001.out")
        self.assertIn("added 3", text)

    # -- what only TLS has ---------------------------------------------------------

    def plain(self) -> ftplib.FTP:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", self.port, timeout=TIMEOUT)
        return ftp

    @inlineCallbacks
    def test_plain_login_refused(self) -> Any:
        """With TLS required, USER before AUTH TLS is refused (530), and nothing is learnt."""

        def work() -> str:
            ftp = self.plain()
            try:
                ftp.login("vendor", PASSWORD)
            except ftplib.error_perm as e:
                return str(e)
            finally:
                ftp.close()
            return "logged in"

        reply = yield deferToThread(work)
        self.assertTrue(reply.startswith("530"), reply)
        self.assertIn("AUTH TLS", reply)

    @inlineCallbacks
    def test_clear_data_refused(self) -> Any:
        """With TLS required, a data connection without PROT P is refused (521), PROT C too."""

        def work() -> list[str]:
            ftp = ftplib.FTP_TLS(context=self.context())
            ftp.connect("127.0.0.1", self.port, timeout=TIMEOUT)
            replies = []
            try:
                ftp.login("vendor", PASSWORD)
                for command in ("PASV", "EPSV"):
                    try:
                        ftp.sendcmd(command)
                    except ftplib.error_perm as e:
                        replies.append(str(e)[:3])
                ftp.sendcmd("PBSZ 0")
                try:
                    ftp.sendcmd("PROT C")
                except ftplib.error_perm as e:
                    replies.append(str(e)[:3])
                ftp.prot_p()  # PBSZ 0 again, PROT P, and ftplib wraps its data sockets
                try:
                    ftp.sendcmd("PORT 127,0,0,1,4,1")
                except ftplib.error_perm as e:
                    replies.append(str(e)[:3])
                replies.append(",".join(sorted(ftp.nlst("."))))  # a TLS data connection
                # Nothing to send: the gateway still waits for the handshake to close.
                replies.append(",".join(ftp.nlst("incoming")) or "empty")
            finally:
                ftp.close()
            return replies

        replies = yield deferToThread(work)
        self.assertEqual(
            replies,
            ["521", "521", "534", "534", "incoming,processed,rejected,reports", "empty"],
        )

    @inlineCallbacks
    def test_tls_cut_without_close_notify_never_processed(self) -> Any:
        """A TLS upload whose data connection closes without close_notify is not complete."""

        def work(ftp: Any) -> str:
            conn = ftp.transfercmd("STOR incoming/cut.out")
            conn.sendall(vendor_file())
            # The TCP connection closed cleanly, the TLS one not: a cut file.
            raw = socket_of(conn)
            raw.close()
            try:
                return ftp.voidresp()
            except ftplib.Error as e:
                return str(e)

        reply = yield self.ftp_call(work)
        self.assertFalse(reply.startswith("226"), reply)
        yield deferLater(reactor, 0.5, lambda: None)
        yield self.service.processor.idle()
        self.assertEqual(os.listdir(self.root / "vendor" / "incoming"), [])
        self.assertEqual(os.listdir(self.root / "vendor" / "reports"), [])

    @inlineCallbacks
    def test_feat_and_bad_tls_commands(self) -> Any:
        """FEAT names AUTH TLS; PBSZ and PROT out of order, unknown mechanisms, are refused."""

        def work() -> list[str]:
            ftp = self.plain()
            replies = []
            try:
                feat = ftp.sendcmd("FEAT")
                replies.append("AUTH TLS" in feat and "PROT" in feat and "PBSZ" in feat)
                for command in ("PBSZ 0", "PROT P", "AUTH KERBEROS"):
                    try:
                        ftp.sendcmd(command)
                    except ftplib.error_perm as e:
                        replies.append(str(e)[:3])
            finally:
                ftp.close()
            return replies

        replies = yield deferToThread(work)
        self.assertEqual(replies, [True, "503", "503", "504"])


def socket_of(conn: ssl.SSLSocket) -> Any:
    """The TCP socket under a TLS socket, detached from it (closing it sends no close_notify)."""
    import socket

    return socket.socket(fileno=conn.detach())


class FtpsOptionalTests(FtpsFeedTests):
    """TLS offered, not required: a plain partner still works, a TLS one as well."""

    require_tls = False

    test_plain_login_refused = None  # type: ignore[assignment]
    test_clear_data_refused = None  # type: ignore[assignment]

    @inlineCallbacks
    def test_plain_login_allowed(self) -> Any:
        """Not required: a plain login works (PROT C is the default)."""

        def work() -> str:
            ftp = self.plain()
            try:
                return ftp.login("vendor", PASSWORD)
            finally:
                ftp.close()

        reply = yield deferToThread(work)
        self.assertTrue(reply.startswith("230"), reply)
