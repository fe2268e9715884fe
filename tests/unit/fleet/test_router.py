"""Tests for the fleet router: pushes reach cards, PoRs come back, sessions open, faults bite.

Every push here is built the gateway's way from keys read back out of the
generated vendor file (through the transport key), and handed to the
router as the SMSC would; the admin channel is the real one, over a fake
TCP endpoint that records where the card connects.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    CompactResult,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    PorStatus,
    ResponsePacket,
    Spi,
    verify_response,
)
from bipgw.codec.sms import SmsSubmit
from simcard.agent import ApduExecutor
from simcard.channel import AdminSessionResult, ChannelFaults, open_admin_channel
from simcard.fleet import (
    CardFaults,
    CardPool,
    FaultBook,
    FleetRouter,
    ReplayMode,
    SessionRecord,
)
from simcard.model import PskCredential
from simcard.session_request import AdminSessionRequest
from simcard.smsc import DeliveryOutcome, DeliveryStatus
from simcard.state import FleetState
from tests.unit.fleet.test_harness import (
    OTA_ADDRESS,
    SPI_1629,
    SPI_1639,
    CardKeys,
    FakeSmsc,
    RecordingEndpoints,
    cards_from_files,
    fleet_dir,
    make_fleet,
    push_tpdus,
)

KIC = Kic(1, KicAlgorithm.AES_CBC)
KID = Kid(1, KidAlgorithm.AES_CMAC)
GET_CPLC = bytes.fromhex("80CA9F7F00")


class RouterTestCase(SynchronousTestCase):
    """A generated fleet of four cards behind a router on a C{Clock}."""

    router_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.result, self.config = make_fleet(fleet_dir(self), cards=4)
        self.cards = list(cards_from_files(self.result))
        self.book = FaultBook()
        self.endpoints = RecordingEndpoints()
        self.opened: list[tuple[AdminSessionRequest, PskCredential, ChannelFaults | None]] = []
        self.pool = CardPool(capacity=100, receiver_factory=lambda c: self.router.receiver_for(c))
        self.pool.open(FleetState.open(self.result.cards_db))
        self.router = FleetRouter(
            self.pool, self.book, self.clock, self.opener, **self.router_options
        )
        self.smsc = FakeSmsc()
        self.router.attach_smsc(self.smsc.submit_mo)
        self.records: list[SessionRecord] = []
        self.router.session_listeners.append(self.records.append)
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))
        self.addCleanup(self.pool.close)
        self.addCleanup(self.router.stop)

    def opener(
        self,
        request: AdminSessionRequest,
        psk: PskCredential,
        executor: ApduExecutor,
        faults: ChannelFaults | None,
    ) -> Deferred[AdminSessionResult]:
        self.opened.append((request, psk, faults))
        return open_admin_channel(
            self.clock, self.endpoints, request, psk, executor, faults=faults, timeout=60
        )

    def push(self, card: CardKeys, counter: int, **kwargs: Any) -> DeliveryOutcome:
        """Deliver a push's every part; return the last part's outcome."""
        outcomes = [
            self.successResultOf(self.router.deliver(card.msisdn, tpdu))
            for tpdu in push_tpdus(card.ota, counter, **kwargs)
        ]
        return outcomes[-1]

    def mo_por(self, card: CardKeys, index: int = 0, spi: Spi = SPI_1639) -> ResponsePacket:
        """The PoR in the C{index}th SMS-SUBMIT sent back, checked with the card's keys."""
        from_msisdn, to_address, tpdu = self.smsc.calls[index]
        self.assertEqual((from_msisdn, to_address), (card.msisdn, OTA_ADDRESS))
        submit = SmsSubmit.decode(tpdu)
        self.assertEqual((submit.pid, submit.dcs), (0x7F, 0xF6))
        assert submit.user_data_header is not None
        ud = submit.user_data_header.encode() + submit.user_data
        return verify_response(ud, spi, card.ota, kic=KIC, kid=KID)


