# -*- test-case-name: tests.unit.app.test_metrics -*-
"""Counters and histograms for the reactor thread's hot paths, exported at scrape time.

prometheus_client's L{Counter} and L{Histogram} are thread-safe: each
increment takes a lock, and an observation walks the buckets under it
(measured on the bench machine: about 1 us an increment, 3 us an
observation; C{python -m bench.metrics}).  The session engine's events all
happen on the reactor thread, so what they feed needs no lock: a
L{Tally} is an integer attribute, L{Buckets} a list of counts indexed by
C{bisect}, and L{TallyCollector} turns them into metric families only when
the registry is collected, under the same names and with the same
exposition as prometheus_client's own types (cumulative C{le} buckets,
C{_sum}, C{_count}).

A scrape runs in the reactor's thread pool (the WSGI resource) while the
reactor may be incrementing: each value read is whole (a Python integer or
float is never torn), and a histogram's buckets are copied in one step, so
a scrape may lag an event that is under way, never show a count going
down.  Anything incremented from other threads (the store's statement
timings) stays a prometheus_client type.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["Buckets", "LabelledTallies", "Tally", "TallyCollector"]


class Tally:
    """A number the reactor thread changes: C{value += 1} (a gauge may go down)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class LabelledTallies:
    """One L{Tally} per value of one label, made on first use.

    @ivar label: the label's name.
    """

    __slots__ = ("_tallies", "label")

    def __init__(self, label: str, values: Iterable[str] = ()) -> None:
        self.label = label
        self._tallies: dict[str, Tally] = {value: Tally() for value in values}

    def __getitem__(self, value: str) -> Tally:
        """The tally of C{value} (made at its first use; values must be a bounded set)."""
        tally = self._tallies.get(value)
        if tally is None:
            tally = self._tallies[value] = Tally()
        return tally

    def items(self) -> list[tuple[str, int]]:
        """Each label value and its count, sorted."""
        return sorted((value, tally.value) for value, tally in self._tallies.copy().items())


class Buckets:
    """A histogram the reactor thread feeds: C{observe(value)} is a bisect and two additions.

    @ivar bounds: the buckets' upper bounds (inclusive), ascending; C{+Inf} is implied.
    """

    __slots__ = ("_counts", "_sum", "bounds")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bucket bounds must ascend strictly: {bounds!r}")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count C{value} in the first bucket whose bound is at least C{value}."""
        self._counts[bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """The cumulative C{(le, count)} buckets, C{+Inf} last, and the sum."""
        counts, total = self._counts[:], self._sum
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            buckets.append((floatToGoString(bound), float(running)))
        return buckets, total


class TallyCollector(Collector):
    """Exposes tallies and buckets under their metric names when the registry is collected."""

    def __init__(self) -> None:
        self._counters: list[tuple[str, str, Tally | LabelledTallies]] = []
        self._gauges: list[tuple[str, str, Tally]] = []
        self._histograms: list[tuple[str, str, Buckets]] = []

    def counter(self, name: str, documentation: str, tally: Tally | LabelledTallies) -> None:
        """Expose C{tally} as the counter C{name} (C{name_total})."""
        self._counters.append((name, documentation, tally))

    def gauge(self, name: str, documentation: str, tally: Tally) -> None:
        """Expose C{tally} as the gauge C{name}."""
        self._gauges.append((name, documentation, tally))

    def histogram(self, name: str, documentation: str, buckets: Buckets) -> None:
        """Expose C{buckets} as the histogram C{name}."""
        self._histograms.append((name, documentation, buckets))

    def describe(self) -> list[Metric]:
        """The families, without samples."""
        return list(self._families(empty=True))

    def collect(self) -> Iterator[Metric]:
        """The families with their values now."""
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        for name, doc, tally in self._counters:
            if isinstance(tally, LabelledTallies):
                family = CounterMetricFamily(name, doc, labels=[tally.label])
                for value, count in [] if empty else tally.items():
                    family.add_metric([value], count)
            else:
                family = CounterMetricFamily(name, doc, value=None if empty else tally.value)
            yield family
        for name, doc, gauge in self._gauges:
            yield GaugeMetricFamily(name, doc, value=None if empty else gauge.value)
        for name, doc, buckets in self._histograms:
            if empty:
                yield HistogramMetricFamily(name, doc)
            else:
                cumulative, total = buckets.snapshot()
                yield HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=total)
