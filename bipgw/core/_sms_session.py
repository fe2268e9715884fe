# -*- test-case-name: tests.unit.core.test_sms_session -*-
"""A session's scripts over SMS-PP: secured command packets out, PoRs back.

When a service uses the SMS transport (C{transport = "sms"}), or falls back
to it because the card never opened its BIP channel (C{fallback = "sms"}),
the session's scripts do not go in held POSTs: each one is a TS 102 226
script (compact or expanded, L{bipgw.codec.ram.RemoteScript}) secured as a
TS 102 225 command packet with the card's OTA keys and its next counter,
submitted as one or more SMS (L{IScriptSender}, the push sender again), and
its answer is the card's Proof of Receipt, which the SMS door reports as an
SMS from the card's MSISDN.  L{SmsExchange} keeps that exchange's state
for one session, in place of the held-POST L{bipgw.core._exchange.CardExchange};
the platform's handle and the engine's API are the same either way.

For each script, in order (one at a time per card, the next ones queued):

  1. encode the C-APDUs in the service's format; a command the compact
     form cannot carry fails that command (C{invalid-command}), nothing sent;
  2. have the sender secure and submit it; a refusal fails that command
     (C{push-failed}), the session goes on;
  3. wait up to C{por_timeout} (from the submission on) for a PoR from the
     card's MSISDN that the sender verifies with the card's keys and that
     echoes the script's counter.  PoRs that do not verify, or that echo
     another counter, are noted and ignored: anyone can send an SMS from
     a number, and only a PoR under the card's keys ends a script;
  4. the PoR's status decides: C{00} gives the L{ScriptResult} (the
     R-APDUs from its response data); C{08}/C{0B}/C{0C} (more time, the
     answer follows) keep waiting; C{02}/C{03}/C{04} fail the command with
     C{counter-rejected}, any other error with C{por-error}, both naming
     the status; response data that does not decode fails it with
     C{bad-response} (or C{script-rejected} for the card's bad-format
     answer).  The session goes on after each of these;
  5. no PoR in time fails the session with C{por-timeout}: whether the
     card ran the script is unknown, as after a BIP command timeout.

Closing sends nothing (an SMS-PP session has no connection to end).
Pure and clock-driven, like the rest of the core.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, cast

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.admin_http import AdminResponse
from bipgw.codec.ota import PorStatus
from bipgw.codec.ram import RamError, RemoteFormat, RemoteResult, RemoteScript
from bipgw.core._interfaces import IScriptSender, PorReport
from bipgw.core._ratelog import RateLimitedLog
from bipgw.core._rules import ServiceRules
from bipgw.core._scripts import Command
from bipgw.core._sms_router import SmsPorRouter
from bipgw.core._types import (
    ApduTrace,
    CardRecord,
    CommandError,
    FailureReason,
    PushError,
    PushOrder,
    PushReceipt,
    ScriptResult,
    SessionError,
    SessionId,
)

__all__ = ["SmsExchange", "SmsHost", "SmsTransport"]

_WAIT_MORE: Final = frozenset(
    {PorStatus.MORE_TIME, PorStatus.RESPONSE_BY_SMS_SUBMIT, PorStatus.RESPONSE_BY_USSD}
)
_COUNTER: Final = frozenset(
    {PorStatus.COUNTER_LOW, PorStatus.COUNTER_HIGH, PorStatus.COUNTER_BLOCKED}
)


def _status_name(status: int) -> str:
    try:
        name = PorStatus(status).name
    except ValueError:
        name = "unknown status"
    return f"PoR status 0x{status:02X} ({name})"


class SmsHost(Protocol):
    """What L{SmsExchange} needs from the session it runs for."""

    def script_sent(self, detail: str) -> None:
        """A script went to the card (the session is relaying)."""

    def script_answered(self, detail: str) -> None:
        """The card answered the script it had (the session is connected again)."""

    def note(self, detail: str) -> None:
        """Add C{detail} to the session's history."""

    def idle(self) -> None:
        """Nothing is left to send: the platform has the idle time for its next command."""

    def end(self, reason: FailureReason, detail: str) -> None:
        """Fail the session with C{reason}; what it owes fires at the next C{flush}."""

    def sms_closed(self, detail: str) -> None:
        """Every script is done and the platform closed: the session is closed."""

    def owe(self, action: Callable[[], object]) -> None:
        """Fire C{action} at the next C{flush}, once the state is consistent."""

    def trace(self, traces: Sequence[ApduTrace]) -> None:
        """Record the trace of one script."""

    def flush(self) -> None:
        """Fire what is owed."""


