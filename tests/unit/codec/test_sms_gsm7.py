"""Tests for the GSM 7-bit default alphabet and septet packing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from smpplib import gsm as smpplib_gsm
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.sms import (
    SmsError,
    gsm7_decode,
    gsm7_encode,
    gsm7_septets,
    pack_septets,
    septets_to_text,
    unpack_septets,
)
from bipgw.codec.sms._gsm7 import _DEFAULT, _EXTENSION

# Every character the alphabet can carry: the 127 of the default table (not the
# escape) and the 10 of the extension table.
ALL_CHARACTERS = sorted({c for i, c in enumerate(_DEFAULT) if i != 0x1B} | set(_EXTENSION.values()))


def reference_pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack by arithmetic on one big integer: septet i occupies bits fill+7i .. fill+7i+6.

    This is TS 23.038 6.1.2.1 stated as a formula, independent of the
    bit-accumulator loop in the codec.
    """
    value = sum(s << (fill_bits + 7 * i) for i, s in enumerate(septets))
    return value.to_bytes((fill_bits + 7 * len(septets) + 7) // 8, "little")


class KnownVectorTests(SynchronousTestCase):
    """Published 7-bit encodings come out byte for byte."""

    def test_helloHello(self) -> None:
        """'hellohello' packs to e8329bfd4697d9ec37 (the classic PDU-mode example)."""
        self.assertEqual(gsm7_encode("hellohello").hex(), "e8329bfd4697d9ec37")
        self.assertEqual(reference_pack(b"hellohello").hex(), "e8329bfd4697d9ec37")
        self.assertEqual(gsm7_decode(bytes.fromhex("e8329bfd4697d9ec37"), 10), "hellohello")

    def test_howAreYou(self) -> None:
        """'How are you?' packs to c8f71d14969741f977fd07 (12 septets in 11 octets)."""
        packed = bytes.fromhex("c8f71d14969741f977fd07")
        self.assertEqual(gsm7_encode("How are you?"), packed)
        self.assertEqual(reference_pack(gsm7_septets("How are you?")), packed)
        self.assertEqual(gsm7_decode(packed, 12), "How are you?")

    def test_eightSeptetsInSevenOctets(self) -> None:
        """Eight septets fill seven octets exactly; seven leave one zero bit."""
        self.assertEqual(len(gsm7_encode("abcdefgh")), 7)
        seven = gsm7_encode("abcdefg")
        self.assertEqual(len(seven), 7)
        self.assertEqual(seven[-1] & 0x80, 0)
        self.assertEqual(gsm7_decode(seven, 7), "abcdefg")

    def test_codePoints(self) -> None:
        """Characters sit at their TS 23.038 code points, extension ones behind 1B."""
        expected = {
            "@": "00",
            "£": "01",
            "\n": "0a",
            "\r": "0d",
            "Δ": "10",
            "_": "11",
            " ": "20",
            "¤": "24",
            "¡": "40",
            "§": "5f",
            "¿": "60",
            "à": "7f",
            "€": "1b65",
            "\x0c": "1b0a",
            "^": "1b14",
            "{": "1b28",
            "\\": "1b2f",
            "|": "1b40",
        }
        for ch, code in expected.items():
            self.assertEqual(gsm7_septets(ch).hex(), code, ch)

    def test_tableSizes(self) -> None:
        """The default table has 128 entries and the extension table 10."""
        self.assertEqual(len(_DEFAULT), 128)
        self.assertEqual(len(ALL_CHARACTERS), 137)


class SmpplibAgreementTests(SynchronousTestCase):
    """The character table agrees with smpplib's independent one."""

    def test_sameSeptetsAsSmpplib(self) -> None:
        """Every character smpplib maps gets the same septets from us.

        smpplib marks unassigned slots with a backquote, and also puts one at
        5F where TS 23.038 has the section sign; those slots are skipped.
        """
        compared = 0
        for index, ch in enumerate(smpplib_gsm.GSM_CHARACTER_TABLE):
            if ch == "`" or index == 0x1B:
                continue
            self.assertEqual(gsm7_septets(ch), smpplib_gsm.gsm_encode(ch), repr(ch))
            self.assertEqual(septets_to_text(smpplib_gsm.gsm_encode(ch)), ch)
            compared += 1
        self.assertEqual(compared, 135)

    def test_sectionSignDiffersFromSmpplib(self) -> None:
        """5F is the section sign (smpplib has a backquote there, which GSM lacks)."""
        self.assertEqual(smpplib_gsm.GSM_CHARACTER_TABLE[0x5F], "`")
        self.assertEqual(septets_to_text(b"\x5f"), "§")
        self.assertRaises(SmsError, gsm7_septets, "`")


class ErrorTests(SynchronousTestCase):
    """Bad text and bad lengths raise SmsError with the details."""

    def test_unencodableCharacter(self) -> None:
        """A character outside the alphabet is named with its position."""
        with self.assertRaises(SmsError) as ctx:
            gsm7_encode("ab\u2713c")
        message = str(ctx.exception)
        self.assertIn("'\u2713'", message)
        self.assertIn("U+2713", message)
        self.assertIn("position 2", message)
        self.assertEqual(ctx.exception.offset, 2)

    def test_escapeIsNotACharacter(self) -> None:
        """The escape code itself cannot be sent as text."""
        self.assertRaises(SmsError, gsm7_septets, "\x1b")

    def test_wrongPackedLength(self) -> None:
        """Packed data must be exactly as long as the septet count says."""
        packed = gsm7_encode("hellohello")
        with self.assertRaises(SmsError) as ctx:
            gsm7_decode(packed[:-1], 10)
        self.assertEqual(ctx.exception.field, "TP-UD")
        self.assertRaises(SmsError, gsm7_decode, packed + b"\x00", 10)

    def test_notASeptet(self) -> None:
        """Packing or decoding a value above 7F is refused at its position."""
        with self.assertRaises(SmsError) as ctx:
            pack_septets(b"\x41\x80")
        self.assertEqual(ctx.exception.offset, 1)
        self.assertRaises(SmsError, septets_to_text, b"\xff")

    def test_fillBitsRange(self) -> None:
        """Fill bits beyond 6 would be a whole septet; they are refused."""
        self.assertRaises(SmsError, pack_septets, b"A", 7)
        self.assertRaises(SmsError, unpack_septets, b"\x00\x00", 1, -1)


class ReceiverRuleTests(SynchronousTestCase):
    """Decoding follows the TS 23.038 receiver rules for odd escapes."""

    def test_escapeEscapeIsSpace(self) -> None:
        """1B 1B (reserved for another table) shows as a space."""
        self.assertEqual(septets_to_text(b"\x41\x1b\x1b\x42"), "A B")

    def test_unknownExtensionShowsDefaultCharacter(self) -> None:
        """An escape before a code with no extension character shows the default one."""
        self.assertEqual(septets_to_text(b"\x1b\x41"), "A")

    def test_danglingEscapeIsSpace(self) -> None:
        """An escape as the last septet shows as a space."""
        self.assertEqual(septets_to_text(b"\x41\x1b"), "A ")


class PropertyTests(SynchronousTestCase):
    """Round trips over the whole alphabet and agreement with the reference packer."""

    @given(
        st.text(alphabet=st.sampled_from(ALL_CHARACTERS), max_size=200),
        st.integers(min_value=0, max_value=6),
    )
    def test_roundTrip(self, text: str, fill_bits: int) -> None:
        """Any text of the alphabet and extension table survives encode/decode."""
        septets = gsm7_septets(text)
        packed = gsm7_encode(text, fill_bits)
        self.assertEqual(gsm7_decode(packed, len(septets), fill_bits), text)

    @given(
        st.binary(max_size=170).map(lambda b: bytes(x & 0x7F for x in b)),
        st.integers(min_value=0, max_value=6),
    )
    def test_packingMatchesReference(self, septets: bytes, fill_bits: int) -> None:
        """Packing equals the big-integer formulation, and unpacking inverts it."""
        packed = pack_septets(septets, fill_bits)
        self.assertEqual(packed, reference_pack(septets, fill_bits))
        self.assertEqual(unpack_septets(packed, len(septets), fill_bits), septets)

    @given(
        st.binary(max_size=60),
        st.integers(min_value=-2, max_value=80),
        st.integers(min_value=-1, max_value=8),
    )
    def test_randomInputOnlySmsError(self, packed: bytes, count: int, fill_bits: int) -> None:
        """Arbitrary input to the decoder gives text or SmsError, nothing else."""
        try:
            text = gsm7_decode(packed, count, fill_bits)
        except SmsError:
            return
        self.assertIsInstance(text, str)
