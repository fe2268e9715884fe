# -*- test-case-name: tests.unit.core.test_engine_push -*-
"""The push phase of a session: send, resend with backoff, give up.

A card connects only after it has received and verified a push SMS, and
SMS is lossy: a push may be refused by the SMSC, may never be delivered,
or may arrive while the handset is out of coverage.  So the session sends
the push again (with growing waits, L{SessionPolicy.retry_wait} and
L{SessionPolicy.card_wait}) until the card connects or the attempts run out.
Delivery receipts and the card's PoR are folded in as they arrive.

L{PushAttempts} is an object its session machine holds; it reaches the
machine only through the few calls of L{PushHost} (as magic-wormhole's
machines reach each other through their interfaces), so the rules of
resending read here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.ota import PorStatus
from bipgw.core._interfaces import IPushSender
from bipgw.core._policy import SessionPolicy
from bipgw.core._types import (
    CardRecord,
    FailureReason,
    PushError,
    PushOrder,
    PushReceipt,
    SessionId,
    SessionState,
)

__all__ = ["PushAttempts", "PushHost"]

_S = SessionState
# PoR statuses that do not mean the card refused the push.
_POR_BENIGN: Final = frozenset(
    {PorStatus.POR_OK, PorStatus.MORE_TIME, PorStatus.RESPONSE_BY_SMS_SUBMIT}
)


class PushHost(Protocol):
    """What L{PushAttempts} needs from the session it pushes for."""

    @property
    def state(self) -> SessionState:
        """The session's state now."""

    @property
    def awaiting_card(self) -> bool:
        """Whether a connection from the card would still be taken."""

    def move(self, to: SessionState, detail: str) -> None:
        """Take the transition to C{to} (one of L{bipgw.core.TRANSITIONS})."""

    def note(self, detail: str) -> None:
        """Add C{detail} to the history without changing state."""

    def end(self, reason: FailureReason, detail: str) -> None:
        """Fail the session with C{reason}; what it owes fires at the next L{flush}."""

    def no_connection(self, detail: str) -> None:
        """The card did not connect after the last push: fail with C{card-timeout},
        or reach the card another way (an SMS fallback)."""

    def set_timer(self, delay: float, action: Callable[[], None]) -> None:
        """Run C{action} in C{delay} seconds unless the state's timer is set again."""

    def flush(self) -> None:
        """Fire what the last input owes, now that the state is consistent."""


class PushAttempts:
    """Sends one session's push until the card connects or attempts run out.

    @param host: the session machine, seen through L{PushHost}.
    @param session_id: the session, named in every L{PushOrder}.
    @param service: the service whose push profile secures the push.
    @param policy: the attempts and the waits between them.
    @param sender: where the pushes go (L{IPushSender}).
    @ivar attempt: the number of the last push sent (0 before the first).
    """

    _log = Logger()

    def __init__(
        self,
        host: PushHost,
        session_id: SessionId,
        service: str,
        policy: SessionPolicy,
        sender: IPushSender,
    ) -> None:
        self._host = host
        self._session_id = session_id
        self._service = service
        self._policy = policy
        self._sender = sender
        self._card: CardRecord | None = None
        self.attempt = 0

    # -- inputs ----------------------------------------------------------

    def start(self, card: CardRecord) -> None:
        """Send the first push to C{card}."""
        self._card = card
        self._push()

    def delivered(self, attempt: int, delivered: bool, detail: str) -> None:
        """A delivery receipt for push C{attempt} arrived.

        A failed delivery of the current push counts as a failed push (sent
        again after the retry wait); anything else is only noted.
        """
        host = self._host
        suffix = f": {detail}" if detail else ""
        if not delivered and attempt == self.attempt and host.awaiting_card:
            self._failed(
                attempt, FailureReason.PUSH_FAILED, f"push {attempt} not delivered{suffix}"
            )
        else:
            host.note(f"push {attempt} {'delivered' if delivered else 'not delivered'}{suffix}")
        host.flush()

    def por(self, status: int, detail: str) -> None:
        """The card's proof of receipt for the push arrived.

        An error status (bad checksum, counter, unknown TAR, ...) means the
        card refused the push and will never connect: the session fails at
        once, naming the status, since resending the same push cannot help.
        """
        host = self._host
        try:
            name = PorStatus(status).name
        except ValueError:
            name = "unknown status"
        text = f"PoR status 0x{status:02X} ({name})" + (f": {detail}" if detail else "")
        if status in _POR_BENIGN or not host.awaiting_card:
            host.note(text)
        else:
            host.end(FailureReason.POR_ERROR, text)
        host.flush()

    # -- the attempts ----------------------------------------------------

    def _push(self) -> None:
        self.attempt = attempt = self.attempt + 1
        policy, host = self._policy, self._host
        host.move(_S.PUSHING, f"push {attempt} of {policy.attempts}")
        host.set_timer(
            policy.push_timeout,
            lambda: self._failed(
                attempt,
                FailureReason.PUSH_TIMEOUT,
                f"push {attempt} not accepted within {policy.push_timeout:g} s",
            ),
        )
        card = self._card
        assert card is not None
        order = PushOrder(self._session_id, card.iccid, card.msisdn, attempt, self._service)
        try:
            sent: Deferred[PushReceipt] = self._sender.send_push(order)
        except Exception:
            sent = fail(Failure())
        sent.addCallbacks(
            self._accepted,
            self._error,
            callbackArgs=(attempt,),
            errbackArgs=(attempt,),
        )

    def _current(self, attempt: int) -> bool:
        host = self._host
        return attempt == self.attempt and host.state is _S.PUSHING and host.awaiting_card

    def _accepted(self, receipt: object, attempt: int) -> None:
        if not self._current(attempt):
            return
        host = self._host
        ids = receipt.message_ids if isinstance(receipt, PushReceipt) else ()
        wait = self._policy.card_wait(attempt)
        host.move(
            _S.AWAITING_CARD,
            f"push {attempt} accepted (message ids: {', '.join(ids) or 'none'});"
            f" waiting {wait:g} s for the card",
        )
        host.set_timer(wait, lambda: self._card_timed_out(attempt, wait))
        host.flush()

    def _error(self, failure: Failure, attempt: int) -> None:
        if not self._current(attempt):
            return
        error = failure.value
        if not isinstance(error, PushError):
            self._log.failure(
                "push sender failed for session {session_id}",
                failure,
                session_id=self._session_id,
            )
        permanent = isinstance(error, PushError) and error.permanent
        self._failed(
            attempt, FailureReason.PUSH_FAILED, f"push {attempt} failed: {error}", permanent
        )
        self._host.flush()

    def _failed(
        self, attempt: int, reason: FailureReason, detail: str, permanent: bool = False
    ) -> None:
        host = self._host
        if attempt != self.attempt or not host.awaiting_card:
            return
        if permanent:
            host.end(reason, f"{detail}; not retried")
        elif attempt >= self._policy.attempts:
            host.end(reason, f"{detail}; no attempts left")
        else:
            wait = self._policy.retry_wait(attempt)
            host.note(f"{detail}; sending again in {wait:g} s")
            host.set_timer(wait, self._retry)

    def _retry(self) -> None:
        if self._host.awaiting_card:
            self._push()

    def _card_timed_out(self, attempt: int, waited: float) -> None:
        if attempt < self._policy.attempts:
            self._host.note(f"no connection within {waited:g} s of push {attempt}")
            self._push()
        else:
            self._host.no_connection(
                f"no connection within {waited:g} s of push {attempt}, the last allowed"
            )
