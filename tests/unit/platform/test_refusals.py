"""Every request the channel refuses, with its code; the connection survives
each refusal except the two that must end it (bad credentials, an
unreadable stream)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail

from bipgw.codec.platform import encode_frame
from bipgw.core import ALL_INSTRUCTIONS, ServiceGrant, TenantGrant
from tests.unit.platform import (
    AID,
    OTHER_AID,
    OTHER_TOKEN,
    TAR,
    PlatformTestCase,
    RawPlatform,
    echo,
    iccid,
)


class RefusalTests(PlatformTestCase):
    """Refusals, each answered with an error naming its code."""

    def refused(self, platform: RawPlatform, **message: Any) -> dict[str, Any]:
        """Send C{message}; the one error it got (and nothing else)."""
        platform.send(**message)
        self.flush()
        [error] = platform.take()
        self.assertEqual(error["type"], "error", error)
        return dict(error)

    def assertAlive(self, platform: RawPlatform) -> None:
        """The connection still answers."""
        platform.send(type="ping", id="alive")
        self.flush()
        self.assertEqual(platform.take(), [{"type": "pong", "id": "alive"}])
        self.assertFalse(platform.lost)

    def test_malformedJson(self) -> None:
        """A frame that is not JSON: malformed-frame with the offset, and the
        connection goes on."""
        platform = self.login()
        platform.write(b"\x00\x00\x00\x05{nope")
        self.flush()
        [error] = platform.take()
        self.assertEqual(error["code"], "malformed-frame")
        self.assertIn("invalid JSON", error["message"])
        self.assertAlive(platform)

    def test_notAnObject(self) -> None:
        """A JSON array is not a message: malformed-frame."""
        platform = self.login()
        platform.write(b"\x00\x00\x00\x02[]")
        self.flush()
        self.assertEqual(platform.take()[0]["code"], "malformed-frame")
        self.assertAlive(platform)

    def test_oversizedFrameCloses(self) -> None:
        """A length over the limit: frame-too-large, then the connection is
        closed (the stream cannot be resynchronised)."""
        platform = self.login()
        platform.write(b"\x7f\xff\xff\xff")
        self.flush()
        [error] = platform.take()
        self.assertEqual(error["code"], "frame-too-large")
        self.assertIn("'length'", error["message"])
        self.assertTrue(platform.lost)

    def test_oversizedBeforeHello(self) -> None:
        """The limit holds before authentication too."""
        platform = self.connect()
        platform.write((2 << 20).to_bytes(4, "big"))
        self.flush()
        self.assertTrue(platform.lost)

    def test_unknownType(self) -> None:
        """An unknown type: unknown-type, echoing the request id."""
        platform = self.login()
        error = self.refused(platform, type="reboot", id="r1")
        self.assertEqual((error["code"], error["id"]), ("unknown-type", "r1"))
        self.assertAlive(platform)

    def test_missingType(self) -> None:
        """An object without type: unknown-type."""
        platform = self.login()
        self.assertEqual(self.refused(platform, id="r1")["code"], "unknown-type")

    def test_serverMessageFromPlatform(self) -> None:
        """A message only the gateway may send is an unknown type from a platform."""
        platform = self.login()
        error = self.refused(platform, type="result", session="s1", id="x")
        self.assertEqual(error["code"], "unknown-type")

    def test_invalidMessageNamesField(self) -> None:
        """A bad field: invalid-message naming the field, id and session echoed."""
        platform = self.login()
        error = self.refused(platform, type="command", session="s9", id="c1", apdus=["00A4"])
        self.assertEqual(
            (error["code"], error["id"], error["session"]), ("invalid-message", "c1", "s9")
        )
        self.assertIn("'command.apdus[0]'", error["message"])
        error = self.refused(platform, type="open", id="o1", service="demo")
        self.assertIn("'open.iccid'", error["message"])
        error = self.refused(platform, type="open", id="o1", service="demo", msisdn="1", extra=1)
        self.assertIn("'open.extra'", error["message"])
        self.assertAlive(platform)

    def test_notAuthorized(self) -> None:
        """Requests before hello: not-authorized, and nothing happens."""
        platform = self.connect()
        error = self.refused(platform, type="open", id="o1", iccid=iccid(1), service="demo")
        self.assertEqual((error["code"], error["id"]), ("not-authorized", "o1"))
        self.assertEqual(self.fleet.pushes, [])
        self.assertAlive(platform)

    def test_authFailed(self) -> None:
        """An unknown token: auth-failed, and the connection is closed."""
        platform = self.connect()
        error = self.refused(platform, type="hello", id="h1", token="not-a-token")
        self.assertEqual((error["code"], error["id"]), ("auth-failed", "h1"))
        self.assertTrue(platform.lost)

    def test_noCredentials(self) -> None:
        """No token and no client certificate: auth-failed."""
        platform = self.connect()
        self.assertEqual(self.refused(platform, type="hello")["code"], "auth-failed")
        self.assertTrue(platform.lost)

    def test_alreadyAuthenticated(self) -> None:
        """A second hello: already-authenticated; the first still holds."""
        platform = self.login()
        error = self.refused(platform, type="hello", id="h2", token=OTHER_TOKEN)
        self.assertEqual(error["code"], "already-authenticated")
        self.assertEqual(self.factory.tenancy.usage.sessions("globex"), 0)
        self.assertAlive(platform)

    def test_directoryUnavailable(self) -> None:
        """A tenant directory that fails: unavailable, and the connection closes."""

        class Broken:
            def by_token(self, token: str) -> Deferred[TenantGrant | None]:
                return fail(RuntimeError("database down"))

            def by_certificate(self, name: str) -> Deferred[TenantGrant | None]:
                return fail(RuntimeError("database down"))

        self.tenants = Broken()  # type: ignore[assignment]
        self.factory = self.make_factory()
        platform = self.connect()
        error = self.refused(platform, type="hello", id="h1", token="x")
        self.assertEqual(error["code"], "unavailable")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(platform.lost)

    def test_unknownSession(self) -> None:
        """A command or close for a session this connection does not have."""
        platform = self.login()
        for kind in ("command", "close"):
            extra = {"apdus": [echo(b"")]} if kind == "command" else {}
            error = self.refused(platform, type=kind, session="nope", id="r1", **extra)
            self.assertEqual((error["code"], error["session"]), ("unknown-session", "nope"))

    def test_otherConnectionsSession(self) -> None:
        """A session belongs to its connection: another connection of the
        same tenant cannot use or close it."""
        owner = self.login()
        session = self.opened(owner)
        intruder = self.login()
        error = self.refused(intruder, type="close", session=session, id="x1")
        self.assertEqual(error["code"], "unknown-session")
        self.assertEqual(self.fleet.card(1).closes, 0)

    def test_sessionClosing(self) -> None:
        """A command for a session being closed: session-closing."""
        platform = self.login()
        session = self.opened(platform)
        self.fleet.card(1).hang = True
        platform.send(type="command", session=session, id="c1", apdus=[echo(b"")])
        platform.send(type="close", session=session, id="x1")
        error = self.refused(platform, type="command", session=session, id="c2", apdus=[echo(b"")])
        self.assertEqual(error["code"], "session-closing")

    def test_duplicateId(self) -> None:
        """A command id still in flight on the session: duplicate-id."""
        platform = self.login()
        session = self.opened(platform)
        platform.send(type="command", session=session, id="c1", apdus=[echo(b"\x01")])
        error = self.refused(platform, type="command", session=session, id="c1", apdus=[echo(b"")])
        self.assertEqual((error["code"], error["id"]), ("duplicate-id", "c1"))
        self.advance(0.5)
        [result] = platform.take()
        self.assertEqual(result["rapdus"], ["019000"])

    def test_serviceNotAllowed(self) -> None:
        """A service the tenant does not have: service-not-allowed, no push."""
        platform = self.login()
        error = self.refused(platform, type="open", id="o1", iccid=iccid(1), service="other")
        self.assertEqual((error["code"], error["id"]), ("service-not-allowed", "o1"))
        self.assertEqual(self.fleet.pushes, [])

    def test_applicationNotAllowed(self) -> None:
        """An AID or TAR outside the service's list: application-not-allowed."""
        platform = self.login()
        for app in (OTHER_AID, b"\x00\x00\x01"):
            error = self.refused(
                platform,
                type="open",
                id="o1",
                iccid=iccid(1),
                service="locked",
                application=app.hex(),
            )
            self.assertEqual(error["code"], "application-not-allowed")
            self.assertIn(app.hex().upper(), error["message"])
        self.assertEqual(self.fleet.pushes, [])
        for app in (AID, TAR):
            platform.send(
                type="open", id="o2", iccid=iccid(1), service="locked", application=app.hex()
            )
            self.flush()
            self.assertEqual(platform.take()[0]["type"], "accepted")
            platform.send(type="close", session=f"s{len(self.fleet.pushes)}", id="x")
            self.flush()
            platform.take()

    def test_selectOutsideService(self) -> None:
        """A command that SELECTs an AID the service does not allow is
        refused before it reaches the card; allowed AIDs pass."""
        platform = self.login()
        platform.send(type="open", id="o1", iccid=iccid(1), service="locked")
        self.advance(2)
        session = platform.take()[0]["session"]
        select = "00A40400" + bytes([len(OTHER_AID)]).hex() + OTHER_AID.hex()
        allowed = "00A40400" + bytes([len(AID)]).hex() + AID.hex()
        error = self.refused(
            platform, type="command", session=session, id="c1", apdus=[allowed, select]
        )
        self.assertEqual(error["code"], "application-not-allowed")
        self.assertIn("C-APDU 1", error["message"])
        self.assertEqual(self.fleet.card(1).scripts, [])
        select = "00A40400" + bytes([len(AID)]).hex() + AID.hex()
        platform.send(type="command", session=session, id="c2", apdus=[select])
        self.advance(0.5)
        self.assertEqual(platform.take()[0]["rapdus"], ["9000"])

    def test_selectOutsideSessionAid(self) -> None:
        """A session opened for an AID may SELECT only that application."""
        platform = self.login()
        self.opened(platform, application=OTHER_AID.hex())
        select = "00A40400" + bytes([len(AID)]).hex() + AID.hex()
        error = self.refused(platform, type="command", session="s1", id="c1", apdus=[select])
        self.assertEqual(error["code"], "application-not-allowed")
        self.assertIn(f"session opened for AID {OTHER_AID.hex().upper()}", error["message"])

    def test_tenantSessionLimit(self) -> None:
        """More sessions than the tenant may have, over two connections:
        limit-reached; one ending makes room."""
        self.tenants.add(
            TenantGrant(
                "acme",
                services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)],
                max_sessions=2,
            ),
            tokens=["t2"],
        )
        first, second = self.login("t2"), self.login("t2")
        self.opened(first, 1)
        self.opened(second, 2)
        error = self.refused(first, type="open", id="o3", iccid=iccid(3), service="demo")
        self.assertEqual(error["code"], "limit-reached")
        self.assertIn("2 sessions", error["message"])
        second.send(type="close", session="s2", id="x")
        self.flush()
        first.send(type="open", id="o4", iccid=iccid(4), service="demo")
        self.flush()
        self.assertEqual([m["type"] for m in first.take()], ["accepted"])

    def test_serviceSessionLimit(self) -> None:
        """The service's own limit (2 for "locked") applies per tenant."""
        platform = self.login()
        for n in (1, 2):
            platform.send(type="open", id=f"o{n}", iccid=iccid(n), service="locked")
        self.flush()
        self.assertEqual([m["type"] for m in platform.take()], ["accepted", "accepted"])
        error = self.refused(platform, type="open", id="o3", iccid=iccid(3), service="locked")
        self.assertEqual(error["code"], "limit-reached")
        self.assertIn("service locked", error["message"])

    def test_commandsInFlightLimit(self) -> None:
        """More commands in flight than the tenant may have: limit-reached;
        answers make room again."""
        self.tenants.add(
            TenantGrant(
                "acme",
                services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)],
                max_commands=3,
            ),
            tokens=["t3"],
        )
        platform = self.login("t3")
        session = self.opened(platform)
        for n in range(3):
            platform.send(type="command", session=session, id=f"c{n}", apdus=[echo(b"")])
        error = self.refused(platform, type="command", session=session, id="c3", apdus=[echo(b"")])
        self.assertEqual((error["code"], error["id"]), ("limit-reached", "c3"))
        self.advance(0.5)
        self.assertEqual([m["id"] for m in platform.take()], ["c0"])
        platform.send(type="command", session=session, id="c3", apdus=[echo(b"")])
        self.advance(1.5)
        self.assertEqual([m["id"] for m in platform.take()], ["c1", "c2", "c3"])

    def test_commandBeforeReady(self) -> None:
        """A command before the card is ready: the engine's not-connected."""
        platform = self.login()
        platform.send(type="open", id="o1", iccid=iccid(1), service="demo")
        self.flush()
        platform.take()
        error = self.refused(platform, type="command", session="s1", id="c1", apdus=[echo(b"")])
        self.assertEqual(error["code"], "not-connected")
        self.assertEqual(self.factory.tenancy.usage.commands("acme"), 0)

    def test_scriptStatusError(self) -> None:
        """A card reporting a script status other than ok: the command fails
        with script-status naming it, and the session goes on."""
        platform = self.login()
        session = self.opened(platform)
        self.fleet.card(1).status = "security-error"
        platform.send(type="command", session=session, id="c1", apdus=[echo(b"")])
        self.advance(0.5)
        [error] = platform.take()
        self.assertEqual((error["code"], error["id"]), ("script-status", "c1"))
        self.assertIn("security-error", error["message"])
        self.fleet.card(1).status = "ok"
        platform.send(type="command", session=session, id="c2", apdus=[echo(b"\x01")])
        self.advance(0.5)
        self.assertEqual(platform.take()[0]["type"], "result")

    def test_tooManyConnections(self) -> None:
        """Connections beyond max_connections are closed at once, unserved;
        when one ends there is room again."""
        self.factory = self.make_factory(max_connections=1)
        first = self.login()
        second = self.connect()
        second.send(type="ping", id="p")
        self.flush()
        self.assertEqual((second.take(), second.lost), ([], True))
        first.hang_up()
        self.flush()
        self.assertFalse(self.connect().lost)

    def test_garbageThenValid(self) -> None:
        """Bytes of several bad frames and a good one in one read: each bad
        frame gets its error, in order, then the good one is served."""
        platform = self.login()
        stream = (
            b"\x00\x00\x00\x01{"
            + encode_frame({"type": "nope"})
            + encode_frame({"type": "ping", "id": "p"})
        )
        platform.write(stream)
        self.flush()
        self.assertEqual(
            [m.get("code", m["type"]) for m in platform.take()],
            ["malformed-frame", "unknown-type", "pong"],
        )
