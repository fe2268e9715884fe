"""The submit pump with a real link over a list transport, on a Clock."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import BindTransceiver, CommandStatus, SubmitSm, SubmitSmResp
from bipgw.core import PushError
from bipgw.smpp import EsmeLink, OutgoingPart, PushJob, SubmitPump
from tests.unit.smpp import SETTINGS, sms
from tests.unit.smpp.test_link import ListTransport

_S = CommandStatus


def _job(session: str, parts: int = 1) -> PushJob:
    return PushJob(
        sms(session=session), [SubmitSm(0, 0, destination_addr=session) for _ in range(parts)]
    )


class PumpTests(SynchronousTestCase):
    settings = attrs.evolve(SETTINGS, window=2)

    def setUp(self) -> None:
        self.clock = Clock()
        self.accepted: list[tuple[str, int, str]] = []
        self.pump = SubmitPump(
            self.clock,
            self.settings,
            on_accepted=lambda job, i, m: self.accepted.append((str(job.sms.thread), i, m)),
        )
        self.addCleanup(self._cleanup)

    def _cleanup(self) -> None:
        self.pump.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def link(self) -> tuple[EsmeLink, ListTransport]:
        transport = ListTransport()
        link = EsmeLink(self.clock, transport, self.settings)
        bound = link.bind()
        bind = transport.sent[-1]
        assert isinstance(bind, BindTransceiver)
        link.pdu_received(bind.response())
        self.assertTrue(self.successResultOf(bound).bound)
        self.pump.attach(link)
        self.addCleanup(link.connection_lost)
        return link, transport

    @staticmethod
    def submits(transport: ListTransport) -> list[SubmitSm]:
        return [p for p in transport.sent if isinstance(p, SubmitSm)]

    def answer(self, link: EsmeLink, pdu: SubmitSm, status: int = 0, mid: str = "m") -> None:
        link.pdu_received(SubmitSmResp(pdu.sequence_number, status, mid if not status else ""))

    def test_sendsWhenLinkAttached(self) -> None:
        """Queued parts wait for a link, then fill its window; answers make room for more."""
        jobs = [_job(f"s{i}") for i in range(3)]
        for job in jobs:
            self.pump.offer(job)
        link, transport = self.link()
        first, second = self.submits(transport)
        self.answer(link, first, mid="a")
        third = self.submits(transport)[2]
        self.assertEqual(third.destination_addr, "s2")
        self.answer(link, second, mid="b")
        self.answer(link, third, mid="c")
        self.assertEqual([self.successResultOf(j.deferred) for j in jobs], [("a",), ("b",), ("c",)])
        self.assertEqual(self.accepted, [("s0", 0, "a"), ("s1", 0, "b"), ("s2", 0, "c")])
        self.assertEqual((self.pump.sent, self.pump.accepted), (3, 3))

    def test_throttlingAnswersInOneWindowPauseOnce(self) -> None:
        """Several throttled answers from one window cause one pause, not a pile of them."""
        link, transport = self.link()
        jobs = [_job("a"), _job("b")]
        for job in jobs:
            self.pump.offer(job)
        for pdu in self.submits(transport):
            self.answer(link, pdu, int(_S.ESME_RTHROTTLED))
        self.assertTrue(self.pump.paused)
        self.assertEqual(self.pump.throttled, 2)
        self.clock.advance(1.0)
        again = self.submits(transport)[2:]
        self.assertEqual([p.destination_addr for p in again], ["a", "b"])
        for pdu in again:
            self.answer(link, pdu)
        for job in jobs:
            self.successResultOf(job.deferred)

    def test_failedPartStopsTheRestOfItsPush(self) -> None:
        """When one part is refused, the push fails and its other parts are not sent."""
        link, transport = self.link()
        job = _job("multi", parts=3)
        self.pump.offer(job)
        first = self.submits(transport)[0]
        self.answer(link, first, int(_S.ESME_RSUBMITFAIL))
        failure = self.failureResultOf(job.deferred, PushError)
        self.assertIn("part 1 of push 1", str(failure.value))
        self.answer(link, self.submits(transport)[1])
        self.assertEqual(len(self.submits(transport)), 2)
        self.assertEqual(self.pump.refused, 1)

    def test_stopFailsWaitingPushes(self) -> None:
        """stop fails what waits and refuses new pushes."""
        job = _job("a")
        self.pump.offer(job)
        self.pump.stop("shutting down")
        self.assertIn("shutting down", str(self.failureResultOf(job.deferred, PushError).value))
        self.assertRaises(PushError, self.pump.offer, _job("b"))
        self.assertTrue(self.pump.stopped)

    def test_partsInFlightAtStopFail(self) -> None:
        """After stop, parts handed back by a lost link fail their pushes."""
        link, _ = self.link()
        job = _job("a")
        self.pump.offer(job)
        self.pump.stop()
        link.connection_lost()
        self.failureResultOf(job.deferred, PushError)

    def test_detachSendsNothingMore(self) -> None:
        """After detach, queued parts stay queued; answers are still read."""
        link, transport = self.link()
        self.pump.offer(_job("a"))
        self.pump.detach()
        waiting = _job("b")
        self.pump.offer(waiting)
        self.answer(link, self.submits(transport)[0])
        self.assertEqual(len(self.submits(transport)), 1)
        self.assertEqual(self.pump.queue.pushes, 1)
        self.pump.stop()
        self.failureResultOf(waiting.deferred, PushError)


class AnswerCountTests(SynchronousTestCase):
    """The pump counts the SMSC's answers by status (what bipgw_smpp_responses reads)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.pump = SubmitPump(self.clock, attrs.evolve(SETTINGS, window=2))
        self.addCleanup(self.pump.stop)

    def test_countedByStatus(self) -> None:
        """Each answer over the real link is counted under its command_status."""
        transport = ListTransport()
        link = EsmeLink(self.clock, transport, SETTINGS)
        link.bind()
        link.pdu_received(transport.sent[-1].response())
        self.pump.attach(link)
        self.addCleanup(link.connection_lost)
        for n in range(2):
            job = _job(f"s{n}")
            job.deferred.addErrback(lambda f: f.trap(PushError))
            self.pump.offer(job)
        first, second = [p for p in transport.sent if isinstance(p, SubmitSm)]
        link.pdu_received(SubmitSmResp(first.sequence_number, 0, "m1"))
        link.pdu_received(SubmitSmResp(second.sequence_number, _S.ESME_RSYSERR, ""))
        self.assertEqual(self.pump.answers, {0: 1, int(_S.ESME_RSYSERR): 1})

    def test_boundedAgainstAHostileSmsc(self) -> None:
        """An SMSC answering with ever new statuses grows the count to 64
        entries; the rest share one (-1)."""
        for status in range(1000):
            job = _job(f"x{status}")
            job.deferred.addErrback(lambda f: f.trap(PushError))
            self.pump.submit_answered(OutgoingPart(job, 0, status), 0x1000 + status, "")
        self.assertEqual(len(self.pump.answers), 65)
        self.assertEqual(self.pump.answers[-1], 1000 - 64)
