"""One ESME connection's state machine, driven PDU by PDU on a Clock.

The transport is a list: what the link sends is appended, and closing is
recorded; the test plays the SMSC by feeding PDUs to L{EsmeLink.pdu_received}.
"""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import (
    AlertNotification,
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    decode,
    encode,
)
from bipgw.core import PushError
from bipgw.smpp import BindResult, EsmeLink, LinkState, OutgoingPart, PushJob
from tests.unit.smpp import SETTINGS, sms

_S = CommandStatus


class ListTransport:
    """Records the PDUs written and how the connection was closed."""

    def __init__(self) -> None:
        self.sent: list[Pdu] = []
        self.closed: bool | None = None

    def send_pdu(self, pdu: Pdu) -> None:
        self.sent.append(pdu)

    def send_encoded(self, data: bytes) -> None:
        self.sent.append(decode(data))

    def close(self, abort: bool = False) -> None:
        self.closed = abort


class Owner:
    """Records what the link reports to its submit owner."""

    def __init__(self) -> None:
        self.answers: list[tuple[OutgoingPart, int, str]] = []
        self.opened = 0
        self.lost: list[list[OutgoingPart]] = []

    def submit_answered(self, part: OutgoingPart, status: int, message_id: str) -> None:
        self.answers.append((part, status, message_id))

    def window_opened(self) -> None:
        self.opened += 1

    def link_lost(self, link: EsmeLink, unanswered: list[OutgoingPart]) -> None:
        self.lost.append(unanswered)


def _parts(n: int, *, encoded: bool = True) -> list[OutgoingPart]:
    """C{n} parts of one job, encoded once (as the service makes them) or not."""
    pdus = [SubmitSm(0, 0, destination_addr=str(i)) for i in range(n)]
    job = PushJob(sms(), pdus, [encode(p) for p in pdus] if encoded else None)
    return [OutgoingPart(job, i, i) for i in range(n)]


class LinkTestCase(SynchronousTestCase):
    settings = attrs.evolve(SETTINGS, window=2)

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = ListTransport()
        self.delivered: list[DeliverSm] = []
        self.lost: list[str] = []
        self.link = EsmeLink(
            self.clock,
            self.transport,
            self.settings,
            on_deliver=self.delivered.append,
            on_lost=lambda link, why: self.lost.append(why),
        )
        self.owner = Owner()
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def bound(self) -> None:
        result = self.link.bind()
        bind = self.transport.sent[-1]
        assert isinstance(bind, BindTransceiver)
        self.link.pdu_received(bind.response("SMSC"))
        self.assertTrue(self.successResultOf(result).bound)
        self.link.attach(self.owner)

    def lose(self) -> None:
        self.link.connection_lost(Failure(ConnectionError("gone")))


class BindTests(LinkTestCase):
    """The bind and its three ways to fail."""

    def test_bound(self) -> None:
        """bind_resp OK: bound, with the SMSC's system_id; the keep-alive starts."""
        result = self.link.bind()
        self.assertEqual(self.link.state, LinkState.BINDING)
        bind = self.transport.sent[0]
        assert isinstance(bind, BindTransceiver)
        self.assertEqual((bind.system_id, bind.password), ("bipgw", "secret"))
        self.link.pdu_received(bind.response("SMSC"))
        self.assertEqual(self.successResultOf(result), BindResult(True, "bound", None, "SMSC"))
        self.assertEqual(self.link.state, LinkState.BOUND)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.lose()

    def test_refused(self) -> None:
        """A bind_resp with an error status is a refusal naming the status."""
        result = self.link.bind()
        bind = self.transport.sent[0]
        self.link.pdu_received(
            BindTransceiverResp(bind.sequence_number, int(_S.ESME_RINVSYSID), "SMSC")
        )
        outcome = self.successResultOf(result)
        self.assertFalse(outcome.bound)
        self.assertEqual(outcome.status, _S.ESME_RINVSYSID)
        self.assertIn("ESME_RINVSYSID", outcome.reason)
        self.assertEqual(self.link.state, LinkState.BINDING)
        self.lose()

    def test_genericNackRefuses(self) -> None:
        """A generic_nack to the bind is a refusal too."""
        result = self.link.bind()
        self.link.pdu_received(GenericNack(1, int(_S.ESME_RINVCMDID)))
        self.assertIn("ESME_RINVCMDID", self.successResultOf(result).reason)
        self.lose()

    def test_timeout(self) -> None:
        """No bind_resp within response_timeout ends the bind as failed."""
        result = self.link.bind()
        self.clock.advance(4.9)
        self.assertNoResult(result)
        self.clock.advance(0.1)
        self.assertIn("no bind_resp within 5 s", self.successResultOf(result).reason)
        self.lose()

    def test_lostWhileBinding(self) -> None:
        """A connection lost during the bind ends it as failed, timer cancelled."""
        result = self.link.bind()
        self.lose()
        outcome = self.successResultOf(result)
        self.assertIn("lost before bind_resp", outcome.reason)
        self.assertEqual(self.lost, ["gone"])


