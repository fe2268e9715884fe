# -*- test-case-name: tests.unit.core.test_engine_relay,tests.unit.core.test_engine_push -*-
"""The life of one admin session, as an explicit state machine.

States and the allowed transitions are the table L{TRANSITIONS} (drawn in
C{docs/state-machines/session.dot}; a test keeps the two equal).  Every
input is a method; each one updates the state first and fires the
Deferreds it owes (the platform's, the card's held POST) only at the end,
so a callback that calls straight back into the session always finds it
consistent.  Two timers at most are ever pending: the deadline of the
current state (here) and the deadline of the command the card is running
(its L{CardExchange}).

The machine holds the two parts of a session that have rules of their
own, and each reaches it only through a narrow interface: the push
attempts (L{PushAttempts}, before the card connects) and the held-POST
exchange of scripts with the card (L{CardExchange}, once it has).  What
remains here is the session's life: its states, events, deadlines and end.

The machine is written out by hand rather than with Automat: every input
must be accepted in every state (a card can drop, a PoR can arrive late, a
platform can close at any time), and a table plus one guarded C{move} says
that more plainly than a transition per (state, input) pair.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.admin_http import AdminRequest, AdminResponse
from bipgw.core._exchange import CardExchange, ScriptExchange
from bipgw.core._interfaces import IPushSender
from bipgw.core._policy import SessionPolicy
from bipgw.core._push import PushAttempts
from bipgw.core._rules import Transport
from bipgw.core._scripts import BAD, END, build_command
from bipgw.core._sms_session import SmsExchange, SmsTransport
from bipgw.core._types import (
    ApduTrace,
    CardRecord,
    CardTarget,
    FailureReason,
    ScriptResult,
    SessionError,
    SessionEvent,
    SessionId,
    SessionState,
    SessionStatus,
)

_S = SessionState
_LIVE: Final = tuple(s for s in SessionState if not s.terminal)

TRANSITIONS: Final[frozenset[tuple[SessionState, SessionState]]] = frozenset(
    {
        (_S.REQUESTED, _S.PUSHING),
        (_S.REQUESTED, _S.AWAITING_CARD),
        (_S.REQUESTED, _S.CONNECTED),
        (_S.PUSHING, _S.PUSHING),
        (_S.PUSHING, _S.AWAITING_CARD),
        (_S.AWAITING_CARD, _S.PUSHING),
        (_S.PUSHING, _S.CONNECTED),
        (_S.AWAITING_CARD, _S.CONNECTED),
        (_S.CONNECTED, _S.RELAYING),
        (_S.RELAYING, _S.CONNECTED),
        (_S.CONNECTED, _S.CLOSING),
        (_S.RELAYING, _S.CLOSING),
        (_S.CLOSING, _S.CLOSED),
        *((state, _S.FAILED) for state in _LIVE),
    }
)
"""Every (from, to) pair a session may take; nothing else ever happens."""


class SessionHost(Protocol):
    """What a machine needs from its engine: recording, and the end of its life."""

    def _on_event(self, event: SessionEvent) -> None: ...
    def _on_snapshot(self, status: SessionStatus) -> None: ...
    def _on_trace(self, traces: Sequence[ApduTrace]) -> None: ...
    def _on_ended(self, machine: SessionMachine) -> None: ...


class SessionMachine:
    """One admin session: push, wait for the card, relay scripts, close.

    Built and driven by L{bipgw.core.SessionEngine}; the platform sees it
    through L{bipgw.core.Session} and the SCP81 server through
    L{bipgw.core.CardLink}.

    @ivar ready: fires with the status once the card's first POST is held;
        fails with L{SessionError} if the session ends before that.
    @ivar card: the resolved card, once known.
    """

    _log = Logger()

    def __init__(
        self,
        session_id: SessionId,
        target: CardTarget,
        service: str,
        *,
        clock: IReactorTime,
        policy: SessionPolicy,
        push_sender: IPushSender,
        host: SessionHost,
        uri_prefix: str,
        sms: SmsTransport | None = None,
        seq: int = 0,
    ) -> None:
        self.id = session_id
        self.target = target
        self.service = service
        # Typed Any: without the mypy-zope plugin, interface methods cannot be called.
        self._clock: Any = cast(Any, clock)
        self._policy = policy
        self._host = host
        self._uri_prefix = uri_prefix
        self.state = SessionState.REQUESTED
        self._opened_at = self._updated_at = self._clock.seconds()
        self._ended_at: float | None = None
        self._reason: FailureReason | None = None
        self._detail = ""
        self._seq = seq  # its events are numbered from seq + 1
        self.card: CardRecord | None = None
        self._push = PushAttempts(self, session_id, service, policy, push_sender)
        self._exchange = CardExchange(self, session_id, clock, policy)
        # Whichever exchange runs the scripts: the card's held POSTs, or
        # SMS-PP once the session uses SMS (bipgw.core._sms_session).
        self._active: ScriptExchange = self._exchange
        self._sms = sms
        self._timer: Any = None  # IDelayedCall
        self._link: Any = None  # CardLink; Any avoids an import cycle
        self._link_up = False
        self._agent_id: str | None = None
        self._closing = False
        self._close_waiters: list[Deferred[SessionStatus]] = []
        self._outbox: list[Callable[[], object]] = []
        self.ready: Deferred[SessionStatus] = Deferred()
        # Given by the engine when it opens the session (L{record_with}):
        # whether its opening row is durable.  Kept as an outcome, each
        # L{recorded} reader gets its own Deferred: a session nobody asks
        # (a card-initiated one, a test's) leaves no unhandled failure.
        self._recorded: Failure | None = None
        self._recorded_settled = True
        self._recorded_waiters: list[Deferred[None]] = []
        self._ready_settled = False
        self._event(None, SessionState.REQUESTED, None, f"opened for {target}, service {service!r}")

    def record_with(self, recorded: Deferred[None]) -> None:
        """Take C{recorded}, the opening row's write (its failure already
        logged by whoever made it), as the outcome L{recorded} reports."""
        self._recorded_settled = False
        recorded.addBoth(self._recorded_outcome)

    def _recorded_outcome(self, result: object) -> None:
        self._recorded = result if isinstance(result, Failure) else None
        self._recorded_settled = True
        waiters, self._recorded_waiters = self._recorded_waiters, []
        for waiter in waiters:
            if self._recorded is None:
                waiter.callback(None)
            else:
                waiter.errback(self._recorded)
        return None  # consumed here: each reader has its own Deferred

    @property
    def recorded(self) -> Deferred[None]:
        """A new Deferred: fires once the opening row is durable, fails if it
        could not be written."""
        if not self._recorded_settled:
            waiter: Deferred[None] = Deferred()
            self._recorded_waiters.append(waiter)
            return waiter
        return succeed(None) if self._recorded is None else fail(self._recorded)

    # -- queries -------------------------------------------------------

    def status(self) -> SessionStatus:
        """A snapshot of the session now."""
        card = self.card
        return SessionStatus(
            session_id=self.id,
            service=self.service,
            target=self.target,
            state=self.state,
            opened_at=self._opened_at,
            updated_at=self._updated_at,
            iccid=None if card is None else card.iccid,
            msisdn=None if card is None else card.msisdn,
            agent_id=self._agent_id,
            push_attempts=self._push.attempt,
            scripts=self._active.scripts,
            ended_at=self._ended_at,
            reason=self._reason,
            detail=self._detail,
        )

    @property
    def awaiting_card(self) -> bool:
        """Whether a connection from the card would be taken by this session."""
        return self.state in (_S.PUSHING, _S.AWAITING_CARD) and self._link is None

    def uri(self, script: int) -> str:
        """The X-Admin-Next-URI under which the card answers script C{script}."""
        return f"{self._uri_prefix}/s/{self.id}/{script}"

    # -- inputs from the engine ---------------------------------------

    def set_deadline(self, delay: float, reason: FailureReason, detail: str) -> None:
        """Fail with C{reason} unless the state changes within C{delay} seconds."""
        self.set_timer(delay, lambda: self.fail(reason, detail))

    def note(self, detail: str) -> None:
        """Add an event to the history without changing state."""
        if not self.state.terminal:
            self._event(self.state, self.state, None, detail, transition=False)

    def start(self, card: CardRecord) -> None:
        """The card is known and free: send the first push (or, for the SMS
        transport, be ready to send scripts over SMS at once)."""
        self.card = card
        sms = self._sms
        if sms is not None and sms.rules.transport is Transport.SMS:
            self._use_sms(card, "the service's transport is SMS: scripts go as SMS-PP packets")
        else:
            self._push.start(card)
        self.flush()

    def arrived_on_its_own(self, card: CardRecord) -> None:
        """The card opened its admin session with none waiting: no push, it is here."""
        self.card = card
        self.move(_S.AWAITING_CARD, "the card opened an admin session on its own (no push)")
        self.flush()

    def no_connection(self, detail: str) -> None:
        """The last push went unanswered (C{PushHost}): fall back to SMS, or fail."""
        sms, card = self._sms, self.card
        if sms is not None and sms.rules.sms_fallback and card is not None:
            self.note(f"{detail}; falling back to SMS (fallback = sms)")
            self._use_sms(card, "the card never opened its BIP channel: reached over SMS-PP")
        else:
            self.end(FailureReason.CARD_TIMEOUT, detail)

    def _use_sms(self, card: CardRecord, detail: str) -> None:
        """Run this session's scripts over SMS from now on; the session is ready."""
        assert self._sms is not None
        if card.msisdn is None:
            self._finish(_S.FAILED, FailureReason.PUSH_FAILED, "the card has no MSISDN for SMS")
            return
        self._active = SmsExchange(self, self.id, self.service, card, self._clock, self._sms)
        self.move(_S.CONNECTED, detail)
        self.idle()
        self._ready_settled = True
        self._outbox.append(functools.partial(self.ready.callback, self.status()))

    def sms_closed(self, detail: str) -> None:
        """The SMS exchange is done after a close (C{SmsHost}): the session is closed."""
        self._finish(_S.CLOSED, None, detail)

    def fail(self, reason: FailureReason, detail: str) -> None:
        """End the session with C{reason}, whatever it was doing."""
        if not self.state.terminal:
            self._finish(_S.FAILED, reason, detail)
        self.flush()

    # -- inputs from the SMS side (handed to the push attempts) ----------

    def push_delivered(self, attempt: int, delivered: bool, detail: str) -> None:
        """A delivery receipt for push C{attempt} arrived (L{PushAttempts.delivered})."""
        self._push.delivered(attempt, delivered, detail)

    def por(self, status: int, detail: str) -> None:
        """The card's proof of receipt arrived (L{PushAttempts.por})."""
        self._push.por(status, detail)

    # -- inputs from the card (through CardLink) ----------------------

    def attach(self, link: object, agent_id: str) -> bool:
        """Take the card's connection; C{False} if this session cannot."""
        if not self.awaiting_card:
            return False
        self._link, self._link_up, self._agent_id = link, True, agent_id
        wait = self._policy.idle_timeout
        self.set_deadline(
            wait, FailureReason.PROTOCOL_ERROR, f"the card connected but sent no POST in {wait:g} s"
        )
        return True

    def card_post(self, link: object, request: AdminRequest) -> Deferred[AdminResponse]:
        """The card POSTed: hold it, or take it as the answer to the script in flight."""
        try:
            if link is not self._link or self.state.terminal or self._exchange.close_sent:
                return succeed(END)
            if self.state in (_S.PUSHING, _S.AWAITING_CARD):
                return self._first_post(request)
            if self._exchange.running is not None:
                return self._exchange.answer(request)
            self._finish(
                _S.FAILED,
                FailureReason.PROTOCOL_ERROR,
                f"a POST to {request.target!r} arrived while the previous one was unanswered",
                answer=BAD,
            )
            return succeed(BAD)
        finally:
            self.flush()

    def card_lost(self, link: object, reason: str) -> None:
        """The card's connection ended."""
        if link is not self._link:
            return
        self._link_up = False
        if self.state is _S.CLOSING and self._exchange.close_sent:
            self._finish(_S.CLOSED, None, "the connection closed after 204")
        elif not self.state.terminal:
            running = self._exchange.running
            extra = "" if running is None else f" while script {running.number} was with the card"
            self._finish(_S.FAILED, FailureReason.CARD_DROPPED, f"{reason}{extra}")
        self.flush()

    # -- inputs from the platform -------------------------------------

    def execute(
        self, commands: Sequence[bytes], definite: bool = False, target: bytes | None = None
    ) -> Deferred[ScriptResult]:
        """Send C{commands} to the card as one script (for application
        C{target} when given); fire with its answer."""
        try:
            if self.state.terminal or self._closing:
                return self._refuse(FailureReason.SESSION_ENDED, f"state {self.state.value}")
            if self.state not in (_S.CONNECTED, _S.RELAYING):
                return self._refuse(FailureReason.NOT_CONNECTED, f"state {self.state.value}")
            queued = self._active.queued()
            if queued is not None and queued >= self._policy.max_queued_commands:
                return self._refuse(FailureReason.QUEUE_FULL, f"{queued} commands already queued")
            try:
                command = build_command(commands, definite, target)
            except SessionError as e:
                return self._refuse(e.reason, e.detail)
            self._active.submit(command)
            return command.result
        finally:
            self.flush()

    def close(self) -> Deferred[SessionStatus]:
        """End the session: after outstanding commands, 204 and close the connection."""
        waiter: Deferred[SessionStatus] = Deferred()
        if self.state.terminal:
            self._settle(waiter)
            return waiter
        self._close_waiters.append(waiter)
        if not self._closing:
            self._closing = True
            if self.state in (_S.REQUESTED, _S.PUSHING, _S.AWAITING_CARD):
                self._finish(_S.FAILED, FailureReason.CANCELLED, "closed by the platform")
            else:
                self.move(_S.CLOSING, "close requested by the platform")
                self.set_timer(self._policy.close_timeout, self._close_timed_out)
                self._active.close()
        self.flush()
        return waiter

    # -- the card's turns (CardExchange's host) ---------------------------

    def _first_post(self, request: AdminRequest) -> Deferred[AdminResponse]:
        held = self._exchange.hold()
        self.move(
            _S.CONNECTED,
            f"card connected (agent id {self._agent_id!r}); first POST to {request.target!r}",
        )
        self.idle()
        self._ready_settled = True
        self._outbox.append(functools.partial(self.ready.callback, self.status()))
        return held

    def idle(self) -> None:
        """Give the platform the idle time for its next command."""
        wait = self._policy.idle_timeout
        self.set_deadline(wait, FailureReason.IDLE_TIMEOUT, f"no command within {wait:g} s")

    def script_sent(self, detail: str) -> None:
        """A script went to the card: CONNECTED -> RELAYING (noted while closing)."""
        if self.state is _S.CONNECTED:
            self._cancel_timer()
            self.move(_S.RELAYING, detail)
        else:
            self.note(f"{detail}, sent while closing")

    def script_answered(self, detail: str) -> None:
        """The card answered: RELAYING -> CONNECTED (noted while closing)."""
        if self.state is _S.RELAYING:
            self.move(_S.CONNECTED, detail)
        else:
            self.note(detail)

    def owe(self, action: Callable[[], object]) -> None:
        """Fire C{action} at the next L{flush}."""
        self._outbox.append(action)

    def trace(self, traces: Sequence[ApduTrace]) -> None:
        """Record the trace of one script."""
        self._host._on_trace(traces)

    def _close_timed_out(self) -> None:
        self._timer = None
        wait = self._policy.close_timeout
        if self._active.close_sent:
            self._finish(_S.CLOSED, None, f"connection still open {wait:g} s after 204; dropped")
        else:
            self._finish(
                _S.FAILED, FailureReason.CLOSE_TIMEOUT, f"not closed within {wait:g} s of close"
            )
        self.flush()

    # -- machinery -----------------------------------------------------

    def _refuse(self, reason: FailureReason, detail: str) -> Deferred[Any]:
        return fail(SessionError(reason, detail, self.id))

    def _settle(self, waiter: Deferred[SessionStatus]) -> None:
        """Fire a close() waiter: success if the session ended by closing."""
        status = self.status()
        if self.state is _S.CLOSED or self._reason is FailureReason.CANCELLED:
            waiter.callback(status)
        else:
            assert self._reason is not None
            waiter.errback(SessionError(self._reason, self._detail, self.id))

    def end(self, reason: FailureReason, detail: str) -> None:
        """Fail with C{reason}; what that owes fires at the next L{flush} (C{PushHost})."""
        self._finish(_S.FAILED, reason, detail)

    def move(self, to: SessionState, detail: str) -> None:
        """Take the transition to C{to}; anything not in L{TRANSITIONS} is a bug."""
        if (self.state, to) not in TRANSITIONS:
            raise RuntimeError(f"session {self.id}: no transition {self.state.name} -> {to.name}")
        previous, self.state = self.state, to
        self._event(previous, to, None, detail)

    def _event(
        self,
        previous: SessionState | None,
        state: SessionState,
        reason: FailureReason | None,
        detail: str,
        *,
        transition: bool = True,
    ) -> None:
        self._seq += 1
        self._updated_at = now = self._clock.seconds()
        self._detail = detail
        event = SessionEvent(self.id, self._seq, now, previous, state, reason, detail, transition)
        # One log line at the end of a session, none per state change: at a
        # campaign's rate a line per transition cost more CPU than the rest of
        # the session (issue 14), and Twisted formats and filters an event even
        # at debug level.  Each transition is in the store (session events).
        if state.terminal:
            self._log.debug(
                "session {session_id} ended {state}{why}: {detail}",
                session_id=self.id,
                state=state.value,
                why="" if reason is None else f" ({reason.value})",
                detail=detail,
            )
        self._host._on_event(event)

    def _finish(
        self,
        state: SessionState,
        reason: FailureReason | None,
        detail: str,
        *,
        answer: AdminResponse = END,
    ) -> None:
        """Enter a terminal state and settle everything the session owes."""
        self._cancel_timer()
        previous, self.state = self.state, state
        self._reason = reason
        self._ended_at = self._clock.seconds()
        self._event(previous, state, reason, detail)
        error = SessionError(reason or FailureReason.SESSION_ENDED, detail, self.id)
        link = self._link
        if not self._active.abort(error, answer) and link is not None and self._link_up:
            self._outbox.append(lambda: link.disconnect(detail))
        if not self._ready_settled:
            self._ready_settled = True
            self._outbox.append(functools.partial(self.ready.errback, error))
        waiters, self._close_waiters = self._close_waiters, []
        self._outbox.extend(functools.partial(self._settle, waiter) for waiter in waiters)
        self._host._on_snapshot(self.status())
        self._host._on_ended(self)

    def set_timer(self, delay: float, action: Callable[[], None]) -> None:
        """Run C{action} (then L{flush}) in C{delay} s: the deadline of the state."""
        self._cancel_timer()
        self._timer = self._clock.callLater(delay, self._fire_timer, action)

    def _fire_timer(self, action: Callable[[], None]) -> None:
        self._timer = None
        action()
        self.flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def flush(self) -> None:
        """Fire what the last input owes, now that the state is consistent."""
        while self._outbox:
            action = self._outbox.pop(0)
            try:
                action()
            except Exception:
                self._log.failure("session {session_id}: a callback failed", session_id=self.id)
