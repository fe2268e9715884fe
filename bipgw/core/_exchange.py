# -*- test-case-name: tests.unit.core.test_engine_relay -*-
"""The card's side of a connected session: scripts in held POSTs (GP Amendment B).

Once the card has connected, it and the gateway take turns: the card's
POST is held until the platform has a command; the command goes out as the
C{200} answering it, and the card's next POST carries the answer and is
held in turn, until the gateway answers one with C{204}.  L{CardExchange}
keeps that protocol's state (the held POST, the script with the card, the
scripts queued behind it, the deadline of the one running) and nothing
else; it reaches its session through the few calls of L{ExchangeHost}, so
the session's states are decided in one place (L{bipgw.core._session}).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from bipgw.codec.admin_http import AdminRequest, AdminResponse
from bipgw.core._policy import SessionPolicy
from bipgw.core._scripts import BAD, END, Command, command_response, read_answer, same_target
from bipgw.core._types import (
    ApduTrace,
    FailureReason,
    ScriptResult,
    SessionError,
    SessionId,
)

__all__ = ["CardExchange", "ExchangeHost", "ScriptExchange"]


class ScriptExchange(Protocol):
    """What a session machine asks of whichever exchange runs its scripts: this
    one (held POSTs) or L{bipgw.core._sms_session.SmsExchange} (SMS-PP)."""

    scripts: int
    close_sent: bool

    @property
    def running(self) -> Command | None:
        """The script with the card, if one is."""

    def queued(self) -> int | None:
        """How many scripts wait behind the running one; C{None} when none runs."""

    def submit(self, command: Command) -> None:
        """Send C{command} now, or after those before it."""

    def close(self) -> None:
        """End once the scripts sent or queued are done."""

    def abort(self, error: SessionError, answer: AdminResponse) -> bool:
        """The session ended: fail what is running and queued; whether a POST was held."""


class ExchangeHost(Protocol):
    """What L{CardExchange} needs from the session it runs for."""

    def uri(self, script: int) -> str:
        """The X-Admin-Next-URI under which the card answers script C{script}."""

    def script_sent(self, detail: str) -> None:
        """A script went to the card (the session is relaying)."""

    def script_answered(self, detail: str) -> None:
        """The card answered the script it had (the session is connected again)."""

    def note(self, detail: str) -> None:
        """Add C{detail} to the session's history."""

    def idle(self) -> None:
        """Nothing is left to send: the platform has the idle time for its next command."""

    def end(self, reason: FailureReason, detail: str) -> None:
        """Fail the session with C{reason}; what it owes fires at the next L{flush}."""

    def owe(self, action: Callable[[], object]) -> None:
        """Fire C{action} at the next L{flush}, once the state is consistent."""

    def trace(self, traces: Sequence[ApduTrace]) -> None:
        """Record the trace of one script."""

    def flush(self) -> None:
        """Fire what is owed."""


