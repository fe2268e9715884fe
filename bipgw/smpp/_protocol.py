# -*- test-case-name: tests.unit.smpp.test_protocol -*-
"""The ESME's SMPP connection: bytes in, PDUs to the link, PDUs out as bytes.

Thin by design (STYLE.md rule 2): L{EsmeProtocol} feeds what TCP delivers
to the sans-IO L{PduDecoder}, hands each PDU to its L{EsmeLink} (bind,
keep-alive, window, deliver_sm: all there, clock-driven and tested without
a socket), and writes the PDUs the link sends.  The only decisions made
here are the codec's: a malformed but well-framed PDU is answered as SMPP
3.4 asks (L{response_for_error}) and skipped; a stream whose framing is
broken cannot be resynchronised, so the connection is dropped and the
service reconnects.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.smpp import DEFAULT_MAX_PDU, Pdu, PduDecoder, SmppError, encode, response_for_error
from bipgw.smpp._link import EsmeLink

__all__ = ["EsmeFactory", "EsmeProtocol", "LinkMaker"]

LinkMaker = Callable[["EsmeProtocol"], EsmeLink]
"""Builds the link of a new connection, given the protocol it writes through."""


class EsmeProtocol(Protocol):
    """One TCP connection to the SMSC, as seen by the ESME.

    @ivar link: the connection's logic (an L{EsmeLink}).
    """

    _log = Logger()

    def __init__(self, make_link: LinkMaker, max_pdu: int = DEFAULT_MAX_PDU) -> None:
        """
        @param make_link: builds this connection's L{EsmeLink}.
        @param max_pdu: the largest PDU accepted from the SMSC.
        """
        self._decoder = PduDecoder(max_pdu)
        self._broken = False
        self.link = make_link(self)

    def dataReceived(self, data: bytes) -> None:
        """Decode what arrived; pass each PDU on, answer each malformed one."""
        if self._broken:
            return
        try:
            items = self._decoder.feed_results(data)
        except SmppError as e:
            self._broken = True
            self._log.error("unrecoverable SMPP stream from the SMSC: {error}", error=str(e))
            self.close(abort=True)
            return
        for item in items:
            if isinstance(item, SmppError):
                self._log.warn("malformed PDU from the SMSC: {error}", error=str(item))
                answer = response_for_error(item)
                if answer is not None:
                    self.send_pdu(answer)
            else:
                self.link.pdu_received(item)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Let the link settle everything that waited on this connection."""
        self.link.connection_lost(reason)

    # -- ILinkTransport ------------------------------------------------------

    def send_pdu(self, pdu: Pdu) -> None:
        """Encode C{pdu} and write it (dropped once the connection is closing)."""
        if self.transport is None:
            return
        self.transport.write(encode(pdu))

    def close(self, abort: bool = False) -> None:
        """Close the connection; C{abort} drops it without flushing."""
        if self.transport is None:
            return
        abort_connection = getattr(self.transport, "abortConnection", None)
        if abort and abort_connection is not None:
            abort_connection()
        else:
            self.transport.loseConnection()


class EsmeFactory(Factory):
    """Builds an L{EsmeProtocol}, with its link, for each connection to the SMSC."""

    def __init__(self, make_link: LinkMaker, max_pdu: int = DEFAULT_MAX_PDU) -> None:
        """
        @param make_link: builds each connection's L{EsmeLink}.
        @param max_pdu: the largest PDU accepted from the SMSC.
        """
        self._make_link = make_link
        self._max_pdu = max_pdu

    def buildProtocol(self, addr: IAddress | None) -> EsmeProtocol:
        """A protocol with a fresh link for a new connection."""
        protocol = EsmeProtocol(self._make_link, self._max_pdu)
        protocol.factory = self
        return protocol
