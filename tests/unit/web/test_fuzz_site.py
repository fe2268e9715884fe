"""A stream fuzzer for the HTTP API's listener (issue 15).

The real site the gateway serves (L{bipgw.web.api_site}: the guarded
channels, the authentication gate, the body cap, the API's routes) over a
StringTransport, on the test's clock, with an engine and fake cards behind
it.  Hypothesis builds a byte stream from valid HTTP/1.1 requests to every
route (with the right token, a wrong one, none), requests mutated at random
bytes or cut short, oversized headers and bodies, chunked bodies and random
bytes, pipelined one after the other; it splits the stream at random points
and feeds it to C{dataReceived}, with the peer stopping and resuming reading
and the clock moving in between.  Whatever comes in:

  - no exception escapes C{dataReceived} and nothing is logged as an
    unhandled error;
  - what the server wrote parses as HTTP/1.1 responses (a strict parser
    below: status line, headers, a body by length or chunks; only the last
    may be cut, when the connection was aborted or is still streaming);
  - what it wrote is bounded: at most one response per request line in the
    stream (plus one refusal), none larger than the OpenAPI document;
  - once the connection is gone and the clock has run on, nothing of it is
    left: no timer, no event stream, no session, no usage count, no
    connection counted for the peer.
"""

from __future__ import annotations

import itertools
import json
import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bipgw.core import SessionId
from bipgw.web import ApiSettings, api_site
from bipgw.web._guard import GuardedSite
from tests.unit.platform import GET_DATA, OTHER_TOKEN, TOKEN, iccid
from tests.unit.web import WebTestCase

PEER = IPv4Address("TCP", "198.51.100.80", 41000)
MAX_BODY = 1024
TOKENS = [TOKEN, OTHER_TOKEN, None, "tok-nobody-000000", "x" * 700]


def _request(
    method: str, path: str, token: str | None, body: bytes | None = None, extra: str = ""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gw"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _open(iccid_n: int, service: str, token: str | None) -> bytes:
    body = {"iccid": iccid(iccid_n), "service": service}
    return _request("POST", "/v1/sessions", token, json.dumps(body).encode())


def _command(session: int, token: str | None) -> bytes:
    body = json.dumps({"apdus": [GET_DATA]}).encode()
    return _request("POST", f"/v1/sessions/~{session}/commands", token, body)


tokens = st.sampled_from(TOKENS)
sessions = st.integers(1, 4)

valid_requests = st.one_of(
    st.builds(lambda t: _request("GET", "/v1/openapi.json", t), tokens),
    st.builds(_open, st.integers(1, 3), st.sampled_from(["demo", "locked", "nope"]), tokens),
    st.builds(lambda s, t: _request("GET", f"/v1/sessions/~{s}", t), sessions, tokens),
    st.builds(lambda s, t: _request("DELETE", f"/v1/sessions/~{s}", t), sessions, tokens),
    st.builds(_command, sessions, tokens),
    st.builds(lambda t: _request("GET", "/v1/events", t), tokens),
    st.builds(lambda t: _request("GET", "/nowhere", t), tokens),
    st.builds(lambda t: _request("PUT", "/v1/sessions", t, b"{}"), tokens),
)

oversized = st.one_of(
    # a header far longer than any line the server keeps
    st.builds(
        lambda n, t: _request("GET", "/v1/sessions/s1", t, extra="X-Big: " + "a" * n),
        st.integers(1_000, 40_000),
        tokens,
    ),
    # many headers
    st.builds(
        lambda n, t: _request(
            "GET", "/v1/sessions/s1", t, extra="\r\n".join(f"X-H{i}: v" for i in range(n))
        ),
        st.integers(10, 600),
        tokens,
    ),
    # a body over the cap, announced and sent
    st.builds(
        lambda n, t: _request("POST", "/v1/sessions", t, b"{" + b" " * n + b"}"),
        st.integers(MAX_BODY, 8 * MAX_BODY),
        tokens,
    ),
    # a length announced and never sent in full
    st.builds(
        lambda n, t: _request("POST", "/v1/sessions", t, extra=f"Content-Length: {n}"),
        st.integers(0, 10**12),
        tokens,
    ),
    # a chunked body, its chunks' sizes possibly lying
    st.builds(
        lambda size, data, t: (
            _request("POST", "/v1/sessions", t, extra="Transfer-Encoding: chunked")
            + f"{size:x}\r\n".encode()
            + data
            + b"\r\n0\r\n\r\n"
        ),
        st.integers(0, 4 * MAX_BODY),
        st.binary(max_size=64),
        tokens,
    ),
)


def _mutate(data: bytes, where: int, what: bytes, kind: int) -> bytes:
    if not data:
        return what
    i = where % len(data)
    if kind == 0:  # replace bytes
        return data[:i] + what + data[i + len(what) :]
    if kind == 1:  # cut
        return data[:i]
    return data[:i] + what + data[i:]  # insert


pieces = st.one_of(
    valid_requests,
    valid_requests,
    oversized,
    st.binary(max_size=64),
    st.builds(
        _mutate,
        valid_requests,
        st.integers(0, 400),
        st.sampled_from([b"\x00", b"\xff", b"\r\n", b"\n", b" ", b":", b"\r\n\r\n", b"-1"])
        | st.binary(min_size=1, max_size=4),
        st.integers(0, 2),
    ),
)

# What happens between two reads: nothing, the peer stops or resumes
# reading, or time passes.
events = st.sampled_from(["none", "none", "pause", "resume", "tick"])

_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [^\r\n]*")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)")