class PushTests(RouterTestCase):
    """A secured push for a card reaches it and gets its PoR and session."""

    def test_porBySubmitAndSession(self) -> None:
        """SPI 16 39: the delivery report says "PoR follows by SMS-SUBMIT", the PoR
        SMS-SUBMIT goes to the gateway's OTA address once the clock moves, and the
        card connects to the address and port the push named, with its own PSK."""
        card = self.cards[1]
        outcome = self.push(card, 5, address="192.0.2.7", port=9443)
        self.assertEqual(outcome.status, DeliveryStatus.DELIVERED)
        assert outcome.report_user_data is not None
        report = verify_response(outcome.report_user_data, SPI_1639, card.ota, kic=KIC, kid=KID)
        self.assertEqual(report.status, PorStatus.RESPONSE_BY_SMS_SUBMIT)
        self.assertEqual(self.smsc.calls, [])
        self.clock.advance(0)
        por = self.mo_por(card)
        self.assertEqual((por.status, por.counter, por.tar), (PorStatus.POR_OK, 5, b"\0\0\0"))
        self.assertEqual(CompactResult.from_bytes(por.data), CompactResult(1, 0x9000))
        self.assertEqual(self.endpoints.requests, [("192.0.2.7", 9443)])
        [(request, psk, faults)] = self.opened
        self.assertEqual((request.address, request.port), ("192.0.2.7", 9443))
        self.assertEqual(request.agent_id, card.iccid)
        self.assertEqual((request.host, request.uri), ("127.0.0.1", "/admin"))
        self.assertEqual((psk.identity, psk.key), (card.psk_identity, card.psk))
        self.assertIsNone(faults)
        self.assertEqual(self.router.active_sessions, 1)
        self.assertEqual(self.router.stats.pors_by_sms, 1)

    def test_porInDeliveryReport(self) -> None:
        """SPI 16 29: the PoR comes back in the delivery report and no SMS-SUBMIT is sent."""
        card = self.cards[0]
        outcome = self.push(card, 1, spi=SPI_1629)
        assert outcome.report_user_data is not None
        por = verify_response(outcome.report_user_data, SPI_1629, card.ota, kic=KIC, kid=KID)
        self.assertEqual((por.status, por.counter), (PorStatus.POR_OK, 1))
        self.clock.advance(10)
        self.assertEqual(self.smsc.calls, [])
        self.assertEqual(self.router.stats.pors_in_report, 1)
        self.assertEqual(len(self.endpoints.requests), 1)

    def test_moDelay(self) -> None:
        """With mo_delay, the PoR SMS-SUBMIT leaves that many seconds after the report."""
        self.router._mo_delay = 2.0
        self.push(self.cards[0], 1)
        self.clock.advance(1.9)
        self.assertEqual(self.smsc.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.smsc.calls), 1)

    def test_counterPersistsAndReplayIsRefused(self) -> None:
        """The accepted counter is saved with the card; the same push again is a
        replay: PoR 02 in clear, nothing run, no second session."""
        card = self.cards[2]
        self.push(card, 7)
        self.assertEqual(self.pool.save(), 1)
        with FleetState.open(self.result.cards_db) as other:
            self.assertEqual(other.load_card(card.iccid).ota_counters.last(1), 7)
        self.push(card, 7)
        self.clock.advance(0)
        replay = self.mo_por(card, 1)
        self.assertEqual((replay.status, replay.counter), (PorStatus.COUNTER_LOW, 0))
        self.assertEqual(self.router.stats.sms_refused, 1)
        self.assertEqual(self.router.stats.sessions_requested, 1)

    def test_unknownMsisdn(self) -> None:
        """An SMS for an MSISDN no card has is UNKNOWN (the SMSC does not retry)."""
        outcome = self.successResultOf(self.router.deliver("999", b"\x04"))
        self.assertEqual(outcome.status, DeliveryStatus.UNKNOWN)
        self.assertEqual(self.router.stats.sms_unknown, 1)

    def test_concatenatedPush(self) -> None:
        """A push in two SMS is run once the second part arrives."""
        card = self.cards[0]
        tpdus = push_tpdus(card.ota, 3, commands=(GET_CPLC,) * 20)
        self.assertEqual(len(tpdus), 2)
        first = self.successResultOf(self.router.deliver(card.msisdn, tpdus[0]))
        self.assertEqual(first, DeliveryOutcome.delivered())
        self.assertEqual(self.endpoints.requests, [])
        self.successResultOf(self.router.deliver(card.msisdn, tpdus[1]))
        self.clock.advance(0)
        por = self.mo_por(card)
        self.assertEqual(CompactResult.from_bytes(por.data).executed, 21)
        self.assertEqual(len(self.endpoints.requests), 1)

    def test_cardsLoadedOnDemand(self) -> None:
        """No card is in memory until an SMS arrives for it."""
        self.assertEqual(len(self.pool), 0)
        self.push(self.cards[3], 1, spi=SPI_1629)
        self.assertEqual(len(self.pool), 1)
        self.assertIn(self.cards[3].iccid, self.pool)


