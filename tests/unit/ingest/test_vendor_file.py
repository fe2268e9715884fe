"""The card-vendor output file parser."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import VendorFile, VendorFileError, parse_vendor_file
from bipgw.keys import psk_identity_for
from bipgw.store import KeyPurpose
from tests.unit.ingest import COLUMNS, ICCIDS, card_line, vendor_file

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fleet" / "sample-vendor.out"


class HeaderTests(SynchronousTestCase):
    """The header block and the Var_Out line."""

    def test_sampleFile(self) -> None:
        """The shipped sample parses: header, columns, three cards, no errors."""
        parsed = parse_vendor_file(SAMPLE.read_bytes())
        header = parsed.header
        self.assertEqual(
            (header.customer, header.quantity, header.card_type, header.batch),
            ("bipgw-demo", 3, "USIM-BIP", "B0001"),
        )
        self.assertEqual(
            (header.transport_key, header.ota_algorithm, header.ota_kvn), ("TK1", "AES", 1)
        )
        self.assertEqual(parsed.columns, COLUMNS)
        self.assertEqual([c.iccid for c in parsed.cards], list(ICCIDS))
        self.assertEqual((parsed.errors, parsed.records, parsed.rejected), ((), 3, 0))
        self.assertEqual(parsed.cards[0].psk_identity, psk_identity_for(ICCIDS[0]))
        self.assertEqual(parsed.cards[0].line, 13)

    def test_secretColumnsAndKeyVersions(self) -> None:
        """OTA keysets take versions from Ota_kvn; PSK and SCP03 keysets are their number."""
        columns = ("ICCID", "KIC1", "KIC2", "KID2", "PSK1", "SCP03_ENC3", "KIC2_KCV")
        parsed = parse_vendor_file(vendor_file(columns=columns, header={"Ota_kvn": "4"}))
        got = [(s.name, s.purpose, s.kvn, s.kcv_column) for s in parsed.secrets]
        self.assertEqual(
            got,
            [
                ("KIC1", KeyPurpose.KIC, 4, None),
                ("KIC2", KeyPurpose.KIC, 5, "KIC2_KCV"),
                ("KID2", KeyPurpose.KID, 5, None),
                ("PSK1", KeyPurpose.PSK, 1, None),
                ("SCP03_ENC3", KeyPurpose.SCP03_ENC, 3, None),
            ],
        )

    def test_headerCaseCommentsAndCrlf(self) -> None:
        """Header keys match in any case; '*' lines, blank lines and CRLF are fine."""
        data = vendor_file().replace(b"Var_Out", b"var_out").replace(b"\n", b"\r\n")
        data = b"*HEADER DESCRIPTION\r\n\r\n" + data.replace(b"Quantity", b"QUANTITY")
        parsed = parse_vendor_file(data)
        self.assertEqual(len(parsed.cards), 3)
        self.assertEqual(parsed.header.fields["Quantity"], "3")

    def test_unknownHeadersKept(self) -> None:
        """Header lines bipgw does not know are kept in the header's fields."""
        parsed = parse_vendor_file(vendor_file(header={"Graph_ref": "G-17", "Ota_algorithm": None}))
        self.assertEqual(parsed.header.fields["Graph_ref"], "G-17")
        self.assertEqual(parsed.header.ota_algorithm, "AES")

    def test_fileLevelErrors(self) -> None:
        """An unusable header refuses the file with a message naming the problem."""
        cases = [
            (vendor_file(header={"Batch": None}), "missing header(s): Batch"),
            (vendor_file(header={"Customer": None, "Type": None}), "Customer, Type"),
            (vendor_file(header={"Quantity": "three"}), "Quantity must be a whole number"),
            (vendor_file(header={"Ota_algorithm": "RC4"}), "Ota_algorithm must be AES or 3DES"),
            (vendor_file(header={"Ota_kvn": "16"}), "Ota_kvn must be a whole number from 1 to 15"),
            (vendor_file(columns=("IMSI", "KIC1")), "no ICCID column"),
            (vendor_file(columns=("ICCID", "KIC1", "kic1")), "names a column twice"),
            (vendor_file(columns=("ICCID", "KIC1-X")), "bad column name"),
            (vendor_file(columns=("ICCID", "KID1_KCV")), "check value of a column"),
            (vendor_file(columns=("ICCID", "KIC15"), header={"Ota_kvn": "2"}), "key version 16"),
            (b"Customer: x\nQuantity: 0\n", "no 'Var_Out:' line"),
            (b"Customer: x\nthis is not a header\n", "line 2"),
            (b"Customer: x\nCustomer: y\nVar_Out: ICCID\n", "appears twice"),
            (b"Customer: \xff\n", "not ASCII"),
        ]
        for data, words in cases:
            with self.assertRaises(VendorFileError, msg=words) as caught:
                parse_vendor_file(data)
            self.assertIn(words, str(caught.exception))

    def test_quantityMismatch(self) -> None:
        """Quantity must be the number of card lines, good or bad."""
        with self.assertRaises(VendorFileError) as caught:
            parse_vendor_file(vendor_file(quantity=4))
        self.assertEqual(caught.exception.field, "Quantity")
        self.assertIn("Quantity says 4 cards but the file has 3 card lines", str(caught.exception))
        lines = [card_line(ICCIDS[0], "001010000000001"), "garbage"]
        parsed = parse_vendor_file(vendor_file(lines, quantity=2))
        self.assertEqual((parsed.records, parsed.rejected, len(parsed.cards)), (2, 1, 1))


