"""Tests for SMS-DELIVER / SMS-SUBMIT TPDUs and the TP-UDL/TP-UD rules."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import bipgw.codec.sms as sms
from bipgw.codec.sms import (
    DCS_CLASS2_8BIT,
    PID_SIM_DATA_DOWNLOAD,
    Address,
    Concatenation,
    EnhancedValidity,
    InformationElement,
    RelativeValidity,
    ServiceCentreTimestamp,
    SmsDeliver,
    SmsError,
    SmsSubmit,
    UserDataHeader,
    ValidityPeriod,
    classify_dcs,
    decode_rp_address,
    decode_user_data,
    encode_user_data,
    gsm7_septets,
    septets_to_text,
)
from tests import vectors
from tests.unit.codec.test_sms_address import tp_addresses
from tests.unit.codec.test_sms_time import timestamps
from tests.unit.codec.test_sms_udh import headers

_DCS_SAMPLES = [0x00, 0xF0, 0x04, 0xF6, 0x16, 0x08, 0x20, 0x24, 0xC0, 0xE0, 0x80, 0x0C]


@st.composite
def user_data(draw: st.DrawFn) -> tuple[int, UserDataHeader | None, bytes]:
    """A TP-DCS with a header (or none) and a body that fits one SM."""
    dcs = draw(st.one_of(st.sampled_from(_DCS_SAMPLES), st.integers(min_value=0, max_value=255)))
    header = draw(st.one_of(st.none(), headers(max_elements=4)))
    head = len(header.encode()) if header is not None else 0
    if classify_dcs(dcs).counts_septets:
        room = 160 - (8 * head + 6) // 7
        body = draw(st.binary(max_size=room).map(lambda b: bytes(x & 0x7F for x in b)))
    else:
        body = draw(st.binary(max_size=140 - head))
    return dcs, header, body


@st.composite
def delivers(draw: st.DrawFn) -> SmsDeliver:
    """Any SMS-DELIVER."""
    dcs, header, body = draw(user_data())
    flags = draw(st.lists(st.booleans(), min_size=4, max_size=4))
    return SmsDeliver(
        originating_address=draw(tp_addresses()),
        scts=draw(timestamps()),
        pid=draw(st.integers(min_value=0, max_value=255)),
        dcs=dcs,
        user_data_header=header,
        user_data=body,
        mms=flags[0],
        lp=flags[1],
        sri=flags[2],
        rp=flags[3],
    )


def validity_periods() -> st.SearchStrategy[ValidityPeriod]:
    """Each of the four TP-VPF cases."""
    return st.one_of(
        st.none(),
        st.builds(RelativeValidity, st.integers(min_value=0, max_value=255)),
        timestamps(),
        st.builds(EnhancedValidity, st.binary(min_size=7, max_size=7)),
    )


@st.composite
def submits(draw: st.DrawFn) -> SmsSubmit:
    """Any SMS-SUBMIT."""
    dcs, header, body = draw(user_data())
    flags = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    return SmsSubmit(
        destination_address=draw(tp_addresses()),
        mr=draw(st.integers(min_value=0, max_value=255)),
        pid=draw(st.integers(min_value=0, max_value=255)),
        dcs=dcs,
        validity_period=draw(validity_periods()),
        user_data_header=header,
        user_data=body,
        rd=flags[0],
        srr=flags[1],
        rp=flags[2],
    )


def _tlv_value(data: bytes, tag: int) -> bytes:
    """The value of the first simple (one-octet length) TLV with C{tag}, after a D1 wrapper."""
    pos = 2
    while pos < len(data):
        t, length = data[pos], data[pos + 1]
        if t == tag:
            return data[pos + 2 : pos + 2 + length]
        pos += 2 + length
    raise KeyError(tag)


class OtaFramingVectorTests(SynchronousTestCase):
    """The public "sms_pp_framing" vectors decode to exactly the documented fields."""

    def setUp(self) -> None:
        self.vector = vectors.section("sms_pp_framing")[0]
        self.tpdu = bytes.fromhex(self.vector["tpdu"])

    def test_fields(self) -> None:
        """First octet 40, OA 088121436587, PID 7F, DCS F6, the SCTS, a 37-octet UD after 027000."""
        sm = SmsDeliver.decode(self.tpdu)
        self.assertEqual(self.tpdu[0], int(self.vector["tp_first_octet"], 16))
        self.assertEqual(
            (sm.mms, sm.lp, sm.sri, sm.rp, sm.udhi), (False, False, False, False, True)
        )
        self.assertEqual(sm.originating_address, Address(0, 1, "12345678"))
        self.assertEqual(sm.pid, int(self.vector["tp_pid"], 16))
        self.assertEqual(sm.pid, PID_SIM_DATA_DOWNLOAD)
        self.assertEqual(sm.dcs, DCS_CLASS2_8BIT)
        self.assertEqual(sm.scts.encode().hex(), self.vector["tp_scts"])
        self.assertEqual(sm.scts, ServiceCentreTimestamp(22, 7, 25, 0, 0, 0, 0))
        self.assertEqual(sm.user_data_header, UserDataHeader([InformationElement(0x70)]))
        udl, ud = encode_user_data(sm.dcs, sm.user_data_header, sm.user_data)
        self.assertEqual(udl, 0x25)
        self.assertEqual(len(ud), 37)
        self.assertEqual(ud[:3].hex(), "027000")
        self.assertEqual(self.tpdu[-38], 0x25)
        self.assertEqual(ud, self.tpdu[-37:])

    def test_reencodesIdentically(self) -> None:
        """Decoding then encoding gives the vector's bytes."""
        self.assertEqual(SmsDeliver.decode(self.tpdu).encode(), self.tpdu)

    def test_envelopeCarriesSameTpdu(self) -> None:
        """The ENVELOPE vector's SMS TPDU TLV (8B) is that same TPDU."""
        envelope = bytes.fromhex(vectors.section("sms_pp_framing")[1]["envelope_data"])
        self.assertEqual(_tlv_value(envelope, 0x8B), self.tpdu)

    def test_realCardTrace(self) -> None:
        """The real envelope's TPDU: OA 02 90 21 (TON 1, NPI 0), UDL 45, UD 027000.., re-encodes."""
        envelope = bytes.fromhex(vectors.section("sms_pp_framing")[2]["envelope_data"])
        tpdu = _tlv_value(envelope, 0x8B)
        sm = SmsDeliver.decode(tpdu)
        self.assertEqual(sm.originating_address, Address(1, 0, "12"))
        self.assertEqual((sm.pid, sm.dcs), (0x7F, 0xF6))
        udl, ud = encode_user_data(sm.dcs, sm.user_data_header, sm.user_data)
        self.assertEqual((udl, ud[:3].hex()), (45, "027000"))
        self.assertEqual(sm.encode(), tpdu)

    def test_pySimUdl3IsRefused(self) -> None:
        """pySim's test TPDU with UDL 03 (a known test bug) is refused, naming TP-UDL."""
        bad = bytearray(self.tpdu)
        bad[-38] = 0x03
        with self.assertRaises(SmsError) as ctx:
            SmsDeliver.decode(bytes(bad))
        self.assertEqual(ctx.exception.field, "TP-UDL")
        self.assertEqual(ctx.exception.offset, len(self.tpdu) - 38)


