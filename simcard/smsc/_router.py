# -*- test-case-name: tests.unit.simcard.test_smsc_router -*-
"""The message centre: routing, store-and-forward, receipts and MO traffic.

Sessions (one per ESME connection, L{simcard.smsc._core}) hand it accepted
C{submit_sm}s and take C{deliver_sm}s from it; the fleet sits behind an
L{ISmsRouter}.  Everything here is pure logic on an injected clock:

  - MT: C{submit_sm} -> SMS-DELIVER TPDU -> fault plan -> C{router.deliver}
    after the response has gone out; C{FAILED} is retried
    (store-and-forward), C{UNKNOWN} is final; the final state makes a
    receipt when C{registered_delivery} asks for one.
  - MO: L{MessageCentre.submit_mo} turns a card's SMS-SUBMIT into a
    C{deliver_sm} for the ESME the destination address routes to.
  - Towards ESMEs: C{deliver_sm}s wait in bounded outboxes (per system_id,
    or "any receiver") until a bind has room in its window; refused or
    unanswered ones are retried a few times, and ones in flight on a
    connection that drops go back to the head of the queue.
"""

from __future__ import annotations

import hmac
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.smpp import CommandStatus, MessageState, SmppError, SubmitSm
from bipgw.codec.sms import SmsError
from simcard.smsc._config import SmscClock, SmscConfig
from simcard.smsc._convert import (
    MAP_DELIVERY_FAILURE,
    MAP_UNKNOWN_SUBSCRIBER,
    SubmitRefusedError,
    deliver_tpdu_for,
    mo_deliver_sm,
    msisdn_digits,
    receipt_deliver_sm,
    report_deliver_sm,
    scts_at,
)
from simcard.smsc._faults import FaultDecision, FaultInjector
from simcard.smsc._types import (
    DeliveryOutcome,
    DeliveryStatus,
    ISmsRouter,
    OutboundMessage,
    ReceivingSession,
    SmscCounters,
    SubmitResult,
)

_S = CommandStatus


@attrs.define(eq=False)
class _Mt:
    """One accepted mobile-terminated message, until it is final."""

    message_id: str
    system_id: str
    submit: SubmitSm
    destination: str
    tpdu: bytes
    submitted_at: float
    decision: FaultDecision
    attempts: int = 0


