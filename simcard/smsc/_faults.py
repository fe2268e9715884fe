# -*- test-case-name: tests.unit.simcard.test_smsc_faults -*-
"""Fault injection for the simulated SMSC: delay, loss, duplicates, rejection.

A gateway is only as good as its handling of an SMSC that misbehaves, and a
real SMSC misbehaves rarely and unreproducibly.  The simulated one does it
on purpose and I{deterministically}: every decision comes from a
C{random.Random} seeded from the configuration, and every message draws the
same number of values whatever its plan says, so the N-th message meets the
same fate on every run.  Plans apply fleet-wide (L{FaultConfig.default}) or
per destination MSISDN (L{FaultConfig.destinations}).

What each fault means:

  - C{delay}: the message is handed to the fleet that many seconds after its
    C{submit_sm_resp} (a slow network);
  - C{loss}: that fraction of accepted messages vanish: the fleet never sees
    them and no receipt follows, as when an SMSC loses its store.  The
    gateway's own timeout has to notice;
  - C{duplicate}: that fraction is handed to the fleet twice (a retransmission
    the network did not suppress); one receipt is still sent;
  - C{reject_status}: every submission is refused with this command_status
    in C{submit_sm_resp} (e.g. C{0x45} ESME_RSUBMITFAIL, C{0x58}
    ESME_RTHROTTLED).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from types import MappingProxyType

import attrs


def _check_delay(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a finite number of seconds >= 0, not {value!r}")


def _check_fraction(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a fraction in 0..1, not {value!r}")


def _check_status(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and (type(value) is not int or not 1 <= value <= 0xFFFFFFFF):
        raise ValueError(f"{attribute.name} must be a non-zero command_status, not {value!r}")


@attrs.frozen(kw_only=True)
class FaultPlan:
    """The faults applied to messages for one destination (or all of them).

    The default plan injects nothing.

    @ivar delay: seconds between C{submit_sm_resp} and the hand-over to the fleet.
    @ivar loss: the fraction (0..1) of accepted messages that silently vanish.
    @ivar duplicate: the fraction (0..1) of delivered messages handed over twice.
    @ivar reject_status: refuse every submission with this command_status.
    """

    delay: float = attrs.field(default=0.0, validator=_check_delay)
    loss: float = attrs.field(default=0.0, validator=_check_fraction)
    duplicate: float = attrs.field(default=0.0, validator=_check_fraction)
    reject_status: int | None = attrs.field(default=None, validator=_check_status)


def _freeze_plans(value: Mapping[str, FaultPlan]) -> Mapping[str, FaultPlan]:
    plans = dict(value)
    for destination, plan in plans.items():
        if not isinstance(destination, str) or not isinstance(plan, FaultPlan):
            raise ValueError(
                f"destinations must map MSISDN strings to FaultPlan, not {destination!r}: {plan!r}"
            )
    return MappingProxyType(plans)


@attrs.frozen(kw_only=True)
class FaultConfig:
    """Which faults the SMSC injects, and the seed that makes them repeatable.

    @ivar default: the plan for destinations without their own.
    @ivar destinations: plans by destination MSISDN (digits, no C{+}).
    @ivar seed: seeds the random draws for C{loss} and C{duplicate}.
    """

    default: FaultPlan = attrs.field(factory=FaultPlan)
    destinations: Mapping[str, FaultPlan] = attrs.field(
        factory=dict, converter=_freeze_plans, hash=False
    )
    seed: int = 0

    def plan_for(self, destination: str) -> FaultPlan:
        """The plan that applies to messages for C{destination}."""
        return self.destinations.get(destination, self.default)


@attrs.frozen
class FaultDecision:
    """What happens to one submitted message.

    @ivar reject_status: refuse the submission with this status, or C{None}.
    @ivar lost: accept it, then drop it without delivery or receipt.
    @ivar delay: seconds to wait before the hand-over to the fleet.
    @ivar copies: how many times the fleet is handed the message (1 or 2).
    """

    reject_status: int | None = None
    lost: bool = False
    delay: float = 0.0
    copies: int = 1


class FaultInjector:
    """Decides, message by message, which faults apply.

    Two values are drawn for every decision (loss, then duplicate), whether
    or not the plan uses them, so changing one destination's plan does not
    shift the fate of the other destinations' messages.
    """

    def __init__(self, config: FaultConfig) -> None:
        self._config = config
        self._random = random.Random(config.seed)

    @property
    def config(self) -> FaultConfig:
        """The configuration this injector applies."""
        return self._config

    def decide(self, destination: str) -> FaultDecision:
        """The fate of the next message for C{destination}."""
        plan = self._config.plan_for(destination)
        loss_draw = self._random.random()
        duplicate_draw = self._random.random()
        if plan.reject_status is not None:
            return FaultDecision(reject_status=plan.reject_status)
        return FaultDecision(
            lost=loss_draw < plan.loss,
            delay=float(plan.delay),
            copies=2 if duplicate_draw < plan.duplicate else 1,
        )
