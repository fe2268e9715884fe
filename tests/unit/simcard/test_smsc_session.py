"""The simulated SMSC's session rules: binds, permissions, liveness, bad input, limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from bipgw.codec.smpp import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiverResp,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    PduDecoder,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    encode,
)
from simcard.smsc import BindMode, SessionState, TokenBucket
from tests import vectors
from tests.unit.simcard.test_smsc_harness import SmscTestCase

S = CommandStatus


class BindTests(SmscTestCase):
    """Binds are authenticated against the accounts and give the right mode."""

    def test_bindTransceiverVector(self) -> None:
        """The public bind_transceiver PDU (test/test) binds and is answered in kind."""
        factory = self.smsc()
        esme = self.esme(factory)
        pdu = vectors.by_name("smpp34", "bind_transceiver system_id=test password=test")["pdu"]
        esme.protocol.dataReceived(bytes.fromhex(pdu))
        resp = esme.one()
        self.assertEqual(resp, BindTransceiverResp(1, 0, "simsmsc", sc_interface_version=0x34))
        assert esme.protocol.session is not None
        self.assertEqual(esme.protocol.session.mode, BindMode.TRANSCEIVER)
        self.assertEqual(esme.protocol.session.system_id, "test")
        self.assertTrue(self.logged("ESME test bound as transceiver from 192.0.2.1:40000"))

    def test_eachMode(self) -> None:
        """Transmitter, receiver and transceiver binds get their own response type."""
        factory = self.smsc()
        for port, (mode, cls) in enumerate(
            (
                ("transmitter", BindTransmitterResp),
                ("receiver", BindReceiverResp),
                ("transceiver", BindTransceiverResp),
            )
        ):
            resp = self.esme(factory, 40000 + port).bind(mode)
            self.assertIsInstance(resp, cls)
            self.assertEqual(resp.command_status, 0)

    def test_wrongPassword(self) -> None:
        """A wrong password gets ESME_RINVPASWD, then the link closes after the grace."""
        factory = self.smsc(bind_failure_grace=0.5)
        esme = self.esme(factory)
        resp = esme.bind("transmitter", password="guess123")
        self.assertEqual(resp.command_status, S.ESME_RINVPASWD)
        self.assertFalse(esme.closing)
        esme.send(EnquireLink(7))
        self.assertEqual(esme.received(), [])
        self.clock.advance(0.5)
        self.assertTrue(esme.closing)
        self.assertTrue(self.logged("refused transmitter bind for system_id 'gw'"))
        self.assertFalse(self.logged("guess123"))

    def test_unknownSystemId(self) -> None:
        """An unknown system_id gets ESME_RINVSYSID and the connection closes."""
        esme = self.esme(self.smsc())
        self.assertEqual(
            esme.bind(system_id="nobody", password="x").command_status, S.ESME_RINVSYSID
        )
        self.clock.advance(0.5)
        self.assertTrue(esme.closing)

    def test_alreadyBound(self) -> None:
        """A second bind on a bound connection gets ESME_RALYBND and changes nothing."""
        esme = self.esme(self.smsc())
        esme.bind("receiver")
        self.assertEqual(esme.bind("transmitter").command_status, S.ESME_RALYBND)
        assert esme.protocol.session is not None
        self.assertEqual(esme.protocol.session.mode, BindMode.RECEIVER)

    def test_bindTimeout(self) -> None:
        """A connection that never binds is closed after bind_timeout."""
        esme = self.esme(self.smsc(bind_timeout=5))
        self.clock.advance(4.9)
        self.assertFalse(esme.closing)
        self.clock.advance(0.1)
        self.assertTrue(esme.closing)

    def test_oldInterfaceVersion(self) -> None:
        """An SMPP 3.3 ESME gets no sc_interface_version TLV (it could not parse it)."""
        from bipgw.codec.smpp import BindTransmitter

        esme = self.esme(self.smsc())
        esme.send(BindTransmitter(1, system_id="gw", password="secret", interface_version=0x33))
        self.assertEqual(esme.one(), BindTransmitterResp(1, 0, "simsmsc"))


class PermissionTests(SmscTestCase):
    """What a connection may do depends on its bind state and mode."""

    def test_commandsBeforeBind(self) -> None:
        """Before a bind, requests get ESME_RINVBNDSTS; enquire_link is still answered."""
        esme = self.esme(self.smsc())
        esme.submit()
        esme.send(Unbind(20))
        esme.send(QuerySm(21, message_id="1"))
        esme.send(EnquireLink(22))
        self.assertEqual(
            esme.received(),
            [
                SubmitSmResp(1, S.ESME_RINVBNDSTS),
                UnbindResp(20, S.ESME_RINVBNDSTS),
                QuerySmResp(21, S.ESME_RINVBNDSTS),
                EnquireLinkResp(22),
            ],
        )
        self.assertEqual(self.router.calls, [])

    def test_submitOnReceiver(self) -> None:
        """submit_sm on a receiver bind is refused with ESME_RINVBNDSTS."""
        esme = self.esme(self.smsc())
        esme.bind("receiver")
        seq = esme.submit()
        self.assertEqual(esme.one(), SubmitSmResp(seq, S.ESME_RINVBNDSTS))
        self.clock.advance(0)
        self.assertEqual(self.router.calls, [])

    def test_transmitterGetsNoDeliverSm(self) -> None:
        """A receipt for a transmitter's message waits for a receiver bind of that account."""
        factory = self.smsc()
        tx = self.esme(factory)
        tx.bind("transmitter")
        tx.submit(registered_delivery=1)
        tx.received()
        self.clock.advance(0)
        self.assertEqual(tx.received(), [])
        self.assertEqual(factory.centre.pending("gw"), 1)
        other = self.esme(factory, 40001)
        other.bind("receiver", system_id="gw2")
        self.assertEqual(other.received(), [])
        rx = self.esme(factory, 40002)
        rx.send(BindReceiver(1, system_id="gw", password="secret"))
        bound, receipt = rx.received()
        self.assertIsInstance(bound, BindReceiverResp)
        assert isinstance(receipt, DeliverSm)
        self.assertEqual(receipt.esm_class, 0x04)
        rx.answer(receipt)
        self.assertEqual(factory.centre.pending("gw"), 0)

    def test_deliverSmFromEsme(self) -> None:
        """An ESME may not send deliver_sm: ESME_RINVBNDSTS."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.send(DeliverSm(5, source_addr="1", destination_addr="2"))
        self.assertEqual(esme.one(), DeliverSmResp(5, S.ESME_RINVBNDSTS))

    def test_unsupportedCommands(self) -> None:
        """query_sm, cancel_sm, replace_sm and data_sm get their own failure status."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.send(QuerySm(2, message_id="1"))
        esme.send(CancelSm(3, message_id="1"))
        esme.send(ReplaceSm(4, message_id="1"))
        esme.send(DataSm(5, destination_addr="1"))
        self.assertEqual(
            esme.received(),
            [
                QuerySmResp(2, S.ESME_RQUERYFAIL),
                CancelSmResp(3, S.ESME_RCANCELFAIL),
                ReplaceSmResp(4, S.ESME_RREPLACEFAIL),
                DataSmResp(5, S.ESME_RSUBMITFAIL),
            ],
        )

    def test_unansweredPdusIgnored(self) -> None:
        """outbind and stray responses get no answer and do not break the session."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.send(Outbind(9, system_id="x"))
        esme.send(SubmitSmResp(10, 0, "1"))
        esme.send(EnquireLink(11))
        self.assertEqual(esme.received(), [EnquireLinkResp(11)])


class UnbindTests(SmscTestCase):
    """unbind ends the session cleanly."""

    def test_unbind(self) -> None:
        """unbind is answered with unbind_resp, then the connection closes."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.send(Unbind(8))
        self.assertEqual(esme.one(), UnbindResp(8))
        self.assertTrue(esme.closing)
        assert esme.protocol.session is not None
        self.assertEqual(esme.protocol.session.state, SessionState.CLOSING)
        esme.send(EnquireLink(9))
        self.assertEqual(esme.received(), [])