class LineTests(SynchronousTestCase):
    """Per-line validation: each bad value is named by line and column."""

    def parse_line(self, **override: str) -> VendorFile:
        good = card_line(ICCIDS[1], "001010000000002")
        bad = card_line(ICCIDS[0], "001010000000001", override=override)
        return parse_vendor_file(vendor_file([good, bad]))

    def assertOneError(self, parsed: VendorFile, column: str | None, words: str) -> None:
        self.assertEqual(len(parsed.errors), 1, parsed.errors)
        (error,) = parsed.errors
        self.assertEqual((error.line, error.column), (10, column))
        self.assertIn(words, error.message)
        self.assertEqual([c.iccid for c in parsed.cards], [ICCIDS[1]])
        self.assertEqual(parsed.rejected, 1)

    def test_iccid(self) -> None:
        """An ICCID that is not 18 to 20 digits is refused; F filler is removed."""
        self.assertOneError(self.parse_line(ICCID="89882110000000001"), "ICCID", "17 digits")
        self.assertOneError(self.parse_line(ICCID="89882110000000000A8"), "ICCID", "decimal digits")
        parsed = self.parse_line(ICCID=ICCIDS[0] + "F")
        self.assertEqual(parsed.cards[1].iccid, ICCIDS[0])

    def test_imsi(self) -> None:
        """An IMSI must be 6 to 15 digits."""
        self.assertOneError(self.parse_line(IMSI="00101"), "IMSI", "6 to 15 digits")
        self.assertOneError(self.parse_line(IMSI="0010100000000001"), "IMSI", "6 to 15 digits")

    def test_secretNotHexNeverQuoted(self) -> None:
        """A secret column that is not hex is reported by position, never quoted."""
        parsed = self.parse_line(KIC1="0123ZZSECRETVALUE0123")
        self.assertOneError(parsed, "KIC1", "not hex (character 5 of 21)")
        self.assertNotIn("SECRET", parsed.errors[0].message)

    def test_secretOddLength(self) -> None:
        """A secret column with an odd number of hex digits is refused."""
        self.assertOneError(self.parse_line(PSK1="ABC"), "PSK1", "odd number of hex digits (3)")

    def test_pskIdentityHex(self) -> None:
        """PSK_ID1 is hex of the identity bytes."""
        self.assertOneError(self.parse_line(PSK_ID1="xyz1"), "PSK_ID1", "not hex")
        parsed = self.parse_line(PSK_ID1="00FF10")
        self.assertEqual(parsed.cards[1].psk_identity, b"\x00\xff\x10")

    def test_valueCount(self) -> None:
        """A line with too few or too many values is refused as a whole."""
        good = card_line(ICCIDS[1], "001010000000002")
        parsed = parse_vendor_file(vendor_file([good, good + " extra", "89882110 001"]))
        self.assertEqual([(e.line, e.column) for e in parsed.errors], [(10, None), (11, None)])
        self.assertIn("8 values, but Var_Out names 7 columns", parsed.errors[0].message)

    def test_severalErrorsOneLine(self) -> None:
        """Every bad column of a line is reported; the line counts once."""
        parsed = self.parse_line(IMSI="x", KID1="Q", KIK1="ABC")
        self.assertEqual([e.column for e in parsed.errors], ["IMSI", "KID1", "KIK1"])
        self.assertEqual(parsed.rejected, 1)

    def test_duplicates(self) -> None:
        """A repeated ICCID or PSK identity is refused, naming the first line."""
        line = card_line(ICCIDS[0], "001010000000001")
        other = card_line(
            ICCIDS[1], "001010000000002", override={"PSK_ID1": psk_identity_for(ICCIDS[0]).hex()}
        )
        parsed = parse_vendor_file(vendor_file([line, line, other]))
        self.assertEqual(
            [(e.line, e.column, e.message) for e in parsed.errors],
            [
                (10, "ICCID", f"ICCID {ICCIDS[0]} is also on line 9"),
                (10, "PSK_ID1", "the PSK identity is also on line 9"),
                (11, "PSK_ID1", "the PSK identity is also on line 9"),
            ],
        )
        self.assertEqual(len(parsed.cards), 1)

    def test_nonAsciiLine(self) -> None:
        """A card line with bytes that are not ASCII is refused alone."""
        data = vendor_file([card_line(ICCIDS[0], "001010000000001"), "caf\xe9"[:3]])
        data = data.replace(b"caf\n", b"caf\xc3\xa9\n")
        parsed = parse_vendor_file(data)
        self.assertEqual(
            [(e.line, e.message) for e in parsed.errors], [(10, "the line is not ASCII text")]
        )

    def test_unknownAndSecretLookingColumns(self) -> None:
        """Unknown columns are kept as extras; KI, OPC, PIN, PUK, ADM columns are dropped."""
        columns = (*COLUMNS, "ACC", "KI", "OPC", "PIN1", "PUK1", "ADM1", "OTA_KEY")
        parsed = parse_vendor_file(vendor_file(columns=columns))
        self.assertEqual(parsed.dropped_columns, ("KI", "OPC", "PIN1", "PUK1", "ADM1", "OTA_KEY"))
        self.assertEqual(dict(parsed.cards[0].extras), {"ACC": "acc-18"})

    def test_kcvColumn(self) -> None:
        """A KCV column holds 6 hex digits, kept upper case per secret column."""
        columns = ("ICCID", "KIC1", "KIC1_KCV")
        good = card_line(ICCIDS[0], "", columns, override={"KIC1_KCV": "a1b2c3"})
        bad = card_line(ICCIDS[1], "", columns, override={"KIC1_KCV": "A1B2"})
        parsed = parse_vendor_file(vendor_file([good, bad], columns=columns))
        self.assertEqual(dict(parsed.cards[0].kcvs), {"KIC1": "A1B2C3"})
        self.assertEqual([(e.line, e.column) for e in parsed.errors], [(10, "KIC1_KCV")])

    def test_wrappedValuesNotInRepr(self) -> None:
        """A parsed card's repr does not show its wrapped secret columns."""
        card = parse_vendor_file(vendor_file()).cards[0]
        for value in card.wrapped.values():
            self.assertNotIn(value.hex(), repr(card).lower())


class PropertyTests(SynchronousTestCase):
    """Whatever the input, the parser returns a result or raises VendorFileError."""

    @given(st.binary(max_size=600))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes never raise anything but VendorFileError."""
        try:
            parse_vendor_file(data)
        except VendorFileError:
            pass

    @given(st.data())
    def test_mutatedFile(self, data: st.DataObject) -> None:
        """A valid file with bytes changed, cut or inserted gives a result or VendorFileError."""
        original = bytearray(vendor_file())
        for _ in range(data.draw(st.integers(1, 6))):
            position = data.draw(st.integers(0, len(original)))
            action = data.draw(st.sampled_from(["set", "cut", "insert"]))
            byte = data.draw(st.sampled_from([0x20, 0x0A, 0x2F, 0x3A, 0x46, 0x30, 0xFF, 0x2A]))
            if action == "set" and position < len(original):
                original[position] = byte
            elif action == "cut":
                del original[position : position + data.draw(st.integers(1, 40))]
            else:
                original.insert(position, byte)
        try:
            parsed = parse_vendor_file(bytes(original))
        except VendorFileError:
            return
        self.assertEqual(parsed.records, parsed.header.quantity)
        self.assertEqual(parsed.records, len(parsed.cards) + parsed.rejected)
