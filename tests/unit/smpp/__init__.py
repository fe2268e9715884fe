"""Tests for the SMPP client (bipgw.smpp: link, protocol, service).

The peer is a small fake SMSC written here on top of L{bipgw.codec.smpp}
(never the simulated SMSC of C{simcard}, which the gateway must not depend
on): it checks the bind's credentials, answers or holds submit_sm as the
test says, answers enquire_link and unbind unless told not to, and records
everything with the clock time it arrived.  L{SmscEndpoint} connects the
client to it over L{twisted.test.iosim}, so whole sessions run on a
L{Clock} without sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from bipgw.codec.ota import (
    ChecksumKind,
    CounterMode,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaKeys,
    PorMode,
    Spi,
)
from bipgw.codec.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduDecoder,
    SubmitSm,
    Unbind,
    UnbindResp,
    encode,
)
from bipgw.core import PushOrder, PushReceipt, SessionId
from bipgw.push import (
    CallbackAddress,
    MemoryCounters,
    PushBuilder,
    PushProfile,
    PushSender,
    SmsSubmission,
)
from bipgw.smpp import EsmeSettings, SmppClientService

ICCID = "8988211000000000018"
ICCID2 = "8988211000000000026"
MSISDN = "+447700900123"
MSISDN2 = "447700900456"
KEYS = OtaKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
"""The card's KIc/KID key set version 1 (AES-128): the test's card keys."""
CALLBACK_HOST = "192.0.2.10"
CALLBACK_PORT = 8443
CALLBACK_IP = ip_address(CALLBACK_HOST)
SPI_1639 = Spi(
    checksum=ChecksumKind.CC,
    ciphered=True,
    counter=CounterMode.HIGHER,
    por=PorMode.ALWAYS,
    por_checksum=ChecksumKind.CC,
    por_ciphered=True,
    por_via_submit=True,
)
KIC_12 = Kic(1, KicAlgorithm.AES_CBC)
KID_12 = Kid(1, KidAlgorithm.AES_CMAC)

SETTINGS = EsmeSettings(
    system_id="bipgw",
    password="secret",
    source_address="8801",
    window=10,
    rate=1000.0,
    burst=1000.0,
    enquire_link_interval=30.0,
    response_timeout=5.0,
    queue_limit=100,
    reconnect_initial_delay=1.0,
    reconnect_max_delay=60.0,
    reconnect_factor=2.0,
    throttle_initial_delay=1.0,
    throttle_max_delay=30.0,
    throttle_factor=2.0,
)
"""Fast enough that most tests do not wait on the rate cap; each test evolves what it checks."""


def order(
    attempt: int = 1, session: str = "s1", iccid: str = ICCID, msisdn: str | None = MSISDN
) -> PushOrder:
    """A push order for the test card."""
    return PushOrder(SessionId(session), iccid, msisdn, attempt, "isd")


def sms(
    attempt: int = 1, session: str = "s1", msisdn: str = MSISDN, parts: int = 1
) -> SmsSubmission:
    """What the push sender hands the link for L{order}C{(attempt, session)}."""
    return SmsSubmission(
        msisdn,
        tuple(bytes([i]) for i in range(parts)),
        f"push {attempt} of session {session}",
        thread=SessionId(session),
        sequence=attempt,
    )


class RecordingEvents:
    """An L{bipgw.core.ISmsEvents} that records what the SMS door reports."""

    def __init__(self) -> None:
        self.receipts: list[tuple[str, bool, str, bytes | None]] = []
        self.sms: list[tuple[str, bytes]] = []

    def delivery_receipt(
        self, message_id: str, delivered: bool, detail: str = "", user_data: bytes | None = None
    ) -> None:
        self.receipts.append((message_id, delivered, detail, user_data))

    def sms_received(self, msisdn: str, user_data: bytes) -> Deferred[None]:
        self.sms.append((msisdn, user_data))
        return succeed(None)


def keys_for(iccid: str, kvn: int) -> OtaKeys | None:
    """The fleet's key lookup: every known card has key set 1."""
    return KEYS if iccid in (ICCID, ICCID2) and kvn == 1 else None


@attrs.define
class Arrival:
    """One PDU the fake SMSC received, with when and on which connection."""

    pdu: Pdu
    at: float
    connection: int