class EnquireLinkTests(SmscTestCase):
    """Both sides check that the link is alive."""

    def test_answered(self) -> None:
        """enquire_link from the ESME is answered with its sequence_number."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.send(EnquireLink(0x7FFFFFFF))
        self.assertEqual(esme.one(), EnquireLinkResp(0x7FFFFFFF))

    def test_smscProbesIdleEsme(self) -> None:
        """After enquire_link_interval of silence the SMSC probes; an answer keeps the link."""
        esme = self.esme(self.smsc(enquire_link_interval=30, enquire_link_timeout=10))
        esme.bind()
        self.clock.advance(29.9)
        self.assertEqual(esme.received(), [])
        self.clock.advance(0.1)
        probe = esme.one()
        self.assertIsInstance(probe, EnquireLink)
        self.clock.advance(9)
        esme.send(EnquireLinkResp(probe.sequence_number))
        self.clock.advance(20)
        self.assertFalse(esme.closing)
        self.assertEqual(esme.received(), [])
        self.clock.advance(10)
        self.assertIsInstance(esme.one(), EnquireLink)

    def test_unansweredProbeDropsLink(self) -> None:
        """No answer to the SMSC's enquire_link within the timeout drops the link."""
        esme = self.esme(self.smsc(enquire_link_interval=30, enquire_link_timeout=10))
        esme.bind()
        self.clock.advance(30)
        esme.received()
        self.clock.advance(9.9)
        self.assertFalse(esme.closing)
        self.clock.advance(0.1)
        self.assertTrue(esme.closing)
        self.assertTrue(self.logged("did not answer enquire_link"))

    def test_trafficPostponesProbe(self) -> None:
        """Any PDU from the ESME restarts the idle timer."""
        esme = self.esme(self.smsc(enquire_link_interval=30))
        esme.bind()
        self.clock.advance(20)
        esme.send(EnquireLink(3))
        esme.received()
        self.clock.advance(20)
        self.assertEqual(esme.received(), [])
        self.clock.advance(10)
        self.assertIsInstance(esme.one(), EnquireLink)

    def test_disabled(self) -> None:
        """enquire_link_interval 0 never probes."""
        esme = self.esme(self.smsc(enquire_link_interval=0))
        esme.bind()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class MalformedTests(SmscTestCase):
    """Bad bytes are answered and logged; only a hostile length costs the connection."""

    def test_unknownCommandId(self) -> None:
        """An unknown command_id gets generic_nack ESME_RINVCMDID and the session goes on."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.protocol.dataReceived(bytes.fromhex("000000100000fffe0000000000000033"))
        self.assertEqual(esme.one(), GenericNack(0x33, S.ESME_RINVCMDID))
        esme.send(EnquireLink(0x34))
        self.assertEqual(esme.one(), EnquireLinkResp(0x34))
        self.assertFalse(esme.closing)
        self.assertTrue(self.logged("field command_id at offset 4"))

    def test_bodyOnHeaderOnlyPdu(self) -> None:
        """A body on enquire_link gets generic_nack ESME_RINVCMDLEN; the session goes on."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.protocol.dataReceived(bytes.fromhex("00000014000000150000000000000007deadbeef"))
        self.assertEqual(esme.one(), GenericNack(7, S.ESME_RINVCMDLEN))
        self.assertFalse(esme.closing)

    def test_malformedSubmitBody(self) -> None:
        """A broken submit_sm body gets submit_sm_resp with the field's status; logged by field."""
        esme = self.esme(self.smsc())
        esme.bind()
        body = bytes.fromhex("0001013132")  # source_addr never NUL-terminated
        header = (16 + len(body)).to_bytes(4, "big") + bytes.fromhex("000000040000000000000009")
        esme.protocol.dataReceived(header + body)
        self.assertEqual(esme.one(), SubmitSmResp(9, S.ESME_RINVSRCADR))
        self.assertTrue(self.logged("malformed submit_sm from 192.0.2.1:40000 (gw): field"))
        self.assertTrue(self.logged("submit_sm.source_addr"))
        esme.submit()
        self.assertEqual(esme.one().command_status, 0)
        self.clock.advance(0)

    def test_hostileLength(self) -> None:
        """A command_length beyond the limit gets generic_nack RINVCMDLEN and the link closes."""
        esme = self.esme(self.smsc())
        esme.bind()
        esme.protocol.dataReceived(bytes.fromhex("ffffffff000000040000000000000009"))
        self.assertEqual(esme.one(), GenericNack(9, S.ESME_RINVCMDLEN))
        self.assertTrue(esme.closing)
        esme.protocol.dataReceived(b"\x00" * 64)
        self.assertEqual(esme.received(), [])

    def test_lengthBelowHeader(self) -> None:
        """A command_length under 16 cannot be framed: nack and close, even before a bind."""
        esme = self.esme(self.smsc())
        esme.protocol.dataReceived(bytes.fromhex("00000008000000040000000000000009"))
        self.assertEqual(esme.one(), GenericNack(9, S.ESME_RINVCMDLEN))
        self.assertTrue(esme.closing)

    @settings(max_examples=60)
    @given(st.lists(st.binary(min_size=0, max_size=80), max_size=6))
    def test_garbageNeverRaises(self, chunks: list[bytes]) -> None:
        """Random bytes to a bound session never raise; all output is valid SMPP."""
        self.clock = Clock()
        self.clock.advance(1e9)
        factory = self.smsc()
        esme = self.esme(factory)
        esme.bind()
        for chunk in chunks:
            esme.protocol.dataReceived(chunk)
        esme.received()
        self.clock.advance(0)
        esme.disconnect()
        factory.centre.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SubmitWindowTests(SmscTestCase):
    """Many submissions can be outstanding; each is answered by sequence_number."""

    def test_manyOutstanding(self) -> None:
        """With a response delay, ten pipelined submits are all answered, in order, later."""
        esme = self.esme(self.smsc(response_delay=0.2))
        esme.bind()
        seqs = [esme.submit(destination_addr=f"44770{i:02d}") for i in range(10)]
        self.assertEqual(esme.received(), [])
        self.assertEqual(self.router.calls, [])
        answered_before_handover = []
        deliver = self.router.deliver

        def watch(msisdn: str, tpdu: bytes) -> object:
            answered_before_handover.append(len(esme.transport.value()))
            return deliver(msisdn, tpdu)

        self.patch(self.router, "deliver", watch)
        self.clock.advance(0.2)
        responses = esme.received()
        self.assertEqual([r.sequence_number for r in responses], seqs)
        ids = [r.message_id for r in responses if isinstance(r, SubmitSmResp)]
        self.assertEqual(ids, [f"{n:08x}" for n in range(1, 11)])
        self.assertEqual([c[0] for c in self.router.calls], [f"44770{i:02d}" for i in range(10)])
        self.assertNotIn(0, answered_before_handover)

    def test_acceptedMessageSurvivesDisconnect(self) -> None:
        """A message accepted before the connection dropped is still delivered."""
        esme = self.esme(self.smsc(response_delay=1))
        esme.bind()
        esme.submit()
        esme.disconnect()
        self.clock.advance(0)
        self.assertEqual(len(self.router.calls), 1)


