"""L{bipgw.core.Reach} and L{bipgw.core.CommandAccess}: what a command reaches.

The platform tests (C{tests/unit/platform/test_reach.py}) show the rules
through a door; these pin the tracker's own cases: answers that change the
selection (a partial AID, a channel the card assigns), outcomes not known,
and the names of ISD commands.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    ALL_INSTRUCTIONS,
    CommandAccess,
    Reach,
    ReachRefusedError,
    isd_command_names,
    parse_isd_commands,
)

APPLET = bytes.fromhex("A0000000871002")
LONGER = bytes.fromhex("A0000000871002FF01")
SELECT_APPLET = bytes.fromhex("00A4040007A000000087100200")
GET_STATUS = bytes.fromhex("80F24000024F0000")
ECHO = bytes.fromhex("80EE000000")
APPLETS_ONLY = CommandAccess("the grant", applets=frozenset({APPLET}))


def fci(aid: bytes) -> bytes:
    inner = bytes([0x84, len(aid)]) + aid
    return bytes([0x6F, len(inner)]) + inner + b"\x90\x00"


class NamesTests(SynchronousTestCase):
    """ISD command names, as the configuration, the CLI and the store write them."""

    def test_parse(self) -> None:
        """Names, hex INS and "all"; any case; anything else refused naming it."""
        self.assertEqual(parse_isd_commands(["get-status", "GET-DATA"]), {0xF2, 0xCA, 0xCB})
        self.assertEqual(parse_isd_commands(["e4", "D8"]), {0xE4, 0xD8})
        self.assertEqual(parse_isd_commands(["all"]), ALL_INSTRUCTIONS)
        self.assertEqual(parse_isd_commands([]), frozenset())
        with self.assertRaises(ValueError) as caught:
            parse_isd_commands(["get-status", "erase"])
        self.assertIn("'erase'", str(caught.exception))
        self.assertRaises(ValueError, parse_isd_commands, ["F2F"])
        self.assertRaises(TypeError, parse_isd_commands, "get-status")

    def test_namesRoundTrip(self) -> None:
        """The names of a set read back as the same set."""
        for names in (["all"], ["get-status", "get-data"], ["delete", "7F"], []):
            ins = parse_isd_commands(names)
            self.assertEqual(parse_isd_commands(isd_command_names(ins)), ins)
        self.assertEqual(isd_command_names(ALL_INSTRUCTIONS), ["all"])


class ReachTests(SynchronousTestCase):
    """The tracker alone."""

    def test_startsOnTheIsd(self) -> None:
        """A new session's basic channel has the ISD; without an ISD grant any
        instruction there is refused, and GET RESPONSE follows an ISD grant."""
        reach = Reach()
        with self.assertRaises(ReachRefusedError) as caught:
            reach.check([ECHO], [APPLETS_ONLY])
        self.assertIn("the ISD", str(caught.exception))
        reader = CommandAccess("reader", isd=frozenset({0xF2}))
        reach.check([GET_STATUS, bytes.fromhex("00C0000000")], [reader])
        self.assertRaises(ReachRefusedError, reach.check, [ECHO], [reader])

    def test_partialSelection(self) -> None:
        """A card that selects a longer AID than the one named (partial selection) says
        so in its FCI: later commands go to that application, and are refused."""
        reach = Reach()
        ticket = reach.admit([SELECT_APPLET, ECHO], [APPLETS_ONLY])
        reach.settle(ticket, [fci(LONGER), b"\x90\x00"])
        self.assertEqual(reach.selected(0), {LONGER})
        with self.assertRaises(ReachRefusedError) as caught:
            reach.check([ECHO], [APPLETS_ONLY])
        self.assertIn(LONGER.hex().upper(), str(caught.exception))

    def test_lostOutcome(self) -> None:
        """A script whose outcome is unknown (the card dropped, a timeout) leaves its
        channels possibly anywhere: the ISD included, until the next SELECT."""
        reach = Reach()
        reach.settle(reach.admit([SELECT_APPLET], [APPLETS_ONLY]), [b"\x90\x00"])
        reach.check([ECHO], [APPLETS_ONLY])
        reach.lost(reach.admit([ECHO], [APPLETS_ONLY]))
        self.assertRaises(ReachRefusedError, reach.check, [ECHO], [APPLETS_ONLY])
        reach.check([SELECT_APPLET, ECHO], [APPLETS_ONLY])

    def test_droppedScriptChangesNothing(self) -> None:
        """A script the session refused before sending it selected nothing."""
        reach = Reach()
        reach.dropped(reach.admit([SELECT_APPLET], [APPLETS_ONLY]))
        self.assertEqual(reach.selected(0), {b""})

    def test_cardAssignedChannel(self) -> None:
        """MANAGE CHANNEL open with P2 00 lets the card pick the channel: whichever it
        says holds an unknown selection."""
        reach = Reach()
        isd_too = CommandAccess("all", isd=ALL_INSTRUCTIONS)
        ticket = reach.admit([SELECT_APPLET, bytes.fromhex("0070000001")], [isd_too])
        reach.settle(ticket, [b"\x90\x00", b"\x02\x90\x00"])
        self.assertIn(b"", reach.selected(2))
        self.assertEqual(reach.selected(0), {APPLET})

    def test_everyAuthorityMustAllow(self) -> None:
        """With several accesses, each must allow; the refusal names the one that does not."""
        reach = Reach()
        open_all = CommandAccess("the ceiling", isd=ALL_INSTRUCTIONS)
        with self.assertRaises(ReachRefusedError) as caught:
            reach.check([GET_STATUS], [open_all, CommandAccess("the grant")])
        self.assertIn("the grant", str(caught.exception))