class CardExchange:
    """The held-POST exchange of scripts with one connected card.

    @param host: the session, seen through L{ExchangeHost}.
    @param session_id: named in every trace and result.
    @param clock: times each script the card runs.
    @param policy: the command timeout and the queue limit.
    @ivar scripts: the number of scripts sent to the card.
    """

    def __init__(
        self,
        host: ExchangeHost,
        session_id: SessionId,
        clock: IReactorTime,
        policy: SessionPolicy,
    ) -> None:
        self._host = host
        self._session_id = session_id
        # Typed Any: without the mypy-zope plugin, interface methods cannot be called.
        self._clock: Any = cast(Any, clock)
        self._policy = policy
        self._held: Deferred[AdminResponse] | None = None
        self._inflight: Command | None = None
        self._queue: collections.deque[Command] = collections.deque()
        self._timer: Any = None  # IDelayedCall
        self._closing = False
        self.close_sent = False
        self.scripts = 0

    # -- queries ---------------------------------------------------------

    @property
    def running(self) -> Command | None:
        """The script with the card, if one is."""
        return self._inflight

    def queued(self) -> int | None:
        """How many scripts wait behind the running one; C{None} when none runs."""
        return None if self._inflight is None else len(self._queue)

    # -- inputs ----------------------------------------------------------

    def hold(self) -> Deferred[AdminResponse]:
        """The card's first POST: held until there is a script, or the end."""
        held: Deferred[AdminResponse] = Deferred()
        self._held = held
        return held

    def submit(self, command: Command) -> None:
        """Send C{command} to the card now, or after those before it."""
        if self._inflight is None:
            self._send(command)
        else:
            self._queue.append(command)

    def close(self) -> None:
        """Answer with C{204} once the scripts sent or queued are done."""
        self._closing = True
        if self._inflight is None:
            self._send_close()

    def answer(self, request: AdminRequest) -> Deferred[AdminResponse]:
        """The card POSTed the answer to the running script: settle it, hold the POST."""
        command = self._inflight
        assert command is not None
        self._cancel_timer()
        expected = self._host.uri(command.number)
        if not same_target(request.target, expected):
            # Still running: the session's end fails and traces it.
            self._host.end(
                FailureReason.PROTOCOL_ERROR,
                f"the answer to script {command.number} went to {request.target!r},"
                f" not {expected!r}",
            )
            return succeed(BAD)
        self._inflight = None
        now = self._clock.seconds()
        outcome = read_answer(self._session_id, command, request, now)
        responses = outcome.responses if isinstance(outcome, ScriptResult) else ()
        code = "ok" if isinstance(outcome, ScriptResult) else outcome.reason.value
        self._trace(command, responses, now, code)
        held: Deferred[AdminResponse] = Deferred()
        self._held = held
        if isinstance(outcome, ScriptResult):
            self._host.owe(lambda: command.result.callback(outcome))
            done = f"script {command.number} answered: {len(responses)} R-APDU(s)"
        else:
            self._host.owe(lambda: command.result.errback(outcome))
            done = f"script {command.number} failed: {outcome}"
        self._host.script_answered(done)
        if self._queue:
            self._send(self._queue.popleft())
        elif self._closing:
            self._send_close()
        else:
            self._host.idle()
        return held

    def abort(self, error: SessionError, answer: AdminResponse) -> bool:
        """The session ended: fail the running and queued scripts with
        C{error}, answer a held POST with C{answer}.

        @return: whether a POST was held (else the line must be dropped).
        """
        self._cancel_timer()
        command, self._inflight = self._inflight, None
        if command is not None:
            self._trace(command, (), None, error.reason.value)
            self._host.owe(lambda: command.result.errback(error))
        while self._queue:
            self._host.owe(functools.partial(self._queue.popleft().result.errback, error))
        held, self._held = self._held, None
        if held is None:
            return False
        self._host.owe(lambda: held.callback(answer))
        return True

    # -- internals -------------------------------------------------------

    def _send(self, command: Command) -> None:
        self.scripts = command.number = self.scripts + 1
        command.sent_at = self._clock.seconds()
        held, self._held = self._held, None
        assert held is not None
        self._inflight = command
        self._host.script_sent(f"script {command.number}: {len(command.commands)} C-APDU(s)")
        wait = self._policy.command_timeout
        self._timer = self._clock.callLater(wait, self._timed_out, wait)
        response = command_response(command, self._host.uri(command.number))
        self._host.owe(lambda: held.callback(response))

    def _send_close(self) -> None:
        held, self._held = self._held, None
        assert held is not None
        self.close_sent = True
        self._host.note("answered the card's POST with 204; waiting for the connection to close")
        self._host.owe(lambda: held.callback(END))

    def _timed_out(self, waited: float) -> None:
        self._timer = None
        command = self._inflight
        assert command is not None
        self._host.end(
            FailureReason.COMMAND_TIMEOUT,
            f"script {command.number} unanswered after {waited:g} s",
        )
        self._host.flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _trace(
        self, command: Command, responses: Sequence[bytes], answered: float | None, outcome: str
    ) -> None:
        self._host.trace(
            [
                ApduTrace(
                    session_id=self._session_id,
                    script=command.number,
                    index=i,
                    capdu=capdu,
                    rapdu=responses[i] if i < len(responses) else None,
                    sent_at=command.sent_at,
                    answered_at=answered if i < len(responses) else None,
                    outcome=outcome if i < len(responses) or outcome != "ok" else "not-executed",
                )
                for i, capdu in enumerate(command.commands)
            ]
        )