class ThrottleTests(SmscTestCase):
    """A per-bind token bucket refuses submissions beyond the configured rate."""

    def test_rateLimit(self) -> None:
        """At 2/s with a burst of 2, the third quick submit gets ESME_RTHROTTLED."""
        esme = self.esme(self.smsc(max_submit_rate=2, throttle_burst=2))
        esme.bind()
        for _ in range(3):
            esme.submit()
        self.assertEqual([r.command_status for r in esme.received()], [0, 0, S.ESME_RTHROTTLED])
        self.clock.advance(0.5)
        esme.submit()
        esme.submit()
        self.assertEqual([r.command_status for r in esme.received()], [0, S.ESME_RTHROTTLED])
        self.clock.advance(0)
        self.assertEqual(len(self.router.calls), 3)

    def test_perBind(self) -> None:
        """Each bind has its own bucket."""
        factory = self.smsc(max_submit_rate=1)
        one, two = self.esme(factory), self.esme(factory, 40001)
        one.bind()
        two.bind()
        one.submit()
        two.submit()
        self.assertEqual(one.one().command_status, 0)
        self.assertEqual(two.one().command_status, 0)
        self.clock.advance(0)

    def test_tokenBucket(self) -> None:
        """The bucket refills at its rate and never beyond its size."""
        clock = Clock()
        bucket = TokenBucket(clock, rate=10, burst=3)
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])
        clock.advance(0.1)
        self.assertEqual([bucket.take(), bucket.take()], [True, False])
        clock.advance(100)
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])


