"""The platform channel end to end, in memory: raw frames in, raw frames out.

A raw platform (no SDK) talks to the server over iosim; behind the server a
real session engine pushes to fake cards that connect and run the scripts.
The frames checked here are the wire format documented in
docs/platform-channel.md.
"""

from __future__ import annotations

from bipgw.codec.apdu import describe_sw
from bipgw.codec.ram import CommandScript
from bipgw.core import CardRecord, SessionState
from bipgw.platform import ChannelSettings
from tests.unit.platform import (
    GET_DATA,
    PlatformTestCase,
    RawPlatform,
    echo,
    iccid,
    msisdn,
)


class FullExchangeTests(PlatformTestCase):
    """hello, open, ready, command, result, close, closed."""

    def test_fullExchange(self) -> None:
        """A platform opens a session, runs a command and closes; every
        answer is the documented frame and the card sees the exact script."""
        platform = self.connect()
        platform.send(type="hello", id="h1", token="tok-acme-0123456789", client="test")
        self.flush()
        self.assertEqual(
            platform.take(),
            [{"type": "auth_ok", "tenant": "acme", "id": "h1", "version": 1, "heartbeat": 30}],
        )

        platform.send(type="open", id="o1", msisdn=msisdn(1), service="demo")
        self.flush()
        self.assertEqual(platform.take(), [{"type": "accepted", "id": "o1", "session": "s1"}])
        self.advance(1.0)
        self.assertEqual(platform.take(), [])
        self.advance(1.0)
        self.assertEqual(
            platform.take(),
            [{"type": "ready", "session": "s1", "iccid": iccid(1), "msisdn": msisdn(1)}],
        )

        platform.send(
            type="command", session="s1", id="c1", apdus=["00A4040007A0000000871002", GET_DATA]
        )
        self.advance(0.5)
        [result] = platform.take()
        self.assertEqual(
            result,
            {
                "type": "result",
                "session": "s1",
                "id": "c1",
                "rapdus": ["9000", "6A88"],
                "executed": 2,
                "elapsed_ms": 500,
                "complete": True,
                "meanings": [describe_sw(0x9000), describe_sw(0x6A88)],
                "sw": ["9000", "6A88"],
            },
        )
        self.assertEqual(
            self.fleet.card(1).scripts,
            [bytes.fromhex("AE80220C00A4040007A0000000871002220580CA0085000000")],
        )

        platform.send(type="close", session="s1", id="x1")
        self.flush()
        self.assertEqual(platform.take(), [{"type": "closed", "session": "s1", "id": "x1"}])
        self.assertEqual(self.fleet.card(1).closes, 1)
        status = self.engine.status("s1")
        assert status is not None
        self.assertIs(status.state, SessionState.CLOSED)
        self.assertEqual(self.factory.tenancy.usage.sessions("acme"), 0)

    def test_scriptCommand(self) -> None:
        """An expanded script (here the live trace's) is relayed as its
        C-APDUs, in its own form, and answered like an APDU list."""
        platform = self.login()
        session = self.opened(platform)
        platform.send(type="command", session=session, id="c1", script="AE80220580CA0085000000")
        self.advance(0.5)
        [result] = platform.take()
        self.assertEqual((result["rapdus"], result["sw"]), (["6A88"], ["6A88"]))
        self.assertEqual(self.fleet.card(1).scripts, [bytes.fromhex("ae80220580ca0085000000")])

    def test_definiteScript(self) -> None:
        """definite: true sends an AA script; the card's AB answer carries
        its executed count."""
        platform = self.login()
        session = self.opened(platform)
        platform.send(
            type="command", session=session, id="c1", apdus=[echo(b"\x01\x02")], definite=True
        )
        self.advance(0.5)
        [result] = platform.take()
        self.assertEqual(result["rapdus"], ["01029000"])
        self.assertEqual(result["executed"], 1)
        script = CommandScript.decode(self.fleet.card(1).scripts[0])
        self.assertTrue(script.definite)

    def test_cardStopsAtError(self) -> None:
        """When the card stops at an error status, the result is incomplete
        and lists only the APDUs that ran."""
        platform = self.login()
        session = self.opened(platform)
        platform.send(
            type="command", session=session, id="c1", apdus=["00A4040005A000000001", echo(b"\xff")]
        )
        self.advance(0.5)
        [result] = platform.take()
        self.assertEqual((result["rapdus"], result["complete"]), (["6A82"], False))

    def test_commandsInOrder(self) -> None:
        """Commands sent back to back are answered in order, each once."""
        platform = self.login()
        session = self.opened(platform)
        for n in range(5):
            platform.send(type="command", session=session, id=f"c{n}", apdus=[echo(bytes([n]))])
        self.advance(3)
        results = platform.take()
        self.assertEqual([r["id"] for r in results], [f"c{n}" for n in range(5)])
        self.assertEqual([r["rapdus"] for r in results], [[f"{n:02X}9000"] for n in range(5)])

    def test_openByIccidWithFiller(self) -> None:
        """An ICCID with the F filler names the same card."""
        platform = self.login()
        platform.send(type="open", id="o1", iccid=iccid(3) + "F", service="demo")
        self.advance(2)
        self.assertEqual([m["type"] for m in platform.take()], ["accepted", "ready"])

    def test_oddNumberLeftOut(self) -> None:
        """A card whose stored MSISDN is not in the channel's form is still
        served; ready leaves the number out instead of sending it invalid."""
        card = self.fleet.card(5)
        card.record = CardRecord(card.record.iccid, "0151 234 567", card.record.psk_identity)
        platform = self.login()
        platform.send(type="open", id="o1", iccid=iccid(5), service="demo")
        self.advance(2)
        self.assertEqual(platform.take()[1], {"type": "ready", "session": "s1", "iccid": iccid(5)})

    def test_unknownCardFails(self) -> None:
        """A card the directory does not know: accepted, then failed with
        the engine's reason."""
        platform = self.login()
        platform.send(type="open", id="o1", iccid="8988211000000099999", service="demo")
        self.flush()
        accepted, failed = platform.take()
        self.assertEqual(accepted["type"], "accepted")
        self.assertEqual(
            (failed["type"], failed["session"], failed["reason"]),
            ("failed", accepted["session"], "unknown-card"),
        )
        self.assertIn("8988211000000099999", failed["message"])

    def test_pingPong(self) -> None:
        """A ping is answered with a pong carrying its id, before and after hello."""
        platform = self.connect()
        platform.send(type="ping", id="p1")
        self.flush()
        self.assertEqual(platform.take(), [{"type": "pong", "id": "p1"}])


