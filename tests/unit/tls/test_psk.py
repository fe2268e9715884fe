"""Tests for TLS-PSK connection creators, handshaking in memory (no sockets).

Both ends run OpenSSL through Twisted's TLSMemoryBIOFactory over an iosim
pump, as Twisted's own C{protocols/test/test_tls.py} does; the server is also
fed the ClientHello a real SCP81 card sent (public vector), byte for byte.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL
from OpenSSL._util import lib
from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import TLSVersion
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementedBy, implementer, providedBy

import bipgw.tls as tls
from bipgw.tls import (
    DEFAULT_CIPHERS,
    PskClientOptions,
    PskServerEndpoint,
    PskServerOptions,
    PskUnavailableError,
    TlsConfigError,
    _binding,
    _policy,
    check_binding,
    psk_client_endpoint,
    psk_identity,
    psk_server_endpoint,
)
from bipgw.tls._binding import _REQUIRED_SYMBOLS
from bipgw.tls._endpoint import TlsServerFactory, TlsServerProtocol
from tests import vectors

KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


@implementer(IHandshakeListener)
class _Peer(Protocol):
    """Records what the application layer of one side sees."""

    echo = False

    def __init__(self) -> None:
        self.received = bytearray()
        self.handshook = False
        self.lost: Failure | None = None
        self.identity_at_loss: bytes | None = None

    def handshakeCompleted(self) -> None:
        self.handshook = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.echo:
            self.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason
        self.identity_at_loss = psk_identity(self.transport)


class _Echo(_Peer):
    echo = True


class _Keys:
    """A key lookup that records the identities it was asked about."""

    def __init__(self, keys: dict[bytes, bytes]) -> None:
        self.keys = keys
        self.asked: list[bytes] = []

    def __call__(self, identity: bytes) -> bytes | None:
        self.asked.append(identity)
        return self.keys.get(identity)


class _Link:
    """One in-memory TLS connection: the TLS transports, app protocols, pump."""

    def __init__(self, server: PskServerOptions, client: PskClientOptions, clock: object) -> None:
        # The server side as the gateway's listener builds it (PskServerEndpoint).
        server_factory = TlsServerFactory(server, False, Factory.forProtocol(_Echo), clock=clock)
        client_factory = TLSMemoryBIOFactory(client, True, Factory.forProtocol(_Peer), clock=clock)
        self.client_tls, self.server_tls, self.pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            greet=False,
            clock=clock,
        )
        self.client: _Peer = self.client_tls.wrappedProtocol
        self.server: _Peer = self.server_tls.wrappedProtocol


class _TestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def link(self, server: PskServerOptions, client: PskClientOptions) -> _Link:
        link = _Link(server, client, self.clock)
        link.pump.flush()
        return link

    def logText(self) -> str:
        return "\n".join(formatEvent(e) + str(e.get("log_failure", "")) for e in self.events)

    def assertRefused(self, link: _Link, message: str) -> None:
        """Both sides lost the connection with a TLS error before any data."""
        for side in (link.client, link.server):
            self.assertFalse(side.handshook)
            assert side.lost is not None
            self.assertIsInstance(side.lost.value, SSL.Error)
        self.assertIn(message, str(link.client.lost.value))  # type: ignore[union-attr]


class BindingTests(SynchronousTestCase):
    """The private OpenSSL hooks TLS-PSK relies on are present, or we say so."""

    def test_bindingSymbolsPresent(self) -> None:
        """The binding still has the PSK calls; an upgrade that drops them fails here."""
        missing = [name for name in _REQUIRED_SYMBOLS if not hasattr(lib, name)]
        self.assertEqual(
            missing,
            [],
            f"OpenSSL binding lost {missing}: TLS-PSK (SCP81) cannot work with this "
            "cryptography/pyOpenSSL; pin the previous versions",
        )
        check_binding()

    def test_missingSymbolsNamed(self) -> None:
        """Without the hooks, the error names each one and the library versions."""
        with self.assertRaises(PskUnavailableError) as ctx:
            check_binding(lib=object())
        text = str(ctx.exception)
        for name in _REQUIRED_SYMBOLS:
            self.assertIn(name, text)
        self.assertIn("cryptography", text)

    def test_bindingInOnePlace(self) -> None:
        """Only L{bipgw.tls._binding} imports OpenSSL's private binding, so an
        upgrade that changes it is fixed in one module."""
        import ast
        from pathlib import Path

        root = Path(_binding.__file__).resolve().parents[2]
        users = {
            str(path.relative_to(root))
            for package in ("bipgw", "simcard")
            for path in (root / package).rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("OpenSSL._util")
        }
        self.assertEqual(users, {"bipgw/tls/_binding.py"})

    def test_exports(self) -> None:
        """Every public name is exported from the package, as the same object."""
        from bipgw.tls import _client, _endpoint, _listening, _server

        modules = (_binding, _client, _endpoint, _listening, _policy, _server)
        for name in tls.__all__:
            (module,) = [m for m in modules if name in m.__all__]
            self.assertIs(getattr(tls, name), getattr(module, name))


class HandshakeTests(_TestCase):
    """A PSK client and server complete (or refuse) the handshake in memory."""

    def test_handshakeAndEcho(self) -> None:
        """With the right key both sides finish, the default suite wins, data flows."""
        keys = _Keys({b"card-1": KEY})
        server = PskServerOptions(keys)
        link = self.link(server, PskClientOptions(b"card-1", KEY))
        self.assertTrue(link.client.handshook and link.server.handshook)
        connection = link.server_tls.getHandle()
        self.assertEqual(connection.get_cipher_name(), "PSK-AES128-CBC-SHA256")
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.2")
        link.client_tls.write(b"hello card")
        link.pump.flush()
        self.assertEqual(bytes(link.client.received), b"hello card")
        self.assertEqual(keys.asked, [b"card-1"])
        self.assertEqual(psk_identity(link.server_tls), b"card-1")
        self.assertEqual(psk_identity(connection), b"card-1")
        self.assertEqual(psk_identity(link.client_tls), b"card-1")
        self.assertEqual(server.stats, tls.PskServerStats(completed=1))

    def test_serverOrderWins(self) -> None:
        """The server's suite order decides, whatever order the client offers."""
        server = PskServerOptions(_Keys({b"c": KEY}))
        client = PskClientOptions(
            b"c", KEY, ciphers="PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA:PSK-AES128-CBC-SHA256"
        )
        link = self.link(server, client)
        self.assertEqual(link.server_tls.getHandle().get_cipher_name(), "PSK-AES128-CBC-SHA256")

    def test_identityHintSent(self) -> None:
        """A server identity hint does not disturb a client that ignores it."""
        server = PskServerOptions(_Keys({b"c": KEY}), identity_hint=b"bipgw")
        link = self.link(server, PskClientOptions(b"c", KEY))
        self.assertTrue(link.client.handshook)

    def test_wrongKey(self) -> None:
        """A key mismatch fails on both sides, counts, and reports no identity."""
        server = PskServerOptions(_Keys({b"card-1": KEY}))
        link = self.link(server, PskClientOptions(b"card-1", OTHER_KEY))
        self.assertRefused(link, "alert")
        self.assertIsNone(link.server.identity_at_loss)
        self.assertEqual(server.stats, tls.PskServerStats(key_mismatch=1))
        self.assertIn("key mismatch for identity b'card-1'", self.logText())

    def test_unknownIdentity(self) -> None:
        """An identity the lookup does not know is refused and counted."""
        keys = _Keys({b"card-1": KEY})
        server = PskServerOptions(keys)
        link = self.link(server, PskClientOptions(b"card-2", KEY))
        self.assertRefused(link, "unknown psk identity")
        self.assertEqual(keys.asked, [b"card-2"])
        self.assertEqual(server.stats, tls.PskServerStats(unknown_identity=1))
        self.assertIn("unknown PSK identity b'card-2'", self.logText())

    def test_lookupRaises(self) -> None:
        """A failing lookup refuses the handshake, is logged and counted."""

        def lookup(identity: bytes) -> bytes | None:
            raise RuntimeError("key store offline")

        server = PskServerOptions(lookup)
        link = self.link(server, PskClientOptions(b"card-1", KEY))
        self.assertRefused(link, "alert")
        self.assertEqual(server.stats, tls.PskServerStats(lookup_error=1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("lookup failed for identity b'card-1'", self.logText())

    def test_lookupReturnsUnusableKey(self) -> None:
        """A key of the wrong type or size is refused, and the log never shows it."""
        for bad in ["0123456789abcdef", b"", b"k" * 4096]:
            with self.subTest(kind=type(bad).__name__, length=len(bad)):
                server = PskServerOptions(lambda identity, bad=bad: bad)  # type: ignore[misc]
                link = self.link(server, PskClientOptions(b"card-1", KEY))
                self.assertRefused(link, "alert")
                self.assertEqual(server.stats, tls.PskServerStats(lookup_error=1))
        text = self.logText()
        self.assertIn("returned str, not 1 to", text)
        self.assertIn("returned 0 bytes, not 1 to", text)
        self.assertIn("returned 4096 bytes, not 1 to", text)
        self.assertNotIn("0123456789abcdef", text)
        self.assertNotIn("kkkk", text)

    def test_keysNeverShown(self) -> None:
        """Neither logs, reprs nor configuration errors contain key bytes."""
        server = PskServerOptions(_Keys({b"card-1": KEY}))
        self.link(server, PskClientOptions(b"card-1", KEY))
        self.link(server, PskClientOptions(b"card-1", OTHER_KEY))
        client = PskClientOptions(b"card-1", KEY)
        with self.assertRaises(TlsConfigError) as ctx:
            PskClientOptions(b"card-1", KEY * 20)
        shown = "\n".join([self.logText(), repr(server), repr(client), str(ctx.exception)])
        self.assertIn("card-1", shown)
        for key in (KEY, OTHER_KEY):
            for form in (key.hex(), key.hex().upper(), repr(key)[2:-1], key.decode("latin-1")):
                self.assertNotIn(form, shown)

    def test_twoConcurrentConnections(self) -> None:
        """Interleaved handshakes each report their own client's identity."""
        keys = _Keys({b"card-a": KEY, b"card-b": OTHER_KEY})
        server = PskServerOptions(keys)
        a = _Link(server, PskClientOptions(b"card-a", KEY), self.clock)
        b = _Link(server, PskClientOptions(b"card-b", OTHER_KEY), self.clock)
        pumps: list[IOPump] = [a.pump, b.pump]
        while any([p.pump() for p in pumps]):
            pass
        self.assertEqual(sorted(keys.asked), [b"card-a", b"card-b"])
        self.assertEqual(psk_identity(a.server_tls), b"card-a")
        self.assertEqual(psk_identity(b.server_tls), b"card-b")
        self.assertEqual(server.stats.completed, 2)

    def test_noResumption(self) -> None:
        """A client offering a previous session still gets a full PSK handshake.

        Resumption would skip the key lookup and leave no identity to report.
        """
        keys = _Keys({b"card-1": KEY})
        server = PskServerOptions(keys)

        class Resuming(PskClientOptions):
            session: SSL.Session | None = None

            def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
                connection = super().clientConnectionForTLS(tlsProtocol)
                if self.session is not None:
                    connection.set_session(self.session)
                return connection

        client = Resuming(b"card-1", KEY)
        first = self.link(server, client)
        client.session = first.client_tls.getHandle().get_session()
        self.assertIsNotNone(client.session)
        second = self.link(server, client)
        self.assertTrue(second.server.handshook)
        self.assertEqual(keys.asked, [b"card-1", b"card-1"])
        self.assertEqual(psk_identity(second.server_tls), b"card-1")

    def test_noSharedSuite(self) -> None:
        """Disjoint suite lists fail on both sides and count as other failures."""
        server = PskServerOptions(_Keys({b"c": KEY}), ciphers="PSK-AES128-GCM-SHA256")
        link = self.link(server, PskClientOptions(b"c", KEY, ciphers="PSK-AES128-CBC-SHA"))
        self.assertRefused(link, "alert")
        self.assertEqual(server.stats, tls.PskServerStats(other_failure=1))

    @given(
        identity=st.lists(st.integers(1, 255), min_size=1, max_size=128).map(bytes),
        key=st.binary(min_size=1, max_size=64),
        flip=st.integers(min_value=0, max_value=63),
    )
    def test_anyIdentityAndKey(self, identity: bytes, key: bytes, flip: int) -> None:
        """Any identity and key authenticate, and one changed key bit never does."""
        keys = _Keys({identity: key})
        server = PskServerOptions(keys)
        good = _Link(server, PskClientOptions(identity, key), self.clock)
        good.pump.flush()
        self.assertEqual(psk_identity(good.server_tls), identity)
        wrong = bytearray(key)
        wrong[flip % len(key)] ^= 1 << (flip % 8)
        bad = _Link(server, PskClientOptions(identity, bytes(wrong)), self.clock)
        bad.pump.flush()
        self.assertFalse(bad.server.handshook)
        self.assertEqual(server.stats, tls.PskServerStats(completed=1, key_mismatch=1))


class LifetimeTests(SynchronousTestCase):
    """Connections outlive the options that made them without crashing OpenSSL."""

    def test_optionsDroppedMidHandshake(self) -> None:
        """The PSK callbacks stay alive while any connection may still call them."""

        def connections() -> tuple[SSL.Connection, SSL.Connection]:
            server = PskServerOptions(_Keys({b"card-1": KEY})).serverConnectionForTLS(None)
            client = PskClientOptions(b"card-1", KEY).clientConnectionForTLS(None)
            return server, client

        server, client = connections()
        gc.collect()
        server.set_accept_state()
        client.set_connect_state()
        done: set[SSL.Connection] = set()
        for _ in range(10):
            for side, peer in ((client, server), (server, client)):
                try:
                    side.do_handshake()
                    done.add(side)
                except SSL.WantReadError:
                    pass
                try:
                    peer.bio_write(side.bio_read(65536))
                except SSL.WantReadError:
                    pass
        self.assertEqual(done, {server, client})
        self.assertEqual(psk_identity(server), b"card-1")


class SuiteAndVersionTests(_TestCase):
    """Weak suites and old versions only by explicit choice; bad settings named."""

    def test_weakSuitesRefused(self) -> None:
        """NULL and 3DES suites, named or via an alias, need allow_weak."""
        for ciphers, named in [
            ("PSK-NULL-SHA256", "PSK-NULL-SHA256"),
            ("PSK-AES128-CBC-SHA256:PSK-3DES-EDE-CBC-SHA", "PSK-3DES-EDE-CBC-SHA"),
            ("PSK", "PSK-NULL-SHA"),
        ]:
            for make in (
                lambda c: PskServerOptions(_Keys({}), ciphers=c),
                lambda c: PskClientOptions(b"c", KEY, ciphers=c),
            ):
                with self.subTest(ciphers=ciphers), self.assertRaises(ValueError) as ctx:
                    make(ciphers)
                self.assertIn(named, str(ctx.exception))
                self.assertIn("allow_weak", str(ctx.exception))

    def test_nullSuiteWithAllowWeak(self) -> None:
        """With allow_weak on both sides a NULL suite is negotiated and carries data."""
        server = PskServerOptions(_Keys({b"c": KEY}), ciphers="PSK-NULL-SHA256", allow_weak=True)
        link = self.link(
            server, PskClientOptions(b"c", KEY, ciphers="PSK-NULL-SHA256", allow_weak=True)
        )
        self.assertEqual(link.server_tls.getHandle().get_cipher_name(), "PSK-NULL-SHA256")
        link.client_tls.write(b"clear")
        link.pump.flush()
        self.assertEqual(bytes(link.client.received), b"clear")

    def test_tripleDesWithAllowWeak(self) -> None:
        """3DES with allow_weak works where OpenSSL still has it, else is named as missing."""
        probe = SSL.Context(SSL.TLS_METHOD)
        try:
            probe.set_cipher_list(b"PSK-3DES-EDE-CBC-SHA:@SECLEVEL=0")
        except SSL.Error:
            with self.assertRaises(TlsConfigError) as ctx:
                PskServerOptions(_Keys({}), ciphers="PSK-3DES-EDE-CBC-SHA", allow_weak=True)
            self.assertIn("'PSK-3DES-EDE-CBC-SHA' matches no suite", str(ctx.exception))
            return
        opts = {"ciphers": "PSK-3DES-EDE-CBC-SHA", "allow_weak": True}
        link = self.link(
            PskServerOptions(_Keys({b"c": KEY}), **opts), PskClientOptions(b"c", KEY, **opts)
        )
        self.assertEqual(link.server_tls.getHandle().get_cipher_name(), "PSK-3DES-EDE-CBC-SHA")

    def test_strongSuitesUnaffectedByAllowWeak(self) -> None:
        """allow_weak alone changes nothing for the default strong suites."""
        server = PskServerOptions(_Keys({b"c": KEY}), allow_weak=True)
        self.assertEqual(server.suites, tuple(DEFAULT_CIPHERS.split(":")))
        link = self.link(server, PskClientOptions(b"c", KEY))
        self.assertEqual(link.server_tls.getHandle().get_cipher_name(), "PSK-AES128-CBC-SHA256")

    def test_badCipherStrings(self) -> None:
        """Typos, non-PSK suites, empty strings and security levels are refused by name."""
        for ciphers, message in [
            ("PSK-AES128-CBC-SHA257", "'PSK-AES128-CBC-SHA257' matches no suite"),
            ("AES128-SHA", "only plain PSK"),
            ("ECDHE-PSK-AES128-CBC-SHA256", "only plain PSK"),
            ("", "not an OpenSSL cipher string"),
            ("PSK-AES128-CBC-SHA:@SECLEVEL=0", "security level"),
            ("PSK-AES128-CBC-SHA:!PSK", "selects no suite"),
        ]:
            with self.subTest(ciphers=ciphers), self.assertRaises(TlsConfigError) as ctx:
                PskServerOptions(_Keys({}), ciphers=ciphers)
            self.assertIn(message, str(ctx.exception))

    def test_versionSettings(self) -> None:
        """Only TLS 1.0-1.2 in a sane order are accepted."""
        for kwargs, message in [
            ({"max_version": TLSVersion.TLSv1_3}, "max_version"),
            ({"min_version": TLSVersion.SSLv3}, "min_version"),
            ({"min_version": TLSVersion.TLSv1_2, "max_version": TLSVersion.TLSv1_1}, "above"),
        ]:
            with self.subTest(kwargs=kwargs), self.assertRaises(TlsConfigError) as ctx:
                PskServerOptions(_Keys({}), **kwargs)
            self.assertIn(message, str(ctx.exception))

    def test_tls12OnlyByDefault(self) -> None:
        """A TLS 1.0 client is turned away by a default server."""
        server = PskServerOptions(_Keys({b"c": KEY}))
        old = PskClientOptions(
            b"c", KEY, min_version=TLSVersion.TLSv1_0, max_version=TLSVersion.TLSv1_0
        )
        link = self.link(server, old)
        self.assertRefused(link, "alert")
        self.assertEqual(server.stats, tls.PskServerStats(other_failure=1))

    def test_olderVersionsWhenConfigured(self) -> None:
        """An explicit min_version of 1.0 or 1.1 lets such a card in, with AES-CBC-SHA."""
        server = PskServerOptions(_Keys({b"c": KEY}), min_version=TLSVersion.TLSv1_0)
        for version, name in [(TLSVersion.TLSv1_0, "TLSv1"), (TLSVersion.TLSv1_1, "TLSv1.1")]:
            client = PskClientOptions(
                b"c", KEY, ciphers="PSK-AES128-CBC-SHA", min_version=version, max_version=version
            )
            link = self.link(server, client)
            handle = link.server_tls.getHandle()
            self.assertEqual(handle.get_protocol_version_name(), name)
            self.assertEqual(handle.get_cipher_name(), "PSK-AES128-CBC-SHA")

    def test_identityAndKeyValidation(self) -> None:
        """Identities, hints and keys outside what OpenSSL can carry are refused early."""
        for make in [
            lambda: PskClientOptions(b"", KEY),
            lambda: PskClientOptions(b"x" * 129, KEY),
            lambda: PskClientOptions(b"a\0b", KEY),
            lambda: PskClientOptions("card", KEY),  # type: ignore[arg-type]
            lambda: PskClientOptions(b"card", b""),
            lambda: PskClientOptions(b"card", KEY.hex()),  # type: ignore[arg-type]
            lambda: PskServerOptions(_Keys({}), identity_hint=b"h" * 129),
        ]:
            self.assertRaises(TlsConfigError, make)
        self.assertEqual(PskClientOptions(b"x" * 128, KEY).identity, b"x" * 128)


class _CountingSSL:
    """C{OpenSSL.SSL} as C{bipgw.tls._binding} and C{_policy} see it, counting the contexts made.

    A stand-in module rather than a Context subclass, so that pyOpenSSL's own
    C{isinstance} checks still see the real class.
    """

    def __init__(self) -> None:
        self.contexts = 0

    def Context(self, method: int) -> SSL.Context:
        self.contexts += 1
        return SSL.Context(method)

    def __getattr__(self, name: str) -> object:
        return getattr(SSL, name)


class PolicyCacheTests(_TestCase):
    """Cipher resolution is done once per setting, one context per options object."""

    def setUp(self) -> None:
        super().setUp()
        _policy.make_policy.cache_clear()
        self.addCleanup(_policy.make_policy.cache_clear)
        self.spy = _CountingSSL()
        # Contexts are made by the binding check and by the policy's probes.
        self.patch(_binding, "SSL", self.spy)
        self.patch(_policy, "SSL", self.spy)

    def made(self, build: Callable[[], object]) -> int:
        """How many SSL contexts C{build} creates."""
        before = self.spy.contexts
        build()
        return self.spy.contexts - before

    def test_settingsResolvedOnce(self) -> None:
        """A card's second session builds no context, where the first probed OpenSSL.

        Client options with the same policy share one context (a fleet makes
        one options object per session); a server builds its own.
        """
        from bipgw.tls import _client

        self.patch(_client, "_SHARED", {})
        self.patch(_binding, "_binding_checked", False)
        first = self.made(lambda: PskClientOptions(b"card-1", KEY))
        self.assertGreater(first, 2)
        self.assertEqual(self.made(lambda: PskClientOptions(b"card-2", OTHER_KEY)), 0)
        self.assertEqual(self.made(lambda: PskServerOptions(_Keys({}))), 1)
        self.assertEqual(_policy.make_policy.cache_info().hits, 1)
        server = PskServerOptions(_Keys({b"card-2": KEY}))
        client = PskClientOptions(b"card-2", KEY)
        self.assertEqual(client.suites, tuple(DEFAULT_CIPHERS.split(":")))
        link = self.link(server, client)
        self.assertEqual(psk_identity(link.server_tls), b"card-2")
        self.assertEqual(link.server_tls.getHandle().get_cipher_name(), "PSK-AES128-CBC-SHA256")

    def test_sharedContextKeepsEachCardsKey(self) -> None:
        """Clients sharing a context each present their own identity and key."""
        keys = _Keys({b"card-1": KEY, b"card-2": OTHER_KEY})
        server = PskServerOptions(keys)
        one, two = PskClientOptions(b"card-1", KEY), PskClientOptions(b"card-2", OTHER_KEY)
        wrong = PskClientOptions(b"card-1", OTHER_KEY)
        first, second = self.link(server, one), self.link(server, two)
        self.assertEqual(psk_identity(first.server_tls), b"card-1")
        self.assertEqual(psk_identity(second.server_tls), b"card-2")
        self.assertRefused(self.link(server, wrong), "")
        self.assertEqual(psk_identity(self.link(server, two).server_tls), b"card-2")
        self.assertEqual(server.stats.completed, 3)
        self.assertEqual(server.stats.key_mismatch, 1)

    def test_bindingCheckedOnce(self) -> None:
        """A passed binding check is not repeated; a stand-in binding is still checked."""
        self.patch(_binding, "_binding_checked", False)
        self.assertEqual(self.made(check_binding), 1)
        self.assertEqual(self.made(check_binding), 0)
        self.assertRaises(PskUnavailableError, check_binding, object())
        self.assertRaises(PskUnavailableError, check_binding, object())

    def test_connectionsShareTheOptionsContext(self) -> None:
        """Connections reuse their options' context instead of building one each."""
        server = PskServerOptions(_Keys({b"card-1": KEY}))
        client = PskClientOptions(b"card-1", KEY)
        for make in (server.serverConnectionForTLS, client.clientConnectionForTLS):
            before = self.spy.contexts
            first, second = make(None), make(None)
            self.assertEqual(self.spy.contexts, before)
            self.assertIs(first.get_context(), second.get_context())
        self.assertIsNot(
            server.serverConnectionForTLS(None).get_context(),
            client.clientConnectionForTLS(None).get_context(),
        )

    def test_cacheKeyedOnEverySetting(self) -> None:
        """A cached policy is never served for a different allow_weak or version."""
        PskServerOptions(_Keys({}), ciphers="PSK-NULL-SHA256", allow_weak=True)
        with self.assertRaises(TlsConfigError):
            PskServerOptions(_Keys({}), ciphers="PSK-NULL-SHA256")
        strict = PskServerOptions(_Keys({b"c": KEY}))
        lenient = PskServerOptions(_Keys({b"c": KEY}), min_version=TLSVersion.TLSv1_0)
        for server, handshook in ((strict, False), (lenient, True)):
            with self.subTest(handshook=handshook):
                old_card = PskClientOptions(
                    b"c",
                    KEY,
                    ciphers="PSK-AES128-CBC-SHA",
                    min_version=TLSVersion.TLSv1_0,
                    max_version=TLSVersion.TLSv1_0,
                )
                self.assertEqual(self.link(server, old_card).server.handshook, handshook)

    def test_refusalsNotCachedAndCacheBounded(self) -> None:
        """Bad settings are refused every time; many distinct settings keep a bounded cache."""
        for _ in range(2):
            self.assertRaises(TlsConfigError, PskClientOptions, b"c", KEY, ciphers="AES128-SHA")
        self.assertEqual(_policy.make_policy.cache_info().currsize, 0)
        for count in range(1, _policy._POLICY_CACHE_SIZE + 8):
            ciphers = ":".join(["PSK-AES128-CBC-SHA"] * count)
            self.assertEqual(
                PskClientOptions(b"c", KEY, ciphers=ciphers).suites[0], "PSK-AES128-CBC-SHA"
            )
        self.assertEqual(_policy.make_policy.cache_info().currsize, _policy._POLICY_CACHE_SIZE)


def _records(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split TLS records: (content type, version, fragment)."""
    out = []
    while data:
        kind, version, length = struct.unpack("!BHH", data[:5])
        out.append((kind, version, data[5 : 5 + length]))
        data = data[5 + length :]
    return out


def _handshake_messages(records: list[tuple[int, int, bytes]]) -> list[tuple[int, bytes]]:
    body = b"".join(fragment for kind, _, fragment in records if kind == 22)
    out = []
    while body:
        kind, length = body[0], int.from_bytes(body[1:4], "big")
        out.append((kind, body[4 : 4 + length]))
        body = body[4 + length :]
    return out


class CardClientHelloTests(SynchronousTestCase):
    """The server answers the ClientHello a real SCP81 card sent (public vector)."""

    def answer(self, server: PskServerOptions) -> list[tuple[int, bytes]]:
        vector = vectors.by_name(
            "cat_bip_tlvs",
            "Channel data (TLS ClientHello, 65 bytes) sent by a real SCP81 card in SEND DATA",
        )
        connection = server.serverConnectionForTLS(None)
        connection.set_accept_state()
        connection.bio_write(bytes.fromhex(vector["channel_data"]))
        self.assertRaises(SSL.WantReadError, connection.do_handshake)
        records = _records(connection.bio_read(65536))
        self.assertEqual({version for _, version, _ in records}, {0x0303})
        return _handshake_messages(records)

    def test_suiteAndMaxFragmentLength(self) -> None:
        """TLS 1.2, PSK-AES128-CBC-SHA256 (00AE), and the 512-byte fragment limit echoed."""
        messages = self.answer(PskServerOptions(_Keys({})))
        self.assertEqual([kind for kind, _ in messages], [2, 14])  # ServerHello, Done
        hello = messages[0][1]
        self.assertEqual(hello[:2], b"\x03\x03")
        session_id_length = hello[34]
        rest = hello[35 + session_id_length :]
        self.assertEqual(rest[:2], b"\x00\xae")
        self.assertEqual(rest[2], 0)  # null compression
        extensions = rest[5 : 5 + int.from_bytes(rest[3:5], "big")]
        self.assertEqual(extensions, bytes.fromhex("0001000101"))

    def test_identityHintInServerKeyExchange(self) -> None:
        """A configured hint goes to the card in a PSK ServerKeyExchange."""
        messages = self.answer(PskServerOptions(_Keys({}), identity_hint=b"bipgw-1"))
        self.assertEqual([kind for kind, _ in messages], [2, 12, 14])
        self.assertEqual(messages[1][1], b"\x00\x07bipgw-1")


class _FakeServerEndpoint:
    def __init__(self) -> None:
        self.factories: list[object] = []

    def listen(self, factory: object) -> object:
        self.factories.append(factory)
        return "port"


class EndpointTests(_TestCase):
    """Endpoint strings gain a TLS-PSK layer that really handshakes."""

    def test_serverEndpointWraps(self) -> None:
        """PskServerEndpoint listens on the wrapped endpoint with a TLS factory."""
        inner = _FakeServerEndpoint()
        app = Factory.forProtocol(_Echo)
        result = PskServerEndpoint(inner, PskServerOptions(_Keys({})), self.clock).listen(app)  # type: ignore[arg-type]
        self.assertEqual(result, "port")
        (factory,) = inner.factories
        assert isinstance(factory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory, app)

    def test_stringEndpointsHandshake(self) -> None:
        """Server and client endpoint strings connect and authenticate end to end."""
        reactor = self.clock
        keys = _Keys({b"card-1": KEY})
        server_endpoint = psk_server_endpoint(reactor, "tcp:8443", PskServerOptions(keys))
        server_endpoint.listen(Factory.forProtocol(_Echo))
        port, server_factory = reactor.tcpServers[0][:2]
        self.assertEqual(port, 8443)
        client_endpoint = psk_client_endpoint(
            reactor, "tcp:host=127.0.0.1:port=8443", PskClientOptions(b"card-1", KEY)
        )
        connected = client_endpoint.connect(Factory.forProtocol(_Peer))
        host, port, client_factory = reactor.tcpClients[0][:3]
        self.assertEqual((host, port), ("127.0.0.1", 8443))
        _, server_tls, pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            greet=False,
            clock=reactor,
        )
        pump.flush()
        client = self.successResultOf(connected)
        self.assertIsInstance(client, _Peer)
        self.assertTrue(client.handshook)
        self.assertEqual(psk_identity(server_tls), b"card-1")
        self.assertEqual(keys.asked, [b"card-1"])


@implementer(*implementedBy(tcp.Server))
class _TcpLikeTransport(StringTransport):
    """A transport declaring what a TCP server connection declares."""


class _Counting(Protocol):
    made = 0

    def makeConnection(self, transport: object) -> None:  # type: ignore[override]
        self.made += 1
        super().makeConnection(transport)  # type: ignore[arg-type]


class ServerProtocolTests(_TestCase):
    """L{TlsServerProtocol} connects as Twisted's TLS protocol does, one redundant step fewer."""

    def connected(self, factory_class: type[TLSMemoryBIOFactory], wrap: bool = True) -> tuple:  # type: ignore[type-arg]
        factory = factory_class(
            PskServerOptions(_Keys({})), False, Factory.forProtocol(_Counting), self.clock
        )
        if wrap:
            protocol = factory.buildProtocol(None)
        else:
            protocol = factory.protocol(factory, _Counting(), _connectWrapped=False)
        transport = _TcpLikeTransport()
        assert protocol is not None
        protocol.makeConnection(transport)
        return factory, protocol, transport

    def test_asTwisteds(self) -> None:
        """Same interfaces, transport, registration, wrapped protocol connected once, no output."""
        for wrap in (True, False):
            stock, ours = (
                self.connected(TLSMemoryBIOFactory, wrap),
                self.connected(TlsServerFactory, wrap),
            )
            (f1, p1, t1), (f2, p2, t2) = stock, ours
            self.assertIsInstance(p2, TlsServerProtocol)
            self.assertIsInstance(p2, BufferingTLSTransport)  # write aggregation kept
            self.assertEqual(list(providedBy(p1)), list(providedBy(p2)))
            if wrap:
                self.assertGreater(len(list(providedBy(p2))), 5)
            self.assertIs(p2.transport, t2)
            self.assertEqual(list(f1.protocols), [p1])
            self.assertEqual(list(f2.protocols), [p2])
            self.assertEqual(p1.wrappedProtocol.made, p2.wrappedProtocol.made)
            self.assertEqual(p2.wrappedProtocol.made, 1 if wrap else 0)
            self.assertEqual(t1.value(), t2.value())  # a server waits for the ClientHello
            for p, t in ((p1, t1), (p2, t2)):
                t.loseConnection()
                p.connectionLost(Failure(ConnectionDone()))

    def test_endpointUsesIt(self) -> None:
        """The gateway's listener (and the bench's reference server) make these protocols."""
        inner = _FakeServerEndpoint()
        PskServerEndpoint(inner, PskServerOptions(_Keys({})), self.clock).listen(  # type: ignore[arg-type]
            Factory.forProtocol(_Echo)
        )
        (factory,) = inner.factories
        self.assertIsInstance(factory, TlsServerFactory)
        self.assertIs(factory.protocol, TlsServerProtocol)  # type: ignore[attr-defined]