class QueueTests(SmscTestCase):
    """Pending MT messages per account are bounded."""

    def test_queueFull(self) -> None:
        """Beyond max_queue undelivered messages, submit_sm gets ESME_RMSGQFUL."""
        from simcard.smsc import DeliveryOutcome

        self.router.hold = True
        esme = self.esme(self.smsc(max_queue=2))
        esme.bind()
        for _ in range(3):
            esme.submit()
        self.clock.advance(0)
        statuses = [r.command_status for r in esme.received()]
        self.assertEqual(statuses, [0, 0, S.ESME_RMSGQFUL])
        self.router.pending[0].callback(DeliveryOutcome.delivered())
        esme.submit()
        self.assertEqual(esme.one().command_status, 0)
        self.clock.advance(0)
        for d in self.router.pending[1:]:
            d.callback(DeliveryOutcome.delivered())


class IsolationTests(SmscTestCase):
    """One bad ESME never disturbs another."""

    def test_garbageFromOneEsme(self) -> None:
        """A connection broken by garbage leaves the other bound ESME working."""
        factory = self.smsc()
        bad, good = self.esme(factory), self.esme(factory, 40001)
        bad.bind()
        good.bind()
        bad.protocol.dataReceived(b"\xff" * 40)
        self.assertTrue(bad.closing)
        good.submit()
        self.assertEqual(good.one().command_status, 0)
        self.clock.advance(0)
        self.assertEqual(len(self.router.calls), 1)

    def test_internalErrorCostsOneConnection(self) -> None:
        """A bug triggered by one connection aborts only that one, and is logged."""
        factory = self.smsc()
        bad, good = self.esme(factory), self.esme(factory, 40001)
        bad.bind()
        good.bind()
        assert bad.protocol.session is not None

        def explode(pdu: object) -> None:
            raise RuntimeError("boom")

        self.patch(bad.protocol.session, "pdu_received", explode)
        bad.send(EnquireLink(4))
        self.assertTrue(bad.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        good.send(EnquireLink(5))
        self.assertEqual(good.one(), EnquireLinkResp(5))


class WireTests(SmscTestCase):
    """The bytes on the wire are exactly SMPP 3.4."""

    def test_submitVectorAnswerBytes(self) -> None:
        """The public submit_sm PDU is answered with a well-formed submit_sm_resp."""
        esme = self.esme(self.smsc())
        esme.bind()
        vector = vectors.by_name("smpp34", "submit_sm OTA SMS (esm_class 40, pid 7f, dcs f6)")
        esme.protocol.dataReceived(bytes.fromhex(vector["pdu"]))
        raw = esme.transport.value()
        self.assertEqual(raw, encode(SubmitSmResp(2, 0, "00000001")))
        self.assertEqual(raw[:4], (16 + 9).to_bytes(4, "big"))
        self.assertEqual(PduDecoder().feed(raw), [SubmitSmResp(2, 0, "00000001")])
        esme.transport.clear()
        self.clock.advance(0)
