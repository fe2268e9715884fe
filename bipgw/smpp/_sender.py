# -*- test-case-name: tests.unit.smpp.test_sender -*-
"""Moving pushes from the queue to the SMSC: window, rate cap, throttling, resends.

L{SubmitPump} is the one place that decides when a part may go.  It takes
parts from its L{PushQueue} while a bound L{EsmeLink} is attached, the
link's window has room, the L{TokenBucket} has a token and no throttling
pause is running; and it reads what the SMSC answered:

  - C{ESME_ROK}: the part is accepted (the push succeeds when all are);
  - C{ESME_RTHROTTLED}, C{ESME_RMSGQFUL}: the same part goes back in its
    place and sending pauses for a growing delay (L{Backoff});
  - C{ESME_RINVBNDSTS}: the part goes back; the link rebinds;
  - anything else: the push fails, naming the status (permanent when
    resending cannot help, e.g. C{ESME_RINVDSTADR}).

When a link drops, the parts it had in flight go back in their places and
are sent again after the next bind, so no accepted push is lost to a
reconnection; a part that keeps losing its connection fails its push after
C{max_sends} tries, so one poisonous PDU cannot loop for ever.  This is
at-least-once: the SMSC may have accepted a part whose answer was lost, and
the card then gets two copies; it refuses the second as a replay (same
counter), which the session engine ignores after an OK PoR.

Pure: time comes from the injected clock, the connection from the link.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from bipgw.codec.smpp import CommandStatus, describe_status
from bipgw.core import PushError
from bipgw.smpp._link import EsmeLink
from bipgw.smpp._queue import OutgoingPart, PushJob, PushQueue
from bipgw.smpp._settings import EsmeSettings
from bipgw.smpp._window import Backoff, TokenBucket

__all__ = ["PERMANENT_STATUSES", "THROTTLING_STATUSES", "SubmitPump"]

_S = CommandStatus

THROTTLING_STATUSES: Final = frozenset({_S.ESME_RTHROTTLED, _S.ESME_RMSGQFUL})
"""The SMSC asks us to slow down: pause, then send the same part again."""

PERMANENT_STATUSES: Final = frozenset(
    {
        _S.ESME_RINVMSGLEN,
        _S.ESME_RINVSRCADR,
        _S.ESME_RINVDSTADR,
        _S.ESME_RINVESMCLASS,
        _S.ESME_RINVSRCTON,
        _S.ESME_RINVSRCNPI,
        _S.ESME_RINVDSTTON,
        _S.ESME_RINVDSTNPI,
        _S.ESME_RINVSERTYP,
        _S.ESME_RINVREGDLVFLG,
        _S.ESME_RINVPRTFLG,
        _S.ESME_RINVOPTPARSTREAM,
        _S.ESME_ROPTPARNOTALLWD,
        _S.ESME_RINVPARLEN,
        _S.ESME_RMISSINGOPTPARAM,
        _S.ESME_RINVOPTPARAMVAL,
        _S.ESME_RX_P_APPN,
        _S.ESME_RX_R_APPN,
    }
)
"""Refusals about the message itself: sending it again cannot help."""


class SubmitPump:
    """Sends queued push parts through whichever link is bound (module docstring).

    @param clock: the time source for the rate cap and the pauses.
    @param settings: window, rate, throttling backoff, queue bound, max_sends.
    @param on_accepted: called with the job, the part's index and the
        SMSC's message id each time a part is accepted (for metrics and tests).

    @ivar queue: the parts waiting.
    @ivar sent: submit_sm written (resends included).
    @ivar accepted: parts the SMSC accepted.
    @ivar throttled: C{ESME_RTHROTTLED}/C{ESME_RMSGQFUL} answers.
    @ivar refused: parts refused with any other status.
    @ivar resent: parts queued again after a dropped connection.
    @ivar answers: submit_sm answers by command_status (for metrics); at
        most 64 statuses, any further one counted under C{-1}.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        settings: EsmeSettings,
        *,
        on_accepted: Callable[[PushJob, int, str], object] | None = None,
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._on_accepted = on_accepted
        self.queue = PushQueue(settings.queue_limit)
        self._bucket = TokenBucket(clock, settings.rate, settings.burst)
        self._throttle = Backoff(
            settings.throttle_initial_delay,
            settings.throttle_max_delay,
            settings.throttle_factor,
        )
        self._link: EsmeLink | None = None
        self._pause: IDelayedCall | None = None
        self._wake: IDelayedCall | None = None
        self._pumping = False
        self._stopped = False
        self.sent = self.accepted = self.throttled = self.refused = self.resent = 0
        self.answers: dict[int, int] = {}

    # -- the service's side ------------------------------------------------

    @property
    def link(self) -> EsmeLink | None:
        """The bound link parts go out on, if any."""
        return self._link

    @property
    def stopped(self) -> bool:
        """Whether L{stop} was called: the pump accepts nothing more."""
        return self._stopped

    @property
    def paused(self) -> bool:
        """Whether a throttling pause is running."""
        return self._pause is not None

    def offer(self, job: PushJob) -> None:
        """Accept a push for sending (now, or once a link is bound).

        Waiting submissions of the same thread with a lower sequence (a
        session's earlier push attempts) are failed and dropped: nobody
        waits for them any more.

        @raise PushError: the pump is stopped, or the queue is full
            (L{bipgw.smpp.QueueFullError}).
        """
        if self._stopped:
            raise PushError("the SMPP client is stopped; the push was not accepted")
        for old in self.queue.superseded(job.sms):
            self.queue.discard(old)
            old.fail(PushError(f"superseded by {job.sms.label} before it was sent"))
        self.queue.offer(job)
        job.on_cancel = self.queue.discard
        self.pump()

    def attach(self, link: EsmeLink) -> None:
        """Send through C{link} (just bound) from now on."""
        self._link = link
        link.attach(self)
        self.pump()

    def detach(self) -> None:
        """Send nothing more through the current link (it is about to unbind).

        Answers to parts already sent are still read.
        """
        self._link = None

    def stop(self, why: str = "the SMPP client stopped") -> None:
        """Stop for good: cancel the timers and fail every waiting push."""
        self._stopped = True
        self._link = None
        for timer in (self._pause, self._wake):
            if timer is not None and timer.active():
                timer.cancel()
        self._pause = self._wake = None
        for job in self.queue.jobs():
            self.queue.discard(job)
            job.fail(PushError(f"{why} before {job.describe()} was sent"))

    def pump(self) -> None:
        """Send as many waiting parts as the link, the rate cap and the SMSC allow."""
        if self._pumping or self._stopped:
            return
        self._pumping = True
        try:
            while len(self.queue) and self._pause is None:
                link = self._link
                if link is None or not link.has_room:
                    return
                wait = self._bucket.delay()
                if wait > 0 or not self._bucket.take():
                    if self._wake is None:
                        self._wake = self._clock.callLater(max(wait, 1e-6), self._woken)
                    return
                part = self.queue.pop()
                if part is None:
                    return
                link.submit(part)
                self.sent += 1
        finally:
            self._pumping = False

    # -- ISubmitOwner: what the link reports --------------------------------

    def submit_answered(self, part: OutgoingPart, status: int, message_id: str) -> None:
        """Act on the SMSC's answer to one part (see the module docstring)."""
        job = part.job
        answers = self.answers
        # The SMSC chooses the statuses: past 64 distinct ones, the rest
        # share one entry (-1), so a hostile SMSC cannot grow the dict.
        key = status if status in answers or len(answers) < 64 else -1
        answers[key] = answers.get(key, 0) + 1
        if status == _S.ESME_ROK:
            self._throttle.reset()
            self.accepted += 1
            if job.done:
                return
            if not message_id:
                self._log.warn(
                    "the SMSC accepted part {n} of {push} without a message id;"
                    " its delivery receipt cannot be matched",
                    n=part.index + 1,
                    push=job.describe(),
                )
            if self._on_accepted is not None:
                self._on_accepted(job, part.index, message_id)
            # No line per accepted push: at a campaign's rate it cost more than
            # the push (issue 14); self.accepted counts them.
            job.part_accepted(part.index, message_id)
        elif status in THROTTLING_STATUSES:
            self.throttled += 1
            if job.done:
                return
            self.queue.resend([part])
            if self._pause is None:
                delay = self._throttle.next_delay()
                self._log.warn(
                    "the SMSC answered {status}; pausing submits for {delay:g} s,"
                    " then sending the same part again",
                    status=describe_status(status),
                    delay=delay,
                )
                self._pause = self._clock.callLater(delay, self._resume)
        elif status == _S.ESME_RINVBNDSTS:
            self.queue.resend([part])
        else:
            self.refused += 1
            self._fail(
                job,
                PushError(
                    f"the SMSC refused part {part.index + 1} of {job.describe()}:"
                    f" {describe_status(status)}",
                    permanent=status in PERMANENT_STATUSES,
                ),
            )

    def window_opened(self) -> None:
        """A response freed a slot: send more."""
        self.pump()

    def link_lost(self, link: EsmeLink, unanswered: list[OutgoingPart]) -> None:
        """Put the parts the lost link left unanswered back in their places."""
        if link is self._link:
            self._link = None
        again = []
        for part in unanswered:
            job = part.job
            if job.done:
                continue
            if self._stopped:
                job.fail(PushError(f"the SMPP client stopped before the SMSC answered {job!r}"))
            elif part.sends >= self._settings.max_sends:
                self._fail(
                    job,
                    PushError(
                        f"part {part.index + 1} of {job.describe()} was sent {part.sends} times"
                        " over connections that dropped before the SMSC answered"
                    ),
                )
            else:
                again.append(part)
        if again:
            self.resent += len(again)
            self._log.info(
                "{n} SMS part(s) in flight when the connection dropped will be sent again",
                n=len(again),
            )
            self.queue.resend(again)

    # -- internals -----------------------------------------------------------

    def _fail(self, job: PushJob, error: PushError) -> None:
        self.queue.discard(job)
        if job.fail(error):
            self._log.warn("{error}", error=str(error))

    def _resume(self) -> None:
        self._pause = None
        self.pump()

    def _woken(self) -> None:
        self._wake = None
        self.pump()
