# -*- test-case-name: tests.unit.core.test_claims -*-
"""Taking a card beyond this engine: the cluster's side of the one-session-per-card rule.

The engine keeps the owner and the queue of each card among its own
sessions; before a session starts on a card none of them holds, the card is
claimed from an L{ICardLocks}.  Alone, the claim is granted at once
(L{bipgw.core.LocalCardLocks}); in a cluster another node may hold the
card, and then the session is refused (the refuse policy) or tries again
every few seconds until its queue timeout, as a session queued behind a
local one waits.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.core._interfaces import ICardLocks
from bipgw.core._policy import BusyPolicy, SessionPolicy
from bipgw.core._session import SessionMachine
from bipgw.core._types import CardRecord, FailureReason, SessionId


class _HasPolicy(Protocol):
    policy: SessionPolicy


class CardClaims:
    """Claims cards from an L{ICardLocks} for the engine's sessions.

    @param locks: the locks shared with the other nodes.
    @param clock: times the tries again.
    @param host: has the engine's current C{policy} (busy policy, queue timeout).
    @param retry: seconds between two tries of a card another node holds.
    """

    _log = Logger()

    def __init__(
        self, locks: ICardLocks, clock: IReactorTime, host: _HasPolicy, retry: float
    ) -> None:
        self._locks = locks
        self._clock = clock
        self._host = host
        self._retry = retry
        self._waiting: dict[SessionId, IDelayedCall] = {}
        self._held_elsewhere: set[SessionId] = set()

    def claim(self, card: CardRecord, machine: SessionMachine) -> None:
        """Take C{card}'s lock, then start C{machine} on it (at once when the
        lock is granted at once)."""
        self._waiting.pop(machine.id, None)
        claimed = self._locks.acquire(card.iccid)
        claimed.addCallbacks(
            self._claimed, self._failed, callbackArgs=(card, machine), errbackArgs=(machine,)
        )

    def release(self, iccid: str) -> None:
        """None of the engine's sessions needs card C{iccid} any more."""
        self._locks.release(iccid)

    def forget(self, machine: SessionMachine) -> None:
        """C{machine} ended: stop trying its card."""
        self._held_elsewhere.discard(machine.id)
        retry = self._waiting.pop(machine.id, None)
        if retry is not None and retry.active():
            retry.cancel()

    def _claimed(self, granted: bool, card: CardRecord, machine: SessionMachine) -> None:
        if machine.state.terminal:
            return
        if granted:
            self._held_elsewhere.discard(machine.id)
            machine.start(card)
            return
        busy = f"card {card.iccid} has a session on another node"
        policy = self._host.policy
        if policy.busy_policy is BusyPolicy.REFUSE:
            machine.fail(FailureReason.CARD_BUSY, busy)
            return
        if machine.id not in self._held_elsewhere:
            self._held_elsewhere.add(machine.id)
            wait = policy.queue_timeout
            machine.note(f"{busy}; waiting for it")
            machine.set_deadline(
                wait, FailureReason.QUEUE_TIMEOUT, f"{busy}; still busy after {wait:g} s"
            )
        self._waiting[machine.id] = self._clock.callLater(self._retry, self.claim, card, machine)

    def _failed(self, failure: Failure, machine: SessionMachine) -> None:
        if machine.state.terminal:
            return
        self._log.failure(
            "card lock failed for session {session_id}", failure, session_id=machine.id
        )
        machine.fail(
            FailureReason.DIRECTORY_ERROR,
            f"the cluster's card locks cannot be reached: {failure.getErrorMessage()}",
        )
