"""Tests for the APDU script format: every construct, every error, the matchers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.client._script import MAX_INCLUDE_DEPTH, load_script, parse_script, parse_variable
from bipgw.client._script_lines import ScriptError, SourceLocation
from bipgw.client._script_match import (
    ANY_BYTE,
    ByteMatch,
    DataPattern,
    Gap,
    RegexPattern,
    SwExpectation,
    SwPattern,
)
from bipgw.client._script_model import Script
from bipgw.codec.apdu import CommandApdu

ISD = "A000000151000000"


def parse(text: str, **kwargs: object) -> Script:
    return parse_script(text, name="t.apdu", **kwargs)  # type: ignore[arg-type]


def files(tree: Mapping[str, str]) -> object:
    """A C{read} callable serving C{tree} (paths relative to /s)."""

    def read(path: Path) -> str:
        key = str(path)
        if key not in tree:
            raise FileNotFoundError(2, "No such file or directory", key)
        return tree[key]

    return read


def one(text: str) -> bytes:
    """The single command's APDU."""
    script = parse(text)
    return script.commands[0].apdu


class ApduLineTests(SynchronousTestCase):
    """C-APDU lines become exactly the bytes written."""

    def test_hexWithSpaces(self) -> None:
        """Hex digits may be grouped any way, in either case."""
        self.assertEqual(
            one("00a4 04 00 08 A0000001 51000000 00"), bytes.fromhex("00A4040008" + ISD + "00")
        )

    def test_commentsRemoved(self) -> None:
        """# and // start comments, on their own line or after a command."""
        script = parse("# heading\n// more\n80CA9F7F00 # GET DATA\n80CA004200 // IIN\n")
        self.assertEqual([c.apdu.hex() for c in script.commands], ["80ca9f7f00", "80ca004200"])
        self.assertEqual(script.commands[0].source, "80CA9F7F00")

    def test_continuation(self) -> None:
        """A line ending with a backslash goes on on the next one."""
        script = parse("80 E2 80 00 \\\n  03 \\  # a comment\n 01 02 03\n80CA004200")
        self.assertEqual(script.commands[0].apdu, bytes.fromhex("80E280000301 0203"))
        self.assertEqual(script.commands[1].location, SourceLocation("t.apdu", 4, 1))

    def test_locationAndIndex(self) -> None:
        """Each command knows its number and where it was written."""
        script = parse("\n\n   80CA9F7F00\n80CA004200")
        self.assertEqual(
            [(c.index, c.location) for c in script.commands],
            [(1, SourceLocation("t.apdu", 3, 4)), (2, SourceLocation("t.apdu", 4, 1))],
        )

    def test_groupComputesLc(self) -> None:
        """( ) around the data computes Lc; Le may follow."""
        self.assertEqual(one(f"00 A4 04 00 ({ISD}) 00"), bytes.fromhex(f"00A4040008{ISD}00"))
        self.assertEqual(one("80 E2 80 00 (01 02)"), bytes.fromhex("80E280000201 02"))

    def test_groupExtended(self) -> None:
        """More than 255 data bytes, or a 2-byte Le, make an extended APDU."""
        apdu = one("set D = " + "AB" * 300 + "\n80 E2 80 00 (${D})")
        self.assertEqual(apdu[:7], bytes.fromhex("80E28000 00012C"))
        self.assertEqual(CommandApdu.decode(apdu).data, b"\xab" * 300)
        self.assertEqual(one("80 B0 01 00 () 10 00"), bytes.fromhex("80B00100 001000"))
        self.assertEqual(one("80 B0 00 00 (01) 0000"), bytes.fromhex("80B00000 000001 01 0000"))
        self.assertEqual(one("80 B0 00 00 ()"), bytes.fromhex("80B00000"))

    def test_raw(self) -> None:
        """raw sends bytes that are not a well-formed C-APDU, unchecked."""
        script = parse("raw 00 A4 04 00 05 A0 00 => 6700")
        c = script.commands[0]
        self.assertEqual((c.apdu, c.raw), (bytes.fromhex("00A4040005A000"), True))
        self.assertIsNone(c.command_apdu)
        self.assertEqual(c.location, SourceLocation("t.apdu", 1, 1))
        self.assertEqual(c.source, "raw 00 A4 04 00 05 A0 00 => 6700")


