"""The session policy: validated values and the backoff schedule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import BusyPolicy, PolicyError, SessionPolicy


class PolicyTests(SynchronousTestCase):
    """Bad settings are refused naming the field; waits grow then stop growing."""

    def test_defaults(self) -> None:
        """Defaults: 3 pushes, queueing, 60 s for the card doubling to 240 s."""
        policy = SessionPolicy()
        self.assertEqual(policy.attempts, 3)
        self.assertIs(policy.busy_policy, BusyPolicy.QUEUE)
        self.assertEqual([policy.card_wait(n) for n in (1, 2, 3)], [60, 120, 240])
        self.assertEqual([policy.retry_wait(n) for n in (1, 2, 3)], [5, 10, 20])

    def test_cap(self) -> None:
        """No wait exceeds max_wait, even for absurd attempt numbers."""
        policy = SessionPolicy(card_timeout=100, max_wait=250, push_backoff=3)
        self.assertEqual([policy.card_wait(n) for n in (1, 2, 3, 10**6)], [100, 250, 250, 250])
        flat = SessionPolicy(card_timeout=100, max_wait=50, push_backoff=1)
        self.assertEqual(flat.card_wait(7), 50)
        self.assertRaises(ValueError, policy.card_wait, 0)

    def test_busyPolicyFromText(self) -> None:
        """The configuration's text values convert; others are refused."""
        self.assertIs(SessionPolicy(busy_policy="refuse").busy_policy, BusyPolicy.REFUSE)  # type: ignore[arg-type]
        with self.assertRaises(PolicyError) as ctx:
            SessionPolicy(busy_policy="drop")  # type: ignore[arg-type]
        self.assertIn("busy_policy", str(ctx.exception))

    def test_invalidValues(self) -> None:
        """Zero, negative, infinite, NaN, bool and wrong-typed values name their field."""
        cases = {
            "push_timeout": [0, -1, float("inf"), float("nan"), True, "10"],
            "push_retries": [-1, 1.5, True],
            "push_backoff": [0.5, float("inf")],
            "queue_limit_per_card": [-2],
        }
        for name, values in cases.items():
            for value in values:
                with self.assertRaises(PolicyError, msg=(name, value)) as ctx:
                    SessionPolicy(**{name: value})  # type: ignore[arg-type]
                self.assertIn(name, str(ctx.exception))
        self.assertIsInstance(PolicyError("x"), ValueError)

    @given(
        st.floats(min_value=0.001, max_value=1e6),
        st.floats(min_value=1, max_value=100),
        st.floats(min_value=0.001, max_value=1e7),
        st.integers(min_value=1, max_value=10_000),
    )
    def test_waitsMonotonicAndBounded(
        self, base: float, factor: float, cap: float, attempt: int
    ) -> None:
        """Each wait is at most max_wait and never shorter than the previous one."""
        policy = SessionPolicy(card_timeout=base, push_backoff=factor, max_wait=cap)
        wait = policy.card_wait(attempt)
        self.assertLessEqual(wait, cap)
        self.assertGreater(wait, 0)
        if attempt > 1:
            self.assertLessEqual(policy.card_wait(attempt - 1), wait * (1 + 1e-12))
