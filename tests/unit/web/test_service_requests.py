"""C{POST /v1/service-requests} and its status (bipgw.web._service_requests)."""

from __future__ import annotations

from bipgw.store import RequestState
from tests.unit.platform import OTHER_TOKEN
from tests.unit.web import WebTestCase


class ServiceRequestApiTests(WebTestCase):
    def test_submit(self) -> None:
        """A tenant's request is kept pending, with what it asked; it can read it back."""
        self.clock.advance(1000)
        answer = self.call(
            "POST",
            "/v1/service-requests",
            {
                "service": "ram",
                "aids": ["a0000000871002"],
                "tars": ["B00010"],
                "expected_volume": 5000,
                "note": "roaming",
            },
        )
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(answer.body["state"], "pending")
        self.assertEqual(answer.body["aids"], ["A0000000871002"])
        self.assertEqual(answer.body["submitted_at"], 1000.0)
        kept = self.successResultOf(self.api.requests.get(answer.body["id"]))
        self.assertEqual(
            (kept.tenant_id, kept.service, kept.expected_volume, kept.state),
            ("acme", "ram", 5000, RequestState.PENDING),
        )
        status = self.call("GET", f"/v1/service-requests/{answer.body['id']}")
        self.assertEqual((status.status, status.body["service"]), (200, "ram"))
        other = self.call("GET", f"/v1/service-requests/{answer.body['id']}", token=OTHER_TOKEN)
        self.assertError(other, 404, "not-found")

    def test_refusals(self) -> None:
        """Every field is checked and named; an unknown one is refused; a token is needed."""
        for body, word in (
            ({}, "service"),
            ({"service": "bad name"}, "service"),
            ({"service": "isd", "aids": "A000"}, "aids"),
            ({"service": "isd", "aids": ["A0"]}, "aids"),
            ({"service": "isd", "tars": ["B0001"]}, "tars"),
            ({"service": "isd", "tars": ["B00010"] * 33}, "tars"),
            ({"service": "isd", "expected_volume": -1}, "expected_volume"),
            ({"service": "isd", "expected_volume": True}, "expected_volume"),
            ({"service": "isd", "expected_volume": 1.5}, "expected_volume"),
            ({"service": "isd", "note": "x" * 501}, "note"),
            ({"service": "isd", "colour": "red"}, "colour"),
        ):
            with self.subTest(body=body):
                answer = self.call("POST", "/v1/service-requests", body)
                self.assertError(answer, 400, "invalid-message")
                self.assertIn(word, answer.body["message"])
        self.assertError(
            self.call("POST", "/v1/service-requests", {"service": "isd"}, token=None),
            401,
            "auth-failed",
        )
        self.assertEqual(self.successResultOf(self.api.requests.count_pending()), 0)


class ServiceRequestAuditTests(WebTestCase):
    def test_audited(self) -> None:
        """A submitted request is in the audit log: the tenant, what it asked, from
        where; a refused one is not."""
        from twisted.internet.defer import succeed

        from bipgw.store import AuditRecord

        written: list[AuditRecord] = []

        def audit(record: AuditRecord) -> object:
            written.append(record)
            return succeed(len(written))

        self.api.audit = audit  # type: ignore[assignment]
        self.clock.advance(1000)
        body = {"service": "ram", "aids": ["a0000000871002"], "expected_volume": 7}
        answer = self.call("POST", "/v1/service-requests", body)
        self.assertEqual(answer.status, 201, answer.body)
        (record,) = written
        self.assertEqual(
            (record.actor, record.action, record.target),
            ("tenant:acme", "service-request-submitted", f"service-request:{answer.body['id']}"),
        )
        self.assertIn("A0000000871002", record.detail)
        self.assertIn("7 a day", record.detail)
        self.assertTrue(record.origin)
        self.call("POST", "/v1/service-requests", {"service": "bad name"})
        self.assertEqual(len(written), 1)
