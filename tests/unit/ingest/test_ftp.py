"""The FTP door's realm, checker and shell, over in-memory transports.

The partner side is raw FTP lines into L{PartnerFTP} on a
L{StringTransport}; uploads go through the shell and a real L{ftp.DTP}
protocol on a transport of its own, so how the data connection ends
(cleanly, reset) is what the shell sees.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.protocols import ftp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest._ftp import MAX_CONNECTIONS, Intake, PartnerRealm, PartnerShell, ftp_factory
from bipgw.ingest._homes import Homes
from bipgw.store import ImportKind, MemoryStore, add_partner

PASSWORD = "vendor-password-1"


class _Setup(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(os.path.abspath(self.mktemp()))
        self.delivered: list[tuple[str, str]] = []
        self.intake = Intake(
            Homes(self.root), 100, lambda partner, name: self.delivered.append((partner, name))
        )
        self.store = MemoryStore()
        add = add_partner(self.store, "vendor", ImportKind.CARDS, password=PASSWORD)
        self.successResultOf(Deferred.fromCoroutine(add))


class FtpSessionTests(_Setup):
    """Login and path rules over the control connection."""

    def setUp(self) -> None:
        # FTP sets its idle timeout and resumes reading (callLater(0))
        # through the global reactor; these tests resume it themselves (in
        # say) and cancel those calls, so nothing is left on the global
        # reactor for the tests that run it.
        from twisted.internet import reactor

        super().setUp()
        before = set(reactor.getDelayedCalls())

        def cancel() -> None:
            for call in set(reactor.getDelayedCalls()) - before:
                if call.active():
                    call.cancel()

        self.addCleanup(cancel)

    def connect(self) -> tuple[Any, StringTransport]:
        factory = ftp_factory(self.store, self.intake)
        factory.doStart()
        self.addCleanup(factory.doStop)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(lambda: protocol.connectionLost(Failure(ConnectionDone())))
        return protocol, transport

    def say(self, protocol: Any, transport: StringTransport, line: str) -> str:
        transport.clear()
        protocol.wrappedProtocol.resumeProducing()
        protocol.dataReceived(line.encode() + b"\r\n")
        return transport.value().decode()

    def test_login(self) -> None:
        """The right password logs in; a wrong one, an unknown user, anonymous do not."""
        protocol, transport = self.connect()
        self.say(protocol, transport, "USER vendor")
        self.assertTrue(self.say(protocol, transport, "PASS wrong").startswith("530"))
        for user in ("nobody", "anonymous"):
            self.say(protocol, transport, f"USER {user}")
            self.assertTrue(self.say(protocol, transport, "PASS x").startswith("530"))
        self.say(protocol, transport, "USER vendor")
        self.assertTrue(self.say(protocol, transport, f"PASS {PASSWORD}").startswith("230"))
        self.assertTrue((self.root / "vendor" / "incoming").is_dir())

    def test_pathsThatClimbRefused(self) -> None:
        """A path with .. or from / is refused before the command runs."""
        protocol, transport = self.connect()
        self.say(protocol, transport, "USER vendor")
        self.say(protocol, transport, f"PASS {PASSWORD}")
        for line in ("CWD ..", "CWD /", "CWD incoming/../..", "RETR ../x", "SIZE /etc/passwd"):
            with self.subTest(line=line):
                self.assertTrue(self.say(protocol, transport, line).startswith("550"))
        self.assertTrue(self.say(protocol, transport, "CWD reports").startswith("250"))
        self.assertTrue(self.say(protocol, transport, "CWD ..").startswith("550"))

    def test_connectionLimit(self) -> None:
        """Past MAX_CONNECTIONS sessions, a new one is told 421 and closed."""
        factory = ftp_factory(self.store, self.intake)
        factory.doStart()
        self.addCleanup(factory.doStop)
        address = IPv4Address("TCP", "127.0.0.1", 1)
        for _ in range(MAX_CONNECTIONS):
            factory.buildProtocol(address).makeConnection(StringTransport())
        transport = StringTransport()
        factory.buildProtocol(address).makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"421"))
        self.assertTrue(transport.disconnecting)
        for protocol in list(factory.instances):
            protocol.connectionLost(Failure(ConnectionDone()))

    def test_changesRefused(self) -> None:
        """Nothing can be removed, renamed or made."""
        protocol, transport = self.connect()
        self.say(protocol, transport, "USER vendor")
        self.say(protocol, transport, f"PASS {PASSWORD}")
        (self.root / "vendor" / "reports" / "r").write_text("x")
        for line in ("DELE reports/r", "MKD incoming/d", "RMD reports"):
            with self.subTest(line=line):
                self.assertTrue(self.say(protocol, transport, line).startswith("550"))
        self.say(protocol, transport, "RNFR reports/r")
        self.assertTrue(self.say(protocol, transport, "RNTO reports/s").startswith("550"))
        self.assertTrue((self.root / "vendor" / "reports" / "r").exists())


class ShellUploadTests(_Setup):
    """L{PartnerShell.openForWriting} and how an upload ends."""

    def shell(self) -> PartnerShell:
        realm = PartnerRealm(self.intake)
        interface, shell, _ = realm.requestAvatar(b"vendor", None, ftp.IFTPShell)
        self.assertIs(interface, ftp.IFTPShell)
        return shell

    def close(self, shell: PartnerShell, data: bytes, end: Failure) -> Any:
        writer = self.successResultOf(shell.openForWriting(["incoming", "B1.out"]))
        consumer = self.successResultOf(writer.receive())
        dtp = ftp.DTP()
        dtp.factory = SimpleNamespace(deferred=Deferred())
        dtp.makeConnection(StringTransport())
        dtp.registerConsumer(consumer)
        dtp.dataReceived(data)
        dtp.connectionLost(end)
        return writer.close()

    def incoming(self) -> list[str]:
        return sorted(os.listdir(self.root / "vendor" / "incoming"))

    def test_cleanEndDelivers(self) -> None:
        """A data connection closed cleanly delivers the file under its name."""
        self.successResultOf(self.close(self.shell(), b"data\n", Failure(ConnectionDone())))
        self.assertEqual(self.incoming(), ["B1.out"])
        self.assertEqual((self.root / "vendor" / "incoming" / "B1.out").read_bytes(), b"data\n")
        self.assertEqual(self.delivered, [("vendor", "B1.out")])

    def test_resetDiscards(self) -> None:
        """A reset data connection leaves nothing, delivers nothing."""
        failure = self.failureResultOf(
            self.close(self.shell(), b"data\n", Failure(ConnectionLost()))
        )
        self.assertIn("interrupted", failure.getErrorMessage())
        self.assertEqual((self.incoming(), self.delivered), ([], []))

    def test_loggedOutDiscards(self) -> None:
        """An upload ending after the control connection went is discarded."""
        shell = self.shell()
        shell.logout()
        self.failureResultOf(self.close(shell, b"data\n", Failure(ConnectionDone())))
        self.assertEqual((self.incoming(), self.delivered), ([], []))

    def test_tooLarge(self) -> None:
        """An upload past the limit is cut off and refused, nothing kept."""
        failure = self.failureResultOf(
            self.close(self.shell(), b"x" * 101, Failure(ConnectionDone()))
        )
        self.assertIn("larger than the limit of 100 bytes", failure.getErrorMessage())
        self.assertEqual(self.incoming(), [])

    def test_nameTaken(self) -> None:
        """A name still waiting in incoming/ is not replaced."""
        shell = self.shell()
        self.successResultOf(self.close(shell, b"one\n", Failure(ConnectionDone())))
        failure = self.failureResultOf(self.close(shell, b"two\n", Failure(ConnectionDone())))
        self.assertIn("still waiting to be processed", failure.getErrorMessage())
        self.assertEqual((self.root / "vendor" / "incoming" / "B1.out").read_bytes(), b"one\n")
        self.assertEqual(self.incoming(), ["B1.out"])

    def test_onlyIntoIncoming(self) -> None:
        """Writes elsewhere, hidden names and a bare .part are refused (NAME.part is not)."""
        shell = self.shell()
        for path in (
            ["B1.out"],
            ["processed", "B1.out"],
            ["incoming", "sub", "B1.out"],
            ["incoming", ".hidden"],
            ["incoming", ".part"],
            ["incoming", ".x.part"],
        ):
            with self.subTest(path=path):
                self.failureResultOf(shell.openForWriting(path), ftp.PermissionDeniedError)
