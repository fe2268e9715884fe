"""The thin ESME protocol: bytes to PDUs for the link, PDUs to bytes, codec errors."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
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
from bipgw.core._ratelog import DEFAULT_BURST
from bipgw.smpp import EsmeFactory, EsmeProtocol
from bipgw.smpp._protocol import MALFORMED_LIMIT, MALFORMED_WINDOW
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

    def test_noNagleDelay(self) -> None:
        """On a TCP connection Nagle's algorithm is off (pipelined submits are not
        held for delayed ACKs); a transport without the option is left alone."""

        class TcpTransport(AbortableTransport):
            no_delay: bool | None = None

            def setTcpNoDelay(self, enabled: bool) -> None:
                self.no_delay = enabled

        tcp = TcpTransport()
        EsmeProtocol(RecordingLink).makeConnection(tcp)  # type: ignore[arg-type]
        self.assertIs(tcp.no_delay, True)
        _connected()

    def test_sentEncoded(self) -> None:
        """send_encoded writes the bytes as they are."""
        protocol, transport, _ = _connected()
        protocol.send_encoded(b"\x00\x00\x00\x10" + bytes(12))
        self.assertEqual(transport.value(), b"\x00\x00\x00\x10" + bytes(12))

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


def _unknown_command(seq: int) -> bytes:
    """A well-framed PDU with an unknown command_id: malformed, answered generic_nack."""
    return (16).to_bytes(4, "big") + bytes.fromhex("0000abcd") + bytes(4) + seq.to_bytes(4, "big")


class MalformedFloodTests(SynchronousTestCase):
    """A hostile SMSC cannot fill the disk, nor keep a connection sending garbage (issue 15)."""

    def _connected(self) -> tuple[EsmeProtocol, AbortableTransport, Clock, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        self.hostile: list[int] = []
        factory = EsmeFactory(
            RecordingLink,  # type: ignore[arg-type]
            clock=clock,
            on_hostile=lambda: self.hostile.append(1),
        )
        protocol = factory.buildProtocol(None)
        transport = AbortableTransport()
        protocol.makeConnection(transport)
        self.factory = factory
        return protocol, transport, clock, events

    def test_tenThousandMalformedPdusFewLines(self) -> None:
        """10,000 malformed PDUs over many connections give a bounded number of log lines."""
        _, _, clock, events = self._connected()
        for _ in range(100):
            protocol = self.factory.buildProtocol(None)
            protocol.makeConnection(AbortableTransport())
            for seq in range(100):
                protocol.dataReceived(_unknown_command(seq))
        clock.advance(60)
        ours = [e for e in events if "SMSC" in e.get("log_format", "") or "rate_kind" in e]
        # burst lines per kind plus one summary per kind, whatever the volume.
        self.assertLessEqual(len(ours), 2 * (DEFAULT_BURST + 1))
        summaries = [e for e in ours if "rate_suppressed" in e]
        self.assertEqual(summaries[0]["rate_suppressed"], 10_000 - DEFAULT_BURST)

    def test_floodDropsTheConnection(self) -> None:
        """More than MALFORMED_LIMIT malformed PDUs in the window abort the connection."""
        protocol, transport, _clock, _ = self._connected()
        protocol.dataReceived(b"".join(_unknown_command(s) for s in range(MALFORMED_LIMIT)))
        self.assertFalse(transport.aborted)
        protocol.dataReceived(_unknown_command(999) + encode(EnquireLink(5)))
        self.assertTrue(transport.aborted)
        self.assertEqual(self.hostile, [1])
        self.assertEqual(protocol.link.pdus, [])  # type: ignore[attr-defined]
        self.factory.ratelog.flush()

    def test_slowMalformedTolerated(self) -> None:
        """Malformed PDUs spread over time (under the limit per window) keep the connection."""
        protocol, transport, clock, _ = self._connected()
        for seq in range(3 * MALFORMED_LIMIT):
            protocol.dataReceived(_unknown_command(seq))
            clock.advance(MALFORMED_WINDOW / MALFORMED_LIMIT * 1.5)
        self.assertFalse(transport.aborted)
        self.assertEqual(self.hostile, [])
        self.factory.ratelog.flush()

    def test_brokenFramingIsHostile(self) -> None:
        """Broken framing reports a hostile SMSC too."""
        protocol, transport, _, _ = self._connected()
        protocol.dataReceived((3).to_bytes(4, "big") + bytes(12))
        self.assertTrue(transport.aborted)
        self.assertEqual(self.hostile, [1])
