# -*- test-case-name: tests.unit.smpp.test_queue -*-
"""Pushes waiting to be sent: a bounded queue that outlives any one connection.

A push accepted by the gateway must reach the SMSC even if the bind is down
at that moment, or drops with parts in flight.  So pushes wait here, not in
a connection: L{PushQueue} holds the SMS parts not yet sent (or sent over a
connection that was lost before the SMSC answered), and the sender takes
them out in order whenever a bound connection has room.

Order matters for concatenated SMs and for fairness, so a part that must go
again (throttled, or in flight when the link dropped) goes back I{ahead} of
everything queued after it, in its original place (L{OutgoingPart.ticket}),
and L{PushQueue.pop} serves those first.

The bound counts pushes, not parts, because that is what callers are
refused: beyond C{limit} waiting pushes L{PushQueue.offer} raises
L{QueueFullError} at once rather than letting work pile up unseen.
"""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Callable, Hashable, Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from bipgw.codec.smpp import SubmitSm
from bipgw.core import PushError
from bipgw.push import SmsSubmission

__all__ = ["OutgoingPart", "PushJob", "PushQueue", "QueueFullError"]


class QueueFullError(PushError):
    """The push queue is at its bound; the push was not accepted.

    Transient: the engine may try again later, when the queue has drained.
    """


class PushJob:
    """One submission being sent: its SMS parts, their SMSC message ids, its result.

    The job succeeds when the SMSC has accepted every part and fails at the
    first part it refuses (its other parts are then not sent); either way
    L{deferred} fires exactly once.

    @ivar sms: what the push sender asked for (MSISDN, parts, label).
    @ivar parts: the submit_sm of each part, sequence_number not yet set.
    @ivar message_ids: the SMSC's id of each accepted part, C{None} before.
    @ivar deferred: fires with every part's message id, or fails with L{PushError};
        cancelling it calls L{on_cancel} (the pump drops the waiting parts).
    @ivar on_cancel: called with the job when L{deferred} is cancelled.
    """

    def __init__(
        self,
        sms: SmsSubmission,
        parts: Sequence[SubmitSm],
        encoded: Sequence[bytes] | None = None,
    ) -> None:
        if not parts:
            raise ValueError("a push has at least one SMS part")
        if encoded is not None and len(encoded) != len(parts):
            raise ValueError(f"{len(encoded)} encoded parts for {len(parts)} submit_sm")
        self.sms = sms
        self.parts = tuple(parts)
        #: Each part's submit_sm encoded (sequence_number 0), or C{None}:
        #: encoded once when the push is accepted, then sent as bytes with
        #: the sequence_number written in (issue 14: encoding it again, and
        #: copying the PDU for its sequence_number, on every send).
        self.encoded = None if encoded is None else tuple(encoded)
        self.message_ids: list[str | None] = [None] * len(self.parts)
        self.on_cancel: Callable[[PushJob], object] | None = None
        self.deferred: Deferred[tuple[str, ...]] = Deferred(self._cancelled)

    @property
    def done(self) -> bool:
        """Whether the result is known (accepted, refused or abandoned)."""
        return self.deferred.called

    @property
    def accepted(self) -> int:
        """How many parts the SMSC has accepted."""
        return sum(1 for m in self.message_ids if m is not None)

    def describe(self) -> str:
        """Which push this is, for log lines and errors."""
        return (
            f"{self.sms.label} to MSISDN {self.sms.msisdn}"
            f" ({len(self.parts)} SMS part{'s' if len(self.parts) > 1 else ''})"
        )

    def part_accepted(self, index: int, message_id: str) -> bool:
        """Record the SMSC's id for part C{index}; fire L{deferred} when all are in.

        @return: whether this completed the push.
        """
        if self.done:
            return False
        self.message_ids[index] = message_id
        if any(m is None for m in self.message_ids):
            return False
        self.deferred.callback(tuple(m for m in self.message_ids if m is not None))
        return True

    def fail(self, error: PushError) -> bool:
        """Fail the push (unless its result is already known).

        @return: whether this ended it.
        """
        if self.done:
            return False
        self.deferred.errback(Failure(error))
        return True

    def _cancelled(self, _: Deferred[tuple[str, ...]]) -> None:
        # The Deferred fails with CancelledError after this returns.
        if self.on_cancel is not None:
            self.on_cancel(self)

    def __repr__(self) -> str:
        return f"<PushJob {self.describe()}>"


