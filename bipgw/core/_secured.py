# -*- test-case-name: tests.unit.core.test_secured,tests.integration.test_gateway_secured -*-
"""The session a service with C{secure_apdus} gets: every command through SCP03.

"Keys never leave the gateway": the platform of such a service sends plain
C-APDUs, and L{SecuredSession} runs them through one L{SecuredRelay}, which
opens the card's ISD secure channel inside the admin session with the
card's keys from an L{IScp03KeySource}.  The engine builds it
(L{bipgw.core.SessionEngine.open}); no door needs to know the difference.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, fail

from bipgw.codec.scp03 import HostSession
from bipgw.core._access import CommandAccess
from bipgw.core._handles import Session
from bipgw.core._rules import ServiceRules
from bipgw.core._scp03 import DEFAULT_LEVEL, IScp03KeySource, host_session_factory
from bipgw.core._secure_relay import SecuredRelay
from bipgw.core._session import SessionMachine
from bipgw.core._types import FailureReason, ScriptResult, SessionError

__all__ = ["SecuredSession"]


class SecuredSession(Session):
    """An admin session whose platform commands all go through the card's
    ISD secure channel (what a service with C{secure_apdus} gets).

    It is a L{bipgw.core.Session} (C{id}, C{ready}, C{status}, C{close}
    ...), but its C{execute} goes through one L{SecuredRelay}: the platform
    sends plain APDUs and the card keys never leave the gateway.  The
    card's keys are looked up when the channel first opens, by the ICCID
    the session resolved (the session may have been opened by MSISDN).
    The service's rules apply to the platform's commands, not to the
    relay's own (its C{SELECT} of the ISD, C{INITIALIZE UPDATE} ...).

    @param machine: the engine's session machine.
    @param rules: the service's rules.
    @param source: where the card's static SCP03 keys come from.
    @param level: the security level to open the channel with.
    @ivar relay: the relay every command goes through.
    """

    def __init__(
        self,
        machine: SessionMachine,
        rules: ServiceRules,
        source: IScp03KeySource,
        *,
        level: int = DEFAULT_LEVEL,
    ) -> None:
        super().__init__(machine, rules)

        def new_host() -> HostSession | Deferred[HostSession]:
            iccid = machine.status().iccid
            if iccid is None:
                return fail(ValueError("the session has no card yet"))
            return host_session_factory(source, iccid)()

        self.relay = SecuredRelay(machine, new_host, level=level)

    def execute(
        self,
        commands: Sequence[bytes],
        *,
        definite: bool | None = None,
        access: CommandAccess | None = None,
        target: bytes | None = None,
    ) -> Deferred[ScriptResult]:
        """Run plain C{commands} on the card through the secure channel.

        What they reach is checked as for L{bipgw.core.Session.execute}; the
        relay's own commands (its SELECT of the ISD, INITIALIZE UPDATE ...)
        are the gateway's, not the platform's, and are not.

        @param definite: the card scripts' form; C{None} takes the service's.
        @param access: the caller's grant, on top of the service's ceiling.
        @param target: refused unless C{None}: the SCP03 channel is the
            ISD's, so a secured service's scripts run in the ISD.
        """
        if target is not None:
            return fail(
                SessionError(
                    FailureReason.INVALID_COMMAND,
                    "a secured service's scripts run in the ISD's SCP03 channel; they cannot"
                    " target another application",
                    self.id,
                )
            )
        form = self._rules.definite(definite)
        return self.guard.run(commands, access, lambda: self.relay.execute(commands, definite=form))

    def __repr__(self) -> str:
        return f"<SecuredSession {self.id} {self._machine.state.value}>"
