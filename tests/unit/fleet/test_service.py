"""Tests for the fleet service: the whole loop through the SMSC's bytes, on a memory reactor.

An ESME made of the real SMSC protocol over a C{StringTransport} (the
SMSC tests' harness) binds with the generated account and submits a
push built from the vendor file's keys; the receipt and the PoR come back
as C{deliver_sm}, and the card asks for its admin channel.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import fail
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import Kic, KicAlgorithm, Kid, KidAlgorithm, PorStatus, verify_response
from bipgw.codec.smpp import DeliverSm, SubmitSmResp
from bipgw.tls import ListeningService
from simcard.fleet import FleetConfig, FleetError, FleetService
from simcard.state import FleetState, FleetStateError
from tests.unit.fleet.test_harness import (
    OTA_ADDRESS,
    SPI_1639,
    CardKeys,
    RecordingEndpoints,
    cards_from_files,
    fleet_dir,
    make_fleet,
    push_parts,
)
from tests.unit.simcard.test_smsc_harness import Esme

KIC = Kic(1, KicAlgorithm.AES_CBC)
KID = Kid(1, KidAlgorithm.AES_CMAC)


class ServiceTestCase(SynchronousTestCase):
    """A generated fleet run by a L{FleetService} on a C{MemoryReactorClock}."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.result, self.config = make_fleet(fleet_dir(self), cards=3)
        self.cards = list(cards_from_files(self.result))
        self.password = (self.result.directory / "gateway/smpp.password").read_text().strip()
        self.endpoints = RecordingEndpoints()
        self.addCleanup(lambda: self.assertEqual(self.reactor.getDelayedCalls(), []))

    def start(self, config: FleetConfig | None = None, **kwargs: Any) -> FleetService:
        service = FleetService(
            config or self.config, self.reactor, endpoints=self.endpoints, **kwargs
        )
        service.startService()
        self.addCleanup(self.stop, service)
        return service

    def stop(self, service: FleetService) -> None:
        if service.running:
            self.successResultOf(service.stopService())

    def esme(self, service: FleetService) -> Esme:
        esme = Esme(service.smsc)
        self.addCleanup(esme.disconnect)
        answer = esme.bind("transceiver", system_id="bipgw", password=self.password)
        self.assertEqual(answer.command_status, 0)
        return esme

    def submit_push(self, esme: Esme, card: CardKeys, counter: int, **kwargs: Any) -> None:
        [ud] = push_parts(card.ota, counter, **kwargs)
        esme.submit(
            source_addr=OTA_ADDRESS,
            destination_addr=card.msisdn,
            short_message=ud,
            registered_delivery=1,
        )
        [response] = esme.received()
        self.assertIsInstance(response, SubmitSmResp)
        self.assertEqual(response.command_status, 0)

    def deliveries(self, esme: Esme) -> list[DeliverSm]:
        """Every deliver_sm the SMSC sent, each acknowledged."""
        pdus = esme.received()
        for pdu in pdus:
            assert isinstance(pdu, DeliverSm), pdu
            esme.answer(pdu)
        return pdus  # type: ignore[return-value]


class LifecycleTests(ServiceTestCase):
    """Start listens and opens the file; stop closes everything and saves."""

    def test_listensOnTheConfiguredEndpoint(self) -> None:
        """The SMSC listens on fleet.toml's endpoint, or on the override."""
        service = self.start()
        [(port, factory, _, _)] = self.reactor.tcpServers
        self.assertEqual(port, 2775)
        self.assertIs(factory, service.smsc)
        self.assertIsNotNone(self.successResultOf(service.smsc_listener.when_listening()))
        other = MemoryReactorClock()
        overridden = FleetService(self.config, other, smsc_listen="tcp:12775")
        overridden.startService()
        self.assertEqual(other.tcpServers[0][0], 12775)
        self.successResultOf(overridden.stopService())

    def test_controlPort(self) -> None:
        """With a control endpoint, a second port listens with the control factory."""
        self.start(control_listen="tcp:2776:interface=127.0.0.1")
        ports = sorted((p, i) for p, _, _, i in self.reactor.tcpServers)
        self.assertEqual(ports, [(2775, ""), (2776, "127.0.0.1")])

    def test_stopLeavesNothingRunning(self) -> None:
        """After stop, no timer is left and the file is closed."""
        service = self.start()
        self.assertTrue(self.reactor.getDelayedCalls())
        self.successResultOf(service.stopService())
        self.assertFalse(service.pool.is_open)

    def test_missingFleetFile(self) -> None:
        """A fleet.toml naming a cards_db that does not exist fails to start, clearly."""
        config = attrs.evolve(
            self.config,
            fleet=attrs.evolve(self.config.fleet, cards_db=self.result.directory / "nope.db"),
        )
        service = FleetService(config, self.reactor)
        with self.assertRaises(FleetError) as ctx:
            service.startService()
        self.assertIn("nope.db: no such fleet file", str(ctx.exception))
        self.assertFalse((self.result.directory / "nope.db").exists())

    def test_status(self) -> None:
        """status() gives the card count and the counters."""
        service = self.start()
        figures = dict(service.status())
        self.assertEqual(figures["cards"], 3)
        self.assertEqual(figures["live_cards"], 0)
        self.assertEqual(figures["sms_received"], 0)


