"""Tests for the COMPREHENSION-TLV codec (bipgw.codec.tlv)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.tlv import (
    CompTlv,
    TlvError,
    decode_comprehension,
    decode_comprehension_one,
    encode_comprehension,
)
from tests import vectors


class VectorTests(SynchronousTestCase):
    """The CAT/BIP vectors and PROTOCOLS.md examples decode and re-encode."""

    def test_catBipVectors(self) -> None:
        """Every cat_bip_tlvs TLV decodes with CR set and re-encodes identically."""
        expected = {
            "Bearer description default bearer": (0x35, b"\x03"),
            "Other address IPv4 1.2.3.4": (0x3E, bytes.fromhex("2101020304")),
            "UICC/terminal interface transport level TCP client remote port 32768": (
                0x3C,
                bytes.fromhex("028000"),
            ),
        }
        for name, (tag, value) in expected.items():
            raw = bytes.fromhex(vectors.by_name("cat_bip_tlvs", name)["tlv"])
            tlv = decode_comprehension_one(raw)
            self.assertEqual(tlv, CompTlv(tag, value, comprehension_required=True))
            self.assertEqual(tlv.encode(), raw)

    def test_bothCrFormsAreOneTag(self) -> None:
        """35 and B5 decode to the same tag, differing only in the CR flag."""
        plain = decode_comprehension_one(bytes.fromhex("350103"))
        flagged = decode_comprehension_one(bytes.fromhex("b50103"))
        self.assertEqual(plain.tag, flagged.tag)
        self.assertEqual(plain.value, flagged.value)
        self.assertEqual(
            (plain.comprehension_required, flagged.comprehension_required), (False, True)
        )

    def test_openChannelTerminalResponse(self) -> None:
        """The OPEN CHANNEL terminal response of PROTOCOLS.md 5 decodes tag by tag."""
        raw = bytes.fromhex("810301400382028281830100b8028100b50103b9020400")
        tlvs = decode_comprehension(raw)
        self.assertEqual([t.tag for t in tlvs], [0x01, 0x02, 0x03, 0x38, 0x35, 0x39])
        self.assertTrue(all(t.comprehension_required for t in tlvs[:3]))
        self.assertEqual(tlvs[3].value, b"\x81\x00")
        self.assertEqual(b"".join(t.encode() for t in tlvs), raw)

    def test_openChannelFromCard(self) -> None:
        """The simple TLVs of the card's OPEN CHANNEL (PROTOCOLS.md 5) decode."""
        raw = bytes.fromhex(
            "81 03 01 40 03 82 02 81 82 35 01 03 39 02 04 00 3C 03 02 80 00 3E 05 21 01 02 03 04"
        )
        tlvs = decode_comprehension(raw)
        self.assertEqual(
            [(t.tag, t.value.hex()) for t in tlvs],
            [
                (0x01, "014003"),
                (0x02, "8182"),
                (0x35, "03"),
                (0x39, "0400"),
                (0x3C, "028000"),
                (0x3E, "2101020304"),
            ],
        )
        self.assertEqual(b"".join(t.encode() for t in tlvs), raw)


class FormTests(SynchronousTestCase):
    """Tag and length forms of TS 101 220 7.1.1."""

    def test_threeByteTags(self) -> None:
        """Tags above 7E use 7F + two bytes, CR in bit 16."""
        self.assertEqual(encode_comprehension(0x0123, b"", True).hex(), "7f812300")
        self.assertEqual(encode_comprehension(0x7F, b"\x01").hex(), "7f007f0101")
        self.assertEqual(encode_comprehension(0x7FFF, b"").hex(), "7f7fff00")
        self.assertEqual(
            decode_comprehension_one(bytes.fromhex("7f812300")), CompTlv(0x123, b"", True)
        )

    def test_threeByteFormOfSmallTagNormalised(self) -> None:
        """7F 00 35 is accepted as tag 35 and re-encoded in the one-byte form."""
        tlv = decode_comprehension_one(bytes.fromhex("7f00350103"))
        self.assertEqual(tlv, CompTlv(0x35, b"\x03"))
        self.assertEqual(tlv.encode().hex(), "350103")

    def test_lengths(self) -> None:
        """Lengths use 1 to 4 bytes, minimal on encode, any on decode."""
        for n, head in [(0x7F, "7f"), (0x80, "8180"), (0xFF, "81ff"), (0x100, "820100")]:
            raw = encode_comprehension(0x36, bytes(n))
            self.assertEqual(raw[1:][: len(head) // 2].hex(), head)
            self.assertEqual(decode_comprehension_one(raw).value, bytes(n))
        big = encode_comprehension(0x36, bytes(0x10000))
        self.assertEqual(big[1:5].hex(), "83010000")
        self.assertEqual(decode_comprehension_one(bytes.fromhex("3681020102")).value, b"\x01\x02")

    def test_refusals(self) -> None:
        """Invalid tags, length forms and truncations raise TlvError."""
        for raw in [
            "000100",  # tag 00
            "800100",  # tag 80
            "ff0100",  # tag FF
            "7f0000 00",  # three-byte tag 0000
            "7f00",  # truncated three-byte tag
            "35",  # missing length
            "3580",  # length 80
            "3584 00000001 00",  # 84 is BER only
            "3582 01",  # truncated long length
            "3503 0102",  # truncated value
        ]:
            self.assertRaises(TlvError, decode_comprehension, bytes.fromhex(raw.replace(" ", "")))
        for tag in [0, 0x8000, -1]:
            self.assertRaises(TlvError, encode_comprehension, tag, b"")
            self.assertRaises(TlvError, CompTlv, tag, b"")
        self.assertRaises(TlvError, encode_comprehension, 0x36, bytes(1 << 24))

    def test_errorNamesTagAndOffset(self) -> None:
        """A truncated value names its tag and the offset of its TLV."""
        with self.assertRaises(TlvError) as ctx:
            decode_comprehension(bytes.fromhex("b50103 3e0521010203".replace(" ", "")))
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("tag 3E", 3))

    def test_exactlyOne(self) -> None:
        """decode_comprehension_one refuses empty input and trailing TLVs."""
        self.assertRaises(TlvError, decode_comprehension_one, b"")
        self.assertRaises(TlvError, decode_comprehension_one, bytes.fromhex("35010339020400"))

    def test_sizeLimit(self) -> None:
        """Input over max_size is refused."""
        self.assertRaises(TlvError, decode_comprehension, bytes(10), max_size=5)


_comp_tlvs = st.builds(
    CompTlv,
    st.one_of(st.integers(1, 0x7E), st.integers(0x7F, 0x7FFF)),
    st.binary(max_size=300),
    st.booleans(),
)


class PropertyTests(SynchronousTestCase):
    """Round trips and hostile input, by Hypothesis."""

    @given(st.lists(_comp_tlvs, max_size=8))
    def test_roundTrip(self, tlvs: list[CompTlv]) -> None:
        """Any sequence of COMPREHENSION-TLVs decodes to itself."""
        raw = b"".join(t.encode() for t in tlvs)
        self.assertEqual(decode_comprehension(raw), tlvs)

    @given(st.binary(max_size=300))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes either decode (and re-decode the same) or raise TlvError."""
        try:
            tlvs = decode_comprehension(data)
        except TlvError:
            return
        self.assertEqual(decode_comprehension(b"".join(t.encode() for t in tlvs)), tlvs)
