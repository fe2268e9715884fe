# -*- test-case-name: tests.unit.simcard.test_smsc_session,tests.integration.test_smsc_smpplib -*-
"""The Twisted side of the simulated SMSC: a thin protocol and its factory.

The protocol only turns bytes into PDUs (L{bipgw.codec.smpp.PduDecoder})
and PDUs into bytes; every decision is the session's (L{EsmeSession}) or
the centre's (L{MessageCentre}).  A failure inside that logic is logged and
costs only the connection it happened on, so one broken ESME cannot disturb
the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol as Protocol_
from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.smpp import Pdu, PduDecoder, SmppError, encode
from simcard.smsc._config import SmscClock, SmscConfig
from simcard.smsc._core import EsmeSession, SessionState
from simcard.smsc._router import DeliveryOutcome, ISmsRouter, MessageCentre


class _Transport(Protocol_):
    """The transport calls the protocol makes (typed without mypy-zope)."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...


def _transport(protocol: Protocol) -> _Transport:
    return cast(_Transport, protocol.transport)


def _describe(address: object) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"{host}:{port}"
    return str(address)


class SmscProtocol(Protocol):
    """One ESME connection: bytes in, PDUs to the session; PDUs out, bytes.

    @ivar session: the connection's L{EsmeSession}, once connected.
    """

    _log = Logger()

    def __init__(self, centre: MessageCentre, peer: str) -> None:
        self._centre = centre
        self._peer = peer
        self._decoder = PduDecoder(centre.config.max_pdu)
        self.session: EsmeSession | None = None

    def connectionMade(self) -> None:
        self.session = EsmeSession(self._centre, self, self._peer)
        self.session.connection_made()

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is None or session.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        try:
            try:
                items = self._decoder.feed_results(data)
            except SmppError as broken:
                session.stream_broken(broken)
                return
            for item in items:
                if isinstance(item, SmppError):
                    session.malformed(item)
                else:
                    session.pdu_received(item)
        except Exception:
            self._log.failure("SMSC session for {peer} failed; dropping it", peer=self._peer)
            _transport(self).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.session is not None:
            self.session.connection_lost(reason.getErrorMessage())

    # PduSink

    def send_pdu(self, pdu: Pdu) -> None:
        """Encode and write one PDU (raises L{SmppError} if it cannot be encoded)."""
        _transport(self).write(encode(pdu))

    def close(self) -> None:
        """Close once pending writes are out."""
        _transport(self).loseConnection()


class SmscFactory(Factory):
    """The simulated SMSC: listen with it on any stream endpoint.

    @param router: where MT messages go (the fleet).
    @param accounts: ESME passwords by system_id.
    @param clock: the time source (the reactor, or a C{Clock} in tests).
    @param config: behaviour and limits; the defaults suit a local test.
    @ivar centre: the shared L{MessageCentre}.
    """

    def __init__(
        self,
        router: ISmsRouter,
        accounts: Mapping[str, str],
        clock: SmscClock,
        config: SmscConfig | None = None,
    ) -> None:
        self.centre = MessageCentre(router, accounts, clock, config or SmscConfig())

    def buildProtocol(self, addr: object) -> SmscProtocol:
        protocol = SmscProtocol(self.centre, _describe(addr))
        protocol.factory = self
        return protocol

    def submit_mo(
        self, from_msisdn: str, to_address: str, tpdu: bytes
    ) -> Deferred[DeliveryOutcome]:
        """Send a card's SMS-SUBMIT to the ESMEs (see L{MessageCentre.submit_mo})."""
        return self.centre.submit_mo(from_msisdn, to_address, tpdu)

    def stopFactory(self) -> None:
        """The last listening port closed: stop timers and close connections.

        A stopped SMSC stays stopped (submissions get C{ESME_RSYSERR}); to
        listen again, build a new factory.
        """
        self.centre.stop()
