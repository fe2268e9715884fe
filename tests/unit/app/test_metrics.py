"""The gateway's metrics, fed by the real engine and parts on a Clock, read from the registry."""

from __future__ import annotations

import itertools

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import GatewayMetrics, ObservedPushSender, ObservedRecorder, ObservedSmsEvents
from bipgw.app._metrics import status_label
from bipgw.codec.ota import PorStatus
from bipgw.core import SessionEngine, SessionId
from bipgw.smpp import SubmitPump
from bipgw.store import STORE_OPERATIONS, MemoryStore, time_statements
from tests.unit.core import (
    GET_DATA,
    ICCID,
    MSISDN,
    EngineTestCase,
    answer_post,
    fake_por,
    first_post,
)
from tests.unit.smpp import SETTINGS
from tests.unit.store.test_sqlite import open_inline

#: Every name of docs/observability.md, as the exposition writes it (one sample each).
NAMES = [
    "bipgw_sessions_open",
    "bipgw_session_setups_total",
    "bipgw_session_ends_total",
    "bipgw_session_setup_seconds",
    "bipgw_apdus_relayed_total",
    "bipgw_apdu_roundtrip_seconds",
    "bipgw_smpp_bound",
    "bipgw_smpp_window_in_flight",
    "bipgw_smpp_queue_depth",
    "bipgw_smpp_submits_total",
    "bipgw_smpp_responses_total",
    "bipgw_smpp_binds_total",
    "bipgw_push_outcomes_total",
    "bipgw_tls_handshakes_total",
    "bipgw_store_seconds",
    "bipgw_keycache_entries",
    "bipgw_imports_total",
]


class ObservedEngineTests(EngineTestCase):
    """The engine's sessions, through the observers, as metrics."""

    def setUp(self) -> None:
        super().setUp()
        self.metrics = GatewayMetrics()
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock,
            ObservedPushSender(self.sender, self.metrics),
            self.directory,
            ObservedRecorder(self.recorder, self.metrics),
            self.policy,
            new_id=lambda: next(ids),
        )
        self.engine.subscribe(self.events.append)
        self.sms = ObservedSmsEvents(self.engine, self.metrics)

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.sample(name, labels)

    def test_setupAndRelay(self) -> None:
        """A session opened, connected after 2.5 s, one script answered in
        0.75 s, closed: one setup, its latency, one APDU and its round trip,
        one end 'closed', none open."""
        session = self.open()
        self.assertEqual(self.value("bipgw_session_setups_total"), 1)
        self.assertEqual(self.value("bipgw_sessions_open"), 1)
        self.sender.accept()
        self.clock.advance(2.5)
        link = self.arrive()
        held = link.post(first_post())
        self.successResultOf(session.ready)
        self.assertEqual(self.value("bipgw_session_setup_seconds_count"), 1)
        self.assertEqual(self.value("bipgw_session_setup_seconds_sum"), 2.5)
        self.assertEqual(self.value("bipgw_session_setup_seconds_bucket", le="2.5"), 1)
        self.assertEqual(self.value("bipgw_session_setup_seconds_bucket", le="1.0"), 0)
        result = session.execute([GET_DATA, GET_DATA])
        self.successResultOf(held)
        self.clock.advance(0.75)
        closed = session.close()
        link.post(answer_post("/admin/s/s1/1"))
        self.successResultOf(result)
        self.assertEqual(self.value("bipgw_apdus_relayed_total"), 2)
        self.assertEqual(self.value("bipgw_apdu_roundtrip_seconds_count"), 1)
        self.assertEqual(self.value("bipgw_apdu_roundtrip_seconds_sum"), 0.75)
        # the relay back to CONNECTED is no second setup
        self.assertEqual(self.value("bipgw_session_setup_seconds_count"), 1)
        link.lost("closed")
        self.successResultOf(closed)
        self.assertEqual(self.value("bipgw_session_ends_total", reason="closed"), 1)
        self.assertEqual(self.value("bipgw_sessions_open"), 0)

    def test_endsByReason(self) -> None:
        """Failed sessions count under their reason's code; a refused one too."""
        self.open(iccid="89000000000000000999")  # no such card
        self.assertEqual(self.value("bipgw_session_ends_total", reason="unknown-card"), 1)
        session = self.open()
        for _ in range(100):  # pushes never accepted: retried, then given up
            self.clock.advance(5)
        self.failureResultOf(session.ready)
        reason = session.status().reason
        assert reason is not None
        self.assertEqual(self.value("bipgw_session_ends_total", reason=reason.value), 1)
        self.assertEqual(self.value("bipgw_session_setups_total"), 2)
        self.assertEqual(self.value("bipgw_sessions_open"), 0)
        self.assertEqual(self.value("bipgw_session_setup_seconds_count"), 0)

    def test_receiptsAndPors(self) -> None:
        """Delivery receipts through the SMS door count by result; PoRs by
        what their verification said."""
        session = self.open()
        self.sender.accept(-1, "msg-1")
        self.sms.delivery_receipt("msg-1", True, "stat:DELIVRD")
        self.sms.delivery_receipt("msg-9", False, "stat:UNDELIV")
        self.assertEqual(self.value("bipgw_push_outcomes_total", outcome="dlr-delivered"), 1)
        self.assertEqual(self.value("bipgw_push_outcomes_total", outcome="dlr-failed"), 1)
        self.successResultOf(self.sms.sms_received(MSISDN, b"forged"))
        self.assertEqual(self.value("bipgw_push_outcomes_total", outcome="por-unverified"), 1)
        self.flushLoggedErrors()
        self.successResultOf(self.sms.sms_received(MSISDN, fake_por(PorStatus.POR_OK)))
        self.assertEqual(self.value("bipgw_push_outcomes_total", outcome="por-ok"), 1)
        self.successResultOf(self.sms.sms_received(MSISDN, fake_por(PorStatus.COUNTER_LOW)))
        self.assertEqual(self.value("bipgw_push_outcomes_total", outcome="por-error"), 1)
        self.assertEqual([iccid for iccid, _ in self.sender.verified], [ICCID] * 3)
        self.assertNoResult(session.ready)