@attrs.frozen
class SmsTransport:
    """What a session needs to run its scripts over SMS.

    @ivar sender: secures, submits and verifies (L{IScriptSender}).
    @ivar router: where the session registers for its card's PoRs.
    @ivar rules: the service's rules (transport, fallback, format, PoR timeout).
    @ivar ratelog: where lines an SMS sender can cause go (forged PoRs), rate-limited.
    """

    sender: IScriptSender
    router: SmsPorRouter
    rules: ServiceRules
    ratelog: RateLimitedLog


class SmsExchange:
    """One session's scripts over SMS-PP (module docstring).

    @param host: the session, seen through L{SmsHost}.
    @param session_id: named in every order, trace and result.
    @param service: the service (its push profile secures the packets).
    @param card: the card, with the MSISDN the scripts go to.
    @param clock: times the PoR waits.
    @param transport: the sender, the PoR router and the service's rules.
    @ivar scripts: the number of scripts sent so far.
    """

    _log = Logger()

    def __init__(
        self,
        host: SmsHost,
        session_id: SessionId,
        service: str,
        card: CardRecord,
        clock: IReactorTime,
        transport: SmsTransport,
    ) -> None:
        if card.msisdn is None:
            raise ValueError(f"card {card.iccid} has no MSISDN to send SMS to")
        self._host = host
        self._session_id = session_id
        self._service = service
        self._card = card
        self._msisdn: str = card.msisdn
        # Typed Any: without the mypy-zope plugin, interface methods cannot be called.
        self._clock: Any = cast(Any, clock)
        self._sender = transport.sender
        self._router = transport.router
        self._ratelog = transport.ratelog
        self.format: RemoteFormat = transport.rules.sms_format
        self._por_timeout = transport.rules.por_timeout
        self._inflight: Command | None = None
        self._message_ids: tuple[str, ...] = ()
        self._counter: int | None = None
        self._ignored: list[str] = []
        self._queue: collections.deque[Command] = collections.deque()
        self._timer: Any = None  # IDelayedCall
        self._closing = False
        self._ended = False
        self.close_sent = False
        self.scripts = 0
        self._router.register(self._msisdn, self)

    # -- queries ---------------------------------------------------------

    @property
    def running(self) -> Command | None:
        """The script out with the card, if one is."""
        return self._inflight

    def queued(self) -> int | None:
        """How many scripts wait behind the running one; C{None} when none runs."""
        return None if self._inflight is None else len(self._queue)

    # -- inputs from the session -------------------------------------------

    def submit(self, command: Command) -> None:
        """Send C{command} now, or after those before it."""
        if self._inflight is None:
            self._send(command)
        else:
            self._queue.append(command)

    def close(self) -> None:
        """Close once the scripts sent or queued are done (nothing goes to the card)."""
        self._closing = True
        if self._inflight is None:
            self._close_now()

    def abort(self, error: SessionError, answer: AdminResponse) -> bool:
        """The session ended: fail the running and queued scripts with C{error}.

        @return: C{False}: there is never a POST to answer.
        """
        self._ended = True
        self._cancel_timer()
        self._router.unregister(self._msisdn, self)
        self._router.track(self._message_ids, None)
        command, self._inflight = self._inflight, None
        if command is not None:
            self._trace(command, None, None, error.reason.value)
            self._host.owe(lambda: command.result.errback(error))
        while self._queue:
            self._host.owe(functools.partial(self._queue.popleft().result.errback, error))
        return False

    # -- input from the card (through the router) ---------------------------

    def por(self, user_data: bytes) -> Deferred[None]:
        """An SMS from the card's MSISDN while a script is out: verify it, settle the script.

        @return: fires once handled; never fails.
        """
        command = self._inflight
        if command is None:
            return succeed(None)
        checked: Deferred[PorReport] = maybeDeferred(
            self._sender.verify_por, self._card.iccid, user_data
        )
        done = checked.addCallbacks(
            self._verified, self._unverified, callbackArgs=(command,), errbackArgs=(command,)
        )
        return done.addErrback(self._broken)

    def _broken(self, failure: Failure) -> None:
        self._log.failure("session {id}: handling a PoR failed", failure, id=self._session_id)

    def receipt(
        self, message_id: str, delivered: bool, detail: str, user_data: bytes | None
    ) -> None:
        """A delivery receipt for a part of the script out (through the router)."""
        command = self._inflight
        if command is None:
            return
        if user_data is not None:
            self.por(user_data)
        if not delivered and self._current(command):
            self._settle(
                command,
                CommandError(
                    FailureReason.PUSH_FAILED,
                    f"script {command.number} was not delivered (message {message_id}"
                    f"{': ' + detail if detail else ''})",
                    self._session_id,
                    script=command.number,
                ),
            )

    # -- internals -------------------------------------------------------

    def _current(self, command: Command) -> bool:
        return not self._ended and self._inflight is command

    def _send(self, command: Command) -> None:
        # Expanded: the template the session built (AA, or AE when asked for).
        data = command.script
        if self.format is RemoteFormat.COMPACT:
            try:
                data = RemoteScript(command.commands, self.format).encode()
            except RamError as e:
                error = SessionError(
                    FailureReason.INVALID_COMMAND,
                    f"cannot be sent in the compact SMS format: {e}",
                    self._session_id,
                )
                self._host.owe(lambda: command.result.errback(error))
                self._next()
                return
        self.scripts = command.number = self.scripts + 1
        command.sent_at = self._clock.seconds()
        self._inflight = command
        self._counter = None
        self._ignored = []
        self._host.script_sent(
            f"script {command.number}: {len(command.commands)} C-APDU(s)"
            f" over SMS ({self.format.value} format, {len(data)} bytes)"
        )
        wait = self._por_timeout
        self._timer = self._clock.callLater(wait, self._timed_out, command, wait)
        card = self._card
        order = PushOrder(self._session_id, card.iccid, self._msisdn, command.number, self._service)
        try:
            sent: Deferred[PushReceipt] = self._sender.send_script(order, data)
        except Exception:
            sent = Deferred()
            sent.errback(Failure())
        sent.addCallbacks(
            self._accepted, self._refused, callbackArgs=(command,), errbackArgs=(command,)
        )

    def _accepted(self, receipt: PushReceipt, command: Command) -> None:
        if not self._current(command):
            return
        self._counter = receipt.counter
        self._message_ids = tuple(receipt.message_ids)
        self._router.track(self._message_ids, self)
        parts = len(receipt.message_ids)
        self._host.note(
            f"script {command.number} accepted by the SMSC as {parts} SMS"
            f" (counter {receipt.counter}); waiting for its PoR"
        )
        self._host.flush()

    def _refused(self, failure: Failure, command: Command) -> None:
        if not self._current(command):
            return
        error = failure.value
        if not isinstance(error, PushError):
            self._log.failure("script sender failed for session {id}", failure, id=self._session_id)
        self._settle(
            command,
            CommandError(
                FailureReason.PUSH_FAILED,
                f"script {command.number} could not be sent: {error}",
                self._session_id,
                script=command.number,
            ),
        )

    def _unverified(self, failure: Failure, command: Command) -> None:
        why = failure.getErrorMessage()
        self._ratelog.info(
            "sms-por-unverified",
            "session {id}: an SMS from the card's MSISDN did not verify as its PoR: {why}",
            id=self._session_id,
            why=why,
        )
        if self._current(command):
            self._ignored.append(why)
            self._host.note(f"ignored an SMS that is not a valid PoR for script {command.number}")
            self._host.flush()

    def _verified(self, report: PorReport, command: Command) -> None:
        if not self._current(command):
            return
        host, number = self._host, command.number
        if self._counter is not None and report.counter not in (0, self._counter):
            self._ignored.append(f"a PoR for counter {report.counter}")
            host.note(
                f"ignored a PoR echoing counter {report.counter}; script {number}"
                f" went with {self._counter}"
            )
            host.flush()
            return
        status, named = report.status, _status_name(report.status)
        if status in _WAIT_MORE:
            host.note(f"script {number}: {named}; still waiting")
            host.flush()
            return
        if status != PorStatus.POR_OK:
            reason = FailureReason.POR_ERROR
            if status in _COUNTER:
                reason = FailureReason.COUNTER_REJECTED
            counter = "" if self._counter is None else f" (counter {self._counter})"
            self._settle(
                command,
                CommandError(
                    reason,
                    f"script {number}{counter}: the card answered {named}; nothing ran",
                    self._session_id,
                    script=number,
                ),
            )
            return
        self._settle(command, self._result(command, report.data))

    def _result(self, command: Command, data: bytes) -> ScriptResult | CommandError:
        number = command.number
        try:
            result = RemoteResult.decode(data, self.format, sent=len(command.commands))
        except RamError as e:
            return CommandError(
                FailureReason.BAD_RESPONSE,
                f"script {number}: the PoR's response data: {e}",
                self._session_id,
                script=number,
            )
        if result.rejected is not None:
            return CommandError(
                FailureReason.SCRIPT_REJECTED,
                f"script {number}: bad format, code {result.rejected:02X}",
                self._session_id,
                script=number,
            )
        return ScriptResult(
            session_id=self._session_id,
            script=number,
            commands=command.commands,
            responses=result.responses,
            executed=result.executed,
            sent_at=command.sent_at,
            answered_at=self._clock.seconds(),
        )

    def _settle(self, command: Command, outcome: ScriptResult | CommandError) -> None:
        self._cancel_timer()
        self._inflight = None
        self._router.track(self._message_ids, None)
        self._message_ids = ()
        host = self._host
        if isinstance(outcome, ScriptResult):
            self._trace(command, outcome, outcome.answered_at, "ok")
            host.owe(lambda: command.result.callback(outcome))
            done = (
                f"script {command.number} answered in its PoR: {outcome.executed} ran,"
                f" {len(outcome.responses)} R-APDU(s)"
            )
        else:
            self._trace(command, None, None, outcome.reason.value)
            host.owe(lambda: command.result.errback(outcome))
            done = f"script {command.number} failed: {outcome.detail}"
        host.script_answered(done)
        self._next()
        host.flush()

    def _next(self) -> None:
        """Nothing is out: send the next queued script, or close, or wait for one."""
        if self._queue:
            self._send(self._queue.popleft())
        elif self._closing:
            self._close_now()
        else:
            self._host.idle()

    def _close_now(self) -> None:
        self.close_sent = True
        self._router.unregister(self._msisdn, self)
        self._host.sms_closed("closed: every script sent over SMS is done")

    def _timed_out(self, command: Command, waited: float) -> None:
        self._timer = None
        if not self._current(command):
            return
        detail = f"no PoR for script {command.number} within {waited:g} s"
        if self._counter is None:
            detail += " (the SMSC had not accepted it yet)"
        if self._ignored:
            detail += f"; ignored {len(self._ignored)} SMS: {self._ignored[-1]}"
        self._host.end(FailureReason.POR_TIMEOUT, detail)
        self._host.flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _trace(
        self,
        command: Command,
        result: ScriptResult | None,
        answered: float | None,
        outcome: str,
    ) -> None:
        # Expanded: one R-APDU per executed command.  Compact: only the
        # last executed command's R-APDU came back; the earlier ones ran
        # (the card stops at the first failure) but their answers are not known.
        answers: dict[int, bytes] = {}
        ran = 0
        if result is not None:
            ran = result.executed
            if self.format is RemoteFormat.EXPANDED:
                answers = dict(enumerate(result.responses))
            elif result.responses and ran:
                answers = {ran - 1: result.responses[-1]}
        traces = []
        for i, capdu in enumerate(command.commands):
            rapdu = answers.get(i)
            if result is None:
                what = outcome
            elif i >= ran:
                what = "not-executed"
            else:
                what = "ok"
            traces.append(
                ApduTrace(
                    session_id=self._session_id,
                    script=command.number,
                    index=i,
                    capdu=capdu,
                    rapdu=rapdu,
                    sent_at=command.sent_at,
                    answered_at=answered if i < ran else None,
                    outcome=what,
                )
            )
        self._host.trace(traces)
