"""The thin ESME protocol: bytes to PDUs for the link, PDUs to bytes, codec errors."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import (
    CommandStatus,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Pdu,
    SubmitSmResp,
    decode,
    encode,
)
from bipgw.smpp import EsmeFactory, EsmeProtocol
from tests import vectors


class RecordingLink:
    """Stands in for an EsmeLink: records what the protocol hands it."""

    def __init__(self, protocol: EsmeProtocol) -> None:
        self.protocol = protocol
        self.pdus: list[Pdu] = []
        self.lost: list[Failure | None] = []

    def pdu_received(self, pdu: Pdu) -> None:
        self.pdus.append(pdu)

    def connection_lost(self, reason: Failure | None = None) -> None:
        self.lost.append(reason)


class AbortableTransport(StringTransport):
    """A StringTransport that records abortConnection."""

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def _connected() -> tuple[EsmeProtocol, AbortableTransport, Any]:
    protocol = EsmeProtocol(RecordingLink)  # type: ignore[arg-type]
    transport = AbortableTransport()
    protocol.makeConnection(transport)
    return protocol, transport, protocol.link


_STREAM = [
    bytes.fromhex(vectors.by_name("smpp34", name)["pdu"])
    for name in (
        "deliver_sm delivery receipt with TLVs (from smpplib unit test)",
        "enquire_link seq 3",
        "deliver_sm with PoR in message_payload TLV 0x0424",
        "submit_sm_resp message_id abc123",
        "generic_nack ESME_RTHROTTLED",
    )
]


class ProtocolTests(SynchronousTestCase):
    """What the protocol does with bytes, and nothing more."""

    @given(st.lists(st.integers(min_value=0, max_value=600), max_size=12))
    def test_anySplitGivesTheSamePdus(self, cuts: list[int]) -> None:
        """However TCP cuts the stream, the link gets the same PDUs, in order."""
        stream = b"".join(_STREAM)
        points = sorted({c % (len(stream) + 1) for c in cuts})
        protocol, _, link = _connected()
        for a, b in zip([0, *points], [*points, len(stream)], strict=True):
            protocol.dataReceived(stream[a:b])
        self.assertEqual(link.pdus, [decode(p) for p in _STREAM])

    def test_malformedPduAnsweredAndSkipped(self) -> None:
        """An unknown command_id gets generic_nack ESME_RINVCMDID; the next PDU still arrives."""
        protocol, transport, link = _connected()
        unknown = (16).to_bytes(4, "big") + bytes.fromhex("0000abcd") + bytes(4)
        unknown += (7).to_bytes(4, "big")
        protocol.dataReceived(unknown + encode(EnquireLink(8)))
        self.assertEqual(link.pdus, [EnquireLink(8)])
        self.assertEqual(
            decode(transport.value()), GenericNack(7, int(CommandStatus.ESME_RINVCMDID))
        )
        self.assertFalse(transport.disconnecting)

    def test_malformedResponseNotAnswered(self) -> None:
        """A broken response is skipped without an answer (no nack loops)."""
        protocol, transport, link = _connected()
        bad = encode(SubmitSmResp(3, 0, "abc"))[:-1] + b"x"  # message_id without its NUL
        protocol.dataReceived(bad)
        self.assertEqual((link.pdus, transport.value()), ([], b""))
        self.flushLoggedErrors()

    def test_brokenFramingAborts(self) -> None:
        """A command_length below 16 cannot be resynchronised: the connection is aborted."""
        protocol, transport, link = _connected()
        protocol.dataReceived((3).to_bytes(4, "big") + bytes(12))
        self.assertTrue(transport.aborted)
        protocol.dataReceived(encode(EnquireLink(1)))
        self.assertEqual(link.pdus, [])
        self.flushLoggedErrors()

    def test_sendAndClose(self) -> None:
        """send_pdu writes the encoded PDU; close(abort) aborts, close() loses gracefully."""
        protocol, transport, _ = _connected()
        pdu = DeliverSm(4, 0).response()
        protocol.send_pdu(pdu)
        self.assertEqual(transport.value(), encode(pdu))
        protocol.close()
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        protocol.close(abort=True)
        self.assertTrue(transport.aborted)

    def test_connectionLostReachesLink(self) -> None:
        """connectionLost hands the reason to the link."""
        protocol, _, link = _connected()
        reason = Failure(ConnectionError("bye"))
        protocol.connectionLost(reason)
        self.assertEqual(link.lost, [reason])

    def test_factoryMakesAFreshLinkPerConnection(self) -> None:
        """Each protocol the factory builds has its own link."""
        factory = EsmeFactory(RecordingLink)  # type: ignore[arg-type]
        one, two = factory.buildProtocol(None), factory.buildProtocol(None)
        self.assertIsNot(one.link, two.link)
        self.assertIs(one.link.protocol, one)  # type: ignore[attr-defined]
        self.assertIs(one.factory, factory)
