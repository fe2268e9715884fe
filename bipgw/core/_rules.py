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

from collections.abc import Iterable

import attrs

from bipgw.core._access import ALL_INSTRUCTIONS, CommandAccess, instructions

__all__ = ["ServiceRules"]


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
    @ivar card_initiated: cards that open an admin session with none waiting
        are offered to this service's platforms (L{bipgw.core.CardOffer}).
    """

    secure_apdus: bool = False
    card_initiated: bool = False
    definite_scripts: bool = False
    max_concurrent_sessions: int | None = attrs.field(default=None, validator=_limit)
    allowed_aids: frozenset[bytes] = attrs.field(default=frozenset(), converter=_aids)
    isd_commands: frozenset[int] = attrs.field(default=ALL_INSTRUCTIONS, converter=instructions)

    def definite(self, asked: bool | None) -> bool:
        """The script form to send: what the caller C{asked}, else the service's."""
        return self.definite_scripts if asked is None else asked

    def access(self, service: str) -> CommandAccess:
        """The ceiling of what C{service}'s commands may reach, whichever tenant sends them."""
        return CommandAccess(
            f"service {service!r} (its [services.{service}] table)",
            applets=self.allowed_aids or None,
            isd=self.isd_commands,
        )
