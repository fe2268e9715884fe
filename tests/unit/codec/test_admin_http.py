"""Tests for the SCP81 admin HTTP values, serializers and the live trace vector."""

from __future__ import annotations

import pickle
import re
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec import CodecError, admin_http
from bipgw.codec.admin_http import (
    ETSI_COMMAND,
    ETSI_RESPONSE,
    GP_COMMAND,
    GP_RESPONSE,
    X_ADMIN_PROTOCOL,
    AdminHttpError,
    AdminRequest,
    AdminResponse,
    ContentType,
    RequestParser,
    ResponseParser,
    ScriptStatus,
    encode_request,
    encode_response,
    format_aid_uri,
    parse_aid_uri,
    parse_script_status,
    script_response,
)
from tests import vectors

# The trace lists some headers by name only; these stand in for their values.
_FILLERS = {
    "Host": "10.10.10.1:8443",
    "X-Admin-From": (
        "//se-id/eid/89049032123451234512345678901234;//aa-id/aid/A000000559/1010FFFFFFFF8900000100"
    ),
}


def _trace() -> list[dict[str, Any]]:
    return list(vectors.section("scp81_http_trace")["exchange"])


def _body(entry: dict[str, Any]) -> bytes:
    if "body_chunked" in entry:
        text = entry["body_chunked"].replace("\\r\\n", "\r\n")
        return re.sub(
            "<([0-9a-f]*)>", lambda m: bytes.fromhex(m.group(1)).decode("latin-1"), text
        ).encode("latin-1")
    return bytes.fromhex(entry["body"])