class ConcurrencyTests(PlatformTestCase):
    """Many sessions on one connection."""

    def test_twentySessions(self) -> None:
        """Twenty sessions on one connection open, run interleaved commands
        and close; each answer goes to its own session."""
        platform = self.login()
        for n in range(1, 21):
            platform.send(type="open", id=f"o{n}", iccid=iccid(n), service="demo")
        self.flush()
        accepted = {m["id"]: m["session"] for m in platform.take()}
        self.assertEqual(len(set(accepted.values())), 20)
        self.advance(2)
        ready = platform.take()
        self.assertEqual(sorted(m["session"] for m in ready), sorted(accepted.values()))
        for round_ in range(3):
            for n in range(1, 21):
                session = accepted[f"o{n}"]
                data = bytes([n, round_])
                platform.send(
                    type="command", session=session, id=f"c{n}-{round_}", apdus=[echo(data)]
                )
        self.advance(2)
        results = platform.take()
        self.assertEqual(len(results), 60)
        for result in results:
            n, round_ = map(int, result["id"][1:].split("-"))
            self.assertEqual(result["session"], accepted[f"o{n}"])
            self.assertEqual(result["rapdus"], [bytes([n, round_]).hex().upper() + "9000"])
        self.assertEqual(self.factory.tenancy.usage.sessions("acme"), 20)
        for n in range(1, 21):
            platform.send(type="close", session=accepted[f"o{n}"], id=f"x{n}")
        self.flush()
        closed = platform.take()
        self.assertEqual({m["type"] for m in closed}, {"closed"})
        self.assertEqual(len(closed), 20)
        self.assertEqual(sum(card.closes for card in self.fleet.cards.values()), 20)
        self.assertEqual(self.factory.tenancy.usage.sessions("acme"), 0)
        self.assertEqual(self.factory.tenancy.routed, 0)