class OutgoingPart:
    """One SMS part on its way: its job, its place, how often it was sent.

    @ivar job: the push it belongs to.
    @ivar index: its position among the job's parts, from 0.
    @ivar ticket: its place in the queue's order (smaller goes first).
    @ivar sends: how many times it has been written to a connection.
    """

    __slots__ = ("index", "job", "sends", "ticket")

    def __init__(self, job: PushJob, index: int, ticket: int) -> None:
        self.job = job
        self.index = index
        self.ticket = ticket
        self.sends = 0

    @property
    def pdu(self) -> SubmitSm:
        """The part's submit_sm, sequence_number still to be set."""
        return self.job.parts[self.index]

    @property
    def encoded(self) -> bytes | None:
        """The part's submit_sm encoded with sequence_number 0, if the job has it."""
        encoded = self.job.encoded
        return None if encoded is None else encoded[self.index]

    def __lt__(self, other: OutgoingPart) -> bool:
        return self.ticket < other.ticket

    def __repr__(self) -> str:
        return f"<part {self.index + 1}/{len(self.job.parts)} of {self.job.describe()}>"


class PushQueue:
    """Parts waiting to be sent, in order, with a bound on the pushes waiting.

    @param limit: the most pushes that may have parts waiting (>= 1).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        self.limit = limit
        self._tickets = itertools.count()
        self._fresh: collections.deque[OutgoingPart] = collections.deque()
        self._again: list[OutgoingPart] = []
        self._waiting: dict[PushJob, int] = {}
        # The waiting jobs of each thread, so that finding a session's older
        # attempts (superseded) costs its own jobs, not a scan of the queue:
        # a scan per offer made a burst of n pushes cost O(n^2) (issue 14).
        self._threads: dict[Hashable, list[PushJob]] = {}

    def __len__(self) -> int:
        """How many parts are waiting."""
        return len(self._fresh) + len(self._again)

    @property
    def pushes(self) -> int:
        """How many pushes have parts waiting."""
        return len(self._waiting)

    @property
    def full(self) -> bool:
        """Whether L{offer} would refuse a push now."""
        return len(self._waiting) >= self.limit

    def jobs(self) -> list[PushJob]:
        """The pushes with parts waiting, oldest first."""
        return list(self._waiting)

    def offer(self, job: PushJob) -> None:
        """Queue every part of C{job}, after everything already waiting.

        @raise QueueFullError: C{limit} pushes are already waiting.
        """
        if self.full:
            raise QueueFullError(
                f"the push queue is full ({len(self._waiting)} pushes waiting for the SMSC,"
                f" limit {self.limit}); {job.describe()} was not accepted"
            )
        if job in self._waiting:
            raise ValueError(f"{job!r} is already queued")
        for index in range(len(job.parts)):
            self._fresh.append(OutgoingPart(job, index, next(self._tickets)))
        self._waiting[job] = len(job.parts)
        self._joined(job)

    def resend(self, parts: Sequence[OutgoingPart]) -> None:
        """Put parts that must go again back in their original places.

        The bound does not apply: these pushes were accepted already.
        Parts of a push that has ended are dropped.
        """
        for part in parts:
            if part.job.done:
                continue
            bisect.insort(self._again, part)
            if part.job not in self._waiting:
                self._joined(part.job)
            self._waiting[part.job] = self._waiting.get(part.job, 0) + 1

    def pop(self) -> OutgoingPart | None:
        """The next part to send (resends first, in order), or C{None}."""
        while self._again or self._fresh:
            part = self._again.pop(0) if self._again else self._fresh.popleft()
            self._taken(part.job)
            if not part.job.done:
                return part
        return None

    def discard(self, job: PushJob) -> int:
        """Drop the waiting parts of C{job}; return how many there were."""
        if self._waiting.pop(job, None) is None:
            return 0
        self._left(job)
        before = len(self)
        self._fresh = collections.deque(p for p in self._fresh if p.job is not job)
        self._again = [p for p in self._again if p.job is not job]
        return before - len(self)

    def superseded(self, sms: SmsSubmission) -> list[PushJob]:
        """The waiting submissions of C{sms}'s thread with a lower sequence.

        (A session's older push attempts: sending them after a newer one
        would only burn an OTA counter on a push nobody waits for.)
        """
        if sms.thread is None:
            return []
        jobs = self._threads.get(sms.thread, ())
        return [job for job in jobs if job.sms.sequence < sms.sequence]

    def _taken(self, job: PushJob) -> None:
        left = self._waiting.get(job)
        if left is None:
            return
        if left <= 1:
            del self._waiting[job]
            self._left(job)
        else:
            self._waiting[job] = left - 1

    def _joined(self, job: PushJob) -> None:
        thread = job.sms.thread
        if thread is not None:
            self._threads.setdefault(thread, []).append(job)

    def _left(self, job: PushJob) -> None:
        thread = job.sms.thread
        jobs = self._threads.get(thread) if thread is not None else None
        if jobs is None:
            return
        if job in jobs:
            jobs.remove(job)
        if not jobs:
            del self._threads[thread]