def _wire(entry: dict[str, Any]) -> bytes:
    """One trace message as bytes, headers in the trace's order, CRLF."""
    lines = [entry["start"]]
    for header in entry["headers"]:
        lines.append(header if ": " in header else f"{header}: {_FILLERS[header]}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + _body(entry)


class TraceVectorTests(SynchronousTestCase):
    """The live plain-HTTP session of PROTOCOLS.md 3.4, message by message."""

    def setUp(self) -> None:
        self.trace = _trace()
        self.card = [_wire(e) for e in self.trace if e["dir"].startswith("card")]
        self.server = [_wire(e) for e in self.trace if e["dir"].startswith("server")]

    def test_traceShape(self) -> None:
        """The vector holds the five messages this test file relies on."""
        self.assertEqual(
            [e["dir"] for e in self.trace],
            [
                "card->server",
                "server->card",
                "card->server",
                "server->card",
                "server->card (final)",
            ],
        )

    def test_firstPost(self) -> None:
        """The card's first POST has the trigger URI verbatim and no body."""
        [request] = RequestParser().feed(self.card[0])
        self.assertEqual(
            request,
            AdminRequest(
                target="/server/adminagent?cmd=1",
                host=_FILLERS["Host"],
                admin_protocol=X_ADMIN_PROTOCOL,
                admin_from=_FILLERS["X-Admin-From"],
            ),
        )
        self.assertEqual(request.body, b"")
        self.assertIsNone(request.content_type)
        self.assertIsNone(request.script_status)
        self.assertTrue(request.keep_alive)

    def test_scriptResponse(self) -> None:
        """The server's 200 carries Next-URI, the GP command type and the 11-byte script."""
        [response] = ResponseParser().feed(self.server[0])
        self.assertEqual(response.status, 200)
        self.assertEqual(response.reason, "OK")
        self.assertEqual(response.admin_protocol, X_ADMIN_PROTOCOL)
        self.assertEqual(response.next_uri, "/Download?req=1")
        self.assertEqual(response.content_type, GP_COMMAND)
        self.assertEqual(response.body, bytes.fromhex("ae80220580ca0085000000"))
        self.assertEqual(response.headers, ())

    def test_chunkedPost(self) -> None:
        """The card's chunked POST to the Next-URI gives status ok and the 8-byte script."""
        [request] = RequestParser().feed(self.card[1])
        self.assertEqual(request.target, "/Download?req=1")
        self.assertIs(request.script_status, ScriptStatus.OK)
        self.assertEqual(request.content_type, GP_RESPONSE)
        self.assertEqual(request.body, bytes.fromhex("af8023026a880000"))
        self.assertIn(b"\r\n\r\n8\r\n", self.card[1])

    def test_endOfSession(self) -> None:
        """The final 204 has no body and only X-Admin-Protocol."""
        [response] = ResponseParser().feed(self.server[2])
        self.assertEqual(response, AdminResponse(status=204))
        self.assertEqual(response.reason, "No Content")

    def test_streamsInOneConnection(self) -> None:
        """Each side's messages arrive on one keep-alive stream and split correctly."""
        requests = RequestParser().feed(b"".join(self.card))
        responses = ResponseParser().feed(b"".join(self.server))
        self.assertEqual(
            [r.target for r in requests], ["/server/adminagent?cmd=1", "/Download?req=1"]
        )
        self.assertEqual([r.status for r in responses], [200, 200, 204])
        self.assertEqual(responses[1].next_uri, "/Download?req=2")
        self.assertEqual(responses[1].body, bytes.fromhex("ae80220880f28002024f00000000"))

    def test_reserializedByteExact(self) -> None:
        """Re-encoding each parsed trace message gives back exactly the trace's bytes."""
        for wire in self.card:
            [request] = RequestParser().feed(wire)
            chunked = b"Transfer-Encoding: chunked" in wire
            self.assertEqual(encode_request(request, chunked=chunked), wire)
        for wire in self.server:
            [response] = ResponseParser().feed(wire)
            self.assertEqual(encode_response(response), wire)


class ContentTypeTests(SynchronousTestCase):
    """Media types compare as HTTP compares them and print canonically."""

    def test_constantsText(self) -> None:
        """The four constants print as the exact Amd B / ETSI strings."""
        self.assertEqual(
            [str(c) for c in (GP_COMMAND, GP_RESPONSE, ETSI_COMMAND, ETSI_RESPONSE)],
            [
                "application/vnd.globalplatform.card-content-mgt;version=1.0",
                "application/vnd.globalplatform.card-content-mgt-response;version=1.0",
                "application/vnd.etsi.scp.command-data;version=1.0",
                "application/vnd.etsi.scp.response-data;version=1.0",
            ],
        )

    def test_tolerantParse(self) -> None:
        """Case and whitespace around ';' and '=' do not matter."""
        for text in (
            "Application/VND.GlobalPlatform.Card-Content-Mgt;Version=1.0",
            "application/vnd.globalplatform.card-content-mgt ; version = 1.0",
            "application/vnd.globalplatform.card-content-mgt;\tversion=1.0 ",
            'application/vnd.globalplatform.card-content-mgt; version="1.0"',
        ):
            self.assertEqual(ContentType.parse(text), GP_COMMAND, text)

    def test_otherTypeDiffers(self) -> None:
        """The response type and a version change are not the command type."""
        self.assertNotEqual(ContentType.parse(str(GP_RESPONSE)), GP_COMMAND)
        self.assertNotEqual(
            ContentType.parse("application/vnd.globalplatform.card-content-mgt;version=1.1"),
            GP_COMMAND,
        )

    def test_quotedValues(self) -> None:
        """Quoted values are unquoted on parse and quoted again only when needed."""
        ct = ContentType.parse(r'text/plain; a="x;y \"z\""; b=c')
        self.assertEqual(ct.params, (("a", 'x;y "z"'), ("b", "c")))
        self.assertEqual(ct.param("A"), 'x;y "z"')
        self.assertIsNone(ct.param("charset"))
        self.assertEqual(str(ct), r'text/plain;a="x;y \"z\"";b=c')
        self.assertEqual(ContentType.parse(str(ct)), ct)

    def test_malformedRefused(self) -> None:
        """Text that is not type/subtype with parameters raises, naming the header."""
        for text in ("", "application", "a/b c", "a/b;=1", "a/b;x", 'a/b;x="open', "a b/c"):
            with self.assertRaises(AdminHttpError, msg=text) as ctx:
                ContentType.parse(text)
            self.assertEqual(ctx.exception.field, "Content-Type")
            self.assertEqual(ctx.exception.status, 400)

    def test_constructorChecks(self) -> None:
        """A value built by hand must already be in canonical (lower-case) form."""
        self.assertRaises(AdminHttpError, ContentType, "Text/Plain")
        self.assertRaises(AdminHttpError, ContentType, "text/plain", (("Q", "1"),))
        self.assertRaises(AdminHttpError, ContentType, "text/plain", (("q", "a\nb"),))


class ScriptStatusTests(SynchronousTestCase):
    """X-Admin-Script-Status values become enum members or stay raw."""

    def test_knownValues(self) -> None:
        """All seven known statuses parse, case-insensitively, to members."""
        for status in ScriptStatus:
            self.assertIs(parse_script_status(status.value), status)
            self.assertIs(parse_script_status(status.value.upper()), status)
        self.assertEqual(len(ScriptStatus), 7)
        self.assertEqual(ScriptStatus.NOT_A_SECURITY_DOMAIN, "not-a-security-domain")

    def test_unknownKeptRaw(self) -> None:
        """An unknown status is kept as text so the failure report is not lost."""
        value = parse_script_status("vendor-specific-failure")
        self.assertEqual(value, "vendor-specific-failure")
        self.assertNotIsInstance(value, ScriptStatus)
        request = AdminRequest(target="/", script_status="vendor-specific-failure")
        [parsed] = RequestParser().feed(encode_request(request))
        self.assertEqual(parsed.script_status, "vendor-specific-failure")

    def test_emptyRefused(self) -> None:
        """An empty status carries no report and is refused."""
        self.assertRaises(AdminHttpError, parse_script_status, "")
        self.assertRaises(AdminHttpError, parse_script_status, "ok\r\nX: y")

    def test_requestConvertsText(self) -> None:
        """Passing the text of a known status stores the enum member."""
        self.assertIs(AdminRequest(target="/", script_status="ok").script_status, ScriptStatus.OK)


class AidUriTests(SynchronousTestCase):
    """X-Admin-Targeted-Application values map to AID bytes."""

    def test_example(self) -> None:
        """The Amd B example names the ISD AID A000000151000000."""
        aid = parse_aid_uri("//aid/A000000151/000000")
        self.assertEqual(aid, bytes.fromhex("A000000151000000"))
        self.assertEqual(format_aid_uri(aid), "//aid/A000000151/000000")

    def test_caseAndEmptyPix(self) -> None:
        """Hex case does not matter; a RID-only AID has an empty PIX component."""
        self.assertEqual(parse_aid_uri("//aid/a000000151/0a0b"), bytes.fromhex("a0000001510a0b"))
        self.assertEqual(parse_aid_uri("//aid/A000000151"), bytes.fromhex("A000000151"))
        self.assertEqual(parse_aid_uri("//aid/A000000151/"), bytes.fromhex("A000000151"))
        self.assertEqual(format_aid_uri(bytes.fromhex("A000000151")), "//aid/A000000151/")

    def test_badForms(self) -> None:
        """Wrong RID length, odd or overlong PIX, or another scheme are refused."""
        for text in (
            "//aid/A0000001/00",
            "//aid/A000000151/0",
            "//aid/A000000151/" + "00" * 12,
            "aid/A000000151/00",
            "//aid/A000000151/00/",
            "//aid/A00000015G/00",
        ):
            with self.assertRaises(AdminHttpError, msg=text) as ctx:
                parse_aid_uri(text)
            self.assertEqual(ctx.exception.field, "X-Admin-Targeted-Application")
        self.assertRaises(AdminHttpError, format_aid_uri, b"\xa0\x00")
        self.assertRaises(AdminHttpError, format_aid_uri, bytes(17))

    def test_inResponse(self) -> None:
        """A response for another SD carries the AID and re-parses to it."""
        response = AdminResponse(
            next_uri="/n",
            content_type=GP_COMMAND,
            targeted_application=bytes.fromhex("A000000151000000"),
            body=b"\xaa\x00",
        )
        wire = encode_response(response)
        self.assertIn(b"\r\nX-Admin-Targeted-Application: //aid/A000000151/000000\r\n", wire)
        self.assertEqual(ResponseParser().feed(wire), [response])


class EncoderTests(SynchronousTestCase):
    """The serializers write canonical bytes and refuse what cannot be sent."""

    def test_scriptResponseBytes(self) -> None:
        """A 200 script response is written in the fixed order with Content-Length."""
        response = AdminResponse(
            next_uri="/Download?req=1", content_type=GP_COMMAND, body=b"\xae\x80\x00\x00"
        )
        self.assertEqual(
            encode_response(response),
            b"HTTP/1.1 200 OK\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
            b"X-Admin-Next-URI: /Download?req=1\r\n"
            b"Content-Length: 4\r\n"
            b"Content-Type: application/vnd.globalplatform.card-content-mgt;version=1.0\r\n"
            b"\r\n\xae\x80\x00\x00",
        )

    def test_noContentHasNoLength(self) -> None:
        """A 204 has neither a body nor a Content-Length header."""
        self.assertEqual(
            encode_response(AdminResponse(status=204)),
            b"HTTP/1.1 204 No Content\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\n\r\n",
        )

    def test_emptyOkHasZeroLength(self) -> None:
        """A 200 without a script still says Content-Length: 0, so the card need not wait."""
        self.assertIn(b"\r\nContent-Length: 0\r\n", encode_response(AdminResponse()))

    def test_bodyOnBodilessStatusRefused(self) -> None:
        """A 204, 304 or 1xx with a body cannot even be built; chunking one is refused."""
        for status in (100, 204, 304):
            self.assertRaises(AdminHttpError, AdminResponse, status=status, body=b"x")
        with self.assertRaises(AdminHttpError) as ctx:
            encode_response(AdminResponse(status=204), chunked=True)
        self.assertEqual(ctx.exception.field, "Transfer-Encoding")

    def test_requestBytes(self) -> None:
        """A full request is written in the fixed order, extras and close last."""
        request = AdminRequest(
            target="/x?y=1",
            host="h",
            admin_from="agent",
            script_status=ScriptStatus.SECURITY_ERROR,
            resume=True,
            content_type=GP_RESPONSE,
            body=b"\xaf\x80",
            headers=(("User-Agent", "card"),),
            keep_alive=False,
        )
        self.assertEqual(
            encode_request(request),
            b"POST /x?y=1 HTTP/1.1\r\n"
            b"Host: h\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
            b"X-Admin-From: agent\r\n"
            b"X-Admin-Script-Status: security-error\r\n"
            b"X-Admin-Resume: true\r\n"
            b"Content-Type: application/vnd.globalplatform.card-content-mgt-response;"
            b"version=1.0\r\n"
            b"Content-Length: 2\r\n"
            b"User-Agent: card\r\n"
            b"Connection: close\r\n"
            b"\r\n\xaf\x80",
        )

    def test_chunkedRequest(self) -> None:
        """Chunked requests send the body as one chunk, and an empty body as the last chunk."""
        self.assertTrue(
            encode_request(AdminRequest(target="/", body=b"\x01" * 26), chunked=True).endswith(
                b"Transfer-Encoding: chunked\r\n\r\n1a\r\n" + b"\x01" * 26 + b"\r\n0\r\n\r\n"
            )
        )
        self.assertTrue(
            encode_request(AdminRequest(target="/"), chunked=True).endswith(
                b"chunked\r\n\r\n0\r\n\r\n"
            )
        )

    def test_emptyRequestHasNoFraming(self) -> None:
        """An empty non-chunked POST has no framing header, like the card's first POST."""
        wire = encode_request(AdminRequest(target="/"))
        self.assertNotIn(b"Content-Length", wire)
        self.assertNotIn(b"Transfer-Encoding", wire)

    def test_reservedHeadersRefused(self) -> None:
        """Typed and framing headers cannot be smuggled in through C{headers}."""
        for name in ("content-length", "Transfer-Encoding", "Connection", "HOST", "X-Admin-From"):
            with self.assertRaises(AdminHttpError, msg=name):
                AdminRequest(target="/", headers=[(name, "1")])
        for name in ("X-Admin-Next-URI", "Content-Type", "content-length"):
            self.assertRaises(AdminHttpError, AdminResponse, headers=[(name, "1")])
        # A request header that has no typed field in a response is fine there.
        self.assertEqual(AdminResponse(headers=[("Host", "h")]).headers, (("Host", "h"),))

    def test_injectionRefused(self) -> None:
        """Values that would add header lines or break the round trip are refused."""
        bad: list[dict[str, Any]] = [
            {"target": "/a b"},
            {"target": ""},
            {"target": "/\u00e9"},
            {"target": "/", "method": "PO ST"},
            {"target": "/", "host": "h\r\nX: 1"},
            {"target": "/", "admin_from": " padded"},
            {"target": "/", "headers": [("Bad Name", "v")]},
            {"target": "/", "headers": [("X-Ok", "v\x00")]},
            {"target": "/", "headers": [("X-Ok", "\u0100")]},
            {"target": "/", "headers": [("X-Ok",)]},
            {"target": "/", "body": "text"},
        ]
        for kwargs in bad:
            self.assertRaises(AdminHttpError, AdminRequest, **kwargs)
        self.assertRaises(AdminHttpError, AdminResponse, status=99)
        self.assertRaises(AdminHttpError, AdminResponse, status=600)
        self.assertRaises(AdminHttpError, AdminResponse, reason="O\nK")

    def test_reprHidesBody(self) -> None:
        """A repr shows the body's size only: scripts can carry key material."""
        secret = bytes.fromhex("80d8000115") + b"K" * 16
        text = repr(AdminResponse(body=secret)) + repr(AdminRequest(target="/", body=secret))
        self.assertNotIn("KKKK", text)
        self.assertIn("<21 bytes>", text)

    def test_evolveRevalidates(self) -> None:
        """Changing a value with attrs.evolve runs the same checks."""
        self.assertRaises(AdminHttpError, attrs.evolve, AdminResponse(status=204), body=b"x")


class ScriptResponseTests(SynchronousTestCase):
    """L{script_response}: the 200 carrying a script, without attrs' validator round."""

    def test_sameAsTheClass(self) -> None:
        """It equals the response built through the class, and encodes the same."""
        for target in (None, bytes.fromhex("A0000000871002")):
            made = script_response("/s/abc/1", b"\xae\x80\x22\x00\x00", GP_COMMAND, target)
            expected = AdminResponse(
                status=200,
                next_uri="/s/abc/1",
                content_type=GP_COMMAND,
                body=b"\xae\x80\x22\x00\x00",
                targeted_application=target,
            )
            self.assertEqual(made, expected)
            self.assertEqual(encode_response(made), encode_response(expected))

    def test_refusesWhatTheClassRefuses(self) -> None:
        """A next URI that is no header value, a body that is not bytes, a target
        that is not an AID: refused as the class refuses them."""
        for args in (
            ("/s/a\r\nX: y", b"", GP_COMMAND, None),
            ("/s/a/1", "text", GP_COMMAND, None),
            ("/s/a/1", b"", GP_COMMAND, b"\xa0\x00"),
            ("/s/a/1", b"", "application/json", None),
        ):
            self.assertRaises(AdminHttpError, script_response, *args)


class ErrorTests(SynchronousTestCase):
    """The error class carries the status to answer and survives pickling."""

    def test_family(self) -> None:
        """AdminHttpError is a CodecError named 'admin HTTP'."""
        e = AdminHttpError("bad", field="Content-Length", offset=7, status=413)
        self.assertIsInstance(e, CodecError)
        self.assertEqual(str(e), "admin HTTP: field 'Content-Length' at offset 7: bad")

    def test_pickle(self) -> None:
        """Reason, field, offset and status survive pickling."""
        e = pickle.loads(pickle.dumps(AdminHttpError("r", field="f", offset=3, status=431)))
        self.assertIsInstance(e, AdminHttpError)
        self.assertEqual((e.reason, e.field, e.offset, e.status), ("r", "f", 3, 431))


class ExportTests(SynchronousTestCase):
    """The package re-exports its public names."""

    def test_all(self) -> None:
        """Every name in __all__ exists and no private module leaks through it."""
        for name in admin_http.__all__:
            self.assertTrue(hasattr(admin_http, name), name)
            self.assertFalse(name.startswith("_"))
        self.assertEqual(len(set(admin_http.__all__)), len(admin_http.__all__))
