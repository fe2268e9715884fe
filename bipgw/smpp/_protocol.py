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

A hostile or broken SMSC can send malformed PDUs as fast as it likes, so
(issue 15) their log lines go through the door's shared
L{bipgw.core.RateLimitedLog}, and more than L{MALFORMED_LIMIT} malformed
PDUs within L{MALFORMED_WINDOW} seconds drop the connection as if its
framing were broken.  Either drop calls the factory's C{on_hostile}, so the
service keeps growing its reconnection backoff instead of resetting it at
the next successful bind.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Final

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.smpp import DEFAULT_MAX_PDU, Pdu, PduDecoder, SmppError, encode, response_for_error
from bipgw.core import RateLimitedLog
from bipgw.smpp._link import EsmeLink

__all__ = ["MALFORMED_LIMIT", "MALFORMED_WINDOW", "EsmeFactory", "EsmeProtocol", "LinkMaker"]

MALFORMED_LIMIT: Final = 100
"""Malformed PDUs tolerated within L{MALFORMED_WINDOW}; one more drops the connection."""

MALFORMED_WINDOW: Final = 10.0
"""Seconds over which malformed PDUs are counted."""

LinkMaker = Callable[["EsmeProtocol"], EsmeLink]
"""Builds the link of a new connection, given the protocol it writes through."""


class EsmeProtocol(Protocol):
    """One TCP connection to the SMSC, as seen by the ESME.

    @ivar link: the connection's logic (an L{EsmeLink}).
    """

    _log = Logger()

    def __init__(
        self,
        make_link: LinkMaker,
        max_pdu: int = DEFAULT_MAX_PDU,
        *,
        clock: IReactorTime | None = None,
        ratelog: RateLimitedLog | None = None,
        on_hostile: Callable[[], object] | None = None,
    ) -> None:
        """
        @param make_link: builds this connection's L{EsmeLink}.
        @param max_pdu: the largest PDU accepted from the SMSC.
        @param clock: times the malformed-PDU window (the reactor by default).
        @param ratelog: where peer-triggered lines go (the factory shares
            one among connections; by default one of this connection's own).
        @param on_hostile: called once when the connection is dropped for
            broken framing or too many malformed PDUs.
        """
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        assert clock is not None
        self._clock = clock
        self._ratelog = ratelog if ratelog is not None else RateLimitedLog(self._log, clock)
        self._on_hostile = on_hostile
        self._malformed: collections.deque[float] = collections.deque()
        self._decoder = PduDecoder(max_pdu)
        self._broken = False
        self.link = make_link(self)

    def connectionMade(self) -> None:
        """Send each write at once (no Nagle delay).

        Submits are pipelined up to the window: with Nagle's algorithm a
        submit_sm written while an earlier one is unacknowledged waits for
        that ACK, which the SMSC may delay (40 ms on Linux) -- the window
        then moves at the pace of delayed ACKs, not of the SMSC's answers.
        """
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)

    def dataReceived(self, data: bytes) -> None:
        """Decode what arrived; pass each PDU on, answer each malformed one."""
        if self._broken:
            return
        try:
            items = self._decoder.feed_results(data)
        except SmppError as e:
            self._ratelog.error(
                "smpp-broken-stream",
                "unrecoverable SMPP stream from the SMSC: {error}",
                error=str(e),
            )
            self._hostile()
            return
        for item in items:
            if self._broken:
                return
            if isinstance(item, SmppError):
                self._ratelog.warn(
                    "smpp-malformed-pdu", "malformed PDU from the SMSC: {error}", error=str(item)
                )
                if self._too_many_malformed():
                    self._ratelog.error(
                        "smpp-malformed-flood",
                        "more than {limit} malformed PDUs from the SMSC within {window:g} s;"
                        " dropping the connection",
                        limit=MALFORMED_LIMIT,
                        window=MALFORMED_WINDOW,
                    )
                    self._hostile()
                    return
                answer = response_for_error(item)
                if answer is not None:
                    self.send_pdu(answer)
            else:
                self.link.pdu_received(item)

    def _too_many_malformed(self) -> bool:
        now = self._clock.seconds()
        seen = self._malformed
        seen.append(now)
        while seen and now - seen[0] > MALFORMED_WINDOW:
            seen.popleft()
        return len(seen) > MALFORMED_LIMIT

    def _hostile(self) -> None:
        self._broken = True
        self._malformed.clear()
        if self._on_hostile is not None:
            self._on_hostile()
        self.close(abort=True)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Let the link settle everything that waited on this connection."""
        self.link.connection_lost(reason)

    # -- ILinkTransport ------------------------------------------------------

    def send_pdu(self, pdu: Pdu) -> None:
        """Encode C{pdu} and write it (dropped once the connection is closing)."""
        if self.transport is None:
            return
        self.transport.write(encode(pdu))

    def send_encoded(self, data: bytes) -> None:
        """Write a PDU already encoded (dropped once the connection is closing)."""
        if self.transport is None:
            return
        self.transport.write(data)

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

    _log = Logger()

    def __init__(
        self,
        make_link: LinkMaker,
        max_pdu: int = DEFAULT_MAX_PDU,
        *,
        clock: IReactorTime | None = None,
        on_hostile: Callable[[], object] | None = None,
    ) -> None:
        """
        @param make_link: builds each connection's L{EsmeLink}.
        @param max_pdu: the largest PDU accepted from the SMSC.
        @param clock: times malformed-PDU windows and log intervals (the
            reactor by default).
        @param on_hostile: called when a connection is dropped for broken
            framing or too many malformed PDUs.
        """
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        assert clock is not None
        self._make_link = make_link
        self._max_pdu = max_pdu
        self._clock = clock
        self._on_hostile = on_hostile
        self.ratelog = RateLimitedLog(EsmeProtocol._log, clock)

    def buildProtocol(self, addr: IAddress | None) -> EsmeProtocol:
        """A protocol with a fresh link for a new connection."""
        protocol = EsmeProtocol(
            self._make_link,
            self._max_pdu,
            clock=self._clock,
            ratelog=self.ratelog,
            on_hostile=self._on_hostile,
        )
        protocol.factory = self
        return protocol