class DisconnectTests(PlatformTestCase):
    """A platform that goes away leaves no card session behind."""

    def test_disconnectClosesSessions(self) -> None:
        """When the platform disconnects, its ready sessions are closed
        cleanly (the card gets its 204), after the command in flight."""
        platform = self.login()
        first = self.opened(platform, 1, "o1")
        second = self.opened(platform, 2, "o2")
        platform.send(type="command", session=first, id="c1", apdus=[echo(b"\x07")])
        self.flush()
        platform.hang_up()
        self.flush()
        self.assertEqual(self.fleet.card(2).closes, 1)
        self.assertEqual(self.fleet.card(1).closes, 0)
        self.advance(0.5)
        self.assertEqual(self.fleet.card(1).closes, 1)
        for session in (first, second):
            status = self.engine.status(session)
            assert status is not None
            self.assertIs(status.state, SessionState.CLOSED)
        self.assertEqual(self.factory.tenancy.usage.sessions("acme"), 0)
        self.assertEqual(self.factory.tenancy.usage.commands("acme"), 0)
        self.assertEqual(self.factory.tenancy.routed, 0)

    def test_disconnectBeforeReady(self) -> None:
        """A session still waiting for its card is cancelled when the
        platform disconnects; the card that connects later finds nothing."""
        platform = self.login()
        platform.send(type="open", id="o1", iccid=iccid(1), service="demo")
        self.flush()
        platform.hang_up()
        self.flush()
        status = self.engine.status("s1")
        assert status is not None
        self.assertEqual(status.reason.value if status.reason else None, "cancelled")
        self.advance(2)
        self.assertIsNone(self.fleet.card(1).link)


class NotificationTests(PlatformTestCase):
    """Sessions that end on their own are reported."""

    def test_cardDropped(self) -> None:
        """A card that drops: a card_dropped notification, then the command
        in flight fails with the same reason; the connection goes on."""
        platform = self.login()
        session = self.opened(platform)
        platform.send(type="command", session=session, id="c1", apdus=[echo(b"\x01")])
        self.flush()
        self.fleet.card(1).drop()
        self.flush()
        notification, error = platform.take()
        self.assertEqual(
            (
                notification["type"],
                notification["session"],
                notification["event"],
                notification["reason"],
            ),
            ("notification", session, "card_dropped", "card-dropped"),
        )
        self.assertIn("coverage", notification["message"])
        self.assertEqual(
            (error["type"], error["id"], error["session"], error["code"]),
            ("error", "c1", session, "card-dropped"),
        )
        platform.send(type="command", session=session, id="c2", apdus=[echo(b"\x01")])
        self.flush()
        self.assertEqual(platform.take()[0]["code"], "unknown-session")

    def test_idleTimeout(self) -> None:
        """The engine's idle timeout ends the session: a timeout notification."""
        platform = self.login()
        session = self.opened(platform)
        self.advance(100)
        messages = platform.take()
        self.assertEqual(len(messages), 1)
        self.assertEqual(
            (
                messages[0]["type"],
                messages[0]["session"],
                messages[0]["event"],
                messages[0]["reason"],
            ),
            ("notification", session, "timeout", "idle-timeout"),
        )

    def test_shutdown(self) -> None:
        """Stopping the engine notifies every ready session with shutdown."""
        platform = self.login()
        session = self.opened(platform)
        self.engine.stop()
        self.flush()
        [notification] = platform.take()
        self.assertEqual((notification["session"], notification["event"]), (session, "shutdown"))


