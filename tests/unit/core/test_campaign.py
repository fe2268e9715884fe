"""The campaign scheduler on a Clock: pace, concurrency, retries, windows,
pause/resume/cancel, recovery after a restart.

The store is the memory campaign store (the same contract as the SQL one,
tests/unit/store/test_campaigns.py); the runner is a fake whose tries the
test ends by hand, so every start time is checked exactly.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    CampaignCard,
    CampaignError,
    CampaignEvent,
    CampaignRecord,
    CampaignRun,
    CampaignSpec,
    CampaignState,
    CardOutcome,
    CardState,
    Pace,
    RetryPolicy,
    Window,
)
from bipgw.store import MemoryCampaignStore

CID = "c-test"


def iccid(n: int) -> str:
    return f"89882110000000{n:05d}"


class FakeRunner:
    """Records each try (time, card) and holds it until the test ends it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tries: list[tuple[float, CampaignCard, Deferred[CardOutcome]]] = []
        self.auto: CardOutcome | None = None

    def run(self, campaign: CampaignRecord, card: CampaignCard) -> Deferred[CardOutcome]:
        d: Deferred[CardOutcome] = Deferred()
        self.tries.append((self.clock.seconds(), card, d))
        if self.auto is not None:
            d.callback(self.auto)
        return d

    def open(self) -> list[Deferred[CardOutcome]]:
        return [d for _, _, d in self.tries if not d.called]

    def end_all(self, outcome: CardOutcome) -> None:
        for d in self.open():
            d.callback(outcome)


OK = CardOutcome(True, rapdus=("9000",), reached=True, session="s1")


