"""The MSISDN mapping file parser."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import MsisdnFile, MsisdnFileError, parse_msisdn_file
from bipgw.ingest._msisdn_file import _fields, _quick
from bipgw.store import MsisdnChange

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fleet" / "sample-msisdn.csv"
ICCID = "8988211000000000018"
T0 = 1_735_732_800  # 20250101120000 UTC
NOW = 1_800_000_000


def parse(text: str) -> MsisdnFile:
    return parse_msisdn_file(text.encode("ascii"), default_time=NOW, source="f.csv")


class MsisdnFileTests(SynchronousTestCase):
    """Records, empty fields and per-field errors."""

    def test_sample(self) -> None:
        """The shipped sample parses to five changes, no errors."""
        parsed = parse_msisdn_file(SAMPLE.read_bytes(), default_time=NOW)
        self.assertEqual((parsed.records, parsed.rejected, parsed.errors), (5, 0, ()))
        first = parsed.changes[0]
        self.assertEqual(
            (first.line, first.change),
            (1, MsisdnChange("ADD", "33612345601", ICCID, "001010000000001", T0, None)),
        )
        last = parsed.changes[-1].change
        self.assertEqual((last.operation, last.msisdn, last.imsi), ("DEL", None, None))

    def test_eachOperation(self) -> None:
        """ADD, CHG and DEL (by number, by card) parse; '+' is dropped; case is ignored."""
        parsed = parse(
            f"+33600000001,{ICCID},,add,20250101120000\n"
            f"33600000002,{ICCID}F,001010000000001,CHG,20250101120001\n"
            "33600000002,,,DEL,\n"
            f",{ICCID},,Del,20250101120002\n"
        )
        self.assertEqual(parsed.errors, ())
        self.assertEqual(
            [c.change for c in parsed.changes],
            [
                MsisdnChange("ADD", "33600000001", ICCID, None, T0, "f.csv"),
                MsisdnChange("CHG", "33600000002", ICCID, "001010000000001", T0 + 1, "f.csv"),
                MsisdnChange("DEL", "33600000002", None, None, NOW, "f.csv"),
                MsisdnChange("DEL", None, ICCID, None, T0 + 2, "f.csv"),
            ],
        )

    def test_titleLineBlankLinesCrlf(self) -> None:
        """An optional title line, blank lines and CRLF endings are accepted."""
        parsed = parse(
            "MSISDN, ICCID, IMSI, OPERATION, EFFECTIVE_TIME\r\n\r\n"
            f"33600000001,{ICCID},,ADD,20250101120000\r\n"
        )
        self.assertEqual((parsed.records, len(parsed.changes), parsed.changes[0].line), (1, 1, 3))

    def test_fieldErrors(self) -> None:
        """Each bad field is reported with its line and name, and its line is refused."""
        cases = [
            (f"336,{ICCID},,ADD,20250101120000", "MSISDN", "5 to 15 digits"),
            (f"3360000000x,{ICCID},,ADD,20250101120000", "MSISDN", "5 to 15 digits"),
            ("33600000001,8988,,ADD,20250101120000", "ICCID", "4 digits"),
            (f"33600000001,{ICCID},12,ADD,20250101120000", "IMSI", "6 to 15 digits"),
            (f"33600000001,{ICCID},,MOVE,20250101120000", "OPERATION", "not ADD, DEL or CHG"),
            (f"33600000001,{ICCID},,ADD,2025010112", "EFFECTIVE_TIME", "not YYYYMMDDHHMMSS"),
            (f"33600000001,{ICCID},,ADD,20251301120000", "EFFECTIVE_TIME", "not a valid date"),
            ("33600000001,,,ADD,20250101120000", "ICCID", "ADD needs the ICCID"),
            (f",{ICCID},,CHG,20250101120000", "MSISDN", "CHG needs the MSISDN"),
            (",,,DEL,20250101120000", "MSISDN", "DEL needs the MSISDN, the ICCID or both"),
        ]
        for line, field, words in cases:
            parsed = parse(f"33600000009,{ICCID},,ADD,\n{line}\n")
            self.assertEqual(len(parsed.errors), 1, line)
            (error,) = parsed.errors
            self.assertEqual((error.line, error.column), (2, field), line)
            self.assertIn(words, error.message, line)
            self.assertEqual((parsed.records, parsed.rejected, len(parsed.changes)), (2, 1, 1))

    def test_wholeLineErrors(self) -> None:
        """Wrong field counts, non-ASCII and control characters refuse the line."""
        parsed = parse_msisdn_file(
            b"1,2,3\n33600000001,,,DEL,,\n\xe9,,,DEL,\n\x01,,,DEL,\n", default_time=NOW
        )
        self.assertEqual([e.line for e in parsed.errors], [1, 2, 3, 4])
        self.assertIn("3 fields; a record has 5", parsed.errors[0].message)
        self.assertIn("not ASCII", parsed.errors[2].message)
        self.assertIn("control characters", parsed.errors[3].message)

    def test_tooLarge(self) -> None:
        """A file over the size limit is refused as a whole."""
        from bipgw.ingest import _msisdn_file

        self.patch(_msisdn_file, "MAX_FILE_BYTES", 10)
        self.assertRaises(MsisdnFileError, parse, "33600000001,,,DEL,\n")

    @given(st.binary(max_size=400))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes give a result (every record counted) or MsisdnFileError, nothing else."""
        try:
            parsed = parse_msisdn_file(data, default_time=NOW)
        except MsisdnFileError:
            return
        self.assertEqual(parsed.records, len(parsed.changes) + parsed.rejected)

    @given(
        st.lists(
            st.sampled_from(
                [
                    "",
                    "+336000",
                    "33600000001",
                    ICCID,
                    "ADD",
                    "DEL",
                    "CHG",
                    "20250101120000",
                    "x",
                    "0010100",
                ]
            ),
            min_size=0,
            max_size=7,
        )
    )
    def test_randomFields(self, fields: list[str]) -> None:
        """Random fields in random numbers give a change or a line error, never an exception."""
        parsed = parse(",".join(fields) + "\n")
        self.assertEqual(len(parsed.changes) + parsed.rejected, parsed.records)


