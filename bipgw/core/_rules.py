# -*- test-case-name: tests.unit.core.test_rules -*-
"""What one service's sessions may do: the service's rules, as the engine applies them.

The configuration's C{[services.NAME]} table is the service's OTA profile
and its ceilings, the same for every tenant; a tenant's grants in the store
only say which tenant may use the service, with limits within those
ceilings.  The engine is given one L{ServiceRules} per service name and
applies them to every session of that service, whichever door opened it:
the secure channel, the form of the command scripts, how many sessions may
be open at once and which applications a command may SELECT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from bipgw.codec.apdu import ApduError, CommandApdu

__all__ = ["ServiceRules"]

_INS_SELECT: Final = 0xA4
_BY_DF_NAME: Final = 0x04


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
    """

    secure_apdus: bool = False
    definite_scripts: bool = False
    max_concurrent_sessions: int | None = attrs.field(default=None, validator=_limit)
    allowed_aids: frozenset[bytes] = attrs.field(default=frozenset(), converter=_aids)

    def definite(self, asked: bool | None) -> bool:
        """The script form to send: what the caller C{asked}, else the service's."""
        return self.definite_scripts if asked is None else asked

    def forbidden_select(self, commands: Sequence[bytes]) -> tuple[int, bytes] | None:
        """The first command that SELECTs an AID outside L{allowed_aids}, if any.

        Any class byte counts: the ceiling does not trust a card to refuse a
        proprietary class.  Commands that do not decode are left to the
        session's own checks, which refuse them by position.

        @return: the command's index and the AID it selects.
        """
        if not self.allowed_aids or isinstance(commands, bytes | bytearray | str):
            return None
        for i, raw in enumerate(commands):
            if not isinstance(raw, bytes):
                continue
            try:
                apdu = CommandApdu.decode(raw)
            except ApduError:
                continue
            selects = apdu.ins == _INS_SELECT and apdu.p1 == _BY_DF_NAME
            if selects and apdu.data not in self.allowed_aids:
                return i, apdu.data
        return None
