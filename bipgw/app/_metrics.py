# -*- test-case-name: tests.unit.app.test_metrics -*-
"""The gateway's Prometheus metrics: one registry, every name in one place.

The gateway (L{bipgw.app.Gateway}) builds one L{GatewayMetrics} and hands
its C{registry} to the C{/metrics} resource (L{bipgw.web.metrics_site}) and
to the operator portal, which reads values with
C{registry.get_sample_value(name, labels)}.  The names are the ones agreed
in C{docs/observability.md}; a counter named C{bipgw_session_setups} here is
exposed as C{bipgw_session_setups_total}.

Two kinds of metrics, so the hot paths pay no more than an increment:

  - I{fed}: counters and histograms the gateway's observers
    (L{bipgw.app._observers}) update as things happen: session setups and
    ends, setup latency, APDUs and their round trip, PoR and delivery-receipt
    outcomes (on the reactor thread: plain numbers, L{bipgw.app._tallies}),
    store statement latency and imports (prometheus_client's own types:
    the store's statements are timed in its threads);
  - I{read at scrape time} (L{PartsCollector}): the counters the parts keep
    anyway (L{bipgw.smpp.SubmitPump}'s submits and answers,
    L{bipgw.tls.PskServerStats}' handshakes, the SMPP bind counts, window,
    queue and bind state, the key cache's size) are turned into metric
    families only when Prometheus asks, so those parts import nothing of
    Prometheus and keep counting with a plain C{+= 1}.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bipgw.app._tallies import Buckets, LabelledTallies, Tally, TallyCollector
from bipgw.codec.smpp import CommandStatus
from bipgw.smpp import SmppClientService
from bipgw.tls import PskServerStats

__all__ = [
    "APDU_BUCKETS",
    "PUSH_OUTCOMES",
    "SETUP_BUCKETS",
    "STORE_BUCKETS",
    "GatewayMetrics",
    "PartsCollector",
    "status_label",
]

#: Seconds from a platform's open to the card's first POST: a push, an SMS
#: delivery and a TLS handshake over a mobile network (seconds to a minute).
SETUP_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
#: Seconds from a script sent to the card to its answer (one radio round trip
#: and the card's execution).
APDU_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds one SQL statement takes in the store's thread.
STORE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

#: The C{outcome} label values of C{bipgw_push_outcomes_total}.
PUSH_OUTCOMES: Final = (
    "por-ok",  # a PoR verified with status 00
    "por-error",  # a PoR verified with an error status (counter low, ...)
    "por-unverified",  # a PoR that did not verify (bad checksum, no keys): ignored
    "dlr-delivered",  # a final delivery receipt: delivered
    "dlr-failed",  # a final delivery receipt: undeliverable, expired, rejected...
)

_STATUS_NAMES: Final = {int(s): s.name for s in CommandStatus}


def status_label(status: int) -> str:
    """An SMPP command_status as a label value: its name (C{ESME_ROK}), its
    hexadecimal value for a vendor or reserved status (C{0x00000400}), or
    C{other} for L{bipgw.smpp.SubmitPump.answers}' overflow entry (C{-1})."""
    if status < 0:
        return "other"
    return _STATUS_NAMES.get(status) or f"0x{status:08X}"


class _Sized(Protocol):
    def __len__(self) -> int: ...