class ScanTests(SynchronousTestCase):
    """The streaming first pass and the batches in effective-time order."""

    LINES = [f"3361234560{n},898821100000000{n}018,,ADD,2025010112000{9 - n}" for n in range(1, 6)]

    def test_outOfOrderSorted(self) -> None:
        """A file out of time order is given back sorted (ties in file order), in batches."""
        from bipgw.ingest._msisdn_file import MsisdnScan

        data = ("\n".join([*self.LINES, "bad,line", self.LINES[0]]) + "\n").encode()
        scan = MsisdnScan(data, default_time=NOW)
        self.assertEqual((scan.records, scan.rejected, scan.valid), (7, 1, 6))
        batches = list(scan.in_effective_order(4))
        self.assertEqual([len(b) for b in batches], [4, 2])
        lines = [line for batch in batches for line, _ in batch]
        self.assertEqual(lines, [5, 4, 3, 2, 1, 7])
        times = [change.effective_at for batch in batches for _, change in batch]
        self.assertEqual(times, sorted(times))

    def test_inOrderKeptInFileOrder(self) -> None:
        """A file in time order keeps its order (no sort), a title line and blank lines skipped."""
        from bipgw.ingest._msisdn_file import MsisdnScan

        text = "MSISDN,ICCID,IMSI,OPERATION,EFFECTIVE_TIME\r\n\n" + "\r\n".join(self.LINES[::-1])
        scan = MsisdnScan(text.encode(), default_time=NOW)
        lines = [line for batch in scan.in_effective_order(2) for line, _ in batch]
        self.assertEqual(lines, [3, 4, 5, 6, 7])


class PlainLineTests(SynchronousTestCase):
    """The fast path for plain lines agrees with the full check, and declines the rest."""

    def test_sameFields(self) -> None:
        """Every line the fast path reads, the full check reads the same way."""
        plain = [
            f"33600000001,{ICCID},001010000000001,ADD,20250101120000",
            f"+33600000001,{ICCID}F,,CHG,20250101120000",
            f"33600000001,{ICCID}ff,,DEL,",
            f",{ICCID},,DEL,20250101120000",
            f"33600000001,{ICCID},,ADD,20240229235959",
        ]
        for line in plain:
            raw = line.encode()
            self.assertEqual(_quick(raw, NOW), _fields(1, raw, NOW)[1], line)
            self.assertIsNotNone(_quick(raw, NOW), line)

    @given(
        st.lists(
            st.sampled_from(
                [
                    "",
                    "+",
                    "3360000000",
                    "1234",
                    "1" * 16,
                    ICCID,
                    ICCID + "F",
                    ICCID + "1F1",
                    "1" * 21,
                    "00101000000",
                    "12345",
                    "ADD",
                    "add",
                    "DEL",
                    "CHG",
                    "XXX",
                    "20250101120000",
                    "20250230120000",
                    "2025010112000",
                    " 1",
                    "F",
                    "\u00b2",
                ]
            ),
            min_size=3,
            max_size=6,
        )
    )
    def test_neverDisagrees(self, fields: list[str]) -> None:
        """Any line: the fast path reads it as the full check does, or leaves it to it."""
        raw = ",".join(fields).encode()
        quick = _quick(raw, NOW)
        if quick is not None:
            self.assertEqual(quick, _fields(1, raw, NOW)[1])


