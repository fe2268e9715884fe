"""The platform SDK against the real platform server, in memory.

Every call goes through the SDK's frames, the server's channel, the session
engine and a fake card, and back.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.test import iosim

import bipgw.client
from bipgw.client import (
    CardSession,
    ChannelClosedError,
    Closed,
    Notification,
    PlatformClient,
    PlatformError,
    Result,
    SessionFailedError,
    State,
    Timeouts,
    _channel,
    connect,
)
from bipgw.codec.apdu import describe_sw
from bipgw.codec.platform import MessageError
from tests.unit.client import SdkTestCase
from tests.unit.platform import AID, GET_DATA, OTHER_AID, echo, iccid, msisdn


class ExchangeTests(SdkTestCase):
    """connect, open_session, send, send_script, close."""

    def test_fullExchange(self) -> None:
        """The SDK opens a session by MSISDN, runs APDUs given as hex and as
        bytes, runs a script, and closes."""
        client = self.client()
        self.assertEqual((client.tenant, client.heartbeat), ("acme", 30))
        opening = client.open_session(msisdn=msisdn(1), service="demo")
        self.flush()
        self.assertNoResult(opening)
        self.advance(2)
        session = self.successResultOf(opening)
        self.assertEqual((session.id, session.iccid, session.service), ("s1", iccid(1), "demo"))
        self.assertEqual(client.sessions, [session])

        sent = session.send(["00 A4 04 00 07 " + AID.hex(), bytes.fromhex(GET_DATA)])
        self.advance(0.5)
        result = self.successResultOf(sent)
        self.assertIsInstance(result, Result)
        self.assertEqual(result.rapdus, (b"\x90\x00", b"\x6a\x88"))
        self.assertEqual((result.sw, result.status_words), (0x6A88, (0x9000, 0x6A88)))
        self.assertEqual(result.meanings[1], describe_sw(0x6A88))
        self.assertEqual((result.executed, result.elapsed_ms, result.complete), (2, 500, True))

        scripted = session.send_script("AE80220580CA0085000000")
        self.advance(0.5)
        self.assertEqual(self.successResultOf(scripted).rapdus, (b"\x6a\x88",))

        ended = session.when_ended()
        closing = session.close()
        self.flush()
        self.assertIsNone(self.successResultOf(closing))
        self.assertIsInstance(self.successResultOf(ended), Closed)
        self.assertTrue(session.ended)
        self.assertEqual(client.sessions, [])
        self.assertEqual(self.fleet.card(1).closes, 1)
        self.assertIsNone(self.successResultOf(session.close()))

    def test_asyncDef(self) -> None:
        """The SDK reads naturally in async def code, with async with."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 7443)

        async def platform() -> tuple[Result, CardSession, PlatformClient]:
            client = await connect(self.reactor, endpoint, token="tok-acme-0123456789")
            async with client:
                session = await client.open_session(iccid=iccid(2), service="demo")
                async with session:
                    result = await session.send([echo(b"async")])
            return result, session, client

        done = Deferred.fromCoroutine(platform())
        pump = iosim.ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps.append(pump)
        self.advance(3)
        result, session, client = self.successResultOf(done)
        self.assertEqual(result.data(), b"async")
        self.assertTrue(session.ended)
        self.assertEqual(self.fleet.card(2).closes, 1)
        self.assertIsNone(self.successResultOf(client.when_disconnected()))

    def test_manySessions(self) -> None:
        """Twenty sessions opened at once through one client all work."""
        client = self.client()
        opening = [client.open_session(iccid=iccid(n), service="demo") for n in range(1, 21)]
        self.advance(2)
        sessions = self.successResultOf(gatherResults(opening))
        sent = [s.send([echo(bytes([n]))]) for n, s in enumerate(sessions)]
        self.advance(0.5)
        results = self.successResultOf(gatherResults(sent))
        self.assertEqual([r.data() for r in results], [bytes([n]) for n in range(20)])
        closing = [s.close() for s in sessions]
        self.flush()
        self.successResultOf(gatherResults(closing))
        self.assertEqual(self.factory.tenancy.routed, 0)

    def test_ping(self) -> None:
        """ping() measures a round trip."""
        client = self.client()
        pinged = client.ping()
        self.flush()
        self.assertGreaterEqual(self.successResultOf(pinged), 0.0)

    def test_heartbeatsAnswered(self) -> None:
        """The SDK answers the gateway's pings: an idle client stays connected."""
        client = self.client()
        self.advance(200, step=1)
        self.assertNoResult(client.when_disconnected())
        self.assertEqual(len(self.factory.connections), 1)

    def test_timeouts(self) -> None:
        """Timeouts given to open_session are enforced by the gateway."""
        self.fleet.card(1).reachable = False
        client = self.client()
        opening = client.open_session(iccid=iccid(1), service="demo", timeouts=Timeouts(ready=4))
        self.advance(4)
        failure = self.failureResultOf(opening, SessionFailedError)
        self.assertEqual(failure.value.code, "ready-timeout")


