"""TLS-PSK against the openssl command line tool, over real 127.0.0.1 sockets.

C{openssl s_client} plays the card against our listener, and C{openssl
s_server} plays the gateway against our client: an implementation that only
agreed with itself would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Generator
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from bipgw.tls import (
    PskClientOptions,
    PskServerEndpoint,
    PskServerOptions,
    PskServerStats,
    psk_client_endpoint,
    psk_identity,
    psk_server_endpoint,
)
from tests.integration._openssl import OpenSslProcess

pytestmark = pytest.mark.integration

OPENSSL = shutil.which("openssl")
KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
WAIT = 15.0  # seconds for any one step; the whole test is bounded by TestCase.timeout


@implementer(IHandshakeListener)
class _App(Protocol):
    """The application side: records events, echoes or greets on handshake."""

    def __init__(self, echo: bool = True, greeting: bytes = b"") -> None:
        self.echo = echo
        self.greeting = greeting
        self.received = bytearray()
        self.handshook: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.line: Deferred[bytes] = Deferred()
        self.identity: bytes | None = None
        self.cipher: str | None = None

    def handshakeCompleted(self) -> None:
        self.identity = psk_identity(self.transport)
        self.cipher = self.transport.getHandle().get_cipher_name()
        if self.greeting:
            self.transport.write(self.greeting)
        self.handshook.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\n" in self.received and not self.line.called:
            self.line.callback(bytes(self.received))
        if self.echo:
            self.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        # A Failure passed to callback() would turn into an errback; keep it aside.
        self.reason = reason
        self.lost.callback(None)


class _AppFactory(Factory):
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.built: Deferred[_App] = Deferred()

    def buildProtocol(self, addr: object) -> _App:
        app = _App(**self.kwargs)
        app.factory = self
        if not self.built.called:
            self.built.callback(app)
        return app


class _Recorder(ProtocolWrapper):
    """Sits under the TLS layer and keeps every byte it sends."""

    def write(self, data: bytes) -> None:
        self.factory.sent += data
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))


class _RecordingEndpoint:
    """A TCP endpoint whose connections record the raw TLS bytes sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.factory: WrappingFactory | None = None

    def listen(self, factory: Any) -> Any:
        self.factory = WrappingFactory(factory)
        self.factory.protocol = _Recorder
        self.factory.sent = bytearray()  # type: ignore[attr-defined]
        return self.inner.listen(self.factory)


def _application_records(data: bytes) -> list[int]:
    """Lengths of the application_data records in a server's TLS byte stream."""
    lengths = []
    while len(data) >= 5:
        kind, _, length = struct.unpack("!BHH", data[:5])
        if kind == 23:
            lengths.append(length)
        data = data[5 + length :]
    return lengths


class _Base(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if OPENSSL is None:
            raise self.skipTest("the openssl command line tool is not installed")
        from twisted.internet import reactor

        self.reactor = reactor

    def spawn(self, *args: str) -> OpenSslProcess:
        tool = OpenSslProcess(self.reactor, wait=WAIT, flags=0)
        assert OPENSSL is not None
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "OPENSSL_CONF")}
        self.reactor.spawnProcess(tool, OPENSSL, [OPENSSL, *args], env=env)
        self.addCleanup(tool.stop)
        return tool

    @inlineCallbacks
    def listen(self, options: PskServerOptions, endpoint: Any = None, **app: Any) -> Any:
        """Listen on an ephemeral 127.0.0.1 port; return (port number, app factory)."""
        factory = _AppFactory(**app)
        if endpoint is None:
            endpoint = psk_server_endpoint(self.reactor, "tcp:0:interface=127.0.0.1", options)
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port, factory


