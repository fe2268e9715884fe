"""What the metrics cost the hot paths: ``python -m bench.metrics``.

Times, per call, what the gateway's observers (L{bipgw.app._observers}) add
to the engine's recorder calls, against the bare recorder they wrap, and
what one scrape of the whole registry costs (the parts' counters are read
then, not on their paths).  The gateway-wide figures before and after are
``python -m bench.gateway`` run on both trees (bench/RESULTS.md, issue 10).
"""

from __future__ import annotations

import os
import platform
import time
import timeit

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bipgw.app import GatewayMetrics, ObservedRecorder
from bipgw.app._metrics import APDU_BUCKETS
from bipgw.app._tallies import Buckets, Tally
from bipgw.core import (
    ApduTrace,
    CardTarget,
    MemorySessionRecorder,
    SessionEvent,
    SessionId,
    SessionState,
    SessionStatus,
)


class _Null(MemorySessionRecorder):
    """A recorder that keeps nothing: the cost measured is the observer's alone."""

    def record_event(self, event: SessionEvent) -> None:
        return None

    def record_apdus(self, traces: object) -> None:  # type: ignore[override]
        return None


def _per_call(statement: object, number: int) -> float:
    best = min(timeit.repeat(statement, number=number, repeat=5))  # type: ignore[arg-type]
    return best / number * 1e9


def main() -> None:
    metrics = GatewayMetrics()
    bare = _Null()
    observed = ObservedRecorder(_Null(), metrics)
    sid = SessionId("s1")
    note = SessionEvent(
        sid, 2, 1.0, SessionState.CONNECTED, SessionState.CONNECTED, transition=False
    )
    relay = SessionEvent(sid, 3, 1.0, SessionState.CONNECTED, SessionState.RELAYING)
    back = SessionEvent(sid, 4, 1.5, SessionState.RELAYING, SessionState.CONNECTED)
    traces = [ApduTrace(sid, 1, i, b"\x00\xa4\x04\x00", b"\x90\x00", 1.0, 1.5) for i in range(5)]
    status = SessionStatus(
        sid, "isd", CardTarget.by_iccid("8988211000000000018"), SessionState.REQUESTED, 0.0, 0.0
    )
    n = 200_000
    rows = [
        (
            "record_event, a note",
            lambda: bare.record_event(note),
            lambda: observed.record_event(note),
        ),
        (
            "record_event, a relay transition",
            lambda: bare.record_event(relay),
            lambda: observed.record_event(back),
        ),
        (
            "record_apdus, a 5-APDU script",
            lambda: bare.record_apdus(traces),
            lambda: observed.record_apdus(traces),
        ),
    ]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or 'cpu'},"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    for name, plain, watched in rows:
        a, b = _per_call(plain, n), _per_call(watched, n)
        print(f"  {name}: bare {a:.0f} ns, observed {b:.0f} ns (+{b - a:.0f} ns)")
    opened = _per_call(lambda: observed.record_opened(status), n)
    print(f"  record_opened observed (2 increments, one dict entry): {opened:.0f} ns")
    counter = Counter("c", "c", registry=CollectorRegistry())
    histogram = Histogram("h", "h", buckets=APDU_BUCKETS, registry=CollectorRegistry())
    tally, buckets = Tally(), Buckets(APDU_BUCKETS)

    def add() -> None:
        tally.value += 1

    print(
        f"  prometheus_client Counter.inc {_per_call(counter.inc, n):.0f} ns,"
        f" Histogram.observe {_per_call(lambda: histogram.observe(0.3), n):.0f} ns;"
        f" Tally += 1 {_per_call(add, n):.0f} ns,"
        f" Buckets.observe {_per_call(lambda: buckets.observe(0.3), n):.0f} ns"
    )
    scrape = _per_call(lambda: generate_latest(metrics.registry), 2000)
    print(f"  one scrape of the registry (fed metrics only): {scrape / 1000:.0f} us")


if __name__ == "__main__":
    main()