class LoopTests(ServiceTestCase):
    """A push submitted over SMPP reaches the card; receipt and PoR come back."""

    def test_pushThroughTheSmsc(self) -> None:
        """submit_sm -> card -> receipt and MO PoR as deliver_sm; the card asks for
        the admin server named in the push."""
        service = self.start()
        esme = self.esme(service)
        card = self.cards[0]
        self.submit_push(esme, card, 1, address="192.0.2.99", port=18443)
        self.reactor.advance(0)
        self.reactor.advance(0)
        delivered = self.deliveries(esme)
        receipts = [p for p in delivered if p.esm_class & 0x3C == 0x04]
        mos = [p for p in delivered if p.esm_class & 0x3C == 0]
        self.assertEqual(len(receipts), 1)
        [report, mo] = mos
        for pdu in (report, mo):
            self.assertEqual((pdu.source_addr, pdu.destination_addr), (card.msisdn, OTA_ADDRESS))
            self.assertEqual(pdu.esm_class & 0x40, 0x40)
        self.assertEqual((mo.protocol_id, mo.data_coding), (0x7F, 0xF6))
        header = verify_response(report.short_message, SPI_1639, card.ota, kic=KIC, kid=KID)
        self.assertEqual(header.status, PorStatus.RESPONSE_BY_SMS_SUBMIT)
        por = verify_response(mo.short_message, SPI_1639, card.ota, kic=KIC, kid=KID)
        self.assertEqual((por.status, por.counter), (PorStatus.POR_OK, 1))
        self.assertEqual(self.endpoints.requests, [("192.0.2.99", 18443)])

    def test_countersSavedOnStop(self) -> None:
        """Stopping the fleet saves the counter the card accepted."""
        service = self.start()
        esme = self.esme(service)
        self.submit_push(esme, self.cards[1], 42)
        self.reactor.advance(0)
        self.successResultOf(service.stopService())
        with FleetState.open(self.result.cards_db) as state:
            self.assertEqual(state.load_card(self.cards[1].iccid).ota_counters.last(1), 42)

    def test_periodicSave(self) -> None:
        """The save timer commits changed cards every save_interval seconds."""
        service = self.start()
        esme = self.esme(service)
        self.submit_push(esme, self.cards[2], 9)
        self.reactor.advance(0)
        with FleetState.open(self.result.cards_db) as other:
            self.assertEqual(other.load_card(self.cards[2].iccid).ota_counters.last(1), 0)
        self.reactor.advance(self.config.fleet.save_interval)
        with FleetState.open(self.result.cards_db) as other:
            self.assertEqual(other.load_card(self.cards[2].iccid).ota_counters.last(1), 9)

    def test_duplicateSmsFromTheSmscPlan(self) -> None:
        """duplicate_sms = 1 for a card: the SMSC hands each of its SMS over twice, so
        the card sees the second copy as a replay: after the first copy's report
        (0B) and PoR (00), a second PoR says 02."""
        service = self.start()
        card = self.cards[0]
        service.faults.set_card(card.iccid, {"duplicate_sms": 1.0})
        esme = self.esme(service)
        self.submit_push(esme, card, 3)
        self.reactor.advance(0)
        self.reactor.advance(0)
        mos = [p for p in self.deliveries(esme) if p.esm_class & 0x3C == 0]
        statuses = [
            verify_response(m.short_message, SPI_1639, card.ota, kic=KIC, kid=KID).status
            for m in mos
        ]
        self.assertEqual(
            statuses,
            [PorStatus.RESPONSE_BY_SMS_SUBMIT, PorStatus.POR_OK, PorStatus.COUNTER_LOW],
        )
        self.assertEqual(service.router.stats.sms_received, 2)
        self.assertEqual(len(self.endpoints.requests), 1)

    def test_connectOverride(self) -> None:
        """[channel] connect_host/connect_port replace the push's address and port."""
        config = attrs.evolve(
            self.config,
            channel=attrs.evolve(self.config.channel, connect_host="10.1.2.3", connect_port=4443),
        )
        service = self.start(config)
        esme = self.esme(service)
        self.submit_push(esme, self.cards[0], 1, address="192.0.2.99", port=18443)
        self.reactor.advance(0)
        self.assertEqual(self.endpoints.requests, [("10.1.2.3", 4443)])

    def test_wrongPassword(self) -> None:
        """The SMSC only binds the accounts of fleet.toml."""
        service = self.start()
        esme = Esme(service.smsc)
        self.addCleanup(esme.disconnect)
        self.assertNotEqual(esme.bind("transceiver", "bipgw", "wrong").command_status, 0)
        self.reactor.advance(1)


class ListeningServiceTests(SynchronousTestCase):
    """The fleet's listening child services (L{bipgw.tls.ListeningService}):
    a port while running, its failure reported."""

    def test_cannotListen(self) -> None:
        """A refused listen is logged and fails when_listening."""

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]

        class Refusing:
            def listen(self, factory: object) -> Any:
                return fail(CannotListenError("127.0.0.1", 2775, OSError("in use")))

        service = ListeningService(Refusing(), Factory(), "SMSC")  # type: ignore[arg-type]
        service.startService()
        self.failureResultOf(service.when_listening(), CannotListenError)
        self.assertIsNone(service.port)
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 1)
        self.assertTrue(any(formatEvent(e) == "SMSC cannot listen" for e in events))
        self.successResultOf(service.stopService())


class SaveTests(ServiceTestCase):
    """The save timer survives a failing save."""

    def test_saveNeverRaises(self) -> None:
        """A save that fails is logged and counts 0; the timer keeps running."""

        service = self.start()

        def broken() -> int:
            raise FleetStateError("disk full")

        service.pool.save = broken  # type: ignore[method-assign]
        self.assertEqual(service.save(), 0)
        self.assertEqual(len(self.flushLoggedErrors(FleetStateError)), 1)
        self.reactor.advance(self.config.fleet.save_interval)
        self.assertEqual(len(self.flushLoggedErrors(FleetStateError)), 1)
        del service.pool.save
