# -*- test-case-name: tests.unit.core.test_campaign -*-
"""A campaign's values: what it runs, on which cards, how fast, how often, when.

A campaign runs one APDU script (the format C{bipgw replay} runs) on many
cards for one tenant's service: the L{CampaignSpec} says what, the
L{Pace} how fast (sessions started per second, sessions at once), the
L{RetryPolicy} how often a card is tried again, and the L{Window}s when
new cards may start.  Each card is a L{CampaignCard} with its own
L{CardState}; L{CardOutcome} is what one attempt on one card gave.

These are plain frozen values: the scheduler (L{bipgw.core._campaign})
and the store (L{bipgw.store._campaigns}) share them, and nothing here
reads a clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs
from attrs import field, frozen

__all__ = [
    "DEFAULT_GIVE_UP",
    "CampaignCard",
    "CampaignError",
    "CampaignRecord",
    "CampaignSpec",
    "CampaignState",
    "CampaignTarget",
    "CardOutcome",
    "CardState",
    "Pace",
    "RetryPolicy",
    "Window",
]

_DAY: Final = 86400
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}\Z")
_HEX: Final = re.compile(r"(?:[0-9A-Fa-f]{2})*\Z")
MAX_VARIABLES: Final = 32
"""The most per-card variables (columns of a target file) a card may have."""


class CampaignError(ValueError):
    """A campaign request refused; the message names the field or the reason.

    @ivar code: the stable error code a front door answers with
        (C{invalid-campaign}, C{unknown-campaign}, C{campaign-state},
        C{service-not-allowed}, C{unavailable}).
    """

    def __init__(self, message: str, *, code: str = "invalid-campaign") -> None:
        super().__init__(message)
        self.code = code


class CampaignState(enum.Enum):
    """Where a whole campaign is."""

    CREATED = "created"
    """Defined, cards listed; nothing runs until it is started."""
    RUNNING = "running"
    """Cards start as the pace and windows allow (also after a restart)."""
    PAUSED = "paused"
    """No new card starts; those running finish."""
    COMPLETED = "completed"
    """Every card has ended (succeeded, failed or interrupted)."""
    CANCELLED = "cancelled"
    """Stopped for good: the cards not started end as C{cancelled}."""

    @property
    def terminal(self) -> bool:
        return self in (CampaignState.COMPLETED, CampaignState.CANCELLED)


class CardState(enum.Enum):
    """Where one card of a campaign is."""

    PENDING = "pending"
    """Waiting for its (next) attempt."""
    RUNNING = "running"
    """Claimed: its session is open (the claim is committed before the open)."""
    SUCCEEDED = "succeeded"
    """The script ran and every answer matched."""
    FAILED = "failed"
    """Gave up: the reason says why."""
    INTERRUPTED = "interrupted"
    """Running when the gateway died, and not re-run (the script is not idempotent)."""
    CANCELLED = "cancelled"
    """Not run: the campaign was cancelled first."""

    @property
    def terminal(self) -> bool:
        return self not in (CardState.PENDING, CardState.RUNNING)


#: Failure reasons a card is never retried for by default: trying again
#: cannot change them (the card is unknown, the script does not match the
#: card, the grant refuses it).
DEFAULT_GIVE_UP: Final = frozenset(
    {
        "unknown-card",
        "script-mismatch",
        "script-error",
        "service-not-allowed",
        "application-not-allowed",
        "por-error",
    }
)


def _positive(most: float) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CampaignError(f"{attribute.name} must be a number, not {value!r}")
        if not (0 < value <= most):
            raise CampaignError(f"{attribute.name} must be > 0 and <= {most:g}, not {value!r}")

    return check


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CampaignError(f"{attribute.name} must be a number, not {value!r}")
    if not (0 <= value <= 1e9):
        raise CampaignError(f"{attribute.name} must be >= 0 and <= 1e9, not {value!r}")


def _count(low: int, high: int) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CampaignError(
                f"{attribute.name} must be a whole number from {low} to {high}, not {value!r}"
            )

    return check


@frozen
class Pace:
    """How fast a campaign goes.

    @ivar rate: sessions started per second, at most (a token bucket of
        C{burst} tokens refilled at C{rate} a second).
    @ivar concurrency: sessions open at once, at most.
    @ivar burst: sessions that may start at once after an idle spell
        (default: 1, an even pace).
    """

    rate: float = field(default=10.0, validator=_positive(1e9))
    concurrency: int = field(default=10, validator=_count(1, 10000))
    burst: int = field(default=1, validator=_count(1, 10000))


@frozen
class RetryPolicy:
    """How often a failed card is tried again.

    @ivar attempts: tries per card, the first included (1: never retried).
    @ivar backoff: seconds before the second try; each later wait is
        C{factor} times the one before, up to C{max_backoff}.
    @ivar give_up: failure reasons never retried (L{DEFAULT_GIVE_UP}).
    """

    attempts: int = field(default=3, validator=_count(1, 100))
    backoff: float = field(default=60.0, validator=_non_negative)
    factor: float = field(default=2.0, validator=_positive(1e3))
    max_backoff: float = field(default=3600.0, validator=_non_negative)
    give_up: frozenset[str] = field(default=DEFAULT_GIVE_UP, converter=frozenset)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number C{attempt} (from 1)."""
        return float(min(self.max_backoff, self.backoff * self.factor ** max(0, attempt - 1)))


