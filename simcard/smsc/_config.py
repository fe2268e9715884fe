# -*- test-case-name: tests.unit.simcard.test_smsc_session,tests.unit.simcard.test_smsc_router -*-
"""The simulated SMSC's settings, checked once when they are built.

Every timer, limit and policy of the SMSC lives here as one frozen value, so
a test or the fleet's C{fleet.toml} loader states the behaviour it wants and
nothing reads loose keyword arguments later.  Times are seconds on the
injected clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import attrs

from bipgw.codec.smpp import DEFAULT_MAX_PDU, HEADER_SIZE
from simcard.smsc._faults import FaultConfig


class SmscClock(Protocol):
    """The part of C{IReactorTime} the SMSC uses: the reactor, or a test's C{Clock}.

    A structural type rather than the zope interface so that mypy checks
    the calls without the mypy-zope plugin; C{callLater} returns a
    C{twisted.internet.base.DelayedCall} in both implementations.
    """

    def seconds(self) -> float:
        """The current time in seconds."""

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> Any:
        """Call C{callable} after C{delay} seconds; return the C{DelayedCall}."""


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a finite number of seconds >= 0, not {value!r}")


def _positive_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _seconds(instance, attribute, value)
    if value == 0:
        raise ValueError(f"{attribute.name} must be above 0")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, not {value!r}")


def _rate(instance: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and (
        not isinstance(value, int | float) or not math.isfinite(value) or value <= 0
    ):
        raise ValueError(f"{attribute.name} must be a positive rate per second, or None")


def _burst(instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None:
        _count(instance, attribute, value)  # type: ignore[arg-type]


def _system_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= 15 or not value.isascii():
        raise ValueError(f"{attribute.name} must be 1..15 ASCII characters (SMPP C-string 16)")


def _max_pdu(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < HEADER_SIZE:
        raise ValueError(f"{attribute.name} must be an integer >= {HEADER_SIZE}")


def _freeze_routes(value: Mapping[str, str]) -> Mapping[str, str]:
    routes = dict(value)
    for address, system_id in routes.items():
        if not isinstance(address, str) or not isinstance(system_id, str):
            raise ValueError(f"mo_routes must map address strings to system_ids: {address!r}")
    return MappingProxyType(routes)


@attrs.frozen(kw_only=True)
class SmscConfig:
    """How the simulated SMSC behaves.

    @ivar system_id: the SMSC's own system_id, sent in C{bind_*_resp}.
    @ivar bind_timeout: a connection that has not bound after this long is
        closed (it holds resources and does nothing).
    @ivar bind_failure_grace: after a refused bind, the response gets this
        long to reach the ESME before the SMSC closes the connection.
    @ivar enquire_link_interval: after this long without a PDU from a bound
        ESME, the SMSC sends C{enquire_link}; 0 disables the probe.
    @ivar enquire_link_timeout: an unanswered probe drops the link after this long.
    @ivar response_delay: how long the SMSC takes to answer C{submit_sm}, so
        an ESME's window really holds outstanding requests.
    @ivar max_submit_rate: submissions per second allowed per bind (token
        bucket on the injected clock); beyond it C{ESME_RTHROTTLED}.  C{None}
        means unlimited.
    @ivar throttle_burst: the bucket's size; by default one second's worth
        (at least 1).
    @ivar max_queue: accepted MT messages per system_id not yet final
        (delivered, failed or lost); beyond it C{ESME_RMSGQFUL}.
    @ivar deliver_window: C{deliver_sm} outstanding per bind before the SMSC
        waits for C{deliver_sm_resp}s.
    @ivar deliver_response_timeout: a C{deliver_sm} unanswered this long
        counts as failed.
    @ivar deliver_retry_delay: wait before resending a C{deliver_sm} the ESME
        refused (or did not answer).
    @ivar deliver_max_attempts: refusals after which a C{deliver_sm} is dropped.
    @ivar outbox_limit: C{deliver_sm} waiting per destination system_id (or
        for "any receiver") while no bind can take them; beyond it new ones
        are dropped.
    @ivar store_retry_delay: wait before retrying an MT message the fleet
        reported C{FAILED} (store-and-forward).
    @ivar store_max_attempts: hand-overs to the fleet before an MT message
        is given up as undeliverable.
    @ivar mo_routes: MO destination address to the system_id whose binds
        receive it; unlisted addresses go to any receiver-capable bind.
    @ivar faults: fault injection (see L{FaultConfig}).
    @ivar max_pdu: the largest PDU accepted from an ESME; a larger
        command_length breaks the connection.
    """

    system_id: str = attrs.field(default="simsmsc", validator=_system_id)
    bind_timeout: float = attrs.field(default=30.0, validator=_positive_seconds)
    bind_failure_grace: float = attrs.field(default=0.5, validator=_seconds)
    enquire_link_interval: float = attrs.field(default=30.0, validator=_seconds)
    enquire_link_timeout: float = attrs.field(default=10.0, validator=_positive_seconds)
    response_delay: float = attrs.field(default=0.0, validator=_seconds)
    max_submit_rate: float | None = attrs.field(default=None, validator=_rate)
    throttle_burst: int | None = attrs.field(default=None, validator=_burst)
    max_queue: int = attrs.field(default=1000, validator=_count)
    deliver_window: int = attrs.field(default=10, validator=_count)
    deliver_response_timeout: float = attrs.field(default=30.0, validator=_positive_seconds)
    deliver_retry_delay: float = attrs.field(default=5.0, validator=_seconds)
    deliver_max_attempts: int = attrs.field(default=3, validator=_count)
    outbox_limit: int = attrs.field(default=1000, validator=_count)
    store_retry_delay: float = attrs.field(default=30.0, validator=_seconds)
    store_max_attempts: int = attrs.field(default=3, validator=_count)
    mo_routes: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_routes, hash=False)
    faults: FaultConfig = attrs.field(factory=FaultConfig)
    max_pdu: int = attrs.field(default=DEFAULT_MAX_PDU, validator=_max_pdu)

    @property
    def effective_burst(self) -> int:
        """The token bucket's size: C{throttle_burst}, or one second of C{max_submit_rate}."""
        if self.throttle_burst is not None:
            return self.throttle_burst
        rate = self.max_submit_rate or 1.0
        return max(1, math.ceil(rate))
