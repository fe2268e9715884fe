# -*- test-case-name: tests.unit.core.test_engine_relay,tests.unit.core.test_rules -*-
"""The handles the engine gives the two sides of a session.

The platform's door gets a L{Session} (or, for a service with
C{secure_apdus}, a L{bipgw.core.SecuredSession}); the SCP81 server gets a
L{CardLink} for each card connection.  Both are thin: they hand their calls
to the session's machine, and the platform's handle applies the service's
rules (L{ServiceRules}) to what the platform asks first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.admin_http import AdminRequest, AdminResponse
from bipgw.core._access import CommandAccess, Reach, ReachRefusedError
from bipgw.core._rules import ServiceRules
from bipgw.core._session import SessionMachine
from bipgw.core._types import (
    CardTarget,
    CommandError,
    FailureReason,
    ScriptResult,
    SessionError,
    SessionId,
    SessionStatus,
)

__all__ = ["CardLink", "Guard", "Session"]


_NEVER_SENT: Final = frozenset(
    {
        FailureReason.SESSION_ENDED,
        FailureReason.NOT_CONNECTED,
        FailureReason.QUEUE_FULL,
        FailureReason.INVALID_COMMAND,
        FailureReason.APPLICATION_NOT_ALLOWED,
    }
)
"""Refusals by which the session's machine says a script never reached the card."""


class Guard:
    """What a session's commands may reach: the service's ceiling, and the caller's grant.

    Each handle (L{Session}, L{bipgw.core.SecuredSession}) holds one and runs
    every platform script through it, so the check holds whichever door sent
    it (L{bipgw.core.Reach} explains the model).
    """

    def __init__(self, rules: ServiceRules, service: str, session_id: SessionId) -> None:
        self.reach = Reach()
        self._ceiling = rules.access(service)
        self._session_id = session_id

    def refusal(
        self,
        commands: Sequence[bytes],
        access: CommandAccess | None = None,
        target: bytes | None = None,
    ) -> SessionError | None:
        """Why C{commands} may not be sent now (C{None}: they may), counting nothing."""
        if not _is_aid(target):
            return self._bad_target()
        try:
            self.reach.check(_as_seen(commands, target), self._accesses(access))
        except ReachRefusedError as e:
            return self._error(e)
        return None

    def run(
        self,
        commands: Sequence[bytes],
        access: CommandAccess | None,
        send: Callable[[], Deferred[ScriptResult]],
        target: bytes | None = None,
    ) -> Deferred[ScriptResult]:
        """Check C{commands}, then C{send} them and follow what they selected.

        A script for a C{target} application is checked as the card runs
        it: after a SELECT of that AID (which the grant must allow).  What
        it leaves selected is not followed: the next untargeted script runs
        in the security domain again (GP Amd B), so after it the basic
        channel's selection counts as unknown, and a platform that wants
        the ISD or an applet there SELECTs it first.
        """
        if not _is_aid(target):
            return fail(self._bad_target())
        try:
            ticket = self.reach.admit(_as_seen(commands, target), self._accesses(access))
        except ReachRefusedError as e:
            return fail(self._error(e))

        def answered(result: ScriptResult) -> ScriptResult:
            if target is None:
                self.reach.settle(ticket, result.responses)
            else:
                self.reach.lost(ticket)
            return result

        def failed(failure: Failure) -> Failure:
            error = failure.value
            never_sent = (
                isinstance(error, SessionError)
                and not isinstance(error, CommandError)
                and error.reason in _NEVER_SENT
            )
            if not never_sent:
                self.reach.lost(ticket)
            else:
                self.reach.dropped(ticket)
            return failure

        try:
            done = send()
        except BaseException:
            self.reach.lost(ticket)
            raise
        return done.addCallbacks(answered, failed)

    def _accesses(self, access: CommandAccess | None) -> list[CommandAccess]:
        # The caller's grant first: its refusal names what the tenant can change.
        return [self._ceiling] if access is None else [access, self._ceiling]

    def _bad_target(self) -> SessionError:
        return SessionError(
            FailureReason.INVALID_COMMAND,
            "a target application is an AID of 5 to 16 bytes",
            self._session_id,
        )

    def _error(self, refused: ReachRefusedError) -> SessionError:
        return SessionError(FailureReason.APPLICATION_NOT_ALLOWED, str(refused), self._session_id)


def _is_aid(target: bytes | None) -> bool:
    """Whether C{target} is no target, or an AID (5-16 bytes)."""
    return target is None or (isinstance(target, bytes) and 5 <= len(target) <= 16)


