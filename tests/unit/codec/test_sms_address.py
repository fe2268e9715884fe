"""Tests for the TP and RP address codings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.sms import (
    TON_ALPHANUMERIC,
    Address,
    SmsError,
    decode_rp_address,
    decode_tp_address,
    encode_rp_address,
    encode_tp_address,
)
from bipgw.codec.sms._gsm7 import _DEFAULT, _EXTENSION

_TEXT_CHARS = sorted({c for i, c in enumerate(_DEFAULT) if i != 0x1B} | set(_EXTENSION.values()))


@st.composite
def numeric_addresses(draw: st.DrawFn, max_digits: int = 20) -> Address:
    """A digit address with any TON but 5 and any NPI."""
    ton = draw(st.integers(min_value=0, max_value=7).filter(lambda t: t != TON_ALPHANUMERIC))
    npi = draw(st.integers(min_value=0, max_value=15))
    digits = draw(st.text(alphabet="0123456789*#abc", max_size=max_digits))
    return Address(ton, npi, digits)


@st.composite
def alphanumeric_addresses(draw: st.DrawFn) -> Address:
    """A TON 5 address whose name fits 11 septets."""
    npi = draw(st.integers(min_value=0, max_value=15))
    text = draw(st.text(alphabet=st.sampled_from(_TEXT_CHARS), max_size=11))
    while True:  # extension characters take two septets: shorten until it fits
        try:
            return Address(TON_ALPHANUMERIC, npi, text)
        except SmsError:
            text = text[:-1]


def tp_addresses() -> st.SearchStrategy[Address]:
    """Any address the TP coding can carry."""
    return st.one_of(numeric_addresses(), alphanumeric_addresses())


class TpAddressVectorTests(SynchronousTestCase):
    """TP-OA/TP-DA vectors (pySim test_sms, the OTA framing vector) decode and encode."""

    def test_evenDigitsWithTrailer(self) -> None:
        """04 80 2143 decodes to '1234' and stops before the next octet."""
        address, end = decode_tp_address(bytes.fromhex("0480214399"))
        self.assertEqual(address, Address(0, 0, "1234"))
        self.assertEqual(end, 4)

    def test_oddDigitsFiller(self) -> None:
        """03 80 21F3 decodes to '123', the F being the filler."""
        address, end = decode_tp_address(bytes.fromhex("038021f399"))
        self.assertEqual(address.digits, "123")
        self.assertEqual(end, 4)

    def test_encodeInternational(self) -> None:
        """International ISDN '12345' encodes as 05 91 2143F5."""
        self.assertEqual(encode_tp_address(Address(1, 1, "12345")).hex(), "05912143f5")

    def test_otaFramingOriginator(self) -> None:
        """The SMS-PP framing vector's TP-OA 08 81 21436587 is '12345678', TON 0, NPI 1."""
        raw = bytes.fromhex("088121436587")
        address, end = decode_tp_address(raw)
        self.assertEqual((address.ton, address.npi, address.digits), (0, 1, "12345678"))
        self.assertEqual(end, 6)
        self.assertEqual(encode_tp_address(address), raw)

    def test_symbols(self) -> None:
        """Semi-octets A..E are the symbols * # a b c."""
        raw = encode_tp_address(Address(0, 1, "*#abc"))
        self.assertEqual(raw.hex(), "0581badcfe")
        self.assertEqual(decode_tp_address(raw)[0].digits, "*#abc")

    def test_emptyAddress(self) -> None:
        """A zero-length address is two octets and decodes to no digits."""
        self.assertEqual(encode_tp_address(Address(0, 0, "")).hex(), "0080")
        self.assertEqual(decode_tp_address(b"\x00\x80"), (Address(0, 0, ""), 2))


class AlphanumericTests(SynchronousTestCase):
    """TON 5 addresses are GSM 7-bit names, with the length in used semi-octets."""

    def test_pySimDeliverOriginator(self) -> None:
        """08 D0 E5759A0E (pySim's DELIVER vector) is the name 'ekit'."""
        address, end = decode_tp_address(bytes.fromhex("08d0e5759a0e"))
        self.assertEqual((address.ton, address.npi, address.digits), (5, 0, "ekit"))
        self.assertEqual(end, 6)

    def test_lengthCountsUsedSemiOctets(self) -> None:
        """Four septets (28 bits) give length 7, the semi-octets actually used."""
        self.assertEqual(encode_tp_address(Address(5, 0, "ekit")).hex(), "07d0e5759a0e")

    def test_noPhantomAt(self) -> None:
        """Seven septets fill 49 of 56 bits; the length stops a decoder adding an '@'."""
        raw = encode_tp_address(Address(5, 0, "Bank AG"))
        self.assertEqual(raw[0], 13)
        self.assertEqual(decode_tp_address(raw)[0].digits, "Bank AG")

    def test_elevenSeptetsMaximum(self) -> None:
        """Eleven septets fit; twelve (or an extension char too many) do not."""
        self.assertEqual(decode_tp_address(encode_tp_address(Address(5, 0, "A" * 11)))[1], 12)
        self.assertRaises(SmsError, Address, 5, 0, "A" * 12)
        self.assertRaises(SmsError, Address, 5, 0, "A" * 10 + "€")