class PartsCollector(Collector):
    """The parts' own counters as metric families, read when Prometheus scrapes.

    @param smpp: the SMPP client (its bind counts, and its submit pump's
        window, queue, submits and answers by status).
    @param tls: the admin server's handshake counters.
    @param keycache_entries: how many cards the key cache holds now.
    """

    def __init__(
        self,
        smpp: SmppClientService,
        tls: PskServerStats,
        keycache_entries: _Sized,
    ) -> None:
        self._smpp = smpp
        self._tls = tls
        self._keys = keycache_entries

    def describe(self) -> list[Metric]:
        """The families, without samples (the registry checks names with it)."""
        return list(self._families(empty=True))

    def collect(self) -> Iterator[Metric]:
        """The families, with the parts' values now."""
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        bound = GaugeMetricFamily(
            "bipgw_smpp_bound", "1 while the SMPP client is bound to the SMSC, else 0."
        )
        window = GaugeMetricFamily(
            "bipgw_smpp_window_in_flight", "submit_sm sent and not answered yet."
        )
        queue = GaugeMetricFamily(
            "bipgw_smpp_queue_depth", "SMS parts waiting to be submitted (for the bind or window)."
        )
        submits = CounterMetricFamily(
            "bipgw_smpp_submits", "submit_sm written to the SMSC (resends included)."
        )
        responses = CounterMetricFamily(
            "bipgw_smpp_responses",
            "Answers to submit_sm by command_status name.",
            labels=["status"],
        )
        binds = CounterMetricFamily(
            "bipgw_smpp_binds", "Bind attempts by result (ok, failed).", labels=["result"]
        )
        handshakes = CounterMetricFamily(
            "bipgw_tls_handshakes",
            "TLS-PSK handshakes on the admin listener by result.",
            labels=["result"],
        )
        keycache = GaugeMetricFamily(
            "bipgw_keycache_entries", "Cards whose keys the key cache holds."
        )
        if not empty:
            smpp = self._smpp
            pump = smpp.pump
            link = pump.link
            bound.add_metric([], 1.0 if link is not None else 0.0)
            window.add_metric([], link.outstanding if link is not None else 0)
            queue.add_metric([], len(pump.queue))
            submits.add_metric([], pump.sent)
            for status, count in sorted(pump.answers.copy().items()):  # one atomic copy
                responses.add_metric([status_label(status)], count)
            binds.add_metric(["ok"], smpp.binds)
            binds.add_metric(["failed"], smpp.bind_failures)
            tls = self._tls
            handshakes.add_metric(["ok"], tls.completed)
            handshakes.add_metric(["unknown-identity"], tls.unknown_identity)
            handshakes.add_metric(["lookup-error"], tls.lookup_error)
            handshakes.add_metric(["key-mismatch"], tls.key_mismatch)
            handshakes.add_metric(["failed"], tls.other_failure)
            keycache.add_metric([], len(self._keys))
        yield from (bound, window, queue, submits, responses, binds, handshakes, keycache)


class GatewayMetrics:
    """Every metric of the gateway, in one L{CollectorRegistry}.

    @ivar registry: what C{/metrics} serves and the portal reads.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        # What the reactor thread feeds on its hot paths: plain numbers,
        # exposed when the registry is collected (bipgw.app._tallies).
        self.sessions_open = Tally()
        self.session_setups = Tally()
        self.session_ends = LabelledTallies("reason", ("closed",))
        self.session_setup_seconds = Buckets(SETUP_BUCKETS)
        self.apdus_relayed = Tally()
        self.apdu_roundtrip_seconds = Buckets(APDU_BUCKETS)
        self.push_outcomes = LabelledTallies("outcome", PUSH_OUTCOMES)
        fed = TallyCollector()
        fed.gauge("bipgw_sessions_open", "Sessions opened and not ended yet.", self.sessions_open)
        fed.counter(
            "bipgw_session_setups",
            "Sessions opened by a platform (through any door).",
            self.session_setups,
        )
        fed.counter(
            "bipgw_session_ends",
            "Sessions ended, by reason (closed, or the failure reason's code).",
            self.session_ends,
        )
        fed.histogram(
            "bipgw_session_setup_seconds",
            "Seconds from a session's open to its card's first POST (channel ready).",
            self.session_setup_seconds,
        )
        fed.counter(
            "bipgw_apdus_relayed", "C-APDUs sent to cards in command scripts.", self.apdus_relayed
        )
        fed.histogram(
            "bipgw_apdu_roundtrip_seconds",
            "Seconds from a command script sent to the card to its answer.",
            self.apdu_roundtrip_seconds,
        )
        fed.counter(
            "bipgw_push_outcomes",
            "What came back for pushes: PoRs by result, final delivery receipts by result.",
            self.push_outcomes,
        )
        registry.register(fed)
        # Fed from other threads (the store's) or rarely: prometheus_client's own.
        self.store_seconds = Histogram(
            "bipgw_store_seconds",
            "Seconds one SQL statement of the store took, by operation.",
            ["op"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.imports = Counter(
            "bipgw_imports",
            "Files imported by the running gateway, by kind and outcome (ok, partial, refused).",
            ["kind", "outcome"],
            registry=registry,
        )

    def watch(self, smpp: SmppClientService, tls: PskServerStats, keycache: _Sized) -> None:
        """Serve the parts' own counters too (L{PartsCollector}); call once."""
        self.registry.register(PartsCollector(smpp, tls, keycache))

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's value now, 0 when it has none yet (tests, the portal)."""
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value
