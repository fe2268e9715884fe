# -*- test-case-name: tests.unit.core.test_engine_push,tests.unit.core.test_claims -*-
"""The one-session-per-card rule among the engine's own sessions.

Each card has at most one session that holds it (its owner); the sessions
opened for it meanwhile wait in its queue, or are refused, as the engine's
L{SessionPolicy} says.  When the owner ends, the next in the queue takes the
card.  Before a session starts on a card none of the engine's sessions
holds, the card is claimed beyond the engine (L{CardClaims}: the other
nodes of a cluster).
"""

from __future__ import annotations

import collections
from collections.abc import Collection

from twisted.internet.interfaces import IReactorTime

from bipgw.core._claims import CardClaims, _HasPolicy
from bipgw.core._interfaces import ICardLocks
from bipgw.core._policy import BusyPolicy
from bipgw.core._session import SessionMachine
from bipgw.core._types import CardRecord, FailureReason, normalise_iccid


class CardQueues:
    """Which session holds each card, and which wait for it.

    @param locks: the rule beyond the engine (L{CardClaims}).
    @param clock: times the claims' tries again.
    @param host: has the engine's current C{policy} (busy policy, queue
        limit and timeout).
    @param claim_retry: seconds between two tries of a card another node holds.
    """

    def __init__(
        self, locks: ICardLocks, clock: IReactorTime, host: _HasPolicy, claim_retry: float
    ) -> None:
        self._host = host
        self._owner: dict[str, SessionMachine] = {}
        self._waiting: dict[str, collections.deque[SessionMachine]] = {}
        self._claims = CardClaims(locks, clock, host, claim_retry)

    def owner(self, iccid: str) -> SessionMachine | None:
        """The session that holds the card C{iccid} (any spelling), if any."""
        try:
            return self._owner.get(normalise_iccid(iccid))
        except ValueError:
            return None

    def owners(self) -> Collection[SessionMachine]:
        """Every session that holds a card."""
        return self._owner.values()

    def hold(self, iccid: str, machine: SessionMachine) -> None:
        """C{machine} holds card C{iccid} already (the card connected on its own)."""
        self._owner[iccid] = machine

    def join(self, card: CardRecord, machine: SessionMachine) -> None:
        """C{machine} wants C{card}: claim it when free, else queue or refuse
        C{machine} as the policy says."""
        owner = self._owner.get(card.iccid)
        if owner is None:
            self._owner[card.iccid] = machine
            self._claims.claim(card, machine)
            return
        policy = self._host.policy
        busy = f"card {card.iccid} has session {owner.id} ({owner.state.value})"
        waiting = len(self._waiting.get(card.iccid, ()))
        if policy.busy_policy is BusyPolicy.REFUSE:
            machine.fail(FailureReason.CARD_BUSY, busy)
        elif waiting >= policy.queue_limit_per_card:
            machine.fail(
                FailureReason.CARD_BUSY,
                f"{busy}, and {waiting} sessions already wait for it (the limit)",
            )
        else:
            self._waiting.setdefault(card.iccid, collections.deque()).append(machine)
            wait = policy.queue_timeout
            machine.note(f"{busy}; queued at position {waiting + 1}")
            machine.set_deadline(
                wait, FailureReason.QUEUE_TIMEOUT, f"{busy}; still busy after {wait:g} s"
            )

    def leave(self, machine: SessionMachine) -> None:
        """C{machine} ended: out of its card's queue; if it held the card, the
        next in the queue takes it, or the card is released."""
        card = machine.card
        if card is None:
            return
        queue = self._waiting.get(card.iccid)
        if queue is not None and machine in queue:
            queue.remove(machine)
        self._claims.forget(machine)
        if self._owner.get(card.iccid) is machine:
            del self._owner[card.iccid]
            if queue:
                successor = queue.popleft()
                self._owner[card.iccid] = successor
                successor.note(f"card free: session {machine.id} ended")
                self._claims.claim(card, successor)
            else:
                self._claims.release(card.iccid)
        if queue is not None and not queue:
            del self._waiting[card.iccid]
