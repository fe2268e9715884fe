"""Property tests for the admin HTTP codec: round trips, splits, hostile bytes, limits."""

from __future__ import annotations

import string
from typing import TypeVar

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import (
    ETSI_COMMAND,
    ETSI_RESPONSE,
    GP_COMMAND,
    GP_RESPONSE,
    AdminHttpError,
    AdminRequest,
    AdminResponse,
    ContentType,
    RequestParser,
    ResponseParser,
    ScriptStatus,
    encode_request,
    encode_response,
)

_TCHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
_VALUE_CHARS = ["\t"] + [chr(c) for c in range(0x20, 0x7F)] + [chr(c) for c in range(0x80, 0x100)]
_RESERVED = {
    "host",
    "x-admin-protocol",
    "x-admin-from",
    "content-type",
    "x-admin-script-status",
    "x-admin-resume",
    "x-admin-next-uri",
    "x-admin-targeted-application",
    "content-length",
    "transfer-encoding",
    "connection",
}

tokens = st.text(alphabet=_TCHARS, min_size=1, max_size=12)
values = st.text(alphabet=_VALUE_CHARS, max_size=24).map(lambda v: v.strip(" \t"))
extra_headers = st.lists(
    st.tuples(tokens.filter(lambda n: n.lower() not in _RESERVED), values), max_size=4
)
targets = st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=40)
content_types = st.one_of(
    st.none(),
    st.sampled_from([GP_COMMAND, GP_RESPONSE, ETSI_COMMAND, ETSI_RESPONSE]),
    st.builds(
        ContentType,
        st.tuples(tokens, tokens).map(lambda t: f"{t[0]}/{t[1]}".lower()),
        st.lists(st.tuples(tokens.map(str.lower), values), max_size=3).map(tuple),
    ),
)
bodies = st.binary(max_size=200)
optional_values = st.none() | values

requests = st.builds(
    AdminRequest,
    target=targets,
    host=optional_values,
    admin_protocol=optional_values,
    admin_from=optional_values,
    content_type=content_types,
    script_status=st.none() | st.sampled_from(ScriptStatus) | values.filter(bool),
    resume=st.booleans(),
    body=bodies,
    headers=extra_headers,
    keep_alive=st.booleans(),
)


@st.composite
def responses(draw: st.DrawFn) -> AdminResponse:
    status = draw(st.sampled_from([100, 200, 204, 304, 400, 500]) | st.integers(100, 599))
    bodiless = status < 200 or status in (204, 304)
    return AdminResponse(
        status=status,
        reason=draw(st.text(alphabet=_VALUE_CHARS, max_size=20)),
        admin_protocol=draw(optional_values),
        next_uri=draw(optional_values),
        content_type=draw(content_types),
        targeted_application=draw(st.none() | st.binary(min_size=5, max_size=16)),
        body=b"" if bodiless else draw(bodies),
        headers=draw(extra_headers),
    )


_Msg = TypeVar("_Msg", AdminRequest, AdminResponse)


def _open_until_last(messages: list[tuple[_Msg, bool]]) -> list[tuple[_Msg, bool]]:
    """Only the last message of a stream may say Connection: close."""
    return [(attrs.evolve(m, keep_alive=True), c) for m, c in messages[:-1]] + messages[-1:]


def _chunkable(response: AdminResponse) -> bool:
    return response.status >= 200 and response.status not in (204, 304)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# HTTP-shaped pieces, assembled into message-like streams so that random input
