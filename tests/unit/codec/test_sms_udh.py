"""Tests for the user data header and its typed elements."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.sms import (
    COMMAND_PACKET_ELEMENT,
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    RESPONSE_PACKET_ELEMENT,
    Concatenation,
    InformationElement,
    SmsError,
    UserDataHeader,
)


def elements() -> st.SearchStrategy[InformationElement]:
    """Any information element with a short body."""
    return st.builds(
        InformationElement, st.integers(min_value=0, max_value=255), st.binary(max_size=12)
    )


def headers(max_elements: int = 6) -> st.SearchStrategy[UserDataHeader]:
    """Any header of a few elements (always under the 140-octet limit)."""
    return st.lists(elements(), max_size=max_elements).map(UserDataHeader)


def _decode(hex_text: str) -> tuple[UserDataHeader, bytes]:
    return UserDataHeader.decode(bytes.fromhex(hex_text))


class PySimVectorTests(SynchronousTestCase):
    """The UDH vectors of pySim's test_sms decode to the same elements."""

    def test_singleElement(self) -> None:
        """02 71 00 is one empty response-packet element."""
        self.assertEqual(_decode("027100"), (UserDataHeader([RESPONSE_PACKET_ELEMENT]), b""))

    def test_singleElementWithTail(self) -> None:
        """Octets after UDHL are returned as the rest of the user data."""
        self.assertEqual(_decode("027100abcdef")[1], bytes.fromhex("abcdef"))

    def test_elementWithValue(self) -> None:
        """03 71 01 10 is element 71 carrying one octet 10."""
        header, _ = _decode("03710110")
        self.assertEqual(header.elements, (InformationElement(0x71, b"\x10"),))

    def test_twoElementsAndTail(self) -> None:
        """05 7100 7001ff ... is 71 (empty) then 70 (ff), order kept, tail returned."""
        header, rest = _decode("0571007001ffabcd")
        self.assertEqual(
            header.elements, (InformationElement(0x71), InformationElement(0x70, b"\xff"))
        )
        self.assertEqual(rest, bytes.fromhex("abcd"))
        self.assertEqual(header.encode().hex(), "0571007001ff")

    def test_cardConcatenatedPoRHeader(self) -> None:
        """07 000301 0201 7100 (observed from an SJA5 card) is concat 1/2 ref 1, then 71."""
        header, _ = _decode("0700030102017100")
        self.assertEqual(header.concatenation(), Concatenation(1, 2, 1))
        self.assertEqual(header.elements[1], RESPONSE_PACKET_ELEMENT)

    def test_sixteenBitReference(self) -> None:
        """08 08041234 0201 7100 is concat 1/2 with 16-bit reference 1234."""
        header, _ = _decode("080804123402017100")
        self.assertEqual(header.concatenation(), Concatenation(0x1234, 2, 1, ref16=True))


class ConcatenationTests(SynchronousTestCase):
    """The typed concatenation element."""

    def test_encoding(self) -> None:
        """8-bit: 00 03 ref total seq; 16-bit: 08 04 ref(2) total seq."""
        self.assertEqual(
            Concatenation(17, 3, 2).to_element(), InformationElement(IEI_CONCAT_8, b"\x11\x03\x02")
        )
        self.assertEqual(
            Concatenation(0x0102, 3, 2, ref16=True).to_element(),
            InformationElement(IEI_CONCAT_16, b"\x01\x02\x03\x02"),
        )

    def test_reservedValuesRefused(self) -> None:
        """Total 0, sequence 0 and sequence above total are reserved (TS 23.040 9.2.3.24.1)."""
        for total, sequence in ((2, 3), (2, 0), (0, 1)):
            element = InformationElement(IEI_CONCAT_8, bytes([1, total, sequence]))
            self.assertRaises(SmsError, Concatenation.from_element, element)
            self.assertRaises(SmsError, Concatenation, 1, total, sequence)

    def test_wrongLengthRefused(self) -> None:
        """An element of the wrong IEDL is not a concatenation element."""
        self.assertRaises(SmsError, Concatenation.from_element, InformationElement(0, b"\x01\x02"))
        self.assertRaises(
            SmsError, Concatenation.from_element, InformationElement(8, b"\x01\x02\x03")
        )
        self.assertRaises(SmsError, Concatenation.from_element, COMMAND_PACKET_ELEMENT)

    def test_referenceRange(self) -> None:
        """An 8-bit reference stops at 255, a 16-bit one at 65535."""
        self.assertRaises(SmsError, Concatenation, 256, 1, 1)
        Concatenation(65535, 1, 1, ref16=True)
        self.assertRaises(SmsError, Concatenation, 65536, 1, 1, ref16=True)

    def test_lastOccurrenceWins(self) -> None:
        """Of repeated or mutually exclusive elements, the last applies (TS 23.040 9.2.3.24)."""
        header = UserDataHeader(
            [
                Concatenation(1, 2, 1).to_element(),
                InformationElement(0x70, b"\x01"),
                Concatenation(500, 3, 3, ref16=True).to_element(),
                InformationElement(0x70),
            ]
        )
        self.assertEqual(header.concatenation(), Concatenation(500, 3, 3, ref16=True))
        self.assertEqual(header.find(0x70), InformationElement(0x70))
        self.assertIsNone(header.find(0x71))
        self.assertIsNone(UserDataHeader().concatenation())


class HeaderErrorTests(SynchronousTestCase):
    """Malformed headers raise SmsError at the right place."""

    def test_udhlPastEnd(self) -> None:
        """UDHL longer than the user data names TP-UDHL."""
        with self.assertRaises(SmsError) as ctx:
            _decode("057100")
        self.assertEqual(ctx.exception.field, "TP-UDHL")

    def test_elementPastUdhl(self) -> None:
        """An element whose IEDL runs past UDHL is refused at its offset."""
        with self.assertRaises(SmsError) as ctx:
            _decode("047100700300000000")
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("TP-UDH", 3))

    def test_missingIedl(self) -> None:
        """A lone IEI octet at the end of the header is refused."""
        self.assertRaises(SmsError, _decode, "03710070")

    def test_empty(self) -> None:
        """No octets at all cannot hold a header."""
        self.assertRaises(SmsError, UserDataHeader.decode, b"")

    def test_tooBig(self) -> None:
        """A header larger than the 140-octet user data cannot be built."""
        self.assertRaises(SmsError, UserDataHeader, [InformationElement(1, bytes(100))] * 2)
        self.assertRaises(SmsError, InformationElement, 256)

    def test_emptyHeader(self) -> None:
        """UDHL 0 is a valid, empty header."""
        self.assertEqual(_decode("00ff"), (UserDataHeader(), b"\xff"))
        self.assertEqual(UserDataHeader().encode(), b"\x00")


class HeaderPropertyTests(SynchronousTestCase):
    """Round trips and hostile input."""

    @given(headers(), st.binary(max_size=20))
    def test_roundTrip(self, header: UserDataHeader, tail: bytes) -> None:
        """encode then decode gives the same elements in the same order, and the tail."""
        self.assertEqual(UserDataHeader.decode(header.encode() + tail), (header, tail))

    @given(st.binary(max_size=40))
    def test_randomBytesOnlySmsError(self, data: bytes) -> None:
        """Arbitrary bytes decode to a header that re-encodes to their prefix, or SmsError."""
        try:
            header, rest = UserDataHeader.decode(data)
        except SmsError:
            return
        self.assertEqual(header.encode() + rest, data)
        try:
            header.concatenation()
        except SmsError:
            pass
