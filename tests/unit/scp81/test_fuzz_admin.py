"""Stream fuzzer: the SCP81 admin protocol after TLS, mid-session (issue 15).

tests/unit/scp81/test_protocol.py fuzzes a connection's first request.
Here a card has connected and a script is running when random and mutated
byte streams (the card's answer POST with bytes flipped or cut, extra
pipelined requests, noise) arrive, split at random points, into the admin
protocol's C{dataReceived} over a StringTransport (TLS is below it and
tested elsewhere).  Only clean outcomes are allowed: no exception escapes,
at most L{MAX_PIPELINED} requests wait, the parser never holds more than
one request's head and body, whatever the server writes is well-formed
HTTP, and the session ends with a reason once the connection goes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bipgw.codec.admin_http import DEFAULT_MAX_BODY, AdminHttpError, ResponseParser
from bipgw.core import SessionState
from bipgw.scp81._protocol import MAX_PIPELINED
from tests.unit.core import GET_DATA
from tests.unit.scp81.test_protocol import FIRST_POST, _Base, answer

_ANSWER = answer(b"/admin/s/s1/1")
_VALID = [_ANSWER, FIRST_POST, answer(b"/admin/s/s1/2"), answer(b"/nowhere", b"")]


def _mutate(data: bytes, where: int, what: bytes, cut: int) -> bytes:
    where %= len(data) + 1
    out = data[:where] + what + data[where + len(what) :]
    return out[: max(0, len(out) - cut)]


_PIECE = st.one_of(
    st.sampled_from(_VALID),
    st.builds(
        _mutate,
        st.sampled_from(_VALID),
        st.integers(0, 400),
        st.binary(min_size=1, max_size=8),
        st.integers(0, 5),
    ),
    st.binary(max_size=60),
    st.sampled_from([b"\r\n", b"0\r\n\r\n", b"Transfer-Encoding: chunked\r\n", b"ffffffff\r\n"]),
)


class MidSessionFuzzTests(_Base):
    """Whatever a connected card sends, the server fails cleanly."""

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_PIECE, max_size=20), st.lists(st.integers(1, 120), max_size=30))
    def test_randomAndMutatedStreams(self, pieces: list[bytes], sizes: list[int]) -> None:
        """Any stream in any split: no exception, bounded queues, well-formed answers."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        self.successResultOf(session.ready)
        running = session.execute([GET_DATA])
        stream = b"".join(pieces)
        pos = 0
        protocol = card.protocol
        for size in [*sizes, len(stream)]:
            chunk = stream[pos : pos + size]
            pos += size
            if chunk:
                card.send(chunk)  # must never raise
            self.assertLessEqual(len(protocol._pending), MAX_PIPELINED)
            parser = protocol._parser
            assert parser is not None
            self.assertLessEqual(parser.buffered, 8192 + DEFAULT_MAX_BODY + 64)
        try:
            answers = ResponseParser().feed(card.transport.value())
        except AdminHttpError as e:
            self.fail(f"the server wrote malformed HTTP: {e}")
        for response in answers:
            self.assertIn(response.status, (200, 204, 400, 413, 414, 431, 500, 501, 505))
        card.lose()
        running.addErrback(lambda _: None)
        status = session.status()
        if not status.state.terminal:
            session.close().addErrback(lambda _: None)
            status = session.status()
        self.assertTrue(status.state.terminal or status.state is SessionState.CLOSING, status)
        self.engine.stop("example over")
        self.factory.ratelog.flush()