class CampaignRunTests(SynchronousTestCase):
    """L{CampaignRun}: when cards start, and what each outcome makes of them."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)  # some day, 13:46:40 UTC
        self.store = MemoryCampaignStore()
        self.runner = FakeRunner(self.clock)
        self.events: list[CampaignEvent] = []

    def make(self, cards: int = 5, **spec_args: object) -> CampaignRun:
        spec = CampaignSpec(
            name="t",
            tenant_id="acme",
            service="isd",
            script="80CA9F7F00",
            **spec_args,  # type: ignore[arg-type]
        )
        now = self.clock.seconds()
        record = CampaignRecord(CID, spec, CampaignState.CREATED, now, now, cards)
        self.successResultOf(
            self.store.create_campaign(
                record,
                [CampaignCard(CID, n, iccid=iccid(n), updated_at=now) for n in range(cards)],
            )
        )
        return CampaignRun(self.clock, self.store, self.runner, record, self.events.append)

    def cards(self) -> list[CampaignCard]:
        return self.successResultOf(self.store.list_cards(CID))

    def states(self) -> list[str]:
        return [c.state.value for c in self.cards()]

    def test_paceSpacesTheStarts(self) -> None:
        """At 2 sessions a second with a burst of 1, the cards start 0.5 s apart."""
        run = self.make(5, pace=Pace(rate=2, concurrency=100))
        self.runner.auto = OK
        self.successResultOf(run.start())
        for _ in range(10):
            self.clock.advance(0.5)
        starts = [t - 1_000_000 for t, _, _ in self.runner.tries]
        self.assertEqual(starts, [0.0, 0.5, 1.0, 1.5, 2.0])
        self.assertEqual(self.states(), ["succeeded"] * 5)
        self.assertEqual(run.state, CampaignState.COMPLETED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_burst(self) -> None:
        """A burst of 3 starts three cards at once, then the rate takes over."""
        run = self.make(5, pace=Pace(rate=1, concurrency=100, burst=3))
        self.runner.auto = OK
        self.successResultOf(run.start())
        self.clock.pump([1.0] * 3)
        starts = [t - 1_000_000 for t, _, _ in self.runner.tries]
        self.assertEqual(starts, [0.0, 0.0, 0.0, 1.0, 2.0])

    def test_concurrencyBoundsTheOpenTries(self) -> None:
        """Never more than C{concurrency} tries at once; one ending lets the next start."""
        run = self.make(6, pace=Pace(rate=1000, concurrency=2, burst=100))
        self.successResultOf(run.start())
        self.assertEqual(len(self.runner.open()), 2)
        self.clock.advance(10)
        self.assertEqual(len(self.runner.open()), 2)
        self.runner.open()[0].callback(OK)
        self.assertEqual(len(self.runner.open()), 2)
        self.assertEqual(len(self.runner.tries), 3)
        self.assertEqual(run.in_flight, 2)

    def test_retryAfterBackoff(self) -> None:
        """A failure before the card was reached is retried after the backoff,
        doubling, until the attempts are spent: then failed with its reason."""
        run = self.make(1, retry=RetryPolicy(attempts=3, backoff=10, factor=2))
        fail = CardOutcome(False, "card-timeout", "no connection")
        self.runner.auto = fail
        self.successResultOf(run.start())
        self.assertEqual(len(self.runner.tries), 1)
        self.assertEqual(self.states(), ["pending"])
        self.clock.advance(9.9)
        self.assertEqual(len(self.runner.tries), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.runner.tries), 2)
        self.clock.advance(19.9)
        self.assertEqual(len(self.runner.tries), 2)
        self.clock.advance(0.1)
        self.assertEqual(len(self.runner.tries), 3)
        card = self.cards()[0]
        self.assertEqual(
            (card.state, card.attempts, card.reason), (CardState.FAILED, 3, "card-timeout")
        )
        self.assertEqual(run.state, CampaignState.COMPLETED)

    def test_giveUpReasonNotRetried(self) -> None:
        """A reason in C{give_up} fails the card at once."""
        run = self.make(1)
        self.runner.auto = CardOutcome(False, "unknown-card", "no such card")
        self.successResultOf(run.start())
        self.clock.advance(10_000)
        self.assertEqual(len(self.runner.tries), 1)
        self.assertEqual(self.cards()[0].reason, "unknown-card")
        self.assertEqual(self.states(), ["failed"])

    def test_reachedNotRetriedUnlessIdempotent(self) -> None:
        """Once a command reached the card, a failure is retried only for an idempotent script."""
        dropped = CardOutcome(False, "card-dropped", "lost", reached=True)
        run = self.make(1, retry=RetryPolicy(backoff=1))
        self.runner.auto = dropped
        self.successResultOf(run.start())
        self.clock.advance(100)
        self.assertEqual((len(self.runner.tries), self.states()), (1, ["failed"]))

        self.store = MemoryCampaignStore()
        self.runner = FakeRunner(self.clock)
        self.runner.auto = dropped
        run = self.make(1, retry=RetryPolicy(backoff=1), idempotent=True)
        self.successResultOf(run.start())
        self.clock.pump([1.0] * 100)
        self.assertEqual((len(self.runner.tries), self.states()), (3, ["failed"]))

    def test_shutdownNotCounted(self) -> None:
        """A try cut by the gateway stopping before the card was reached does not count."""
        run = self.make(1, retry=RetryPolicy(attempts=1))
        self.successResultOf(run.start())
        self.runner.open()[0].callback(CardOutcome(False, "shutdown", "stopping"))
        card = self.cards()[0]
        self.assertEqual((card.state, card.attempts), (CardState.PENDING, 0))
        self.runner.auto = OK
        self.clock.advance(1.0)
        self.assertEqual(self.states(), ["succeeded"])

    def test_windowDelaysTheStart(self) -> None:
        """Outside its windows a campaign starts nothing; it starts when one opens."""
        # 1_000_000 s after the epoch is 13:46:40 UTC.
        run = self.make(2, windows=("14:00-14:30",), pace=Pace(rate=100, concurrency=10, burst=10))
        self.runner.auto = OK
        self.successResultOf(run.start())
        self.assertEqual(self.runner.tries, [])
        self.clock.advance(13 * 60 + 19)
        self.assertEqual(self.runner.tries, [])
        self.clock.advance(1)
        self.assertEqual(len(self.runner.tries), 2)
        self.assertEqual(self.runner.tries[0][0] % 86400, 14 * 3600)

    def test_windowClosesMidway(self) -> None:
        """Tries under way when the window closes finish; the rest wait for the next day."""
        run = self.make(3, windows=("13:00-13:47",), pace=Pace(rate=0.01, concurrency=10))
        self.runner.auto = OK
        self.successResultOf(run.start())
        self.assertEqual(len(self.runner.tries), 1)
        self.clock.advance(100)  # 13:48:20: closed; the next token came at 13:48:20 too
        self.assertEqual(len(self.runner.tries), 1)
        self.clock.advance(86400 - 100 - 20 * 60)  # 13:26:40 the next day
        self.assertEqual(len(self.runner.tries), 2)

    def test_pauseResume(self) -> None:
        """Paused: no new card starts (those running finish); resumed: they go on."""
        run = self.make(4, pace=Pace(rate=1, concurrency=10))
        self.successResultOf(run.start())
        self.assertEqual(len(self.runner.tries), 1)
        self.successResultOf(run.pause())
        self.runner.end_all(OK)
        self.clock.advance(10)
        self.assertEqual(len(self.runner.tries), 1)
        self.assertEqual(
            self.successResultOf(self.store.get_campaign(CID)).state, CampaignState.PAUSED
        )  # type: ignore[union-attr]
        self.runner.auto = OK
        self.successResultOf(run.resume())
        self.clock.pump([1.0] * 10)
        self.assertEqual(self.states(), ["succeeded"] * 4)
        self.assertEqual(run.state, CampaignState.COMPLETED)

    def test_cancel(self) -> None:
        """Cancelled: the cards not started end as cancelled, the one running finishes."""
        run = self.make(4, pace=Pace(rate=1, concurrency=10))
        self.successResultOf(run.start())
        done = run.when_done()
        self.successResultOf(run.cancel())
        self.assertNoResult(done)
        self.assertEqual(self.states(), ["running", "cancelled", "cancelled", "cancelled"])
        self.runner.end_all(OK)
        self.assertEqual(self.states(), ["succeeded", "cancelled", "cancelled", "cancelled"])
        self.assertEqual(self.successResultOf(done).state, CampaignState.CANCELLED)
        self.clock.advance(100)
        self.assertEqual(len(self.runner.tries), 1)

    def test_cancelDuringBackoff(self) -> None:
        """A card failing after the cancel, which would be retried, ends as cancelled."""
        run = self.make(1)
        self.successResultOf(run.start())
        self.successResultOf(run.cancel())
        self.runner.end_all(CardOutcome(False, "card-timeout"))
        self.assertEqual(self.states(), ["cancelled"])

    def test_recoverInterrupts(self) -> None:
        """A card left running by a dead gateway ends as interrupted, never run again."""
        run = self.make(3, pace=Pace(rate=100, concurrency=1))
        self.successResultOf(run.start())
        self.assertEqual(self.states(), ["running", "pending", "pending"])
        # The gateway dies: a new scheduler over the same store.
        record = self.successResultOf(self.store.get_campaign(CID))
        assert record is not None
        runner = FakeRunner(self.clock)
        runner.auto = OK
        again = CampaignRun(self.clock, self.store, runner, record)
        self.assertEqual(self.successResultOf(again.recover()), 1)
        self.successResultOf(again.start())
        self.clock.advance(1)
        cards = self.cards()
        self.assertEqual(
            [c.state for c in cards],
            [CardState.INTERRUPTED, CardState.SUCCEEDED, CardState.SUCCEEDED],
        )
        self.assertEqual(cards[0].reason, "gateway-restart")
        self.assertEqual([c.index for _, c, _ in runner.tries], [1, 2])

    def test_recoverIdempotentRerun(self) -> None:
        """With an idempotent script, the card left running runs again."""
        run = self.make(1, idempotent=True)
        self.successResultOf(run.start())
        record = self.successResultOf(self.store.get_campaign(CID))
        assert record is not None
        runner = FakeRunner(self.clock)
        runner.auto = OK
        again = CampaignRun(self.clock, self.store, runner, record)
        self.successResultOf(again.recover())
        self.successResultOf(again.start())
        self.assertEqual(self.states(), ["succeeded"])
        self.assertEqual(self.cards()[0].attempts, 2)

    def test_events(self) -> None:
        """Every state change and every card's start and end is an event."""
        run = self.make(1)
        self.runner.auto = OK
        self.successResultOf(run.start())
        kinds = [(e.state.value, e.card.state.value if e.card else None) for e in self.events]
        self.assertEqual(
            kinds,
            [
                ("running", None),
                ("running", "running"),
                ("running", "succeeded"),
                ("completed", None),
            ],
        )

    def test_storeFailureRetried(self) -> None:
        """A claim that fails is made again a few seconds later."""
        run = self.make(1)
        self.runner.auto = OK
        real = self.store.claim
        calls = []

        def flaky(*args: object) -> object:
            calls.append(args)
            if len(calls) == 1:
                raise OSError("disk gone")
            return real(*args)  # type: ignore[arg-type]

        self.store.claim = flaky  # type: ignore[method-assign]
        self.successResultOf(run.start())
        self.assertEqual(self.runner.tries, [])
        self.clock.advance(5)
        self.assertEqual(self.states(), ["succeeded"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_completedLeavesNoWake(self) -> None:
        """A wake scheduled while the last tries ran is cancelled when the
        campaign completes: a finished run holds no timer (CI saw a
        completed campaign's C{_wake} left in the reactor)."""
        run = self.make(2, pace=Pace(rate=1, concurrency=3, burst=2))
        self.successResultOf(run.start())
        self.assertEqual(len(self.runner.open()), 2)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # waits for a token
        self.clock.advance(0.1)
        self.runner.end_all(OK)
        self.assertEqual(run.state, CampaignState.COMPLETED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_doneWaitsForTheCompletedStateWrite(self) -> None:
        """The run is done only once its terminal state is stored: until then
        its lease must stay held, or another node reads the campaign as
        running and starts it again (CI saw exactly that in a take-over test)."""
        held: list[Deferred[None]] = []
        real = self.store.set_state

        def slow_set_state(cid: str, state: CampaignState, now: float) -> Deferred[None]:
            if not state.terminal:
                return real(cid, state, now)
            d: Deferred[None] = Deferred()
            held.append(d)
            d.addCallback(lambda _: real(cid, state, now))
            return d

        self.store.set_state = slow_set_state  # type: ignore[method-assign]
        run = self.make(2, pace=Pace(rate=1000, concurrency=10, burst=10))
        self.runner.auto = OK
        self.successResultOf(run.start())
        done = run.when_done()
        self.assertEqual(run.state, CampaignState.COMPLETED)  # decided in memory
        self.assertEqual(len(held), 1)
        self.assertNoResult(done)  # but not stored: not done
        self.assertNoResult(run.flushed())
        held[0].callback(None)
        self.assertEqual(self.successResultOf(done).state, CampaignState.COMPLETED)
        stored = self.successResultOf(self.store.get_campaign(CID))
        assert stored is not None
        self.assertEqual(stored.state, CampaignState.COMPLETED)


class ValueTests(SynchronousTestCase):
    """The campaign's values refuse what is wrong, naming it."""

    def test_window(self) -> None:
        w = Window.parse("22:00-02:00")
        self.assertTrue(w.contains(23 * 3600))
        self.assertTrue(w.contains(86400 + 3600))
        self.assertFalse(w.contains(12 * 3600))
        self.assertEqual(w.wait(21 * 3600), 3600)
        self.assertEqual(str(w), "22:00-02:00")
        for bad in ("2-5", "25:00-02:00", "02:00", "02:00-02:00", "02:60-03:00"):
            with self.assertRaises(CampaignError):
                Window.parse(bad)

    def test_pace(self) -> None:
        for bad in ({"rate": 0}, {"rate": float("inf")}, {"concurrency": 0}, {"burst": 1.5}):
            with self.assertRaises(CampaignError) as e:
                Pace(**bad)  # type: ignore[arg-type]
            self.assertIn(next(iter(bad)), str(e.exception))

    def test_retryDelay(self) -> None:
        r = RetryPolicy(backoff=10, factor=3, max_backoff=50)
        self.assertEqual([r.delay(n) for n in (1, 2, 3)], [10, 30, 50])