# reaches the header, body, chunk and trailer states, not just the first line.
_REQUEST_STARTS = st.sampled_from([b"POST /a HTTP/1.1\r\n", b"\r\nPOST /b?c HTTP/1.1\n"])
_RESPONSE_STARTS = st.sampled_from(
    [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 204 No Content\n", b"HTTP/1.1 100 Continue\r\n"]
)
_HEADER_LINES = st.sampled_from(
    [
        b"Content-Length: 3\r\n",
        b"Content-Length: 99999999999\r\n",
        b"Content-Length: 3, 4\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Connection: close\r\n",
        b"X-Admin-Script-Status: ok\n",
        b"X-Admin-Targeted-Application: //aid/A000000151/00\r\n",
        b"Content-Type: a/b; c=d\r\n",
        b"X-A: b\r\n",
    ]
)
_BODY_PIECES = st.sampled_from(
    [
        b"abc",
        b"3\r\nabc\r\n",
        b"1;ext=1\nz\n",
        b"0\r\n\r\n",
        b"0\r\nX-T: 1\r\n\r\n",
        b"ffffffffffffffffff\r\n",
        b"\r\n",
    ]
)
_NOISE = st.binary(max_size=4)


def _hostile(starts: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    message = st.builds(
        lambda start, headers, end, body: start + b"".join(headers) + end + b"".join(body),
        starts,
        st.lists(st.one_of(_HEADER_LINES, _HEADER_LINES, _HEADER_LINES, _NOISE), max_size=4),
        st.sampled_from([b"\r\n", b"\n"]),
        st.lists(st.one_of(_BODY_PIECES, _BODY_PIECES, _NOISE), max_size=4),
    )
    return st.lists(message, min_size=1, max_size=3).map(b"".join)


def _feed_all(parser: RequestParser | ResponseParser, pieces: list[bytes]) -> list[object]:
    out: list[object] = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    parser.finish()
    return out


class RoundTripTests(SynchronousTestCase):
    """decode(encode(x)) == x for every representable message."""

    @given(requests, st.booleans())
    def test_request(self, request: AdminRequest, chunked: bool) -> None:
        """Any request survives encoding, chunked or not, and re-encodes identically."""
        wire = encode_request(request, chunked=chunked)
        self.assertEqual(RequestParser().feed(wire), [request])
        self.assertEqual(encode_request(request, chunked=chunked), wire)

    @given(responses(), st.booleans())
    def test_response(self, response: AdminResponse, chunked: bool) -> None:
        """Any response survives encoding (chunked when it may have a body)."""
        chunked = chunked and _chunkable(response)
        wire = encode_response(response, chunked=chunked)
        self.assertEqual(ResponseParser().feed(wire), [response])


class SplitTests(SynchronousTestCase):
    """A keep-alive stream cut anywhere yields the same messages."""

    @given(
        st.lists(st.tuples(requests, st.booleans()), min_size=1, max_size=3),
        st.lists(st.integers(min_value=0, max_value=3000), max_size=10),
    )
    def test_requests(self, messages: list[tuple[AdminRequest, bool]], cuts: list[int]) -> None:
        """Requests come out whole and in order whatever the read boundaries."""
        messages = _open_until_last(messages)
        stream = b"".join(encode_request(r, chunked=c) for r, c in messages)
        out = _feed_all(RequestParser(), _pieces(stream, cuts))
        self.assertEqual(out, [r for r, _ in messages])

    @given(
        st.lists(st.tuples(responses(), st.booleans()), min_size=1, max_size=3),
        st.lists(st.integers(min_value=0, max_value=3000), max_size=10),
    )
    def test_responses(self, messages: list[tuple[AdminResponse, bool]], cuts: list[int]) -> None:
        """Responses, bodiless ones included, come out whole and in order."""
        messages = _open_until_last(messages)
        stream = b"".join(encode_response(r, chunked=c and _chunkable(r)) for r, c in messages)
        out = _feed_all(ResponseParser(), _pieces(stream, cuts))
        self.assertEqual(out, [r for r, _ in messages])

    @given(st.lists(requests, min_size=1, max_size=3), st.data())
    def test_bareLineFeeds(self, messages: list[AdminRequest], data: st.DataObject) -> None:
        """Replacing head CRLFs by bare LFs changes nothing in what is parsed."""
        messages = [attrs.evolve(m, keep_alive=True) for m in messages]
        stream = b""
        for request in messages:
            wire = encode_request(request)
            head, _, body = wire.partition(b"\r\n\r\n")
            lines = [*head.split(b"\r\n"), b""]
            ends = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
            stream += (
                b"".join(
                    line + (b"\n" if lf else b"\r\n") for line, lf in zip(lines, ends, strict=True)
                )
                + body
            )
        self.assertEqual(RequestParser().feed(stream), messages)


class HostileInputTests(SynchronousTestCase):
    """Random and mutated bytes only ever raise AdminHttpError, with memory bounded."""

    def _check(self, data: bytes, cuts: list[int], *, request: bool | None = None) -> None:
        parsers: list[RequestParser | ResponseParser] = []
        if request is not False:
            parsers.append(RequestParser(max_header_bytes=256, max_headers=8, max_body=512))
        if request is not True:
            parsers.append(ResponseParser(max_header_bytes=256, max_headers=8, max_body=512))
        for parser in parsers:
            try:
                for piece in _pieces(data, cuts):
                    parser.feed(piece)
                    # Raw input beyond one head plus one body is never held.
                    self.assertLessEqual(parser.buffered, 256 + 512 + len(piece))
                parser.finish()
            except AdminHttpError as e:
                self.assertIn(e.status, (400, 411, 413, 414, 431, 501, 505))
                self.assertRaises(AdminHttpError, parser.feed, b"x")

    @given(_hostile(_REQUEST_STARTS), st.lists(st.integers(min_value=0, max_value=400), max_size=6))
    def test_randomRequestStreams(self, data: bytes, cuts: list[int]) -> None:
        """Request-shaped noise raises only the codec's error."""
        self._check(data, cuts, request=True)

    @given(
        _hostile(_RESPONSE_STARTS), st.lists(st.integers(min_value=0, max_value=400), max_size=6)
    )
    def test_randomResponseStreams(self, data: bytes, cuts: list[int]) -> None:
        """Response-shaped noise raises only the codec's error."""
        self._check(data, cuts, request=False)

    @given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=400), max_size=4))
    def test_randomBytes(self, data: bytes, cuts: list[int]) -> None:
        """Arbitrary bytes raise only the codec's error."""
        self._check(data, cuts)

    @given(
        requests,
        responses(),
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=2000), st.binary(max_size=3), st.booleans()
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def test_mutatedMessages(
        self,
        request: AdminRequest,
        response: AdminResponse,
        edits: list[tuple[int, bytes, bool]],
    ) -> None:
        """Valid streams with bytes replaced, inserted or deleted raise only AdminHttpError."""
        for wire in (encode_request(request, chunked=True), encode_response(response)):
            data = bytearray(wire)
            for where, new, replace in edits:
                at = where % (len(data) + 1)
                data[at : at + (len(new) if replace else 0)] = new
                if not new and data:
                    del data[at % len(data)]
            self._check(bytes(data), [len(data) // 2])


class LimitTests(SynchronousTestCase):
    """Oversized heads and bodies are refused as soon as the limit is crossed."""

    @given(
        st.integers(min_value=64, max_value=2048),
        st.integers(min_value=1, max_value=700),
        st.booleans(),
    )
    def test_endlessHeader(self, limit: int, step: int, response: bool) -> None:
        """An endless header line fed in steps is refused with at most one step buffered."""
        parser = (
            ResponseParser(max_header_bytes=limit)
            if response
            else RequestParser(max_header_bytes=limit)
        )
        start = b"HTTP/1.1 200 OK\r\n" if response else b"POST / HTTP/1.1\r\n"
        fed = len(start) + 3
        parser.feed(start + b"X: ")
        with self.assertRaises(AdminHttpError) as ctx:
            while fed <= 2 * limit + step:
                parser.feed(b"a" * step)
                fed += step
                self.assertLess(parser.buffered, limit + step)
        self.assertEqual(ctx.exception.status, 431)
        self.assertLessEqual(fed, limit + step)

    @given(
        st.integers(min_value=1, max_value=4096),
        st.integers(min_value=1, max_value=10**15),
        st.booleans(),
    )
    def test_bodyOverLimit(self, limit: int, extra: int, chunked: bool) -> None:
        """A body announced larger than max_body is refused before any of it arrives."""
        size = limit + extra
        if chunked:
            head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % size
        else:
            head = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size
        parser = RequestParser(max_body=limit)
        with self.assertRaises(AdminHttpError) as ctx:
            parser.feed(head)
        self.assertEqual(ctx.exception.status, 413)

    @given(
        st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=8),
        st.integers(min_value=1, max_value=1200),
    )
    def test_chunksOverLimit(self, sizes: list[int], limit: int) -> None:
        """Chunks are accepted exactly while their total stays within max_body."""
        parser = RequestParser(max_body=limit)
        parser.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        total = 0
        try:
            for size in sizes:
                parser.feed(b"%x\r\n" % size)
                total += size
                parser.feed(bytes(size) + b"\r\n")
            [request] = parser.feed(b"0\r\n\r\n")
        except AdminHttpError as e:
            self.assertEqual(e.status, 413)
            self.assertGreater(total + size, limit)
            self.assertLessEqual(total, limit)
        else:
            self.assertLessEqual(total, limit)
            self.assertEqual(request.body, bytes(total))


def _outcome(parser: RequestParser | ResponseParser, pieces: list[bytes]) -> object:
    """The messages a parser returns for C{pieces}, or the error it raised (text, offset)."""
    out: list[object] = []
    try:
        for piece in pieces:
            out.extend(parser.feed(piece))
        parser.finish()
    except AdminHttpError as e:
        return ("error", str(e), e.offset, e.status)
    return out


class WholeHeadTests(SynchronousTestCase):
    """A head read at once (the fast path) reads exactly as one read line by line.

    Fed a byte at a time, the parser never holds a whole head and so always
    takes the line-by-line path; fed at once, it takes the whole-head path
    whenever it can.  Messages, errors and their offsets must not differ.
    """

    def _same(self, data: bytes) -> None:
        for make in (
            lambda: RequestParser(max_header_bytes=256, max_headers=8, max_body=512),
            lambda: ResponseParser(max_header_bytes=256, max_headers=8, max_body=512),
        ):
            whole = _outcome(make(), [data])
            slow = _outcome(make(), [data[i : i + 1] for i in range(len(data))])
            self.assertEqual(whole, slow)

    @given(
        requests,
        responses(),
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=2000), st.binary(max_size=3), st.booleans()
            ),
            max_size=3,
        ),
    )
    def test_mutatedMessages(
        self,
        request: AdminRequest,
        response: AdminResponse,
        edits: list[tuple[int, bytes, bool]],
    ) -> None:
        """Valid and mutated messages: the same messages or the same error either way."""
        for wire in (encode_request(request), encode_response(response)):
            data = bytearray(wire + wire)
            for where, new, replace in edits:
                at = where % (len(data) + 1)
                data[at : at + (len(new) if replace else 0)] = new
            self._same(bytes(data))

    @given(
        requests,
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=2000), st.binary(max_size=3), st.booleans()
            ),
            max_size=3,
        ),
    )
    def test_mutatedChunked(
        self, request: AdminRequest, edits: list[tuple[int, bytes, bool]]
    ) -> None:
        """Chunked bodies (one chunk, read at once when whole) and mutations of
        them: the same messages or the same error either way."""
        wire = encode_request(attrs.evolve(request, keep_alive=True), chunked=True)
        data = bytearray(wire + wire)
        for where, new, replace in edits:
            at = where % (len(data) + 1)
            data[at : at + (len(new) if replace else 0)] = new
        self._same(bytes(data))

    @given(_hostile(_REQUEST_STARTS))
    def test_requestNoise(self, data: bytes) -> None:
        """Request-shaped noise: the same outcome either way."""
        self._same(data)


