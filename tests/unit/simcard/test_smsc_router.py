"""The simulated SMSC's message centre: MT hand-over, receipts, store-and-forward, MO."""

from __future__ import annotations

from typing import Any

from bipgw.codec.smpp import (
    BindReceiver,
    CommandStatus,
    DeliverSm,
    EnquireLink,
    GenericNack,
    MessageState,
    NetworkErrorCode,
    SubmitSmResp,
)
from bipgw.codec.sms import Address, SmsDeliver, SmsSubmit, UserDataHeader
from simcard.smsc import DeliveryOutcome, DeliveryStatus
from tests import vectors
from tests.unit.simcard.test_smsc_harness import OTA_UD, Esme, SmscTestCase

S = CommandStatus
POR_UD = bytes.fromhex(
    vectors.by_name("scp80_sms_response_packets", "3DES PoR CC only (8988211000000467285)")[
        "sms_user_data"
    ]
)


def _por_submit(destination: str = "12", user_data: bytes = POR_UD) -> bytes:
    """A card's SMS-SUBMIT carrying a PoR, as the fleet hands it to submit_mo."""
    header, body = UserDataHeader.decode(user_data)
    return SmsSubmit(
        destination_address=Address(1, 1, destination),
        mr=3,
        pid=0x7F,
        dcs=0xF6,
        user_data_header=header,
        user_data=body,
    ).encode()


class MtTests(SmscTestCase):
    """A submit_sm reaches the router as the SMS-DELIVER a handset would get."""

    def test_vectorSubmitGivesTpdu(self) -> None:
        """The public submit_sm becomes an SMS-DELIVER with its OA, PID, DCS, UD and our SCTS."""
        esme = self.esme(self.smsc())
        esme.bind()
        vector = vectors.by_name("smpp34", "submit_sm OTA SMS (esm_class 40, pid 7f, dcs f6)")
        esme.protocol.dataReceived(bytes.fromhex(vector["pdu"]))
        esme.received()
        self.assertEqual(self.router.calls, [])
        self.clock.advance(0)
        [(msisdn, tpdu)] = self.router.calls
        self.assertEqual(msisdn, "23")
        framing = vectors.section("sms_pp_framing")[0]
        # Same TPDU as the public framing vector, with this submit_sm's
        # source "12" (TON 1, NPI 1) as the OA instead of the vector's.
        expected = (
            bytes.fromhex(framing["tp_first_octet"])
            + bytes.fromhex("029121")
            + bytes.fromhex(framing["tpdu"])[7:]
        )
        self.assertEqual(tpdu, expected)
        deliver = SmsDeliver.decode(tpdu)
        self.assertEqual(deliver.originating_address, Address(1, 1, "12"))
        self.assertEqual((deliver.pid, deliver.dcs), (0x7F, 0xF6))
        assert deliver.user_data_header is not None
        self.assertEqual(deliver.user_data_header.encode() + deliver.user_data, OTA_UD)

    def test_framingVectorExact(self) -> None:
        """With the vector's OA and time, the TPDU is byte for byte the sms_pp_framing vector."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.submit(source_addr_ton=0, source_addr_npi=1, source_addr="12345678")
        self.clock.advance(0)
        framing = vectors.section("sms_pp_framing")[0]
        self.assertEqual(self.router.calls, [("4477001", bytes.fromhex(framing["tpdu"]))])

    def test_messagePayload(self) -> None:
        """Content in message_payload travels like short_message."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.submit(short_message=b"", message_payload=OTA_UD)
        self.assertEqual(esme.one().command_status, 0)
        self.clock.advance(0)
        deliver = SmsDeliver.decode(self.router.calls[0][1])
        self.assertEqual(deliver.user_data, OTA_UD[3:])

    def test_refusedSubmit(self) -> None:
        """A submission the SMSC cannot convert is refused with its status and logged."""
        esme = self.esme(self.smsc())
        esme.bind()
        seq = esme.submit(destination_addr="not-a-number")
        self.assertEqual(esme.one(), SubmitSmResp(seq, S.ESME_RINVDSTADR))
        self.assertTrue(self.logged("field destination_addr"))
        self.assertEqual(self.router.calls, [])