class PlatformTimeoutTests(PlatformTestCase):
    """The platform's own timeouts in open."""

    def test_readyTimeout(self) -> None:
        """A card that does not connect within timeouts.ready: the session
        fails with ready-timeout and is cancelled in the engine."""
        self.fleet.card(1).reachable = False
        platform = self.login()
        platform.send(type="open", id="o1", iccid=iccid(1), service="demo", timeouts={"ready": 5})
        self.advance(4.75)
        self.assertEqual([m["type"] for m in platform.take()], ["accepted"])
        self.advance(0.25)
        [failed] = platform.take()
        self.assertEqual((failed["type"], failed["reason"]), ("failed", "ready-timeout"))
        self.assertIn("5 s", failed["message"])
        status = self.engine.status("s1")
        assert status is not None and status.reason is not None
        self.assertEqual(status.reason.value, "cancelled")

    def test_readyInTime(self) -> None:
        """A card that connects in time cancels the platform's ready timer."""
        platform = self.login()
        self.opened(platform, timeouts={"ready": 5, "command": 3})
        self.advance(10)
        self.assertEqual([m["type"] for m in platform.take()], [])

    def test_commandTimeout(self) -> None:
        """A card that does not answer within timeouts.command: the command
        gets command-timeout and the session is closed, with a notification."""
        platform = self.login()
        session = self.opened(platform, timeouts={"command": 3})
        self.fleet.card(1).hang = True
        platform.send(type="command", session=session, id="c1", apdus=[echo(b"\x01")])
        self.advance(3)
        [error] = platform.take()
        self.assertEqual(
            (error["type"], error["id"], error["code"]), ("error", "c1", "command-timeout")
        )
        platform.send(type="command", session=session, id="c2", apdus=[echo(b"\x01")])
        self.flush()
        self.assertEqual(platform.take()[0]["code"], "session-closing")
        self.advance(40)
        [notification] = platform.take()
        self.assertEqual(
            (notification["type"], notification["event"], notification["reason"]),
            ("notification", "timeout", "command-timeout"),
        )
        self.assertEqual(self.factory.tenancy.usage.commands("acme"), 0)


class HeartbeatTests(PlatformTestCase):
    """Pings after silence; silence after a ping ends the connection."""

    def login(self, token: str = "tok-acme-0123456789") -> RawPlatform:
        platform = super().login(token)
        platform.auto_pong = False
        return platform

    def test_pingAfterSilence(self) -> None:
        """After heartbeat_interval without a frame the gateway pings."""
        platform = self.login()
        self.advance(29.75)
        self.assertEqual(platform.take(), [])
        self.advance(0.25)
        self.assertEqual(platform.take(), [{"type": "ping", "id": "hb-1"}])

    def test_pongKeepsAlive(self) -> None:
        """A platform that answers every ping stays connected."""
        platform = self.login()
        for _ in range(5):
            self.advance(30)
            [ping] = platform.take()
            platform.send(type="pong", id=ping["id"])
        self.advance(5)
        self.assertFalse(platform.lost)

    def test_anyFrameResetsTheTimer(self) -> None:
        """Any frame counts as a sign of life and postpones the ping."""
        platform = self.login()
        self.advance(20)
        platform.send(type="ping", id="p")
        self.advance(20)
        self.assertEqual(platform.take(), [{"type": "pong", "id": "p"}])

    def test_silenceDrops(self) -> None:
        """No frame within heartbeat_timeout of a ping: the gateway drops the
        connection and closes the platform's sessions."""
        platform = self.login()
        self.opened(platform)
        self.advance(37.75)
        self.assertFalse(platform.lost)
        self.advance(0.25)
        self.assertTrue(platform.lost)
        self.assertEqual(self.fleet.card(1).closes, 1)

    def test_noHeartbeat(self) -> None:
        """With heartbeats disabled, a silent platform is left alone."""
        quiet = self.make_factory(settings=ChannelSettings(heartbeat_interval=None))
        platform = self.connect(quiet)
        platform.send(type="hello", token="tok-acme-0123456789")
        self.advance(500, step=5)
        [auth_ok] = platform.take()
        self.assertNotIn("heartbeat", auth_ok)
        self.assertFalse(platform.lost)

    def test_authTimeout(self) -> None:
        """A connection that does not authenticate in time is dropped."""
        platform = self.connect()
        self.advance(9.75)
        self.assertFalse(platform.lost)
        self.advance(0.25)
        [error] = platform.take()
        self.assertEqual(error["code"], "not-authorized")
        self.assertTrue(platform.lost)
