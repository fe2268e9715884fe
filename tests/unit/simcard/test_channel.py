"""Tests for the card's BIP channel: TLS-PSK over an in-memory network, on a fake clock.

The admin server is a small scripted one built here from the gateway's
request parser and response serializer, behind the gateway's TLS-PSK
server options, so the card and the server really handshake and exchange
encrypted records (OpenSSL on both sides, pumped by C{iosim}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from bipgw.codec.admin_http import (
    GP_COMMAND,
    AdminHttpError,
    AdminRequest,
    AdminResponse,
    RequestParser,
    encode_response,
)
from bipgw.tls import PskServerOptions, PskServerStats, psk_identity
from simcard.channel import (
    MALFORMED_REQUEST,
    AdminSessionError,
    AdminSessionResult,
    ChannelFaults,
    FailureKind,
    open_admin_channel,
)
from simcard.model import PskCredential
from simcard.session_request import AdminSessionRequest, SessionRetryPolicy

PSK = PskCredential(b"card-0018", bytes.fromhex("0123456789abcdeffedcba9876543210"))
SCRIPT = bytes.fromhex("ae80220580ca0085000000")
ANSWER = bytes.fromhex("af8023026a880000")


def _request(**changes: Any) -> AdminSessionRequest:
    values: dict[str, Any] = {
        "address": "1.2.3.4",
        "port": 8443,
        "host": "admin.example",
        "uri": "/admin",
        "agent_id": "8988211000000000018",
    }
    values.update(changes)
    return AdminSessionRequest(**values)


def _script(next_uri: str) -> AdminResponse:
    return AdminResponse(next_uri=next_uri, content_type=GP_COMMAND, body=SCRIPT)


NO_CONTENT = AdminResponse(status=204)


class _Site:
    """The scripted server's shared state: what to answer, what was seen."""

    def __init__(self, responses: list[AdminResponse | bytes | None]) -> None:
        self.responses = list(responses)
        self.requests: list[AdminRequest] = []
        self.identities: list[bytes | None] = []
        self.lost: list[Failure] = []
        self.close_after_204 = True


@implementer(IHandshakeListener)
class _AdminServer(Protocol):
    """Answers each request with the next scripted response (None: hold it)."""

    transport: Any

    def __init__(self, site: _Site) -> None:
        self.site = site
        self.parser = RequestParser()

    def handshakeCompleted(self) -> None:
        self.site.identities.append(psk_identity(self.transport))

    def dataReceived(self, data: bytes) -> None:
        try:
            requests = self.parser.feed(data)
        except AdminHttpError as e:
            self.transport.write(encode_response(AdminResponse(status=e.status)))
            self.transport.loseConnection()
            return
        for request in requests:
            self.site.requests.append(request)
            response = self.site.responses.pop(0) if self.site.responses else None
            if response is None:
                continue
            if isinstance(response, bytes):
                self.transport.write(response)
                continue
            self.transport.write(encode_response(response))
            if response.status == 204 and self.site.close_after_204:
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.site.lost.append(reason)


@implementer(IStreamClientEndpoint)
class _Endpoint:
    def __init__(self, network: _Network, host: str, port: int) -> None:
        self.network, self.host, self.port = network, host, port

    def connect(self, factory: Any) -> Deferred[Any]:
        return self.network.connect(self.host, self.port, factory)


class _Network:
    """An in-memory network where every address reaches the scripted TLS-PSK server."""

    def __init__(self, clock: MemoryReactorClock, site: _Site, keys: dict[bytes, bytes]) -> None:
        self.clock = clock
        self.options = PskServerOptions(keys.get)
        self.server = TLSMemoryBIOFactory(
            self.options, False, Factory.forProtocol(lambda: _AdminServer(site)), clock=clock
        )
        self.refuse = 0
        self.dialled: list[tuple[str, int]] = []
        self.pumps: list[IOPump] = []

    def endpoint(self, host: str, port: int) -> _Endpoint:
        self.dialled.append((host, port))
        return _Endpoint(self, host, port)

    def connect(self, host: str, port: int, factory: Any) -> Deferred[Any]:
        if self.refuse:
            self.refuse -= 1
            return fail(ConnectionRefusedError("no route"))
        address = IPv4Address("TCP", host, port)
        client = factory.buildProtocol(address)
        server = self.server.buildProtocol(address)
        self.pumps.append(
            connect(server, makeFakeServer(server), client, makeFakeClient(client),
                    greet=False, clock=self.clock)
        )  # fmt: skip
        return succeed(client)

    def flush(self) -> None:
        while any([pump.flush() for pump in self.pumps]):
            pass


