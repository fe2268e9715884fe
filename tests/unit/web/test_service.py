"""Tests for HttpApiService and the site: listening, body caps, stopping, mounting concerns."""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from bipgw.tls import ListeningService
from bipgw.web import (
    HTTP_API_SERVICE,
    ApiRoutes,
    HttpApiService,
    LimitedRequest,
    api_site,
    mount,
    web_site,
)
from tests.unit.platform import TOKEN
from tests.unit.web import BASE, WebTestCase


class _FailingEndpoint:
    """A server endpoint whose port is taken."""

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return fail(CannotListenError("127.0.0.1", 8080, OSError("in use")))


class ServiceTests(WebTestCase):
    """The service listens on its endpoint string and closes the API's sessions on stop."""

    def test_listensOnEndpointString(self) -> None:
        """startService listens on the endpoint the string names, with the API's site."""
        reactor = MemoryReactorClock()
        service = HttpApiService(self.api, "tcp:8080:interface=127.0.0.1", reactor)
        service.startService()
        port, factory, _, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (8080, "127.0.0.1"))
        assert isinstance(factory, Site)
        self.assertEqual(factory.requestFactory.max_body, self.settings.max_body)
        self.assertIsNotNone(service.port)
        self.successResultOf(service.stopService())
        self.assertFalse(service.running)

    def test_oneListeningService(self) -> None:
        """The service is the one listening service every door uses, named for the gateway."""
        service = HttpApiService(self.api, "tcp:0", MemoryReactorClock())
        self.assertIsInstance(service, ListeningService)
        self.assertEqual(service.name, HTTP_API_SERVICE)
        self.assertIs(service.api, self.api)

    def test_whenListening(self) -> None:
        """when_listening fires with the port once the API listens, and waits again after stop."""
        reactor = MemoryReactorClock()
        service = HttpApiService(self.api, "tcp:8080", reactor)
        service.startService()
        port = self.successResultOf(service.when_listening())
        self.assertIs(service.port, port)
        self.assertEqual(reactor.tcpServers[0][0], 8080)
        self.successResultOf(service.stopService())
        self.assertNoResult(service.when_listening())

    def test_listenFailure(self) -> None:
        """A port that cannot be had fails when_listening (the gateway's start fails)."""
        service = HttpApiService(self.api, _FailingEndpoint(), MemoryReactorClock())  # type: ignore[arg-type]
        service.startService()
        self.failureResultOf(service.when_listening(), CannotListenError)
        self.flushLoggedErrors(CannotListenError)
        self.successResultOf(service.stopService())

    def test_stopClosesSessions(self) -> None:
        """Stopping closes every session the API opened; the cards get their 204."""
        reactor = MemoryReactorClock()
        service = HttpApiService(self.api, "tcp:0", reactor)
        service.startService()
        self.ready(1)
        self.ready(2)
        self.successResultOf(service.stopService())
        self.assertEqual([self.fleet.card(n).closes for n in (1, 2)], [1, 1])
        self.assertEqual(self.engine.sessions(), [])


class SiteTests(WebTestCase):
    """The site caps request bodies, also when their length is not announced."""

    def post_chunked(self, size: int) -> bytes:
        protocol = api_site(self.api, self.clock).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        fields = {"service": "demo", "iccid": self.iccid(1)}
        body = json.dumps({**fields, "pad": "x" * size} if size else fields).encode()
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100])
            for i in range(0, len(body), 100)
        )
        protocol.dataReceived(
            b"POST /v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        )
        out = transport.value()
        protocol.connectionLost(None)
        return out

    def test_chunkedTooLarge(self) -> None:
        """A chunked body over the limit is answered 413 without being buffered whole."""
        out = self.post_chunked(5000)
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:80])
        self.assertIn(b'"code":"body-too-large"', out)
        self.assertEqual(self.fleet.pushes, [])

    def test_chunkedWithinLimit(self) -> None:
        """A chunked body within the limit is read and served."""
        out = self.post_chunked(0)
        self.assertTrue(out.startswith(b"HTTP/1.1 201 "), out[:200])
        self.call("DELETE", "/v1/sessions/s1")

    def test_limitedRequest(self) -> None:
        """web_site serves with a LimitedRequest capped at the given size, tracebacks hidden."""
        site = web_site(ApiRoutes(self.api).resource(), max_body=300)
        self.assertTrue(issubclass(site.requestFactory, LimitedRequest))
        self.assertEqual(site.requestFactory.max_body, 300)
        self.assertFalse(site.displayTracebacks)