class VariableTests(SynchronousTestCase):
    """set, ${NAME}, slices and --var."""

    def test_setAndUse(self) -> None:
        """A variable holds bytes and can be built from others."""
        script = parse(f"set AID = {ISD}\nset CMD = 00 A4 04 00 08 ${{AID}}\n${{CMD}} 00")
        self.assertEqual(script.commands[0].apdu, bytes.fromhex(f"00A4040008{ISD}00"))
        self.assertEqual(script.variables["AID"], bytes.fromhex(ISD))

    def test_reassign(self) -> None:
        """set replaces the value for the lines that follow."""
        script = parse("set X = 01\n80E20000 (${X})\nset X = 02 03\n80E20000 (${X})")
        self.assertEqual([c.apdu[5:] for c in script.commands], [b"\x01", b"\x02\x03"])

    def test_slice(self) -> None:
        """${NAME[a:b]} takes bytes a to b; either bound may be left out."""
        script = parse("set V = 00 01 02 03 04\n80E20000 (${V[1:3]} ${V[:1]} ${V[4:]})")
        self.assertEqual(script.commands[0].apdu[5:], bytes.fromhex("01 02 00 04"))

    def test_commandLineWins(self) -> None:
        """A --var value is kept when the script sets the same name."""
        script = parse("set AID = 0102030405\n00A40400 (${AID})", variables={"AID": b"\xa0" * 5})
        self.assertEqual(script.commands[0].apdu[5:], b"\xa0" * 5)

    def test_parseVariable(self) -> None:
        """--var NAME=HEX: spaces allowed in the value; errors name the option."""
        self.assertEqual(parse_variable("AID = A0 00 01"), ("AID", b"\xa0\x00\x01"))
        for bad, reason in [
            ("AID", "is not NAME=VALUE"),
            ("1A=00", "not a variable name"),
            ("A=0G", "'G' is not a hex digit"),
            ("A=000", "odd number"),
        ]:
            with self.assertRaises(ScriptError) as ctx:
                parse_variable(bad)
            self.assertIn(reason, str(ctx.exception))
            self.assertTrue(str(ctx.exception).startswith("--var"))

    def test_stepNameExpands(self) -> None:
        """A step name may quote text and use variables (shown in hex)."""
        script = parse('set A = 0102\nstep "select ${A} # not a comment"\n00A40400 (${A})')
        self.assertEqual(script.commands[0].step, "select 0102 # not a comment")