class ChannelTests(SynchronousTestCase):
    """A card runs its admin session over TLS-PSK and ends it cleanly, or says why not."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))
        self.executor_seen: list[bytes] = []

    def transmit(self, capdu: bytes) -> bytes:
        self.executor_seen.append(capdu)
        return b"\x6a\x88"

    def start(
        self,
        responses: list[AdminResponse | bytes | None],
        request: AdminSessionRequest | None = None,
        keys: dict[bytes, bytes] | None = None,
        *,
        refuse: int = 0,
        close_after_204: bool = True,
        **kwargs: Any,
    ) -> Deferred[AdminSessionResult]:
        self.site = _Site(responses)
        self.site.close_after_204 = close_after_204
        self.network = _Network(self.clock, self.site, keys or {PSK.identity: PSK.key})
        self.network.refuse = refuse
        result = open_admin_channel(
            self.clock, self.network.endpoint, request or _request(), PSK, self, **kwargs
        )
        self.network.flush()
        return result

    def assertFails(self, result: Deferred[Any], kind: FailureKind, text: str) -> AdminSessionError:
        failure = self.failureResultOf(result, AdminSessionError)
        error = failure.value
        assert isinstance(error, AdminSessionError)
        self.assertEqual(error.kind, kind, error.reason)
        self.assertIn(text, error.reason)
        return error

    def test_session(self) -> None:
        """First POST, one script, the response POST, 204: done, on one TLS connection."""
        result = self.start([_script("/admin/s/1/1"), NO_CONTENT])
        self.assertEqual(self.successResultOf(result), AdminSessionResult(1, 1, 1, False))
        self.assertEqual(self.network.dialled, [("1.2.3.4", 8443)])
        self.assertEqual(self.site.identities, [PSK.identity])
        first, second = self.site.requests
        self.assertEqual(
            (first.target, first.host, first.admin_from, first.body),
            ("/admin", "admin.example", "8988211000000000018", b""),
        )
        self.assertEqual((second.target, second.body), ("/admin/s/1/1", ANSWER))
        self.assertEqual(self.executor_seen, [bytes.fromhex("80ca008500")])
        self.assertEqual(self.network.options.stats, PskServerStats(completed=1))

    def test_cardSendsCloseNotify(self) -> None:
        """After the 204 the card closes with a TLS close_notify, so the server sees a clean end."""
        result = self.start([NO_CONTENT], close_after_204=False)
        self.successResultOf(result)
        self.assertEqual(len(self.site.lost), 1)
        self.assertIsInstance(self.site.lost[0].value, ConnectionDone)

    def test_wrongPsk(self) -> None:
        """With the wrong-PSK fault the handshake fails; no retry can help, none is made."""
        result = self.start(
            [NO_CONTENT], request=_request(retry=SessionRetryPolicy(3, 1.0)),
            faults=ChannelFaults(wrong_psk=True),
        )  # fmt: skip
        error = self.assertFails(result, FailureKind.TLS, "TLS handshake failed")
        self.assertEqual(error.attempts, 1)
        self.assertEqual(self.network.options.stats, PskServerStats(key_mismatch=1))
        self.assertEqual(self.site.requests, [])

    def test_unknownIdentity(self) -> None:
        """A server that does not know the card's identity refuses the handshake."""
        result = self.start([NO_CONTENT], keys={b"someone-else": PSK.key})
        self.assertFails(result, FailureKind.TLS, "unknown psk identity")

    def test_triggerIdentity(self) -> None:
        """An Amd B trigger's PSK identity is presented instead of the card's own."""
        request = _request(psk_identity=b"trigger-id", psk_kvn=0x40, psk_kid=1)
        result = self.start([NO_CONTENT], request=request, keys={b"trigger-id": PSK.key})
        self.successResultOf(result)
        self.assertEqual(self.site.identities, [b"trigger-id"])

    def test_pskVersionMismatch(self) -> None:
        """A trigger naming a PSK key version the card lacks fails without connecting."""
        result = self.start([NO_CONTENT], request=_request(psk_kvn=0x41))
        self.assertFails(result, FailureKind.CONFIG, "PSK key version 41")
        self.assertEqual(self.network.dialled, [])

    def test_unreachableThenConnects(self) -> None:
        """Refused twice, the card retries after the policy's delay and gets through."""
        request = _request(retry=SessionRetryPolicy(2, 5.0))
        result = self.start([NO_CONTENT], request=request, refuse=2)
        self.assertNoResult(result)
        self.clock.advance(4.9)
        self.assertEqual(len(self.network.dialled), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.network.dialled), 2)
        self.clock.advance(5)
        self.network.flush()
        self.assertEqual(self.successResultOf(result), AdminSessionResult(0, 0, 3, False))

    def test_unreachableGivesUp(self) -> None:
        """Past the retry counter the session fails, saying where it could not connect."""
        result = self.start([], request=_request(retry=SessionRetryPolicy(1, 5.0)), refuse=10)
        self.clock.advance(5)
        error = self.assertFails(result, FailureKind.UNREACHABLE, "cannot connect to 1.2.3.4:8443")
        self.assertIn("(2 attempts)", error.reason)
        self.assertEqual(error.attempts, 2)

    def test_dropAndResume(self) -> None:
        """Dropped after one script, the card reconnects and re-sends its POST with Resume."""
        request = _request(retry=SessionRetryPolicy(1, 2.0))
        result = self.start(
            [_script("/admin/s/1/1"), NO_CONTENT], request=request,
            faults=ChannelFaults(drop_after_scripts=1),
        )  # fmt: skip
        self.assertNoResult(result)
        self.assertEqual(len(self.site.requests), 1)
        self.assertEqual(len(self.site.lost), 1)
        self.assertNotIsInstance(self.site.lost[0].value, ConnectionDone)  # no close_notify
        self.clock.advance(2)
        self.network.flush()
        self.assertEqual(self.successResultOf(result), AdminSessionResult(1, 1, 2, True))
        resumed = self.site.requests[1]
        self.assertEqual(
            (resumed.target, resumed.body, resumed.resume), ("/admin/s/1/1", ANSWER, True)
        )

    def test_dropWithoutRetry(self) -> None:
        """Without retries, a lost connection fails the session."""
        result = self.start([_script("/admin/s/1/1")], faults=ChannelFaults(drop_after_scripts=1))
        self.assertFails(result, FailureKind.LOST, "connection lost mid-session")

    def test_slowCard(self) -> None:
        """The slow-card fault holds every POST back by the delay."""
        result = self.start(
            [_script("/admin/s/1/1"), NO_CONTENT], faults=ChannelFaults(post_delay=3.0)
        )
        self.assertEqual(self.site.requests, [])
        self.clock.advance(3)
        self.network.flush()
        self.assertEqual(len(self.site.requests), 1)
        self.clock.advance(2.9)
        self.network.flush()
        self.assertEqual(len(self.site.requests), 1)
        self.clock.advance(0.1)
        self.network.flush()
        self.assertEqual(self.successResultOf(result).scripts, 1)

    def test_malformedHttp(self) -> None:
        """The malformed-HTTP fault sends garbage; the server's 400 fails the session."""
        result = self.start([NO_CONTENT], faults=ChannelFaults(malformed_http=True))
        self.assertFails(result, FailureKind.HTTP, "the server answered 400 Bad Request")
        self.assertEqual(self.site.requests, [])
        self.assertTrue(MALFORMED_REQUEST.startswith(b"GARBAGE"))

    def test_serverGarbage(self) -> None:
        """Bytes from the server that are not HTTP fail the session, and it is closed."""
        result = self.start([b"SSH-2.0-OpenSSH\r\n"])
        self.assertFails(result, FailureKind.HTTP, "bad HTTP from the server")
        self.assertEqual(len(self.site.lost), 1)

    def test_timeout(self) -> None:
        """A server that holds the POST forever: the session fails at the overall timeout."""
        result = self.start([None], timeout=60.0)
        self.clock.advance(59)
        self.assertNoResult(result)
        self.clock.advance(1)
        self.network.flush()
        self.assertFails(result, FailureKind.TIMEOUT, "within 60 s")
        self.assertEqual(len(self.site.lost), 1)

    def test_timeoutWhileWaitingToRetry(self) -> None:
        """The overall timeout also ends a card that is between retries."""
        request = _request(retry=SessionRetryPolicy(10, 30.0))
        result = self.start([], request=request, refuse=10, timeout=45.0)
        self.clock.advance(45)
        self.assertFails(result, FailureKind.TIMEOUT, "45 s")
        self.assertEqual(len(self.network.dialled), 2)

    def test_cancel(self) -> None:
        """Cancelling the result aborts the connection and stops every timer."""
        result = self.start([None])
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.network.flush()
        self.assertEqual(len(self.site.lost), 1)
