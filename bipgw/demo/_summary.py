# -*- test-case-name: tests.unit.cli.test_demo -*-
"""What the demo prints while it runs and when it is done: a progress line
every tenth of the cards, then a summary with latency percentiles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs

__all__ = ["DemoProgress", "DemoSummary", "percentile"]


class DemoProgress:
    """What the sessions have done so far, and a line every tenth of them.

    @ivar total: the sessions the run will have.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.ok = 0
        self.failed = 0
        self.scripts_ok = 0
        self.scripts_mismatched = 0
        self._tenths = 0

    def script(self, passed: bool) -> None:
        """A script replay ended, matching or not."""
        if passed:
            self.scripts_ok += 1
        else:
            self.scripts_mismatched += 1

    def session(self, ok: bool) -> str | None:
        """A session ended; the progress line when it completes another tenth."""
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        tenths = (self.ok + self.failed) * 10 // self.total
        if tenths <= self._tenths:
            return None
        self._tenths = tenths
        return self.line()

    def line(self) -> str:
        """Where the run is, for the terminal."""
        return (
            f"  {self.ok + self.failed}/{self.total} sessions done ({self.failed} failed),"
            f" scripts: {self.scripts_ok} ok, {self.scripts_mismatched} mismatched"
        )


@attrs.frozen(kw_only=True)
class DemoSummary:
    """What the sessions did.

    @ivar ok: sessions opened, run and closed without a channel failure.
    @ivar failed: sessions that could not open, or broke off.
    @ivar reasons: how many sessions failed, by reason code.
    @ivar scripts_passed: script replays where every answer matched.
    @ivar scripts_failed: the others.
    @ivar apdus: C-APDUs answered by cards, through the platform channel.
    @ivar elapsed: seconds from the first session opened to the last ended.
    @ivar setup: seconds from asking for each session to its card connecting.
    @ivar round_trips: seconds of each C-APDU's round trip, platform to card
        and back (a batch's, for commands sent as one).
    @ivar sessions: seconds each successful session took (open to closed).
    @ivar first_failure: the first failure, in words: the trace of the first
        script that did not match (L{format_trace}), else why the first
        session failed; C{None} when nothing failed.
    """

    ok: int
    failed: int
    reasons: Mapping[str, int] = attrs.field(factory=dict)
    scripts_passed: int = 0
    scripts_failed: int = 0
    apdus: int = 0
    elapsed: float = 0.0
    setup: tuple[float, ...] = ()
    round_trips: tuple[float, ...] = ()
    sessions: tuple[float, ...] = ()
    first_failure: str | None = None

    @property
    def all_ok(self) -> bool:
        """Whether every session and every script succeeded."""
        return self.failed == 0 and self.scripts_failed == 0 and self.ok > 0

    def lines(self) -> list[str]:
        """The summary as lines for the terminal."""
        total = self.ok + self.failed
        rate = total / self.elapsed if self.elapsed > 0 else 0.0
        out = [
            f"sessions: {total} in {self.elapsed:.2f} s ({rate:.1f}/s): ok {self.ok},"
            f" failed {self.failed}",
            f"scripts: passed {self.scripts_passed}, failed {self.scripts_failed}",
            f"APDUs through the platform channel: {self.apdus}",
        ]
        for name, count in sorted(self.reasons.items()):
            out.append(f"  sessions failed with {name}: {count}")
        for what, values in (
            ("setup (open -> card connected)", self.setup),
            ("APDU round trip (platform -> card -> platform)", self.round_trips),
            ("whole session (open -> closed)", self.sessions),
        ):
            if values:
                shown = ", ".join(
                    f"p{p} {percentile(values, p) * 1000:.1f} ms" for p in (50, 90, 99)
                )
                out.append(f"{what}: {shown}, max {max(values) * 1000:.1f} ms")
        if self.first_failure is not None:
            out.append("first failure:")
            failure = self.first_failure.rstrip("\n").splitlines()
            out.extend("  " + line if line else "" for line in failure)
        return out


def percentile(values: Sequence[float], p: float) -> float:
    """The C{p}-th percentile of C{values} (nearest rank; C{values} not empty)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