class StructureTests(SynchronousTestCase):
    """step, expect, batch and include."""

    def test_stepsGroupCommands(self) -> None:
        """A step names every command until the next step."""
        script = parse("80CA004200\nstep first one\n80CA004200\n80CA004500\nstep two\n80CA006600")
        self.assertEqual([c.step for c in script.commands], [None, "first one", "first one", "two"])

    def test_defaultExpectation(self) -> None:
        """A command without expectation must answer 9000, any data."""
        c = parse("80CA004200").commands[0]
        self.assertEqual((str(c.sw), c.data), ("9000", None))

    def test_arrowExpectation(self) -> None:
        """=> gives status words (alternatives, wildcards) and a data pattern."""
        c = parse("80F24002024F0000 => 9000 | 6310|61XX data: E3 XX .. 4F *").commands[0]
        self.assertEqual(str(c.sw), "9000|6310|61XX")
        self.assertEqual(str(c.data), "E3 XX .. 4F *")
        d = parse("80CA004200 => data: 42 04 XX{4}").commands[0]
        self.assertEqual(str(d.sw), "9000")

    def test_expectLines(self) -> None:
        """expect lines complete the command before them, in any order."""
        script = parse(
            "80CA004200\nexpect data: 42 *\nexpect 6XXX\n80CA004500 => 9000\nexpect data: 45 *"
        )
        a, b = script.commands
        self.assertEqual((str(a.sw), str(a.data)), ("6XXX", "42 *"))
        self.assertEqual((str(b.sw), str(b.data)), ("9000", "45 *"))

    def test_regexExpectation(self) -> None:
        """regex: takes a quoted expression; # and => inside the quotes are its own."""
        c = parse('80CA004200 => 9000 regex: "42(04|05)#?=>?.*"').commands[0]
        assert isinstance(c.data, RegexPattern)
        self.assertEqual(c.data.source, "42(04|05)#?=>?.*")

    def test_batch(self) -> None:
        """Commands between batch and end are numbered as one batch."""
        script = parse(
            "80CA004200\nbatch\n80CA004200\n80CA004500\nend batch\n"
            "batch\n80CA006600\nEND\n80CA004200"
        )
        self.assertEqual([c.batch for c in script.commands], [None, 1, 1, 2, None])

    def test_include(self) -> None:
        """include reads a file relative to the including one; variables are shared."""
        read = files(
            {
                "/s/main.apdu": "",
                "/s/lib/isd.apdu": (
                    f"set ISD = {ISD}\ninclude ../common/get.apdu\n00A40400 (${{ISD}})"
                ),
                "/s/common/get.apdu": "80CA004200",
            }
        )
        script = parse_script(
            "include lib/isd.apdu\n80CA004500 => data: ${ISD[0:1]} *",
            name="s/main.apdu",
            path="/s/main.apdu",
            read=read,  # type: ignore[arg-type]
        )
        self.assertEqual(
            [c.apdu.hex()[:8] for c in script.commands], ["80ca0042", "00a40400", "80ca0045"]
        )
        self.assertEqual(
            [str(c.location) for c in script.commands],
            ["s/common/get.apdu:1:1", "s/lib/isd.apdu:3:1", "s/main.apdu:2:1"],
        )
        self.assertEqual(script.files, ("s/main.apdu", "s/lib/isd.apdu", "s/common/get.apdu"))

    def test_includeTwice(self) -> None:
        """The same file may be included twice in a row (only cycles are refused)."""
        read = files({"/s/a.apdu": "80CA004200"})
        script = parse_script(
            "include a.apdu\ninclude a.apdu",
            path="/s/m.apdu",
            read=read,  # type: ignore[arg-type]
        )
        self.assertEqual(len(script.commands), 2)
        self.assertEqual(script.files, ("<script>", "a.apdu"))

    def test_loadScript(self) -> None:
        """load_script reads from disk; includes are relative to the file."""
        base = Path(self.mktemp())
        (base / "inc").mkdir(parents=True)
        (base / "inc" / "x.apdu").write_text("80CA004200\n")
        (base / "main.apdu").write_text("include inc/x.apdu\n80CA004500\n")
        script = load_script(base / "main.apdu")
        self.assertEqual(len(script.commands), 2)
        self.assertEqual(script.commands[0].location.file, str(base / "inc" / "x.apdu"))

    def test_loadScriptMissing(self) -> None:
        """A script that cannot be read is a ScriptError naming it."""
        with self.assertRaises(ScriptError) as ctx:
            load_script("no/such.apdu")
        self.assertEqual(
            str(ctx.exception), "no/such.apdu: cannot read the script: No such file or directory"
        )


# (script, location of the error, part of the reason)
ERRORS = [
    ("00 A4 04 00 05 A0", "t.apdu:1:13", "Lc=5 announces 5 data bytes"),
    ("00A4 0Z", "t.apdu:1:7", "'Z' is not a hex digit"),
    ("00A4 04 00 => data: 4G", "t.apdu:1:22", "'G' is not a hex digit"),
    ("00A4 04 00 ?", "t.apdu:1:12", "unexpected '?' in a C-APDU"),
    ("00 A40 400", "t.apdu:1:4", "odd number of hex digits in 'A40'"),
    ("00", "t.apdu:1:1", "needs at least CLA INS P1 P2"),
    ("80CA ${X}", "t.apdu:1:6", "unknown variable X"),
    ("80CA ${1X}", "t.apdu:1:8", "'1X' is not a variable name"),
    ("80CA ${X", "t.apdu:1:6", "a variable is written ${NAME}"),
    (
        "set V = 0102\n80E20000 (${V[1:3]})",
        "t.apdu:2:11",
        "slice [1:3] is outside V, which has 2 bytes",
    ),
    ("set 9V = 01", "t.apdu:1:5", "'9V' is not a variable name"),
    ("set V 01", "t.apdu:1:5", "set needs NAME = VALUE"),
    ("set V = (01)", "t.apdu:1:9", "no ( ) group is allowed here"),
    ("80E20000 (01) (02)", "t.apdu:1:15", "only one ( ) group"),
    ("80E20000 (01", "t.apdu:1:10", "( is never closed"),
    ("80E200 (01)", "t.apdu:1:8", "( ) must follow the 4 header bytes"),
    ("80E20000 (01) 00 00 00", "t.apdu:1:10", "only Le may follow"),
    ("raw 80E20000 (01)", "t.apdu:1:14", "no ( ) group is allowed here"),
    ("raw", "t.apdu:1:4", "empty C-APDU"),
    ("80CA004200 =>", "t.apdu:1:14", "expected a status word"),
    ("80CA004200 => 90000", "t.apdu:1:15", "'90000' is not a status word pattern"),
    ("80CA004200 => 9000|", "t.apdu:1:20", "'' is not a status word pattern"),
    ("80CA004200 => 9000 date: 00", "t.apdu:1:20", "expected data: or regex:"),
    ("80CA004200 => data: 4", "t.apdu:1:21", "odd number of hex digits in '4'"),
    ("80CA004200 => data: 42 ?", "t.apdu:1:24", "unexpected '?' in a data pattern"),
    ("80CA004200 => data: 42{0}", "t.apdu:1:23", "{n} repeats the byte before it"),
    ("80CA004200 => data: ${Q}", "t.apdu:1:21", "unknown variable Q"),
    ('80CA004200 => regex: "(("', "t.apdu:1:22", "bad regex"),
    ("80CA004200 => regex: 42", "t.apdu:1:22", "expected text in double quotes"),
    ('80CA004200 => regex: "42" x', "t.apdu:1:27", "nothing may follow the closing quote"),
    ('step "unfinished', "t.apdu:1:6", "unterminated quoted text"),
    ("expect 9000", "t.apdu:1:1", "expect without a command before it"),
    ("80CA004200 => 9000\nexpect 6A88", "t.apdu:2:8", "status word is already expected"),
    ("80CA004200 => data: 00\nexpect data: 01", "t.apdu:2:8", "data is already expected"),
    ("batch\n80CA004200", "t.apdu:1:1", "batch is never closed"),
    ("batch\nbatch\nend\nend", "t.apdu:2:1", "does not nest"),
    ("end", "t.apdu:1:1", "end without a batch"),
    ("batch\nend it", "t.apdu:2:5", "only 'end' or 'end batch'"),
    ("include", "t.apdu:1:8", "include needs a file name"),
]


