# -*- test-case-name: tests.unit.core.test_campaign -*-
"""One campaign running: pace, concurrency, retries, windows, pause and cancel.

L{CampaignRun} decides when each card of a campaign starts and what its
outcome makes of it; it does no I/O and reads time only from the clock it
is given.  What it needs, it names:

  - an L{ICampaignStore}, which keeps every card's state: a card is
    I{claimed} (C{pending} to C{running}, its try counted, committed)
    before its session is opened, and its outcome written when the try
    ends, so a gateway that dies loses nothing and runs no card twice
    (L{ICampaignStore.recover} ends the cards it finds C{running} as
    C{interrupted}, or, for an idempotent script, makes them pending again);
  - an L{ICardRunner}, which tries one card (in the gateway: a session
    through L{bipgw.core.SessionEngine.open}, the script replayed in it).

New cards start while the campaign is C{running}, inside one of its
windows, with fewer than C{pace.concurrency} tries under way and a token in
its bucket (C{pace.rate} a second, C{pace.burst} at most).  A failed try is
retried after the policy's backoff unless its reason is one to give up
on, the attempts are spent, or a command already reached the card and the
script is not idempotent.  A try that failed before any command reached
the card because the gateway was stopping (C{shutdown}) or the tenant had
its most sessions open (C{limit-reached}) does not count: it is made again
a second later.

Pausing and cancelling start no new card; the tries under way finish (a
script is never cut in the middle by the campaign).  Cancelling ends the
cards not started as C{cancelled}.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.core._campaign_types import (
    CampaignCard,
    CampaignRecord,
    CampaignState,
    CardOutcome,
    CardState,
)

__all__ = ["CampaignEvent", "CampaignRun", "Claim", "ICampaignStore", "ICardRunner"]

#: Seconds before the store is asked again after it failed.
STORE_RETRY = 5.0
#: Reasons a try is not counted when nothing reached the card: the gateway
#: was stopping, or the tenant had its most sessions open (other work).
_NOT_COUNTED = frozenset({"shutdown", "limit-reached"})
#: Seconds before a try that was not counted is made again.
NOT_COUNTED_DELAY = 1.0


@attrs.frozen
class Claim:
    """The cards a claim took, and what is left.

    @ivar cards: the cards now C{running} (their C{attempts} counted).
    @ivar waiting: pending cards left (due or not).
    @ivar next_due: the earliest C{next_at} of a pending card not due yet.
    """

    cards: tuple[CampaignCard, ...]
    waiting: int
    next_due: float | None = None


class ICampaignStore(Protocol):
    """Where a campaign's cards are kept (L{bipgw.store.SqlCampaignStore})."""

    def claim(self, campaign_id: str, limit: int, now: float) -> Deferred[Claim]:
        """Atomically move up to C{limit} due pending cards to C{running}
        (attempts + 1), in target order, and commit before firing."""

    def update_card(self, card: CampaignCard) -> Deferred[None]:
        """Write a card's state, attempts, result and next time."""

    def set_state(self, campaign_id: str, state: CampaignState, now: float) -> Deferred[None]:
        """Write the campaign's state."""

    def recover(self, campaign_id: str, *, rerun: bool, now: float) -> Deferred[int]:
        """Cards left C{running} by a dead gateway: C{pending} again when
        C{rerun}, else C{interrupted}; how many."""

    def cancel_pending(self, campaign_id: str, now: float) -> Deferred[int]:
        """The pending cards end as C{cancelled}; how many."""


class ICardRunner(Protocol):
    """Tries one card of a campaign."""

    def run(self, campaign: CampaignRecord, card: CampaignCard) -> Deferred[CardOutcome]:
        """Open the card's session, run the script, close; never fails
        (a failure is an outcome with its reason)."""


@attrs.frozen
class CampaignEvent:
    """Something a campaign did: a card's try ended, or its state changed.

    @ivar campaign_id: the campaign.
    @ivar state: the campaign's state then.
    @ivar card: the card, for a card event (its new state and result).
    """

    campaign_id: str
    state: CampaignState
    card: CampaignCard | None = None


