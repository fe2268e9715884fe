# -*- test-case-name: tests.unit.core.test_secured -*-
"""The terms of the card's ISD secure channel (SCP03) as the gateway runs it.

What the relay (L{bipgw.core.SecuredRelay}) needs and how it fails: where a
card's static keys come from (L{IScp03KeySource}, which the store
implements), how the host side of each new channel is made
(L{host_session_factory}), what it drives (a L{ScriptRunner}: the admin
session), and the one error a platform sees when the channel fails
(L{SecureChannelError}, naming the L{Scp03Step}).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from twisted.internet.defer import Deferred

from bipgw.codec.scp03 import HostSession, SecurityLevel, StaticKeys
from bipgw.core._types import CommandError, FailureReason, ScriptResult, SessionId

__all__ = [
    "DEFAULT_LEVEL",
    "GP_ISD_AID",
    "SECURE_CHANNEL_FAILED",
    "HostSessionFactory",
    "IScp03KeySource",
    "Scp03Step",
    "ScriptRunner",
    "SecureChannelError",
    "host_session_factory",
]

GP_ISD_AID: Final = bytes.fromhex("A000000151000000")
"""The GlobalPlatform ISD AID (RID A000000151), selected before each opening."""

DEFAULT_LEVEL: Final = SecurityLevel.C_MAC | SecurityLevel.C_DECRYPTION | SecurityLevel.R_MAC
"""C-MAC, C-DECRYPTION and R-MAC (C{13}): commands private and authentic,
answers authentic."""

SECURE_CHANNEL_FAILED: Final[FailureReason] = FailureReason.SECURE_CHANNEL_FAILED
"""The reason of every L{SecureChannelError}."""


class IScp03KeySource(Protocol):
    """Where the gateway finds a card's static SCP03 keys (the key component)."""

    def keys_for(self, iccid: str) -> Deferred[StaticKeys]:
        """The ISD's static key set (ENC, MAC, DEK) of the card C{iccid}.

        @return: fails (with a L{bipgw.keys.KeyManagementError}, a store
            error...) when the card has none; messages name labels, never keys.
        """


class ScriptRunner(Protocol):
    """What the relay drives: one admin session (L{bipgw.core.Session})."""

    @property
    def id(self) -> SessionId:
        """The session's id."""

    def execute(
        self, commands: Sequence[bytes], *, definite: bool = False
    ) -> Deferred[ScriptResult]:
        """Run C{commands} on the card as one script (L{bipgw.core.Session.execute})."""


HostSessionFactory = Callable[[], HostSession | Deferred[HostSession]]
"""Makes the host side of a new SCP03 session (with the card's keys)."""


def host_session_factory(
    source: IScp03KeySource,
    iccid: str,
    *,
    kvn: int = 0,
    s16: bool = False,
    aid: bytes = GP_ISD_AID,
    random: Callable[[int], bytes] = os.urandom,
) -> HostSessionFactory:
    """A L{HostSessionFactory} that looks the card's keys up at each opening.

    @param kvn: the key version to ask the card for; C{0} takes the card's
        default set, which is what a vendor's key set 1 is (vendor files
        number sets from 1, cards from C{30}).
    @param aid: the ISD's AID, against which a pseudo-random card challenge
        is checked.
    @param random: where host challenges come from (tests fix them).
    """

    def make() -> Deferred[HostSession]:
        d = source.keys_for(iccid)
        return d.addCallback(
            lambda keys: HostSession(keys, kvn=kvn, s16=s16, aid=aid, random=random)
        )

    return make


class Scp03Step(enum.Enum):
    """Where opening or using the secure channel failed."""

    KEYS = "key lookup"
    SELECT_ISD = "SELECT ISD"
    INITIALIZE_UPDATE = "INITIALIZE UPDATE"
    CARD_CRYPTOGRAM = "card cryptogram"
    EXTERNAL_AUTHENTICATE = "EXTERNAL AUTHENTICATE"
    RESPONSE = "response check"


class SecureChannelError(CommandError):
    """A command could not go through the card's secure channel.

    @ivar step: where it failed.
    @ivar sw: the card's status word at that step, when it gave one.
    @ivar command: the index of the platform's C-APDU concerned (its answer
        did not verify), when one is.
    """

    def __init__(
        self,
        step: Scp03Step,
        detail: str,
        session_id: SessionId | None = None,
        *,
        script: int = 0,
        sw: int | None = None,
        command: int | None = None,
    ) -> None:
        super().__init__(
            SECURE_CHANNEL_FAILED, f"{step.value}: {detail}", session_id, script=script
        )
        self.step = step
        self.sw = sw
        self.command = command

    def __str__(self) -> str:
        return f"secure channel failed at {self.detail}"
