"""Shared fakes for the simulated SMSC's unit tests (this module holds no tests).

An L{Esme} is a connected client made of the real L{SmscProtocol}, a
C{StringTransport} and the codec's decoder, so every test goes through the
same bytes a real ESME would exchange.  L{FakeRouter} stands in for the
fleet and records what the SMSC hands over.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    Pdu,
    PduDecoder,
    SequenceNumbers,
    SubmitSm,
    encode,
)
from simcard.smsc import DeliveryOutcome, SmscConfig, SmscFactory

#: 2022-07-25 00:00:00 UTC: the TP-SCTS C{22 70 52 00 00 00 00} of the public
#: C{sms_pp_framing} vector.
T0 = 1658707200.0

ACCOUNTS = {"gw": "secret", "gw2": "other", "test": "test"}
OTA_UD = bytes.fromhex("02700000201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f")


class FakeRouter:
    """The fleet: records hand-overs and answers from a script.

    @ivar calls: every C{(msisdn, tpdu)} handed over, in order.
    @ivar outcomes: outcomes to answer with, first first; when empty,
        C{default} (DELIVERED).
    @ivar hold: answer with Deferreds kept in C{pending} instead.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.outcomes: list[Any] = []
        self.default: Any = DeliveryOutcome.delivered()
        self.hold = False
        self.pending: list[Deferred[DeliveryOutcome]] = []

    def deliver(self, dest_msisdn: str, tpdu: bytes) -> Deferred[DeliveryOutcome]:
        self.calls.append((dest_msisdn, tpdu))
        if self.hold:
            d: Deferred[DeliveryOutcome] = Deferred()
            self.pending.append(d)
            return d
        outcome = self.outcomes.pop(0) if self.outcomes else self.default
        if isinstance(outcome, BaseException):
            raise outcome
        return succeed(outcome)


class Esme:
    """One client connection to the SMSC under test."""

    def __init__(self, factory: SmscFactory, port: int = 40000) -> None:
        address = IPv4Address("TCP", "192.0.2.1", port)
        self.transport = StringTransport(peerAddress=address)
        self.protocol = factory.buildProtocol(address)
        self.protocol.makeConnection(self.transport)
        self.decoder = PduDecoder()
        self.seqs = SequenceNumbers()
        self.lost = False

    def send(self, pdu: Pdu) -> None:
        """Write one PDU to the SMSC."""
        self.protocol.dataReceived(encode(pdu))

    def received(self) -> list[Pdu]:
        """Every PDU the SMSC wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return self.decoder.feed(data)

    def one(self) -> Pdu:
        """The single PDU the SMSC wrote since the last call."""
        pdus = self.received()
        assert len(pdus) == 1, pdus
        return pdus[0]

    @property
    def closing(self) -> bool:
        """Whether the SMSC asked the transport to close."""
        return bool(self.transport.disconnecting)

    def bind(self, mode: str = "transceiver", system_id: str = "gw", password: str = "") -> Pdu:
        """Bind and return the SMSC's answer."""
        cls = {"transmitter": BindTransmitter, "receiver": BindReceiver}.get(mode, BindTransceiver)
        self.send(
            cls(
                self.seqs.allocate(),
                system_id=system_id,
                password=password or ACCOUNTS.get(system_id, ""),
            )
        )
        return self.one()

    def submit(self, **fields: Any) -> int:
        """Send a submit_sm (OTA defaults) and return its sequence_number."""
        values: dict[str, Any] = {
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": "12",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": "4477001",
            "esm_class": 0x40,
            "protocol_id": 0x7F,
            "data_coding": 0xF6,
            "short_message": OTA_UD,
        }
        values.update(fields)
        seq = self.seqs.allocate()
        self.send(SubmitSm(seq, **values))
        return seq

    def answer(self, pdu: Pdu, status: int = 0) -> None:
        """Answer a deliver_sm from the SMSC."""
        assert isinstance(pdu, DeliverSm)
        self.send(pdu.response(command_status=int(status)))

    def disconnect(self) -> None:
        """The ESME goes away (idempotent)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


class SmscTestCase(SynchronousTestCase):
    """Builds SMSCs on a C{Clock} and checks that nothing is left scheduled.

    Cleanup disconnects every ESME the test made and then requires the
    clock to hold no DelayedCall: a timer that outlives its connection and
    its messages is a leak.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.router = FakeRouter()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def smsc(self, **config: Any) -> SmscFactory:
        """A factory with L{ACCOUNTS} and the given configuration."""
        return SmscFactory(self.router, ACCOUNTS, self.clock, SmscConfig(**config))

    def esme(self, factory: SmscFactory, port: int = 40000) -> Esme:
        """A connected client, disconnected at cleanup."""
        client = Esme(factory, port)
        self.addCleanup(client.disconnect)
        return client

    def logged(self, text: str) -> list[str]:
        """Formatted log lines that contain C{text}."""
        from twisted.logger import formatEvent

        lines = [formatEvent(e) for e in self.events]
        return [line for line in lines if text in line]
