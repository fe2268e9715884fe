# -*- test-case-name: tests.unit.fleet.test_faults -*-
"""Misbehaving cards on purpose: the fleet's fault book.

A gateway has to cope with cards that never answer, answer wrongly, hang
up halfway or get every SMS twice, and real cards do all of this rarely and
unreproducibly.  The fleet does it on demand, fleet-wide or for chosen
ICCIDs, from C{fleet.toml} (C{[faults]}, C{[faults.cards.<ICCID>]}) and at
run time (L{FaultBook.set_card}, the control port).  What each fault does:

  - C{ignore_push}: the handset takes the SMS (the SMSC sees it delivered)
    but the card does nothing with it: no PoR, no admin session.
  - C{no_bearer}: the handset has no data bearer, so the card never opens
    its BIP channel: a push is verified and answered (PoR) like any
    packet, but the admin session it asks for never starts.  Scripts sent
    over SMS-PP (RAM over SMS) run as usual: the gateway's SMS fallback
    reaches such a card.
  - C{lose_por}: the card runs every packet but its PoR is lost on the way
    (neither SMS-SUBMIT nor delivery report carries it): the gateway's PoR
    wait runs out.
  - C{replay = "por"}: the card treats every packet's counter as already
    used, as if the gateway had replayed one: the OTA receiver refuses it
    with the PoR status of a replay (C{02}, or C{06} with
    C{fleet.replay_status = 6}), in clear, and runs nothing.
    C{replay = "ignore"}: the same refusal, but no PoR is sent at all.
  - C{wrong_psk}: the card presents its PSK identity with a wrong key, so
    the TLS-PSK handshake fails.
  - C{drop_after_scripts = N}: after running N command scripts the card
    drops the TCP connection instead of POSTing the results (once; it then
    reconnects and resumes if its trigger allows retries).
  - C{slow = S}: the card takes S seconds to handle each SMS and waits S
    seconds before each POST.
  - C{malformed_http}: the card's first request is not HTTP.
  - C{duplicate_sms = F}: the SMSC hands that fraction of the card's SMS to
    the fleet twice.  This is the SMSC's own fault plan
    (L{simcard.smsc.FaultPlan.duplicate}), consulted per message through
    L{LiveSmscFaults}, so a change at run time applies to the next SMS.

A card's faults are the fleet-wide ones with the card's own settings laid
over them, key by key.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
from attrs import field, frozen

from simcard.channel import ChannelFaults
from simcard.fleet._errors import FleetConfigError
from simcard.smsc import FaultConfig, FaultPlan

__all__ = [
    "FAULT_KEYS",
    "CardFaults",
    "FaultBook",
    "LiveSmscFaults",
    "ReplayMode",
    "check_iccid",
    "fault_changes",
    "parse_fault_text",
]


class ReplayMode(enum.Enum):
    """How a card with the replay fault answers a push."""

    OFF = "off"
    """No fault: counters are checked as usual."""
    POR = "por"
    """Refuse every counter as a replay and say so in the PoR."""
    IGNORE = "ignore"
    """Refuse every counter as a replay and answer nothing."""


def _non_negative(_: object, attribute: Any, value: Any) -> None:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a finite number >= 0, not {value!r}")


def _fraction(_: object, attribute: Any, value: Any) -> None:
    if type(value) not in (int, float) or not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be a fraction from 0 to 1, not {value!r}")


def _optional_count(_: object, attribute: Any, value: Any) -> None:
    if value is not None and (type(value) is not int or value < 0):
        raise ValueError(f"{attribute.name} must be an integer >= 0 or None, not {value!r}")


@frozen(kw_only=True)
class CardFaults:
    """The faults one card shows; the default shows none.

    See the module docstring for what each does.
    """

    ignore_push: bool = field(default=False, validator=attrs.validators.instance_of(bool))
    no_bearer: bool = field(default=False, validator=attrs.validators.instance_of(bool))
    lose_por: bool = field(default=False, validator=attrs.validators.instance_of(bool))
    replay: ReplayMode = field(
        default=ReplayMode.OFF, validator=attrs.validators.instance_of(ReplayMode)
    )
    wrong_psk: bool = field(default=False, validator=attrs.validators.instance_of(bool))
    drop_after_scripts: int | None = field(default=None, validator=_optional_count)
    slow: float = field(default=0.0, validator=_non_negative)
    malformed_http: bool = field(default=False, validator=attrs.validators.instance_of(bool))
    duplicate_sms: float = field(default=0.0, validator=_fraction)

    @property
    def active(self) -> bool:
        """Whether any fault is set."""
        return self != _NONE

    def channel_faults(self) -> ChannelFaults | None:
        """What the admin channel must do wrong, or C{None} for nothing."""
        faults = ChannelFaults(
            drop_after_scripts=self.drop_after_scripts,
            post_delay=float(self.slow),
            malformed_http=self.malformed_http,
            wrong_psk=self.wrong_psk,
        )
        return None if faults == ChannelFaults() else faults

    def describe(self) -> str:
        """The faults set, as C{key=value} words (C{"none"} without any)."""
        words = [
            f"{key}={_show(getattr(self, key))}"
            for key in FAULT_KEYS
            if getattr(self, key) != getattr(_NONE, key)
        ]
        return " ".join(words) or "none"


_NONE: Final = CardFaults()

FAULT_KEYS: Final = tuple(a.name for a in attrs.fields(CardFaults))
"""Every fault setting's name, in documentation order."""