class Truncated(Exception):
    """The bytes end inside a response."""


Response = tuple[int, dict[bytes, bytes], bytes]


def parse_responses(data: bytes, head: bool = False) -> tuple[list[Response], bool]:
    """Strictly parse C{data} as HTTP/1.1 responses; raise L{ValueError} if it is not.

    A response without a length or chunks runs to the end of the data (the
    server closes after it).  Returns the complete responses and whether the
    data ends inside one more (only the last can be cut: they are in order).

    @param head: a request may have been C{HEAD} (a mutation can make one):
        a response whose head is followed by the next response, or by
        nothing, has no body.
    """
    out: list[Response] = []
    pos = 0
    try:
        while pos < len(data):
            pos = _parse_one(data, pos, out, head)
    except Truncated:
        return out, True
    return out, False


def _parse_one(data: bytes, pos: int, out: list[Response], head: bool) -> int:
    head_end = data.find(b"\r\n\r\n", pos)
    if head_end < 0:
        raise Truncated(data[pos : pos + 80])
    lines = data[pos:head_end].split(b"\r\n")
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise ValueError(f"not a status line: {lines[0][:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            raise ValueError(f"not a header: {line[:80]!r}")
        headers[header.group(1).lower()] = header.group(2)
    code = int(status.group(1))
    pos = head_end + 4
    if 100 <= code < 200 or code in (204, 304):
        body = b""
    elif head and (pos == len(data) or data.startswith(b"HTTP/1.", pos)):
        body = b""  # the answer to a HEAD
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                raise Truncated(b"chunk size")
            size = int(data[pos:line_end].split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                if data[pos : pos + 2] != b"\r\n":
                    if len(data) < pos + 2:
                        raise Truncated(b"last chunk")
                    raise ValueError("trailers after the last chunk")
                pos += 2
                break
            if len(data) < pos + size + 2:
                raise Truncated(b"chunk")
            body += data[pos : pos + size]
            if data[pos + size : pos + size + 2] != b"\r\n":
                raise ValueError("a chunk not ended by CRLF")
            pos += size + 2
    elif b"content-length" in headers:
        length = int(headers[b"content-length"])
        if len(data) < pos + length:
            raise Truncated(b"body")
        body = data[pos : pos + length]
        pos += length
    else:
        body, pos = data[pos:], len(data)
    out.append((code, headers, body))
    return pos


class SiteFuzzTests(WebTestCase):
    """Random and mutated HTTP/1.1 streams into the real site's protocol."""

    settings = ApiSettings(
        max_body=MAX_BODY,
        ready_wait=30,
        keepalive=10,
        header_timeout=5,
        body_timeout=7,
        idle_timeout=20,
        max_connections_per_peer=3,
        stream_buffer=4096,
    )

    def setUp(self) -> None:
        super().setUp()
        self.examples = 0
        self.site: GuardedSite = api_site(self.api, self.clock)
        doc = self.stub.request("GET", "http://gw.example/v1/openapi.json")
        self.stub.flush()
        self.largest = len(self.successResultOf(self.stub.content(self.successResultOf(doc))))
        self.largest += 2 * self.settings.stream_buffer + 4096  # an event stream, headers

    @given(
        st.booleans(),
        st.lists(pieces, min_size=1, max_size=12),
        st.lists(st.tuples(st.integers(0, 50_000), events), max_size=10),
    )
    def test_stream(self, login: bool, parts: list[bytes], cuts: list[tuple[int, str]]) -> None:
        # this example's sessions are eKn1, eKn2, ...: "~" in a path is eKn
        self.examples += 1
        prefix = f"e{self.examples}n"
        self.ids = (SessionId(f"{prefix}{n}") for n in itertools.count(1))
        stream = b"".join(parts).replace(b"~", prefix.encode())
        if login:  # a session the requests that follow can reach
            stream = _open(1, "demo", TOKEN) + stream
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        points = sorted({(c % (len(stream) + 1), e) for c, e in cuts})
        start = 0
        for point, event in [*points, (len(stream), "none")]:
            if transport.disconnecting:
                break  # a closing TCP connection reads no more
            protocol.dataReceived(stream[start:point])
            start = max(start, point)
            if event == "pause" and not transport.disconnecting:
                protocol.pauseProducing()
            elif event == "resume" and not transport.disconnecting:
                protocol.resumeProducing()
            elif event == "tick":
                self.clock.advance(3)
        written = transport.value()
        requests = stream.count(b"HTTP/1") + 1
        self.assertLessEqual(len(written), requests * self.largest)
        responses, cut = parse_responses(written, head=b"HEAD" in stream)
        if cut:
            # only the last response may be cut: the connection was aborted
            # under it, or it is an event stream still running
            self.assertTrue(transport.disconnected or self.api.streams.count == 1, written[-200:])
        self.assertLessEqual(len(responses), 2 * requests)  # 100 Continue, then the answer
        for code, headers, _body in responses:
            if code >= 200 and b"content-type" in headers:
                self.assertTrue(
                    headers[b"content-type"].startswith(
                        (b"application/json", b"application/problem+json", b"text/")
                    ),
                    headers,
                )
        protocol.connectionLost(Failure(ConnectionLost("fuzzed")))
        self._drain()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.site.connections(PEER.host), 0)
        self.assertEqual(self.api.streams.count, 0)

    def _drain(self) -> None:
        """Run the clock until every timer has fired; nothing may be left."""
        for _ in range(400):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.engine.sessions(), [])
        self.assertEqual(self.hub.routed, 0)
        for tenant in ("acme", "globex"):
            self.assertEqual(self.hub.usage.sessions(tenant), 0)
            self.assertEqual(self.hub.usage.commands(tenant), 0)

    def test_parser(self) -> None:
        """The parser accepts responses as the server writes them and refuses others."""
        ok = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
            b"HTTP/1.1 400 Bad Request\r\n\r\nrest"
        )
        responses, cut = parse_responses(ok)
        self.assertEqual(
            [(c, b) for c, _, b in responses],
            [(100, b""), (200, b"{}"), (200, b"ab"), (400, b"rest")],
        )
        self.assertFalse(cut)
        self.assertRaises(ValueError, parse_responses, b"junk\r\n\r\n")
        self.assertRaises(ValueError, parse_responses, b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n")
        cut_short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"
        self.assertEqual(parse_responses(cut_short), ([], True))
        self.assertEqual(parse_responses(cut_short[:-2], head=True)[0][0][0], 200)
