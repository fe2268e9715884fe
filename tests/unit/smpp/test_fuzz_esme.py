"""Stream fuzzer: the ESME (protocol and link, bound) against a hostile SMSC (issue 15).

Random and mutated byte streams (valid SMPP 3.4 PDUs from the vectors,
bytes flipped, cut, repeated, noise between them) are fed into a bound
L{EsmeProtocol} with its real L{EsmeLink}, split at random points.  Only
clean outcomes are allowed: no exception escapes C{dataReceived}, the
decoder never buffers more than one PDU, everything the ESME writes back is
well-formed SMPP, and a broken or flooded stream aborts the connection.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import DEFAULT_MAX_PDU, BindTransceiverResp, PduDecoder, decode, encode
from bipgw.smpp import EsmeFactory, EsmeLink, EsmeProtocol, LinkState
from tests import vectors
from tests.unit.smpp import SETTINGS


class _Transport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


_VALID = [bytes.fromhex(v["pdu"]) for v in vectors.section("smpp34") if "pdu" in v]


def _mutate(pdu: bytes, where: int, what: bytes, cut: int) -> bytes:
    where %= len(pdu) + 1
    data = pdu[:where] + what + pdu[where + len(what) :]
    return data[: max(0, len(data) - cut)]


_PIECE = st.one_of(
    st.sampled_from(_VALID),
    st.builds(
        _mutate,
        st.sampled_from(_VALID),
        st.integers(0, 300),
        st.binary(min_size=1, max_size=6),
        st.integers(0, 3),
    ),
    st.binary(max_size=40),
    # A well-framed PDU of any command_id with a random body.
    st.builds(
        lambda cid, status, body: (
            (16 + len(body)).to_bytes(4, "big")
            + cid.to_bytes(4, "big")
            + status.to_bytes(4, "big")
            + (7).to_bytes(4, "big")
            + body
        ),
        st.sampled_from([0x80000004, 0x80000009, 0x00000005, 0x00000015, 0x80000000, 0xDEAD]),
        st.integers(0, 0xFFFFFFFF),
        st.binary(max_size=60),
    ),
)


class HostileSmscFuzzTests(SynchronousTestCase):
    """Whatever the SMSC sends, the ESME fails cleanly."""

    def _bound(self) -> tuple[EsmeProtocol, _Transport, Clock]:
        clock = Clock()
        factory = EsmeFactory(lambda p: EsmeLink(clock, p, SETTINGS), clock=clock)
        protocol = factory.buildProtocol(None)
        transport = _Transport()
        protocol.makeConnection(transport)
        bind = protocol.link.bind()
        sent = decode(transport.value())
        transport.clear()
        protocol.dataReceived(encode(BindTransceiverResp(sent.sequence_number, 0, "SMSC")))
        self.assertTrue(self.successResultOf(bind).bound)
        self.factory = factory
        return protocol, transport, clock

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_PIECE, max_size=30), st.lists(st.integers(1, 200), max_size=30))
    def test_randomAndMutatedStreams(self, pieces: list[bytes], sizes: list[int]) -> None:
        """Any stream, in any split: no exception, bounded buffer, well-formed answers."""
        protocol, transport, clock = self._bound()
        stream = b"".join(pieces)
        pos = 0
        for size in [*sizes, len(stream)]:
            chunk = stream[pos : pos + size]
            pos += size
            if not chunk:
                continue
            protocol.dataReceived(chunk)  # must never raise
            self.assertLessEqual(protocol._decoder.buffered, DEFAULT_MAX_PDU)
        # What the ESME wrote back is well-formed SMPP, PDU by PDU.
        PduDecoder().feed(transport.value())
        if transport.aborted:
            self.assertIn(protocol.link.state, (LinkState.BOUND, LinkState.CLOSED))
        protocol.connectionLost()
        self.assertIs(protocol.link.state, LinkState.CLOSED)
        clock.advance(3600)
        self.factory.ratelog.flush()
        self.assertEqual(clock.getDelayedCalls(), [])

    @settings(max_examples=50, deadline=None)
    @given(st.binary(min_size=1, max_size=2000))
    def test_pureNoise(self, noise: bytes) -> None:
        """Noise never escapes as an exception; it ends in an abort or a clean wait."""
        protocol, _transport, _clock = self._bound()
        protocol.dataReceived(noise)
        self.assertLessEqual(protocol._decoder.buffered, DEFAULT_MAX_PDU)
        protocol.connectionLost()
        self.factory.ratelog.flush()