class _Args:
    """Answers with the form arguments twisted parsed from the request."""

    app = Klein()

    @app.route("/", methods=["POST"])
    def echo(self, request: Any) -> bytes:
        return repr(sorted(request.args.items())).encode()


class FormBodyTests(SynchronousTestCase):
    """A form body is parsed into arguments (the portal's forms); a JSON body
    is not looked at as a form (twisted's parse of its type is skipped)."""

    def post(self, kind: bytes) -> bytes:
        protocol = web_site(_Args().app.resource(), max_body=100).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: " + kind + b"\r\n"
            b"Content-Length: 3\r\nConnection: close\r\n\r\na=b"
        )
        out = transport.value()
        protocol.connectionLost(None)
        return out.split(b"\r\n\r\n", 1)[1]

    def test_formParsed(self) -> None:
        """A form-encoded body becomes the request's arguments."""
        self.assertIn(b"[(b'a', [b'b'])]", self.post(b"application/x-www-form-urlencoded"))

    def test_jsonNotParsedAsForm(self) -> None:
        """A JSON body that reads like a form gives no arguments, and no type parse."""
        self.assertIn(b"[]", self.post(b"application/json; charset=utf-8"))


class _Portal:
    """Another concern's Klein app, as the operator portal will be."""

    app = Klein()

    @app.route("/", methods=["GET"])
    def index(self, request: Any) -> bytes:
        request.setHeader("Content-Type", "text/plain")
        return b"portal " + b"/".join(request.prepath)

    @app.route("/sessions", methods=["GET"])
    def sessions(self, request: Any) -> bytes:
        return b"portal sessions"


class MountTests(WebTestCase):
    """Several Klein apps are served by one site, each under its own path."""

    def setUp(self) -> None:
        super().setUp()
        root = mount({"/portal/": _Portal().app.resource(), "/": ApiRoutes(self.api).resource()})
        self.both: Any = StubTreq(root)

    def get(self, path: str, **kwargs: Any) -> tuple[int, bytes]:
        d = self.both.get(BASE + path, **kwargs)
        self.both.flush()
        response = self.successResultOf(d)
        return response.code, self.successResultOf(self.both.content(response))

    def test_apiBesideAnother(self) -> None:
        """The API's paths reach the API, the other concern's reach it."""
        code, body = self.get("/v1/openapi.json")
        self.assertEqual((code, json.loads(body)["openapi"][:2]), (200, "3."))
        self.assertEqual(self.get("/portal/sessions"), (200, b"portal sessions"))
        self.assertEqual(self.get("/portal/"), (200, b"portal portal"))

    def test_apiKeepsItsErrors(self) -> None:
        """A path no concern claims is the API's JSON 404; its 401s are unchanged."""
        code, body = self.get("/nothing/here")
        self.assertEqual((code, json.loads(body)["code"]), (404, "not-found"))
        code, body = self.get("/v1/sessions/s1")
        self.assertEqual((code, json.loads(body)["code"]), (401, "auth-failed"))

    def test_prefixOrderIrrelevant(self) -> None:
        """The longer prefix wins whatever the order the mounts are given in."""
        root = mount({"/": ApiRoutes(self.api).resource(), "/portal/": _Portal().app.resource()})
        stub: Any = StubTreq(root)
        d = stub.get(BASE + "/portal/sessions")
        stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(self.successResultOf(stub.content(response)), b"portal sessions")


class MountValidationTests(SynchronousTestCase):
    """A mount prefix must be a path."""

    def test_relativePrefix(self) -> None:
        """A prefix without its leading slash is refused."""
        with self.assertRaises(ValueError):
            mount({"portal/": _Portal().app.resource()})
