"""The portal's own C{/metrics}, C{/healthz} and C{/readyz} (the gateway's
metrics on the portal's listener): for a logged-in operator, or for a
scraper bearing C{[metrics] token_file}'s token; nobody else."""

from __future__ import annotations

import json

from prometheus_client import generate_latest
from twisted.web.static import Data

from bipgw.web import health_resource, ready_resource
from tests.unit.web.portal import PortalTestCase
from tests.unit.web.test_metrics_site import FakeReadiness

TOKEN = "metrics-token-0123456789abcdef"


class PortalObservabilityTests(PortalTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ready = FakeReadiness()
        self.portal.observability = {
            # The gateway serves prometheus_client's own resource (rendered in
            # the reactor's threads: tests/integration/test_demo.py reads it);
            # here the same exposition, rendered at once.
            "metrics": Data(generate_latest(self.registry), "text/plain; version=0.0.4"),
            "healthz": health_resource(),
            "readyz": ready_resource(self.ready),
        }

    def test_loggedIn(self) -> None:
        """Any operator's session reads the three; the metrics are the registry's."""
        browser = self.browser("vic")
        page = browser.get("/metrics")
        self.assertEqual(page.status, 200, page.text[:300])
        self.assertIn("bipgw_sessions_open 2.0", page.text)
        self.assertIn("text/plain", page.header("content-type") or "")
        self.assertEqual(json.loads(browser.get("/healthz").text), {"status": "alive"})
        self.assertEqual(browser.get("/readyz").status, 200)
        self.ready.checks["smpp"] = "not bound to the SMSC"
        page = browser.get("/readyz")
        self.assertEqual(page.status, 503)
        self.assertEqual(json.loads(page.text)["not_ready"], ["smpp"])

    def test_anonymousRefused(self) -> None:
        """Without a session or token: the login page; nothing of the metrics."""
        browser = self.browser()
        for path in ("/metrics", "/healthz", "/readyz"):
            with self.subTest(path=path):
                page = browser.get(path)
                self.assertEqual((page.status, page.header("location")), (303, "/login"))
                self.assertNotIn("bipgw_", page.text)

    def test_scrapeToken(self) -> None:
        """With the scrape token (Prometheus' bearer), no login; a wrong one is 401."""
        from tests.unit.web.portal import Browser

        self.portal._scrape = b"Bearer " + TOKEN.encode()
        scraper = Browser(self.portal)
        page = self._get(scraper, "/metrics", f"Bearer {TOKEN}")
        self.assertEqual(page.status, 200)
        self.assertIn("bipgw_session_setups_total 10.0", page.text)
        wrong = self._get(scraper, "/metrics", "Bearer not-the-token-0123456789")
        self.assertEqual(wrong.status, 401)
        self.assertNotIn("bipgw_", wrong.text)
        self.assertIn("Bearer", wrong.header("www-authenticate") or "")

    def test_noTokenConfigured(self) -> None:
        """Without [metrics] token_file no bearer token opens them."""
        from tests.unit.web.portal import Browser

        page = self._get(Browser(self.portal), "/metrics", f"Bearer {TOKEN}")
        self.assertEqual(page.status, 401)

    def test_notServed(self) -> None:
        """A portal given no readiness answers /readyz 404 (after the login)."""
        del self.portal.observability["readyz"]
        self.assertEqual(self.browser("vic").get("/readyz").status, 404)

    def _get(self, browser, path: str, authorization: str):  # type: ignore[no-untyped-def]
        from tests.unit.web.portal import BASE, result_of

        d = browser.treq.get(
            BASE + path, headers={b"Authorization": [authorization.encode()]}, allow_redirects=False
        )
        browser.treq.flush()
        return browser._answer(result_of(d))