class StatusTests(SdkTestCase):
    """status(): what became of a session, also from a new connection."""

    def test_liveAndAfterReconnect(self) -> None:
        """A live session's full state; after the connection is lost, a new
        client of the same tenant learns that the gateway closed it."""
        client = self.client()
        opening = client.open_session(iccid=iccid(1), service="demo")
        self.advance(2)
        session = self.successResultOf(opening)
        asked = client.status(session.id)
        self.flush()
        state = self.successResultOf(asked)
        self.assertIsInstance(state, State)
        self.assertEqual(
            (state.session, state.state, state.ended, state.iccid),
            (session.id, "connected", False, iccid(1)),
        )
        gone = client.disconnect()
        self.advance(1)
        self.successResultOf(gone)
        again = self.client()
        asked = again.status(session.id)
        self.flush()
        state = self.successResultOf(asked)
        self.assertEqual((state.state, state.ended, state.service), ("closed", True, "demo"))

    def test_unknown(self) -> None:
        """A session the tenant may not see fails with unknown-session; a
        malformed id is refused before anything is sent."""
        client = self.client()
        asked = client.status("no-such-session")
        self.flush()
        failure = self.failureResultOf(asked, PlatformError)
        self.assertEqual(
            (failure.value.code, failure.value.session), ("unknown-session", "no-such-session")
        )
        self.failureResultOf(client.status("not a session id"), MessageError)


