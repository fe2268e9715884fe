# -*- test-case-name: tests.unit.fleet.test_service -*-
"""The running fleet: one service with the SMSC, the cards and the timers.

L{FleetService} is what C{simfleet run} and C{twistd simfleet} start.  Each
child owns one resource, as STYLE.md asks: the SMSC's listening port, the
control port (if configured), and a C{TimerService} that saves changed
cards and commits every C{save_interval} seconds.  The service itself owns
the fleet file: it opens C{cards.db} when it starts and, when it stops,
aborts running admin sessions, stops the SMSC and saves and closes the
file, so a fleet stopped with Ctrl-C keeps every counter its cards
accepted.

Everything runs on the injected reactor (a C{MemoryReactorClock} in the
unit tests); nothing imports the global one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from bipgw.codec.ota import PorStatus
from bipgw.tls import ListeningService
from simcard.agent import ApduExecutor
from simcard.applets import APPLET_FACTORIES
from simcard.channel import (
    AdminSessionResult,
    ChannelFaults,
    EndpointFactory,
    open_admin_channel,
    tcp_endpoints,
)
from simcard.fleet._cards import CardPool
from simcard.fleet._config import FleetConfig
from simcard.fleet._control import ControlFactory, FleetControl
from simcard.fleet._errors import FleetError
from simcard.fleet._faults import FaultBook, LiveSmscFaults
from simcard.fleet._router import FleetRouter
from simcard.gp.secure_channel import Scp03SecureChannel
from simcard.model import PskCredential
from simcard.session_request import AdminSessionRequest
from simcard.smsc import SmscFactory
from simcard.state import FleetState, FleetStateError

__all__ = ["FleetService"]


class FleetService(MultiService):
    """The simulated fleet: SMSC, cards and admin channels (see the module docstring).

    @param config: the fleet's C{fleet.toml}.
    @param reactor: the reactor (a C{MemoryReactorClock} in tests): listens,
        connects and runs every timer.
    @param endpoints: makes the cards' TCP endpoints; by default the real
        network through C{reactor}.
    @param smsc_listen: listen here instead of C{config.smsc.listen}.
    @param control_listen: the control port's endpoint instead of the
        configured one (C{None}: as configured).

    @ivar faults: the fault book (change it to change card behaviour now).
    @ivar pool: the cards.
    @ivar router: the fleet side of the SMSC.
    @ivar smsc: the SMSC's protocol factory.
    @ivar smsc_listener: the SMSC's listening child service (a
        L{bipgw.tls.ListeningService}: C{when_listening()} gives its port).
    @ivar control_listener: the control port's child service, if any.
    """

    log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        config: FleetConfig,
        reactor: Any,
        *,
        endpoints: EndpointFactory | None = None,
        smsc_listen: str | None = None,
        control_listen: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._reactor = reactor
        fleet = config.fleet
        self._endpoints = self._redirected(
            endpoints or tcp_endpoints(reactor, timeout=config.channel.connect_timeout)
        )
        self.faults = FaultBook(config.faults, config.card_faults)
        self.router: FleetRouter
        self.pool = CardPool(
            capacity=fleet.live_cards, receiver_factory=lambda card: self.router.receiver_for(card)
        )
        self.router = FleetRouter(
            self.pool,
            self.faults,
            reactor,
            self._open_channel,
            max_sessions=fleet.max_sessions,
            session_queue=fleet.session_queue,
            replay_status=PorStatus(fleet.replay_status),
            mo_delay=fleet.mo_delay,
        )
        smsc_faults = config.smsc.config.faults
        live_faults = LiveSmscFaults(
            default=smsc_faults.default,
            destinations=smsc_faults.destinations,
            seed=smsc_faults.seed,
            book=self.faults,
            iccid_for_msisdn=self.pool.iccid_for_msisdn,
        )
        self.smsc = SmscFactory(
            self.router,
            config.smsc.accounts,
            reactor,
            attrs.evolve(config.smsc.config, faults=live_faults),
        )
        self.router.attach_smsc(self.smsc.submit_mo)
        self.smsc_listener = ListeningService(
            serverFromString(reactor, smsc_listen or config.smsc.listen), self.smsc, "SMSC"
        )
        self.smsc_listener.setServiceParent(self)
        timer = TimerService(fleet.save_interval, self.save)
        timer.clock = reactor
        timer.setServiceParent(self)
        self.control = FleetControl(self)
        control = control_listen or config.control_listen
        self.control_listener: ListeningService | None = None
        if control is not None:
            self.control_listener = ListeningService(
                serverFromString(reactor, control), ControlFactory(self.control), "control port"
            )
            self.control_listener.setServiceParent(self)

    def _redirected(self, endpoints: EndpointFactory) -> EndpointFactory:
        host, port = self.config.channel.connect_host, self.config.channel.connect_port
        if host is None and port is None:
            return endpoints

        def redirect(address: str, number: int) -> Any:
            return endpoints(host or address, port or number)

        return redirect

    def _open_channel(
        self,
        request: AdminSessionRequest,
        psk: PskCredential,
        executor: ApduExecutor,
        faults: ChannelFaults | None,
    ) -> Deferred[AdminSessionResult]:
        channel = self.config.channel
        return open_admin_channel(
            self._reactor,
            self._endpoints,
            request,
            psk,
            executor,
            faults=faults,
            timeout=channel.session_timeout,
            chunked=channel.chunked,
            ciphers=channel.ciphers,
            allow_weak=channel.allow_weak_ciphers,
        )

    def open_state(self) -> FleetState:
        """Open C{cards.db} with the fleet's applets and SCP03 card side.

        @raise FleetError: the file does not exist or cannot be used.
        """
        path = self.config.fleet.cards_db
        if not path.exists():
            raise FleetError(f"{path}: no such fleet file (make one with `simfleet generate`)")
        try:
            return FleetState.open(
                path,
                applet_factories=APPLET_FACTORIES,
                secure_channel_factory=Scp03SecureChannel,
            )
        except FleetStateError as e:
            raise FleetError(str(e)) from None

    def startService(self) -> None:
        """Open the fleet file, then listen and start the save timer."""
        if not self.pool.is_open:
            self.pool.open(self.open_state())
        super().startService()
        self.log.info(
            "fleet {name}: {cards} cards in {path}",
            name=self.config.fleet.name,
            cards=self.pool.card_count(),
            path=str(self.config.fleet.cards_db),
        )

    def stopService(self) -> Deferred[None]:
        """Abort sessions, stop listening, stop the SMSC, save and close the file."""
        self.router.stop()
        stopping: Deferred[Any] = super().stopService()

        def close(result: object) -> object:
            self.smsc.centre.stop()
            saved = self.pool.close()
            self.log.info("fleet stopped; {saved} card(s) saved", saved=saved)
            return result

        stopping.addBoth(close)
        return stopping

    def save(self) -> int:
        """Save changed cards and commit; never raises (it runs from a timer)."""
        try:
            saved = self.pool.save()
        except Exception:
            self.log.failure("saving the fleet's cards failed")
            return 0
        if saved:
            self.log.debug("saved {saved} card(s)", saved=saved)
        return saved

    def poll(self, iccid: str) -> None:
        """Card C{iccid} opens an admin session on its own (L{FleetRouter.poll})."""
        self.router.poll(iccid)

    def recent_sessions(self) -> list[str]:
        """The last admin sessions, one line each, oldest first."""
        lines = []
        for r in self.router.recent:
            outcome = "ok" if r.failure is None else f"{r.failure}: {r.reason}"
            lines.append(
                f"{r.iccid} {r.address}:{r.port} {r.ended - r.started:.3f}s"
                f" scripts={r.scripts} commands={r.commands} attempts={r.attempts} {outcome}"
            )
        return lines

    def status(self) -> list[tuple[str, object]]:
        """Figures for the control port and logs, as (name, value) pairs."""
        stats = self.router.stats
        pairs: list[tuple[str, object]] = [
            ("cards", self.pool.card_count() if self.pool.is_open else 0),
            ("live_cards", len(self.pool)),
            ("card_loads", self.pool.loads),
            ("card_evictions", self.pool.evictions),
            ("active_sessions", self.router.active_sessions),
            ("queued_sessions", self.router.queued_sessions),
            ("smsc_connections", self.smsc.centre.connections),
        ]
        pairs.extend(
            (field.name, getattr(stats, field.name))
            for field in attrs.fields(type(stats))
            if field.name != "failures"
        )
        pairs.extend((f"failures.{kind}", n) for kind, n in sorted(stats.failures.items()))
        return pairs
