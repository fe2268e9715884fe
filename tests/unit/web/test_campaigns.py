"""The campaign requests the HTTP API reads: every field checked, named when wrong,
and nothing but an ApiError for any JSON a client sends (Hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import Window
from bipgw.web._campaigns import parse_create, parse_targets
from bipgw.web._json import STATUS_OF, ApiError

BASE: dict[str, Any] = {
    "name": "n",
    "service": "isd",
    "script": "80CA9F7F00",
    "targets": ["8988211000000000011"],
}


class ParseTests(SynchronousTestCase):
    def refused(self, body: dict[str, Any]) -> str:
        with self.assertRaises(ApiError) as e:
            parse_create(body, "acme")
        self.assertEqual((e.exception.code, STATUS_OF[e.exception.code]), ("invalid-campaign", 400))
        return str(e.exception)

    def test_full(self) -> None:
        body = {
            **BASE,
            "targets": [
                "8988211000000000011",
                {"msisdn": "+33600000001", "variables": {"KEY": "0a0B"}},
            ],
            "batch": "B0001",
            "idempotent": True,
            "pace": {"rate": 2.5, "concurrency": 4.0, "burst": 2},
            "retry": {"attempts": 5, "backoff": 0, "factor": 1.5, "max_backoff": 10, "give_up": []},
            "windows": ["22:00-02:00"],
            "start": True,
        }
        spec, targets, batch, start = parse_create(body, "acme")
        self.assertEqual((spec.pace.rate, spec.pace.concurrency, spec.pace.burst), (2.5, 4, 2))
        self.assertEqual((spec.retry.attempts, spec.retry.give_up), (5, frozenset()))
        self.assertEqual(spec.windows, (Window.parse("22:00-02:00"),))
        self.assertEqual(
            (batch, start, spec.idempotent, spec.tenant_id), ("B0001", True, True, "acme")
        )
        self.assertEqual(targets[1].msisdn, "+33600000001")

    def test_refusals(self) -> None:
        for change, named in (
            ({"extra": 1}, "'extra'"),
            ({"batch": None}, "batch"),
            ({"name": "  "}, "name"),
            ({"targets": []}, "targets"),
            ({"targets": [{"iccid": "1", "msisdn": "2", "x": 1}]}, "targets[0]"),
            ({"targets": [{"iccid": 5}]}, "targets[0].iccid"),
            ({"pace": {"concurrency": 1.5}}, "pace.concurrency"),
            ({"pace": {"rate": 0}}, "rate"),
            ({"pace": {"rate": "fast"}}, "pace.rate"),
            ({"retry": {"attempts": 0}}, "attempts"),
            ({"retry": {"give_up": "x"}}, "retry.give_up"),
            ({"windows": ["24:00-01:00"]}, "window"),
            ({"windows": ["02:00-02:00"]}, "empty"),
            ({"idempotent": "yes"}, "idempotent"),
        ):
            self.assertIn(named, self.refused({**BASE, **change}))
        body = dict(BASE)
        del body["targets"]
        self.assertIn("targets", self.refused(body))

    def test_variablesHexOnly(self) -> None:
        """A card's variables are hex pairs (the document's pattern); the names a script's."""
        from bipgw.app._campaigns import _cards

        for variables in ({"K": "0A 0B"}, {"K": "ABC"}, {"1K": "00"}):
            targets = parse_targets([{"iccid": "8988211000000000011", "variables": variables}])
            with self.assertRaises(ValueError):
                _cards("c", targets, 0, 0.0)

    @settings(max_examples=300, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from([*BASE, "pace", "retry", "windows", "rate", "x", "batch"]),
                    inner,
                    max_size=6,
                )
            ),
            max_leaves=20,
        )
    )
    def test_anyJsonIsParsedOrRefused(self, body: Any) -> None:
        """Whatever JSON arrives, the parser answers or raises ApiError, nothing else."""
        if not isinstance(body, dict):
            body = {"targets": body}
        try:
            parse_create({**BASE, **body}, "acme")
        except ApiError as e:
            self.assertIn(e.code, STATUS_OF)