class FailureTests(SdkTestCase):
    """How the gateway's refusals and failures reach SDK callers."""

    def test_authFailed(self) -> None:
        """A bad token fails connect with auth-failed; the connection closes."""
        failure = self.failureResultOf(self.dial(token="wrong"), PlatformError)
        self.assertEqual(failure.value.code, "auth-failed")
        self.assertEqual(self.factory.connections, set())

    def test_sessionFailed(self) -> None:
        """An unknown card fails open_session with SessionFailedError and the reason."""
        client = self.client()
        opening = client.open_session(iccid="8988211000000099999", service="demo")
        self.flush()
        failure = self.failureResultOf(opening, SessionFailedError)
        self.assertEqual(failure.value.code, "unknown-card")
        self.assertEqual(client.sessions, [])

    def test_refused(self) -> None:
        """A refused open fails with PlatformError and the gateway's code."""
        client = self.client()
        opening = client.open_session(iccid=iccid(1), service="nope")
        self.flush()
        self.assertEqual(
            self.failureResultOf(opening, PlatformError).value.code, "service-not-allowed"
        )
        locked = client.open_session(iccid=iccid(1), service="locked")
        self.advance(2)
        session = self.successResultOf(locked)
        sent = session.send(["00A40400" + "07" + OTHER_AID.hex()])
        self.flush()
        error = self.failureResultOf(sent, PlatformError).value
        self.assertEqual((error.code, error.session), ("application-not-allowed", session.id))
        self.assertIn(OTHER_AID.hex().upper(), error.message)

    def opened_session(self, client: PlatformClient, n: int = 1) -> CardSession:
        opening = client.open_session(iccid=iccid(n), service="demo")
        self.advance(2)
        return self.successResultOf(opening)

    def test_cardDropped(self) -> None:
        """A card that drops: the command in flight fails with card-dropped
        and when_ended gives the notification."""
        client = self.client()
        session = self.opened_session(client)
        ended = session.when_ended()
        sent = session.send([echo(b"")])
        self.flush()
        self.fleet.card(1).drop()
        self.flush()
        self.assertEqual(self.failureResultOf(sent, PlatformError).value.code, "card-dropped")
        notification = self.successResultOf(ended)
        self.assertIsInstance(notification, Notification)
        assert isinstance(notification, Notification)
        self.assertEqual(
            (notification.event, notification.reason), ("card_dropped", "card-dropped")
        )
        self.assertTrue(session.ended)

    def test_connectionLost(self) -> None:
        """When the gateway goes away, outstanding requests fail with
        ChannelClosedError, and so do later ones."""
        client = self.client()
        session = self.opened_session(client)
        self.fleet.card(1).hang = True
        sent = session.send([echo(b"")])
        ended = session.when_ended()
        self.flush()
        for protocol in list(self.factory.connections):
            assert protocol.transport is not None
            protocol.transport.loseConnection()
        self.flush()
        self.failureResultOf(sent, ChannelClosedError)
        self.failureResultOf(ended, ChannelClosedError)
        self.assertIsNone(self.successResultOf(client.when_disconnected()))
        self.failureResultOf(client.ping(), ChannelClosedError)
        self.failureResultOf(
            client.open_session(iccid=iccid(2), service="demo"), ChannelClosedError
        )

    def test_disconnectClosesSessions(self) -> None:
        """client.disconnect() ends the connection; the gateway closes the sessions."""
        client = self.client()
        self.opened_session(client, 1)
        self.opened_session(client, 2)
        done = client.disconnect()
        self.flush()
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual([self.fleet.card(n).closes for n in (1, 2)], [1, 1])

    def test_cancelOpen(self) -> None:
        """Cancelling open_session, before or after the gateway accepted it,
        closes the session on the gateway."""
        client = self.client()
        early = client.open_session(iccid=iccid(1), service="demo")
        early.cancel()
        late = client.open_session(iccid=iccid(2), service="demo")
        self.flush()
        late.cancel()
        self.flush()
        self.failureResultOf(early, CancelledError)
        self.failureResultOf(late, CancelledError)
        for session in ("s1", "s2"):
            status = self.engine.status(session)
            assert status is not None and status.reason is not None
            self.assertEqual(status.reason.value, "cancelled")
        self.advance(3)
        self.assertEqual(client.sessions, [])
        self.assertEqual((client._openings, client._starting), ({}, {}))

    def test_badArguments(self) -> None:
        """Bad arguments fail the call's Deferred, naming the field; nothing is sent."""
        client = self.client()
        self.assertIn(
            "open.msisdn",
            str(
                self.failureResultOf(
                    client.open_session(msisdn="x", service="demo"), MessageError
                ).value
            ),
        )
        self.failureResultOf(client.open_session(service="demo"), MessageError)
        self.failureResultOf(
            client.open_session(iccid=iccid(1), service="demo", application="zz"), MessageError
        )
        session = self.opened_session(client)
        self.assertIn(
            "apdus[0]", str(self.failureResultOf(session.send(["zz"]), MessageError).value)
        )
        self.failureResultOf(session.send(b"\x00\xa4\x04\x00"), TypeError)  # type: ignore[arg-type]
        self.failureResultOf(session.send([]), MessageError)
        self.failureResultOf(session.send_script("AF80"), MessageError)

    def test_connectTimeout(self) -> None:
        """A server that never answers hello: connect fails after its timeout
        and drops the connection."""
        TCP4ServerEndpoint(self.reactor, 7444).listen(Factory.forProtocol(Protocol))
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 7444)
        connecting = connect(self.reactor, endpoint, token="t", timeout=5)
        pump = iosim.ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps.append(pump)
        self.advance(4.75)
        self.assertNoResult(connecting)
        self.advance(0.25)
        self.failureResultOf(connecting, TimeoutError)
        self.assertTrue(pump.clientIO.disconnected)


class ExportTests(SdkTestCase):
    """The SDK's public names."""

    def test_exports(self) -> None:
        """Every name in bipgw.client.__all__ exists and is the implementation's object."""
        for name in bipgw.client.__all__:
            value = getattr(bipgw.client, name)
            if name in _channel.__all__:
                self.assertIs(value, getattr(_channel, name))
