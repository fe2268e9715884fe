"""The push sender: core's IPushSender on top of an SMS link it names (ISmsLink)."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    CompactResult,
    PorStatus,
    ResponsePacket,
    secure_response,
    strip_command_udh,
    verify_command,
)
from bipgw.core import IPushSender, PorReport, PushError, PushOrder, PushReceipt, SessionId
from bipgw.push import (
    DEFAULT_KIC,
    DEFAULT_KID,
    DEFAULT_SPI,
    CallbackAddress,
    ISmsLink,
    MemoryCounters,
    PorError,
    PushBuilder,
    PushSender,
    SmsSubmission,
)
from tests.unit.smpp import ICCID, KEYS, MSISDN, keys_for


class FakeLink:
    """An L{ISmsLink} that holds every submission until the test answers it.

    @ivar refuse: what L{refusal} answers.
    """

    def __init__(self) -> None:
        self.refuse: PushError | None = None
        self.asked: list[str] = []
        self.sent: list[SmsSubmission] = []
        self.pending: list[Deferred[tuple[str, ...]]] = []
        self.cancelled: list[SmsSubmission] = []

    def refusal(self, label: str) -> PushError | None:
        self.asked.append(label)
        return self.refuse

    def submit(self, sms: SmsSubmission) -> Deferred[tuple[str, ...]]:
        self.sent.append(sms)
        d: Deferred[tuple[str, ...]] = Deferred(lambda _: self.cancelled.append(sms))
        self.pending.append(d)
        return d


def _order(attempt: int = 1, msisdn: str | None = MSISDN) -> PushOrder:
    return PushOrder(SessionId("s1"), ICCID, msisdn, attempt, "isd")


class PushSenderTests(SynchronousTestCase):
    """Pushes go down: built and secured, then handed to the link as SMS parts."""

    def setUp(self) -> None:
        self.counters = MemoryCounters()
        self.builder = PushBuilder(keys_for, self.counters, CallbackAddress("192.0.2.10", 8443))
        self.link = FakeLink()
        self.sender = PushSender(self.builder, self.link)

    def test_interfaces(self) -> None:
        """The sender is what core's engine needs; the fake is what the sender needs."""
        self.assertIsInstance(self.sender, IPushSender)
        self.assertIsInstance(self.link, ISmsLink)

    def test_securedPartsHandedToTheLink(self) -> None:
        """The link gets the MSISDN, the secured parts, a label and the session as thread."""
        sent = self.sender.send_push(_order(attempt=2))
        (sms,) = self.link.sent
        self.assertEqual(
            (sms.msisdn, sms.label, sms.thread, sms.sequence),
            (MSISDN, "push 2 of session s1", SessionId("s1"), 2),
        )
        opened = verify_command(strip_command_udh(sms.parts[0]), KEYS, last_counter=0)
        self.assertEqual(opened.counter, 1)
        self.assertNoResult(sent)
        self.link.pending[0].callback(("m1",))
        self.assertEqual(self.successResultOf(sent), PushReceipt(("m1",), counter=1))

    def test_refusedBeforeBuilding(self) -> None:
        """A link that would refuse is asked first, so no OTA counter is spent."""
        self.link.refuse = PushError("the queue is full")
        failure = self.failureResultOf(self.sender.send_push(_order()), PushError)
        self.assertEqual(str(failure.value), "the queue is full")
        self.assertEqual((self.link.asked, self.link.sent), (["push 1 of session s1"], []))
        self.assertEqual(self.counters.last, {})

    def test_linkFailurePassedOn(self) -> None:
        """The link's refusal of the parts is the push's failure, permanent or not."""
        sent = self.sender.send_push(_order())
        self.link.pending[0].errback(PushError("ESME_RINVDSTADR", permanent=True))
        self.assertTrue(self.failureResultOf(sent, PushError).value.permanent)

    def test_builderFailureSendsNothing(self) -> None:
        """A push that cannot be built never reaches the link."""
        failure = self.failureResultOf(self.sender.send_push(_order(msisdn=None)), PushError)
        self.assertTrue(failure.value.permanent)
        self.assertEqual(self.link.sent, [])

    def test_cancelReachesTheLink(self) -> None:
        """Cancelling the push cancels the link's submission (its parts are dropped)."""
        sent = self.sender.send_push(_order())
        sent.cancel()
        self.failureResultOf(sent, CancelledError)
        self.assertEqual(self.link.cancelled, self.link.sent)

    def test_verifyPor(self) -> None:
        """A PoR for the last push opens with the card's keys into core's PorReport."""
        self.sender.send_push(_order())
        data = CompactResult(1, 0x9000).to_bytes()
        packet = ResponsePacket(b"\x00\x00\x00", 1, PorStatus.POR_OK, data)
        ud = secure_response(packet, DEFAULT_SPI, KEYS, kic=DEFAULT_KIC, kid=DEFAULT_KID)
        report = self.successResultOf(self.sender.verify_por(ICCID, ud))
        self.assertEqual(report, PorReport(0, 1, data))

    def test_forgedPorFails(self) -> None:
        """A PoR whose checksum does not match fails with PorError."""
        self.sender.send_push(_order())
        packet = ResponsePacket(b"\x00\x00\x00", 1, PorStatus.POR_OK)
        ud = bytearray(secure_response(packet, DEFAULT_SPI, KEYS, kic=DEFAULT_KIC, kid=DEFAULT_KID))
        ud[-1] ^= 1
        self.failureResultOf(self.sender.verify_por(ICCID, bytes(ud)), PorError)