class KeepAliveTests(LinkTestCase):
    """enquire_link on an idle link, and what happens without an answer."""

    def test_enquireAfterIdleInterval(self) -> None:
        """Inbound traffic postpones the enquire_link; idle for the interval sends one."""
        self.bound()
        self.clock.advance(20)
        self.link.pdu_received(EnquireLink(77))
        self.assertEqual(self.transport.sent[-1], EnquireLinkResp(77))
        self.clock.advance(29)
        self.assertNotIsInstance(self.transport.sent[-1], EnquireLink)
        self.clock.advance(1)
        enquiry = self.transport.sent[-1]
        assert isinstance(enquiry, EnquireLink)
        self.link.pdu_received(enquiry.response())
        self.clock.advance(30)
        self.assertIsInstance(self.transport.sent[-1], EnquireLink)
        self.lose()

    def test_unansweredEnquireDrops(self) -> None:
        """No enquire_link_resp within response_timeout aborts the connection."""
        self.bound()
        self.clock.advance(30)
        self.clock.advance(5)
        self.assertTrue(self.transport.closed)
        self.lose()


class SubmitTests(LinkTestCase):
    """The window: numbering, answers, timeouts, and what goes back on loss."""

    def test_submitsMatchedBySequenceNumber(self) -> None:
        """Responses reach the owner for the right part, in any order; the window reopens."""
        self.bound()
        a, b = _parts(2)
        seq_a = self.link.submit(a)
        seq_b = self.link.submit(b)
        self.assertFalse(self.link.has_room)
        self.assertRaises(RuntimeError, self.link.submit, a)
        self.link.pdu_received(SubmitSmResp(seq_b, 0, "B"))
        self.link.pdu_received(SubmitSmResp(seq_a, 0, "A"))
        answers = [(p.index, s, m) for p, s, m in self.owner.answers]
        self.assertEqual(answers, [(1, 0, "B"), (0, 0, "A")])
        self.assertEqual(self.owner.opened, 2)
        self.assertEqual(self.transport.sent[-1].destination_addr, "1")  # type: ignore[attr-defined]
        self.assertEqual(a.sends, 1)
        self.lose()

    def test_sentAsEncodedOnce(self) -> None:
        """A part encoded once is written as those bytes with the link's
        sequence_number in its header: the PDU the link would have encoded;
        a part without its bytes is encoded when sent."""
        self.bound()
        a, b = _parts(2)
        (plain,) = _parts(1, encoded=False)
        for part in (a, plain):
            seq = self.link.submit(part)
            self.assertEqual(self.transport.sent[-1], attrs.evolve(part.pdu, sequence_number=seq))
            self.link.pdu_received(SubmitSmResp(seq, 0, "A"))
        self.assertEqual(b.encoded, encode(b.pdu))
        self.lose()

    def test_genericNackAnswersSubmit(self) -> None:
        """A generic_nack with a submit's sequence_number is that submit's answer."""
        self.bound()
        (part,) = _parts(1)
        seq = self.link.submit(part)
        self.link.pdu_received(GenericNack(seq, int(_S.ESME_RTHROTTLED)))
        self.assertEqual(self.owner.answers, [(part, int(_S.ESME_RTHROTTLED), "")])
        self.lose()

    def test_notBoundAnswerRebinds(self) -> None:
        """ESME_RINVBNDSTS drops the link so that the service binds again."""
        self.bound()
        (part,) = _parts(1)
        seq = self.link.submit(part)
        self.link.pdu_received(SubmitSmResp(seq, int(_S.ESME_RINVBNDSTS)))
        self.assertTrue(self.transport.closed)
        self.lose()

    def test_timeoutDropsAndHandsBackParts(self) -> None:
        """An unanswered submit drops the link; every unanswered part goes back, in order."""
        self.bound()
        a, b = _parts(2)
        self.link.submit(b)
        self.link.submit(a)
        self.clock.advance(5)
        self.assertTrue(self.transport.closed)
        self.assertFalse(self.link.has_room)
        self.lose()
        self.assertEqual(self.owner.lost, [[a, b]])

    def test_whenDrained(self) -> None:
        """when_drained fires once the last outstanding submit is answered."""
        self.bound()
        (part,) = _parts(1)
        self.successResultOf(self.link.when_drained())
        seq = self.link.submit(part)
        drained = self.link.when_drained()
        self.assertNoResult(drained)
        self.link.pdu_received(SubmitSmResp(seq, 0, "x"))
        self.successResultOf(drained)
        self.lose()


