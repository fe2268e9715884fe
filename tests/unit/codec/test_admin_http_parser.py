"""Tests for the incremental admin HTTP parsers: framing, tolerance and refusals."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import (
    GP_RESPONSE,
    AdminHttpError,
    AdminRequest,
    AdminResponse,
    RequestParser,
    ResponseParser,
    ScriptStatus,
    encode_request,
    encode_response,
)

_POST = b"POST /a HTTP/1.1\r\n"


def _refused(
    test: SynchronousTestCase, data: bytes, *, response: bool = False, **limits: int
) -> AdminHttpError:
    """Feed C{data}; return the error, checking the parser then stays broken."""
    parser: RequestParser | ResponseParser = (
        ResponseParser(**limits) if response else RequestParser(**limits)
    )
    with test.assertRaises(AdminHttpError) as ctx:
        parser.feed(data)
    with test.assertRaises(AdminHttpError) as again:
        parser.feed(b"POST / HTTP/1.1\r\n\r\n")
    test.assertIs(again.exception, ctx.exception)
    return ctx.exception


class RequestFramingTests(SynchronousTestCase):
    """Bodies are delimited exactly as RFC 9112 section 6 says."""

    def test_contentLength(self) -> None:
        """A Content-Length body is read exactly, the rest starts the next request."""
        [a, b] = RequestParser().feed(
            _POST + b"Content-Length: 3\r\n\r\nabc" + _POST + b"Content-Length: 1\r\n\r\nd"
        )
        self.assertEqual((a.body, b.body), (b"abc", b"d"))

    def test_noFramingIsEmpty(self) -> None:
        """A request without Content-Length or Transfer-Encoding has an empty body."""
        [a, b] = RequestParser().feed(_POST + b"\r\n" + _POST + b"\r\n")
        self.assertEqual((a.body, b.body), (b"", b""))

    def test_chunkedManyChunks(self) -> None:
        """Chunks are concatenated; hex case, extensions and zero padding are accepted."""
        [request] = RequestParser().feed(
            _POST + b"Transfer-Encoding: Chunked\r\n\r\n"
            b"3;name=value\r\nabc\r\n000A \r\n0123456789\r\n0 ; last\r\n\r\n"
        )
        self.assertEqual(request.body, b"abc0123456789")

    def test_trailersTolerated(self) -> None:
        """Trailer fields after the last chunk are checked, then dropped."""
        parser = RequestParser()
        [request] = parser.feed(
            _POST + b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n"
        )
        self.assertEqual((request.body, request.headers), (b"x", ()))
        self.assertEqual(parser.buffered, 0)

    def test_identicalContentLengths(self) -> None:
        """Repeated identical Content-Lengths, as lines or a list, are one length."""
        [a, b] = RequestParser().feed(
            _POST
            + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nab"
            + _POST
            + b"Content-Length: 2 , 2\r\n\r\ncd"
        )
        self.assertEqual((a.body, b.body), (b"ab", b"cd"))

    def test_bareLf(self) -> None:
        """Bare LF line ends are accepted in the head, chunk lines and after chunk data."""
        [request] = RequestParser().feed(
            b"POST /a HTTP/1.1\nX-Admin-Script-Status: ok\nTransfer-Encoding: chunked\n\n"
            b"2\nhi\n0\n\n"
        )
        self.assertEqual((request.body, request.script_status), (b"hi", ScriptStatus.OK))

    def test_leadingEmptyLines(self) -> None:
        """Empty lines before a request line (after a body, say) are skipped."""
        [a, b] = RequestParser().feed(
            b"\r\n" + _POST + b"Content-Length: 1\r\n\r\nx\r\n\r\n" + _POST + b"\r\n"
        )
        self.assertEqual((a.body, b.target), (b"x", "/a"))

    def test_headerCaseAndSpacing(self) -> None:
        """Typed headers are found in any case; values lose their edge whitespace."""
        [request] = RequestParser().feed(
            _POST + b"x-admin-FROM: \t agent 1 \t\r\ncontent-type:"
            b"application/vnd.globalplatform.card-content-mgt-response ;version=1.0\r\n"
            b"x-admin-resume: TRUE\r\nX-Other: kept\r\n\r\n"
        )
        self.assertEqual(request.admin_from, "agent 1")
        self.assertEqual(request.content_type, GP_RESPONSE)
        self.assertTrue(request.resume)
        self.assertEqual(request.headers, (("X-Other", "kept"),))
        self.assertIsNone(request.admin_protocol)

    def test_latin1Values(self) -> None:
        """obs-text bytes in values map one-to-one to characters and back."""
        wire = _POST + b"X-Note: caf\xe9\r\n\r\n"
        [request] = RequestParser().feed(wire)
        self.assertEqual(request.headers, (("X-Note", "caf\xe9"),))
        self.assertEqual(encode_request(request), wire)

    def test_connectionClose(self) -> None:
        """Connection: close clears keep_alive; trailing CRLF is fine, more data is not."""
        parser = RequestParser()
        sent = _POST + b"Connection: keep-alive, Close\r\n\r\n\r\n"
        [request] = parser.feed(sent)
        self.assertFalse(request.keep_alive)
        parser.finish()
        with self.assertRaises(AdminHttpError) as ctx:
            parser.feed(b"POST")
        self.assertEqual(ctx.exception.field, "stream")
        self.assertEqual(ctx.exception.offset, len(sent))

    def test_finish(self) -> None:
        """Ending between messages is fine; ending inside one names where it began."""
        parser = RequestParser()
        parser.feed(_POST + b"\r\n\r\n")
        parser.finish()
        parser = RequestParser()
        parser.feed(_POST + b"\r\n" + _POST + b"Content-Length: 5\r\n\r\nab")
        with self.assertRaises(AdminHttpError) as ctx:
            parser.finish()
        self.assertEqual(ctx.exception.offset, len(_POST) + 2)
        self.assertRaises(AdminHttpError, parser.finish)
        parser = RequestParser()
        parser.feed(b"PO")
        self.assertRaises(AdminHttpError, parser.finish)


class RequestRefusalTests(SynchronousTestCase):
    """Each defect raises with the field, the offset and the status to answer."""

    def assertRefused(
        self, data: bytes, status: int, field: str, offset: int, **limits: int
    ) -> AdminHttpError:
        error = _refused(self, data, **limits)
        self.assertEqual((error.status, error.field, error.offset), (status, field, offset))
        return error

    def test_smuggling(self) -> None:
        """Content-Length with Transfer-Encoding, or differing lengths, are refused."""
        self.assertRefused(
            _POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
            "Content-Length",
            len(_POST) + 28,
        )
        self.assertRefused(
            _POST + b"Content-Length: 99999999999999\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "Content-Length",
            len(_POST),
        )
        error = self.assertRefused(
            _POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n",
            400,
            "Content-Length",
            len(_POST) + 19,
        )
        self.assertIn("differing", error.reason)
        self.assertRefused(_POST + b"Content-Length: 3, 4\r\n\r\n", 400, "Content-Length", 18)

    def test_contentLengthSyntax(self) -> None:
        """Only plain decimal digits are a Content-Length (int() would take more)."""
        for value in (b"1_0", b"+5", b"-1", b"0x10", b"\xd9\xa3", b"", b"1 2"):
            self.assertRefused(
                _POST + b"Content-Length: " + value + b"\r\n\r\n", 400, "Content-Length", 18
            )

    def test_transferCodings(self) -> None:
        """Only chunked is implemented (501); chunked must be last and once (400)."""
        self.assertRefused(
            _POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501, "Transfer-Encoding", 18
        )
        self.assertRefused(
            _POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400, "Transfer-Encoding", 18
        )
        self.assertRefused(_POST + b"Transfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding", 18)
        self.assertRefused(
            _POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "Transfer-Encoding",
            46,
        )
        self.assertRefused(_POST + b"Transfer-Encoding: ,\r\n\r\n", 400, "Transfer-Encoding", 18)

    def test_versions(self) -> None:
        """HTTP/1.0 and 2.0 get 505; a malformed version gets 400."""
        self.assertRefused(b"POST / HTTP/1.0\r\n\r\n", 505, "request line", 0)
        self.assertRefused(b"\r\nPOST / HTTP/2.0\r\n\r\n", 505, "request line", 2)
        self.assertRefused(b"POST / HTTP/1.1x\r\n\r\n", 400, "request line", 0)
        self.assertRefused(b"POST / http/1.1\r\n\r\n", 400, "request line", 0)

    def test_methods(self) -> None:
        """Methods other than POST get 501; a non-token method gets 400."""
        self.assertRefused(b"GET / HTTP/1.1\r\n\r\n", 501, "request line", 0)
        self.assertRefused(b"post / HTTP/1.1\r\n\r\n", 501, "request line", 0)
        self.assertRefused(b"P(ST / HTTP/1.1\r\n\r\n", 400, "request line", 0)

    def test_requestLineShape(self) -> None:
        """Extra spaces, a missing target or a control byte in the target are refused."""
        for line in (
            b"POST  / HTTP/1.1",
            b"POST / HTTP/1.1 ",
            b"POST HTTP/1.1",
            b"POST /\x7f HTTP/1.1",
        ):
            self.assertRefused(line + b"\r\n\r\n", 400, "request line", 0)

    def test_headerLineShape(self) -> None:
        """Folding, space before the colon, a missing colon and controls are refused."""
        self.assertRefused(_POST + b"X-A: 1\r\n continued\r\n\r\n", 400, "header line", 26)
        self.assertRefused(_POST + b"X-A : 1\r\n\r\n", 400, "header line", 18)
        self.assertRefused(_POST + b"no colon\r\n\r\n", 400, "header line", 18)
        self.assertRefused(_POST + b": v\r\n\r\n", 400, "header line", 18)
        self.assertRefused(_POST + b"X-A: a\x01b\r\n\r\n", 400, "X-A", 18)
        self.assertRefused(_POST + b"X-A: a\rb\r\n\r\n", 400, "line end", 24)

    def test_typedValues(self) -> None:
        """Bad or repeated typed headers are refused at their line."""
        self.assertRefused(_POST + b"Host: a\r\nhost: b\r\n\r\n", 400, "host", 27)
        self.assertRefused(_POST + b"X-Admin-Resume: yes\r\n\r\n", 400, "X-Admin-Resume", 18)
        self.assertRefused(
            _POST + b"X-Admin-Script-Status:\r\n\r\n", 400, "X-Admin-Script-Status", 18
        )
        self.assertRefused(_POST + b"Content-Type: nonsense\r\n\r\n", 400, "Content-Type", 18)

    def test_headerLimits(self) -> None:
        """Too many or too long header lines get 431; a long request line gets 414."""
        many = _POST + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n"
        self.assertRefused(many, 431, "header section", 18 + 4 * 8, max_headers=4)
        self.assertEqual(len(RequestParser(max_headers=5).feed(many)), 1)
        head = _POST + b"X-A: " + b"v" * 100 + b"\r\n\r\n"
        self.assertEqual(len(RequestParser(max_header_bytes=len(head)).feed(head)), 1)
        # The header line fits, the final empty line does not.
        self.assertRefused(head, 431, "header section", 125, max_header_bytes=len(head) - 1)
        self.assertRefused(head, 431, "header section", 18, max_header_bytes=100)
        self.assertRefused(b"POST /" + b"a" * 50, 414, "request line", 0, max_header_bytes=40)

    def test_headerRefusedEarly(self) -> None:
        """An endless header line is refused once the limit is reached, not at its end."""
        parser = RequestParser(max_header_bytes=1000)
        parser.feed(_POST + b"X-A: ")
        with self.assertRaises(AdminHttpError) as ctx:
            for _ in range(100):
                parser.feed(b"v" * 100)
        self.assertEqual(ctx.exception.status, 431)
        self.assertEqual(parser.buffered, 0)

    def test_bodyLimit(self) -> None:
        """A Content-Length over max_body gets 413 from the head alone, even one int() refuses."""
        parser = RequestParser(max_body=10)
        with self.assertRaises(AdminHttpError) as ctx:
            parser.feed(_POST + b"Content-Length: 11\r\n\r\n")
        self.assertEqual((ctx.exception.status, ctx.exception.field), (413, "Content-Length"))
        self.assertRefused(
            _POST + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", 413, "Content-Length", 18
        )
        self.assertEqual(
            RequestParser(max_body=10)
            .feed(_POST + b"Content-Length: 10\r\n\r\n" + bytes(10))[0]
            .body,
            bytes(10),
        )

    def test_chunkLimits(self) -> None:
        """Chunk sizes adding up past max_body, or overlong hex, get 413 before the data."""
        te = _POST + b"Transfer-Encoding: chunked\r\n\r\n"
        error = self.assertRefused(
            te + b"6\r\nabcdef\r\n5\r\n", 413, "chunk size line", len(te) + 11, max_body=10
        )
        self.assertIn("limit of 10", error.reason)
        self.assertRefused(te + b"1" + b"0" * 16 + b"\r\n", 413, "chunk size line", len(te))
        self.assertRefused(te + b"f" * 5000, 400, "chunk size line", len(te), max_header_bytes=4096)
        [request] = RequestParser(max_body=10).feed(
            te + b"0000000000000000000000a\r\n" + bytes(10) + b"\r\n0\r\n\r\n"
        )
        self.assertEqual(request.body, bytes(10))

    def test_chunkSyntax(self) -> None:
        """A non-hex size or chunk data without its CRLF is refused at that byte."""
        te = _POST + b"Transfer-Encoding: chunked\r\n\r\n"
        for line in (b"g", b"", b" 1", b"-1", b"0x1", b"1 2"):
            self.assertRefused(te + line + b"\r\n", 400, "chunk size line", len(te))
        self.assertRefused(te + b"2\r\nabc\r\n", 400, "chunk data", len(te) + 5)
        self.assertRefused(te + b"2\r\nab\rx", 400, "chunk data", len(te) + 5)

    def test_trailerLimits(self) -> None:
        """Trailers count against the header limits."""
        te = _POST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
        self.assertRefused(
            te + b"X: 1\r\nY: 2\r\n\r\n", 431, "trailer section", len(te) + 6, max_headers=1
        )
        self.assertRefused(
            te + b"X: " + b"1" * 100, 431, "trailer section", len(te), max_header_bytes=100
        )
        self.assertRefused(te + b"bad trailer\r\n\r\n", 400, "header line", len(te))

    def test_offsetsAcrossMessages(self) -> None:
        """Offsets count from the start of the stream, across messages and feeds."""
        first = _POST + b"Content-Length: 2\r\n\r\nab"
        parser = RequestParser()
        self.assertEqual(len(parser.feed(first)), 1)
        with self.assertRaises(AdminHttpError) as ctx:
            parser.feed(b"GET / HTTP/1.1\r\n")
        self.assertEqual(ctx.exception.offset, len(first))

    def test_badLimitsRefused(self) -> None:
        """The parser cannot be built with a zero or negative limit."""
        self.assertRaises(ValueError, RequestParser, max_body=0)
        self.assertRaises(ValueError, ResponseParser, max_headers=-1)


class ResponseFramingTests(SynchronousTestCase):
    """The card side knows which responses have no body."""

    def test_bodilessStatuses(self) -> None:
        """1xx, 204 and 304 end at the empty line even with framing headers."""
        stream = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        responses = ResponseParser().feed(stream)
        self.assertEqual(
            [(r.status, r.body) for r in responses],
            [(100, b""), (204, b""), (304, b""), (200, b"ok")],
        )
        self.assertEqual([r.headers for r in responses], [(), (), (), ()])

    def test_noLengthRefused(self) -> None:
        """A 200 with neither Content-Length nor chunked cannot end on keep-alive: 411."""
        error = _refused(self, b"HTTP/1.1 200 OK\r\nX-Admin-Protocol: x\r\n\r\nbody", response=True)
        self.assertEqual((error.status, error.field, error.offset), (411, "header section", 38))

    def test_chunkedResponse(self) -> None:
        """A chunked 200 is decoded, typed headers read, reason kept verbatim."""
        response = AdminResponse(status=200, reason="Fine ", next_uri="/n?x=1", body=b"\xaa" * 300)
        [parsed] = ResponseParser().feed(encode_response(response, chunked=True))
        self.assertEqual(parsed, response)

    def test_statusLines(self) -> None:
        """A missing reason is fine; bad codes, versions and controls are refused."""
        [a, b] = ResponseParser().feed(b"HTTP/1.1 204\r\n\r\nHTTP/1.1 204 \r\n\r\n")
        self.assertEqual((a.reason, b.reason), ("", ""))
        for line, status in (
            (b"HTTP/1.1 20 OK", 400),
            (b"HTTP/1.1 099 Low", 400),
            (b"HTTP/1.1 2000 OK", 400),
            (b"HTTP/1.1  200 OK", 400),
            (b"HTTP/1.1 200 O\x00K", 400),
            (b"HTTP/1.0 200 OK", 505),
            (b"HTTP/1.1", 400),
        ):
            error = _refused(self, line + b"\r\n\r\n", response=True)
            self.assertEqual(
                (error.status, error.field, error.offset), (status, "status line", 0), line
            )

    def test_targetedApplicationChecked(self) -> None:
        """A malformed X-Admin-Targeted-Application is refused at its line."""
        error = _refused(
            self,
            b"HTTP/1.1 204 No Content\r\nX-Admin-Targeted-Application: //aid/A0/00\r\n\r\n",
            response=True,
        )
        self.assertEqual((error.field, error.offset), ("X-Admin-Targeted-Application", 25))

    def test_closeThenData(self) -> None:
        """After a response with Connection: close, another response is an error."""
        close = encode_response(AdminResponse(status=204, keep_alive=False))
        self.assertIn(b"\r\nConnection: close\r\n", close)
        error = _refused(self, close + close, response=True)
        self.assertEqual(error.offset, len(close))

    def test_requestRoundTripsAllFields(self) -> None:
        """A request with every field set comes back equal, chunked or not."""
        request = AdminRequest(
            target="https://admin.example/ram?cmd=1&x=%20",
            host="admin.example",
            admin_protocol="other/2",
            admin_from="//se-id/eid/1;//aa-id/aid/A000000559/10",
            content_type=GP_RESPONSE,
            script_status=ScriptStatus.TEMPORARILY_UNAVAILABLE_APPLICATION,
            resume=True,
            body=bytes(range(256)),
            headers=(("X-B", "2"), ("x-a", "1"), ("X-B", "3")),
            keep_alive=False,
        )
        for chunked in (False, True):
            self.assertEqual(
                RequestParser().feed(encode_request(request, chunked=chunked)), [request]
            )
