# -*- test-case-name: tests.unit.core.test_engine_push,tests.unit.core.test_engine_relay -*-
"""The session engine: every admin session, and the doors into them.

Three parties meet here, each through its own door:

  - the platform (L{SessionEngine.open}, L{Session.execute},
    L{Session.close}, L{SessionEngine.status}, L{SessionEngine.subscribe});
  - the SMS side (L{IPushSender} outwards, through the L{PushTracker} that
    remembers every push; L{ISmsEvents} inwards, routed by its L{SmsSide}:
    L{SessionEngine.delivery_receipt} and L{SessionEngine.sms_received});
  - the SCP81 server (L{SessionEngine.card_arrived}, then L{CardLink}).

The engine owns the registry of sessions, the one-session-per-card rule and
the queue of sessions waiting for a busy card, and applies each service's
rules (L{ServiceRules}: the secure channel, the script form, the sessions
open at once, the AIDs a command may SELECT) whichever door opened the
session; each session's own life is its L{SessionMachine}.  It does no
I/O and reads time only from the clock it is given, so every path is
tested with L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.core._card_queues import CardQueues
from bipgw.core._handles import CardLink, Session
from bipgw.core._interfaces import (
    ICardDirectory,
    ICardLocks,
    IPushSender,
    IScriptSender,
    ISessionRecorder,
    LocalCardLocks,
)
from bipgw.core._offers import OfferDesk
from bipgw.core._policy import SessionPolicy
from bipgw.core._publishing import SessionPublisher, Subscriber
from bipgw.core._rules import ServiceRules
from bipgw.core._scp03 import IScp03KeySource
from bipgw.core._secured import SecuredSession
from bipgw.core._session import SessionMachine
from bipgw.core._sms_side import SmsSide
from bipgw.core._types import (
    ApduTrace,
    CardRecord,
    CardTarget,
    FailureReason,
    ScriptResult,
    SessionError,
    SessionEvent,
    SessionId,
    SessionStatus,
)

__all__ = ["OFFERED", "SessionEngine"]

OFFERED: Final = "(offered)"
"""The service of a card-initiated session until a platform takes it (no
service can have this name)."""


class SessionEngine:
    """Runs every admin session of the gateway.

    @param clock: the time source for every timeout.
    @param push_sender: sends the push SMS and verifies PoRs (L{bipgw.push.PushSender}).
    @param directory: resolves ICCID/MSISDN to a card (the store).
    @param recorder: keeps history and traces; a memory one when C{None}.
    @param policy: timeouts, retries and the busy-card rule.
    @param uri_prefix: the path the SCP81 server serves (Next-URIs are
        C{<uri_prefix>/s/<session>/<n>}).
    @param services: the rules of each service, by name; a session for a
        service not named fails with C{SERVICE_NOT_ALLOWED}.  C{None}: every
        service name is taken, with the default (permissive) rules.
    @param scp03_keys: where the cards' SCP03 keys come from, for the
        sessions of services with C{secure_apdus}.
    @param sms_sender: secures and submits the scripts of sessions that
        run over SMS (services with C{transport = "sms"} or an SMS
        fallback: L{bipgw.core._sms_session}); usually the push sender.
    @param new_id: makes session ids (random by default).
    @param keep_finished: how many ended sessions stay queryable with
        L{status} (the recorder keeps them all).
    @param card_locks: the one-session-per-card rule beyond this engine
        (the other nodes of a cluster); C{None}: this engine alone.
    @param claim_retry: seconds between two tries of a card another node
        holds, while a session waits for it.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        push_sender: IPushSender,
        directory: ICardDirectory,
        recorder: ISessionRecorder | None = None,
        policy: SessionPolicy | None = None,
        *,
        uri_prefix: str = "/admin",
        services: Mapping[str, ServiceRules] | None = None,
        scp03_keys: IScp03KeySource | None = None,
        sms_sender: IScriptSender | None = None,
        new_id: Callable[[], SessionId] = SessionId.new,
        keep_finished: int = 1000,
        card_locks: ICardLocks | None = None,
        claim_retry: float = 1.0,
    ) -> None:
        from bipgw.core._interfaces import MemorySessionRecorder

        if not uri_prefix.startswith("/") or (uri_prefix.endswith("/") and uri_prefix != "/"):
            raise ValueError(f"uri_prefix {uri_prefix!r} must start, and not end, with '/'")
        secured = sorted(n for n, r in (services or {}).items() if r.secure_apdus)
        if secured and scp03_keys is None:
            raise ValueError(
                f"service(s) {', '.join(secured)} secure APDUs with SCP03:"
                " the engine needs an SCP03 key source"
            )
        by_sms = sorted(n for n, r in (services or {}).items() if r.uses_sms)
        if by_sms and sms_sender is None:
            raise ValueError(
                f"service(s) {', '.join(by_sms)} run scripts over SMS:"
                " the engine needs an SMS script sender"
            )
        self._clock = clock
        self._sms = SmsSide(push_sender, sms_sender, clock, self._find, self._owner)
        self._services = None if services is None else dict(services)
        self._scp03_keys = scp03_keys
        self._directory = directory
        self._publisher = SessionPublisher(recorder or MemorySessionRecorder())
        self.policy = policy or SessionPolicy()
        self._uri_prefix = uri_prefix.rstrip("/")
        self._new_id = new_id
        self._keep_finished = keep_finished
        self._live: dict[SessionId, SessionMachine] = {}
        self._handles: dict[SessionId, Session | SecuredSession] = {}
        self._open_per_service: collections.Counter[str] = collections.Counter()
        self._finished: collections.OrderedDict[SessionId, SessionStatus] = (
            collections.OrderedDict()
        )
        taking = [n for n, r in (services or {}).items() if r.card_initiated]
        self.offers = OfferDesk(clock, self.policy.offer_timeout, taking, self._not_taken)
        self._cards = CardQueues(card_locks or LocalCardLocks(), clock, self, claim_retry)

    @property
    def recorder(self) -> ISessionRecorder:
        """Keeps every session's history and traces."""
        return self._publisher.recorder

    @recorder.setter
    def recorder(self, recorder: ISessionRecorder) -> None:
        self._publisher.recorder = recorder

    # -- the platform's door -------------------------------------------

    def open(
        self,
        target: CardTarget,
        service: str,
        *,
        session_id: SessionId | None = None,
        seq: int = 0,
    ) -> Session | SecuredSession:
        """Start a session with the card C{target} names, for C{service}.

        Returns at once; watch L{Session.ready}.  The card is looked up,
        reserved (or the session queued or refused when it is busy), then
        pushed until it connects.  This is the one call every door makes.

        @return: the session; for a service with C{secure_apdus} a
            L{SecuredSession}, whose commands go through the card's SCP03
            channel.  Its C{ready} fails with C{SERVICE_NOT_ALLOWED} for a
            service the engine has no rules for, and with C{LIMIT_REACHED}
            when the service has C{max_concurrent_sessions} open already.
        @param session_id: the id of a session another node of a cluster
            opened and lost (L{bipgw.core.reopen}); a new id by default.
        @param seq: the last event number that session's history had: its
            events here go on from the next.
        """
        if not isinstance(target, CardTarget):
            raise TypeError(f"target must be a CardTarget, not {type(target).__name__}")
        if not isinstance(service, str) or not service:
            raise ValueError("service must be a non-empty name")
        session_id = self._new_id() if session_id is None else session_id
        if session_id in self._live or session_id in self._finished:
            raise RuntimeError(f"session id {session_id} was issued twice")
        rules = self._rules(service)
        machine = SessionMachine(
            session_id,
            target,
            service,
            clock=self._clock,
            policy=self.policy,
            push_sender=self._sms.pushes,
            host=self,
            uri_prefix=self._uri_prefix,
            sms=self._sms.transport(rules),
            seq=seq,
        )
        handle = self._handle(machine, rules)
        refused = self._refusal(service, rules)
        if refused is None:
            self._live[session_id] = machine
            self._handles[session_id] = handle
            self._open_per_service[service] += 1
        machine.record_with(self._record_opened(machine))
        if refused is not None:
            machine.fail(*refused)
            return handle
        wait = self.policy.resolve_timeout
        machine.set_deadline(
            wait, FailureReason.DIRECTORY_ERROR, f"no answer from the card directory in {wait:g} s"
        )
        found = maybeDeferred(self._directory.resolve, target)
        found.addCallbacks(
            self._resolved, self._not_resolved, callbackArgs=(machine,), errbackArgs=(machine,)
        )
        return handle

    def execute(
        self,
        session_id: SessionId | str,
        commands: Sequence[bytes],
        *,
        definite: bool | None = None,
        target: bytes | None = None,
    ) -> Deferred[ScriptResult]:
        """Run C{commands} (C-APDUs) on the card as one expanded script.

        Fires with the L{ScriptResult} (R-APDUs, executed count, timing)
        once the card answers; commands sent while another runs are queued
        in order.  Fails with L{bipgw.core.CommandError} when the card
        reports a script status other than C{ok} or answers unreadably (the
        session goes on), or with L{SessionError} when the session fails.

        The session's own handle runs them (L{Session.execute}), so the
        service's rules apply and a secured service's commands go through
        its secure channel.

        @param definite: send C{AA} (definite length) or C{AE}; C{None}
            takes the service's C{definite_scripts}.
        @param target: the AID of the application to run the script in
            (GP Amd B C{X-Admin-Targeted-Application}); see L{Session.execute}.
        """
        machine = self._find(session_id)
        if machine is not None:
            handle = self._handles.get(machine.id)
            if handle is None:
                detail = "a card-initiated session on offer: take it first"
                return fail(SessionError(FailureReason.NOT_CONNECTED, detail, machine.id))
            return handle.execute(commands, definite=definite, target=target)
        status = self.status(session_id)
        if status is None:
            return fail(SessionError(FailureReason.UNKNOWN_SESSION, str(session_id)))
        detail = f"state {status.state.value}"
        return fail(SessionError(FailureReason.SESSION_ENDED, detail, status.session_id))

    def close(self, session_id: SessionId | str) -> Deferred[SessionStatus]:
        """End the session after the commands already sent or queued.

        Fires with the final status once the card got its C{204} and the
        connection closed (or when the session had not reached the card
        yet: it is cancelled); fails with L{SessionError} if it failed.
        """
        machine = self._find(session_id)
        if machine is not None:
            return machine.close()
        status = self.status(session_id)
        if status is None:
            return fail(SessionError(FailureReason.UNKNOWN_SESSION, str(session_id)))
        if status.reason is None or status.reason is FailureReason.CANCELLED:
            return succeed(status)
        return fail(SessionError(status.reason, status.detail, status.session_id))

    def abandon(self, session_id: SessionId | str, reason: FailureReason, detail: str) -> None:
        """End the session at once with C{reason} (not the platform's close:
        a door refused the open after it started, say); nothing if it ended."""
        machine = self._find(session_id)
        if machine is not None:
            machine.fail(reason, detail)

    def status(self, session_id: SessionId | str) -> SessionStatus | None:
        """The session's current status, or C{None} if it is not known."""
        try:
            key = SessionId.of(session_id)
        except ValueError:
            return None
        machine = self._live.get(key)
        return machine.status() if machine is not None else self._finished.get(key)

    def sessions(self) -> list[SessionStatus]:
        """Every session not yet ended, oldest first."""
        return [machine.status() for machine in self._live.values()]

    def hold_openings(self, hold: Callable[[SessionId], Deferred[None]]) -> Callable[[], None]:
        """Make every session opened from now on wait for C{hold(session_id)}
        too before it counts as recorded (L{Session.recorded}: the doors
        answer C{accepted} / C{201} after it), and fail as not recorded if
        that fails.  A cluster's node holds them until their registry entry
        is written, so that a session it was given is never unknown to the
        other nodes if it dies (C{bipgw.cluster.SessionRegistry.written}).

        C{hold} is called once the session's opening event has gone to the
        subscribers.  @return: a function that removes the hold.
        """
        return self._publisher.hold_openings(hold)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call C{subscriber} with every L{SessionEvent} from now on.

        This is how the platform channel learns that a card dropped or a
        session timed out.  A subscriber that raises is logged and kept.

        @return: a function that unsubscribes.
        """
        return self._publisher.subscribe(subscriber)

    def stop(self, detail: str = "the gateway is stopping") -> None:
        """Fail every session not yet ended with C{SHUTDOWN}.

        Sessions waiting for a busy card go first, so that ending a card's
        current session does not start (and push for) the next one.
        """
        self._sms.flush()
        owners = set(map(id, self._cards.owners()))
        for machine in sorted(self._live.values(), key=lambda m: id(m) in owners):
            machine.fail(FailureReason.SHUTDOWN, detail)

    # -- the SMS side's door (ISmsEvents) -----------------------------------

    def delivery_receipt(
        self, message_id: str, delivered: bool, detail: str = "", user_data: bytes | None = None
    ) -> None:
        """A final delivery receipt for an SMS part the SMSC accepted as C{message_id}.

        The push it belongs to counts as delivered once every part is, and
        as failed at its first part that is not (sent again while attempts
        remain); a PoR carried in the receipt is verified as in
        L{sms_received}.  The parts of a script sent over SMS are its session's.
        """
        self._sms.delivery_receipt(message_id, delivered, detail, user_data)

    def sms_received(self, msisdn: str, user_data: bytes) -> Deferred[None]:
        """An SMS from a card: its PoR for the latest push sent to C{msisdn}.

        The push sender verifies it with the card's keys; a PoR that does
        not verify is logged and ignored.  An error status fails the
        session waiting for that card with C{POR_ERROR}, naming the status.
        A session running a script over SMS for that MSISDN takes it first
        (its PoR carries the script's answer).
        """
        return self._sms.sms_received(msisdn, user_data)

    # -- the SCP81 server's door -----------------------------------------

    def card_arrived(
        self, iccid: str, agent_id: str, *, disconnect: Callable[[str], object] | None = None
    ) -> CardLink | None:
        """A card opened its admin channel; find the session waiting for it.

        @param iccid: the card, from its authenticated PSK identity.
        @param agent_id: its X-Admin-From (or the ICCID when absent).
        @param disconnect: called with a reason when the session ends while
            no POST is held (a command timeout, say), so the server drops
            the connection.
        @return: the link to hand the card's POSTs to, or C{None} when no
            session is waiting for this card (the server answers C{204}).
        """
        machine = self._owner(iccid)
        if machine is None and self.offers.open:
            return self._arrived_on_its_own(iccid, agent_id, disconnect)
        if machine is None or not machine.awaiting_card:
            # The door logs this (rate-limited: any card may connect at will).
            return None
        link = CardLink(machine, disconnect)
        machine.attach(link, agent_id)
        return link

    def take(self, session_id: SessionId | str, service: str) -> Session | SecuredSession:
        """Take the card-initiated session C{session_id} for C{service}.

        The card is connected already: the handle's C{ready} has fired.

        @raise SessionError: no such offer is pending (L{OfferDesk.claim}),
            C{service} does not take card-initiated sessions, or it has
            C{max_concurrent_sessions} open already.
        """
        machine = self._find(session_id)
        if machine is None or machine.id in self._handles:
            raise SessionError(
                FailureReason.UNKNOWN_SESSION, f"no card-initiated session {session_id} on offer"
            )
        rules = self._rules(service)
        refused = self._refusal(service, rules)
        if refused is not None:
            raise SessionError(*refused, machine.id)
        self.offers.claim(machine.id, service)
        machine.service = service
        self._count(service, 1)
        handle = self._handles[machine.id] = self._handle(machine, rules)
        machine.note(f"taken by a platform for service {service!r}")
        return handle

    def card_refused(self, iccid: str, why: str) -> None:
        """A card connected but its first request was refused (malformed HTTP, say).

        The session waiting for it ends at once with C{protocol-error} and
        C{why} (which says the card connected and was refused), rather than
        waiting for the card until C{not-connected}: the card will not
        retry what it was refused for.
        """
        machine = self._owner(iccid)
        if machine is not None and machine.awaiting_card:
            machine.fail(FailureReason.PROTOCOL_ERROR, why)

    # -- SessionHost: called by the machines ------------------------------

    def _on_event(self, event: SessionEvent) -> None:
        self._publisher.publish(event)

    def _on_snapshot(self, status: SessionStatus) -> None:
        self._record(self.recorder.record_session, status)

    def _on_trace(self, traces: Sequence[ApduTrace]) -> None:
        self._record(self.recorder.record_apdus, tuple(traces))

    def _on_ended(self, machine: SessionMachine) -> None:
        if self._live.pop(machine.id, None) is not None:
            # A refused session was never counted, nor live; one on offer
            # (card-initiated, not taken) is live but not counted.
            if self._handles.pop(machine.id, None) is not None:
                self._count(machine.service, -1)
            self.offers.withdraw(machine.id)
        self._finished[machine.id] = machine.status()
        while len(self._finished) > self._keep_finished:
            self._finished.popitem(last=False)
        self._cards.leave(machine)

    # -- internals --------------------------------------------------------

    def _count(self, service: str, change: int) -> None:
        self._open_per_service[service] += change
        if not self._open_per_service[service]:
            del self._open_per_service[service]

    def _handle(
        self, machine: SessionMachine, rules: ServiceRules | None
    ) -> Session | SecuredSession:
        if rules is not None and rules.secure_apdus:
            assert self._scp03_keys is not None  # checked in __init__
            return SecuredSession(machine, rules, self._scp03_keys)
        return Session(machine, rules)

    def _arrived_on_its_own(
        self, iccid: str, agent_id: str, disconnect: Callable[[str], object] | None
    ) -> CardLink | None:
        """A card connected with no session waiting, and some service takes such
        cards: hold it as a session on offer (no service yet, nothing
        counted, no handle until a platform takes it) and offer it."""
        try:
            card = CardRecord(iccid, None, b"")
        except ValueError:
            return None
        machine = SessionMachine(
            self._new_id(),
            CardTarget.by_iccid(card.iccid),
            OFFERED,
            clock=self._clock,
            policy=self.policy,
            push_sender=self._sms.pushes,
            host=self,
            uri_prefix=self._uri_prefix,
        )
        self._live[machine.id] = machine
        self._cards.hold(card.iccid, machine)
        machine.record_with(self._record_opened(machine))
        machine.arrived_on_its_own(card)
        link = CardLink(machine, disconnect)
        machine.attach(link, agent_id)

        def offer(record: object) -> None:
            if machine.state.terminal:
                return
            msisdn = record.msisdn if isinstance(record, CardRecord) else None
            if isinstance(record, CardRecord):
                machine.card = record
            self.offers.post(machine.id, card.iccid, msisdn, agent_id)

        def connected(status: SessionStatus) -> SessionStatus:
            # Offered once its first POST is held; the MSISDN, when the
            # directory knows it, helps the platform decide.
            found = maybeDeferred(self._directory.resolve, CardTarget.by_iccid(card.iccid))
            found.addErrback(lambda _: None).addCallback(offer)
            return status

        # Nobody holds an offered session's ready before it is taken: a card
        # that goes away before its first POST ends it quietly.
        machine.ready.addCallbacks(connected, lambda _: None)
        return link

    def _not_taken(self, session_id: SessionId) -> None:
        """No platform took the card-initiated session in time: end it with 204."""
        machine = self._live.get(session_id)
        if machine is None:
            return
        wait = self.offers.wait
        machine.note(f"card-initiated session not taken by any platform within {wait:g} s")
        machine.close()

    def _rules(self, service: str) -> ServiceRules | None:
        """The service's rules; C{None} when the engine has rules but not for it."""
        if self._services is None:
            return ServiceRules()
        return self._services.get(service)

    def _refusal(
        self, service: str, rules: ServiceRules | None
    ) -> tuple[FailureReason, str] | None:
        """Why a new session of C{service} may not start, if it may not."""
        if rules is None:
            return FailureReason.SERVICE_NOT_ALLOWED, f"the gateway has no service {service!r}"
        limit = rules.max_concurrent_sessions
        if limit is not None and self._open_per_service[service] >= limit:
            return (
                FailureReason.LIMIT_REACHED,
                f"service {service!r} has {limit} session(s) open, its max_concurrent_sessions",
            )
        return None

    def _resolved(self, card: CardRecord | None, machine: SessionMachine) -> None:
        if machine.state.terminal:
            return
        if card is None:
            machine.fail(FailureReason.UNKNOWN_CARD, f"no card for {machine.target}")
            return
        if not isinstance(card, CardRecord):
            machine.fail(FailureReason.DIRECTORY_ERROR, f"the directory returned {card!r}")
            return
        machine.card = card
        self._record(self.recorder.record_session, machine.status())
        self._cards.join(card, machine)

    def _not_resolved(self, failure: Failure, machine: SessionMachine) -> None:
        self._log.failure(
            "card directory failed for session {session_id}", failure, session_id=machine.id
        )
        machine.fail(FailureReason.DIRECTORY_ERROR, f"{failure.value!r}")

    def _find(self, session_id: SessionId | str) -> SessionMachine | None:
        try:
            return self._live.get(SessionId.of(session_id))
        except ValueError:
            return None

    def _owner(self, iccid: str) -> SessionMachine | None:
        return self._cards.owner(iccid)

    def _record_opened(self, machine: SessionMachine) -> Deferred[None]:
        """Hand the opening snapshot to the recorder, durably (L{Session.recorded})."""
        return self._publisher.record_opened(machine.status())

    def _record(self, method: Callable[..., object], value: object) -> None:
        """Hand C{value} to the recorder; log, never raise, if it fails."""
        self._publisher.record(method, value)
