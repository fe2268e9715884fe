# -*- test-case-name: tests.unit.core.test_relay,tests.unit.core.test_remote -*-
"""The commands of a relay's sessions: checked, limited, run and answered.

A L{bipgw.core.SessionRelay} hands each C{command} for one of its sessions
to its L{RelayCommands}: the session must be live and not closing, the id
not in flight; the tenant's commands in flight (C{max_commands}), what the
command reaches (the tenant's current grant, the session's application)
and the service's command C{rate} are checked, the last two counted by the
node alone (L{bipgw.core.TenantUsage}, L{bipgw.core.CommandRates}) or,
in a cluster, over every node (the tenancy's L{bipgw.core.ISharedCommands},
asked before the command runs); then the session runs it and the answer
(C{result} or C{error}) goes back through the door, or through the
C{emit} of a request forwarded from another node (L{bipgw.core._remote}).
The platform's C{timeouts.command} closes a session whose card is too slow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.platform import Command, ErrorCode, Message, Result
from bipgw.core._access import CommandAccess
from bipgw.core._grants import TenantGrant
from bipgw.core._tenancy import Tenancy
from bipgw.core._tracked import RelayHost, Tracked, accesses, reply_error
from bipgw.core._types import ScriptResult

__all__ = ["RelayCommands"]


class RelayCommands:
    """The commands of one relay's sessions (module docstring).

    @param tenancy: what the doors share (usage, rates, the cluster's limits).
    @param host: the door: where answers go unless a request says otherwise.
    @param sessions: the relay's live sessions, by id (the relay's own table).
    @param close_for_timeout: closes a session whose command timed out.
    """

    _log = Logger()

    def __init__(
        self,
        tenancy: Tenancy,
        host: RelayHost,
        sessions: Mapping[str, Tracked],
        close_for_timeout: Callable[[Tracked, str, str], None],
    ) -> None:
        self._tenancy = tenancy
        self._host = host
        self._clock = tenancy.clock
        self._sessions = sessions
        self._close_for_timeout = close_for_timeout
        self._tokens: dict[tuple[str, str], str] = {}  # (session, id) -> shared-count token

    def _reply(
        self,
        code: str,
        text: str,
        request_id: str | None,
        session: str | None,
        emit: Callable[[Message], object] | None,
    ) -> None:
        reply_error(self._host, code, text, request_id, session, emit)

    def run(
        self,
        request: Command,
        tenant: TenantGrant,
        emit: Callable[[Message], object] | None = None,
    ) -> None:
        """Run C{request} on its session, within C{tenant}'s (current) grant,
        answering through C{emit} (the door's by default)."""
        rid, sid = request.id, request.session
        tracked = self._sessions.get(sid)
        if tracked is None:
            text = "no such session on this connection"
            self._reply(ErrorCode.UNKNOWN_SESSION, text, rid, sid, emit)
            return
        if tracked.closing:
            self._reply(ErrorCode.SESSION_CLOSING, "the session is closing", rid, sid, emit)
            return
        if rid in tracked.commands:
            text = f"command {rid!r} is still in flight"
            self._reply(ErrorCode.DUPLICATE_ID, text, rid, sid, emit)
            return
        usage = self._tenancy.usage
        refused = usage.check_command(tenant)
        if refused is not None:
            self._reply(ErrorCode.LIMIT_REACHED, refused, rid, sid, emit)
            return
        # The tenant's current grant rules (the HTTP API renews it per request).
        service = tenant.services.get(tracked.service.name, tracked.service)
        access = accesses(tracked, service, tenant.tenant_id)
        target = request.target if request.target is not None else tracked.target
        why = tracked.session.refusal(request.capdus, access, target)
        if why is not None:
            self._reply(ErrorCode.APPLICATION_NOT_ALLOWED, why.detail, rid, sid, emit)
            return
        shared = self._tenancy.shared_commands
        if shared is None:
            # Last, so that only a command that will run spends a token.
            refused = self._tenancy.rates.take(tenant.tenant_id, service)
            if refused is not None:
                self._reply(ErrorCode.RATE_LIMITED, refused, rid, sid, emit)
                return
            usage.command_sent(tenant.tenant_id)
            self._execute(tracked, request, access, target, emit)
            return
        # Counted over the cluster (L{bipgw.core.ISharedCommands}): held in
        # flight here (no duplicate id, counted locally) while it is decided.
        usage.command_sent(tenant.tenant_id)
        tracked.commands[rid] = None
        admitted = shared.admit(tenant, service)
        admitted.addCallbacks(
            self._admitted,
            self._not_admitted,
            callbackArgs=(tracked, request, access, target, emit),
            errbackArgs=(tracked, request, emit),
        )

    def _admitted(
        self,
        outcome: tuple[str | None, str | None, str | None],
        tracked: Tracked,
        request: Command,
        access: CommandAccess,
        target: bytes | None,
        emit: Callable[[Message], object] | None,
    ) -> None:
        token, code, why = outcome
        rid, shared = request.id, self._tenancy.shared_commands
        if token is not None and shared is not None:
            if rid in tracked.commands and not tracked.closing and tracked.id in self._sessions:
                self._tokens[(tracked.id, rid)] = token
                self._execute(tracked, request, access, target, emit)
                return
            shared.done(token)
        self._settle(tracked, rid)
        if why is not None:
            self._reply(code or ErrorCode.LIMIT_REACHED, why, rid, tracked.id, emit)
        elif token is not None:
            self._reply(ErrorCode.SESSION_CLOSING, "the session is closing", rid, tracked.id, emit)

    def _not_admitted(
        self,
        failure: Failure,
        tracked: Tracked,
        request: Command,
        emit: Callable[[Message], object] | None,
    ) -> None:
        self._settle(tracked, request.id)
        why = failure.getErrorMessage() or type(failure.value).__name__
        text = f"the cluster's command limits cannot be reached ({why}); try again later"
        self._reply(ErrorCode.UNAVAILABLE, text, request.id, tracked.id, emit)

    def _execute(
        self,
        tracked: Tracked,
        request: Command,
        access: CommandAccess,
        target: bytes | None,
        emit: Callable[[Message], object] | None,
    ) -> None:
        rid = request.id
        wait = tracked.timeouts.command if tracked.timeouts else None
        timer = (
            None
            if wait is None
            else self._clock.callLater(wait, self._command_timed_out, tracked, rid, wait, emit)
        )
        tracked.commands[rid] = timer
        # Through the session object, not the engine: a secured service's
        # session wraps every command in the card's SCP03 channel.
        done = maybeDeferred(
            tracked.session.execute,
            request.capdus,
            definite=request.definite_length,
            access=access,
            target=target,
        )
        done.addCallbacks(
            self._result,
            self._command_failed,
            callbackArgs=(tracked, rid, emit),
            errbackArgs=(tracked, rid, emit),
        )

    def _settle(self, tracked: Tracked, request_id: str) -> bool:
        """The engine answered a command: stop counting it; C{True} if it is still owed."""
        self._tenancy.usage.command_done(tracked.tenant_id)
        token = self._tokens.pop((tracked.id, request_id), None)
        if token is not None and self._tenancy.shared_commands is not None:
            self._tenancy.shared_commands.done(token)
        if request_id not in tracked.commands:
            return False  # timed out: the platform has had its error
        timer = tracked.commands.pop(request_id)
        if timer is not None and timer.active():
            timer.cancel()
        return True

    def _result(
        self,
        result: ScriptResult,
        tracked: Tracked,
        request_id: str,
        emit: Callable[[Message], object] | None,
    ) -> None:
        if self._settle(tracked, request_id):
            (emit or self._host.emit)(
                Result.relayed(
                    session=tracked.id,
                    id=request_id,
                    rapdus=result.responses,
                    executed=result.executed,
                    elapsed_ms=max(0, round(result.duration * 1000)),
                    complete=result.complete,
                )
            )

    def _command_failed(
        self,
        failure: Failure,
        tracked: Tracked,
        request_id: str,
        emit: Callable[[Message], object] | None,
    ) -> None:
        if self._settle(tracked, request_id):
            code, text = self._host.describe(failure)
            self._reply(code, text, request_id, tracked.id, emit)

    def _command_timed_out(
        self,
        tracked: Tracked,
        request_id: str,
        wait: float,
        emit: Callable[[Message], object] | None,
    ) -> None:
        tracked.commands.pop(request_id, None)
        text = f"no answer within {wait:g} s (timeouts.command); the session is closed"
        self._reply(ErrorCode.COMMAND_TIMEOUT, text, request_id, tracked.id, emit)
        self._close_for_timeout(tracked, ErrorCode.COMMAND_TIMEOUT, text)
