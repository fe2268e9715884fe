"""Cross-checks of the admin HTTP codec against Python's own HTTP implementation.

C{http.client} and C{http.server} were written independently of this codec:
what we send must parse there to the same fields, and what they send must
parse here.  Everything runs on in-memory byte streams, no sockets.
"""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import (
    GP_COMMAND,
    GP_RESPONSE,
    X_ADMIN_PROTOCOL,
    AdminRequest,
    AdminResponse,
    RequestParser,
    ResponseParser,
    ScriptStatus,
    encode_request,
    encode_response,
)


class _Stream(io.BytesIO):
    """A byte stream http.client may 'close' after each response and go on reading."""

    def close(self) -> None:
        pass


class _Socket:
    """The socket-like object http.client reads responses from and writes requests to."""

    def __init__(self, data: bytes = b"") -> None:
        self.stream = _Stream(data)
        self.sent = bytearray()

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BytesIO:
        return self.stream

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        pass


def _stdlib_responses(data: bytes, count: int) -> Iterator[tuple[http.client.HTTPResponse, bytes]]:
    sock = _Socket(data)
    for _ in range(count):
        response = http.client.HTTPResponse(sock, method="POST")  # type: ignore[arg-type]
        response.begin()
        yield response, response.read()
    assert sock.stream.read() == b""


class _Handler(BaseHTTPRequestHandler):
    """http.server's request parsing, run on a byte string instead of a socket."""

    protocol_version = "HTTP/1.1"

    def __init__(self, data: bytes) -> None:
        self.rfile = io.BytesIO(data)
        self.wfile = io.BytesIO()
        self.client_address = ("127.0.0.1", 0)
        self.request_version = "HTTP/1.1"
        self.requestline = ""

    def next_request(self) -> bool:
        self.raw_requestline = self.rfile.readline(65537)
        return self.parse_request()

    def log_message(self, format: str, *args: object) -> None:
        pass


class StdlibParsesOursTests(SynchronousTestCase):
    """Bytes from our serializers read the same in the standard library."""

    def test_responsesInHttpClient(self) -> None:
        """http.client reads a script response, a chunked one and a 204 on one stream."""
        script = AdminResponse(
            next_uri="/Download?req=1",
            content_type=GP_COMMAND,
            targeted_application=bytes.fromhex("A000000151000000"),
            body=bytes.fromhex("ae80220580ca0085000000"),
            headers=(("X-Extra", "v"),),
        )
        chunked = AdminResponse(next_uri="/Download?req=2", body=b"\xaa" * 700)
        data = (
            encode_response(script)
            + encode_response(chunked, chunked=True)
            + encode_response(AdminResponse(status=204))
        )
        [(first, body1), (second, body2), (last, body3)] = list(_stdlib_responses(data, 3))
        self.assertEqual((first.status, first.reason, body1), (200, "OK", script.body))
        self.assertEqual(first.getheader("X-Admin-Next-URI"), "/Download?req=1")
        self.assertEqual(first.getheader("X-Admin-Protocol"), X_ADMIN_PROTOCOL)
        self.assertEqual(first.getheader("Content-Type"), str(GP_COMMAND))
        self.assertEqual(first.getheader("X-Admin-Targeted-Application"), "//aid/A000000151/000000")
        self.assertEqual(first.getheader("X-Extra"), "v")
        self.assertEqual((second.chunked, body2), (True, chunked.body))
        self.assertEqual((last.status, body3, last.will_close), (204, b"", False))

    def test_closeInHttpClient(self) -> None:
        """http.client sees our Connection: close as the end of the connection."""
        [(response, body)] = list(
            _stdlib_responses(encode_response(AdminResponse(body=b"x", keep_alive=False)), 1)
        )
        self.assertEqual((body, response.will_close), (b"x", True))

    def test_requestsInHttpServer(self) -> None:
        """http.server reads our requests' lines, headers and bodies."""
        first = AdminRequest(
            target="/server/adminagent?cmd=1", host="admin.example", admin_from="agent-1"
        )
        second = AdminRequest(
            target="/Download?req=1",
            host="admin.example",
            script_status=ScriptStatus.OK,
            content_type=GP_RESPONSE,
            body=bytes.fromhex("af8023026a880000"),
            keep_alive=False,
        )
        handler = _Handler(encode_request(first) + encode_request(second))
        self.assertTrue(handler.next_request())
        self.assertEqual((handler.command, handler.path), ("POST", first.target))
        self.assertEqual(handler.headers["X-Admin-From"], "agent-1")
        self.assertEqual(handler.headers["X-Admin-Protocol"], X_ADMIN_PROTOCOL)
        self.assertIsNone(handler.headers["Content-Length"])
        self.assertFalse(handler.close_connection)
        self.assertTrue(handler.next_request())
        self.assertEqual(handler.path, "/Download?req=1")
        self.assertEqual(handler.headers["X-Admin-Script-Status"], "ok")
        self.assertEqual(handler.headers["Content-Type"], str(GP_RESPONSE))
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        self.assertEqual(body, second.body)
        self.assertTrue(handler.close_connection)

    def test_chunkedRequestInStdlib(self) -> None:
        """http.server reads a chunked request's head; http.client decodes its chunks."""
        request = AdminRequest(target="/Download?req=1", body=bytes(range(200)))
        handler = _Handler(encode_request(request, chunked=True))
        self.assertTrue(handler.next_request())
        self.assertEqual(handler.headers["Transfer-Encoding"], "chunked")
        rest = handler.rfile.read()
        # http.server has no chunked decoder; http.client's reads the same framing.
        [(_, body)] = list(
            _stdlib_responses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + rest, 1)
        )
        self.assertEqual(body, request.body)