class CampaignRun:
    """One campaign's scheduler (module docstring).

    @param clock: time for the pace, backoffs and windows (POSIX seconds:
        windows are UTC times of day).
    @param store: the cards.
    @param runner: tries a card.
    @param campaign: the campaign as stored.
    @param on_event: hears every L{CampaignEvent}.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: ICampaignStore,
        runner: ICardRunner,
        campaign: CampaignRecord,
        on_event: Callable[[CampaignEvent], object] | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self._runner = runner
        self.campaign = campaign
        self._on_event = on_event
        pace = campaign.spec.pace
        self._tokens = float(pace.burst)
        self._filled_at = clock.seconds()
        self._running: dict[int, CampaignCard] = {}
        self._claiming = False
        self._stopped = False
        self._timer: IDelayedCall | None = None
        self._writes: set[Deferred[None]] = set()
        self._done: list[Deferred[CampaignRecord]] = []

    # -- what the outside sees -------------------------------------------------

    @property
    def state(self) -> CampaignState:
        return self.campaign.state

    @property
    def in_flight(self) -> int:
        """Cards being tried now."""
        return len(self._running)

    def when_done(self) -> Deferred[CampaignRecord]:
        """Fires once the campaign is completed or cancelled and no try runs."""
        d: Deferred[CampaignRecord] = Deferred()
        if self.state.terminal and not self._running and not self._writes:
            d.callback(self.campaign)
        else:
            self._done.append(d)
        return d

    # -- commands --------------------------------------------------------------

    def recover(self) -> Deferred[int]:
        """After a restart, before L{start}: the cards a dead gateway left
        C{running} end as C{interrupted} (or, for an idempotent script,
        are pending again; L{ICampaignStore.recover}); fires with how many."""
        spec = self.campaign.spec
        now = self._clock.seconds()
        d = self._store.recover(self.campaign.id, rerun=spec.idempotent, now=now)
        return d.addCallback(self._recovered_cards)

    def start(self) -> Deferred[None]:
        """Run (a created campaign, or one found C{running} at start-up)."""
        if self.state.terminal:
            return succeed(None)
        return self._set_state(CampaignState.RUNNING).addCallback(lambda _: self._pump())

    def resume(self) -> Deferred[None]:
        """Start new cards again after L{pause}."""
        if self.state is not CampaignState.PAUSED:
            return succeed(None)
        return self.start()

    def pause(self) -> Deferred[None]:
        """Start no new card; the tries under way finish."""
        if self.state not in (CampaignState.RUNNING, CampaignState.CREATED):
            return succeed(None)
        self._cancel_timer()
        return self._set_state(CampaignState.PAUSED)

    def cancel(self) -> Deferred[None]:
        """Stop for good: the cards not started end as C{cancelled}."""
        if self.state.terminal:
            return succeed(None)
        self._cancel_timer()
        d = self._set_state(CampaignState.CANCELLED)
        now = self._clock.seconds()
        d.addCallback(lambda _: self._store.cancel_pending(self.campaign.id, now))
        d.addCallback(lambda _: self._check_done())
        return d

    def stop(self) -> None:
        """The gateway is stopping: start nothing more (the state is kept, so
        a running campaign runs on after the restart)."""
        self._stopped = True
        self._cancel_timer()

    def flushed(self) -> Deferred[None]:
        """Fires once every card outcome handed to the store is written."""
        waiting = list(self._writes)
        if not waiting:
            return succeed(None)
        from twisted.internet.defer import DeferredList

        return DeferredList(waiting, consumeErrors=True).addCallback(lambda _: None)

    # -- the scheduler -----------------------------------------------------------

    def _recovered_cards(self, found: int) -> int:
        if found:
            what = "pending again" if self.campaign.spec.idempotent else "interrupted"
            self._log.info(
                "campaign {id}: {n} card(s) were running when the gateway stopped: {what}",
                id=self.campaign.id,
                n=found,
                what=what,
            )
        return found

    def _set_state(self, state: CampaignState) -> Deferred[None]:
        now = self._clock.seconds()
        self.campaign = attrs.evolve(self.campaign, state=state, updated_at=now)
        # The state write counts as a write, held before the event goes out:
        # the run is done (and its lease may go to another node) only once a
        # terminal state is stored, so no node can read the campaign as still
        # running and start it again.
        written = maybeDeferred(self._store.set_state, self.campaign.id, state, now)
        self._writes.add(written)
        self._emit(CampaignEvent(self.campaign.id, state))

        def stored(result: object) -> object:
            self._writes.discard(written)
            if self.state.terminal:
                self._check_done()
            return result

        written.addBoth(stored)
        return written

    def _emit(self, event: CampaignEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                self._log.failure("a campaign event listener failed")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _wake_in(self, delay: float) -> None:
        self._cancel_timer()
        if self._stopped:  # a write that ends after stop() wakes nothing
            return
        self._timer = self._clock.callLater(max(0.0, delay), self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._pump()

    def _refill(self, now: float) -> None:
        pace = self.campaign.spec.pace
        elapsed = max(0.0, now - self._filled_at)
        self._tokens = min(float(pace.burst), self._tokens + elapsed * pace.rate)
        self._filled_at = now

    def _pump(self) -> None:
        """Start what may start now, or wake when something may."""
        if self._stopped or self._claiming or self.state is not CampaignState.RUNNING:
            return
        spec = self.campaign.spec
        now = self._clock.seconds()
        wait = spec.window_wait(now)
        if wait > 0:
            self._wake_in(wait)
            return
        self._refill(now)
        free = spec.pace.concurrency - len(self._running)
        if free <= 0:
            return  # a try ending pumps again
        n = min(free, math.floor(self._tokens + 1e-9))
        if n <= 0 and self._running:
            self._wake_in((1.0 - self._tokens) / spec.pace.rate)
            return
        # With no token, a claim of nothing still says whether cards are left.
        n = max(n, 0)
        self._claiming = True
        claimed = maybeDeferred(self._store.claim, self.campaign.id, n, now)
        claimed.addCallbacks(self._claimed, self._claim_failed, callbackArgs=(n,))

    def _claim_failed(self, failure: Failure) -> None:
        self._claiming = False
        self._log.failure(
            "campaign {id}: claiming cards failed; trying again in {s:g} s",
            failure,
            id=self.campaign.id,
            s=STORE_RETRY,
        )
        if not self._stopped:
            self._wake_in(STORE_RETRY)

    def _claimed(self, claim: Claim, asked: int) -> None:
        self._claiming = False
        # Every claimed card is counted before any runs: a try that ends at
        # once pumps again, and must see the tokens and slots taken.
        for card in claim.cards:
            self._tokens -= 1.0
            self._running[card.index] = card
        for card in claim.cards:
            self._emit(CampaignEvent(self.campaign.id, self.state, card))
            tried = maybeDeferred(self._runner.run, self.campaign, card)
            tried.addErrback(self._runner_failed, card)
            tried.addCallback(self._tried, card)
        if not claim.cards:
            if not self._running and claim.waiting == 0:
                self._complete()
            elif self._stopped or self.state is not CampaignState.RUNNING:
                pass
            elif asked == 0:
                self._wake_in((1.0 - self._tokens) / self.campaign.spec.pace.rate)
            elif claim.next_due is not None:
                self._wake_in(claim.next_due - self._clock.seconds())
            return
        if len(claim.cards) == asked:
            self._pump()

    def _runner_failed(self, failure: Failure, card: CampaignCard) -> CardOutcome:
        self._log.failure(
            "campaign {id}: trying card {card} failed",
            failure,
            id=self.campaign.id,
            card=card.target,
        )
        return CardOutcome(False, "internal-error", failure.getErrorMessage()[:200])

    def _tried(self, outcome: CardOutcome, card: CampaignCard) -> None:
        """A try ended: the card's next state, written; then start more."""
        self._running.pop(card.index, None)
        now = self._clock.seconds()
        spec = self.campaign.spec
        retry = spec.retry
        attempts = card.attempts
        changes: dict[str, object] = {
            "rapdus": outcome.rapdus,
            "session": outcome.session or card.session,
            "iccid": outcome.iccid or card.iccid,
            "updated_at": now,
        }
        if outcome.ok:
            changes.update(state=CardState.SUCCEEDED, reason=None, detail=None)
        else:
            reason = outcome.reason or "failed"
            changes.update(reason=reason, detail=outcome.detail)
            if not outcome.reached and reason in _NOT_COUNTED:
                attempts -= 1  # the gateway stopped before anything reached the card
                changes.update(attempts=attempts)
            may_retry = (
                reason not in retry.give_up
                and attempts < retry.attempts
                and (not outcome.reached or spec.idempotent)
            )
            if not may_retry:
                changes.update(state=CardState.FAILED)
            elif self.state is CampaignState.CANCELLED:
                changes.update(state=CardState.CANCELLED)
            else:
                refunded = attempts < card.attempts
                delay = NOT_COUNTED_DELAY if refunded else retry.delay(attempts)
                changes.update(state=CardState.PENDING, next_at=now + delay)
        updated = attrs.evolve(card, **changes)  # type: ignore[arg-type]
        self._emit(CampaignEvent(self.campaign.id, self.state, updated))
        written = maybeDeferred(self._store.update_card, updated)
        self._writes.add(written)
        written.addErrback(self._write_failed, updated)
        written.addBoth(self._written, written)

    def _write_failed(self, failure: Failure, card: CampaignCard) -> None:
        self._log.failure(
            "campaign {id}: the result of card {card} could not be written"
            " (it stays running in the store: interrupted after a restart)",
            failure,
            id=self.campaign.id,
            card=card.target,
        )

    def _written(self, _: object, written: Deferred[None]) -> None:
        self._writes.discard(written)
        if self.state is CampaignState.RUNNING:
            self._pump()
        else:
            self._check_done()

    def _complete(self) -> None:
        self._cancel_timer()  # a wake set while the last tries ran has nothing to start
        self._set_state(CampaignState.COMPLETED).addErrback(
            lambda f: self._log.failure("campaign {id}: state not written", f, id=self.campaign.id)
        )
        self._check_done()

    def _check_done(self) -> None:
        if self.state.terminal and not self._running and not self._writes:
            done, self._done = self._done, []
            for d in done:
                d.callback(self.campaign)
