"""The SCP81 admin protocol over a StringTransport: real admin HTTP bytes in and out.

TLS is left out here (the identity a handshake would give is injected);
tests/unit/scp81/test_protocol_tls.py runs the same protocol under
TLS-PSK.  The card's bytes follow the live SCP81 trace in
tests/vectors.json (C{scp81_http_trace}).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from bipgw.codec.admin_http import AdminRequest, AdminResponse, ResponseParser
from bipgw.core import FailureReason, ScriptResult, SessionError, SessionState
from bipgw.scp81 import AdminFactory, AdminProtocol, AdminStats
from bipgw.scp81._protocol import MAX_PIPELINED
from tests.unit.core import GET_DATA, ICCID, ICCID2, EngineTestCase

SERVER = IPv4Address("TCP", "192.0.2.1", 8443)
FIRST_POST = (
    b"POST /server/adminagent?cmd=1 HTTP/1.1\r\n"
    b"Host: gw.example\r\n"
    b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
    b"X-Admin-From: agent-1\r\n"
    b"\r\n"
)


def answer(uri: bytes, body: bytes = bytes.fromhex("af8023026a880000")) -> bytes:
    """The card's chunked response POST, with the trace's headers."""
    return (
        b"POST " + uri + b" HTTP/1.1\r\n"
        b"X-Admin-Script-Status: ok\r\n"
        b"Content-Type: application/vnd.globalplatform.card-content-mgt-response;version=1.0\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    )


class _Card:
    """One connection: the server protocol, its transport, and a parser for
    what the server wrote."""

    def __init__(self, factory: AdminFactory, port: int = 40001) -> None:
        self.transport = StringTransport(
            hostAddress=SERVER, peerAddress=IPv4Address("TCP", "198.51.100.7", port)
        )
        self.protocol: AdminProtocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self._parser = ResponseParser()
        self._seen = 0

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def responses(self) -> list[AdminResponse]:
        """The responses written since the last call."""
        data = self.transport.value()
        new, self._seen = data[self._seen :], len(data)
        return self._parser.feed(new)

    def lose(self, reason: Failure | None = None) -> None:
        self.protocol.connectionLost(reason or Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting or self.transport.disconnected)


class _Base(EngineTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.sender.auto_accept = True
        self.identities: dict[int, bytes | None] = {}
        self.factory = AdminFactory(
            self.engine,
            self.resolve,
            clock=self.clock,
            request_timeout=20,
            identify=lambda transport: self.identities.get(
                transport.getPeer().port, ICCID.encode()
            ),
        )
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.addCleanup(self.factory.ratelog.flush)

    def resolve(self, identity: bytes) -> str | None:
        if identity == b"boom":
            raise LookupError("store down")
        text = identity.decode()
        return text if text in (ICCID, ICCID2) else None

    def card(self, port: int = 40001) -> _Card:
        card = _Card(self.factory, port)
        self.addCleanup(lambda: None if card.protocol._gone else card.lose())
        return card

    def logText(self) -> str:
        return "\n".join(formatEvent(e) for e in self.log)


class NoSessionTests(_Base):
    """Cards that connect with nothing to do get 204 and are closed."""

    def test_noSession(self) -> None:
        """No session pending: the trace's 204, the connection closes, counted and logged."""
        card = self.card()
        card.send(FIRST_POST)
        self.assertEqual(
            card.transport.value(),
            b"HTTP/1.1 204 No Content\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\n\r\n",
        )
        self.assertTrue(card.closed)
        self.assertEqual(self.factory.stats, AdminStats(connections=1, requests=1, no_session=1))
        self.assertIn(f"no admin session pending for card {ICCID} (agent agent-1,", self.logText())
        card.send(FIRST_POST)
        self.assertEqual(self.factory.stats.requests, 1)

    def test_noSessionOneLine(self) -> None:
        """A card that connects with nothing to do costs one log line, not two."""
        card = self.card()
        card.send(FIRST_POST)
        self.assertEqual(len([e for e in self.log if ICCID in formatEvent(e)]), 1)

    def test_unknownIdentity(self) -> None:
        """An identity with no card (or no identity, or a failing resolver) gets 204."""
        self.identities = {1: b"stranger", 2: None, 3: b"boom"}
        for port in (1, 2, 3):
            card = self.card(port)
            card.send(FIRST_POST)
            self.assertEqual([r.status for r in card.responses()], [204])
            self.assertTrue(card.closed)
        self.assertEqual(self.factory.stats.unknown_card, 3)
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)
        self.assertIn("PSK identity b'stranger', which names no card", self.logText())