class ErrorTests(SynchronousTestCase):
    """Every error names the file, line and column at fault."""

    def test_errors(self) -> None:
        """Each malformed script fails with its location and reason."""
        got = []
        for text, _, _ in ERRORS:
            try:
                parse(text)
            except ScriptError as e:
                got.append((text, str(e.location), e.reason))
            else:
                got.append((text, "no error", ""))
        self.assertEqual([(t, loc) for t, loc, _ in got], [(t, loc) for t, loc, _ in ERRORS])
        for (text, _, reason), (_, _, wanted) in zip(got, ERRORS, strict=True):
            self.assertIn(wanted, reason, text)

    def test_messageFormat(self) -> None:
        """The message reads file:line:col: reason, and the error pickles."""
        import pickle

        with self.assertRaises(ScriptError) as ctx:
            parse("80CA004200\n\n80CA ${X}")
        self.assertEqual(
            str(ctx.exception),
            "t.apdu:3:6: unknown variable X (set it with 'set X = ...' or --var X=...)",
        )
        again = pickle.loads(pickle.dumps(ctx.exception))
        self.assertEqual(
            (again.location, again.reason), (ctx.exception.location, ctx.exception.reason)
        )

    def test_errorInContinuedLine(self) -> None:
        """Positions stay exact across continuation lines."""
        with self.assertRaises(ScriptError) as ctx:
            parse("80 E2 80 00 \\\n   (01 \\\n    0G)")
        self.assertEqual(str(ctx.exception.location), "t.apdu:3:6")

    def test_errorInInclude(self) -> None:
        """An error in an included file names that file."""
        read = files({"/s/bad.apdu": "80CA004200\n80CA 0Q"})
        with self.assertRaises(ScriptError) as ctx:
            parse_script("include bad.apdu", name="m.apdu", path="/s/m.apdu", read=read)  # type: ignore[arg-type]
        self.assertEqual(str(ctx.exception.location), "bad.apdu:2:7")

    def test_missingInclude(self) -> None:
        """A missing include is reported at the include line."""
        read = files({})
        with self.assertRaises(ScriptError) as ctx:
            parse_script("\ninclude  nope.apdu", name="m.apdu", path="/s/m.apdu", read=read)  # type: ignore[arg-type]
        self.assertEqual(str(ctx.exception.location), "m.apdu:2:10")
        self.assertIn(
            "cannot include '/s/nope.apdu': No such file or directory", ctx.exception.reason
        )

    def test_includeCycle(self) -> None:
        """A file including itself, directly or not, is a cycle, shown whole."""
        read = files({"/s/a.apdu": "include b.apdu", "/s/b.apdu": "80CA004200\ninclude a.apdu"})
        with self.assertRaises(ScriptError) as ctx:
            parse_script("include a.apdu", name="m.apdu", path="/s/m.apdu", read=read)  # type: ignore[arg-type]
        self.assertEqual(str(ctx.exception.location), "b.apdu:2:9")
        self.assertIn("include cycle: /s/a.apdu -> /s/b.apdu -> /s/a.apdu", ctx.exception.reason)

    def test_includeDepth(self) -> None:
        """Includes may not nest without bound."""
        tree = {f"/s/{n}.apdu": f"include {n + 1}.apdu" for n in range(40)}
        with self.assertRaises(ScriptError) as ctx:
            parse_script("include 0.apdu", path="/s/m.apdu", read=files(tree))  # type: ignore[arg-type]
        self.assertIn(f"nest deeper than {MAX_INCLUDE_DEPTH}", ctx.exception.reason)

    def test_batchEndInOtherFile(self) -> None:
        """A batch must end in the file it starts in."""
        read = files({"/s/a.apdu": "end"})
        with self.assertRaises(ScriptError) as ctx:
            parse_script("batch\ninclude a.apdu\nend", name="m.apdu", path="/s/m.apdu", read=read)  # type: ignore[arg-type]
        self.assertEqual(str(ctx.exception.location), "a.apdu:1:1")

    def test_badCommandLineName(self) -> None:
        """A --var name that is not a name is refused before parsing."""
        self.assertRaises(ScriptError, parse, "80CA004200", variables={"a-b": b"\x00"})