_CLOCK: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])\Z")


def _time_of_day(text: str, what: str) -> int:
    m = _CLOCK.match(text)
    if m is None:
        raise CampaignError(f"{what} {text!r} is not a time HH:MM (UTC, 00:00 to 23:59)")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60


@frozen
class Window:
    """A daily time window, UTC, in which new cards may start.

    C{end} before C{start} spans midnight (C{22:00-02:00}).

    @ivar start: seconds after midnight UTC.
    @ivar end: seconds after midnight UTC (exclusive).
    """

    start: int = field(validator=_count(0, _DAY))
    end: int = field(validator=_count(0, _DAY))

    def __attrs_post_init__(self) -> None:
        if self.start % _DAY == self.end % _DAY:
            raise CampaignError(f"window {self} is empty: start and end are the same time")

    @classmethod
    def parse(cls, text: str) -> Window:
        """C{"02:00-05:00"}.

        @raise CampaignError: not two times separated by C{-}.
        """
        if not isinstance(text, str):
            raise CampaignError(f"a window is text HH:MM-HH:MM, not {text!r}")
        start, sep, end = text.partition("-")
        if not sep:
            raise CampaignError(f"window {text!r} is not HH:MM-HH:MM (UTC)")
        return cls(_time_of_day(start, "window start"), _time_of_day(end, "window end"))

    def __str__(self) -> str:
        def hm(s: int) -> str:
            return f"{s // 3600:02d}:{s % 3600 // 60:02d}"

        return f"{hm(self.start)}-{hm(self.end)}"

    def contains(self, now: float) -> bool:
        """Whether C{now} (POSIX seconds) is inside the window."""
        t = now % _DAY
        start, end = self.start % _DAY, self.end % _DAY
        if start < end:
            return start <= t < end
        return t >= start or t < end

    def wait(self, now: float) -> float:
        """Seconds from C{now} until the window opens (0 inside it)."""
        if self.contains(now):
            return 0.0
        return (self.start - now % _DAY) % _DAY


def _windows(value: Any) -> tuple[Window, ...]:
    return tuple(w if isinstance(w, Window) else Window.parse(w) for w in value)


@frozen
class CampaignSpec:
    """What a campaign runs, as its creator defined it.

    @ivar name: a label for people.
    @ivar tenant_id: the tenant it runs for: its grant and limits apply.
    @ivar service: the service every session is opened for.
    @ivar script: the APDU script's text (C{docs/apdu-scripts.md}), with
        per-card variables (C{${ICCID}}, C{${MSISDN}}, target file columns).
    @ivar idempotent: the script may run twice on a card without harm:
        a card running when the gateway died is run again rather than
        ended as C{interrupted}, and a card whose session failed after a
        command reached it may be retried.
    @ivar pace: how fast.
    @ivar retry: how often a card is tried.
    @ivar windows: when new cards may start (none: any time).
    """

    name: str
    tenant_id: str
    service: str
    script: str = field(repr=False)
    idempotent: bool = False
    pace: Pace = Pace()
    retry: RetryPolicy = RetryPolicy()
    windows: tuple[Window, ...] = field(default=(), converter=_windows)

    def policy_json(self) -> dict[str, Any]:
        """How it runs, as JSON values: C{idempotent}, C{pace}, C{retry}, C{windows}.

        What the store keeps beside the script and what the HTTP API shows
        of a campaign, in one spelling.
        """
        return {
            "idempotent": self.idempotent,
            "pace": {
                "rate": self.pace.rate,
                "concurrency": self.pace.concurrency,
                "burst": self.pace.burst,
            },
            "retry": {
                "attempts": self.retry.attempts,
                "backoff": self.retry.backoff,
                "factor": self.retry.factor,
                "max_backoff": self.retry.max_backoff,
                "give_up": sorted(self.retry.give_up),
            },
            "windows": [str(w) for w in self.windows],
        }

    def in_window(self, now: float) -> bool:
        """Whether a new card may start at C{now}."""
        return not self.windows or any(w.contains(now) for w in self.windows)

    def window_wait(self, now: float) -> float:
        """Seconds until a new card may start (0: now)."""
        if not self.windows:
            return 0.0
        return min(w.wait(now) for w in self.windows)


