# -*- test-case-name: tests.unit.core.test_engine_push -*-
"""The push phase of a session: send, resend with backoff, give up.

A card connects only after it has received and verified a push SMS, and
SMS is lossy: a push may be refused by the SMSC, may never be delivered,
or may arrive while the handset is out of coverage.  So the session sends
the push again (with growing waits, L{SessionPolicy.retry_wait} and
L{SessionPolicy.card_wait}) until the card connects or the attempts run out.
Delivery receipts and the card's PoR are folded in as they arrive.

This is a mixin of L{bipgw.core._session.SessionMachine}, kept apart so
each module stays one concern; it uses the machine's state, timers and
C{_finish}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.ota import PorStatus
from bipgw.core._types import (
    CardRecord,
    FailureReason,
    PushError,
    PushOrder,
    PushReceipt,
    SessionId,
    SessionState,
)

if TYPE_CHECKING:
    from bipgw.core._interfaces import IPushSender
    from bipgw.core._policy import SessionPolicy

_S = SessionState
# PoR statuses that do not mean the card refused the push.
_POR_BENIGN: Final = frozenset(
    {PorStatus.POR_OK, PorStatus.MORE_TIME, PorStatus.RESPONSE_BY_SMS_SUBMIT}
)


class PushPhase:
    """Push sending and resending for L{SessionMachine}."""

    _log: Logger
    id: SessionId
    service: str
    state: SessionState
    card: CardRecord | None
    _attempt: int
    _policy: SessionPolicy
    _push_sender: IPushSender

    # Provided by SessionMachine.
    @property
    def awaiting_card(self) -> bool:
        raise NotImplementedError()

    def note(self, detail: str) -> None:
        raise NotImplementedError()

    def _move(self, to: SessionState, detail: str) -> None:
        raise NotImplementedError()

    def _finish(self, state: SessionState, reason: FailureReason | None, detail: str) -> None:
        raise NotImplementedError()

    def _set_timer(self, delay: float, action: Callable[[], None]) -> None:
        raise NotImplementedError()

    def _flush(self) -> None:
        raise NotImplementedError()

    # -- inputs ----------------------------------------------------------

    def push_delivered(self, attempt: int, delivered: bool, detail: str) -> None:
        """A delivery receipt for push C{attempt} arrived.

        A failed delivery of the current push counts as a failed push (sent
        again after the retry wait); anything else is only noted.
        """
        suffix = f": {detail}" if detail else ""
        if not delivered and attempt == self._attempt and self.awaiting_card:
            self._push_failed(
                attempt, FailureReason.PUSH_FAILED, f"push {attempt} not delivered{suffix}"
            )
        else:
            self.note(f"push {attempt} {'delivered' if delivered else 'not delivered'}{suffix}")
        self._flush()

    def por(self, status: int, detail: str) -> None:
        """The card's proof of receipt for the push arrived.

        An error status (bad checksum, counter, unknown TAR, ...) means the
        card refused the push and will never connect: the session fails at
        once, naming the status, since resending the same push cannot help.
        """
        try:
            name = PorStatus(status).name
        except ValueError:
            name = "unknown status"
        text = f"PoR status 0x{status:02X} ({name})" + (f": {detail}" if detail else "")
        if status in _POR_BENIGN or not self.awaiting_card:
            self.note(text)
        else:
            self._finish(_S.FAILED, FailureReason.POR_ERROR, text)
        self._flush()

    # -- the attempts ----------------------------------------------------

    def _push(self) -> None:
        self._attempt = attempt = self._attempt + 1
        policy = self._policy
        self._move(_S.PUSHING, f"push {attempt} of {policy.attempts}")
        self._set_timer(
            policy.push_timeout,
            lambda: self._push_failed(
                attempt,
                FailureReason.PUSH_TIMEOUT,
                f"push {attempt} not accepted within {policy.push_timeout:g} s",
            ),
        )
        assert self.card is not None
        order = PushOrder(self.id, self.card.iccid, self.card.msisdn, attempt, self.service)
        try:
            sent: Deferred[PushReceipt] = self._push_sender.send_push(order)
        except Exception:
            sent = fail(Failure())
        sent.addCallbacks(
            self._push_accepted,
            self._push_error,
            callbackArgs=(attempt,),
            errbackArgs=(attempt,),
        )

    def _current(self, attempt: int) -> bool:
        return attempt == self._attempt and self.state is _S.PUSHING and self.awaiting_card

    def _push_accepted(self, receipt: object, attempt: int) -> None:
        if not self._current(attempt):
            return
        ids = receipt.message_ids if isinstance(receipt, PushReceipt) else ()
        wait = self._policy.card_wait(attempt)
        self._move(
            _S.AWAITING_CARD,
            f"push {attempt} accepted (message ids: {', '.join(ids) or 'none'});"
            f" waiting {wait:g} s for the card",
        )
        self._set_timer(wait, lambda: self._card_timed_out(attempt, wait))
        self._flush()

    def _push_error(self, failure: Failure, attempt: int) -> None:
        if not self._current(attempt):
            return
        error = failure.value
        if not isinstance(error, PushError):
            self._log.failure(
                "push sender failed for session {session_id}", failure, session_id=self.id
            )
        permanent = isinstance(error, PushError) and error.permanent
        self._push_failed(
            attempt, FailureReason.PUSH_FAILED, f"push {attempt} failed: {error}", permanent
        )
        self._flush()

    def _push_failed(
        self, attempt: int, reason: FailureReason, detail: str, permanent: bool = False
    ) -> None:
        if attempt != self._attempt or not self.awaiting_card:
            return
        if permanent:
            self._finish(_S.FAILED, reason, f"{detail}; not retried")
        elif attempt >= self._policy.attempts:
            self._finish(_S.FAILED, reason, f"{detail}; no attempts left")
        else:
            wait = self._policy.retry_wait(attempt)
            self.note(f"{detail}; sending again in {wait:g} s")
            self._set_timer(wait, self._retry)

    def _retry(self) -> None:
        if self.awaiting_card:
            self._push()

    def _card_timed_out(self, attempt: int, waited: float) -> None:
        if attempt < self._policy.attempts:
            self.note(f"no connection within {waited:g} s of push {attempt}")
            self._push()
        else:
            self._finish(
                _S.FAILED,
                FailureReason.CARD_TIMEOUT,
                f"no connection within {waited:g} s of push {attempt}, the last allowed",
            )
