"""The push queue: order, resends in place, the bound, jobs' results."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import SubmitSm
from bipgw.core import PushError
from bipgw.smpp import OutgoingPart, PushJob, PushQueue, QueueFullError
from tests.unit.smpp import sms


def _job(session: str = "s1", parts: int = 1, attempt: int = 1) -> PushJob:
    return PushJob(
        sms(attempt=attempt, session=session),
        [SubmitSm(0, 0, destination_addr=f"{session}/{i}") for i in range(parts)],
    )


def _drain(queue: PushQueue) -> list[str]:
    out = []
    while (part := queue.pop()) is not None:
        out.append(part.pdu.destination_addr)
    return out


class PushJobTests(SynchronousTestCase):
    """One push's result."""

    def test_acceptedWhenAllPartsAre(self) -> None:
        """The receipt fires once every part has its message id, in part order."""
        job = _job(parts=2)
        self.assertFalse(job.part_accepted(1, "b"))
        self.assertNoResult(job.deferred)
        self.assertTrue(job.part_accepted(0, "a"))
        self.assertEqual(self.successResultOf(job.deferred), ("a", "b"))
        self.assertEqual(
            job.describe(), "push 1 of session s1 to MSISDN +447700900123 (2 SMS parts)"
        )
        self.assertFalse(job.fail(PushError("late")))

    def test_failOnce(self) -> None:
        """A job fails once; later answers are ignored."""
        job = _job()
        self.assertTrue(job.fail(PushError("no")))
        self.assertFalse(job.part_accepted(0, "a"))
        self.failureResultOf(job.deferred, PushError)

    def test_cancelCallsHook(self) -> None:
        """Cancelling the Deferred calls on_cancel with the job."""
        job = _job()
        seen: list[PushJob] = []
        job.on_cancel = seen.append
        job.deferred.cancel()
        self.assertEqual(seen, [job])
        self.assertTrue(job.done)
        self.failureResultOf(job.deferred)

    def test_needsParts(self) -> None:
        """A push without SMS parts is a programming error."""
        self.assertRaises(ValueError, PushJob, sms(), [])


class PushQueueTests(SynchronousTestCase):
    """Parts in order, resends first, pushes bounded."""

    def test_fifo(self) -> None:
        """Parts come out in the order their pushes were offered."""
        queue = PushQueue(10)
        queue.offer(_job("a", 2))
        queue.offer(_job("b", 1))
        self.assertEqual((len(queue), queue.pushes), (3, 2))
        self.assertEqual(_drain(queue), ["a/0", "a/1", "b/0"])
        self.assertEqual(queue.pushes, 0)

    def test_resendsGoBackInTheirPlace(self) -> None:
        """Parts sent again come before fresh ones, in their original order."""
        queue = PushQueue(10)
        for name in "abcd":
            queue.offer(_job(name))
        a, b, c = queue.pop(), queue.pop(), queue.pop()
        assert a is not None and b is not None and c is not None
        queue.resend([c])
        queue.resend([a])
        self.assertEqual(_drain(queue), ["a/0", "c/0", "d/0"])
        self.assertIsInstance(b, OutgoingPart)

    def test_boundCountsPushesNotParts(self) -> None:
        """Two pushes of any size fill a queue of 2; a third is refused, naming it."""
        queue = PushQueue(2)
        queue.offer(_job("a", 5))
        queue.offer(_job("b", 5))
        self.assertTrue(queue.full)
        with self.assertRaises(QueueFullError) as ctx:
            queue.offer(_job("c"))
        self.assertIn("session c", str(ctx.exception))
        self.assertFalse(ctx.exception.permanent)
        queue.pop()
        self.assertTrue(queue.full)

    def test_resendIgnoresBoundAndEndedPushes(self) -> None:
        """Resends are always taken back, except parts of pushes already ended."""
        queue = PushQueue(1)
        queue.offer(_job("a"))
        part = queue.pop()
        assert part is not None
        queue.offer(_job("b"))
        queue.resend([part])
        self.assertEqual(queue.pushes, 2)
        ended = _job("z")
        ended.fail(PushError("over"))
        self.failureResultOf(ended.deferred)
        queue.resend([OutgoingPart(ended, 0, 99)])
        self.assertEqual(_drain(queue), ["a/0", "b/0"])

    def test_discard(self) -> None:
        """discard drops a push's waiting parts and frees its place."""
        queue = PushQueue(2)
        job = _job("a", 3)
        queue.offer(job)
        queue.offer(_job("b"))
        self.assertEqual(queue.discard(job), 3)
        self.assertEqual(queue.discard(job), 0)
        self.assertFalse(queue.full)
        self.assertEqual(_drain(queue), ["b/0"])

    def test_popSkipsEndedPushes(self) -> None:
        """A push that ended while queued is not handed out."""
        queue = PushQueue(5)
        job = _job("a")
        queue.offer(job)
        queue.offer(_job("b"))
        job.fail(PushError("cancelled"))
        self.failureResultOf(job.deferred)
        self.assertEqual(_drain(queue), ["b/0"])

    def test_superseded(self) -> None:
        """Earlier attempts of the same session are found; other sessions are not."""
        queue = PushQueue(5)
        old = _job("s1", attempt=1)
        other = _job("s2", attempt=1)
        queue.offer(old)
        queue.offer(other)
        self.assertEqual(queue.superseded(sms(attempt=2, session="s1")), [old])
        self.assertEqual(queue.superseded(sms(attempt=1, session="s1")), [])
        loose = attrs.evolve(sms(attempt=9, session="s1"), thread=None)
        self.assertEqual(queue.superseded(loose), [])

    def test_supersededOnlyWhileWaiting(self) -> None:
        """A push leaves its session's index when its last part is taken or it is
        discarded, and comes back when a part must be resent."""
        queue = PushQueue(5)
        sent, dropped = _job("s1", parts=2, attempt=1), _job("s1", attempt=2)
        queue.offer(sent)
        queue.offer(dropped)
        later = sms(attempt=3, session="s1")
        self.assertEqual(queue.superseded(later), [sent, dropped])
        first = queue.pop()
        self.assertEqual(queue.superseded(later), [sent, dropped], "a part still waits")
        second = queue.pop()
        assert first is not None and second is not None
        self.assertEqual(queue.superseded(later), [dropped])
        queue.discard(dropped)
        self.assertEqual(queue.superseded(later), [])
        queue.resend([second])
        self.assertEqual(queue.superseded(later), [sent])
        self.assertEqual(len(queue._threads), 1)
        queue.pop()
        self.assertEqual(queue._threads, {}, "no index entry outlives its pushes")