class CheckedRequestTests(SynchronousTestCase):
    """The parser builds requests without re-running the class's validators
    (L{bipgw.codec.admin_http._messages.checked_request}); every request it
    gives must still be one the class's own checks accept, equal to itself
    rebuilt through them."""

    def _valid(self, data: bytes) -> None:
        parser = RequestParser(max_header_bytes=256, max_headers=8, max_body=512)
        for piece in (data[: len(data) // 2], data[len(data) // 2 :]):
            try:
                parsed = parser.feed(piece)
            except AdminHttpError:
                return
            for request in parsed:
                rebuilt = AdminRequest(
                    **{a.name: getattr(request, a.name) for a in attrs.fields(AdminRequest)}
                )
                self.assertEqual(rebuilt, request)
                self.assertIsInstance(request.headers, tuple)

    @given(
        requests,
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=2000), st.binary(max_size=3), st.booleans()
            ),
            max_size=3,
        ),
        st.booleans(),
    )
    def test_mutatedRequests(
        self, request: AdminRequest, edits: list[tuple[int, bytes, bool]], chunked: bool
    ) -> None:
        """Valid and mutated requests: whatever is parsed passes the validators."""
        data = bytearray(encode_request(attrs.evolve(request, keep_alive=True), chunked=chunked))
        for where, new, replace in edits:
            at = where % (len(data) + 1)
            data[at : at + (len(new) if replace else 0)] = new
        self._valid(bytes(data))

    @given(_hostile(_REQUEST_STARTS))
    def test_requestNoise(self, data: bytes) -> None:
        """Request-shaped noise: whatever is parsed passes the validators."""
        self._valid(data)
