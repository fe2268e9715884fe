"""Tests for what a trigger asks the card for: the admin session and its retries."""

from __future__ import annotations

from datetime import timedelta

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ram import RetryPolicy
from simcard.session_request import AdminSessionRequest, SessionRetryPolicy
from tests import vectors


class RequestTests(SynchronousTestCase):
    """L{SessionRetryPolicy} and L{AdminSessionRequest} hold only what a card can use."""

    def test_retryPolicy(self) -> None:
        """The trigger's counter gives that many retries, each after the delay."""
        policy = SessionRetryPolicy(2, 30.0)
        self.assertEqual([policy.next_retry_delay(n) for n in (1, 2, 3)], [30.0, 30.0, None])
        self.assertIsNone(SessionRetryPolicy().next_retry_delay(1))
        self.assertRaises(ValueError, policy.next_retry_delay, 0)
        self.assertRaises(ValueError, SessionRetryPolicy, -1)

    def test_retryFromLiveCard(self) -> None:
        """The live card's stored 86 07 0001 25 03 001000: one retry after 1 minute."""
        name = "Retry policy 86 as stored on a live card: counter 0001, timer 25 03 001000"
        tlv = bytes.fromhex(vectors.by_name("gp_amd_b_tlvs", name)["tlv"])
        policy = SessionRetryPolicy.from_trigger(RetryPolicy.decode(tlv))
        self.assertEqual(policy, SessionRetryPolicy(1, timedelta(minutes=1).total_seconds()))

    def test_requestValidated(self) -> None:
        """A request with a port out of range or an empty URI cannot be built."""
        with self.assertRaises(ValueError):
            AdminSessionRequest(address="h", port=0, host="h", uri="/", agent_id="a")
        with self.assertRaises(ValueError):
            AdminSessionRequest(address="h", port=1, host="h", uri="", agent_id="a")
