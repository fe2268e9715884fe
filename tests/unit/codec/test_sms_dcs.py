"""Tests for TP-DCS classification (3GPP TS 23.038 section 4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.sms import DCS_CLASS2_8BIT, Alphabet, DataCoding, SmsError, classify_dcs


class ClassifyTests(SynchronousTestCase):
    """Each coding group gives the alphabet and class the spec assigns."""

    def test_simDataDownloadCodings(self) -> None:
        """F6 and 16 are both class 2 8-bit data, the SMS-PP download coding."""
        expected = DataCoding(Alphabet.EIGHT_BIT, 2)
        self.assertEqual(classify_dcs(DCS_CLASS2_8BIT), expected)
        self.assertEqual(classify_dcs(0x16), expected)

    def test_generalGroup(self) -> None:
        """00xx: bits 3-2 the alphabet, bit 4 whether bits 1-0 are a class."""
        self.assertEqual(classify_dcs(0x00), DataCoding(Alphabet.GSM7, None))
        self.assertEqual(classify_dcs(0x04), DataCoding(Alphabet.EIGHT_BIT, None))
        self.assertEqual(classify_dcs(0x08), DataCoding(Alphabet.UCS2, None))
        self.assertEqual(classify_dcs(0x10), DataCoding(Alphabet.GSM7, 0))
        self.assertEqual(classify_dcs(0x19), DataCoding(Alphabet.UCS2, 1))
        self.assertEqual(classify_dcs(0x03), DataCoding(Alphabet.GSM7, None))

    def test_compressed(self) -> None:
        """Bit 5 marks compression, after which TP-UDL counts octets even for 7-bit."""
        coding = classify_dcs(0x20)
        self.assertEqual(coding, DataCoding(Alphabet.GSM7, None, compressed=True))
        self.assertFalse(coding.counts_septets)
        self.assertTrue(classify_dcs(0x00).counts_septets)

    def test_automaticDeletionGroup(self) -> None:
        """01xx is coded like 00xx: 56 is class 2 8-bit data."""
        self.assertEqual(classify_dcs(0x56), DataCoding(Alphabet.EIGHT_BIT, 2))

    def test_dataCodingGroup(self) -> None:
        """1111: bit 2 picks 7-bit or 8-bit, bits 1-0 always the class."""
        self.assertEqual(classify_dcs(0xF0), DataCoding(Alphabet.GSM7, 0))
        self.assertEqual(classify_dcs(0xF5), DataCoding(Alphabet.EIGHT_BIT, 1))
        self.assertEqual(classify_dcs(0xF3), DataCoding(Alphabet.GSM7, 3))

    def test_messageWaitingGroups(self) -> None:
        """1100 and 1101 carry 7-bit text, 1110 UCS2, none with a class."""
        self.assertEqual(classify_dcs(0xC8), DataCoding(Alphabet.GSM7, None))
        self.assertEqual(classify_dcs(0xD0), DataCoding(Alphabet.GSM7, None))
        self.assertEqual(classify_dcs(0xE0), DataCoding(Alphabet.UCS2, None))

    def test_reservedMeansDefaultAlphabet(self) -> None:
        """Reserved codings (charset 11, groups 1000-1011) are read as 7-bit default."""
        for dcs in (0x0C, 0x1E, 0x80, 0xB7):
            coding = classify_dcs(dcs)
            self.assertEqual((coding.alphabet, coding.reserved), (Alphabet.GSM7, True), hex(dcs))

    def test_notAnOctet(self) -> None:
        """Values outside 0..255 are refused."""
        self.assertRaises(SmsError, classify_dcs, 256)
        self.assertRaises(SmsError, classify_dcs, -1)


class ClassifyPropertyTests(SynchronousTestCase):
    """Classification is total over octets and self-consistent."""

    @given(st.integers(min_value=0, max_value=255))
    def test_everyOctetClassifies(self, dcs: int) -> None:
        """Every octet has a coding; septet counting means uncompressed 7-bit."""
        coding = classify_dcs(dcs)
        self.assertEqual(
            coding.counts_septets, coding.alphabet is Alphabet.GSM7 and not coding.compressed
        )
        if coding.message_class is not None:
            self.assertIn(coding.message_class, range(4))
