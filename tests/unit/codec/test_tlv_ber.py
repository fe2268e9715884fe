"""Tests for the BER-TLV codec (bipgw.codec.tlv)."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import bipgw.codec.tlv as tlv_package
from bipgw.codec import CodecError
from bipgw.codec.tlv import (
    MAX_DEPTH,
    BerTlv,
    TlvError,
    decode_ber,
    decode_ber_one,
    encode_ber,
    encode_ber_indefinite,
    encode_length,
    find,
    make_ber_tag,
    scan_ber,
)
from tests import vectors

# A CMS SignedData produced by an independent encoder, OpenSSL 3.0.19:
#   openssl cms -sign -in m.txt -signer c.pem -inkey k.pem -nocerts -noattr \
#       -stream -outform DER -nodetach -binary      (m.txt = "hello", EC P-256)
# With -stream OpenSSL writes indefinite lengths, nested four deep, around
# definite ones; OPENSSL_CMS_LAYOUT is what `openssl asn1parse -i` reports for
# it: (offset, depth, header length, length or None for indefinite), EOCs
# left out.
OPENSSL_CMS = bytes.fromhex(
    "308006092a864886f70d010702a0803080020101310d300b0609608648016503040201"
    "308006092a864886f70d010701a0802480040568656c6c6f00000000000031818d3081"
    "8a0201013024300c310a300806035504030c017402143f4182bc116c30ad91c3d75f35"
    "c86a69107c075e300b0609608648016503040201300a06082a8648ce3d040302044630"
    "44022005ad6b7a67ab6c6810fb2a345b6db628c847fdbfea542b333fe1d25290104849"
    "022023ffdbd2f21648ba56198b48bd011e632e02881946cf84000c064652df850a4500"
    "0000000000"
)
OPENSSL_CMS_LAYOUT = [
    (0, 0, 2, None),
    (2, 1, 2, 9),
    (13, 1, 2, None),
    (15, 2, 2, None),
    (17, 3, 2, 1),
    (20, 3, 2, 13),
    (22, 4, 2, 11),
    (24, 5, 2, 9),
    (35, 3, 2, None),
    (37, 4, 2, 9),
    (48, 4, 2, None),
    (50, 5, 2, None),
    (52, 6, 2, 5),
    (65, 3, 3, 141),
    (68, 4, 3, 138),
    (71, 5, 2, 1),
    (74, 5, 2, 36),
    (76, 6, 2, 12),
    (78, 7, 2, 10),
    (80, 8, 2, 8),
    (82, 9, 2, 3),
    (87, 9, 2, 1),
    (90, 6, 2, 20),
    (112, 5, 2, 11),
    (114, 6, 2, 9),
    (125, 5, 2, 10),
    (127, 6, 2, 8),
    (137, 5, 2, 70),
]


def _layout(
    data: bytes, start: int, end: int, depth: int
) -> list[tuple[int, int, int, int | None]]:
    """Walk every TLV with scan_ber, asn1parse style."""
    out: list[tuple[int, int, int, int | None]] = []
    for _tag, where, value_start, value_end, indefinite in scan_ber(data, start, end)[0]:
        length = None if indefinite else value_end - value_start
        out.append((where, depth, value_start - where, length))
        if data[where] & 0x20:
            out.extend(_layout(data, value_start, value_end, depth + 1))
    return out


def _rebuild(tlv: BerTlv) -> bytes:
    """Re-encode a tree from its parsed children, not from the stored value.

    Constructed values that are not TLVs (the APDU in a C{22}) stay opaque."""
    if not tlv.is_constructed:
        return tlv.encode()
    try:
        children = tlv.children()
    except TlvError:
        return tlv.encode()
    content = b"".join(_rebuild(child) for child in children)
    return BerTlv(tlv.tag, content, indefinite=tlv.indefinite).encode()


class VectorTests(SynchronousTestCase):
    """Public vectors and card data decode and re-encode byte for byte."""

    def test_getDataExtendedCardResources(self) -> None:
        """The live FF21 answer is a two-byte constructed tag with three counters."""
        raw = bytes.fromhex(
            vectors.by_name("gp_apdus", "GET DATA extended card resources FF21")["response"]
        )
        tlv = decode_ber_one(raw)
        self.assertEqual(tlv.tag, 0xFF21)
        self.assertTrue(tlv.is_constructed)
        self.assertEqual(tlv.tag_class, 3)
        self.assertEqual(
            [(c.tag, c.value) for c in tlv.children()],
            [(0x81, b"\x0d"), (0x82, b"\xc5\xd6"), (0x83, b"\x09\x62")],
        )
        self.assertEqual(tlv.encode(), raw)

    def test_registryEntry(self) -> None:
        """A GET STATUS registry entry E3 exposes 4F, the two-byte 9F70 and C5."""
        raw = bytes.fromhex("e3134f08a0000001510000009f70010fc5039e0000")
        entry = decode_ber_one(raw)
        self.assertEqual([c.tag for c in entry.children()], [0x4F, 0x9F70, 0xC5])
        lifecycle = entry.find(0x9F70)
        assert lifecycle is not None
        self.assertEqual(lifecycle.value, b"\x0f")
        self.assertEqual(lifecycle.tag_bytes, b"\x9f\x70")
        self.assertFalse(lifecycle.is_constructed)
        self.assertEqual(entry.encode(), raw)

    def test_fciNestedFind(self) -> None:
        """find() goes depth first through constructed children (6F/A5/9F65)."""
        raw = bytes.fromhex("6f108408a000000151000000a5049f6501ff")
        fci = decode_ber(raw)
        hit = find(fci, 0x9F65)
        assert hit is not None
        self.assertEqual(hit.value, b"\xff")
        self.assertIsNone(find(fci, 0x5F50))
        aid = find(fci, 0x84)
        assert aid is not None
        self.assertEqual(aid.value.hex(), "a000000151000000")

    def test_expandedScripts(self) -> None:
        """Every TS 102 226 script vector is well-formed BER and re-encodes identically."""
        for v in vectors.section("ts102226_expanded"):
            raw = bytes.fromhex(v.get("script") or v.get("response") or "")
            if not raw:
                continue
            tlv = decode_ber_one(raw)
            self.assertEqual(tlv.indefinite, raw[1] == 0x80, v["name"])
            self.assertEqual(tlv.encode(), raw, v["name"])
            self.assertEqual(_rebuild(tlv), raw, v["name"])

    def test_findSkipsOpaqueConstructedValues(self) -> None:
        """find() over a script looks past the C-APDU values (tag 22 has the
        constructed bit but holds an APDU) instead of failing on them."""
        script = decode_ber(bytes.fromhex("ae80220880f28002024f00000000"))
        self.assertIsNone(find(script, 0x4F))
        self.assertEqual(find(script, 0x22), BerTlv(0x22, bytes.fromhex("80f28002024f0000")))

    def test_realCardIndefiniteResponse(self) -> None:
        """AF 80 23 02 6A 88 00 00 holds one R-APDU TLV and ends at the EOC."""
        raw = bytes.fromhex("af8023026a880000")
        tlv = decode_ber_one(raw)
        self.assertEqual((tlv.tag, tlv.indefinite), (0xAF, True))
        self.assertEqual(tlv.children(), [BerTlv(0x23, b"\x6a\x88")])

    def test_amdBTreeUnderPrimitiveTags(self) -> None:
        """children() parses the Amd B tree although 81/83 do not set the constructed bit."""
        raw = bytes.fromhex(vectors.section("gp_amd_b_tlvs")[-1]["tlv"])
        top = decode_ber_one(raw)
        self.assertFalse(top.is_constructed)
        (session,) = top.children()
        self.assertEqual([c.tag for c in session.children()], [0x84, 0x85, 0x86, 0x89])


class OpenSslPeerTests(SynchronousTestCase):
    """Independent encoders (OpenSSL, cryptography) agree with the decoder."""

    def test_opensslIndefiniteLayout(self) -> None:
        """The walk over OpenSSL's streamed CMS matches what asn1parse reported."""
        self.assertEqual(_layout(OPENSSL_CMS, 0, len(OPENSSL_CMS), 0), OPENSSL_CMS_LAYOUT)

    def test_opensslIndefiniteRoundTrip(self) -> None:
        """The streamed CMS decodes to one TLV and re-encodes from its tree identically."""
        tlv = decode_ber_one(OPENSSL_CMS)
        self.assertTrue(tlv.indefinite)
        self.assertEqual(_rebuild(tlv), OPENSSL_CMS)
        # The content is the constructed OCTET STRING 24 80 04 05 "hello" 00 00.
        octets = tlv.find(0x24)
        assert octets is not None
        self.assertTrue(octets.indefinite)
        self.assertEqual(octets.children(), [BerTlv(0x04, b"hello")])

    def test_cryptographyCertificate(self) -> None:
        """A DER certificate from cryptography decodes, its parts match, and the
        tree rebuilt from children is a certificate cryptography loads again."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bipgw test")])
        start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(0x1234567890ABCDEF)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=400))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("a" * 300)]), False)
            .sign(key, hashes.SHA256())
        )
        der = cert.public_bytes(Encoding.DER)
        top = decode_ber_one(der)
        tbs, _algorithm, signature = top.children()
        self.assertEqual(tbs.encode(), cert.tbs_certificate_bytes)
        self.assertEqual(signature.tag, 0x03)
        self.assertEqual(signature.value[1:], cert.signature)
        version, serial = tbs.children()[:2]
        self.assertEqual(version.tag, 0xA0)
        self.assertEqual(int.from_bytes(serial.value, "big"), 0x1234567890ABCDEF)
        rebuilt = _rebuild(top)
        self.assertEqual(rebuilt, der)
        self.assertEqual(x509.load_der_x509_certificate(rebuilt), cert)


class TagTests(SynchronousTestCase):
    """Tags follow ISO 8825 on both sides."""

    def test_makeTag(self) -> None:
        """Class, form and number give the expected tag bytes."""
        self.assertEqual(make_ber_tag(0, False, 4), 0x04)
        self.assertEqual(make_ber_tag(2, True, 0), 0xA0)
        self.assertEqual(make_ber_tag(2, True, 31), 0xBF1F)
        self.assertEqual(make_ber_tag(2, False, 0x7F), 0x9F7F)
        self.assertEqual(make_ber_tag(1, False, 0x50), 0x5F50)
        self.assertEqual(make_ber_tag(3, False, 128), 0xDF8100)
        self.assertEqual(make_ber_tag(1, True, 0x4000), 0x7F818000)
        self.assertRaises(TlvError, make_ber_tag, 4, False, 1)
        self.assertRaises(TlvError, make_ber_tag, 0, False, 1 << 21)

    def test_multiByteTags(self) -> None:
        """Two-, three- and four-byte tags encode and decode."""
        for tag, head in [(0x5F50, "5f50"), (0xBF8101, "bf8101"), (0x7F818000, "7f818000")]:
            raw = encode_ber(tag, b"x")
            self.assertEqual(raw.hex(), head + "0178")
            self.assertEqual(decode_ber_one(raw), BerTlv(tag, b"x"))

    def test_lowNumberLongForm(self) -> None:
        """EMV-style long-form low numbers (9F02) are accepted."""
        self.assertEqual(decode_ber_one(bytes.fromhex("9f020100")).tag, 0x9F02)

    def test_badTagsRefused(self) -> None:
        """Malformed tags are refused on encode and on decode."""
        for tag in [0, -1, 0x1F, 0x9F, 0x9F80, 0x9F8001, 0x5F0102, 0xBF818181, 0xBF81818101]:
            self.assertRaises(TlvError, encode_ber, tag, b"")
            self.assertRaises(TlvError, BerTlv, tag, b"")
        for raw in ["9f", "9f80 01 00", "bf81818101 00", "00 00", "9f81"]:
            self.assertRaises(TlvError, decode_ber, bytes.fromhex(raw.replace(" ", "")))


class LengthTests(SynchronousTestCase):
    """Lengths: minimal on encode, any definite form on decode."""

    def test_minimalForms(self) -> None:
        """Each length uses the shortest of 1..5 length bytes."""
        cases = {
            0: "00",
            127: "7f",
            128: "8180",
            255: "81ff",
            256: "820100",
            65535: "82ffff",
            65536: "83010000",
            1 << 24: "8401000000",
        }
        for n, raw in cases.items():
            self.assertEqual(encode_length(n).hex(), raw)
        self.assertRaises(TlvError, encode_length, 1 << 32)
        self.assertRaises(TlvError, encode_length, -1)

    def test_longValuesRoundTrip(self) -> None:
        """Values around the form boundaries decode back whole."""
        for n in [0, 1, 127, 128, 255, 256, 300, 65535, 65536]:
            value = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
            raw = encode_ber(0x04, value)
            self.assertEqual(decode_ber_one(raw), BerTlv(0x04, value))

    def test_nonMinimalAccepted(self) -> None:
        """81 03 decodes like 03 and is re-encoded minimally."""
        tlv = decode_ber_one(bytes.fromhex("048103aabbcc"))
        self.assertEqual(tlv.value, b"\xaa\xbb\xcc")
        self.assertEqual(tlv.encode().hex(), "0403aabbcc")

    def test_badLengthsRefused(self) -> None:
        """85.., a missing length and a truncated long length are errors."""
        for raw in ["04", "0485 0000000001", "0482 00", "0480 0000"]:
            self.assertRaises(TlvError, decode_ber, bytes.fromhex(raw.replace(" ", "")))


class IndefiniteTests(SynchronousTestCase):
    """Indefinite lengths nest and carry definite TLVs."""

    def test_encodeIndefinite(self) -> None:
        """encode_ber_indefinite writes tag 80 content 00 00."""
        raw = encode_ber_indefinite(0xAE, encode_ber(0x22, bytes.fromhex("80ca008500")))
        self.assertEqual(raw.hex(), "ae80220580ca0085000000")

    def test_nested(self) -> None:
        """An indefinite value inside an indefinite value, with definite ones around."""
        inner = encode_ber_indefinite(0xA1, encode_ber(0x04, b"\x00\x00") + encode_ber(0x05, b""))
        raw = encode_ber_indefinite(0xE3, encode_ber(0x4F, b"A") + inner + encode_ber(0x80, b"z"))
        (outer,) = decode_ber(raw)
        children = outer.children()
        self.assertEqual([c.tag for c in children], [0x4F, 0xA1, 0x80])
        self.assertTrue(children[1].indefinite)
        self.assertEqual(children[1].children(), [BerTlv(0x04, b"\x00\x00"), BerTlv(0x05, b"")])
        self.assertEqual(outer.encode(), raw)

    def test_indefiniteInsideDefinite(self) -> None:
        """A definite template may hold an indefinite child."""
        child = encode_ber_indefinite(0x30, encode_ber(0x02, b"\x01"))
        raw = encode_ber(0xA0, child)
        self.assertEqual(decode_ber_one(raw).children(), [decode_ber_one(child)])

    def test_refusals(self) -> None:
        """Primitive tags, bad content and missing EOCs are refused."""
        self.assertRaises(TlvError, encode_ber_indefinite, 0x04, b"")
        self.assertRaises(TlvError, encode_ber_indefinite, 0x30, b"\x04\x05")
        self.assertRaises(TlvError, encode_ber_indefinite, 0x30, b"\x00\x00")
        for raw in ["0480 0000", "3080 0400", "3080 040100", "3080 0001", "3080"]:
            self.assertRaises(TlvError, decode_ber, bytes.fromhex(raw.replace(" ", "")))

    def test_depthLimit(self) -> None:
        """Nesting beyond max_depth is refused with an error, not a RecursionError."""
        ok = b"\x30\x80" * MAX_DEPTH + b"\x00\x00" * MAX_DEPTH
        self.assertEqual(len(decode_ber(ok)), 1)
        deep = b"\x30\x80" * (MAX_DEPTH + 1) + b"\x00\x00" * (MAX_DEPTH + 1)
        self.assertRaises(TlvError, decode_ber, deep)
        very_deep = b"\x30\x80" * 5000 + b"\x00\x00" * 5000
        self.assertRaises(TlvError, decode_ber, very_deep)

    def test_findDepthLimit(self) -> None:
        """find() through a deep definite tree stops at the depth limit."""
        raw = b""
        for _ in range(MAX_DEPTH + 5):
            raw = encode_ber(0x30, raw)
        self.assertRaises(TlvError, find, decode_ber(raw), 0x04)


class ErrorTests(SynchronousTestCase):
    """Errors name the tag, the offset and the reason."""

    def test_truncatedValueNamesTagAndOffset(self) -> None:
        """A value cut short reports the tag and where its TLV starts."""
        with self.assertRaises(TlvError) as ctx:
            decode_ber(bytes.fromhex("0401aa9f700501"))
        e = ctx.exception
        self.assertEqual((e.field, e.offset), ("tag 9F70", 3))
        self.assertIn("9F70", str(e))
        self.assertIn("offset 3", str(e))
        self.assertIsInstance(e, CodecError)
        self.assertEqual(TlvError.codec, "TLV")

    def test_trailingBytes(self) -> None:
        """decode_ber_one refuses bytes after the TLV and empty input."""
        with self.assertRaises(TlvError) as ctx:
            decode_ber_one(bytes.fromhex("0401aa0500"))
        self.assertEqual(ctx.exception.offset, 3)
        self.assertRaises(TlvError, decode_ber_one, b"")

    def test_sizeLimit(self) -> None:
        """Input over max_size is refused before parsing."""
        raw = encode_ber(0x04, bytes(100))
        self.assertRaises(TlvError, decode_ber, raw, max_size=50)
        self.assertEqual(len(decode_ber(raw, max_size=102)), 1)

    def test_paddingRefused(self) -> None:
        """A 00 byte between TLVs is not silently skipped."""
        self.assertRaises(TlvError, decode_ber, bytes.fromhex("040100" + "00" + "0500"))


Tree = tuple[Any, ...]
"""("leaf", tag, value) or ("node", tag, children, indefinite)."""


def _tags(constructed: bool) -> st.SearchStrategy[int]:
    return st.builds(
        lambda cls, number: make_ber_tag(cls, constructed, number),
        st.integers(0, 3),
        st.one_of(st.integers(0, 30), st.integers(31, (1 << 21) - 1)),
    ).filter(lambda tag: tag != 0)


_leaves = st.builds(lambda tag, value: ("leaf", tag, value), _tags(False), st.binary(max_size=300))
_trees = st.recursive(
    _leaves,
    lambda children: st.builds(
        lambda tag, kids, indefinite: ("node", tag, kids, indefinite),
        _tags(True),
        st.lists(children, max_size=4),
        st.booleans(),
    ),
    max_leaves=12,
)


def _encode_tree(tree: Tree) -> bytes:
    if tree[0] == "leaf":
        return encode_ber(tree[1], tree[2])
    _, tag, kids, indefinite = tree
    content = b"".join(_encode_tree(k) for k in kids)
    return encode_ber_indefinite(tag, content) if indefinite else encode_ber(tag, content)


def _matches(tlv: BerTlv, tree: Tree) -> bool:
    if tree[0] == "leaf":
        return tlv == BerTlv(tree[1], tree[2])
    _, tag, kids, indefinite = tree
    children = tlv.children()
    return (
        tlv.tag == tag
        and tlv.indefinite == indefinite
        and len(children) == len(kids)
        and all(_matches(c, k) for c, k in zip(children, kids, strict=True))
    )


class PropertyTests(SynchronousTestCase):
    """Round trips and hostile input, by Hypothesis."""

    @given(st.lists(_trees, max_size=4))
    def test_treeRoundTrip(self, trees: list[Tree]) -> None:
        """Any tree of definite and indefinite TLVs with any tags decodes to itself
        and re-encodes byte for byte."""
        raw = b"".join(_encode_tree(t) for t in trees)
        decoded = decode_ber(raw)
        self.assertEqual(len(decoded), len(trees))
        for tlv, tree in zip(decoded, trees, strict=True):
            self.assertTrue(_matches(tlv, tree))
        self.assertEqual(b"".join(t.encode() for t in decoded), raw)
        self.assertEqual(b"".join(_rebuild(t) for t in decoded), raw)

    @given(st.binary(max_size=300))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes either decode or raise TlvError, never anything else."""
        try:
            for tlv in decode_ber(data):
                if tlv.is_constructed:
                    find([tlv], 0x9F7F)
        except TlvError:
            pass

    @given(_trees, st.data())
    def test_mutatedBytes(self, tree: Tree, data: st.DataObject) -> None:
        """Valid encodings with a byte changed, inserted or dropped only raise TlvError."""
        raw = bytearray(_encode_tree(tree))
        position = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if action == "set" and position < len(raw):
            raw[position] = byte
        elif action == "insert":
            raw.insert(position, byte)
        elif position < len(raw):
            del raw[position]
        try:
            for tlv in decode_ber(bytes(raw)):
                tlv.encode()
                if tlv.is_constructed:
                    find([tlv], 0x04)
        except TlvError:
            pass


class ExportTests(SynchronousTestCase):
    """The package re-exports what its private modules define."""

    def test_allNamesExist(self) -> None:
        """Every name in __all__ is an attribute of bipgw.codec.tlv."""
        for name in tlv_package.__all__:
            self.assertTrue(hasattr(tlv_package, name), name)