class _Smpp:
    """What the collector reads of the SMPP client: the real pump, bind counts."""

    def __init__(self, pump: SubmitPump) -> None:
        self.pump = pump
        self.binds = 3
        self.bind_failures = 2


class _Tls:
    completed = 7
    unknown_identity = 2
    lookup_error = 0
    key_mismatch = 1
    other_failure = 4


class PartsCollectorTests(SynchronousTestCase):
    """The parts' own counters, read when the registry is collected."""

    def setUp(self) -> None:
        self.metrics = GatewayMetrics()
        self.pump = SubmitPump(Clock(), SETTINGS)
        self.keys = ["card"] * 5
        self.metrics.watch(_Smpp(self.pump), _Tls(), self.keys)  # type: ignore[arg-type]

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def test_read(self) -> None:
        """Each part's counter appears under its agreed name and label."""
        self.pump.sent = 11
        self.pump.answers.update({0: 9, 0x58: 2, 0x400: 1})
        self.assertEqual(self.value("bipgw_smpp_bound"), 0)
        self.assertEqual(self.value("bipgw_smpp_window_in_flight"), 0)
        self.assertEqual(self.value("bipgw_smpp_queue_depth"), 0)
        self.assertEqual(self.value("bipgw_smpp_submits_total"), 11)
        self.assertEqual(self.value("bipgw_smpp_responses_total", status="ESME_ROK"), 9)
        self.assertEqual(self.value("bipgw_smpp_responses_total", status="ESME_RTHROTTLED"), 2)
        self.assertEqual(self.value("bipgw_smpp_responses_total", status="0x00000400"), 1)
        self.assertEqual(self.value("bipgw_smpp_binds_total", result="ok"), 3)
        self.assertEqual(self.value("bipgw_smpp_binds_total", result="failed"), 2)
        self.assertEqual(self.value("bipgw_tls_handshakes_total", result="ok"), 7)
        self.assertEqual(self.value("bipgw_tls_handshakes_total", result="unknown-identity"), 2)
        self.assertEqual(self.value("bipgw_tls_handshakes_total", result="key-mismatch"), 1)
        self.assertEqual(self.value("bipgw_tls_handshakes_total", result="failed"), 4)
        self.assertEqual(self.value("bipgw_keycache_entries"), 5)
        self.keys.append("another")
        self.assertEqual(self.value("bipgw_keycache_entries"), 6)

    def test_everyNameExposed(self) -> None:
        """The exposition has every agreed name, and parses."""
        text = generate_latest(self.metrics.registry).decode()
        families = text_string_to_metric_families(text)
        found = {f.name for f in families if not f.name.endswith("_created")}
        self.assertEqual(found, {name.removesuffix("_total") for name in NAMES})

    def test_statusLabels(self) -> None:
        """Statuses are named; unknown ones in hex; the overflow entry is 'other'."""
        self.assertEqual(status_label(0), "ESME_ROK")
        self.assertEqual(status_label(0x0400), "0x00000400")
        self.assertEqual(status_label(-1), "other")