@frozen
class CampaignRecord:
    """A campaign as the store keeps it.

    @ivar id: its id (random, URL-safe).
    @ivar spec: what it runs.
    @ivar state: where it is.
    @ivar created_at: POSIX seconds.
    @ivar updated_at: when its state last changed.
    @ivar cards: how many cards it targets.
    """

    id: str
    spec: CampaignSpec
    state: CampaignState
    created_at: float
    updated_at: float
    cards: int = 0


def check_variables(variables: Mapping[str, str], where: str) -> dict[str, str]:
    """A card's own variables: names as a script's, values hex (spaces allowed).

    @raise CampaignError: a bad name or value, naming C{where}.
    """
    if len(variables) > MAX_VARIABLES:
        raise CampaignError(f"{where}: more than {MAX_VARIABLES} variables")
    out = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise CampaignError(f"{where}: {name!r} is not a variable name")
        if not isinstance(value, str) or len(value) > 1024:
            raise CampaignError(f"{where}: variable {name} must be hex text (1024 digits at most)")
        if not _HEX.match(value):
            raise CampaignError(
                f"{where}: variable {name} = {value[:40]!r} is not hex (pairs of digits, no spaces)"
            )
        out[name] = value.upper()
    return out


@frozen
class CampaignTarget:
    """One card a campaign targets, as its creator named it.

    @ivar iccid: its ICCID, or
    @ivar msisdn: its MSISDN;
    @ivar variables: its own script variables (name to hex).
    """

    iccid: str | None = None
    msisdn: str | None = None
    variables: Mapping[str, str] = field(factory=dict)


@frozen
class CampaignCard:
    """One card of a campaign, and what became of it.

    @ivar campaign_id: its campaign.
    @ivar index: its place in the target list, from 0.
    @ivar iccid: the card's ICCID when targeted by ICCID (or once resolved).
    @ivar msisdn: its MSISDN when targeted by MSISDN.
    @ivar variables: its own script variables (name to hex).
    @ivar state: where it is.
    @ivar attempts: tries started.
    @ivar next_at: POSIX seconds before which it is not tried (a backoff).
    @ivar reason: the failure reason code of its last failed try.
    @ivar detail: that failure in words.
    @ivar rapdus: the R-APDUs (hex) of its last try, in order.
    @ivar session: the gateway session id of its last try.
    @ivar updated_at: when it last changed.
    """

    campaign_id: str
    index: int
    iccid: str | None = None
    msisdn: str | None = None
    variables: Mapping[str, str] = field(factory=dict)
    state: CardState = CardState.PENDING
    attempts: int = 0
    next_at: float = 0.0
    reason: str | None = None
    detail: str | None = None
    rapdus: tuple[str, ...] = ()
    session: str | None = None
    updated_at: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.iccid is None and self.msisdn is None:
            raise CampaignError(f"card #{self.index}: give an ICCID or an MSISDN")

    @property
    def target(self) -> str:
        """How the card is named: its ICCID, else its MSISDN."""
        return self.iccid or self.msisdn or ""


@frozen
class CardOutcome:
    """What one try on one card gave.

    @ivar ok: the script ran and every answer matched.
    @ivar reason: a failure's code (the engine's, or C{script-mismatch},
        C{script-error}, C{limit-reached} ...).
    @ivar detail: the failure in words.
    @ivar rapdus: the R-APDUs (hex) that came back.
    @ivar reached: a command was sent to the card (so running the script
        again is not harmless unless the script is idempotent).
    @ivar session: the session id, if one was opened.
    @ivar iccid: the card's ICCID as the session found it.
    """

    ok: bool
    reason: str | None = None
    detail: str | None = None
    rapdus: tuple[str, ...] = ()
    reached: bool = False
    session: str | None = None
    iccid: str | None = None