class BadRequestTests(_Base):
    """Malformed HTTP gets the parser's status, a close and a log line naming it."""

    def assertRefused(self, data: bytes, status: int, problem: str) -> None:
        card = self.card()
        card.send(data)
        (response,) = card.responses()
        self.assertEqual((response.status, response.keep_alive), (status, False))
        self.assertTrue(card.closed)
        self.assertEqual(self.factory.stats.bad_requests, 1)
        line = [formatEvent(e) for e in self.log if "bad admin request" in formatEvent(e)]
        self.assertEqual(len(line), 1)
        self.assertIn(problem, line[0])
        self.assertIn("198.51.100.7", line[0])
        card.send(FIRST_POST)
        self.assertEqual(card.responses(), [])

    def test_garbage(self) -> None:
        """Bytes that are not a request line: 400 naming the request line."""
        self.assertRefused(b"\x16\x03\x01\x02\x00 hello\r\n\r\n", 400, "request line")

    def test_http10(self) -> None:
        """HTTP/1.0 is refused with 505."""
        self.assertRefused(FIRST_POST.replace(b"HTTP/1.1", b"HTTP/1.0"), 505, "HTTP/1.0")

    def test_bodyTooLarge(self) -> None:
        """A Content-Length over the limit is refused with 413 before the body."""
        self.factory.max_body = 64
        data = FIRST_POST.replace(b"\r\n\r\n", b"\r\nContent-Length: 65\r\n\r\n")
        self.assertRefused(data, 413, "Content-Length")

    def test_missingAdminProtocol(self) -> None:
        """A first request without X-Admin-Protocol is refused with 400."""
        data = FIRST_POST.replace(b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n", b"")
        self.assertRefused(data, 400, "X-Admin-Protocol None")

    def test_wrongAdminProtocol(self) -> None:
        """Another protocol version is refused with 400, naming what was sent."""
        data = FIRST_POST.replace(b"/1.0", b"/2.0")
        self.assertRefused(data, 400, "'globalplatform-remote-admin/2.0'")


class RefusedCardTests(_Base):
    """A card refused for a malformed request ends its session at once (issue 15)."""

    def test_firstRequestRefused(self) -> None:
        """The waiting session fails now, saying the card connected and was refused,
        not later with not-connected."""
        session = self.open()
        card = self.card()
        card.send(b"\x16\x03\x01\x02\x00 hello\r\n\r\n")
        self.assertEqual(card.responses()[0].status, 400)
        error = self.failureResultOf(session.ready, SessionError).value
        self.assertIs(error.reason, FailureReason.PROTOCOL_ERROR)
        self.assertIn("the card connected and was refused", str(error))
        self.assertIn("request line", str(error))

    def test_laterRequestRefused(self) -> None:
        """A malformed request mid-session ends it at once with the refusal as reason."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        self.successResultOf(session.ready)
        result = session.execute([GET_DATA])
        card.responses()
        card.send(b"POST /admin/s/s1/1 HTTP/1.0\r\n\r\n")
        self.assertEqual(card.responses()[0].status, 505)
        self.failureResultOf(result)
        history = " ".join(e.detail or "" for e in self.recorder.history(session.id))
        self.assertIn("the card connected and was refused", history)

    def test_otherCardUntouched(self) -> None:
        """A refusal for an unknown card ends nobody's session."""
        session = self.open(ICCID)
        self.identities = {7: ICCID2.encode()}
        card = self.card(7)
        card.send(b"garbage\r\n\r\n")
        self.assertNoResult(session.ready)


class LogFloodTests(_Base):
    """Peer-triggered lines are rate-limited across connections (issue 15)."""

    def test_tenThousandBadConnections(self) -> None:
        """10,000 connections with garbage or no session: a bounded number of lines."""
        for n in range(10_000):
            card = _Card(self.factory, port=n % 60000 + 1)
            card.send(b"garbage\r\n\r\n" if n % 2 else FIRST_POST)
            card.lose()
        self.clock.advance(60)
        lines = [e for e in self.log if "rate_kind" in e]
        self.assertLessEqual(len(lines), 2 * 6)
        self.assertEqual(self.factory.stats.bad_requests, 5_000)
        self.assertEqual(self.factory.stats.no_session, 5_000)
        counted = sum(e.get("rate_suppressed", 0) for e in lines)
        self.assertEqual(counted, 10_000 - 2 * 5)


class RelayTests(_Base):
    """A whole session through the protocol, byte for byte."""

    def test_liveTraceSession(self) -> None:
        """First POST held; the 200 with the trace's script; the chunked answer
        gives 6A88; close sends 204 and closes; the session ends CLOSED."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        self.assertEqual(card.transport.value(), b"")
        self.assertEqual(self.successResultOf(session.ready).agent_id, "agent-1")
        result = session.execute([GET_DATA])
        self.assertEqual(
            card.transport.value(),
            b"HTTP/1.1 200 OK\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
            b"X-Admin-Next-URI: /admin/s/s1/1\r\n"
            b"Content-Length: 11\r\n"
            b"Content-Type: application/vnd.globalplatform.card-content-mgt;version=1.0\r\n"
            b"\r\n" + bytes.fromhex("ae80220580ca0085000000"),
        )
        card.responses()
        card.send(answer(b"/admin/s/s1/1"))
        outcome = self.successResultOf(result)
        self.assertIsInstance(outcome, ScriptResult)
        self.assertEqual(outcome.responses, (b"\x6a\x88",))
        closing = session.close()
        (end,) = card.responses()
        self.assertEqual(end.status, 204)
        self.assertTrue(card.closed)
        self.assertNoResult(closing)
        card.lose()
        self.assertIs(self.successResultOf(closing).state, SessionState.CLOSED)
        self.assertEqual(self.factory.stats, AdminStats(connections=1, requests=2))
        self.assertEqual(self.factory.connections, set())

    def test_byteByByte(self) -> None:
        """Requests split into single bytes give the same session."""
        session = self.open()
        card = self.card()
        for i in range(len(FIRST_POST)):
            card.send(FIRST_POST[i : i + 1])
        result = session.execute([GET_DATA])
        card.responses()
        data = answer(b"/admin/s/s1/1")
        for i in range(len(data)):
            card.send(data[i : i + 1])
        self.assertEqual(self.successResultOf(result).responses, (b"\x6a\x88",))

    def test_pipelinedInOrder(self) -> None:
        """Requests sent before the previous answer wait their turn."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST + answer(b"/admin/s/s1/1"))
        self.assertIs(session.status().state, SessionState.CONNECTED)
        result = session.execute([GET_DATA])
        self.assertEqual(self.successResultOf(result).script, 1)
        self.assertEqual([r.status for r in card.responses()], [200])
        self.assertEqual(self.factory.stats.requests, 2)

    def test_laterRequestWithoutAdminProtocol(self) -> None:
        """After the first request, a POST without X-Admin-Protocol is accepted
        (as in the live trace), but a wrong one is refused."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        first = session.execute([GET_DATA])
        card.send(answer(b"/admin/s/s1/1"))
        self.successResultOf(first)
        second = session.execute([GET_DATA])
        bad = answer(b"/admin/s/s1/2").replace(
            b"\r\n\r\n", b"\r\nX-Admin-Protocol: something-else/1.0\r\n\r\n", 1
        )
        card.send(bad)
        self.assertEqual([r.status for r in card.responses()], [200, 200, 400])
        card.lose()
        self.assertIs(
            self.failureResultOf(second, SessionError).value.reason, FailureReason.CARD_DROPPED
        )  # type: ignore[attr-defined]

    def test_connectionCloseHonoured(self) -> None:
        """A request with Connection: close gets its answer, then the connection closes."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        session.execute([GET_DATA])
        card.send(
            answer(b"/admin/s/s1/1").replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        )
        self.assertFalse(card.closed)
        second = session.execute([GET_DATA])
        self.assertEqual([r.status for r in card.responses()], [200, 200])
        self.assertTrue(card.closed)
        card.lose()
        self.failureResultOf(second, SessionError)

    def test_dropMidScript(self) -> None:
        """Losing the connection while a script runs fails it with CARD_DROPPED."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        result = session.execute([GET_DATA])
        card.lose(Failure(ConnectionLost("reset by peer")))
        error = self.failureResultOf(result, SessionError).value
        self.assertIs(error.reason, FailureReason.CARD_DROPPED)  # type: ignore[attr-defined]
        self.assertIn("reset by peer", str(error))
        self.assertEqual(self.factory.connections, set())

    def test_sessionDropsConnection(self) -> None:
        """When the card does not answer in time the session closes the connection."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        result = session.execute([GET_DATA])
        self.clock.advance(self.policy.command_timeout)
        self.failureResultOf(result, SessionError)
        self.assertTrue(card.transport.disconnecting)
        self.assertIn("closing admin connection of card", self.logText())
        card.lose()


class ConnectionTests(_Base):
    """Per-connection limits, and connections that cannot affect each other."""

    def test_requestTimeout(self) -> None:
        """A connection with no request within request_timeout is dropped and counted;
        after a first request the timer is gone."""
        idle = self.card(1)
        self.clock.advance(19.9)
        self.assertFalse(idle.closed)
        self.clock.advance(0.1)
        self.assertTrue(idle.transport.disconnected)
        idle.lose()
        self.assertEqual(self.factory.stats.timeouts, 1)
        self.open()
        busy = self.card(2)
        busy.send(FIRST_POST)
        self.clock.advance(self.policy.idle_timeout - 1)
        self.assertFalse(busy.closed)
        self.assertEqual(self.factory.stats.timeouts, 1)

    def test_maxConnections(self) -> None:
        """Beyond max_connections a new connection is aborted and counted."""
        self.factory.max_connections = 1
        first = self.card(1)
        second = self.card(2)
        self.assertTrue(second.transport.disconnected)
        self.assertFalse(first.closed)
        self.assertEqual((self.factory.stats.connections, self.factory.stats.refused), (1, 1))
        second.lose()
        self.assertEqual(len(self.factory.connections), 1)

    def test_independentConnections(self) -> None:
        """One card's garbage closes only its own connection."""
        good_session = self.open(ICCID)
        self.identities = {2: ICCID2.encode()}
        good = self.card(1)
        bad = self.card(2)
        good.send(FIRST_POST)
        bad.send(b"NONSENSE\r\n\r\n")
        self.assertTrue(bad.closed)
        self.assertFalse(good.closed)
        result = good_session.execute([GET_DATA])
        good.send(answer(b"/admin/s/s1/1"))
        self.successResultOf(result)
        bad.lose()
        self.assertIs(good_session.status().state, SessionState.CONNECTED)

    def test_answerAfterLoss(self) -> None:
        """An answer arriving after the connection is gone is not written;
        a session that fails to answer gets a 500 and a close."""

        class Link:
            def __init__(self) -> None:
                self.pending: list[Deferred[AdminResponse]] = []
                self.lost_with: list[Any] = []

            def post(self, request: AdminRequest) -> Deferred[AdminResponse]:
                d: Deferred[AdminResponse] = Deferred()
                self.pending.append(d)
                return d

            def lost(self, reason: Failure) -> None:
                self.lost_with.append(reason)

        class Gateway:
            link = Link()

            def card_arrived(self, iccid: str, agent_id: str, **kw: Any) -> Link:
                return self.link

        self.factory.gateway = Gateway()  # type: ignore[assignment]
        card = self.card(1)
        card.send(FIRST_POST)
        card.lose()
        Gateway.link.pending[0].callback(AdminResponse(status=204))
        self.assertEqual(card.transport.value(), b"")
        self.assertEqual(len(Gateway.link.lost_with), 1)
        other = self.card(2)
        other.send(FIRST_POST)
        Gateway.link.pending[1].errback(RuntimeError("engine bug"))
        self.assertEqual([r.status for r in other.responses()], [500])
        self.assertTrue(other.closed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HostileInputTests(_Base):
    """Whatever bytes arrive, the protocol answers at most once and never raises."""

    @given(
        st.one_of(
            st.binary(max_size=300),
            st.tuples(
                st.integers(min_value=0, max_value=len(FIRST_POST) - 1), st.binary(max_size=8)
            ).map(lambda cut: FIRST_POST[: cut[0]] + cut[1] + FIRST_POST[cut[0] + 1 :]),
        ),
        st.lists(st.integers(min_value=1, max_value=40), max_size=20),
    )
    def test_randomAndMutatedRequests(self, data: bytes, sizes: list[int]) -> None:
        """Random or mutated requests, in any split, give one well-formed
        answer (204 for a sound request, an error status otherwise) and a
        close, or nothing yet; no exception escapes."""
        self.factory.stats = AdminStats()
        card = _Card(self.factory)
        pos = 0
        for size in [*sizes, len(data)]:
            card.send(data[pos : pos + size])
            pos += size
        answers = card.responses()
        self.assertLessEqual(len(answers), 1)
        if answers:
            self.assertIn(answers[0].status, (204, 400, 413, 414, 431, 501, 505))
            self.assertTrue(card.closed)
        card.lose()
        self.assertEqual(self.factory.connections, set())
        self.factory.ratelog.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PipelineBoundTests(_Base):
    """A card cannot queue requests without bound (issue 15)."""

    def test_tooManyPipelined(self) -> None:
        """More than MAX_PIPELINED waiting requests: 400 and close; the session ends."""
        session = self.open()
        card = self.card()
        card.send(FIRST_POST)
        self.successResultOf(session.ready)
        card.send(answer(b"/admin/s/s1/1") * (MAX_PIPELINED + 1))
        self.assertEqual([r.status for r in card.responses()], [400])
        self.assertTrue(card.closed)
        self.assertTrue(session.status().state.terminal)
        self.assertEqual(card.protocol._pending, [])
