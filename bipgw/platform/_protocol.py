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

from collections import deque
from collections.abc import Callable
from typing import Any

from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IPushProducer,
    ISSLTransport,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from bipgw.codec.platform import (
    ErrorCode,
    ErrorMessage,
    FrameDecoder,
    FrameError,
    FrameResult,
    Message,
    encode_frame,
)
from bipgw.core import RateLimitedLog, Tenancy
from bipgw.platform._guard import PeerGuard
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


@implementer(IPushProducer)
class PlatformServerProtocol(Protocol):
    """One platform connection: frames in and out, everything else the channel's.

    It is the push producer of its own transport, so that the transport
    says when the peer stops reading (its send buffer is full): then the
    protocol stops reading the socket and serves no further frame, so a
    peer that pipelines requests and never reads the answers is held to
    what the transport buffers.  Before authentication such a peer is
    aborted at once; after it, after C{stall_timeout} seconds or once
    C{max_send_buffer} more bytes had to be written (answers of commands
    already in flight), whichever comes first.  Every close that cannot
    flush within C{close_timeout} is an abort.
    """

    _log = Logger()
    factory: PlatformServerFactory

    def __init__(self) -> None:
        self.channel: PlatformChannel | None = None
        self._decoder: FrameDecoder | None = None
        self._host: str | None = None
        self._pending: deque[FrameResult] = deque()
        self._paused = False
        self._held = 0
        self._stall: IDelayedCall | None = None
        self._closer: IDelayedCall | None = None
        self._closing = False
        self._aborted = False
        self._producing = False

    @property
    def _link(self) -> Any:
        # An ITCPTransport (or TLS over one): abort, producers, pausing reads.
        return self.transport

    @property
    def paused(self) -> bool:
        """Whether the peer stopped reading (so this side stopped reading it)."""
        return self._paused

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeer()
        factory = self.factory
        host = str(getattr(peer, "host", peer))
        if len(factory.connections) >= factory.max_connections:
            # Refused here rather than in buildProtocol, which TLS wrapping
            # factories expect to always return a protocol.
            factory.refused(_show(peer), f"{len(factory.connections)} open (the limit)")
            self._link.abortConnection()
            return
        if not factory.guard.connect(host):
            limit = factory.settings.peer_limits.max_connections_per_peer
            factory.refused(_show(peer), f"{limit} open from that address (the limit)")
            self._link.abortConnection()
            return
        self._host = host
        self._decoder = FrameDecoder(factory.settings.max_frame)
        self.channel = factory.channel(
            self._write,
            self._lose,
            peer_name=lambda: self.factory.identify(self.transport),
            peer=_show(peer),
            abort=self._abort,
            host=host,
        )
        self.factory.connections.add(self)
        self._link.registerProducer(self, True)
        self._producing = True
        self.channel.connected()

    def dataReceived(self, data: bytes) -> None:
        if self._decoder is None or self.channel is None or self._closing:
            return  # a refused connection, closing
        try:
            frames = self._decoder.feed(data)
        except FrameError as e:
            self._pending.clear()
            self.channel.stream_broken(e)
            return
        self._pending.extend(frames)
        self._serve()

    def _serve(self) -> None:
        channel = self.channel
        assert channel is not None and self._host is not None
        guard = self.factory.guard
        while self._pending and not self._paused and not self._closing:
            frame = self._pending.popleft()
            if channel.tenant is None and not guard.preauth_frame(self._host):
                self.factory.refused(self._host, "too many frames before authentication")
                self._abort("too many frames before authentication")
                return
            channel.received(frame)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._pending.clear()
        self._cancel(self._stall)
        self._cancel(self._closer)
        self._stall = self._closer = None
        if self._host is not None:
            self.factory.guard.disconnect(self._host)
            self._host = None
        self.factory.connections.discard(self)
        if self.channel is not None:
            self.channel.lost(reason.getErrorMessage())
        self.factory.ended()

    # -- IPushProducer: the transport says whether the peer reads -----------------

    def pauseProducing(self) -> None:
        """The transport's buffer is full: the peer does not read what it is sent."""
        if self._paused or self._closing or self.transport is None:
            return
        self._paused = True
        self._held = 0
        self._link.pauseProducing()
        if self.channel is None or self.channel.tenant is None:
            self._abort("does not read its replies before authentication")
            return
        wait = self.factory.settings.stall_timeout
        self._stall = self.factory.tenancy.clock.callLater(
            wait, self._abort, f"read nothing for {wait:g} s"
        )

    def resumeProducing(self) -> None:
        """The peer read enough: read and serve its requests again."""
        if not self._paused or self._closing or self.transport is None:
            return
        self._paused = False
        self._cancel(self._stall)
        self._stall = None
        self._link.resumeProducing()
        if self.channel is not None:
            self._serve()

    def stopProducing(self) -> None:
        """The connection is going away (L{connectionLost} cleans up)."""

    # -- out ----------------------------------------------------------------------

    def _write(self, message: Message) -> None:
        if self.transport is None or self._closing:
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
        if self._paused:
            self._held += len(frame)
            if self._held > self.factory.settings.max_send_buffer:
                self._abort(f"more than {self._held} bytes unread")
                return
        self.transport.write(frame)

    def close(self, why: str = "closed by the gateway") -> None:
        """Close after what was sent; abort if that takes C{close_timeout}."""
        self._lose(why)

    def _lose(self, why: str) -> None:
        if self.transport is None or self._closing:
            return
        if self._paused:
            self._abort(why)  # it would never flush
            return
        self._closing = True
        self._unregister()
        self._closer = self.factory.tenancy.clock.callLater(
            self.factory.settings.close_timeout, self._abort, f"{why}; not flushed in time"
        )
        self.transport.loseConnection()

    def abort(self, why: str = "aborted by the gateway") -> None:
        """Drop the connection now, and what was not sent yet (once)."""
        self._abort(why)

    def _abort(self, why: str) -> None:
        if self.transport is None or self._aborted:
            return
        self._aborted = self._closing = True
        self._cancel(self._closer)
        self._closer = None
        self._cancel(self._stall)
        self._stall = None
        self._pending.clear()
        if self.channel is not None:
            self.channel.aborted(why)
        self._unregister()
        self._link.abortConnection()

    def _unregister(self) -> None:
        if self._producing and self.transport is not None:
            self._producing = False
            self._link.unregisterProducer()

    @staticmethod
    def _cancel(call: IDelayedCall | None) -> None:
        if call is not None and call.active():
            call.cancel()


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
        self.guard = PeerGuard(tenancy.clock, self.settings.peer_limits)
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
        abort: Callable[[str], object] | None = None,
        host: str = "?",
    ) -> PlatformChannel:
        """The logic for a new connection (see L{PlatformChannel})."""
        return PlatformChannel(
            self.tenancy,
            self.settings,
            send,
            disconnect,
            peer_name,
            peer,
            abort=abort,
            guard=self.guard,
            host=host,
            ratelog=self.ratelog,
        )

    def refused(self, peer: str, why: str) -> None:
        """A connection was refused or cut by a limit: logged at a bounded
        rate (L{ratelog}), since a flood of refusals must not be a flood of
        lines."""
        self.ratelog.warn(
            "platform-refused", "refused platform connection {peer}: {why}", peer=peer, why=why
        )

    def buildProtocol(self, addr: IAddress | None) -> PlatformServerProtocol:
        protocol = PlatformServerProtocol()
        protocol.factory = self
        return protocol

    def notify(self, tenant_id: str, message: Message) -> int:
        """Send C{message} to every authenticated connection of C{tenant_id}
        (what became of its session on a lost cluster node); how many."""
        sent = 0
        for protocol in list(self.connections):
            channel = protocol.channel
            tenant = None if channel is None else channel.tenant
            if channel is not None and tenant is not None and tenant.tenant_id == tenant_id:
                channel.emit(message)
                sent += 1
        return sent

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