_EXPECTED: Final = {
    "ignore_push": "true or false",
    "no_bearer": "true or false",
    "lose_por": "true or false",
    "replay": '"off", "por" or "ignore"',
    "wrong_psk": "true or false",
    "drop_after_scripts": "an integer >= 0 (scripts run before the drop)",
    "slow": "a number of seconds >= 0",
    "malformed_http": "true or false",
    "duplicate_sms": "a fraction from 0 to 1",
}


_BOOLEANS: Final = frozenset(
    {"ignore_push", "no_bearer", "lose_por", "wrong_psk", "malformed_http"}
)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ReplayMode):
        return value.value
    if value is None:
        return "none"
    return str(value)


def check_iccid(iccid: object, where: str) -> str:
    """C{iccid} if it is 19 or 20 decimal digits (the fleet's ICCIDs).

    @raise FleetConfigError: otherwise, naming C{where}.
    """
    if not (
        isinstance(iccid, str) and iccid.isascii() and iccid.isdigit() and 19 <= len(iccid) <= 20
    ):
        raise FleetConfigError(f"{where}: {iccid!r} is not an ICCID (19 or 20 digits)")
    return iccid


def _typed(key: str, value: object) -> object:
    """C{value} as the fault's type; C{ValueError} when it is not one."""
    if key in _BOOLEANS:
        if type(value) is not bool:
            raise ValueError
        return value
    if key == "replay":
        if isinstance(value, ReplayMode):
            return value
        if not isinstance(value, str):
            raise ValueError
        return ReplayMode(value)
    if key == "drop_after_scripts":
        if value is None:
            return None
        if type(value) is not int or value < 0:
            raise ValueError
        return value
    if type(value) not in (int, float):
        raise ValueError
    number = float(value)  # type: ignore[arg-type]
    limit = 1.0 if key == "duplicate_sms" else math.inf
    if not (math.isfinite(number) and 0 <= number <= limit):
        raise ValueError
    return number


def fault_changes(values: Mapping[str, object], where: str) -> dict[str, object]:
    """Check fault settings given as typed values (a TOML table, an API call).

    @param where: the dotted place of C{values}, for messages
        (C{"fleet.toml: faults.cards.8988..."}).
    @return: the settings, converted (C{replay} to L{ReplayMode}, numbers to
        C{float}).
    @raise FleetConfigError: an unknown key (the message lists the known
        ones) or a value of the wrong type or range.
    """
    changes: dict[str, object] = {}
    for key, value in values.items():
        if key not in _EXPECTED:
            known = ", ".join(FAULT_KEYS)
            raise FleetConfigError(f"{where}.{key}: unknown fault (known: {known})")
        try:
            changes[key] = _typed(key, value)
        except ValueError:
            raise FleetConfigError(
                f"{where}.{key} = {value!r}: expected {_EXPECTED[key]}"
            ) from None
    return changes


def parse_fault_text(key: str, text: str, where: str) -> object:
    """One fault setting given as text (C{slow=2.5}, C{ignore_push=true}).

    The control port and the command line speak text; this turns it into
    the typed value L{fault_changes} expects.  C{none} clears
    C{drop_after_scripts}.

    @raise FleetConfigError: as L{fault_changes}.
    """
    value: object = text
    lowered = text.strip().lower()
    if key in _BOOLEANS:
        value = {"true": True, "yes": True, "on": True, "1": True}.get(
            lowered, False if lowered in ("false", "no", "off", "0") else text
        )
    elif key == "drop_after_scripts":
        value = None if lowered in ("none", "off") else _number(lowered, int)
    elif key in ("slow", "duplicate_sms"):
        value = _number(lowered, float)
    elif key == "replay":
        value = lowered
    return fault_changes({key: value}, where)[key]