class FaultTests(RouterTestCase):
    """Each card fault changes what the router does, as documented."""

    def test_ignorePush(self) -> None:
        """ignore_push: delivered, but no PoR, no session, no counter change."""
        card = self.cards[0]
        self.book.set_card(card.iccid, {"ignore_push": True})
        outcome = self.push(card, 1)
        self.assertEqual(outcome, DeliveryOutcome.delivered())
        self.clock.advance(1)
        self.assertEqual((self.smsc.calls, self.endpoints.requests), ([], []))
        self.assertEqual(self.router.stats.sms_ignored, 1)
        self.assertEqual(len(self.pool), 0)

    def test_onlyTheCardWithTheFault(self) -> None:
        """A card's fault leaves the other cards alone."""
        self.book.set_card(self.cards[0].iccid, {"ignore_push": True})
        self.push(self.cards[1], 1)
        self.clock.advance(0)
        self.assertEqual(len(self.smsc.calls), 1)

    def test_replayPor(self) -> None:
        """replay = por: a fresh counter is refused as a replay (PoR 02, in clear)."""
        card = self.cards[1]
        self.book.set_card(card.iccid, {"replay": ReplayMode.POR})
        self.push(card, 1000)
        self.clock.advance(0)
        por = self.mo_por(card)
        self.assertEqual(por.status, PorStatus.COUNTER_LOW)
        self.assertEqual(self.endpoints.requests, [])
        self.assertEqual(self.pool.get(card.iccid).card.ota_counters.last(1), 0)

    def test_replayStatusSix(self) -> None:
        """With replay_status 6, the replay fault answers PoR 06, as some real cards do."""
        self.router.stop()
        router = FleetRouter(
            self.pool, self.book, self.clock, self.opener, replay_status=PorStatus.SECURITY_ERROR
        )
        self.router = router
        router.attach_smsc(self.smsc.submit_mo)
        card = self.cards[1]
        self.book.set_card(card.iccid, {"replay": ReplayMode.POR})
        self.push(card, 1)
        self.clock.advance(0)
        self.assertEqual(self.mo_por(card).status, PorStatus.SECURITY_ERROR)

    def test_replayIgnore(self) -> None:
        """replay = ignore: the packet is refused and nothing at all is answered."""
        card = self.cards[1]
        self.book.set_fleet({"replay": ReplayMode.IGNORE})
        outcome = self.push(card, 1, spi=SPI_1629)
        self.assertEqual(outcome, DeliveryOutcome.delivered())
        self.clock.advance(1)
        self.assertEqual((self.smsc.calls, self.endpoints.requests), ([], []))
        self.assertEqual(self.router.stats.sms_refused, 1)

    def test_slowCard(self) -> None:
        """slow: the card answers the SMS only after that many seconds."""
        card = self.cards[0]
        self.book.set_card(card.iccid, {"slow": 3.0})
        [tpdu] = push_tpdus(card.ota, 1, spi=SPI_1629)
        d = self.router.deliver(card.msisdn, tpdu)
        self.clock.advance(2.9)
        self.assertNoResult(d)
        self.assertEqual(self.endpoints.requests, [])
        self.clock.advance(0.1)
        outcome = self.successResultOf(d)
        assert outcome.report_user_data is not None
        self.assertEqual(len(self.endpoints.requests), 1)
        [(_, _, faults)] = self.opened
        self.assertEqual(faults, ChannelFaults(post_delay=3.0))

    def test_slowCardWhenStopping(self) -> None:
        """A slow card's pending SMS fails (for the SMSC to retry) when the fleet stops."""
        card = self.cards[0]
        self.book.set_card(card.iccid, {"slow": 3.0})
        [tpdu] = push_tpdus(card.ota, 1)
        d = self.router.deliver(card.msisdn, tpdu)
        self.router.stop()
        self.assertEqual(self.successResultOf(d).status, DeliveryStatus.FAILED)

    def test_slowCardBreaking(self) -> None:
        """A delayed SMS whose handling breaks still gets an outcome (FAILED), and the
        error is logged."""
        card = self.cards[0]
        self.book.set_card(card.iccid, {"slow": 1.0})
        [tpdu] = push_tpdus(card.ota, 1)
        d = self.router.deliver(card.msisdn, tpdu)

        def broken(iccid: str) -> Any:
            raise RuntimeError("bug")

        self.patch(self.pool, "get", broken)
        self.clock.advance(1.0)
        self.assertEqual(self.successResultOf(d).status, DeliveryStatus.FAILED)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_sessionFaultsReachTheChannel(self) -> None:
        """wrong_psk, drop_after_scripts and malformed_http go to the card's channel."""
        card = self.cards[2]
        self.book.set_card(
            card.iccid, {"wrong_psk": True, "drop_after_scripts": 1, "malformed_http": True}
        )
        self.push(card, 1)
        [(_, _, faults)] = self.opened
        self.assertEqual(
            faults, ChannelFaults(drop_after_scripts=1, malformed_http=True, wrong_psk=True)
        )

    def test_faultChangedAtRunTime(self) -> None:
        """A fault set between two pushes applies to the second."""
        card = self.cards[0]
        self.push(card, 1, spi=SPI_1629)
        self.endpoints.endpoints[0].attempts[0].errback(ConnectionRefusedError())
        self.book.set_card(card.iccid, {"ignore_push": True})
        self.assertEqual(self.push(card, 2, spi=SPI_1629), DeliveryOutcome.delivered())
        self.book.clear_card(card.iccid)
        self.assertIsNotNone(self.push(card, 3, spi=SPI_1629).report_user_data)