class OtherVectorTests(SynchronousTestCase):
    """Further public TPDUs (pySim test_sms, the classic PDU-mode examples)."""

    def test_pySimDeliver(self) -> None:
        """04 08D0E5759A0E 7F F6 ...: MMS set, alphanumeric 'ekit', class 2 data, UDL 8."""
        raw = bytes.fromhex("0408D0E5759A0E7FF6907090307513000824010101BB400101")
        sm = SmsDeliver.decode(raw)
        self.assertEqual(
            (sm.mms, sm.lp, sm.rp, sm.udhi, sm.sri), (True, False, False, False, False)
        )
        self.assertEqual(sm.originating_address, Address(5, 0, "ekit"))
        self.assertEqual((sm.pid, sm.dcs), (0x7F, 0xF6))
        self.assertEqual(sm.scts, ServiceCentreTimestamp(9, 7, 9, 3, 57, 31, 0))
        self.assertEqual(sm.user_data.hex(), "24010101bb400101")
        # The sender counted 8 semi-octets for 4 septets; we count the 7 used.
        self.assertEqual(sm.encode(), raw[:1] + b"\x07" + raw[2:])

    def test_pySimSubmit(self) -> None:
        """55 0D 0B91... : RD, relative VP A7 (24 h), UDHI with ports and concat, UDL 140."""
        raw = bytes.fromhex(
            "550d0b911614261771f000f5a78c0b050423f423f40003010201424547494e3a56434152440d0a5645"
            "5253494f4e3a322e310d0a4e3a4d650d0a54454c3b505245463b43454c4c3b564f4943453a2b363134"
            "31363237313137300d0a54454c3b484f4d453b564f4943453a2b36313339353337303437310d0a5445"
            "4c3b574f524b3b564f4943453a2b36313339363734373031350d0a454e443a"
        )
        sm = SmsSubmit.decode(raw)
        self.assertEqual((sm.rd, sm.srr, sm.rp, sm.udhi, sm.vpf), (True, False, False, True, 2))
        self.assertEqual(sm.mr, 0x0D)
        self.assertEqual(sm.destination_address, Address(1, 1, "61416271170"))
        self.assertEqual((sm.pid, sm.dcs), (0, 0xF5))
        self.assertEqual(sm.validity_period, RelativeValidity(0xA7))
        assert sm.user_data_header is not None
        self.assertEqual(sm.user_data_header.concatenation(), Concatenation(1, 2, 1))
        self.assertEqual(
            sm.user_data_header.find(0x05), InformationElement(5, bytes.fromhex("23f423f4"))
        )
        self.assertEqual(encode_user_data(sm.dcs, sm.user_data_header, sm.user_data)[0], 140)
        self.assertTrue(sm.user_data.startswith(b"BEGIN:VCARD"))
        self.assertEqual(sm.encode(), raw)

    def test_classicSubmit(self) -> None:
        """00 11 00 0B916407281553F8 00 00 AA 0A E8329B...: 'hellohello' to +46708251358."""
        raw = bytes.fromhex("0011000B916407281553F80000AA0AE8329BFD4697D9EC37")
        smsc, start = decode_rp_address(raw)
        self.assertIsNone(smsc)
        sm = SmsSubmit.decode(raw[start:])
        self.assertEqual(sm.destination_address, Address(1, 1, "46708251358"))
        self.assertEqual(sm.validity_period, RelativeValidity(0xAA))
        self.assertEqual(septets_to_text(sm.user_data), "hellohello")
        self.assertEqual(sm.encode(), raw[start:])

    def test_classicDeliver(self) -> None:
        """07911326040000F0 04 0B911346610089F6 00 00 ... 0C C8F71D...: 'How are you?'."""
        raw = bytes.fromhex(
            "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"
        )
        smsc, start = decode_rp_address(raw)
        self.assertEqual(smsc, Address(1, 1, "31624000000"))
        sm = SmsDeliver.decode(raw[start:])
        self.assertTrue(sm.mms)
        self.assertEqual(sm.originating_address, Address(1, 1, "31641600986"))
        self.assertEqual(septets_to_text(sm.user_data), "How are you?")
        scts = sm.scts
        self.assertEqual(
            (scts.year, scts.month, scts.day, scts.hour, scts.minute, scts.second),
            (2, 8, 26, 19, 37, 41),
        )
        # Zone octet 08 is "minus zero" under TS 23.040's sign bit; it re-encodes as 00.
        self.assertEqual(scts.tz_quarters, 0)
        self.assertEqual(sm.encode(), raw[start:-13] + b"\x00" + raw[-12:])