def _number(text: str, kind: type) -> object:
    try:
        return kind(text)
    except ValueError:
        return text


class FaultBook:
    """The fleet's faults now: fleet-wide settings and per-card overrides.

    Mutable on purpose: the router asks it on every SMS and session, so a
    change made at run time (control port, tests) applies to the next one.

    @param fleet: the fleet-wide faults.
    @param cards: per-ICCID settings laid over C{fleet}, key by key
        (checked with L{fault_changes}).
    """

    def __init__(
        self,
        fleet: CardFaults | None = None,
        cards: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        self._fleet = fleet if fleet is not None else CardFaults()
        self._cards: dict[str, dict[str, object]] = {}
        self._cache: dict[str, CardFaults] = {}
        for iccid, changes in (cards or {}).items():
            self.set_card(iccid, changes)

    @property
    def fleet(self) -> CardFaults:
        """The faults of every card without its own settings."""
        return self._fleet

    @property
    def duplicates_possible(self) -> bool:
        """Whether any card may get duplicated SMS (so the SMSC must look)."""
        return self._fleet.duplicate_sms > 0 or any(
            "duplicate_sms" in c and c["duplicate_sms"] for c in self._cards.values()
        )

    def for_card(self, iccid: str) -> CardFaults:
        """The faults card C{iccid} shows now."""
        overrides = self._cards.get(iccid)
        if overrides is None:
            return self._fleet
        faults = self._cache.get(iccid)
        if faults is None:
            faults = self._cache[iccid] = attrs.evolve(self._fleet, **overrides)  # type: ignore[arg-type]
        return faults

    def overrides(self) -> dict[str, dict[str, object]]:
        """The per-card settings, by ICCID (a copy)."""
        return {iccid: dict(c) for iccid, c in sorted(self._cards.items())}

    def set_fleet(self, changes: Mapping[str, object]) -> CardFaults:
        """Change fleet-wide faults (only the keys given); return the new ones.

        @raise FleetConfigError: a bad key or value; nothing changes then.
        """
        checked = fault_changes(changes, "faults")
        self._fleet = attrs.evolve(self._fleet, **checked)  # type: ignore[arg-type]
        self._cache.clear()
        return self._fleet

    def set_card(self, iccid: str, changes: Mapping[str, object]) -> CardFaults:
        """Set some faults for one card, keeping its other settings; return its faults.

        @raise FleetConfigError: a bad ICCID, key or value; nothing changes then.
        """
        where = f"faults.cards.{iccid}"
        check_iccid(iccid, "faults.cards")
        checked = fault_changes(changes, where)
        self._cards.setdefault(iccid, {}).update(checked)
        self._cache.pop(iccid, None)
        return self.for_card(iccid)

    def clear_card(self, iccid: str) -> bool:
        """Drop a card's own settings; return whether it had any."""
        self._cache.pop(iccid, None)
        return self._cards.pop(iccid, None) is not None

    def clear(self) -> None:
        """No faults anywhere any more."""
        self._fleet = CardFaults()
        self._cards.clear()
        self._cache.clear()


@attrs.frozen(kw_only=True)
class LiveSmscFaults(FaultConfig):
    """The SMSC's fault configuration with the cards' C{duplicate_sms} laid over it.

    The SMSC asks L{plan_for} once per submitted message; this answers with
    the configured plan for the destination, its C{duplicate} fraction
    raised to the card's C{duplicate_sms} when that is higher.  So the
    SMSC's own duplication does the work, and the fault book decides.

    @ivar book: the fleet's faults.
    @ivar iccid_for_msisdn: finds the card behind a destination.
    """

    book: FaultBook = attrs.field(eq=False, hash=False, repr=False)
    iccid_for_msisdn: Callable[[str], str | None] = attrs.field(eq=False, hash=False, repr=False)

    def plan_for(self, destination: str) -> FaultPlan:
        """The plan for messages to C{destination}, card faults included."""
        plan = super().plan_for(destination)
        book = self.book
        if not book.duplicates_possible:
            return plan
        iccid = self.iccid_for_msisdn(destination)
        faults = book.for_card(iccid) if iccid is not None else book.fleet
        if faults.duplicate_sms > plan.duplicate:
            return attrs.evolve(plan, duplicate=faults.duplicate_sms)
        return plan
