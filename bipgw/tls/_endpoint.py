# -*- test-case-name: tests.unit.tls.test_psk -*-
"""TLS-PSK listeners and connectors built from endpoint strings.

The gateway's configuration names its SCP81 listener as a Twisted endpoint
string (C{tcp:8443:interface=0.0.0.0}); these helpers add the TLS-PSK layer
on top of whatever that string describes, as tahoe's C{_TLSEndpointWrapper}
does for certificates.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString, wrapClientTLS
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from bipgw.tls._client import PskClientOptions
from bipgw.tls._server import PskServerOptions

__all__ = [
    "PskServerEndpoint",
    "TlsServerFactory",
    "TlsServerProtocol",
    "psk_client_endpoint",
    "psk_server_endpoint",
]


class TlsServerProtocol(BufferingTLSTransport):
    """Twisted's TLS protocol (write aggregation included), one redundant step fewer.

    Twisted's C{makeConnection} declares the transport's interfaces on the
    protocol one at a time (C{directlyProvides(self, interface)} for each of
    a TCP transport's nine, each call I{replacing} the previous
    declaration), then, when it connects the wrapped protocol, declares them
    all at once with L{ProtocolWrapper.makeConnection}: only the last
    declaration stays.  On a server the wrapped protocol is always connected
    (C{_connectWrapped}), so the loop is work thrown away: about 28 µs per
    card connection on the 2-core benchmark VM (≈ 4 % of the CPU of a
    handshake and its 204 in C{bench.handshakes}).
    This does the rest exactly as Twisted does; with C{_connectWrapped}
    false it is Twisted's own method.
    """

    def makeConnection(self, transport: Any) -> None:
        if not self._connectWrapped:
            BufferingTLSTransport.makeConnection(self, transport)
            return
        self._tlsConnection = self.factory._creatorCallable(self)
        self._appSendBuffer = []
        # ProtocolWrapper.makeConnection declares the transport's interfaces on
        # this protocol, sets self.transport, registers it with the factory and
        # connects the wrapped protocol: what Twisted's method also does, after
        # doing the first two a first time (connectionMade is a no-op here).
        ProtocolWrapper.makeConnection(self, transport)
        self._checkHandshakeStatus()


class TlsServerFactory(TLSMemoryBIOFactory):
    """L{TLSMemoryBIOFactory} making L{TlsServerProtocol}s."""

    protocol = TlsServerProtocol


@implementer(IStreamServerEndpoint)
class PskServerEndpoint:
    """An endpoint that listens like C{wrapped}, with TLS-PSK on every connection.

    Twisted's own C{wrapServerTLS} (twisted/twisted#11861) is newer than
    some releases C{setup.cfg} allows; this works with all of them.
    """

    def __init__(
        self,
        wrapped: IStreamServerEndpoint,
        options: PskServerOptions,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param wrapped: the transport endpoint (usually TCP).
        @param options: the TLS-PSK settings and key lookup.
        @param clock: schedules TLS write aggregation; pass the reactor
            (C{None} makes Twisted import the global one).
        """
        # Typed Any: without the mypy-zope plugin, interface methods cannot be called.
        self._wrapped: Any = wrapped
        self._options = cast(IOpenSSLServerConnectionCreator, options)
        self._clock = clock

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen, wrapping each accepted connection's protocol in TLS-PSK."""
        factory = TlsServerFactory(self._options, False, protocolFactory, self._clock)
        result: Deferred[IListeningPort] = self._wrapped.listen(factory)
        return result


def psk_server_endpoint(
    reactor: Any, description: str, options: PskServerOptions
) -> PskServerEndpoint:
    """A TLS-PSK listener from an endpoint string such as C{"tcp:8443"}.

    @param reactor: the reactor (also used as the TLS layer's clock).
    @param description: a server endpoint string, see
        L{twisted.internet.endpoints.serverFromString}.
    @param options: the TLS-PSK settings and key lookup.
    """
    return PskServerEndpoint(serverFromString(reactor, description), options, reactor)


def psk_client_endpoint(
    reactor: Any, description: str, options: PskClientOptions
) -> IStreamClientEndpoint:
    """A TLS-PSK connector from a client endpoint string (C{"tcp:host:8443"}).

    The protocol the returned endpoint's C{connect} fires with is the
    application's own, exactly as with L{wrapClientTLS}.
    """
    return wrapClientTLS(
        cast(IOpenSSLClientConnectionCreator, options),
        clientFromString(reactor, description),
        clock=reactor,
    )
