"""The partners' SFTP feed against paramiko, an independent SSH client, over 127.0.0.1.

The partner logs in with its key, uploads into C{incoming/}, and reads
the report back over SFTP; the gateway side is the real L{IngestService}.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from bipgw.ingest import IngestService, IngestSettings
from bipgw.keys import KeyStore, RootKey, Secret
from bipgw.store import ImportKind, IStore, SqlStore, add_partner
from tests.unit.ingest import ICCIDS, TRANSPORT_KEY, vendor_file

pytestmark = pytest.mark.integration

ROOT = RootKey(Secret(bytes(range(32))))
TIMEOUT = 5.0


def _write_key(path: Path) -> tuple[paramiko.Ed25519Key, str]:
    """A new ed25519 key pair: the private key file, and the public OpenSSH line."""
    private = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return paramiko.Ed25519Key.from_private_key_file(str(path)), public.decode()


class SftpFeedTests(TestCase):
    """Upload over SFTP, wait for the report, check the store."""

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        base = Path(os.path.abspath(self.mktemp()))
        base.mkdir()
        self.root = base / "feeds"
        self.keystore = KeyStore.create(str(base / "keys.json"), ROOT)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        host_key = base / "host_key"
        _write_key(host_key)
        self.client_key, public = _write_key(base / "partner_key")
        self.other_key, _ = _write_key(base / "other_key")
        self.store: IStore = yield SqlStore.open(f"sqlite:///{base / 'bipgw.db'}")
        self.addCleanup(lambda: self.store.close())
        yield Deferred.fromCoroutine(
            add_partner(self.store, "vendor", ImportKind.CARDS, ssh_keys=[public])
        )
        settings = IngestSettings(
            incoming_dir=self.root,
            sftp_listen="tcp:0:interface=127.0.0.1",
            sftp_host_key=host_key,
            max_file_bytes=1 << 20,
            poll_interval=0.2,
        )
        self.service = IngestService(
            settings, self.store, keystore=self.keystore, root=ROOT, reactor=reactor
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        yield self.service.ready
        assert self.service.sftp is not None
        self.port = (yield self.service.sftp.when_listening()).getHost().port

    def sftp(self, work: Any, key: Any = None) -> Deferred[Any]:
        def run() -> Any:
            transport = paramiko.Transport(("127.0.0.1", self.port))
            transport.banner_timeout = TIMEOUT
            try:
                transport.connect(username="vendor", pkey=key or self.client_key)
                client = paramiko.SFTPClient.from_transport(transport)
                assert client is not None
                client.get_channel().settimeout(TIMEOUT)
                try:
                    return work(client)
                finally:
                    client.close()
            finally:
                transport.close()

        return deferToThread(run)

    @inlineCallbacks
    def report(self, name: str) -> Any:
        path = self.root / "vendor" / "reports" / f"{name}.report"
        for _ in range(200):
            if path.exists():
                return path.read_text()
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"no report {path}")

    @inlineCallbacks
    def test_upload_imports_and_reports(self) -> Any:
        """An upload is imported; the partner reads its report over SFTP."""
        yield self.sftp(lambda c: c.putfo(io.BytesIO(vendor_file()), "/incoming/B0001.out"))
        text = yield self.report("B0001.out")
        self.assertIn("added 3, updated 0, unchanged 0, rejected 0", text)

        def fetch(client: paramiko.SFTPClient) -> tuple[bytes, list[str]]:
            out = io.BytesIO()
            client.getfo("reports/B0001.out.report", out)
            return out.getvalue(), sorted(client.listdir("/"))

        fetched, listing = yield self.sftp(fetch)
        self.assertEqual(fetched.decode(), text)
        self.assertEqual(listing, ["incoming", "processed", "rejected", "reports"])
        for iccid in ICCIDS:
            self.assertIsNotNone((yield self.store.get_card(iccid)))

    @inlineCallbacks
    def test_refusals(self) -> Any:
        """Climbing, writing outside incoming/, removing and renaming are refused."""

        def work(client: paramiko.SFTPClient) -> list[str]:
            refused = []
            for target in ("../x.out", "/incoming/../../x.out", "processed/x.out", "x.out"):
                try:
                    client.putfo(io.BytesIO(b"x\n"), target)
                except OSError:
                    refused.append(target)
            for action in (
                lambda: client.remove("reports/x"),
                lambda: client.rename("incoming/a", "incoming/b"),
                lambda: client.mkdir("incoming/d"),
                lambda: client.listdir("../"),
            ):
                try:
                    action()
                except OSError:
                    refused.append("op")
            return refused

        refused = yield self.sftp(work)
        self.assertEqual(len(refused), 8)
        self.assertEqual(os.listdir(self.root / "vendor" / "incoming"), [])
        self.assertFalse((self.root / "x.out").exists())

    @inlineCallbacks
    def test_unknown_key_refused(self) -> Any:
        """A key that is not the partner's cannot log in."""
        yield self.assertFailure(
            self.sftp(lambda c: None, key=self.other_key), paramiko.AuthenticationException
        )

    @inlineCallbacks
    def test_interrupted_upload_discarded(self) -> Any:
        """A session that ends with the upload still open delivers nothing."""

        def work(client: paramiko.SFTPClient) -> None:
            handle = client.open("incoming/cut.out", "wb")
            handle.write(vendor_file()[:200])
            handle.flush()
            client.get_channel().close()

        yield self.sftp(work)
        yield deferLater(reactor, 0.6, lambda: None)
        yield self.service.processor.idle()
        self.assertEqual(os.listdir(self.root / "vendor" / "incoming"), [])
        self.assertEqual(os.listdir(self.root / "vendor" / "reports"), [])
