"""C{bipgw demo --campaign}: how each card must end, and when the run counts as a success."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.demo import CampaignSummary
from bipgw.demo._campaign import FAULTY_EVERY, expected_outcome, fault_tables

ICCIDS = [f"89882110000000{n:05d}" for n in range(60)]


class ExpectedTests(SynchronousTestCase):
    def test_oneInTwentyFaultyInTurn(self) -> None:
        """Every 20th card (from the 10th) gets the next fault: no bearer (must
        succeed over SMS), no answer (por-timeout), a refused counter (por-error)."""
        expected = expected_outcome(ICCIDS)
        faulty = [(i, e) for i, e in expected.items() if e[2] is not None]
        self.assertEqual([ICCIDS.index(i) for i, _ in faulty], [10, 30, 50])
        self.assertEqual(
            [e for _, e in faulty],
            [
                ("succeeded", None, "no_bearer"),
                ("failed", "por-timeout", "ignore_push"),
                ("failed", "por-error", "replay"),
            ],
        )
        self.assertEqual(len(expected), 60)
        tables = fault_tables(expected)
        self.assertIn(f"[faults.cards.{ICCIDS[10]}]\nno_bearer = true", tables)
        self.assertIn(f'[faults.cards.{ICCIDS[50]}]\nreplay = "por"', tables)
        self.assertEqual(FAULTY_EVERY, 20)


class SummaryTests(SynchronousTestCase):
    def summary(self, **changes: object) -> CampaignSummary:
        base: dict[str, object] = {
            "campaign": "c-1",
            "state": "completed",
            "counts": {"succeeded": 39, "failed": 1},
            "reasons": {"por-timeout": 1},
            "unexpected": (),
            "elapsed": 4.0,
        }
        return CampaignSummary(**{**base, **changes})  # type: ignore[arg-type]

    def test_allOkOnlyWhenEveryCardEndedAsExpected(self) -> None:
        """The run exits 0 only when the campaign completed and no card ended
        otherwise than expected (one unexpected card, or a campaign not
        completed, fails it)."""
        self.assertTrue(self.summary().all_ok)
        self.assertIn(
            "every card ended as expected (the faulty ones with their reason)",
            self.summary().lines(),
        )
        wrong = self.summary(unexpected=("8988...: failed (card-timeout: x); expected succeeded",))
        self.assertFalse(wrong.all_ok)
        self.assertIn("1 card(s) did not end as expected:", wrong.lines())
        self.assertFalse(self.summary(state="cancelled").all_ok)
