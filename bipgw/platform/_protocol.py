# -*- test-case-name: tests.unit.platform.test_protocol,tests.unit.client.test_tls -*-
"""The platform channel on the wire: a thin protocol, its factory, a listener.

L{PlatformServerProtocol} only moves bytes: it feeds them to a
L{bipgw.codec.platform.FrameDecoder}, hands each frame to its connection's
L{PlatformChannel} and writes the messages the channel sends back as
frames.  Every decision (authentication, sessions, limits, heartbeats) is
the channel's; the one thing decided here is what a connection's TLS
certificate says (L{peer_common_name}).

The channel runs over any stream endpoint.  Business platforms reach it
over TLS with a server certificate: give L{listen} an endpoint string such
as C{ssl:7443:privateKey=key.pem:certKey=cert.pem}, or any endpoint
(C{tcp:}, C{unix:} ...) together with C{tls=} options, which also allow
verifying client certificates (then tenants may authenticate by their CN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    ISSLTransport,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from bipgw.codec.platform import (
    ErrorCode,
    ErrorMessage,
    FrameDecoder,
    FrameError,
    Message,
    encode_frame,
)
from bipgw.core import RateLimitedLog, Tenancy
from bipgw.platform._session import ChannelSettings, PlatformChannel, Send


def peer_common_name(transport: object) -> str | None:
    """The CN of the certificate the TLS peer presented, or C{None}.

    Only meaningful when the listener verifies client certificates (else a
    client presents none); see L{ChannelSettings.certificate_auth}.
    """
    if not ISSLTransport.providedBy(transport):
        return None
    certificate = transport.getPeerCertificate()
    if not isinstance(certificate, crypto.X509):
        return None
    names = certificate.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = names[0].value if len(names) == 1 else None
    return name if isinstance(name, str) and name else None


class PlatformServerProtocol(Protocol):
    """One platform connection: frames in and out, everything else the channel's."""

    _log = Logger()
    factory: PlatformServerFactory

    def __init__(self) -> None:
        self.channel: PlatformChannel | None = None
        self._decoder: FrameDecoder | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeer()
        factory = self.factory
        if len(factory.connections) >= factory.max_connections:
            # Refused here rather than in buildProtocol, which TLS wrapping
            # factories expect to always return a protocol.
            factory.ratelog.warn(
                "platform-too-many-connections",
                "refused platform connection from {peer}: {n} open (the limit)",
                peer=_show(peer),
                n=len(factory.connections),
            )
            self.transport.loseConnection()
            return
        self._decoder = FrameDecoder(factory.settings.max_frame)
        self.channel = factory.channel(
            self._write,
            self._lose,
            peer_name=lambda: self.factory.identify(self.transport),
            peer=_show(peer),
        )
        self.factory.connections.add(self)
        self.channel.connected()

    def dataReceived(self, data: bytes) -> None:
        if self._decoder is None or self.channel is None:
            return  # a refused connection, closing
        try:
            frames = self._decoder.feed(data)
        except FrameError as e:
            self.channel.stream_broken(e)
            return
        for frame in frames:
            self.channel.received(frame)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connections.discard(self)
        if self.channel is not None:
            self.channel.lost(reason.getErrorMessage())
        self.factory.ended()

    def _write(self, message: Message) -> None:
        if self.transport is None:
            return
        limit = self.factory.settings.max_frame
        try:
            frame = encode_frame(message.to_json(), max_frame=limit)
        except FrameError as e:
            # A result too large for the peer's limit: say so instead.
            self._log.error("cannot send a {kind}: {error}", kind=message.TYPE, error=e)
            refusal = ErrorMessage(
                code=ErrorCode.INTERNAL_ERROR,
                message=f"the {message.TYPE} does not fit in a frame: {e}",
                id=getattr(message, "id", None),
                session=getattr(message, "session", None),
            )
            frame = encode_frame(refusal.to_json(), max_frame=limit)
        self.transport.write(frame)

    def _lose(self, why: str) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


def _show(address: IAddress | None) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


class PlatformServerFactory(Factory["PlatformServerProtocol"]):
    """Builds the protocol of every platform connection; they share one tenancy.

    @param tenancy: the engine, the tenant directory, the usage counts and
        rates (share it with the HTTP API so that limits count both doors);
        its clock times authentication, heartbeats and platform timeouts.
    @param settings: the channel's timeouts and limits.
    @param max_connections: connections served at once; more are closed
        as soon as they are made.
    @param identify: the verified CN of a connection's TLS client
        certificate (L{peer_common_name}; a test passes its own).
    @ivar connections: the protocols of the open connections.
    """

    _log = Logger()

    def __init__(
        self,
        tenancy: Tenancy,
        *,
        settings: ChannelSettings | None = None,
        max_connections: int = 1000,
        identify: Any = peer_common_name,
    ) -> None:
        self.tenancy = tenancy
        self.settings = settings or ChannelSettings()
        self.max_connections = max_connections
        self.identify = identify
        self.connections: set[PlatformServerProtocol] = set()
        self._gone: list[Deferred[None]] = []
        # One rate limit for the lines any peer can trigger, on every connection.
        self.ratelog = RateLimitedLog(PlatformChannel._log, tenancy.clock)

    def channel(
        self,
        send: Send,
        disconnect: Callable[[str], object],
        *,
        peer_name: Callable[[], str | None] = lambda: None,
        peer: str = "?",
    ) -> PlatformChannel:
        """The logic for a new connection (see L{PlatformChannel})."""
        return PlatformChannel(
            self.tenancy, self.settings, send, disconnect, peer_name, peer, ratelog=self.ratelog
        )

    def buildProtocol(self, addr: IAddress | None) -> PlatformServerProtocol:
        protocol = PlatformServerProtocol()
        protocol.factory = self
        return protocol

    def when_empty(self) -> Deferred[None]:
        """Fires once no connection is open (at once if none is)."""
        if not self.connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._gone.append(waiter)
        return waiter

    def ended(self) -> None:
        """A connection ended: wake L{when_empty} waiters if it was the last."""
        if not self.connections:
            gone, self._gone = self._gone, []
            for waiter in gone:
                waiter.callback(None)


def listen(
    reactor: Any,
    endpoint: str | IStreamServerEndpoint,
    factory: PlatformServerFactory,
    *,
    tls: Any = None,
) -> Deferred[IListeningPort]:
    """Start serving platforms on C{endpoint}.

    @param endpoint: a server endpoint string (C{ssl:...} brings its own
        TLS) or an endpoint.
    @param tls: TLS server options (an C{IOpenSSLServerConnectionCreator},
        such as L{twisted.internet.ssl.CertificateOptions}) to wrap the
        endpoint's connections in; C{None} when the endpoint does TLS
        itself, or for plain TCP in a test.
    @return: fires with the listening port.
    """
    where = serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    serving: Any = factory if tls is None else TLSMemoryBIOFactory(tls, False, factory)
    return where.listen(serving)