class StatementTimingTests(SynchronousTestCase):
    """Store statements are timed by operation."""

    def test_sqlStatements(self) -> None:
        """Each statement of a real SQLite store is observed under its operation."""
        seen: list[tuple[str, float]] = []
        store = open_inline("sqlite://", self)
        self.assertTrue(time_statements(store, lambda op, s: seen.append((op, s))))
        self.successResultOf(store.list_audit(limit=1))
        self.assertIn("select", [op for op, _ in seen])
        self.assertTrue(all(s >= 0 for _, s in seen))

    def test_memoryStore(self) -> None:
        """The memory store runs no statement: nothing to time."""
        self.assertFalse(time_statements(MemoryStore(), lambda *a: None))

    def test_histogram(self) -> None:
        """Fed to the gateway's histogram, the operations are its labels."""
        metrics = GatewayMetrics()
        store = open_inline("sqlite://", self)
        children = {op: metrics.store_seconds.labels(op) for op in STORE_OPERATIONS}
        time_statements(store, lambda op, s: children[op].observe(s))
        self.successResultOf(store.list_audit(limit=1))
        self.assertGreaterEqual(metrics.sample("bipgw_store_seconds_count", {"op": "select"}), 1)


class DashboardTests(SynchronousTestCase):
    """docs/grafana/bipgw.json reads the agreed names, all of them, and nothing else."""

    def test_names(self) -> None:
        """Every metric the dashboard queries exists; every metric has a panel."""
        import json
        import re
        from pathlib import Path

        path = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "bipgw.json"
        dashboard = json.loads(path.read_text())
        exprs = [
            target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())
        ]
        used = {name for expr in exprs for name in re.findall(r"bipgw_[a-z_]+", expr)}
        series = {n for name in NAMES for n in (name, f"{name}_bucket", f"{name}_count")}
        self.assertLessEqual(used, series)
        for name in NAMES:
            with self.subTest(name=name):
                self.assertTrue(any(u.startswith(name) for u in used))
        ids = [panel["id"] for panel in dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, panel["title"])


class TallyTests(SynchronousTestCase):
    """The reactor thread's counters expose what prometheus_client's would."""

    def test_bucketsInclusive(self) -> None:
        """A value equal to a bound counts in that bucket; buckets are cumulative."""
        from bipgw.app._tallies import Buckets

        buckets = Buckets((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 1.0, 7.0):
            buckets.observe(value)
        cumulative, total = buckets.snapshot()
        self.assertEqual(cumulative, [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)])
        self.assertAlmostEqual(total, 8.65)
        self.assertRaises(ValueError, Buckets, (1.0, 0.5))
        self.assertRaises(ValueError, Buckets, ())

    def test_sameExpositionAsPrometheusClient(self) -> None:
        """Fed the same values, Buckets and prometheus_client's Histogram give the same samples."""
        from prometheus_client import CollectorRegistry, Histogram

        from bipgw.app._tallies import Buckets, TallyCollector

        theirs = CollectorRegistry()
        histogram = Histogram("x_seconds", "x", buckets=(0.5, 2.0), registry=theirs)
        ours = CollectorRegistry()
        collector = TallyCollector()
        buckets = Buckets((0.5, 2.0))
        collector.histogram("x_seconds", "x", buckets)
        ours.register(collector)
        for value in (0.2, 0.5, 1.5, 3.0):
            histogram.observe(value)
            buckets.observe(value)

        def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
            return {
                (s.name, s.labels.get("le", "")): s.value
                for family in registry.collect()
                for s in family.samples
                if not s.name.endswith("_created")
            }

        self.assertEqual(samples(ours), samples(theirs))