class RequestTests(LinkTestCase):
    """What the SMSC asks of the ESME."""

    def test_deliverSmAnsweredAfterHandler(self) -> None:
        """deliver_sm goes to the handler and is answered with its sequence_number."""
        self.bound()
        pdu = DeliverSm(41, 0, short_message=b"x")
        self.link.pdu_received(pdu)
        self.assertEqual(self.delivered, [pdu])
        self.assertEqual(self.transport.sent[-1], DeliverSmResp(41))
        self.lose()

    def test_deliverSmAnsweredWhenHandlerFails(self) -> None:
        """A failing handler is logged; the deliver_sm is answered all the same."""
        link = EsmeLink(self.clock, self.transport, self.settings, on_deliver=lambda p: 1 / 0)
        link.pdu_received(DeliverSm(5, 0))
        self.assertEqual(self.transport.sent[-1], DeliverSmResp(5))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_smscUnbind(self) -> None:
        """An unbind from the SMSC is answered, then the connection is closed."""
        self.bound()
        self.link.pdu_received(Unbind(9))
        self.assertEqual(self.transport.sent[-1], UnbindResp(9))
        self.assertFalse(self.transport.closed)
        self.assertEqual(self.link.state, LinkState.UNBINDING)
        self.lose()

    def test_unsupportedRequestsNacked(self) -> None:
        """data_sm is refused with generic_nack ESME_RINVCMDID; alert_notification ignored."""
        self.bound()
        self.link.pdu_received(DataSm(3, 0))
        self.assertEqual(self.transport.sent[-1], GenericNack(3, int(_S.ESME_RINVCMDID)))
        count = len(self.transport.sent)
        self.link.pdu_received(AlertNotification(4, 0))
        self.assertEqual(len(self.transport.sent), count)
        self.lose()


class UnbindTests(LinkTestCase):
    """Leaving politely."""

    def test_unbindAnswered(self) -> None:
        """unbind waits for unbind_resp, then closes the connection gracefully."""
        self.bound()
        done = self.link.unbind()
        unbind = self.transport.sent[-1]
        assert isinstance(unbind, Unbind)
        self.assertNoResult(done)
        self.link.pdu_received(unbind.response())
        self.successResultOf(done)
        self.assertIs(self.transport.closed, False)
        self.lose()

    def test_unbindUnanswered(self) -> None:
        """Without unbind_resp, the connection is aborted after response_timeout."""
        self.bound()
        done = self.link.unbind()
        self.clock.advance(5)
        self.successResultOf(done)
        self.assertIs(self.transport.closed, True)
        self.lose()

    def test_unbindWhenNotBound(self) -> None:
        """Nothing to unbind: the Deferred fires at once and nothing is sent."""
        self.successResultOf(self.link.unbind())
        self.assertEqual(self.transport.sent, [])

    def test_lostPartsOfFinishedJobsStillReported(self) -> None:
        """The owner gets unanswered parts even of pushes that already ended (it filters)."""
        self.bound()
        (part,) = _parts(1)
        self.link.submit(part)
        part.job.fail(PushError("done elsewhere"))
        self.failureResultOf(part.job.deferred)
        self.lose()
        self.assertEqual(self.owner.lost, [[part]])

    def test_nothingAfterClose(self) -> None:
        """Once closed, PDUs are ignored and nothing is sent."""
        self.lose()
        self.link.pdu_received(EnquireLink(1))
        self.assertEqual(self.transport.sent, [])