class ReceiptTests(SmscTestCase):
    """registered_delivery asks for a receipt, sent to a receiving bind of the account."""

    def _deliver_and_receipt(self, registered: int, outcome: DeliveryOutcome) -> list[DeliverSm]:
        self.router.default = outcome
        esme = self.esme(self.smsc())
        esme.bind()
        esme.submit(registered_delivery=registered)
        esme.received()
        self.clock.advance(0)
        receipts = [p for p in esme.received() if isinstance(p, DeliverSm)]
        for receipt in receipts:
            esme.answer(receipt)
        return receipts

    def test_receipt(self) -> None:
        """A delivered message with registered_delivery 1 gets a DELIVRD receipt."""
        self.clock.advance(60)
        [receipt] = self._deliver_and_receipt(1, DeliveryOutcome.delivered())
        self.assertEqual(receipt.esm_class, 0x04)
        self.assertTrue(receipt.is_delivery_receipt)
        self.assertEqual((receipt.source_addr, receipt.destination_addr), ("4477001", "12"))
        self.assertEqual(receipt.receipted_message_id, "00000001")
        self.assertEqual(receipt.message_state, MessageState.DELIVERED)
        self.assertIsNone(receipt.network_error_code)
        parsed = receipt.delivery_receipt()
        self.assertEqual(parsed.id, "00000001")
        self.assertEqual(parsed.stat, "DELIVRD")
        self.assertEqual((parsed.sub, parsed.dlvrd, parsed.err), (1, 1, "000"))
        assert parsed.submit_date is not None
        self.assertEqual(parsed.submit_date.isoformat(), "2022-07-25T00:01:00")
        self.assertIsNone(parsed.text)

    def test_noReceiptUnlessAsked(self) -> None:
        """registered_delivery 0 gets no receipt."""
        self.assertEqual(self._deliver_and_receipt(0, DeliveryOutcome.delivered()), [])

    def test_failureOnly(self) -> None:
        """registered_delivery 2 reports failures only, with the MAP error."""
        self.assertEqual(self._deliver_and_receipt(2, DeliveryOutcome.delivered()), [])
        [receipt] = self._deliver_and_receipt(2, DeliveryOutcome.unknown())
        self.assertEqual(receipt.message_state, MessageState.UNDELIVERABLE)
        self.assertEqual(receipt.network_error_code, NetworkErrorCode(3, 1))
        parsed = receipt.delivery_receipt()
        self.assertEqual((parsed.stat, parsed.err, parsed.dlvrd), ("UNDELIV", "001", 0))

    def test_successOnly(self) -> None:
        """registered_delivery 3 (SMPP 5.0 meaning) reports successes only."""
        self.assertEqual(self._deliver_and_receipt(3, DeliveryOutcome.unknown()), [])
        self.assertEqual(len(self._deliver_and_receipt(3, DeliveryOutcome.delivered())), 1)

    def test_textMessageReceiptText(self) -> None:
        """A text message's receipt quotes its first 20 characters."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.submit(
            esm_class=0,
            protocol_id=0,
            data_coding=1,
            short_message=b"Hello card, this is a long text",
            registered_delivery=1,
        )
        self.clock.advance(0)
        receipt = esme.received()[-1]
        assert isinstance(receipt, DeliverSm)
        self.assertEqual(receipt.delivery_receipt().text, "Hello card, this is ")
        esme.answer(receipt)

    def test_outboxBounded(self) -> None:
        """Receipts wait for a receiver only up to outbox_limit; beyond, they are dropped."""
        factory = self.smsc(outbox_limit=1)
        tx = self.esme(factory)
        tx.bind("transmitter")
        tx.submit(registered_delivery=1)
        tx.submit(registered_delivery=1)
        self.clock.advance(0)
        self.assertEqual(factory.centre.pending("gw"), 1)
        self.assertEqual(factory.centre.counters.dropped, 1)
        self.assertTrue(self.logged("outbox for gw full (1); dropping a receipt"))


class StoreAndForwardTests(SmscTestCase):
    """FAILED hand-overs are retried; UNKNOWN is final."""

    def test_failedThenDelivered(self) -> None:
        """Two failures then success: three hand-overs store_retry_delay apart, one DELIVRD."""
        self.router.outcomes = [DeliveryOutcome.failed("absent")] * 2
        esme = self.esme(
            self.smsc(store_retry_delay=30, store_max_attempts=3, enquire_link_interval=0)
        )
        esme.bind()
        esme.submit(registered_delivery=1)
        esme.received()
        self.clock.advance(0)
        self.assertEqual(len(self.router.calls), 1)
        self.clock.advance(29)
        self.assertEqual(len(self.router.calls), 1)
        self.clock.advance(1)
        self.clock.advance(30)
        self.assertEqual(len(self.router.calls), 3)
        [receipt] = esme.received()
        assert isinstance(receipt, DeliverSm)
        self.assertEqual(receipt.delivery_receipt().stat, "DELIVRD")
        esme.answer(receipt)

    def test_givesUp(self) -> None:
        """After store_max_attempts failures the message is UNDELIV with MAP error 32."""
        self.router.default = DeliveryOutcome.failed("absent subscriber")
        factory = self.smsc(store_retry_delay=10, store_max_attempts=2)
        esme = self.esme(factory)
        esme.bind()
        esme.submit(registered_delivery=1)
        esme.received()
        self.clock.advance(0)
        self.clock.advance(10)
        self.assertEqual(len(self.router.calls), 2)
        [receipt] = esme.received()
        assert isinstance(receipt, DeliverSm)
        self.assertEqual(receipt.delivery_receipt().err, "032")
        self.assertEqual(receipt.network_error_code, NetworkErrorCode(3, 32))
        esme.answer(receipt)
        self.assertEqual(factory.centre.counters.undeliverable, 1)
        self.assertTrue(self.logged("absent subscriber"))

    def test_unknownIsFinal(self) -> None:
        """UNKNOWN is not retried."""
        self.router.default = DeliveryOutcome.unknown()
        esme = self.esme(self.smsc())
        esme.bind()
        esme.submit()
        self.clock.advance(0)
        self.clock.advance(1000)
        self.assertEqual(len(self.router.calls), 1)

    def test_routerRaises(self) -> None:
        """A router that raises counts as a failed hand-over, logged, and is retried."""
        self.router.outcomes = [RuntimeError("fleet bug")]
        esme = self.esme(self.smsc(store_retry_delay=1))
        esme.bind()
        esme.submit()
        self.clock.advance(0)
        self.clock.advance(1)
        self.assertEqual(len(self.router.calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_routerReturnsGarbage(self) -> None:
        """A router answer that is not a DeliveryOutcome counts as a failure."""
        self.router.outcomes = ["yes"]
        esme = self.esme(self.smsc(store_retry_delay=1))
        esme.bind()
        esme.submit()
        self.clock.advance(0)
        self.clock.advance(1)
        self.assertEqual(len(self.router.calls), 2)

    def test_porInDeliveryReport(self) -> None:
        """A PoR in the delivery report is forwarded to the submitter as an MO deliver_sm."""
        self.router.default = DeliveryOutcome.delivered(report_user_data=POR_UD)
        esme = self.esme(self.smsc())
        esme.bind()
        esme.submit()
        esme.received()
        self.clock.advance(0)
        [por] = esme.received()
        assert isinstance(por, DeliverSm)
        self.assertEqual(
            (por.esm_class, por.protocol_id, por.data_coding, por.content),
            (0x40, 0x7F, 0xF6, POR_UD),
        )
        self.assertEqual((por.source_addr, por.destination_addr), ("4477001", "12"))
        esme.answer(por)


class DeliverWindowTests(SmscTestCase):
    """deliver_sm towards an ESME: bounded window, retries, requeue on disconnect."""

    def test_windowBounded(self) -> None:
        """At most deliver_window deliver_sm are outstanding; an answer frees a slot."""
        factory = self.smsc(deliver_window=2)
        esme = self.esme(factory)
        esme.bind("receiver")
        results = [factory.submit_mo(f"447700{i}", "12", _por_submit()) for i in range(3)]
        first = esme.received()
        self.assertEqual(len(first), 2)
        self.assertEqual(len({p.sequence_number for p in first}), 2)
        esme.answer(first[1])
        self.assertNoResult(results[0])
        [third] = esme.received()
        assert isinstance(third, DeliverSm)
        self.assertEqual(third.source_addr, "4477002")
        esme.answer(first[0])
        esme.answer(third)
        self.assertEqual(
            [self.successResultOf(r).status for r in results], [DeliveryStatus.DELIVERED] * 3
        )

    def test_errorAnswerRetried(self) -> None:
        """An error deliver_sm_resp resends after deliver_retry_delay with a new sequence."""
        factory = self.smsc(deliver_retry_delay=5)
        esme = self.esme(factory)
        esme.bind("receiver")
        result = factory.submit_mo("4477001", "12", _por_submit())
        first = esme.one()
        esme.answer(first, S.ESME_RX_T_APPN)
        self.clock.advance(4.9)
        self.assertEqual(esme.received(), [])
        self.clock.advance(0.1)
        second = esme.one()
        self.assertNotEqual(second.sequence_number, first.sequence_number)
        self.assertEqual(second, DeliverSm(second.sequence_number, **_fields(first)))
        esme.answer(second)
        self.assertEqual(self.successResultOf(result), DeliveryOutcome.delivered())

    def test_givesUp(self) -> None:
        """After deliver_max_attempts refusals the MO fails with the last reason."""
        factory = self.smsc(deliver_retry_delay=1, deliver_max_attempts=2)
        esme = self.esme(factory)
        esme.bind("receiver")
        result = factory.submit_mo("4477001", "12", _por_submit())
        esme.answer(esme.one(), S.ESME_RX_P_APPN)
        self.clock.advance(1)
        esme.send(GenericNack(esme.one().sequence_number, int(S.ESME_RSYSERR)))
        outcome = self.successResultOf(result)
        self.assertEqual(outcome.status, DeliveryStatus.FAILED)
        self.assertIn("ESME_RSYSERR", outcome.reason)
        self.assertEqual(factory.centre.counters.mo_failed, 1)

    def test_unansweredTimesOut(self) -> None:
        """A deliver_sm unanswered for deliver_response_timeout is retried."""
        factory = self.smsc(
            deliver_response_timeout=10, deliver_retry_delay=0, enquire_link_interval=0
        )
        esme = self.esme(factory)
        esme.bind("receiver")
        result = factory.submit_mo("4477001", "12", _por_submit())
        esme.one()
        self.clock.advance(10)
        again = esme.one()
        esme.answer(again)
        self.assertEqual(self.successResultOf(result).status, DeliveryStatus.DELIVERED)

    def test_inFlightRequeuedOnDisconnect(self) -> None:
        """A deliver_sm in flight on a dropped connection goes to the next bind."""
        factory = self.smsc()
        first = self.esme(factory)
        first.bind("receiver")
        result = factory.submit_mo("4477001", "12", _por_submit())
        lost = first.one()
        first.disconnect()
        self.assertNoResult(result)
        second = self.esme(factory, 40001)
        second.send(BindReceiver(1, system_id="gw2", password="other"))
        _, again = second.received()
        assert isinstance(again, DeliverSm)
        self.assertEqual(again.content, lost.content)  # type: ignore[attr-defined]
        second.answer(again)
        self.assertEqual(self.successResultOf(result).status, DeliveryStatus.DELIVERED)

    def test_staleAnswerIgnored(self) -> None:
        """A deliver_sm_resp for nothing outstanding is logged and ignored."""
        esme = self.esme(self.smsc())
        esme.bind("receiver")
        esme.send(DeliverSm(77).response())
        esme.send(EnquireLink(78))
        self.assertEqual(len(esme.received()), 1)
        self.assertTrue(self.logged("answers nothing outstanding (sequence 77)"))


def _fields(pdu: object) -> dict[str, Any]:
    import attrs

    values = attrs.asdict(pdu, recurse=False)  # type: ignore[arg-type]
    values.pop("sequence_number")
    values.pop("tlv_order")
    return values


class MoTests(SmscTestCase):
    """A card's SMS-SUBMIT reaches the ESME as deliver_sm."""

    def test_porBecomesDeliverSm(self) -> None:
        """The PoR SMS-SUBMIT becomes deliver_sm esm 40, PID 7F, DCS F6, with the PoR UD."""
        factory = self.smsc()
        esme = self.esme(factory)
        esme.bind()
        result = factory.submit_mo("+4477001", "12", _por_submit())
        por = esme.one()
        assert isinstance(por, DeliverSm)
        # The same fields as the public "deliver_sm with PoR" vector, whose
        # content travels in message_payload; ours fits short_message.
        vector = vectors.by_name("smpp34", "deliver_sm with PoR in message_payload TLV 0x0424")
        from bipgw.codec.smpp import decode

        reference = decode(bytes.fromhex(vector["pdu"]))
        assert isinstance(reference, DeliverSm)
        self.assertEqual(por.content, reference.content)
        for name in ("esm_class", "protocol_id", "data_coding", "source_addr_ton", "dest_addr_ton"):
            self.assertEqual(getattr(por, name), getattr(reference, name), name)
        self.assertEqual((por.source_addr, por.destination_addr), ("4477001", "12"))
        self.assertEqual(por.short_message, POR_UD)
        self.assertIsNone(por.message_payload)
        self.assertNoResult(result)
        esme.answer(por)
        self.assertEqual(self.successResultOf(result), DeliveryOutcome.delivered())
        self.assertEqual(factory.centre.counters.mo_delivered, 1)

    def test_routedBySystemId(self) -> None:
        """mo_routes sends an address to its system_id's binds only."""
        factory = self.smsc(mo_routes={"777": "gw2"})
        gw = self.esme(factory)
        gw.bind("receiver")
        gw2 = self.esme(factory, 40001)
        gw2.bind("receiver", system_id="gw2")
        factory.submit_mo("4477001", "777", _por_submit("777"))
        self.assertEqual(gw.received(), [])
        por = gw2.one()
        gw2.answer(por)

    def test_defaultAnyReceiver(self) -> None:
        """Unrouted MO goes to any receiving bind, never to a transmitter."""
        factory = self.smsc()
        tx = self.esme(factory)
        tx.bind("transmitter")
        result = factory.submit_mo("4477001", "12", _por_submit())
        self.assertEqual(tx.received(), [])
        self.assertEqual(factory.centre.pending(None), 1)
        rx = self.esme(factory, 40001)
        rx.send(BindReceiver(1, system_id="gw2", password="other"))
        _, por = rx.received()
        rx.answer(por)
        self.assertEqual(self.successResultOf(result).status, DeliveryStatus.DELIVERED)

    def test_queuedUntilBound(self) -> None:
        """With no bind, MO waits; the first receiver bind gets it."""
        factory = self.smsc(mo_routes={"12": "gw"})
        result = factory.submit_mo("4477001", "12", _por_submit())
        self.assertNoResult(result)
        esme = Esme(factory)
        self.addCleanup(esme.disconnect)
        esme.send(BindReceiver(1, system_id="gw", password="secret"))
        _, por = esme.received()
        esme.answer(por)
        self.assertEqual(self.successResultOf(result).status, DeliveryStatus.DELIVERED)

    def test_unknownRoute(self) -> None:
        """A route to a system_id with no account is UNKNOWN at once."""
        factory = self.smsc(mo_routes={"12": "ghost"})
        outcome = self.successResultOf(factory.submit_mo("4477001", "12", _por_submit()))
        self.assertEqual(outcome.status, DeliveryStatus.UNKNOWN)

    def test_badTpdu(self) -> None:
        """Bytes that are not an SMS-SUBMIT fail at once, logged, without raising."""
        factory = self.smsc()
        outcome = self.successResultOf(factory.submit_mo("4477001", "12", b"\x00\x01"))
        self.assertEqual(outcome.status, DeliveryStatus.FAILED)
        self.assertTrue(self.logged("is not an SMS-SUBMIT"))

    def test_cancel(self) -> None:
        """A cancelled MO is never sent."""
        factory = self.smsc()
        result = factory.submit_mo("4477001", "12", _por_submit())
        result.cancel()
        self.failureResultOf(result)
        esme = self.esme(factory)
        esme.bind("receiver")
        self.assertEqual(factory.centre.pending(None), 0)


class StopTests(SmscTestCase):
    """Stopping the SMSC releases everything."""

    def test_stop(self) -> None:
        """stopFactory cancels timers, fails waiting MO and closes connections."""
        self.router.default = DeliveryOutcome.failed("absent")
        factory = self.smsc()
        esme = self.esme(factory)
        esme.bind("transmitter")
        esme.submit()
        self.clock.advance(0)
        result = factory.submit_mo("4477001", "12", _por_submit())
        self.assertTrue(self.clock.getDelayedCalls())
        factory.stopFactory()
        self.assertTrue(esme.closing)
        esme.disconnect()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.successResultOf(result).status, DeliveryStatus.FAILED)
        late = Esme(factory)
        self.addCleanup(late.disconnect)
        late.bind("transmitter")
        seq = late.submit()
        self.assertEqual(late.one(), SubmitSmResp(seq, S.ESME_RSYSERR))