class SessionLimitTests(RouterTestCase):
    """One session per card, a bounded number at once, a bounded queue."""

    router_options = {"max_sessions": 1, "session_queue": 1}

    def fail_connection(self, index: int) -> None:
        self.endpoints.endpoints[index].attempts[0].errback(ConnectionRefusedError())

    def test_sessionFailureRecorded(self) -> None:
        """A session that cannot connect ends as "unreachable", and the card is released."""
        card = self.cards[0]
        self.push(card, 1, spi=SPI_1629)
        self.fail_connection(0)
        [record] = self.records
        self.assertEqual((record.iccid, record.failure), (card.iccid, "unreachable"))
        self.assertEqual(self.router.stats.failures["unreachable"], 1)
        self.assertEqual(self.router.active_sessions, 0)
        self.assertEqual(self.pool.get(card.iccid).pins, 0)

    def test_busyCardIgnoresAnotherRequest(self) -> None:
        """A push for a card already in a session does not start another one."""
        card = self.cards[0]
        self.push(card, 1, spi=SPI_1629)
        self.push(card, 2, spi=SPI_1629)
        self.assertEqual(len(self.endpoints.requests), 1)
        self.assertEqual(self.router.stats.sessions_busy, 1)

    def test_queueThenStart(self) -> None:
        """Beyond max_sessions a request waits, and starts when a slot frees up."""
        self.push(self.cards[0], 1, spi=SPI_1629)
        self.push(self.cards[1], 1, spi=SPI_1629)
        self.assertEqual((self.router.active_sessions, self.router.queued_sessions), (1, 1))
        self.assertEqual(len(self.endpoints.requests), 1)
        self.fail_connection(0)
        self.assertEqual((self.router.active_sessions, self.router.queued_sessions), (1, 0))
        self.assertEqual(len(self.endpoints.requests), 2)
        self.assertEqual(self.opened[1][0].agent_id, self.cards[1].iccid)

    def test_queueFull(self) -> None:
        """Beyond the queue, requests are dropped and counted."""
        for card in self.cards[:3]:
            self.push(card, 1, spi=SPI_1629)
        self.assertEqual(self.router.stats.sessions_dropped, 1)
        self.assertEqual(self.router.stats.peak_sessions, 1)

    def test_stopAbortsSessions(self) -> None:
        """stop() aborts running sessions, empties the queue and leaves no timer."""
        self.push(self.cards[0], 1, spi=SPI_1629)
        self.push(self.cards[1], 1, spi=SPI_1629)
        self.router.stop()
        [record] = self.records
        self.assertEqual(record.failure, "cancelled")
        self.assertEqual((self.router.active_sessions, self.router.queued_sessions), (0, 0))
        self.assertEqual([live.pins for live in self.pool.live()], [0, 0])
        outcome = self.successResultOf(self.router.deliver(self.cards[2].msisdn, b"\x04"))
        self.assertEqual(outcome.status, DeliveryStatus.FAILED)


