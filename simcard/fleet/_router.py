# -*- test-case-name: tests.unit.fleet.test_router -*-
"""The fleet behind the simulated SMSC: SMS to cards, PoRs back, admin sessions out.

The SMSC hands every mobile-terminated SMS to L{FleetRouter.deliver}
(L{simcard.smsc.ISmsRouter}).  The router finds the card by MSISDN, lets
the card's OTA receiver (L{simcard.ota_receiver}) verify and run it, and
then does what a handset would do with the result:

  - the PoR that fits the delivery report goes back as the
    L{DeliveryOutcome}'s report, which the SMSC forwards to the gateway;
  - a PoR that SPI2 asks to send by SMS-SUBMIT goes back through the
    SMSC's C{submit_mo}, C{mo_delay} seconds later (a handset sends its
    SMS-SUBMIT after the delivery report);
  - an admin session request (from a PUSH or an Amd B trigger) opens the
    card's channel to the admin server (L{simcard.channel}) with the card's
    PSK, at most C{max_sessions} at once: beyond that, requests wait in a
    bounded queue, and a card already in a session (or waiting for one)
    ignores another request, as a card with one BIP channel does.

Card faults (L{simcard.fleet._faults}) are applied here and in the channel.
The router keeps counters (L{FleetStats}) and the last sessions' outcomes
(L{SessionRecord}) for C{simfleet}'s status output and the benchmarks.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any, ClassVar, Final

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.ota import COUNTER_MAX, OtaKeys, PorStatus
from simcard.agent import ApduExecutor
from simcard.card import SimCard
from simcard.channel import AdminSessionError, AdminSessionResult, ChannelFaults
from simcard.fleet._cards import CardPool, LiveCard
from simcard.fleet._faults import FaultBook, ReplayMode
from simcard.model import OtaCounters, PskCredential
from simcard.ota_receiver import OtaReceiver, OtaResult
from simcard.session_request import AdminSessionRequest
from simcard.smsc import DeliveryOutcome, DeliveryStatus
from simcard.state import FleetStateError

__all__ = ["ChannelOpener", "FleetRouter", "FleetStats", "MoSender", "SessionRecord"]

ChannelOpener = Callable[
    [AdminSessionRequest, PskCredential, ApduExecutor, ChannelFaults | None],
    Deferred[AdminSessionResult],
]
"""Opens one admin session (L{simcard.channel.open_admin_channel} with the
fleet's clock, endpoints, timeout and ciphers bound)."""

MoSender = Callable[[str, str, bytes], Deferred[DeliveryOutcome]]
"""C{submit_mo(from_msisdn, to_address, tpdu)}: the SMSC's way back to the gateway."""

_REPLAYED: Final = COUNTER_MAX - 1
"""The counter a card with the replay fault believes it last accepted: every
counter but the largest is then "not above" it, a replay (PoR 02)."""


@attrs.define
class FleetStats:
    """Running totals since the fleet started.

    @ivar sms_received: SMS the SMSC handed over.
    @ivar sms_unknown: SMS for an MSISDN no card has.
    @ivar sms_ignored: SMS a card ignored (C{ignore_push} fault).
    @ivar sms_executed: secured packets verified and run.
    @ivar sms_refused: secured packets refused (PoR with an error status).
    @ivar sms_other: parts waiting for the rest, duplicates, non-OTA SMS.
    @ivar pors_in_report: PoRs returned in the delivery report.
    @ivar pors_by_sms: PoR SMS-SUBMITs sent through the SMSC.
    @ivar mo_failed: those the SMSC could not deliver to the gateway.
    @ivar pors_lost: PoRs dropped by the C{lose_por} fault.
    @ivar sessions_no_bearer: admin sessions a push asked for that a card
        without a data bearer (C{no_bearer} fault) never started.
    @ivar sessions_requested: admin sessions asked for by a push or trigger.
    @ivar sessions_busy: requests ignored because the card had one already.
    @ivar sessions_dropped: requests dropped because the queue was full.
    @ivar sessions_completed: sessions that ended with the server's C{204}.
    @ivar sessions_failed: sessions that failed (L{failures} by kind).
    @ivar peak_sessions: the most sessions that ran at once.
    """

    sms_received: int = 0
    sms_unknown: int = 0
    sms_ignored: int = 0
    sms_executed: int = 0
    sms_refused: int = 0
    sms_other: int = 0
    pors_in_report: int = 0
    pors_by_sms: int = 0
    mo_failed: int = 0
    pors_lost: int = 0
    sessions_no_bearer: int = 0
    sessions_requested: int = 0
    sessions_busy: int = 0
    sessions_dropped: int = 0
    sessions_completed: int = 0
    sessions_failed: int = 0
    peak_sessions: int = 0
    failures: Counter[str] = attrs.field(factory=Counter)


@attrs.frozen
class SessionRecord:
    """How one admin session ended.

    @ivar failure: C{None} on success, else the failure kind (C{"tls"},
        C{"lost"}, C{"unreachable"}, ...).
    """

    iccid: str
    address: str
    port: int
    started: float
    ended: float
    failure: str | None = None
    reason: str = ""
    scripts: int = 0
    commands: int = 0
    attempts: int = 0


class _CardCounters:
    """The card's OTA counters as its receiver sees them, with the replay fault."""

    __slots__ = ("_counters", "_replaying")

    def __init__(self, counters: OtaCounters, replaying: Callable[[], bool]) -> None:
        self._counters = counters
        self._replaying = replaying

    def last(self, kvn: int) -> int:
        return _REPLAYED if self._replaying() else self._counters.last(kvn)

    def record(self, kvn: int, counter: int) -> None:
        self._counters.record(kvn, counter)


class FleetRouter:
    """The fleet as the SMSC sees it (L{simcard.smsc.ISmsRouter}).

    @param pool: the cards.
    @param faults: the fault book, asked on every SMS and session.
    @param clock: the reactor or a test clock; runs the slow-card and MO delays.
    @param open_channel: opens an admin session (see L{ChannelOpener}).
    @param max_sessions: admin sessions run at once.
    @param session_queue: requests that may wait for a slot.
    @param replay_status: the PoR status cards answer a replayed counter with.
    @param mo_delay: seconds between the delivery report and the PoR SMS-SUBMIT.
    @param history: how many L{SessionRecord}s to keep.

    @ivar stats: the L{FleetStats}.
    @ivar recent: the last sessions' records, oldest first.
    @ivar session_listeners: called with each L{SessionRecord} (benchmarks).
    """

    log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        pool: CardPool,
        faults: FaultBook,
        clock: IReactorTime,
        open_channel: ChannelOpener,
        *,
        max_sessions: int = 2000,
        session_queue: int = 10000,
        replay_status: PorStatus = PorStatus.COUNTER_LOW,
        mo_delay: float = 0.0,
        history: int = 100,
    ) -> None:
        self._pool = pool
        self._faults = faults
        # Typed Any: IReactorTime.callLater returns an IDelayedCall we cancel.
        self._clock: Any = clock
        self._open_channel = open_channel
        self._max_sessions = max_sessions
        self._queue_limit = session_queue
        self._replay_status = PorStatus(replay_status)
        self._mo_delay = mo_delay
        self._submit_mo: MoSender | None = None
        self._timers: set[IDelayedCall] = set()
        self._waiting: dict[IDelayedCall, Deferred[DeliveryOutcome]] = {}
        self._active: dict[str, Deferred[AdminSessionResult] | None] = {}
        self._queue: deque[tuple[LiveCard, AdminSessionRequest]] = deque()
        self._queued: set[str] = set()
        self._stopped = False
        self.stats = FleetStats()
        self.recent: deque[SessionRecord] = deque(maxlen=history)
        self.session_listeners: list[Callable[[SessionRecord], None]] = []

    def attach_smsc(self, submit_mo: MoSender) -> None:
        """Send PoR SMS-SUBMITs with C{submit_mo} (the SMSC factory's)."""
        self._submit_mo = submit_mo

    def receiver_for(self, card: SimCard) -> OtaReceiver:
        """Build C{card}'s OTA receiver (the pool's receiver factory).

        Keys are looked up in the card's I{current} profile, so a PUT KEY
        takes effect for the next packet; the counters go through the
        replay fault.
        """
        iccid = card.iccid

        def keys_for_kvn(kvn: int) -> OtaKeys | None:
            keys = card.profile.ota_key_set(kvn)
            return keys.ota_keys() if keys is not None else None

        def replaying() -> bool:
            return self._faults.for_card(iccid).replay is not ReplayMode.OFF

        return OtaReceiver(
            keys_for_kvn,
            _CardCounters(card.ota_counters, replaying),
            card,
            admin=card.profile.admin,
            agent_id=card.profile.agent_id,
            replay_status=self._replay_status,
        )

    @property
    def active_sessions(self) -> int:
        """Admin sessions running now."""
        return len(self._active)

    @property
    def queued_sessions(self) -> int:
        """Session requests waiting for a slot."""
        return len(self._queue)

    # -- SMS in ----------------------------------------------------------

    def deliver(self, dest_msisdn: str, tpdu: bytes) -> Deferred[DeliveryOutcome]:
        """Hand an SMS-DELIVER to the card with MSISDN C{dest_msisdn}."""
        self.stats.sms_received += 1
        if self._stopped:
            return succeed(DeliveryOutcome.failed("the fleet is stopping"))
        iccid = self._pool.iccid_for_msisdn(dest_msisdn)
        if iccid is None:
            self.stats.sms_unknown += 1
            return succeed(DeliveryOutcome.unknown(f"no card has MSISDN {dest_msisdn}"))
        faults = self._faults.for_card(iccid)
        if faults.ignore_push:
            self.stats.sms_ignored += 1
            self.log.info("card {iccid} ignores an SMS (fault)", iccid=iccid)
            return succeed(DeliveryOutcome.delivered())
        if faults.slow:
            done: Deferred[DeliveryOutcome] = Deferred()
            call = self._later(faults.slow, self._deliver_late, iccid, dest_msisdn, tpdu)
            self._waiting[call] = done
            return done
        return succeed(self._handle(iccid, dest_msisdn, tpdu))

    def _deliver_late(self, iccid: str, msisdn: str, tpdu: bytes, call: IDelayedCall) -> None:
        done = self._waiting.pop(call)
        try:
            outcome = self._handle(iccid, msisdn, tpdu)
        except Exception:
            # Synchronous deliveries let the SMSC catch this; here nobody would.
            self.log.failure("card {iccid} failed on a delayed SMS", iccid=iccid)
            outcome = DeliveryOutcome.failed(f"card {iccid} failed")
        done.callback(outcome)

    def _handle(self, iccid: str, msisdn: str, tpdu: bytes) -> DeliveryOutcome:
        try:
            live = self._pool.get(iccid)
        except FleetStateError as e:
            self.log.error("cannot load card {iccid}: {error}", iccid=iccid, error=str(e))
            return DeliveryOutcome.failed(f"card {iccid} cannot be loaded")
        outcome = live.receiver.receive_sms_deliver(tpdu, self._clock.seconds())
        if outcome.result is OtaResult.EXECUTED:
            self.stats.sms_executed += 1
        elif outcome.result is OtaResult.REFUSED:
            self.stats.sms_refused += 1
            self.log.info(
                "card {iccid} refused a secured packet: {reason}",
                iccid=iccid,
                reason=outcome.reason,
            )
            if self._faults.for_card(iccid).replay is ReplayMode.IGNORE:
                return DeliveryOutcome.delivered()
        else:
            self.stats.sms_other += 1
        faults = self._faults.for_card(iccid)
        report = outcome.report_ud
        if faults.lose_por and (outcome.mo_tpdus or report is not None):
            self.stats.pors_lost += 1
            self.log.info("card {iccid}: its PoR is lost (fault)", iccid=iccid)
            report = None
        elif outcome.mo_tpdus:
            self._later(self._mo_delay, self._send_mo, msisdn, outcome.originator, outcome.mo_tpdus)
        elif report is not None:
            self.stats.pors_in_report += 1
        if outcome.admin_request is not None:
            if faults.no_bearer:
                self.stats.sessions_no_bearer += 1
                self.log.info("card {iccid}: no data bearer, no BIP channel (fault)", iccid=iccid)
            else:
                self._request_session(live, outcome.admin_request)
        return DeliveryOutcome.delivered(report)

    # -- PoRs out --------------------------------------------------------

    def _send_mo(
        self, msisdn: str, originator: str, tpdus: tuple[bytes, ...], call: IDelayedCall
    ) -> None:
        submit = self._submit_mo
        if submit is None:
            self.log.warn("no SMSC attached: PoR from {msisdn} not sent", msisdn=msisdn)
            self.stats.mo_failed += len(tpdus)
            return
        for tpdu in tpdus:
            self.stats.pors_by_sms += 1
            sent = submit(msisdn, originator, tpdu).addCallback(self._mo_sent, msisdn)
            sent.addErrback(self._mo_error, msisdn)

    def _mo_sent(self, outcome: DeliveryOutcome, msisdn: str) -> None:
        if outcome.status is not DeliveryStatus.DELIVERED:
            self.stats.mo_failed += 1
            self.log.info(
                "PoR SMS-SUBMIT from {msisdn} not delivered: {reason}",
                msisdn=msisdn,
                reason=outcome.reason,
            )

    def _mo_error(self, failure: Failure, msisdn: str) -> None:
        self.stats.mo_failed += 1
        self.log.failure("sending the PoR of {msisdn} failed", failure, msisdn=msisdn)

    # -- admin sessions --------------------------------------------------

    def _request_session(self, live: LiveCard, request: AdminSessionRequest) -> None:
        iccid = live.card.iccid
        self.stats.sessions_requested += 1
        if iccid in self._active or iccid in self._queued:
            self.stats.sessions_busy += 1
            self.log.info("card {iccid} is busy; session request ignored", iccid=iccid)
            return
        if len(self._active) < self._max_sessions:
            self._start(live, request)
        elif len(self._queue) < self._queue_limit:
            self._pool.pin(live)
            self._queue.append((live, request))
            self._queued.add(iccid)
        else:
            self.stats.sessions_dropped += 1
            self.log.warn("session queue full; request of card {iccid} dropped", iccid=iccid)

    def _start(self, live: LiveCard, request: AdminSessionRequest) -> None:
        card = live.card
        iccid = card.iccid
        started = self._clock.seconds()
        psk = card.profile.psk
        if psk is None:
            self._record(
                SessionRecord(
                    iccid,
                    request.address,
                    request.port,
                    started,
                    started,
                    "config",
                    "the card has no PSK",
                )
            )
            return
        self._pool.pin(live)
        self._active[iccid] = None
        self.stats.peak_sessions = max(self.stats.peak_sessions, len(self._active))
        faults = self._faults.for_card(iccid).channel_faults()
        try:
            d = self._open_channel(request, psk, card, faults)
        except Exception:
            self.log.failure("opening the admin channel of card {iccid} failed", iccid=iccid)
            self._finished(Failure(), live, request, started)
            return
        if iccid in self._active:
            self._active[iccid] = d
        d.addCallbacks(
            self._finished,
            self._finished,
            callbackArgs=(live, request, started),
            errbackArgs=(live, request, started),
        )

    def _finished(
        self,
        result: AdminSessionResult | Failure,
        live: LiveCard,
        request: AdminSessionRequest,
        started: float,
    ) -> None:
        iccid = live.card.iccid
        if self._active.pop(iccid, _GONE) is _GONE:
            return
        self._pool.unpin(live)
        base = (iccid, request.address, request.port, started, self._clock.seconds())
        if isinstance(result, AdminSessionResult):
            record = SessionRecord(
                *base, None, "", result.scripts, result.commands, result.attempts
            )
        elif isinstance(result.value, AdminSessionError):
            error = result.value
            record = SessionRecord(*base, error.kind.value, error.reason, attempts=error.attempts)
        elif isinstance(result.value, CancelledError):
            record = SessionRecord(*base, "cancelled", "the fleet stopped")
        else:
            self.log.failure("admin session of card {iccid} broke", result, iccid=iccid)
            record = SessionRecord(*base, "error", result.getErrorMessage())
        self._record(record)
        self._next()

    def _record(self, record: SessionRecord) -> None:
        if record.failure is None:
            self.stats.sessions_completed += 1
        else:
            self.stats.sessions_failed += 1
            self.stats.failures[record.failure] += 1
        self.recent.append(record)
        for listener in list(self.session_listeners):
            try:
                listener(record)
            except Exception:
                self.log.failure("session listener failed")

    def _next(self) -> None:
        while self._queue and len(self._active) < self._max_sessions and not self._stopped:
            live, request = self._queue.popleft()
            self._queued.discard(live.card.iccid)
            self._pool.unpin(live)
            self._start(live, request)

    # -- timers and stopping ---------------------------------------------

    def _later(self, delay: float, f: Callable[..., None], *args: object) -> IDelayedCall:
        call: IDelayedCall

        def run() -> None:
            self._timers.discard(call)
            f(*args, call)

        call = self._clock.callLater(delay, run)
        self._timers.add(call)
        return call

    def stop(self) -> None:
        """Stop: cancel delays and queued requests, abort running sessions."""
        self._stopped = True
        for call in list(self._timers):
            if call.active():
                call.cancel()
        self._timers.clear()
        waiting, self._waiting = self._waiting, {}
        for done in waiting.values():
            done.callback(DeliveryOutcome.failed("the fleet is stopping"))
        while self._queue:
            live, _ = self._queue.popleft()
            self._pool.unpin(live)
        self._queued.clear()
        for d in [d for d in self._active.values() if d is not None]:
            d.cancel()


_GONE: Final = object()