class OpenSSLClientTests(_Base):
    """openssl s_client, as the card, against our TLS-PSK listener."""

    def s_client(
        self, port: int, key: bytes, *extra: str, identity: str = "card-1"
    ) -> OpenSslProcess:
        return self.spawn(
            "s_client", "-brief", "-tls1_2", "-psk", key.hex(), "-psk_identity", identity,
            "-connect", f"127.0.0.1:{port}", *extra,
        )  # fmt: skip

    @inlineCallbacks
    def test_handshakeAndEcho(self) -> Generator[Deferred[Any], Any, None]:
        """s_client completes the handshake with PSK-AES128-CBC-SHA256; data echoes."""
        options = PskServerOptions({b"card-1": KEY}.get)
        port, factory = yield self.listen(options)
        tool = self.s_client(port, KEY)
        app = yield factory.built
        yield app.handshook.addTimeout(WAIT, self.reactor)
        tool.transport.write(b"ping from card\n")
        yield tool.wait_for(rb"ping from card\n")
        tool.transport.closeStdin()
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        yield app.lost.addTimeout(WAIT, self.reactor)
        self.assertEqual(code, 0, tool.output.decode(errors="replace"))
        self.assertIn(b"Ciphersuite: PSK-AES128-CBC-SHA256", tool.output)
        self.assertIn(b"Protocol version: TLSv1.2", tool.output)
        self.assertEqual(app.cipher, "PSK-AES128-CBC-SHA256")
        self.assertEqual(app.identity, b"card-1")
        self.assertEqual(bytes(app.received), b"ping from card\n")
        self.assertEqual(options.stats, PskServerStats(completed=1))

    @inlineCallbacks
    def test_wrongKey(self) -> Generator[Deferred[Any], Any, None]:
        """A wrong -psk fails the handshake on both sides and is counted."""
        options = PskServerOptions({b"card-1": KEY}.get)
        port, factory = yield self.listen(options)
        tool = self.s_client(port, OTHER_KEY)
        app = yield factory.built
        yield app.lost.addTimeout(WAIT, self.reactor)
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        self.assertNotEqual(code, 0)
        assert app.reason is not None
        self.assertIsInstance(app.reason.value, SSL.Error)
        self.assertFalse(app.handshook.called)
        self.assertIn(b"alert", tool.output)
        self.assertEqual(options.stats, PskServerStats(key_mismatch=1))

    @inlineCallbacks
    def test_unknownIdentity(self) -> Generator[Deferred[Any], Any, None]:
        """An identity the lookup does not know is refused with unknown_psk_identity."""
        options = PskServerOptions({b"card-1": KEY}.get)
        port, factory = yield self.listen(options)
        tool = self.s_client(port, KEY, identity="card-9")
        app = yield factory.built
        yield app.lost.addTimeout(WAIT, self.reactor)
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        self.assertNotEqual(code, 0)
        self.assertIn(b"unknown psk identity", tool.output)
        self.assertEqual(options.stats, PskServerStats(unknown_identity=1))

    @inlineCallbacks
    def _bulk(self, *extra: str) -> Generator[Deferred[Any], Any, list[int]]:
        """Send 2000 bytes after the handshake; return the record lengths used."""
        payload = b"x" * 2000 + b"\n"
        recorder = _RecordingEndpoint(TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1"))
        options = PskServerOptions({b"card-1": KEY}.get)
        endpoint = PskServerEndpoint(recorder, options, self.reactor)
        port, factory = yield self.listen(options, endpoint, echo=False, greeting=payload)
        tool = self.s_client(port, KEY, *extra)
        yield tool.wait_for(b"x{2000}\n")
        app = yield factory.built
        tool.transport.closeStdin()
        yield tool.ended.addTimeout(WAIT, self.reactor)
        yield app.lost.addTimeout(WAIT, self.reactor)
        assert recorder.factory is not None
        return _application_records(bytes(recorder.factory.sent))  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_maxFragmentLength(self) -> Generator[Deferred[Any], Any, None]:
        """When the client asks for 512-byte fragments, no record carries more.

        An AES128-CBC-SHA256 record of 512 plaintext bytes is at most
        16 (IV) + 512 + 32 (MAC) + 16 (padding) = 576 bytes.
        """
        limited = yield self._bulk("-maxfraglen", "512")
        self.assertGreaterEqual(len(limited), 4)
        self.assertLessEqual(max(limited), 576)
        unlimited = yield self._bulk()
        self.assertGreater(max(unlimited), 2000)


class OpenSSLServerTests(_Base):
    """Our TLS-PSK client, as the card, against openssl s_server."""

    @inlineCallbacks
    def connect(self, key: bytes) -> Generator[Deferred[Any], Any, tuple[OpenSslProcess, _App]]:
        tool = self.spawn(
            "s_server", "-tls1_2", "-nocert", "-psk", KEY.hex(), "-psk_identity", "card-1",
            "-accept", "127.0.0.1:0", "-naccept", "1", "-rev",
        )  # fmt: skip
        found = yield tool.wait_for(rb"ACCEPT 127\.0\.0\.1:(\d+)")
        endpoint = psk_client_endpoint(
            self.reactor, f"tcp:host=127.0.0.1:port={int(found.group(1))}",
            PskClientOptions(b"card-1", key),
        )  # fmt: skip
        app = yield endpoint.connect(_AppFactory(echo=False))
        return tool, app

    @inlineCallbacks
    def test_handshakeAndData(self) -> Generator[Deferred[Any], Any, None]:
        """The handshake completes with our first suite and s_server's reply arrives."""
        tool, app = yield self.connect(KEY)
        yield app.handshook.addTimeout(WAIT, self.reactor)
        app.transport.write(b"hello gateway\n")
        yield tool.wait_for(b"CONNECTION ESTABLISHED")
        yield app.line.addTimeout(WAIT, self.reactor)
        app.transport.loseConnection()
        yield app.lost.addTimeout(WAIT, self.reactor)
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        self.assertEqual(bytes(app.received), b"yawetag olleh\n")
        self.assertEqual(app.cipher, "PSK-AES128-CBC-SHA256")
        self.assertEqual(app.identity, b"card-1")
        self.assertIn(b"Ciphersuite: PSK-AES128-CBC-SHA256", tool.output)
        self.assertEqual(code, 0, tool.output.decode(errors="replace"))

    @inlineCallbacks
    def test_wrongKey(self) -> Generator[Deferred[Any], Any, None]:
        """s_server rejects our wrong key; our side sees a TLS error, never a handshake."""
        tool, app = yield self.connect(OTHER_KEY)
        yield app.lost.addTimeout(WAIT, self.reactor)
        yield tool.stop()
        assert app.reason is not None
        self.assertIsInstance(app.reason.value, SSL.Error)
        self.assertFalse(app.handshook.called)