class FakeSmsc:
    """The fake SMSC's shared state, across every connection made to it.

    @ivar statuses: the command_status for the next submit_sm answers, in
        order; when empty, submits are accepted.
    @ivar hold: keep submit_sm unanswered (in L{held}) until L{release}.
    @ivar answer_enquire: answer enquire_link (else let it time out).
    @ivar answer_unbind: answer unbind (else let it time out).
    """

    def __init__(self, clock: IReactorTime, system_id: str = "bipgw", password: str = "secret"):
        self.clock = clock
        self.system_id = system_id
        self.password = password
        self.received: list[Arrival] = []
        self.connections: list[FakeSmscProtocol] = []
        self.statuses: list[int] = []
        self.hold = False
        self.held: list[tuple[FakeSmscProtocol, SubmitSm]] = []
        self.answer_enquire = True
        self.answer_unbind = True
        self._next_id = 0

    def factory(self) -> Factory:
        """Builds one protocol per connection."""
        return Factory.forProtocol(lambda: FakeSmscProtocol(self))

    def of(self, kind: type[Pdu]) -> list[Any]:
        """Every PDU of one type received, in order."""
        return [a.pdu for a in self.received if isinstance(a.pdu, kind)]

    def times(self, kind: type[Pdu]) -> list[float]:
        """When each PDU of one type arrived."""
        return [a.at for a in self.received if isinstance(a.pdu, kind)]

    @property
    def current(self) -> FakeSmscProtocol:
        """The latest connection."""
        return self.connections[-1]

    def message_id(self) -> str:
        """The next message id this SMSC hands out."""
        self._next_id += 1
        return f"m{self._next_id}"

    def release(self, count: int | None = None, status: int = 0) -> None:
        """Answer held submits (all, or the first C{count}) with C{status}."""
        count = len(self.held) if count is None else count
        for protocol, pdu in self.held[:count]:
            message_id = self.message_id() if status == 0 else ""
            protocol.send(pdu.response(message_id, command_status=status))
        del self.held[:count]


