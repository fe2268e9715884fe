# -*- test-case-name: tests.unit.core.test_policy -*-
"""How long the engine waits, how often it retries, and what a busy card means.

One frozen value holds every timing decision so that the configuration
(C{[sessions]} in the gateway's TOML file) maps onto it field for field, and
so that tests can shrink every timeout at once.  The backoff is a plain
function of the attempt number, with no jitter: a push retry is driven by
the engine's own clock, so there is no herd of clients to spread out, and a
deterministic schedule is what operators and tests can reason about.
"""

from __future__ import annotations

import enum
import math

import attrs

from bipgw.errors import BipGwError


class PolicyError(BipGwError, ValueError):
    """A policy value that cannot work; the message names the field."""


class BusyPolicy(enum.Enum):
    """What L{SessionEngine.open} does when the card already has a session.

    A card's security domain runs one admin session at a time, so a second
    session for the same card can only run after the first one ends.
    """

    QUEUE = "queue"
    """Wait (in REQUESTED) until the card is free, up to C{queue_timeout}."""
    REFUSE = "refuse"
    """Fail the new session at once with C{CARD_BUSY}."""


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise PolicyError(f"{attribute.name}: {value!r} is not a positive number of seconds")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{attribute.name}: {value!r} is not a whole number >= 0")


def _factor(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 1
    ):
        raise PolicyError(f"{attribute.name}: {value!r} must be a number >= 1")


def _busy(value: BusyPolicy | str) -> BusyPolicy:
    try:
        return BusyPolicy(value)
    except ValueError:
        raise PolicyError(f"busy_policy: {value!r} is not 'queue' or 'refuse'") from None


@attrs.frozen(kw_only=True)
class SessionPolicy:
    """Timeouts, push retries and the busy-card rule of the session engine.

    Every waiting state has its own deadline; when it passes, the session
    fails with the matching L{FailureReason} (or, for the card's arrival,
    the push is sent again while attempts remain).

    @ivar resolve_timeout: REQUESTED: how long the card directory may take.
    @ivar queue_timeout: REQUESTED: how long a session may wait for its
        card's previous session to end (L{BusyPolicy.QUEUE}).
    @ivar push_timeout: PUSHING: how long the push sender may take to accept
        a push (the SMSC's C{submit_sm_resp}).
    @ivar push_retries: how many times a push is sent again, after a failed
        submission or when the card does not connect; C{1 + push_retries}
        pushes in all.
    @ivar push_backoff: the factor each successive wait grows by.
    @ivar retry_delay: the wait before resending after a failed submission
        (attempt 1; then multiplied by C{push_backoff} each time).
    @ivar card_timeout: AWAITING_CARD: the wait for the card after the
        first accepted push (then multiplied by C{push_backoff} each time:
        a card that missed one SMS gets longer to answer the next).
    @ivar max_wait: the cap on any grown wait.
    @ivar idle_timeout: CONNECTED: how long the card's POST may be held
        without a command from the platform.
    @ivar command_timeout: RELAYING: how long the card may take to answer
        one command script.
    @ivar close_timeout: CLOSING: from the platform's close to the end of
        the connection, outstanding commands included.
    @ivar busy_policy: L{BusyPolicy.QUEUE} or L{BusyPolicy.REFUSE}.
    @ivar queue_limit_per_card: sessions that may wait for one card; more
        are refused with C{CARD_BUSY}.
    @ivar max_queued_commands: commands a platform may queue behind the
        one the card is running.
    @ivar offer_timeout: how long a card that opened its admin session on
        its own is offered to platforms before it gets its C{204}
        (L{bipgw.core.OfferDesk}).
    """

    resolve_timeout: float = attrs.field(default=10.0, validator=_seconds)
    queue_timeout: float = attrs.field(default=300.0, validator=_seconds)
    push_timeout: float = attrs.field(default=30.0, validator=_seconds)
    push_retries: int = attrs.field(default=2, validator=_count)
    push_backoff: float = attrs.field(default=2.0, validator=_factor)
    retry_delay: float = attrs.field(default=5.0, validator=_seconds)
    card_timeout: float = attrs.field(default=60.0, validator=_seconds)
    max_wait: float = attrs.field(default=900.0, validator=_seconds)
    idle_timeout: float = attrs.field(default=300.0, validator=_seconds)
    command_timeout: float = attrs.field(default=60.0, validator=_seconds)
    close_timeout: float = attrs.field(default=30.0, validator=_seconds)
    busy_policy: BusyPolicy = attrs.field(default=BusyPolicy.QUEUE, converter=_busy)
    queue_limit_per_card: int = attrs.field(default=8, validator=_count)
    max_queued_commands: int = attrs.field(default=32, validator=_count)
    offer_timeout: float = attrs.field(default=10.0, validator=_seconds)

    @property
    def attempts(self) -> int:
        """How many pushes a session may send in all."""
        return 1 + self.push_retries

    def card_wait(self, attempt: int) -> float:
        """How long to wait for the card after push number C{attempt} (from 1)."""
        return self._grow(self.card_timeout, attempt)

    def retry_wait(self, attempt: int) -> float:
        """How long to wait before resending after push C{attempt} failed."""
        return self._grow(self.retry_delay, attempt)

    def _grow(self, base: float, attempt: int) -> float:
        if attempt < 1:
            raise ValueError(f"attempt {attempt} is not 1 or more")
        # Compare in logarithms: base * factor ** n overflows for a large n.
        if self.push_backoff > 1 and (attempt - 1) * math.log(self.push_backoff) >= math.log(
            self.max_wait / base
        ):
            return self.max_wait
        return min(base * self.push_backoff ** (attempt - 1), self.max_wait)
