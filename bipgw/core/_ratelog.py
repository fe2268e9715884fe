# -*- test-case-name: tests.unit.core.test_ratelog -*-
"""Rate-limited, aggregated logging for whatever a peer can make happen.

A hostile or broken peer (an SMSC sending malformed PDUs, a client sending
junk frames, a card failing its TLS handshake) can trigger the same log line
as fast as it can send bytes: issue 15 measured 556,000 lines (95 MB) in
40 s from one SMSC.  Every door logs such lines through one
L{RateLimitedLog}, shared by all its connections (a peer that opens many
connections is still one door's worth of lines):

  - each I{kind} of line (a constant the door names, never peer data, so
    the table stays small) is logged as usual for its first C{burst} lines
    of an interval;
  - further lines of that kind in the same interval are only counted;
  - when the interval ends the count is logged as one line per kind
    ("N more ... not logged in the last T s"), so nothing goes unreported
    and a flood costs at most C{burst + 1} lines per kind per interval.

Pure: the clock is injected (a L{twisted.internet.task.Clock} in tests), so
the core stays free of the reactor.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

__all__ = ["DEFAULT_BURST", "DEFAULT_INTERVAL", "OTHER_KIND", "RateLimitedLog"]

DEFAULT_INTERVAL = 60.0
"""Seconds of one counting interval."""

DEFAULT_BURST = 5
"""Lines of one kind logged in full per interval before counting starts."""

OTHER_KIND = "other"
"""The kind that lines of new kinds share once C{max_kinds} kinds are counted."""


@attrs.define
class _Tally:
    level: LogLevel
    logged: int = 0
    suppressed: int = 0


@attrs.define
class RateLimitedLog:
    """Logs at most C{burst} lines of each kind per C{interval}, then a count.

    @ivar log: where lines go (the door's L{Logger}).
    @ivar clock: times the intervals.
    @ivar interval: seconds per interval.
    @ivar burst: lines of one kind logged in full per interval.
    @ivar max_kinds: kinds counted per interval; lines of further kinds are
        counted as L{OTHER_KIND} (a guard, should a caller ever pass a kind
        made from peer data).
    @ivar suppressed_total: lines counted instead of logged, since creation
        (for metrics and tests).
    """

    log: Logger
    clock: IReactorTime
    interval: float = DEFAULT_INTERVAL
    burst: int = DEFAULT_BURST
    max_kinds: int = 32
    suppressed_total: int = attrs.field(default=0, init=False)
    _tallies: dict[str, _Tally] = attrs.field(factory=dict, init=False)
    _started: float | None = attrs.field(default=None, init=False)
    _timer: IDelayedCall | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be above 0, not {self.interval!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")

    def emit(self, kind: str, level: LogLevel, format: str, /, **kwargs: Any) -> bool:
        """Log C{format} as C{log.emit} would, unless C{kind} has had its burst.

        Positional-only, so the line's own fields may be called C{kind}.

        @param kind: what happened, as a constant (e.g. C{"malformed-pdu"}).
        @return: whether the line was logged (C{False}: only counted).
        """
        now = self.clock.seconds()
        if self._started is None or now - self._started >= self.interval:
            self._roll(now)
        tally = self._tallies.get(kind)
        if tally is None:
            if len(self._tallies) >= self.max_kinds:
                kind = OTHER_KIND
                tally = self._tallies.get(kind)
            if tally is None:
                tally = self._tallies[kind] = _Tally(level)
        if tally.logged < self.burst:
            tally.logged += 1
            self.log.emit(level, format, rate_kind=kind, **kwargs)
            return True
        tally.suppressed += 1
        self.suppressed_total += 1
        if self._timer is None:
            assert self._started is not None
            self._timer = self.clock.callLater(
                self._started + self.interval - now, self._interval_ended
            )
        return False

    def debug(self, kind: str, format: str, /, **kwargs: Any) -> bool:
        """L{emit} at debug level."""
        return self.emit(kind, LogLevel.debug, format, **kwargs)

    def info(self, kind: str, format: str, /, **kwargs: Any) -> bool:
        """L{emit} at info level."""
        return self.emit(kind, LogLevel.info, format, **kwargs)

    def warn(self, kind: str, format: str, /, **kwargs: Any) -> bool:
        """L{emit} at warn level."""
        return self.emit(kind, LogLevel.warn, format, **kwargs)

    def error(self, kind: str, format: str, /, **kwargs: Any) -> bool:
        """L{emit} at error level."""
        return self.emit(kind, LogLevel.error, format, **kwargs)

    def flush(self) -> None:
        """Log the counts so far and start a new interval (a stopping service calls this)."""
        self._roll(self.clock.seconds())

    # -- the interval ------------------------------------------------------

    def _interval_ended(self) -> None:
        self._timer = None
        self._roll(self.clock.seconds())

    def _roll(self, now: float) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self._started is not None:
            elapsed = now - self._started
            for kind, tally in self._tallies.items():
                if tally.suppressed:
                    self.log.emit(
                        tally.level,
                        "{rate_suppressed} more '{rate_kind}' line(s) not logged"
                        " in the last {rate_elapsed:.0f} s",
                        rate_kind=kind,
                        rate_suppressed=tally.suppressed,
                        rate_elapsed=elapsed,
                    )
        self._tallies.clear()
        self._started = now