class SwMatchTests(SynchronousTestCase):
    """Status word patterns."""

    def test_wildcards(self) -> None:
        """X matches any nibble; * any status word."""
        sw = parse("80CA004200 => 61XX|6X8X|*").commands[0].sw
        p61, p6x8x, anything = sw.alternatives
        self.assertTrue(p61.matches(0x6110) and p61.matches(0x61FF))
        self.assertFalse(p61.matches(0x6210))
        self.assertTrue(p6x8x.matches(0x6A82) and p6x8x.matches(0x6982))
        self.assertFalse(p6x8x.matches(0x6A28) or p6x8x.matches(0x9080))
        self.assertTrue(anything.matches(0x1234))
        self.assertEqual(str(sw), "61XX|6X8X|XXXX")

    def test_alternatives(self) -> None:
        """An expectation matches when any alternative does."""
        sw = SwExpectation((SwPattern(0x9000, 0xFFFF), SwPattern(0x6310, 0xFFFF)))
        self.assertEqual([sw.matches(v) for v in (0x9000, 0x6310, 0x6311)], [True, True, False])

    @given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
    def test_patternOfValue(self, sw: int, mask_bits: int) -> None:
        """Writing any status word with any nibbles replaced by X matches it."""
        text = "".join("X" if mask_bits >> (4 * (3 - i)) & 1 else f"{sw:04X}"[i] for i in range(4))
        c = parse(f"80CA004200 => {text}").commands[0]
        self.assertTrue(c.sw.matches(sw))
        self.assertEqual(str(c.sw), text)


