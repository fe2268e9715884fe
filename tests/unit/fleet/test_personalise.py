"""Tests for one card's personalisation: its numbers (ICCID, IMSI, MSISDN)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from simcard.fleet import GenerateError, card_numbers, luhn_digit
from tests.unit.fleet.test_harness import luhn_valid


class NumberTests(SynchronousTestCase):
    """ICCIDs, IMSIs and MSISDNs of generated cards."""

    def test_luhnKnownValue(self) -> None:
        """The Luhn digit of the textbook example 7992739871 is 3."""
        self.assertEqual(luhn_digit("7992739871"), "3")
        self.assertTrue(luhn_valid("79927398713"))
        self.assertFalse(luhn_valid("79927398710"))

    def test_iccidShape(self) -> None:
        """ICCIDs are 19 digits, 89 first, ending in a valid Luhn digit."""
        for serial in (1, 2, 99, 12345, 99_999_999):
            iccid = card_numbers(serial).iccid
            self.assertEqual(len(iccid), 19)
            self.assertTrue(iccid.startswith("8988211"))
            self.assertTrue(luhn_valid(iccid), iccid)

    def test_imsiAndMsisdn(self) -> None:
        """IMSIs are test network 001 01 plus the serial; MSISDNs a prefix plus the serial."""
        numbers = card_numbers(7)
        self.assertEqual(numbers.imsi, "001010000000007")
        self.assertEqual(numbers.msisdn, "33600000007")

    def test_serialOutOfRange(self) -> None:
        """A serial that cannot fit the numbers is refused."""
        self.assertRaises(GenerateError, card_numbers, 0)
        self.assertRaises(GenerateError, card_numbers, 10**8)