_FIELD = st.sampled_from(
    [
        *("", "+33600000001", "33600000001", "1234", ICCID, ICCID + "F", "12345678901234567890"),
        *("001010000000001", "ADD", "add", "DEL", "CHG", "XXX", " ADD "),
        *("20250101120000", "20250230120000", "20250101246000", "2025010112000", "\u00b2"),
    ]
)
_TITLES = ["", "  ", "MSISDN,ICCID,IMSI,OPERATION,EFFECTIVE_TIME", "msisdn , iccid,imsi,"]
_RAW_LINE = st.one_of(
    st.lists(_FIELD, min_size=4, max_size=6).map(",".join),
    st.sampled_from(
        ["", "  ", "MSISDN,ICCID,IMSI,OPERATION,EFFECTIVE_TIME", "msisdn , iccid,imsi,"]
    ),
    st.text(alphabet=",\r x9\u00ff", max_size=8),
)


class OnePassReaderTests(SynchronousTestCase):
    """MsisdnLines (one pass, for the set-based apply) reads a file as MsisdnScan does."""

    @given(
        lines=st.lists(st.tuples(_RAW_LINE, st.sampled_from(["\n", "\r\n"])), max_size=12),
        end=st.booleans(),
        piece=st.sampled_from([1, 7, 1 << 20]),
    )
    def test_sameRowsAndErrors(self, lines: list[tuple[str, str]], end: bool, piece: int) -> None:
        """Same valid lines (in file order), same records, rejections and errors."""
        from bipgw.ingest import _msisdn_file

        text = "".join(line + newline for line, newline in lines)
        if not end and text.endswith("\n"):
            text = text[:-1]
        data = text.encode("latin-1")
        scan = _msisdn_file.MsisdnScan(data, default_time=NOW)
        expected = [
            (line, c.operation.value, c.msisdn, c.iccid, c.imsi, c.effective_at)
            for batch in scan.in_file_order(1 << 30)
            for line, c in batch
        ]
        self.patch(_msisdn_file, "_PIECE", piece)
        one = _msisdn_file.MsisdnLines(data, default_time=NOW)
        self.assertEqual(list(one.rows()), expected)
        self.assertEqual(
            (one.records, one.rejected, one.valid, one.errors),
            (scan.records, scan.rejected, scan.valid, list(scan.errors)),
        )

    def test_tooManyRecords(self) -> None:
        """Past MAX_RECORDS the reader stops with the line, as the scan does."""
        from bipgw.ingest import _msisdn_file

        self.patch(_msisdn_file, "MAX_RECORDS", 2)
        data = b"".join(b"3360000000%d,%s,,ADD,\n" % (n, ICCID.encode()) for n in range(3))
        with self.assertRaises(MsisdnFileError) as caught:
            list(_msisdn_file.MsisdnLines(data, default_time=NOW).rows())
        self.assertEqual(caught.exception.line, 3)

    def test_allOrNothingRefusedAtTheEnd(self) -> None:
        """All-or-nothing: every line read and checked, then MsisdnRowsRefused."""
        from bipgw.ingest import _msisdn_file

        data = f"x\n33600000001,{ICCID},,ADD,\nbad\n".encode()
        lines = _msisdn_file.MsisdnLines(data, default_time=NOW, all_or_nothing=True)
        rows = []
        with self.assertRaises(_msisdn_file.MsisdnRowsRefused):
            rows.extend(lines.rows())
        self.assertEqual((lines.records, lines.rejected, len(rows)), (3, 2, 1))
        self.assertEqual([e.line for e in lines.errors], [1, 3])
