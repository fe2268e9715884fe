# -*- test-case-name: tests.unit.core.test_rules -*-
"""What one service's sessions may do: the service's rules, as the engine applies them.

The configuration's C{[services.NAME]} table is the service's OTA profile
and its ceilings, the same for every tenant; a tenant's grants in the store
only say which tenant may use the service, with limits within those
ceilings.  The engine is given one L{ServiceRules} per service name and
applies them to every session of that service, whichever door opened it:
the secure channel, the form of the command scripts, how many sessions may
be open at once and what a command may reach (L{bipgw.core.CommandAccess}:
the applets it may select, the instructions that may reach the ISD).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable

import attrs

from bipgw.codec.ram import RemoteFormat
from bipgw.core._access import ALL_INSTRUCTIONS, CommandAccess, instructions

__all__ = ["ServiceRules", "Transport"]


class Transport(enum.Enum):
    """How a service's scripts reach the card."""

    BIP = "bip"
    """A push SMS, then GP Amendment B over the card's BIP channel (SCP81)."""
    SMS = "sms"
    """Secured command packets over SMS-PP, answers in the PoR (TS 102 225/226)."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{attribute.name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be more than 0 seconds, not {value!r}")


def _aids(value: Iterable[bytes]) -> frozenset[bytes]:
    aids = frozenset(bytes(aid) for aid in value)
    for aid in aids:
        if not 5 <= len(aid) <= 16:
            raise ValueError(f"an AID is 5 to 16 bytes, not {len(aid)} ({aid.hex().upper()})")
    return aids


def _limit(_: object, __: object, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"max_concurrent_sessions must be at least 1, not {value}")


@attrs.frozen
class ServiceRules:
    """The rules of one service's sessions (C{[services.NAME]}).

    The defaults allow everything, as a service without a table did before
    services had rules.

    @ivar secure_apdus: the platform's commands go through the card's ISD
        secure channel (SCP03): L{bipgw.core.SessionEngine.open} returns a
        L{bipgw.core.SecuredSession}.
    @ivar definite_scripts: command scripts are sent with a definite length
        (C{AA}) unless the caller asks for a form; else indefinite (C{AE 80}).
    @ivar max_concurrent_sessions: how many sessions of the service may be
        open at once, across all tenants; C{None}: no limit.
    @ivar allowed_aids: the applications a command may SELECT (by DF name);
        empty: any.
    @ivar isd_commands: the instructions (INS) that may reach the ISD, the
        ceiling of every tenant's grant; all by default (a configured
        service's table says which, L{bipgw.core.parse_isd_commands}).
    @ivar transport: L{Transport.SMS}: the scripts go as secured SMS-PP
        command packets and no push is sent (L{bipgw.core._sms_session}).
    @ivar sms_fallback: with the BIP transport, a card that has not
        connected after the last push is reached over SMS instead of the
        session failing with C{card-timeout}.
    @ivar sms_format: the TS 102 226 format of scripts sent over SMS.
    @ivar por_timeout: seconds a script sent over SMS may wait for its PoR
        (from the submission on); past it the session fails with
        C{por-timeout}.
    """

    secure_apdus: bool = False
    definite_scripts: bool = False
    max_concurrent_sessions: int | None = attrs.field(default=None, validator=_limit)
    allowed_aids: frozenset[bytes] = attrs.field(default=frozenset(), converter=_aids)
    isd_commands: frozenset[int] = attrs.field(default=ALL_INSTRUCTIONS, converter=instructions)
    transport: Transport = attrs.field(
        default=Transport.BIP, validator=attrs.validators.instance_of(Transport)
    )
    sms_fallback: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    sms_format: RemoteFormat = attrs.field(
        default=RemoteFormat.EXPANDED, validator=attrs.validators.instance_of(RemoteFormat)
    )
    por_timeout: float = attrs.field(default=60.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.sms_fallback and self.transport is Transport.SMS:
            raise ValueError("an SMS fallback only applies to the BIP transport")

    @property
    def uses_sms(self) -> bool:
        """Whether the service's sessions may run scripts over SMS."""
        return self.transport is Transport.SMS or self.sms_fallback

    def definite(self, asked: bool | None) -> bool:
        """The script form to send: what the caller C{asked}, else the service's
        (always definite for the SMS transport, whose packet length is known)."""
        if asked is not None:
            return asked
        return self.definite_scripts or self.transport is Transport.SMS

    def access(self, service: str) -> CommandAccess:
        """The ceiling of what C{service}'s commands may reach, whichever tenant sends them."""
        return CommandAccess(
            f"service {service!r} (its [services.{service}] table)",
            applets=self.allowed_aids or None,
            isd=self.isd_commands,
        )