class CardFaultsTypeTests(SynchronousTestCase):
    """The router asks the book per SMS: a CardFaults value is all it needs."""

    def test_defaultBookHasNoFaults(self) -> None:
        """A new book gives every card no faults."""
        self.assertEqual(FaultBook().for_card("8988211000000000011"), CardFaults())


class TripleDesTests(SynchronousTestCase):
    """A 3DES fleet verifies pushes secured with 3DES two-key (KIc/KID 15)."""

    def test_push(self) -> None:
        """The PoR of a 3DES push verifies with the card's 3DES keys."""
        clock = Clock()
        result, _ = make_fleet(fleet_dir(self), cards=1, algorithm="3des")
        [card] = cards_from_files(result)
        book = FaultBook()
        router: FleetRouter
        pool = CardPool(capacity=1, receiver_factory=lambda c: router.receiver_for(c))
        pool.open(FleetState.open(result.cards_db))
        self.addCleanup(pool.close)
        opened: list[AdminSessionRequest] = []

        def opener(request: AdminSessionRequest, *args: object) -> Deferred[AdminSessionResult]:
            opened.append(request)
            return Deferred()

        router = FleetRouter(pool, book, clock, opener)
        [tpdu] = push_tpdus(card.ota, 1, spi=SPI_1629, algorithm="3des")
        outcome = self.successResultOf(router.deliver(card.msisdn, tpdu))
        assert outcome.report_user_data is not None
        por = verify_response(
            outcome.report_user_data,
            SPI_1629,
            card.ota,
            kic=Kic(1, KicAlgorithm.TDES_2KEY),
            kid=Kid(1, KidAlgorithm.TDES_2KEY),
        )
        self.assertEqual((por.status, por.counter), (PorStatus.POR_OK, 1))
        self.assertEqual(len(opened), 1)
