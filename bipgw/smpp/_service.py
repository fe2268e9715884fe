# -*- test-case-name: tests.unit.smpp.test_client,tests.unit.smpp.test_client_push -*-
"""The SMPP client as a service: the gateway's ESME, and its SMS link.

L{SmppClientService} owns the connection to the SMSC.  Twisted's
L{ClientService} connects and reconnects with a backoff policy, and the
bind happens in its C{prepareConnection} (STYLE.md rule 5).  SMS parts come
in through L{SmppClientService.submit} (the push sender's
L{bipgw.push.ISmsLink}, already secured: this door knows MSISDNs, parts and
message ids, never sessions or keys), and the L{bipgw.smpp.SubmitPump}
sends them whenever a bind is up, within the window, the rate cap and the
SMSC's throttling.  Receipts and SMS from cards come back through the
L{bipgw.smpp.DeliverRouter} to the session engine's
L{bipgw.core.ISmsEvents} (given to the constructor, or by L{report_to}
where the engine is built after this service).

A refused or failed bind never fails C{prepareConnection}: ClientService
has no transition for a connection that closes while it is being prepared
or after its preparation failed (automat raises C{NoTransition}; measured
with Twisted 26.10), and an SMSC that refuses a bind usually closes the
connection.  So the preparation always succeeds, the service then closes
the unbound connection itself, and the reconnection delay is computed from
the service's own count of consecutive failures (connection refused, bind
refused or timed out, link lost), reset by a successful bind.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.smpp import SmppError, SubmitSm, encode
from bipgw.core import ISmsEvents, PushError, normalise_msisdn
from bipgw.push import SmsSubmission
from bipgw.smpp._deliver import DeliverRouter
from bipgw.smpp._link import BindResult, EsmeLink
from bipgw.smpp._protocol import EsmeFactory, EsmeProtocol
from bipgw.smpp._queue import PushJob, QueueFullError
from bipgw.smpp._sender import SubmitPump
from bipgw.smpp._settings import EsmeSettings

__all__ = ["SmppClientService", "esme_settings"]

_ESM_UDHI = 0x40
_PID_SIM_DATA_DOWNLOAD = 0x7F
_DCS_CLASS2_8BIT = 0xF6


def esme_settings(section: Any, **overrides: Any) -> EsmeSettings:
    """L{EsmeSettings} from the configuration's C{[smpp]} table (L{bipgw.config.SmppSection}).

    The table must come from L{bipgw.config.Config} (which reads
    C{password_file} into C{password}).
    """
    values: dict[str, Any] = {
        "system_id": section.system_id,
        "password": section.password or "",
        "system_type": section.system_type,
        "transceiver": getattr(section.bind, "value", section.bind) == "transceiver",
        "source_address": section.source_address,
        "source_ton": section.source_ton,
        "source_npi": section.source_npi,
        "destination_ton": section.destination_ton,
        "destination_npi": section.destination_npi,
        "window": section.window,
        "rate": float(section.rate),
        "enquire_link_interval": float(section.enquire_link_interval),
        "response_timeout": float(section.response_timeout),
        "queue_limit": section.queue_limit,
        "reconnect_initial_delay": float(section.reconnect_initial_delay),
        "reconnect_max_delay": float(section.reconnect_max_delay),
    }
    values.update(overrides)
    return EsmeSettings(**values)


class SmppClientService(Service):
    """The gateway's ESME: binds, keeps the bind, sends SMS, reads receipts and PoRs.

    A L{bipgw.push.ISmsLink}.  Not restartable while stopping; after
    L{stopService} has finished it may be started again.

    @ivar settings: the account, window, rate and timers.
    @ivar router: sorts deliver_sm into receipts and PoRs, for the engine.
    @ivar pump: the queue and the flow control.
    @ivar binds: successful binds so far.
    @ivar bind_failures: refused or failed binds so far.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        settings: EsmeSettings,
        *,
        events: ISmsEvents | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """
        @param clock: the reactor's clock (every timer runs on it).
        @param endpoint: where the SMSC listens.
        @param settings: the ESME's settings.
        @param events: where receipts and SMS from cards are reported (the
            session engine); see L{report_to}.
        @param jitter: adds noise to reconnection delays (0..1 s by
            default) so a fleet of gateways does not reconnect in step.
        """
        self._clock = clock
        self.settings = settings
        self.router = DeliverRouter(clock, events)
        self.pump = self._new_pump()
        self._policy = backoffPolicy(
            settings.reconnect_initial_delay,
            settings.reconnect_max_delay,
            settings.reconnect_factor,
            jitter=jitter,
        )
        self._failures = 0
        self._penalised = False
        self._factory = EsmeFactory(self._make_link, clock=clock, on_hostile=self._hostile_smsc)
        self._client = ClientService(
            endpoint,
            self._factory,
            retryPolicy=self._retry_delay,
            clock=clock,
            prepareConnection=self._bind,
        )
        self._link: EsmeLink | None = None
        self._binding = False
        self._bind_waiters: list[Deferred[None]] = []
        self._bound_waiters: list[Deferred[None]] = []
        self._stopping: Deferred[None] | None = None
        self.binds = 0
        self.bind_failures = 0

    # -- wiring ----------------------------------------------------------------

    @property
    def bound(self) -> bool:
        """Whether a bind is up and pushes are being sent."""
        return self.pump.link is not None

    def when_bound(self) -> Deferred[None]:
        """Fire once a bind is up (at once if one is); fail if the service
        stops first.  Pushes do not need it (they wait in the queue for the
        next bind): it is for operators, demos and tests that want to see
        the link up."""
        waiter: Deferred[None] = Deferred()
        if self.bound:
            waiter.callback(None)
        else:
            self._bound_waiters.append(waiter)
        return waiter

    def report_to(self, events: ISmsEvents) -> None:
        """Report receipts and SMS from cards to C{events} (the session engine).

        The one wiring call made after construction: the engine is built
        on a push sender that submits through this service, so it exists
        only after it.
        """
        self.router.events = events

    # -- ISmsLink ------------------------------------------------------------------

    def refusal(self, label: str) -> PushError | None:
        """Why L{submit} would refuse C{label} now (not running, queue full), or C{None}."""
        if not self.running or self._stopping is not None:
            return PushError("the SMPP client is not running; the push was not accepted")
        if self.pump.queue.full:
            return QueueFullError(
                f"the push queue is full ({self.pump.queue.pushes} pushes waiting for"
                f" the SMSC); {label} refused"
            )
        return None

    def submit(self, sms: SmsSubmission) -> Deferred[tuple[str, ...]]:
        """Send every part of C{sms} as a submit_sm to its MSISDN.

        Accepted while the bind is down (queued, sent after the next bind).

        @return: fires with the SMSC's message id of each part once every
            part is accepted; fails with L{PushError} (permanent for parts
            the SMSC can never accept) or L{bipgw.smpp.QueueFullError}.
        """
        refused = self.refusal(sms.label)
        if refused is not None:
            return fail(refused)
        destination = normalise_msisdn(sms.msisdn)
        pdus = [self._submit_sm(destination, ud) for ud in sms.parts]
        try:
            encoded = [encode(pdu) for pdu in pdus]
        except SmppError as e:
            return fail(PushError(f"the push cannot be put in a submit_sm: {e}", permanent=True))
        job = PushJob(sms, pdus, encoded)
        try:
            self.pump.offer(job)
        except PushError as e:
            return fail(e)
        if not self.bound:
            self._log.info(
                "no bind to the SMSC at the moment; {push} waits in the queue",
                push=job.describe(),
            )
        return job.deferred

    def _submit_sm(self, destination: str, ud: bytes) -> SubmitSm:
        s = self.settings
        return SubmitSm(
            0,
            0,
            source_addr_ton=s.source_ton,
            source_addr_npi=s.source_npi,
            source_addr=s.source_address,
            dest_addr_ton=s.destination_ton,
            dest_addr_npi=s.destination_npi,
            destination_addr=destination,
            esm_class=_ESM_UDHI,
            protocol_id=_PID_SIM_DATA_DOWNLOAD,
            registered_delivery=s.registered_delivery,
            data_coding=_DCS_CLASS2_8BIT,
            short_message=ud,
        )

    # -- the connection ----------------------------------------------------------

    def _new_pump(self) -> SubmitPump:
        return SubmitPump(self._clock, self.settings)

    def _make_link(self, protocol: EsmeProtocol) -> EsmeLink:
        return EsmeLink(
            self._clock,
            protocol,
            self.settings,
            on_deliver=self.router.route,
            on_lost=self._lost,
            ratelog=self._factory.ratelog,
        )

    def _bind(self, protocol: IProtocol) -> Deferred[None]:
        # ClientService hands over its proxy, which forwards attributes.
        link: EsmeLink = protocol.link  # type: ignore[attr-defined]
        self._link = link
        if self._stopping is not None:
            link.close()
            return succeed(None)
        s = self.settings
        self._log.info(
            "connected to the SMSC; binding as {system_id} ({mode})",
            system_id=s.system_id,
            mode="transceiver" if s.transceiver else "transmitter",
        )
        self._binding = True
        return link.bind().addCallback(self._bound, link)

    def _bound(self, result: BindResult, link: EsmeLink) -> None:
        self._binding = False
        try:
            self._bind_settled(result, link)
        finally:
            waiters, self._bind_waiters = self._bind_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _bind_settled(self, result: BindResult, link: EsmeLink) -> None:
        s = self.settings
        if not result.bound:
            self.bind_failures += 1
            self._log.error(
                "bind to the SMSC as {system_id} failed: {reason}; retrying with backoff",
                system_id=s.system_id,
                reason=result.reason,
                status=result.status,
            )
            link.close(abort=result.status is None)
            return
        if self._penalised:
            # The last connection was dropped for garbage: keep the backoff growing.
            self._penalised = False
        else:
            self._failures = 0
        self.binds += 1
        self._log.info(
            "bound to the SMSC {smsc} as {system_id} ({mode})",
            smsc=result.smsc_system_id or "(no system_id)",
            system_id=s.system_id,
            mode="transceiver" if s.transceiver else "transmitter",
        )
        if self._stopping is None:
            self.pump.attach(link)
            waiters, self._bound_waiters = self._bound_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _lost(self, link: EsmeLink, why: str) -> None:
        if link is self._link:
            self._link = None
        if self._stopping is None and self.running:
            self._log.info(
                "the connection to the SMSC is gone ({why}); {n} push(es) wait for the next bind",
                why=why,
                n=self.pump.queue.pushes,
            )

    def _hostile_smsc(self) -> None:
        """A connection was dropped for broken framing or a flood of malformed PDUs.

        The next successful bind does not reset the reconnection backoff, so
        an SMSC that binds and then sends garbage is reconnected to ever
        more slowly (up to C{reconnect_max_delay}), not every second.
        """
        self._penalised = True

    def _retry_delay(self, attempt: int) -> float:
        # ClientService's own attempt count restarts after every prepared
        # connection (see the module docstring), so keep our own.
        self._failures += 1
        delay = self._policy(self._failures - 1)
        if self._stopping is not None:
            return delay
        self._log.info(
            "reconnecting to the SMSC in {delay:.1f} s (failure {n} in a row)",
            delay=delay,
            n=self._failures,
        )
        return delay

    # -- IService -----------------------------------------------------------------

    def startService(self) -> None:
        """Connect and bind; pushes are accepted from now on."""
        if self._stopping is not None:
            raise RuntimeError("the SMPP client is still stopping")
        if self.pump.stopped:
            self.pump = self._new_pump()
        super().startService()
        self._failures = 0
        self._client.startService()

    def stopService(self) -> Deferred[None]:
        """Unbind and disconnect.

        Waits for a bind in progress to settle and for the submits in flight
        to be answered (each within C{response_timeout}), sends unbind and
        waits for unbind_resp (again within C{response_timeout}), then
        closes.  Pushes still waiting are failed: they cannot be sent now.
        """
        super().stopService()
        done: Deferred[None] = Deferred()
        self._stopping = done
        waiters, self._bound_waiters = self._bound_waiters, []
        for waiter in waiters:
            waiter.errback(RuntimeError("the SMPP client stopped before it was bound"))
        stopping: Deferred[None] = succeed(None)
        if self._binding:
            stopping = Deferred()
            self._bind_waiters.append(stopping)

        def drained(_: object) -> Deferred[None]:
            link = self._link
            self.pump.detach()
            if link is None:
                return succeed(None)
            return link.when_drained().addCallback(lambda _: link.unbind())

        def closed(result: object) -> None:
            if isinstance(result, Failure):
                self._log.failure("stopping the SMPP client failed", result)
            self.pump.stop("the SMPP client stopped")
            self._factory.ratelog.flush()
            self.router.flush_log()
            self._stopping = None
            self._log.info("SMPP client stopped")
            done.callback(None)

        stopping.addCallback(drained)
        stopping.addCallback(lambda _: self._client.stopService())
        stopping.addBoth(closed)
        return done
