# -*- test-case-name: tests.unit.smpp.test_settings -*-
"""The ESME's settings: one frozen value, checked once.

Everything the SMPP client needs to know about its account and its manners
(bind credentials, addressing, window, rate, timers, queue bound) is one
L{EsmeSettings}, so the pure parts (L{bipgw.smpp.SubmitPump},
L{bipgw.smpp.EsmeLink}) and the service are built from the same checked
values and a test can change one field with L{attrs.evolve}.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

__all__ = ["EsmeSettings"]

# SMPP 3.4 section 4.1.1: C-Octet Strings of at most 16, 9 and 13 octets with the NUL.
_LIMITS: Final = {"system_id": 15, "password": 8, "system_type": 12, "source_address": 20}


def _text(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    limit = _LIMITS[attribute.name]
    if not isinstance(value, str) or len(value) > limit or not value.isascii():
        raise ValueError(f"{attribute.name} must be ASCII text of at most {limit} characters")
    if "\0" in value:
        raise ValueError(f"{attribute.name} must not contain NUL")


def _byte(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise ValueError(f"{attribute.name} must be 0..255, not {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{attribute.name} must be a finite number above 0, not {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _positive(instance, attribute, value)
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value!r}")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer of at least 1, not {value!r}")


@attrs.frozen(kw_only=True)
class EsmeSettings:
    """How the gateway binds to its SMSC and how it sends.

    @ivar system_id: the ESME account name the SMSC gave us.
    @ivar password: the account's password; never in a repr or a log line.
    @ivar system_type: the ESME type, when the SMSC asks for one.
    @ivar transceiver: bind as transceiver (pushes out, PoRs and receipts
        in, one connection) or, when C{False}, as transmitter only.
    @ivar source_address: the gateway's OTA address, the source of pushes.
    @ivar source_ton: its type of number (SMPP 3.4 5.2.5).
    @ivar source_npi: its numbering plan (SMPP 3.4 5.2.6).
    @ivar destination_ton: type of number of the cards' MSISDNs.
    @ivar destination_npi: numbering plan of the cards' MSISDNs.
    @ivar registered_delivery: asks the SMSC for receipts (C{01}: always).
    @ivar window: submit_sm that may await their response at once.
    @ivar rate: the most submit_sm per second (a token bucket).
    @ivar burst: how many submits may leave back to back after an idle
        spell; 1 spaces every submit by C{1 / rate}.
    @ivar enquire_link_interval: idle seconds after which an enquire_link
        checks that the SMSC is still there.
    @ivar response_timeout: how long any request (bind, submit_sm,
        enquire_link, unbind) waits for its response; a missing response
        drops the connection (a missing C{unbind_resp} just closes it).
    @ivar queue_limit: pushes that may wait (bind down, window full, rate
        cap, throttling); more are refused at once.
    @ivar reconnect_initial_delay: the first wait before reconnecting after
        a lost connection or a refused bind.
    @ivar reconnect_max_delay: the longest such wait.
    @ivar reconnect_factor: how much each consecutive failure grows it.
    @ivar throttle_initial_delay: the pause after a first C{ESME_RTHROTTLED}
        or C{ESME_RMSGQFUL}.
    @ivar throttle_max_delay: the longest such pause.
    @ivar throttle_factor: how much each consecutive throttling grows it.
    @ivar max_sends: how many times one SMS part may be sent over
        connections that dropped before it was answered; then its push fails.
    """

    system_id: str = attrs.field(validator=_text)
    password: str = attrs.field(repr=False, validator=_text)
    system_type: str = attrs.field(default="", validator=_text)
    transceiver: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    source_address: str = attrs.field(default="", validator=_text)
    source_ton: int = attrs.field(default=1, validator=_byte)
    source_npi: int = attrs.field(default=1, validator=_byte)
    destination_ton: int = attrs.field(default=1, validator=_byte)
    destination_npi: int = attrs.field(default=1, validator=_byte)
    registered_delivery: int = attrs.field(default=0x01, validator=_byte)
    window: int = attrs.field(default=10, validator=_count)
    rate: float = attrs.field(default=50.0, validator=_positive)
    burst: float = attrs.field(default=1.0, validator=_at_least_one)
    enquire_link_interval: float = attrs.field(default=30.0, validator=_positive)
    response_timeout: float = attrs.field(default=10.0, validator=_positive)
    queue_limit: int = attrs.field(default=1000, validator=_count)
    reconnect_initial_delay: float = attrs.field(default=1.0, validator=_positive)
    reconnect_max_delay: float = attrs.field(default=60.0, validator=_positive)
    reconnect_factor: float = attrs.field(default=2.0, validator=_at_least_one)
    throttle_initial_delay: float = attrs.field(default=1.0, validator=_positive)
    throttle_max_delay: float = attrs.field(default=60.0, validator=_positive)
    throttle_factor: float = attrs.field(default=2.0, validator=_at_least_one)
    max_sends: int = attrs.field(default=3, validator=_count)

    def __attrs_post_init__(self) -> None:
        if not self.system_id:
            raise ValueError("system_id must not be empty")
        if self.reconnect_max_delay < self.reconnect_initial_delay:
            raise ValueError("reconnect_max_delay must be at least reconnect_initial_delay")
        if self.throttle_max_delay < self.throttle_initial_delay:
            raise ValueError("throttle_max_delay must be at least throttle_initial_delay")