class TpAddressErrorTests(SynchronousTestCase):
    """Malformed TP addresses raise SmsError naming the field."""

    def test_truncated(self) -> None:
        """Digits announced but absent: the field and offset are named."""
        with self.assertRaises(SmsError) as ctx:
            decode_tp_address(bytes.fromhex("0a912143"), field_name="TP-DA")
        self.assertEqual(ctx.exception.field, "TP-DA")
        self.assertEqual(ctx.exception.offset, 0)
        self.assertRaises(SmsError, decode_tp_address, b"\x04")

    def test_tooLong(self) -> None:
        """More than 20 semi-octets is refused before reading them."""
        self.assertRaises(SmsError, decode_tp_address, bytes([21, 0x91]) + b"\x11" * 11)

    def test_fillerInsideDigits(self) -> None:
        """A filler F among the announced digits is an error at its octet."""
        with self.assertRaises(SmsError) as ctx:
            decode_tp_address(bytes.fromhex("0481f121"))
        self.assertEqual(ctx.exception.offset, 2)

    def test_typeOfAddressBit8(self) -> None:
        """A type-of-address octet without bit 8 is refused."""
        self.assertRaises(SmsError, decode_tp_address, bytes.fromhex("02112100"))

    def test_badValues(self) -> None:
        """Addresses that no coding can carry cannot be built."""
        self.assertRaises(SmsError, Address, 8, 0, "1")
        self.assertRaises(SmsError, Address, 1, 16, "1")
        self.assertRaises(SmsError, Address, 1, 1, "+4412")
        self.assertRaises(SmsError, Address, 1, 1, "1" * 21)


class RpAddressTests(SynchronousTestCase):
    """The RP/SMSC coding counts octets, TON/NPI included."""

    def test_smscVector(self) -> None:
        """+31624000000 is 07 91 1326040000F0 (the classic PDU-mode SMSC prefix)."""
        raw = bytes.fromhex("07911326040000f0")
        address, end = decode_rp_address(raw)
        self.assertEqual(address, Address(1, 1, "31624000000"))
        self.assertEqual(end, 8)
        self.assertEqual(encode_rp_address(address), raw)

    def test_none(self) -> None:
        """No address is the single octet 00."""
        self.assertEqual(encode_rp_address(None), b"\x00")
        self.assertEqual(decode_rp_address(b"\x00\xff"), (None, 1))

    def test_sameValueDifferentLength(self) -> None:
        """The same address is 5 semi-octets in TP coding but 4 octets in RP coding."""
        address = Address(1, 1, "12345")
        self.assertEqual(encode_tp_address(address)[0], 5)
        self.assertEqual(encode_rp_address(address).hex(), "04912143f5")

    def test_errors(self) -> None:
        """Alphanumeric, truncated, oversize and mid-filler RP addresses are refused."""
        self.assertRaises(SmsError, encode_rp_address, Address(5, 0, "ekit"))
        self.assertRaises(SmsError, decode_rp_address, bytes.fromhex("03d0e575"))
        self.assertRaises(SmsError, decode_rp_address, bytes.fromhex("0791132604"))
        self.assertRaises(SmsError, decode_rp_address, bytes([12, 0x91]) + b"\x11" * 11)
        self.assertRaises(SmsError, decode_rp_address, bytes.fromhex("0391f121"))
        self.assertRaises(SmsError, decode_rp_address, b"")


class AddressPropertyTests(SynchronousTestCase):
    """Round trips and hostile input for both codings."""

    @given(tp_addresses(), st.binary(max_size=4))
    def test_tpRoundTrip(self, address: Address, trailer: bytes) -> None:
        """encode then decode gives the address back and the offset after it."""
        raw = encode_tp_address(address)
        self.assertEqual(decode_tp_address(raw + trailer), (address, len(raw)))

    @given(numeric_addresses(), st.binary(max_size=4))
    def test_rpRoundTrip(self, address: Address, trailer: bytes) -> None:
        """RP encode then decode gives the address back and the offset after it."""
        raw = encode_rp_address(address)
        self.assertEqual(decode_rp_address(raw + trailer), (address, len(raw)))

    @given(st.binary(max_size=16))
    def test_randomBytesOnlySmsError(self, data: bytes) -> None:
        """Arbitrary bytes give an address (that re-decodes the same) or SmsError."""
        try:
            tp, _ = decode_tp_address(data)
        except SmsError:
            pass
        else:
            self.assertEqual(decode_tp_address(encode_tp_address(tp))[0], tp)
        try:
            rp, _ = decode_rp_address(data)
        except SmsError:
            pass
        else:
            self.assertEqual(decode_rp_address(encode_rp_address(rp))[0], rp)
