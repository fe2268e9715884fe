"""A stream fuzzer for the platform channel's listener (issue 15).

Hypothesis builds a byte stream from valid frames (a good or bad C{hello},
C{ping}, C{open}, C{command}, C{close}), arbitrary JSON objects, random
bytes and mutations of valid frames (flipped bytes, lengths cut or
enlarged), splits it at random points and feeds it to the server protocol
over a StringTransport, with the peer stopping and resuming reading and the
clock moving in between.  Whatever comes in:

  - no exception escapes the protocol and nothing unexpected is logged as
    a failure;
  - everything the gateway writes is well-formed frames, and every error
    carries a code of the protocol;
  - the buffers it keeps are bounded: the decoder's partial frame by
    C{max_frame}, the frames read but not served by one read, the bytes
    written while the peer does not read by C{max_send_buffer};
  - once the connection is gone, nothing of it is left (no timer, no
    session, no usage count, no per-address record once its budget is back).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bipgw.codec.platform import PREFIX_SIZE, ErrorCode, FrameDecoder, encode_frame
from bipgw.core import FailureReason
from bipgw.platform import ChannelSettings
from tests.unit.platform import GET_DATA, TOKEN, PlatformTestCase, iccid

MAX_FRAME = 2048
SETTINGS = ChannelSettings(
    auth_timeout=10,
    heartbeat_interval=30,
    heartbeat_timeout=10,
    max_frame=MAX_FRAME,
    max_send_buffer=4096,
)
CODES = {c.value for c in ErrorCode} | {r.value for r in FailureReason}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

valid_messages = st.one_of(
    st.just({"type": "hello", "id": "h", "token": TOKEN}),
    st.builds(lambda t: {"type": "hello", "id": "h", "token": t}, st.text(max_size=30)),
    st.builds(lambda n: {"type": "ping", "id": f"p{n}"}, st.integers(0, 99)),
    st.builds(
        lambda n, s: {"type": "open", "id": f"o{n}", "iccid": iccid(1 + n % 3), "service": s},
        st.integers(0, 9),
        st.sampled_from(["demo", "locked", "nope"]),
    ),
    st.builds(
        lambda n, s: {"type": "command", "id": f"c{n}", "session": f"s{s}", "apdus": [GET_DATA]},
        st.integers(0, 9),
        st.integers(1, 5),
    ),
    st.builds(lambda s: {"type": "close", "session": f"s{s}"}, st.integers(1, 5)),
)


def _frame(message: Any) -> bytes:
    payload = json.dumps(message).encode()
    return len(payload).to_bytes(PREFIX_SIZE, "big") + payload


def _mutate(data: bytes, where: int, byte: int, kind: int) -> bytes:
    if not data:
        return data
    i = where % len(data)
    if kind == 0:  # flip a byte
        return data[:i] + bytes([byte]) + data[i + 1 :]
    if kind == 1:  # cut
        return data[:i]
    # a length prefix that lies
    return (int.from_bytes(data[:PREFIX_SIZE], "big") + byte - 128).to_bytes(
        PREFIX_SIZE, "big", signed=True
    ) + data[PREFIX_SIZE:]


pieces = st.one_of(
    valid_messages.map(encode_frame),
    json_values.map(_frame),
    st.binary(max_size=64),
    st.builds(
        _mutate,
        valid_messages.map(encode_frame),
        st.integers(0, 200),
        st.integers(0, 255),
        st.integers(0, 2),
    ),
)

# What happens between two reads: nothing, the peer stops or resumes
# reading, or time passes.
events = st.sampled_from(["none", "none", "pause", "resume", "tick"])


class ListenerFuzzTests(PlatformTestCase):
    """Random and mutated streams into the server protocol."""

    settings = SETTINGS

    @hsettings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.booleans(),
        st.lists(pieces, max_size=25),
        st.lists(st.tuples(st.integers(0, 10_000), events), max_size=12),
    )
    def test_stream(self, login: bool, parts: list[bytes], cuts: list[tuple[int, str]]) -> None:
        stream = b"".join(parts)
        if login:
            stream = encode_frame({"type": "hello", "id": "h", "token": TOKEN}) + stream
        peer = IPv4Address("TCP", "198.51.100.77", 40000)
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        points = sorted({(c % (len(stream) + 1), e) for c, e in cuts})
        start = 0
        written_paused = 0
        for point, event in [*points, (len(stream), "none")]:
            before = len(transport.value())
            protocol.dataReceived(stream[start:point])
            start = max(start, point)
            if protocol.paused:
                written_paused += len(transport.value()) - before
            if event == "pause" and not transport.disconnecting:
                protocol.pauseProducing()
            elif event == "resume" and not transport.disconnecting:
                protocol.resumeProducing()
            elif event == "tick":
                self.clock.advance(3)
            decoder = protocol._decoder
            if decoder is not None:
                self.assertLessEqual(decoder.buffered, MAX_FRAME + PREFIX_SIZE)
            self.assertLessEqual(len(protocol._pending), len(stream))
        self.assertLessEqual(written_paused, SETTINGS.max_send_buffer + MAX_FRAME + PREFIX_SIZE)
        for message in FrameDecoder(MAX_FRAME).feed(transport.value()):
            self.assertIsInstance(message, dict)
            assert isinstance(message, dict)
            if message.get("type") == "error":
                self.assertIn(message.get("code"), CODES)
        protocol.connectionLost(Failure(ConnectionError("fuzzed")))
        for _ in range(60):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(5)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.engine.sessions(), [])
        self.assertEqual(self.factory.tenancy.usage.sessions("acme"), 0)
        self.clock.advance(120)  # the address's budget refills, its back-off ends
        self.factory.guard.disconnect("198.51.100.77")  # a no-op: nothing is counted
        self.assertEqual(self.factory.guard.connections("198.51.100.77"), 0)