def _as_seen(commands: Sequence[bytes], target: bytes | None) -> Sequence[bytes]:
    """C{commands} as the card runs them: after a SELECT of C{target}, if given."""
    if target is None or isinstance(commands, bytes | bytearray | str):
        return commands
    select = bytes((0x00, 0xA4, 0x04, 0x00, len(target))) + target + b"\x00"
    return (select, *commands)


class Session:
    """The platform's handle on one admin session.

    @ivar id: the session id.
    @ivar ready: fires with the L{SessionStatus} once the card is connected
        and commands can be sent; fails with L{SessionError} if the session
        ends first (unknown card, card busy, push failures, timeout ...).
    @ivar recorded: (a property, a new Deferred each time) fires once the
        session's opening row is durable in the store (fails if it could not
        be written); a door waits for it before it tells the platform the
        session exists.  Nobody need ask: an unasked failure is only logged.
    """

    def __init__(self, machine: SessionMachine, rules: ServiceRules | None = None) -> None:
        self._machine = machine
        self._rules = rules if rules is not None else ServiceRules()
        self.id = machine.id
        self.ready = machine.ready
        self.guard = Guard(self._rules, machine.service, machine.id)

    @property
    def recorded(self) -> Deferred[None]:
        """Fires once the opening row is durable (see the class docstring)."""
        return self._machine.recorded

    @property
    def target(self) -> CardTarget:
        """The card the platform asked for."""
        return self._machine.target

    @property
    def service(self) -> str:
        """The platform service the session was opened for."""
        return self._machine.service

    def status(self) -> SessionStatus:
        """A snapshot of the session now."""
        return self._machine.status()

    def refusal(
        self,
        commands: Sequence[bytes],
        access: CommandAccess | None = None,
        target: bytes | None = None,
    ) -> SessionError | None:
        """Why L{execute} would refuse C{commands} by what they reach (C{None}: it would not)."""
        return self.guard.refusal(commands, access, target)

    def execute(
        self,
        commands: Sequence[bytes],
        *,
        definite: bool | None = None,
        access: CommandAccess | None = None,
        target: bytes | None = None,
    ) -> Deferred[ScriptResult]:
        """Same as L{bipgw.core.SessionEngine.execute} for this session.

        Refused with C{APPLICATION_NOT_ALLOWED}, before anything reaches
        the card, when a command would reach an application (or send the
        ISD an instruction) that the service's ceiling or C{access} does
        not allow.

        @param definite: C{AA} (definite length) or C{AE} scripts; C{None}
            takes the service's C{definite_scripts}.
        @param access: the caller's grant (a tenant's), on top of the
            service's ceiling.
        @param target: the AID of the application the card is to run the
            script in (sent as C{X-Admin-Targeted-Application}); checked as
            a SELECT of it.  C{None}: the security domain running the session.
        """
        form = self._rules.definite(definite)
        return self.guard.run(
            commands, access, lambda: self._machine.execute(commands, form, target), target
        )

    def close(self) -> Deferred[SessionStatus]:
        """Same as L{bipgw.core.SessionEngine.close} for this session."""
        return self._machine.close()

    def __repr__(self) -> str:
        return f"<Session {self.id} {self._machine.state.value}>"


class CardLink:
    """The SCP81 server's handle on the session a card's connection serves.

    The server calls L{post} for every request the card sends on the
    connection, one at a time, and L{lost} when the connection ends.
    """

    _log = Logger()

    def __init__(self, machine: SessionMachine, disconnect: Callable[[str], object] | None) -> None:
        self._machine = machine
        self._disconnect = disconnect

    @property
    def session_id(self) -> SessionId:
        """The session this connection serves."""
        return self._machine.id

    def post(self, request: AdminRequest) -> Deferred[AdminResponse]:
        """The card's next POST; fires with the response to send.

        The first POST is held until the platform sends a command (C{200}
        with the script and X-Admin-Next-URI C{/admin/s/<session>/<n>}) or
        closes (C{204}); each later POST carries the answer to script C{n}
        and is held again.  After a C{204}, or a response with
        C{keep_alive=False}, the server closes the connection.
        """
        return self._machine.card_post(self, request)

    def lost(self, reason: str | Failure | BaseException) -> None:
        """The connection ended (after a C{204}: the session is closed; else it failed)."""
        if isinstance(reason, Failure):
            reason = reason.getErrorMessage() if reason.value is None else reason.value
        if isinstance(reason, BaseException):
            reason = f"{type(reason).__name__}: {reason}"
        self._machine.card_lost(self, f"connection lost ({reason})")

    def disconnect(self, why: str) -> None:
        """Called by the session when it ends with no POST to answer: drop the line."""
        if self._disconnect is None:
            return
        try:
            self._disconnect(why)
        except Exception:
            self._log.failure("disconnecting the card of session {id} failed", id=self.session_id)
