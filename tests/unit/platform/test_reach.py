"""Issue 15 item 2: every command is checked against what it reaches, not only SELECTs.

A tenant granted one applet (C{allowed_aids}) used to reach the card's ISD
with any command that came without a SELECT (GET STATUS listed the
registry; INSTALL, LOAD and DELETE ran).  These drive the platform channel
(the HTTP API shares its relay) against the real engine and show each rule
of C{docs/security.md}: refused before anything reaches the card, naming the
command and the application.
"""

from __future__ import annotations

from typing import Any

from bipgw.codec.apdu import CommandApdu
from bipgw.core import ServiceGrant, ServiceRules, TenantGrant, parse_isd_commands
from tests.unit.platform import AID, PlatformTestCase, RawPlatform, echo

APPLET_TOKEN = "tok-applet-only-0123"
READER_TOKEN = "tok-isd-reader-0123"
MISSING = bytes.fromhex("A0000000FF0001")
"""An AID the grant allows but the fake cards do not have (their SELECT: 6A82)."""

GET_STATUS = "80F24000024F0000"
PACKAGE = bytes.fromhex("F0626970677743520101")


def _apdu(ins: int, p1: int, p2: int, data: bytes) -> str:
    return CommandApdu(0x80, ins, p1, p2, data, 256).encode().hex().upper()


ISD_AID = bytes.fromhex("A000000151000000")
INSTALL_FOR_LOAD = _apdu(0xE6, 0x02, 0x00, b"\x0a" + PACKAGE + b"\x08" + ISD_AID + b"\x00\x00\x00")
LOAD = _apdu(0xE8, 0x80, 0x00, bytes.fromhex("C40100"))
INSTALL_FOR_INSTALL = _apdu(
    0xE6,
    0x0C,
    0x00,
    b"\x0a" + PACKAGE + b"\x0a" + PACKAGE + b"\x0a" + PACKAGE + b"\x01\x00\x02\xc9\x00\x00",
)
DELETE = _apdu(0xE4, 0x00, 0x00, b"\x4f\x0a" + PACKAGE)
PUT_KEY = _apdu(0xD8, 0x01, 0x81, bytes(8))


def select(aid: bytes, cla: int = 0x00, p2: int = 0x00) -> str:
    return bytes([cla, 0xA4, 0x04, p2, len(aid)]).hex() + aid.hex() + "00"


def echo_on(channel_cla: int, data: bytes = b"\x01") -> str:
    """The fake applet's echo, with another class byte (another logical channel)."""
    raw = bytes.fromhex(echo(data))
    return (bytes([channel_cla]) + raw[1:]).hex()


