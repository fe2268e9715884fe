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
from bipgw.core._handles import Guard
from bipgw.core._rules import ServiceRules
from bipgw.core._scp03 import DEFAULT_LEVEL, IScp03KeySource, host_session_factory
from bipgw.core._secure_relay import SecuredRelay
from bipgw.core._session import SessionMachine
from bipgw.core._types import CardTarget, ScriptResult, SessionError, SessionId, SessionStatus

__all__ = ["SecuredSession"]


class SecuredSession:
    """An admin session whose platform commands all go through the card's
    ISD secure channel (what a service with C{secure_apdus} gets).

    It looks like a L{bipgw.core.Session} (C{id}, C{ready}, C{status},
    C{execute}, C{close}), but C{execute} goes through one L{SecuredRelay}:
    the platform sends plain APDUs and the card keys never leave the
    gateway.  The card's keys are looked up when the channel first opens,
    by the ICCID the session resolved (the session may have been opened by
    MSISDN).  The service's rules apply to the platform's commands, not to
    the relay's own (its C{SELECT} of the ISD, C{INITIALIZE UPDATE} ...).

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
        self._machine = machine
        self._rules = rules
        self.guard = Guard(rules, machine.service, machine.id)

        def new_host() -> HostSession | Deferred[HostSession]:
            iccid = machine.status().iccid
            if iccid is None:
                return fail(ValueError("the session has no card yet"))
            return host_session_factory(source, iccid)()

        self.relay = SecuredRelay(machine, new_host, level=level)

    @property
    def id(self) -> SessionId:
        """The engine's session id."""
        return self._machine.id

    @property
    def recorded(self) -> Deferred[None]:
        """Fires once the opening row is durable (L{bipgw.core.Session.recorded})."""
        return self._machine.recorded

    @property
    def ready(self) -> Deferred[SessionStatus]:
        """Fires when the card has connected (L{bipgw.core.Session.ready})."""
        return self._machine.ready

    @property
    def target(self) -> CardTarget:
        """The card as the session was asked for."""
        return self._machine.target

    @property
    def service(self) -> str:
        """The service the session runs for."""
        return self._machine.service

    def status(self) -> SessionStatus:
        """The session's status now."""
        return self._machine.status()

    def refusal(
        self, commands: Sequence[bytes], access: CommandAccess | None = None
    ) -> SessionError | None:
        """Why L{execute} would refuse C{commands} by what they reach (C{None}: it would not)."""
        return self.guard.refusal(commands, access)

    def execute(
        self,
        commands: Sequence[bytes],
        *,
        definite: bool | None = None,
        access: CommandAccess | None = None,
    ) -> Deferred[ScriptResult]:
        """Run plain C{commands} on the card through the secure channel.

        What they reach is checked as for L{bipgw.core.Session.execute}; the
        relay's own commands (its SELECT of the ISD, INITIALIZE UPDATE ...)
        are the gateway's, not the platform's, and are not.

        @param definite: the card scripts' form; C{None} takes the service's.
        @param access: the caller's grant, on top of the service's ceiling.
        """
        form = self._rules.definite(definite)
        return self.guard.run(commands, access, lambda: self.relay.execute(commands, definite=form))

    def close(self) -> Deferred[SessionStatus]:
        """End the admin session (the secure channel ends with it)."""
        return self._machine.close()

    def __repr__(self) -> str:
        return f"<SecuredSession {self.id} {self._machine.state.value}>"