class FakeSmscProtocol(Protocol):
    """One connection of the fake SMSC."""

    def __init__(self, smsc: FakeSmsc) -> None:
        self.smsc = smsc
        self.decoder = PduDecoder()
        self.bound = False
        self.lost = False
        self.seq = 1000

    def connectionMade(self) -> None:
        self.smsc.connections.append(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True

    def send(self, pdu: Pdu) -> None:
        self.write(encode(pdu))

    def write(self, data: bytes) -> None:
        """Write raw bytes to the ESME."""
        assert self.transport is not None
        self.transport.write(data)

    def drop(self) -> None:
        """Close the connection from the SMSC's side."""
        assert self.transport is not None
        self.transport.loseConnection()

    def deliver(self, pdu: DeliverSm) -> None:
        """Send a deliver_sm (its sequence_number replaced by this connection's next)."""
        self.seq += 1
        self.send(attrs.evolve(pdu, sequence_number=self.seq))

    def dataReceived(self, data: bytes) -> None:
        smsc = self.smsc
        for pdu in self.decoder.feed(data):
            smsc.received.append(Arrival(pdu, smsc.clock.seconds(), smsc.connections.index(self)))
            self.handle(pdu)

    def handle(self, pdu: Pdu) -> None:
        smsc = self.smsc
        if isinstance(pdu, BindTransmitter | BindTransceiver | BindReceiver):
            ok = pdu.system_id == smsc.system_id and pdu.password == smsc.password
            status = 0 if ok else int(CommandStatus.ESME_RINVPASWD)
            self.bound = ok
            self.send(pdu.response("FAKESMSC", command_status=status))
        elif isinstance(pdu, SubmitSm):
            if not self.bound:
                self.send(pdu.response("", command_status=int(CommandStatus.ESME_RINVBNDSTS)))
            elif smsc.hold:
                smsc.held.append((self, pdu))
            else:
                status = smsc.statuses.pop(0) if smsc.statuses else 0
                message_id = smsc.message_id() if status == 0 else ""
                self.send(pdu.response(message_id, command_status=status))
        elif isinstance(pdu, EnquireLink):
            if smsc.answer_enquire:
                self.send(EnquireLinkResp(pdu.sequence_number))
        elif isinstance(pdu, Unbind):
            if smsc.answer_unbind:
                self.send(UnbindResp(pdu.sequence_number))
                self.drop()
        elif isinstance(pdu, DeliverSmResp | EnquireLinkResp | UnbindResp | GenericNack):
            pass
        else:
            self.send(GenericNack(pdu.sequence_number, int(CommandStatus.ESME_RINVCMDID)))


@implementer(IStreamClientEndpoint)
class SmscEndpoint:
    """A client endpoint whose connections reach a L{FakeSmsc} through iosim.

    @ivar refuse: how many of the next connection attempts to refuse.
    @ivar attempts: the clock time of every connection attempt.
    """

    def __init__(self, smsc: FakeSmsc, clock: Any) -> None:
        self.smsc = smsc
        self.clock = clock
        self.refuse = 0
        self.attempts: list[float] = []
        self.pumps: list[iosim.IOPump] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts.append(self.clock.seconds())
        if self.refuse:
            self.refuse -= 1
            return fail(ConnectionRefusedError("fake SMSC refuses"))
        client = factory.buildProtocol(None)
        server = self.smsc.factory().buildProtocol(None)
        pump = iosim.connect(
            server,
            iosim.makeFakeServer(server),
            client,
            iosim.makeFakeClient(client),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        return succeed(client)

    def flush(self) -> None:
        """Move every byte (and every close) between client and SMSC, until quiet."""
        moved = True
        while moved:
            moved = False
            for pump in self.pumps:
                if pump.flush(advanceClock=False):
                    moved = True


def run(clock: Any, endpoint: SmscEndpoint, seconds: float = 0.0, step: float = 0.25) -> None:
    """Let C{seconds} pass in steps, moving the bytes at each step."""
    endpoint.flush()
    left = seconds
    while left > 1e-12:
        dt = min(step, left)
        clock.advance(dt)
        endpoint.flush()
        left -= dt
    endpoint.flush()


def recorder() -> tuple[list[tuple[Any, ...]], Callable[..., None]]:
    """A list and a callback that appends its arguments to it."""
    calls: list[tuple[Any, ...]] = []
    return calls, lambda *args: calls.append(args)


class ClientTestCase(SynchronousTestCase):
    """A started service, a fake SMSC and a clock; no timer may outlive a test."""

    settings = SETTINGS

    def setUp(self) -> None:
        self.clock = Clock()
        self.smsc = FakeSmsc(self.clock)
        self.endpoint = SmscEndpoint(self.smsc, self.clock)
        self.counters = MemoryCounters()
        self.builder = PushBuilder(
            keys_for, self.counters, CallbackAddress(CALLBACK_HOST, CALLBACK_PORT), PushProfile()
        )
        self.events = RecordingEvents()
        self.service = SmppClientService(
            self.clock, self.endpoint, self.settings, events=self.events, jitter=lambda: 0.0
        )
        self.sender = PushSender(self.builder, self.service)
        self.addCleanup(self._noTimersLeft)

    def use(self, settings: EsmeSettings | None = None, builder: PushBuilder | None = None) -> None:
        """Replace the (not yet started) service with one of other settings or builder."""
        self.builder = builder or self.builder
        self.service = SmppClientService(
            self.clock,
            self.endpoint,
            settings or self.settings,
            events=self.events,
            jitter=lambda: 0.0,
        )
        self.sender = PushSender(self.builder, self.service)

    def _noTimersLeft(self) -> None:
        if self.service.running:
            self.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def start(self) -> None:
        """Start the service and let it connect and bind."""
        self.service.startService()
        run(self.clock, self.endpoint)

    def stop(self) -> None:
        """Stop the service, letting the clock run until it has."""
        stopped = self.service.stopService()
        run(self.clock, self.endpoint)
        for _ in range(100):
            if stopped.called:
                break
            run(self.clock, self.endpoint, 1.0)
        self.successResultOf(stopped)

    def push(self, *args: Any, **kwargs: Any) -> Deferred[PushReceipt]:
        """Send a push for L{order}C{(*args, **kwargs)} through the push sender
        and this service, and move the bytes."""
        d = self.sender.send_push(order(*args, **kwargs))
        run(self.clock, self.endpoint)
        return d
