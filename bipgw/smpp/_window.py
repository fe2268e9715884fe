# -*- test-case-name: tests.unit.smpp.test_window -*-
"""Flow control for submit_sm: the window, the rate cap and the throttling backoff.

An SMSC grants an ESME a few things and punishes it for taking more: a
number of requests in flight (the I{window}; responses are matched by
sequence number, SMPP 3.4 section 2.7), a message rate (beyond it
C{ESME_RTHROTTLED}), and room in its queue (C{ESME_RMSGQFUL}).  These three
small objects keep the gateway inside those limits:

  - L{SubmitWindow}: the outstanding requests, each with its own response
    deadline on the injected clock;
  - L{TokenBucket}: the rate cap, measured on the injected clock, so a test
    can check the spacing of submits exactly;
  - L{Backoff}: the growing pause after the SMSC said "too much".

Pure: nothing here does I/O; time comes from the C{IReactorTime} given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Backoff", "SubmitWindow", "TokenBucket"]

# Clock arithmetic in floats: a wake-up scheduled for exactly the moment a
# token is due may see 0.9999999999 of it.
_EPSILON = 1e-9

_T = TypeVar("_T")


class TokenBucket:
    """A rate cap: C{rate} tokens a second, at most C{burst} saved up.

    Each submit takes one token.  The bucket starts full, so the first
    C{burst} submits leave at once; after that they are spaced by
    C{1 / rate} seconds.

    @param clock: the time source.
    @param rate: tokens added per second (> 0).
    @param burst: the most tokens held (>= 1).
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be above 0, not {rate!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = clock.seconds()

    def _refill(self) -> None:
        now = self._clock.seconds()
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def delay(self) -> float:
        """Seconds until a token is available; C{0.0} when one is available now."""
        self._refill()
        if self._tokens >= 1 - _EPSILON:
            return 0.0
        return (1 - self._tokens) / self.rate

    def take(self) -> bool:
        """Take a token if one is available now.

        @return: whether one was taken (the submit may go).
        """
        self._refill()
        if self._tokens < 1 - _EPSILON:
            return False
        self._tokens = max(0.0, self._tokens - 1)
        return True


class Backoff:
    """A pause that grows with each consecutive failure and resets on success.

    The delays are C{initial}, C{initial * factor}, ... up to C{maximum},
    without jitter: the SMSC told us to slow down, and a test must be able
    to predict when the resend happens.

    @ivar failures: consecutive failures since the last L{reset}.
    """

    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if not factor >= 1:
            raise ValueError(f"factor must be at least 1, not {factor!r}")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.failures = 0

    def peek(self) -> float:
        """The delay the next failure will get, without counting one."""
        try:
            delay = self.initial * self.factor ** min(self.failures, 1000)
        except OverflowError:
            return self.maximum
        return min(delay, self.maximum)

    def next_delay(self) -> float:
        """Count one failure; return how long to pause for it."""
        delay = self.peek()
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Success: the next failure starts from C{initial} again."""
        self.failures = 0


class SubmitWindow(Generic[_T]):
    """Requests awaiting their response, by sequence number, each with a deadline.

    At most C{size} are outstanding; L{add} arms a timer that calls
    C{on_timeout(sequence_number, item)} if L{pop} has not claimed the
    request by then.  L{drain} hands back whatever is left, in the order it
    was added, when the connection goes: those requests may have been lost
    and are the caller's to resend.

    @param clock: schedules the deadlines.
    @param size: the most outstanding requests (>= 1).
    @param timeout: seconds each request waits for its response.
    @param on_timeout: called with the sequence number and item of a request
        whose deadline passed (it is no longer outstanding then).
    """

    def __init__(
        self,
        clock: IReactorTime,
        size: int,
        timeout: float,
        on_timeout: Callable[[int, _T], object],
    ) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, not {size!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be above 0, not {timeout!r}")
        self._clock = clock
        self.size = size
        self.timeout = timeout
        self._on_timeout = on_timeout
        self._items: dict[int, tuple[_T, IDelayedCall]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, sequence_number: object) -> bool:
        return sequence_number in self._items

    def __iter__(self) -> Iterator[_T]:
        return (item for item, _ in self._items.values())

    @property
    def has_room(self) -> bool:
        """Whether another request may be sent now."""
        return len(self._items) < self.size

    def add(self, sequence_number: int, item: _T) -> None:
        """Record a request just sent and start its response deadline.

        @raise ValueError: the window is full or the number is outstanding.
        """
        if not self.has_room:
            raise ValueError(f"the window of {self.size} is full")
        if sequence_number in self._items:
            raise ValueError(f"sequence_number {sequence_number} is already outstanding")
        timer = self._clock.callLater(self.timeout, self._expired, sequence_number)
        self._items[sequence_number] = (item, timer)

    def pop(self, sequence_number: int) -> _T | None:
        """The request this response answers (its deadline cancelled), or C{None}."""
        entry = self._items.pop(sequence_number, None)
        if entry is None:
            return None
        item, timer = entry
        timer.cancel()
        return item

    def drain(self) -> list[_T]:
        """Forget every outstanding request (deadlines cancelled); return them in send order."""
        items, self._items = self._items, {}
        for _, timer in items.values():
            timer.cancel()
        return [item for item, _ in items.values()]

    def _expired(self, sequence_number: int) -> None:
        entry = self._items.pop(sequence_number, None)
        if entry is not None:
            self._on_timeout(sequence_number, entry[0])
