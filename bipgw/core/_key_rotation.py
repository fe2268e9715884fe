# -*- test-case-name: tests.unit.core.test_key_rotation,tests.integration.test_key_rotation -*-
"""Rotating a card's keys over the air: PUT KEY through the card's SCP03 channel.

L{CardKeyRotator.rotate} does one rotation of one key family of one card:

  1. the planner (L{IKeyRotationPlanner}, the store's) chooses the new key
     version and keys and records them C{pending}: from here the store
     knows them, but every part of the gateway still uses the active ones;
  2. an admin session is opened through the engine (the one call every
     door makes) for a service with C{secure_apdus}, so the command runs
     through the card's ISD secure channel, opened with its active keys;
  3. PUT KEY (GP 2.3 11.8) replaces the family's active key version with
     the new one, the key data encrypted under the static DEK of the set
     the channel runs on (L{bipgw.codec.scp03.put_key_command});
  4. when the card answers C{9000} with the new version and the check
     values of the keys sent, the planner switches the versions in one
     transaction (C{confirmed}); on anything else (a refusal, other check
     values, a session that fails or drops) it retires the pending
     version (C{failed}), and the card keeps the keys it had.

The session is closed either way.  Outcomes carry the reason in words
(status words, the step), never a key or check value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from bipgw.codec.apdu import ApduError, ResponseApdu
from bipgw.codec.scp03 import NewKey, PutKeyError, check_put_key_answer, put_key_command
from bipgw.core._types import CardTarget, SessionError

__all__ = ["CardKeyRotator", "IKeyRotationPlanner", "RotationOutcome", "RotationPlan"]


@attrs.frozen
class RotationPlan:
    """What one rotation puts on the card (keys and DEK hidden from repr).

    @ivar family: C{psk}, C{ota} or C{scp03}.
    @ivar old_kvn: the key version replaced on the card.
    @ivar new_kvn: the key version put.
    @ivar keys: the new keys, in key identifier order from C{first_kid}.
    @ivar dek: the static DEK of the SCP03 set the channel opens with.
    """

    iccid: str
    family: str
    old_kvn: int
    new_kvn: int
    keys: tuple[NewKey, ...] = attrs.field(repr=False)
    dek: bytes = attrs.field(repr=False)
    first_kid: int = 1


@attrs.frozen
class RotationOutcome:
    """How a rotation ended.

    @ivar ok: the card confirmed the new keys and the store switched to them.
    @ivar reason: why not, in words (empty when C{ok}).
    """

    iccid: str
    family: str
    old_kvn: int
    new_kvn: int
    ok: bool
    session_id: str | None = None
    reason: str = ""


class IKeyRotationPlanner(Protocol):
    """Chooses, records and switches card key versions (the store's side)."""

    def plan(self, iccid: str, family: str) -> Deferred[RotationPlan]:
        """Choose the new version and keys, record them pending."""

    def confirmed(self, plan: RotationPlan) -> Deferred[Any]:
        """The card took them: make them active, the old ones retired, at once."""

    def failed(self, plan: RotationPlan, reason: str) -> Deferred[Any]:
        """The card did not confirm: retire the pending version."""


class CardKeyRotator:
    """Rotates card keys through admin sessions the engine opens.

    @param open_session: L{bipgw.core.SessionEngine.open}.
    @param planner: the store's side.
    @param services: the names of the services with C{secure_apdus} that
        may carry PUT KEY; the first is used unless a call names another.
    """

    _log = Logger()

    def __init__(
        self,
        open_session: Callable[[CardTarget, str], Any],
        planner: IKeyRotationPlanner,
        services: tuple[str, ...],
    ) -> None:
        self._open = open_session
        self.planner = planner
        self.services = services

    def __repr__(self) -> str:
        return f"<CardKeyRotator services={list(self.services)}>"

    def service_for(self, service: str | None) -> str:
        """The service a rotation runs its session for.

        @raise ValueError: none is configured, or C{service} is not one of them.
        """
        if not self.services:
            raise ValueError(
                "no service can rotate card keys: one needs secure_apdus = true and"
                " put-key in its isd_commands"
            )
        if service is None:
            return self.services[0]
        if service not in self.services:
            raise ValueError(
                f"service {service!r} cannot rotate card keys"
                f" (these can: {', '.join(self.services)})"
            )
        return service

    async def rotate(self, iccid: str, family: str, service: str | None = None) -> RotationOutcome:
        """Rotate C{family} of card C{iccid} (module docstring).

        @raise ValueError: the service cannot carry it.
        @raise bipgw.errors.BipGwError: the planner refused (unknown card,
            a rotation pending already, no key to rotate); nothing was sent.
        """
        name = self.service_for(service)
        plan: RotationPlan = await self.planner.plan(iccid, family)
        self._log.info(
            "rotating the {family} keys of card {iccid}: key version {old:02X} -> {new:02X}",
            family=family,
            iccid=iccid,
            old=plan.old_kvn,
            new=plan.new_kvn,
        )
        session = None
        try:
            session = self._open(CardTarget.by_iccid(iccid), name)
            await session.ready
            command = put_key_command(
                plan.new_kvn, plan.keys, plan.dek, old_kvn=plan.old_kvn, first_kid=plan.first_kid
            )
            result = await session.execute([command.encode()])
            if not result.responses:
                raise PutKeyError("the card ran no command")
            answer = ResponseApdu.decode(result.responses[0])
            check_put_key_answer(answer.data, answer.sw, plan.new_kvn, plan.keys)
        except (SessionError, PutKeyError, ApduError) as e:
            reason = str(e) or type(e).__name__
            await self.planner.failed(plan, reason)
            await self._close(session)
            self._log.warn(
                "rotating the {family} keys of card {iccid} failed: {reason}; its key version"
                " {old:02X} stays active",
                family=family,
                iccid=iccid,
                reason=reason,
                old=plan.old_kvn,
            )
            return self._outcome(plan, session, False, reason)
        await self.planner.confirmed(plan)
        await self._close(session)
        return self._outcome(plan, session, True, "")

    def _outcome(self, plan: RotationPlan, session: Any, ok: bool, reason: str) -> RotationOutcome:
        sid = None if session is None else str(session.id)
        return RotationOutcome(plan.iccid, plan.family, plan.old_kvn, plan.new_kvn, ok, sid, reason)

    async def _close(self, session: Any) -> None:
        if session is None:
            return
        try:
            await session.close()
        except SessionError:
            pass
