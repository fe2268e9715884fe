"""The dashboard's numbers and charts (bipgw.web.portal._dashboard, _charts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.web.portal import DashboardSampler, line_chart, quantile


class QuantileTests(SynchronousTestCase):
    def test_interpolates(self) -> None:
        """As PromQL's histogram_quantile: linear within the bucket."""
        buckets = ((0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0))
        self.assertAlmostEqual(quantile(0.5, buckets), 0.3)
        self.assertAlmostEqual(quantile(0.25, buckets), 0.1)
        self.assertIsNone(quantile(0.5, ()))
        self.assertIsNone(quantile(0.5, ((1.0, 0.0), (float("inf"), 0.0))))
        self.assertEqual(quantile(0.99, ((1.0, 1.0), (float("inf"), 10.0))), 1.0)


class SamplerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.open = Gauge("bipgw_sessions_open", "x", registry=self.registry)
        self.setups = Counter("bipgw_session_setups", "x", registry=self.registry)
        self.setup_seconds = Histogram("bipgw_session_setup_seconds", "x", registry=self.registry)
        self.outcomes = Counter("bipgw_push_outcomes", "x", ["outcome"], registry=self.registry)
        self.sampler = DashboardSampler(self.registry, self.clock, interval=10.0, keep=360)

    def test_ringBuffer(self) -> None:
        """One sample every 10 s, the last hour kept."""
        self.sampler.start()
        for _ in range(400):
            self.clock.advance(10)
        self.assertEqual(len(self.sampler.samples), 360)
        self.sampler.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_rates(self) -> None:
        """A counter's chart is its rate per second between samples."""
        self.sampler.start()
        self.setups.inc(50)
        self.clock.advance(10)
        self.setups.inc(20)
        self.clock.advance(10)
        points = self.sampler.series("setups", live=False)
        self.assertEqual([v for _, v in points], [5.0, 2.0])
        self.setups.inc(30)
        self.clock.advance(5)
        self.assertEqual(self.sampler.numbers()["setups_per_s"], 6.0)
        self.sampler.stop()

    def test_numbers(self) -> None:
        """Gauges, label breakdowns and percentiles of the last minute."""
        self.open.set(4)
        self.outcomes.labels("por-ok").inc(3)
        self.outcomes.labels("dlr-failed").inc()
        self.sampler.start()
        for _ in range(100):
            self.setup_seconds.observe(5.0)  # long ago
        for _ in range(7):
            self.clock.advance(10)
        for _ in range(100):
            self.setup_seconds.observe(0.02)
        numbers = self.sampler.numbers()
        self.assertEqual(numbers["sessions_open"], 4.0)
        self.assertEqual(numbers["breakdowns"]["push_outcomes"], {"dlr-failed": 1.0, "por-ok": 3.0})
        self.assertLess(numbers["latency_ms"]["setup"]["p99"], 30.0)
        self.assertTrue(numbers["metrics_present"])
        self.sampler.stop()

    def test_noMetrics(self) -> None:
        """An empty registry: zeros and Nones, no error."""
        numbers = DashboardSampler(CollectorRegistry(), self.clock).numbers()
        self.assertFalse(numbers["metrics_present"])
        self.assertIsNone(numbers["latency_ms"]["setup"]["p50"])


class ChartTests(SynchronousTestCase):
    def test_svg(self) -> None:
        """A polyline over the last hour; the title escaped."""
        svg = str(line_chart("<b>x</b>", [(3000.0, 1.0), (3500.0, 2.0)], now=3600.0))
        self.assertTrue(svg.startswith("<svg"))
        self.assertIn("<polyline", svg)
        self.assertIn("&lt;b&gt;x&lt;/b&gt;", svg)
        self.assertNotIn("<b>", svg)
        self.assertIn("no data yet", str(line_chart("t", [], now=10.0)))