def _reference_ud(header: bytes, septets: bytes) -> tuple[int, bytes]:
    """TP-UDL and TP-UD for 7-bit text after a header, by big-integer arithmetic.

    The header occupies bits 0..8H-1; the text starts at the next multiple
    of 7 bits (TS 23.040 9.2.3.24), septet i at bit start + 7i.
    """
    start = -(-8 * len(header) // 7) * 7
    value = int.from_bytes(header, "little")
    for i, s in enumerate(septets):
        value |= s << (start + 7 * i)
    udl = start // 7 + len(septets)
    return udl, value.to_bytes((7 * udl + 7) // 8, "little")


class SevenBitUserDataTests(SynchronousTestCase):
    """TP-UDL counts septets for 7-bit, with the header padded to a septet boundary."""

    def test_fillBitsForEveryHeaderSize(self) -> None:
        """Header sizes giving each of the fill values 0..6 match the reference packing."""
        text = gsm7_septets("Fill me {up}")
        seen = set()
        for size in (1, 3, 4, 5, 6, 7, 8, 9):
            header = UserDataHeader([InformationElement(0x24, bytes(size - 3))] if size > 1 else [])
            encoded = header.encode()
            self.assertEqual(len(encoded), size)
            seen.add((7 - 8 * size % 7) % 7)
            expected = _reference_ud(encoded, text)
            self.assertEqual(encode_user_data(0x00, header, text), expected, size)
            self.assertEqual(decode_user_data(0x00, True, *expected), (header, text))
        self.assertEqual(seen, set(range(7)))

    def test_concatenatedTextHeader(self) -> None:
        """A 6-octet concat header is 7 septets with 1 fill bit: UDL = 7 + text."""
        header = UserDataHeader([Concatenation(0x2A, 2, 1).to_element()])
        udl, ud = encode_user_data(0x00, header, gsm7_septets("hello"))
        self.assertEqual(udl, 12)
        self.assertEqual(ud[:6].hex(), "0500032a0201")
        self.assertEqual(ud[6] & 1, 0)
        self.assertEqual((ud[6] >> 1) & 0x7F, gsm7_septets("h")[0])

    def test_headerOnly(self) -> None:
        """A header with no text still counts its septets (and the fill octet)."""
        header = UserDataHeader([Concatenation(1, 1, 1).to_element()])
        self.assertEqual(encode_user_data(0x00, header, b""), (7, header.encode() + b"\x00"))

    def test_headerLargerThanUdl(self) -> None:
        """A UDHL that does not fit in TP-UDL septets is refused, naming TP-UDHL."""
        with self.assertRaises(SmsError) as ctx:
            decode_user_data(0x00, True, 6, bytes.fromhex("0500032a0201"))
        self.assertEqual(ctx.exception.field, "TP-UDHL")

    def test_limits(self) -> None:
        """160 septets fit one SM; 161, or a septet above 7F, do not."""
        address = Address(1, 1, "1")
        scts = ServiceCentreTimestamp(24, 1, 1, 0, 0, 0)
        sm = SmsDeliver(originating_address=address, scts=scts, user_data=b"A" * 160)
        self.assertEqual(len(SmsDeliver.decode(sm.encode()).user_data), 160)
        self.assertRaises(
            SmsError, SmsDeliver, originating_address=address, scts=scts, user_data=b"A" * 161
        )
        self.assertRaises(
            SmsError, SmsDeliver, originating_address=address, scts=scts, user_data=b"\x80"
        )
        self.assertRaises(
            SmsError,
            SmsSubmit,
            destination_address=address,
            dcs=0xF6,
            user_data=bytes(141),
        )


class DecodeErrorTests(SynchronousTestCase):
    """Malformed TPDUs name the field that is wrong."""

    def setUp(self) -> None:
        self.tpdu = bytes.fromhex(vectors.section("sms_pp_framing")[0]["tpdu"])

    def _field(self, decode: Any, data: bytes) -> str | None:
        with self.assertRaises(SmsError) as ctx:
            decode(data)
        return ctx.exception.field

    def test_truncatedUserData(self) -> None:
        """Fewer UD octets than TP-UDL declares names TP-UDL."""
        self.assertEqual(self._field(SmsDeliver.decode, self.tpdu[:-1]), "TP-UDL")

    def test_trailingOctets(self) -> None:
        """Octets after the declared UD name TP-UDL too."""
        self.assertEqual(self._field(SmsDeliver.decode, self.tpdu + b"\x00"), "TP-UDL")

    def test_wrongType(self) -> None:
        """A SUBMIT given to the DELIVER decoder (and back) names TP-MTI."""
        self.assertEqual(self._field(SmsSubmit.decode, self.tpdu), "TP-MTI")
        submit = SmsSubmit(destination_address=Address(1, 1, "1")).encode()
        self.assertEqual(self._field(SmsDeliver.decode, submit), "TP-MTI")

    def test_truncatedFields(self) -> None:
        """Each cut point before the UD names the field that ran out."""
        expected = {0: "TP-MTI", 1: "TP-OA", 4: "TP-OA", 7: "TP-PID", 8: "TP-DCS"}
        expected.update({9: "TP-SCTS", 15: "TP-SCTS", 16: "TP-UDL"})
        for cut, field in expected.items():
            self.assertEqual(self._field(SmsDeliver.decode, self.tpdu[:cut]), field, cut)

    def test_submitValidityTruncated(self) -> None:
        """An absolute or enhanced VP cut short names TP-VP."""
        for vp in (ServiceCentreTimestamp(24, 1, 1, 0, 0, 0), EnhancedValidity(bytes(7))):
            raw = SmsSubmit(destination_address=Address(1, 1, "1"), validity_period=vp).encode()
            self.assertEqual(self._field(SmsSubmit.decode, raw[:8]), "TP-VP")

    def test_udlAboveMaximum(self) -> None:
        """An 8-bit UDL above 140 is refused as such, before looking for the data."""
        bad = self.tpdu[:-38] + b"\x8d" + bytes(141)
        with self.assertRaises(SmsError) as ctx:
            SmsDeliver.decode(bad)
        self.assertIn("exceed 140", str(ctx.exception))


class TpduPropertyTests(SynchronousTestCase):
    """Round trips in both directions, and hostile input."""

    @given(delivers())
    def test_deliverRoundTrip(self, sm: SmsDeliver) -> None:
        """value -> bytes -> value is the identity, and so is bytes -> value -> bytes."""
        raw = sm.encode()
        again = SmsDeliver.decode(raw)
        self.assertEqual(again, sm)
        self.assertEqual(again.encode(), raw)

    @given(submits())
    def test_submitRoundTrip(self, sm: SmsSubmit) -> None:
        """Round trips hold for every VP format, alphabet and header."""
        raw = sm.encode()
        again = SmsSubmit.decode(raw)
        self.assertEqual(again, sm)
        self.assertEqual(again.encode(), raw)

    @given(st.binary(max_size=180))
    def test_randomBytesOnlySmsError(self, data: bytes) -> None:
        """Arbitrary bytes give a TPDU or SmsError, for both decoders."""
        for decode in (SmsDeliver.decode, SmsSubmit.decode):
            try:
                decode(data)
            except SmsError:
                pass

    @given(
        delivers(),
        st.integers(min_value=0, max_value=200),
        st.integers(min_value=0, max_value=255),
    )
    def test_mutatedBytesOnlySmsError(self, sm: SmsDeliver, index: int, value: int) -> None:
        """A valid DELIVER with one octet changed, or cut short, gives a TPDU or SmsError."""
        raw = bytearray(sm.encode())
        raw[index % len(raw)] = value
        for candidate in (bytes(raw), bytes(raw[: index % len(raw)])):
            try:
                SmsDeliver.decode(candidate)
            except SmsError:
                pass


class ExportTests(SynchronousTestCase):
    """The package re-exports its public names."""

    def test_allNamesExist(self) -> None:
        """Every name in __all__ exists in bipgw.codec.sms; SmsError is a CodecError."""
        from bipgw.codec import CodecError

        for name in sms.__all__:
            self.assertTrue(hasattr(sms, name), name)
        self.assertTrue(issubclass(SmsError, CodecError))
        self.assertEqual(SmsError.codec, "SMS")
        self.assertEqual(len(sms.__all__), len(set(sms.__all__)))