class DataMatchTests(SynchronousTestCase):
    """Data patterns: matching and the explanation of a mismatch."""

    def pattern(self, text: str) -> DataPattern:
        data = parse(f"80CA004200 => data: {text}").commands[0].data
        assert isinstance(data, DataPattern)
        return data

    def test_exact(self) -> None:
        """Plain hex matches exactly those bytes."""
        p = self.pattern("42 04 8988 2110")
        self.assertTrue(p.matches(bytes.fromhex("4204 89882110")))
        self.assertFalse(p.matches(bytes.fromhex("4204 89882111")))

    def test_wildBytesAndNibbles(self) -> None:
        """XX is any byte; X any nibble; {n} repeats."""
        p = self.pattern("9F 7F 2A X0 XX{3} 0X")
        self.assertTrue(p.matches(bytes.fromhex("9F7F2A 50 010203 0F")))
        self.assertFalse(p.matches(bytes.fromhex("9F7F2A 51 010203 0F")))
        self.assertFalse(p.matches(bytes.fromhex("9F7F2A 50 010203 1F")))
        self.assertEqual(
            p.elements[3:], (ByteMatch(0, 0x0F), ANY_BYTE, ANY_BYTE, ANY_BYTE, ByteMatch(0, 0xF0))
        )

    def test_gaps(self) -> None:
        """.. and * stand for any number of bytes, none included."""
        p = self.pattern(f"6F XX .. 84 08 {ISD} *")
        self.assertTrue(p.matches(bytes.fromhex(f"6F10 8408{ISD}")))
        self.assertTrue(p.matches(bytes.fromhex(f"6F10 A5 01 02 8408{ISD} A5 00")))
        self.assertFalse(p.matches(bytes.fromhex(f"6F10 8407{ISD}")))
        self.assertEqual(self.pattern("* * ..").elements, (Gap(),))

    def test_gapBacktracks(self) -> None:
        """A gap gives back bytes when the rest needs them."""
        p = self.pattern(".. 84 08 ..  84 01")
        self.assertTrue(p.matches(bytes.fromhex("84 01 84 08 84 08 84 01")))
        self.assertFalse(p.matches(bytes.fromhex("84 01 84 08 84 02")))

    def test_emptyPattern(self) -> None:
        """data: with nothing after it expects no data."""
        p = self.pattern("")
        self.assertTrue(p.matches(b""))
        mismatch = p.mismatch(b"\x00")
        assert mismatch is not None
        self.assertEqual(
            mismatch.reason,
            "1 unexpected byte after the pattern, from byte 0"
            " (end the pattern with * to allow more)",
        )

    def test_mismatchWrongByte(self) -> None:
        """The first wrong byte is named, with what was expected."""
        m = self.pattern("9F 7F 2A 47 90 *").mismatch(bytes.fromhex("9F7F2A000000"))
        assert m is not None
        self.assertEqual(
            (m.offset, m.pattern_index, m.reason), (3, 3, "byte 3: expected 47, got 00")
        )

    def test_mismatchShort(self) -> None:
        """Data that ends too early says what was expected next."""
        m = self.pattern("42 04 XX XX").mismatch(bytes.fromhex("4204 89"))
        assert m is not None
        self.assertEqual(
            (m.offset, m.reason), (3, "data ends after 3 bytes; the pattern expects XX next")
        )

    def test_mismatchLong(self) -> None:
        """Extra data says where it starts."""
        m = self.pattern("42 04").mismatch(bytes.fromhex("4204 8988"))
        assert m is not None
        self.assertEqual(m.offset, 2)
        self.assertIn("2 unexpected bytes after the pattern, from byte 2", m.reason)

    def test_mismatchAfterGap(self) -> None:
        """With a gap, the furthest point reached is reported."""
        m = self.pattern("6F .. 84 08 A0 00").mismatch(bytes.fromhex("6F 01 84 08 A0 01"))
        assert m is not None
        self.assertEqual((m.offset, m.reason), (5, "byte 5: expected 00, got 01"))

    def test_regex(self) -> None:
        """A regex matches the whole data as upper-case hex."""
        r = RegexPattern("42(04|05).*")
        self.assertTrue(r.matches(bytes.fromhex("4204")))
        self.assertTrue(r.matches(bytes.fromhex("4205 ff")))
        self.assertFalse(r.matches(bytes.fromhex("004204")))
        self.assertIn('does not match the regex "42(04|05).*"', r.mismatch(b"\x00").reason)  # type: ignore[union-attr]
        self.assertIsNone(r.mismatch(bytes.fromhex("4204")))

    @given(st.binary(max_size=40), st.data())
    def test_literalAndGapsMatch(self, data: bytes, draw: st.DataObject) -> None:
        """Data written as a pattern, with gaps inserted anywhere, matches itself."""
        cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=4)))
        parts, last = [], 0
        for cut in cuts:
            parts.append(data[last:cut].hex())
            parts.append(draw.draw(st.sampled_from([" .. ", " * ", " "])))
            last = cut
        parts.append(data[last:].hex())
        self.assertIsNone(self.pattern("".join(parts) or "").mismatch(data))

    @given(st.binary(min_size=1, max_size=40), st.data())
    def test_changedByteFound(self, data: bytes, draw: st.DataObject) -> None:
        """Changing one byte of the data is reported at exactly that offset."""
        at = draw.draw(st.integers(0, len(data) - 1))
        flip = draw.draw(st.integers(1, 255))
        changed = data[:at] + bytes((data[at] ^ flip,)) + data[at + 1 :]
        m = self.pattern(data.hex()).mismatch(changed)
        assert m is not None
        self.assertEqual((m.offset, m.pattern_index), (at, at))
