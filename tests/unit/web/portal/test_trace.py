"""Decoding a trace and exporting it as a script (bipgw.web.portal._trace)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.client import parse_script
from bipgw.store import ApduTraceRecord, SessionRecord
from bipgw.web.portal import apdu_script, decode_trace

SESSION = SessionRecord("s9", "isd", "closed", 1.0, 2.0, iccid="8988211000000000011")
TRACES = [
    ApduTraceRecord(
        "s9",
        1,
        0,
        bytes.fromhex("00A4040008A00000015100000000"),
        bytes.fromhex("6F009000"),
        1.0,
        1.1,
    ),
    ApduTraceRecord("s9", 1, 1, bytes.fromhex("80CA9F7F00"), bytes.fromhex("6A88"), 1.2, 1.3),
    ApduTraceRecord("s9", 2, 0, bytes.fromhex("0102"), None, 1.4, None, "card-dropped"),
]


class TraceTests(SynchronousTestCase):
    def test_decode(self) -> None:
        rows = decode_trace(TRACES)
        self.assertEqual(rows[0].header, "00 A4 04 00")
        self.assertEqual(rows[0].data, "A0 00 00 01 51 00 00 00")
        self.assertEqual(rows[0].le, "256")
        self.assertEqual((rows[0].sw, rows[0].ok, rows[0].instruction), ("9000", True, "select"))
        self.assertEqual((rows[1].sw, rows[1].ok), ("6A88", False))
        self.assertIn("not found", rows[1].meaning)
        self.assertEqual(rows[2].header, "(not a well-formed C-APDU)")
        self.assertEqual((rows[2].sw, rows[2].outcome), ("", "card-dropped"))

    def test_scriptParses(self) -> None:
        """The export is a script bipgw replay parses: the answered SWs are expected."""
        text = apdu_script(SESSION, TRACES)
        script = parse_script(text, name="s9.apdu")
        self.assertEqual(
            [c.apdu.hex().upper() for c in script.commands],
            ["00A4040008A00000015100000000", "80CA9F7F00", "0102"],
        )
        self.assertIn("=> 6A88", text)
        self.assertIn('step "script 2"', text)