class MessageCentre:
    """The SMSC's shared state: accounts, binds, MT store, outboxes.

    @param router: where MT messages go (the fleet).
    @param accounts: ESME passwords by system_id.
    @param clock: the time source for every timer and timestamp.
    """

    _log = Logger()

    def __init__(
        self,
        router: ISmsRouter,
        accounts: Mapping[str, str],
        clock: SmscClock,
        config: SmscConfig,
    ) -> None:
        self._router = router
        self._accounts = dict(accounts)
        self.clock = clock
        self.config = config
        self.counters = SmscCounters()
        self._faults = FaultInjector(config.faults)
        self._next_id = 1
        self._queued: Counter[str] = Counter()
        self._undispatched: dict[str, _Mt] = {}
        self._timers: set[DelayedCall] = set()
        self._sessions: list[ReceivingSession] = []
        self._receivers: list[ReceivingSession] = []
        self._outboxes: dict[str | None, deque[OutboundMessage]] = {}
        self._retrying: set[OutboundMessage] = set()
        self._turn = 0
        self._pumping = False
        self._stopped = False

    # -- accounts and binds -------------------------------------------------

    @property
    def connections(self) -> int:
        """How many ESME connections are open (bound or not)."""
        return len(self._sessions)

    def authenticate(self, system_id: str, password: str) -> int:
        """C{ESME_ROK}, C{ESME_RINVSYSID} (no such account) or C{ESME_RINVPASWD}."""
        expected = self._accounts.get(system_id)
        if expected is None:
            return _S.ESME_RINVSYSID
        if not hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8")):
            return _S.ESME_RINVPASWD
        return _S.ESME_ROK

    def session_opened(self, session: ReceivingSession) -> None:
        """Track a new connection, so that L{stop} can close it."""
        self._sessions.append(session)

    def attach(self, session: ReceivingSession) -> None:
        """A receiver or transceiver bind is ready for C{deliver_sm}."""
        if session not in self._receivers:
            self._receivers.append(session)
        self._pump()

    def session_closed(self, session: ReceivingSession, unfinished: list[OutboundMessage]) -> None:
        """A connection ended; C{deliver_sm}s it had in flight go back in front."""
        if session in self._sessions:
            self._sessions.remove(session)
        if session in self._receivers:
            self._receivers.remove(session)
        for job in reversed(unfinished):
            if self._stopped:
                job.settle(DeliveryOutcome.failed("the SMSC stopped"))
            else:
                self._outboxes.setdefault(job.system_id, deque()).appendleft(job)
        self._pump()

    def session_ready(self) -> None:
        """A bind's window has room again."""
        self._pump()

    # -- mobile-terminated: submit_sm to the fleet --------------------------

    def accept(self, system_id: str, submit: SubmitSm) -> SubmitResult:
        """Decide about a C{submit_sm}: store it, or say which status refuses it.

        Accepted messages wait for L{dispatch}, which the session calls once
        C{submit_sm_resp} is written, so no receipt can overtake the response.
        """
        if self._stopped:
            return self._refuse(SubmitResult(_S.ESME_RSYSERR))
        if self._queued[system_id] >= self.config.max_queue:
            self._log.warn(
                "queue full for {system_id}: {count} messages pending",
                system_id=system_id,
                count=self._queued[system_id],
            )
            return self._refuse(SubmitResult(_S.ESME_RMSGQFUL))
        now = self.clock.seconds()
        try:
            destination, tpdu = deliver_tpdu_for(submit, scts_at(now))
        except SubmitRefusedError as e:
            self._log.warn(
                "refused submit_sm from {system_id}: field {field}: {reason}",
                system_id=system_id,
                field=e.field,
                reason=e.reason,
            )
            return self._refuse(SubmitResult(e.status))
        decision = self._faults.decide(destination)
        if decision.reject_status is not None:
            self._log.info(
                "fault: rejecting submit_sm for {destination} with status {status:#x}",
                destination=destination,
                status=decision.reject_status,
            )
            return self._refuse(SubmitResult(decision.reject_status))
        message_id = f"{self._next_id:08x}"
        self._next_id += 1
        self._queued[system_id] += 1
        self.counters.accepted += 1
        self._undispatched[message_id] = _Mt(
            message_id, system_id, submit, destination, tpdu, now, decision
        )
        return SubmitResult(_S.ESME_ROK, message_id)

    def _refuse(self, result: SubmitResult) -> SubmitResult:
        self.counters.refused += 1
        return result

    def dispatch(self, message_id: str) -> None:
        """Start delivering an accepted message (after its fault delay)."""
        message = self._undispatched.pop(message_id, None)
        if message is None or self._stopped:
            return
        if message.decision.lost:
            self._log.info(
                "fault: message {message_id} for {destination} lost",
                message_id=message_id,
                destination=message.destination,
            )
            self.counters.lost += 1
            self._queued[message.system_id] -= 1
            return
        self._later(message.decision.delay, self._attempt, message)

    def _attempt(self, message: _Mt) -> None:
        message.attempts += 1
        self._hand_over(message).addCallback(self._outcome, message)
        for _ in range(message.decision.copies - 1):
            self._log.info(
                "fault: duplicating {message_id} to {destination}",
                message_id=message.message_id,
                destination=message.destination,
            )
            self._hand_over(message)

    def _hand_over(self, message: _Mt) -> Deferred[DeliveryOutcome]:
        d: Deferred[Any] = maybeDeferred(self._router.deliver, message.destination, message.tpdu)

        def router_failed(failure: Failure) -> DeliveryOutcome:
            self._log.failure(
                "router failed on message {message_id} for {destination}",
                failure,
                message_id=message.message_id,
                destination=message.destination,
            )
            return DeliveryOutcome.failed(f"router error: {failure.getErrorMessage()}")

        return d.addErrback(router_failed)

    def _outcome(self, outcome: object, message: _Mt) -> None:
        if self._stopped:
            return
        if not isinstance(outcome, DeliveryOutcome):
            outcome = DeliveryOutcome.failed(f"router returned {type(outcome).__name__}")
        if outcome.status is DeliveryStatus.DELIVERED:
            self._final(message, MessageState.DELIVERED, 0, "")
            if outcome.report_user_data:
                self._enqueue(
                    OutboundMessage(
                        report_deliver_sm(message.submit, outcome.report_user_data),
                        message.system_id,
                        "report",
                    )
                )
        elif outcome.status is DeliveryStatus.UNKNOWN:
            self._final(message, MessageState.UNDELIVERABLE, MAP_UNKNOWN_SUBSCRIBER, outcome.reason)
        elif message.attempts < self.config.store_max_attempts:
            self._log.info(
                "message {message_id} to {destination} failed ({reason}); retry {attempt}"
                " in {delay}s",
                message_id=message.message_id,
                destination=message.destination,
                reason=outcome.reason,
                attempt=message.attempts + 1,
                delay=self.config.store_retry_delay,
            )
            self._later(self.config.store_retry_delay, self._attempt, message)
        else:
            self._final(message, MessageState.UNDELIVERABLE, MAP_DELIVERY_FAILURE, outcome.reason)

    def _final(self, message: _Mt, state: MessageState, error: int, reason: str) -> None:
        self._queued[message.system_id] -= 1
        if state == MessageState.DELIVERED:
            self.counters.delivered += 1
        else:
            self.counters.undeliverable += 1
            self._log.info(
                "message {message_id} to {destination} undeliverable after {attempts}"
                " attempt(s): {reason}",
                message_id=message.message_id,
                destination=message.destination,
                attempts=message.attempts,
                reason=reason,
            )
        mode = message.submit.registered_delivery & 0x03
        delivered = state == MessageState.DELIVERED
        if not (mode == 1 or (mode == 2 and not delivered) or (mode == 3 and delivered)):
            return
        try:
            pdu = receipt_deliver_sm(
                message.submit,
                message.message_id,
                state,
                error,
                message.submitted_at,
                self.clock.seconds(),
            )
        except SmppError as e:
            self._log.error(
                "cannot build the receipt for {message_id}: {error}",
                message_id=message.message_id,
                error=str(e),
            )
            return
        self.counters.receipts_queued += 1
        self._enqueue(OutboundMessage(pdu, message.system_id, "receipt"))

    # -- mobile-originated: the fleet to an ESME ----------------------------

    def submit_mo(
        self, from_msisdn: str, to_address: str, tpdu: bytes
    ) -> Deferred[DeliveryOutcome]:
        """Send a card's SMS-SUBMIT (a PoR) to the ESME that C{to_address} routes to.

        Routing: C{config.mo_routes[to_address]} names a system_id; other
        addresses go to any bind that can receive.  The message waits
        (bounded) until such a bind exists.

        @return: fires with C{DELIVERED} once the ESME acknowledged it,
            C{FAILED} when the TPDU is not an SMS-SUBMIT, the queue is full
            or the ESME kept refusing it, C{UNKNOWN} when the route names no
            known account.  Never errbacks (unless cancelled).
        """
        if self._stopped:
            return succeed(DeliveryOutcome.failed("the SMSC stopped"))
        try:
            pdu = mo_deliver_sm(from_msisdn, to_address, tpdu)
        except SmsError as e:
            self._log.warn(
                "MO from {msisdn} is not an SMS-SUBMIT: {error}", msisdn=from_msisdn, error=str(e)
            )
            self.counters.mo_failed += 1
            return succeed(DeliveryOutcome.failed(f"not an SMS-SUBMIT: {e}"))
        target = self.config.mo_routes.get(msisdn_digits(to_address))
        if target is not None and target not in self._accounts:
            self.counters.mo_failed += 1
            return succeed(DeliveryOutcome.unknown(f"route to unknown system_id {target!r}"))
        job = OutboundMessage(pdu, target, "mo")

        def cancel(_: Deferred[DeliveryOutcome]) -> None:
            job.cancelled = True

        done: Deferred[DeliveryOutcome] = Deferred(cancel)
        job.done = done
        self._enqueue(job)
        return done

    # -- deliver_sm towards ESMEs -------------------------------------------

    def delivered(self, job: OutboundMessage) -> None:
        """The ESME acknowledged C{job}."""
        if job.kind == "mo":
            self.counters.mo_delivered += 1
        job.settle(DeliveryOutcome.delivered())

    def deliver_failed(self, job: OutboundMessage, reason: str, *, final: bool = False) -> None:
        """The ESME refused C{job} or did not answer: retry, or give up.

        @param final: give up at once (the PDU cannot be sent at all).
        """
        job.attempts += 1
        if final or job.attempts >= self.config.deliver_max_attempts or self._stopped:
            self._log.warn(
                "dropping {kind} deliver_sm for {system_id} after {attempts} attempt(s): {reason}",
                kind=job.kind,
                system_id=job.system_id or "any ESME",
                attempts=job.attempts,
                reason=reason,
            )
            self._drop(job, reason)
            return
        self._retrying.add(job)
        self._later(self.config.deliver_retry_delay, self._requeue, job)

    def _requeue(self, job: OutboundMessage) -> None:
        self._retrying.discard(job)
        self._outboxes.setdefault(job.system_id, deque()).appendleft(job)
        self._pump()

    def _drop(self, job: OutboundMessage, reason: str) -> None:
        self.counters.dropped += 1
        if job.kind == "mo":
            self.counters.mo_failed += 1
        job.settle(DeliveryOutcome.failed(reason))

    def _enqueue(self, job: OutboundMessage) -> None:
        queue = self._outboxes.setdefault(job.system_id, deque())
        if len(queue) >= self.config.outbox_limit:
            self._log.warn(
                "outbox for {system_id} full ({limit}); dropping a {kind}",
                system_id=job.system_id or "any ESME",
                limit=self.config.outbox_limit,
                kind=job.kind,
            )
            self._drop(job, "outbox full")
            return
        queue.append(job)
        self._pump()

    def pending(self, system_id: str | None) -> int:
        """How many C{deliver_sm} wait for a bind of C{system_id} (C{None}: any)."""
        return len(self._outboxes.get(system_id, ()))

    def _take(self, system_id: str) -> OutboundMessage | None:
        for key in (system_id, None):
            queue = self._outboxes.get(key)
            while queue:
                job = queue.popleft()
                if not job.cancelled:
                    return job
        return None

    def _pump(self) -> None:
        """Move waiting C{deliver_sm}s into binds with room, round robin."""
        if self._pumping or self._stopped:
            return
        self._pumping = True
        try:
            progress = True
            while progress:
                progress = False
                count = len(self._receivers)
                if not count:
                    break
                self._turn = (self._turn + 1) % count
                for session in self._receivers[self._turn :] + self._receivers[: self._turn]:
                    if session.free_slots() <= 0:
                        continue
                    job = self._take(session.system_id)
                    if job is not None:
                        session.send_deliver(job)
                        progress = True
        finally:
            self._pumping = False

    # -- lifecycle ----------------------------------------------------------

    def _later(self, delay: float, f: Callable[..., object], *args: object) -> DelayedCall:
        call: DelayedCall

        def run() -> None:
            self._timers.discard(call)
            f(*args)

        call = self.clock.callLater(delay, run)
        self._timers.add(call)
        return call

    def stop(self) -> None:
        """Cancel every timer, fail waiting MO messages and close every connection."""
        if self._stopped:
            return
        self._stopped = True
        for call in list(self._timers):
            if call.active():
                call.cancel()
        self._timers.clear()
        self._undispatched.clear()
        waiting = [job for queue in self._outboxes.values() for job in queue]
        for job in [*waiting, *self._retrying]:
            job.settle(DeliveryOutcome.failed("the SMSC stopped"))
        self._outboxes.clear()
        self._retrying.clear()
        for session in list(self._sessions):
            session.close()