class ReachTests(PlatformTestCase):
    """An applet-only grant, and one that may read the ISD."""

    def setUp(self) -> None:
        super().setUp()
        self.tenants.add(
            TenantGrant("applets", services=[ServiceGrant("demo", allowed_aids={AID, MISSING})]),
            tokens=[APPLET_TOKEN],
        )
        reader = ServiceGrant(
            "demo", allowed_aids={AID}, isd_commands=parse_isd_commands(["get-status"])
        )
        self.tenants.add(TenantGrant("reader", services=[reader]), tokens=[READER_TOKEN])

    def session(self, token: str = APPLET_TOKEN) -> tuple[RawPlatform, str]:
        platform = self.login(token)
        return platform, self.opened(platform)

    def command(self, platform: RawPlatform, session: str, rid: str, *apdus: str) -> Any:
        platform.send(type="command", session=session, id=rid, apdus=list(apdus))
        self.advance(1)
        [answer] = platform.take()
        return answer

    def assertRefused(self, answer: Any, *texts: str) -> None:
        self.assertEqual(answer["type"], "error", answer)
        self.assertEqual(answer["code"], "application-not-allowed")
        for text in texts:
            self.assertIn(text, answer["message"])

    def test_isdCommandsWithoutSelectRefused(self) -> None:
        """GET STATUS, INSTALL [for load], LOAD, INSTALL [for install], DELETE and PUT KEY
        without a SELECT would reach the ISD: each is refused, naming the command and the
        ISD, and the card never gets a script."""
        platform, sid = self.session()
        cases = [
            (GET_STATUS, "GET STATUS (INS F2)"),
            (INSTALL_FOR_LOAD, "INSTALL (INS E6)"),
            (LOAD, "LOAD (INS E8)"),
            (INSTALL_FOR_INSTALL, "INSTALL (INS E6)"),
            (DELETE, "DELETE (INS E4)"),
            (PUT_KEY, "PUT KEY (INS D8)"),
        ]
        for n, (apdu, name) in enumerate(cases):
            answer = self.command(platform, sid, f"c{n}", apdu)
            self.assertRefused(answer, "C-APDU 0", name, "the ISD", "tenant applets's grant")
        self.assertEqual(self.fleet.card(1).scripts, [])

    def test_selectAllowedThenCommands(self) -> None:
        """After a SELECT of a granted AID, any instruction goes to that applet, in the
        same script and in later ones (once the card has answered the SELECT)."""
        platform, sid = self.session()
        answer = self.command(platform, sid, "c1", select(AID), echo(b"\x05"), GET_STATUS)
        self.assertEqual(answer["type"], "result", answer)
        self.assertEqual(answer["rapdus"], ["9000", "059000", "6D00"])
        answer = self.command(platform, sid, "c2", echo(b"\x06"))
        self.assertEqual(answer["rapdus"], ["069000"])

    def test_refusedSelectLeavesTheIsd(self) -> None:
        """A SELECT the card refuses (6A82) leaves the ISD selected: the next command
        without a SELECT is refused again."""
        platform, sid = self.session()
        answer = self.command(platform, sid, "c1", select(MISSING))
        self.assertEqual(answer["rapdus"], ["6A82"])
        self.assertRefused(self.command(platform, sid, "c2", GET_STATUS), "the ISD")

    def test_pipelinedCommandCheckedAgainstBoth(self) -> None:
        """A command sent before the card answered the SELECT ahead of it may still
        reach the ISD (the SELECT may fail): refused; once answered, it passes."""
        platform, sid = self.session()
        platform.send(type="command", session=sid, id="c1", apdus=[select(AID)])
        platform.send(type="command", session=sid, id="c2", apdus=[echo(b"\x07")])
        self.flush()
        [refused] = platform.take()
        self.assertEqual(refused["id"], "c2")
        self.assertRefused(refused, "logical channel 0, whose selection may be the ISD")
        self.advance(1)
        self.assertEqual(platform.take()[0]["rapdus"], ["9000"])
        answer = self.command(platform, sid, "c3", echo(b"\x07"))
        self.assertEqual(answer["rapdus"], ["079000"])

    def test_secondLogicalChannel(self) -> None:
        """A command on another logical channel (CLA 81, or C0 for channel 4) goes to
        what that channel selected, which is the ISD until a SELECT on it: refused even
        after the basic channel selected the applet.  MANAGE CHANNEL and a SELECT on the
        channel make it pass."""
        platform, sid = self.session()
        self.assertEqual(self.command(platform, sid, "c1", select(AID))["rapdus"], ["9000"])
        self.assertRefused(
            self.command(platform, sid, "c2", echo_on(0x81)), "logical channel 1", "the ISD"
        )
        self.assertRefused(self.command(platform, sid, "c3", echo_on(0xC0)), "logical channel 4")
        answer = self.command(
            platform, sid, "c4", "0070000100", select(AID, cla=0x01), echo_on(0x81)
        )
        self.assertEqual(answer["type"], "result", answer)
        self.assertEqual(len(self.fleet.card(1).scripts), 2)

    def test_otherClassesRefused(self) -> None:
        """A class byte the gateway cannot place on a channel (GSM's A0) is refused."""
        platform, sid = self.session()
        self.assertRefused(self.command(platform, sid, "c1", "A0F2000016"), "class A0")

    def test_selectOfTheIsdRefused(self) -> None:
        """Selecting the ISD (no AID, or its AID) is refused without an ISD grant, and a
        SELECT of the next occurrence (which may select another application) always."""
        platform, sid = self.session()
        self.assertRefused(self.command(platform, sid, "c1", "00A4040000"), "the ISD (no AID)")
        isd = bytes.fromhex("A000000151000000")
        self.assertRefused(self.command(platform, sid, "c2", select(isd)), "AID A000000151000000")
        self.assertRefused(
            self.command(platform, sid, "c3", select(AID, p2=0x02)), "next or previous occurrence"
        )

    def test_isdGrantAllowsOnlyItsCommands(self) -> None:
        """A grant with --isd-commands get-status reaches the ISD with GET STATUS
        (the fake card answers 6D00: it got it), but not with DELETE or INSTALL."""
        platform, sid = self.session(READER_TOKEN)
        answer = self.command(platform, sid, "c1", GET_STATUS)
        self.assertEqual(answer["type"], "result", answer)
        self.assertRefused(self.command(platform, sid, "c2", DELETE), "DELETE (INS E4)")
        self.assertRefused(
            self.command(platform, sid, "c3", GET_STATUS, INSTALL_FOR_LOAD), "C-APDU 1"
        )
        self.assertEqual(len(self.fleet.card(1).scripts), 1)

    def test_wholeScriptCheckedFirst(self) -> None:
        """A refusal anywhere in a script stops all of it: the card gets nothing."""
        platform, sid = self.session()
        answer = self.command(platform, sid, "c1", select(AID), echo(b"\x01"), "00A4040000")
        self.assertRefused(answer, "C-APDU 2")
        self.assertEqual(self.fleet.card(1).scripts, [])


class CeilingTests(ReachTests):
    """The service's table is a ceiling over every grant."""

    services = {"demo": ServiceRules(isd_commands=parse_isd_commands(["get-data"]))}

    def test_isdGrantAllowsOnlyItsCommands(self) -> None:
        """A tenant granted GET STATUS on a service whose table allows only GET DATA
        is refused GET STATUS, naming the table; GET DATA needs the tenant's grant too."""
        platform, sid = self.session(READER_TOKEN)
        self.assertRefused(self.command(platform, sid, "c1", GET_STATUS), "[services.demo]")
        self.assertRefused(self.command(platform, sid, "c2", "80CA006600"), "tenant reader")
        self.assertEqual(self.fleet.card(1).scripts, [])
