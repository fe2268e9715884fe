"""Tests for the SCP81 card door: the admin protocol, its listener service, the key cache.

L{TlsCard} is a minimal SCP81 card for the TLS tests: a TLS-PSK client
(L{bipgw.tls.PskClientOptions}) that POSTs admin HTTP built with
L{bipgw.codec.admin_http} and parses what the server answers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from zope.interface import implementer

from bipgw.codec.admin_http import AdminRequest, AdminResponse, ResponseParser, encode_request
from bipgw.tls import PskClientOptions

KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
KEY2 = bytes.fromhex("00112233445566778899aabbccddeeff")


@implementer(IHandshakeListener)
class TlsCard(Protocol):
    """The card end of one TLS-PSK admin connection."""

    def __init__(self) -> None:
        self.handshook = False
        self.responses: list[AdminResponse] = []
        self.lost: Failure | None = None
        self._parser = ResponseParser()

    def handshakeCompleted(self) -> None:
        self.handshook = True

    def dataReceived(self, data: bytes) -> None:
        self.responses.extend(self._parser.feed(data))

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason

    def post(self, request: AdminRequest, *, chunked: bool = False) -> None:
        self.transport.write(encode_request(request, chunked=chunked))

    def send(self, data: bytes) -> None:
        self.transport.write(data)


class TlsLink:
    """One in-memory TLS connection from a L{TlsCard} to a server factory."""

    def __init__(self, server_factory: Any, identity: bytes, key: bytes, clock: Any) -> None:
        client_factory = TLSMemoryBIOFactory(
            PskClientOptions(identity, key), True, Factory.forProtocol(TlsCard), clock=clock
        )
        self.client_tls, self.server_tls, self.pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            greet=False,
            clock=clock,
        )
        self.pump: IOPump
        self.card: TlsCard = self.client_tls.wrappedProtocol
        self.pump.flush()

    @property
    def server(self) -> Any:
        """The admin protocol on the server side (under TLS)."""
        return self.server_tls.wrappedProtocol
