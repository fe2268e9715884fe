# -*- test-case-name: tests.unit.web.portal.test_dashboard -*-
"""The dashboard's numbers, read from the gateway's Prometheus registry.

The gateway keeps one C{prometheus_client} registry (the names are in
docs/metrics.md); the portal reads it, it does not count anything of its
own.  L{DashboardSampler} takes a sample every C{interval} seconds (10 by
default) into a ring buffer of the last hour (360 samples), for the
charts, and L{DashboardSampler.numbers} reads the registry now for the
live numbers: rates are the counter's increase since the newest sample,
percentiles are interpolated in the histogram's buckets (as PromQL's
C{histogram_quantile}), over the buckets' increase in the last minute when
there is a sample that old, else since the start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

__all__ = ["DashboardSampler", "Sample", "quantile"]

#: Counters and gauges sampled for the charts: chart key -> sample name.
SAMPLED = {
    "sessions_open": "bipgw_sessions_open",
    "setups": "bipgw_session_setups_total",
    "apdus": "bipgw_apdus_relayed_total",
    "smpp_queue": "bipgw_smpp_queue_depth",
}
#: Histograms: key -> metric family name.
HISTOGRAMS = {
    "setup": "bipgw_session_setup_seconds",
    "roundtrip": "bipgw_apdu_roundtrip_seconds",
}
#: Counters broken down by a label: key -> (family name, label).
BREAKDOWNS = {
    "push_outcomes": ("bipgw_push_outcomes", "outcome"),
    "tls_handshakes": ("bipgw_tls_handshakes", "result"),
    "session_ends": ("bipgw_session_ends", "reason"),
    "smpp_responses": ("bipgw_smpp_responses", "status"),
}
_Buckets = tuple[tuple[float, float], ...]


@attrs.frozen
class Sample:
    """The registry at one moment: values by L{SAMPLED} key, histogram buckets."""

    at: float
    values: Mapping[str, float]
    buckets: Mapping[str, _Buckets]


def quantile(q: float, buckets: _Buckets) -> float | None:
    """The C{q} quantile of cumulative C{(upper bound, count)} buckets, or C{None} if empty."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _families(registry: Any) -> dict[str, Any]:
    return {family.name: family for family in registry.collect()}


def _buckets(family: Any) -> _Buckets:
    found = []
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            found.append((float(sample.labels.get("le", "inf")), float(sample.value)))
    return tuple(sorted(found))


def _minus(now: _Buckets, then: _Buckets) -> _Buckets:
    before = dict(then)
    return tuple((b, c - before.get(b, 0.0)) for b, c in now)


class DashboardSampler:
    """Samples the registry for the charts; reads it for the live numbers."""

    def __init__(
        self, registry: Any, clock: IReactorTime, *, interval: float = 10.0, keep: int = 360
    ) -> None:
        """
        @param registry: a C{prometheus_client.CollectorRegistry}.
        @param interval: seconds between two samples.
        @param keep: samples kept (360 x 10 s: the last hour).
        """
        self.registry = registry
        self._clock = clock
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def start(self) -> None:
        """Sample now and every C{interval} seconds."""
        if not self._loop.running:
            self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        """Stop sampling."""
        if self._loop.running:
            self._loop.stop()

    def read(self) -> Sample:
        """The registry now."""
        families = _families(self.registry)
        values: dict[str, float] = {}
        for key, name in SAMPLED.items():
            value = self.registry.get_sample_value(name)
            values[key] = float(value) if value is not None else 0.0
        buckets = {
            key: _buckets(families[name]) if name in families else ()
            for key, name in HISTOGRAMS.items()
        }
        return Sample(self._clock.seconds(), values, buckets)

    def sample(self) -> Sample:
        """Take one sample into the ring buffer."""
        taken = self.read()
        self.samples.append(taken)
        return taken

    def series(self, key: str, *, live: bool = True) -> list[tuple[float, float]]:
        """A chart's points over the buffer: gauges as sampled, counters as a rate per second.

        @param live: end with a reading of the registry now (the newest
            sample may be up to C{interval} seconds old).
        """
        points: list[tuple[float, float]] = []
        previous: Sample | None = None
        taken = list(self.samples)
        if live:
            taken.append(self.read())
        for sample in taken:
            value = sample.values.get(key, 0.0)
            if key in ("setups", "apdus"):
                if previous is not None and sample.at > previous.at:
                    gained = max(0.0, value - previous.values.get(key, 0.0))
                    points.append((sample.at, gained / (sample.at - previous.at)))
            else:
                points.append((sample.at, value))
            previous = sample
        return points

    def numbers(self) -> dict[str, Any]:
        """The live numbers the dashboard shows (JSON-ready)."""
        now = self.read()
        families = _families(self.registry)
        newest = self.samples[-1] if self.samples else None
        rates: dict[str, float | None] = {}
        for key in ("setups", "apdus"):
            if newest is None or now.at <= newest.at:
                rates[key] = self._last_rate(key)
            else:
                gained = max(0.0, now.values[key] - newest.values.get(key, 0.0))
                rates[key] = gained / (now.at - newest.at)
        window = self._minute_ago(now.at)
        latency: dict[str, dict[str, float | None]] = {}
        for key in HISTOGRAMS:
            buckets = now.buckets[key]
            if window is not None and window.buckets.get(key):
                buckets = _minus(buckets, window.buckets[key])
            latency[key] = {
                f"p{int(q * 100)}": _ms(quantile(q, buckets)) for q in (0.5, 0.95, 0.99)
            }
        return {
            "at": now.at,
            "sessions_open": now.values["sessions_open"],
            "setups_per_s": rates["setups"],
            "apdus_per_s": rates["apdus"],
            "setups_total": now.values["setups"],
            "apdus_total": now.values["apdus"],
            "latency_ms": latency,
            "smpp": {
                "bound": self._value("bipgw_smpp_bound"),
                "window": self._value("bipgw_smpp_window_in_flight"),
                "queue": self._value("bipgw_smpp_queue_depth"),
                "submits": self._value("bipgw_smpp_submits_total"),
            },
            "breakdowns": {
                key: _by_label(families.get(name), label)
                for key, (name, label) in BREAKDOWNS.items()
            },
            "metrics_present": _has_any(families),
        }

    def _value(self, name: str) -> float | None:
        value = self.registry.get_sample_value(name)
        return None if value is None else float(value)

    def _last_rate(self, key: str) -> float | None:
        points = self.series(key, live=False)
        return points[-1][1] if points else None

    def _minute_ago(self, at: float) -> Sample | None:
        found = None
        for sample in self.samples:
            if at - sample.at >= 60.0:
                found = sample
        return found


def _has_any(families: Mapping[str, Any]) -> bool:
    return any(name.startswith("bipgw_") for name in families)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _by_label(family: Any, label: str) -> dict[str, float]:
    if family is None:
        return {}
    found: dict[str, float] = {}
    for sample in family.samples:
        if sample.name.endswith("_total") and label in sample.labels:
            found[sample.labels[label]] = float(sample.value)
    return dict(sorted(found.items()))


def chart_keys() -> Iterable[str]:
    """The charts the dashboard draws."""
    return ("sessions_open", "setups", "apdus", "smpp_queue")