class OursParsesStdlibTests(SynchronousTestCase):
    """Bytes the standard library writes read correctly here."""

    def test_httpClientRequests(self) -> None:
        """Requests written by http.client, plain and chunked, parse to their fields."""
        sock = _Socket()
        conn = http.client.HTTPConnection("admin.example", 8443)
        conn.sock = sock  # type: ignore[assignment]
        conn.request(
            "POST",
            "/server/adminagent?cmd=1",
            body=b"",
            headers={"X-Admin-Protocol": X_ADMIN_PROTOCOL, "X-Admin-From": "agent-1"},
        )
        # http.client waits for a response before the next request; a second
        # connection object writing to the same stream stands in for that.
        conn = http.client.HTTPConnection("admin.example", 8443)
        conn.sock = sock  # type: ignore[assignment]
        conn.request(
            "POST",
            "/Download?req=1",
            body=iter([b"\xaf\x80", b"\x23\x02\x6a\x88", b"\x00\x00"]),
            headers={
                "X-Admin-Script-Status": "ok",
                "Content-Type": str(GP_RESPONSE),
                "Transfer-Encoding": "chunked",
            },
            encode_chunked=True,
        )
        first, second = RequestParser().feed(bytes(sock.sent))
        self.assertEqual(first.target, "/server/adminagent?cmd=1")
        self.assertEqual(first.host, "admin.example:8443")
        self.assertEqual(first.admin_from, "agent-1")
        self.assertEqual(first.body, b"")
        self.assertEqual(dict(first.headers)["Accept-Encoding"], "identity")
        self.assertIs(second.script_status, ScriptStatus.OK)
        self.assertEqual(second.content_type, GP_RESPONSE)
        self.assertEqual(second.body, bytes.fromhex("af8023026a880000"))

    def test_httpServerResponses(self) -> None:
        """Responses written by http.server's handler parse, Server and Date kept as extras."""
        handler = _Handler(b"")
        body = bytes.fromhex("ae80220580ca0085000000")
        handler.send_response(200)
        handler.send_header("X-Admin-Protocol", X_ADMIN_PROTOCOL)
        handler.send_header("X-Admin-Next-URI", "/Download?req=1")
        handler.send_header("Content-Type", str(GP_COMMAND))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        handler.send_response(204)
        handler.send_header("X-Admin-Protocol", X_ADMIN_PROTOCOL)
        handler.end_headers()
        script, end = ResponseParser().feed(handler.wfile.getvalue())
        self.assertEqual((script.status, script.reason), (200, "OK"))
        self.assertEqual(script.next_uri, "/Download?req=1")
        self.assertEqual(script.content_type, GP_COMMAND)
        self.assertEqual(script.body, body)
        self.assertEqual([name for name, _ in script.headers], ["Server", "Date"])
        self.assertEqual(end, AdminResponse(status=204, headers=end.headers, reason="No Content"))
