"""Tests for PUSH commands and the typed BIP values (bipgw.codec.ram)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ram import (
    BearerDescription,
    BearerType,
    BufferSize,
    ConnectionParams,
    NetworkAccessName,
    OtherAddress,
    PushBipOpening,
    PushCatTpLink,
    PushIdentification,
    PushRequest,
    PushTcpConnection,
    RamError,
    TransportLevel,
    TransportProtocol,
    decode_push,
)
from bipgw.codec.tlv import CompTlv, TlvError, decode_comprehension_one
from tests import vectors

PUSH_BIP = "TS 102 226 PUSH (request for BIP channel opening) with OPEN CHANNEL TLVs"
PUSH_CAT_TP = "PUSH CAT_TP link establishment (port 1F90)"


def _capdu(name: str) -> bytes:
    return bytes.fromhex(vectors.by_name("cat_bip_tlvs", name)["capdu"])


class BipValueVectorTests(SynchronousTestCase):
    """The pySim CAT vectors decode to typed values and re-encode identically."""

    def test_bearerDefault(self) -> None:
        """B5 01 03 is the default bearer, with CR."""
        raw = bytes.fromhex(
            vectors.by_name("cat_bip_tlvs", "Bearer description default bearer")["tlv"]
        )
        bearer = BearerDescription.decode(raw)
        self.assertEqual(bearer, BearerDescription.default())
        self.assertEqual(bearer.bearer_type, BearerType.DEFAULT)
        self.assertEqual(bearer.encode(comprehension_required=True), raw)
        self.assertEqual(bearer.encode().hex(), "350103")

    def test_otherAddressIpv4(self) -> None:
        """BE 05 21 01020304 is IPv4 1.2.3.4."""
        raw = bytes.fromhex(vectors.by_name("cat_bip_tlvs", "Other address IPv4 1.2.3.4")["tlv"])
        address = OtherAddress.decode(raw)
        self.assertEqual(address.address, ipaddress.IPv4Address("1.2.3.4"))
        self.assertEqual(address.encode(True), raw)

    def test_transportLevel(self) -> None:
        """BC 03 02 8000 is TCP client remote, port 32768."""
        name = "UICC/terminal interface transport level TCP client remote port 32768"
        raw = bytes.fromhex(vectors.by_name("cat_bip_tlvs", name)["tlv"])
        level = TransportLevel.decode(raw)
        self.assertEqual(level, TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 32768))
        self.assertEqual(level.encode(True), raw)

    def test_liveCardValues(self) -> None:
        """The live card's stored NAN C7 04 03 "GPB" and address BE 05 21 5BD50502."""
        self.assertEqual(NetworkAccessName.decode(bytes.fromhex("c704034750 42")).name, "GPB")
        self.assertEqual(
            OtherAddress.decode(bytes.fromhex("be05215bd50502")).address,
            ipaddress.IPv4Address("91.213.5.2"),
        )


class BipValueTests(SynchronousTestCase):
    """Value coding of each typed BIP parameter."""

    def test_networkAccessName(self) -> None:
        """Dotted text becomes length-prefixed labels and back."""
        nan = NetworkAccessName("internet.operator.com")
        self.assertEqual(nan.to_value(), b"\x08internet\x08operator\x03com")
        self.assertEqual(nan.labels, ("internet", "operator", "com"))
        self.assertEqual(NetworkAccessName.decode(nan.encode()), nan)
        self.assertEqual(nan.encode()[:2].hex(), "4716")

    def test_networkAccessNameRefusals(self) -> None:
        """Empty labels, odd characters, overlong names and bad label lengths are refused."""
        for bad in ["", "a..b", "inter net", "a." * 50 + "a", "x" * 64, "caf\u00e9"]:
            self.assertRaises(RamError, NetworkAccessName, bad)
        for raw in ["4700", "470108", "47020800", "470203ff", "4702018f"]:
            self.assertRaises(RamError, NetworkAccessName.decode, bytes.fromhex(raw))

    def test_ipv6(self) -> None:
        """IPv6 addresses use type 57 and 16 bytes."""
        address = OtherAddress(ipaddress.IPv6Address("2001:db8::1"))
        raw = address.encode()
        self.assertEqual(raw[:3].hex(), "3e1157")
        self.assertEqual(OtherAddress.decode(raw), address)
        for bad in ["3e0421010203", "3e0557010203", "3e00", "3e052201020304"]:
            self.assertRaises(RamError, OtherAddress.decode, bytes.fromhex(bad))

    def test_packetBearer(self) -> None:
        """A packet-service bearer keeps its QoS parameters raw."""
        raw = bytes.fromhex("350702000003000002")
        bearer = BearerDescription.decode(raw)
        self.assertEqual(bearer.bearer_type, BearerType.PACKET_SERVICE)
        self.assertEqual(bearer.parameters.hex(), "000003000002")
        self.assertEqual(bearer.encode(), raw)
        self.assertRaises(RamError, BearerDescription, BearerType.DEFAULT, b"\x01")
        self.assertRaises(RamError, BearerDescription.decode, bytes.fromhex("3500"))
        self.assertEqual(BearerDescription.decode(bytes.fromhex("350142")).bearer_type, 0x42)

    def test_bufferAndTransport(self) -> None:
        """Buffer size and transport level check their sizes and ranges."""
        self.assertEqual(BufferSize(1000).encode().hex(), "390203e8")
        self.assertRaises(RamError, BufferSize, 70000)
        self.assertRaises(RamError, BufferSize.decode, bytes.fromhex("390103"))
        self.assertRaises(RamError, TransportLevel.decode, bytes.fromhex("3c03078000"))
        self.assertRaises(RamError, TransportLevel.decode, bytes.fromhex("3c020280"))
        self.assertRaises(RamError, TransportLevel, 9, 80)

    def test_wrongTagAndGarbage(self) -> None:
        """Decoding another tag, trailing TLVs or broken TLVs raises RamError."""
        self.assertRaises(RamError, BufferSize.decode, bytes.fromhex("350103"))
        self.assertRaises(RamError, BufferSize.decode, bytes.fromhex("390203e8350103"))
        with self.assertRaises(RamError) as ctx:
            BufferSize.decode(bytes.fromhex("3905"))
        self.assertIsInstance(ctx.exception.__cause__, TlvError)

    def test_connectionParamsOrderAndExtras(self) -> None:
        """Known TLVs are typed in any order, others kept; encoding uses the fixed order."""
        login = CompTlv(0x0D, b"\x04user")
        raw = bytes.fromhex("3e052101020304" + "b50103") + login.encode()
        params = ConnectionParams.decode(raw)
        self.assertEqual(params.bearer, BearerDescription.default())
        self.assertEqual(params.extra, (login,))
        self.assertEqual(params.encode().hex(), "350103" + "3e052101020304" + login.encode().hex())
        self.assertRaises(RamError, ConnectionParams.decode, bytes.fromhex("350103b50103"))
        self.assertRaises(RamError, ConnectionParams, extra=(CompTlv(0x35, b"\x03"),))


class PushVectorTests(SynchronousTestCase):
    """The public PUSH vectors decode to the expected values and back."""

    def test_bipOpening(self) -> None:
        """pySim's PUSH is bearer default, buffer 1000, address 1.2.3.4."""
        raw = _capdu(PUSH_BIP)
        expected = PushBipOpening(
            bearer=BearerDescription.default(),
            buffer_size=BufferSize(1000),
            address=OtherAddress(ipaddress.IPv4Address("1.2.3.4")),
        )
        self.assertEqual(decode_push(raw), expected)
        self.assertEqual(PushBipOpening.decode(raw), expected)
        self.assertEqual(expected.encode(), raw)

    def test_catTpLink(self) -> None:
        """The CAT_TP PUSH carries port 1F90 behind protocol byte 00."""
        raw = _capdu(PUSH_CAT_TP)
        self.assertEqual(decode_push(raw), PushCatTpLink(0x1F90))
        self.assertEqual(PushCatTpLink(0x1F90).encode(), raw)


class PushTests(SynchronousTestCase):
    """Each PUSH kind, and header checking."""

    def test_architectureDefaultPush(self) -> None:
        """The docs/architecture.md push (bearer, buffer, TCP port, IPv4) encodes in that order."""
        push = PushBipOpening(
            bearer=BearerDescription.default(),
            buffer_size=BufferSize(1400),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 8443),
            address=OtherAddress(ipaddress.IPv4Address("10.0.0.1")),
        )
        self.assertEqual(
            push.encode().hex(),
            "80ec010113" + "350103" + "39020578" + "3c030220fb" + "3e05210a000001",
        )

    def test_alphaAndLoginPassword(self) -> None:
        """Alpha comes first; login/password text strings stay in order in extra."""
        login = CompTlv(0x0D, b"\x04user")
        password = CompTlv(0x0D, b"\x04pass")
        push = PushBipOpening(
            nan=NetworkAccessName("internet"), alpha=b"BIP", extra=(login, password)
        )
        raw = push.encode()
        self.assertEqual(raw[5:10].hex(), "0503424950")
        self.assertEqual(decode_push(raw), push)
        self.assertRaises(RamError, decode_push, bytes.fromhex("80ec010104" + "0500" + "0500"))
        self.assertRaises(RamError, PushBipOpening, extra=(CompTlv(0x05, b"x"),))

    def test_tcpConnection(self) -> None:
        """P2 03 carries the same parameters and decodes to PushTcpConnection."""
        push = PushTcpConnection(
            bearer=BearerDescription.default(),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 443),
            address=OtherAddress(ipaddress.IPv4Address("192.0.2.1")),
            nan=NetworkAccessName("m2m.example"),
        )
        raw = push.encode()
        self.assertEqual(raw[:4].hex(), "80ec0103")
        self.assertEqual(decode_push(raw), push)
        self.assertRaises(RamError, PushBipOpening.decode, raw)

    def test_catTpWithIdentification(self) -> None:
        """CAT_TP link: 3C, then buffer size, then identification 36."""
        push = PushCatTpLink(0x1F90, BufferSize(512), b"\x01\x02\x03")
        raw = push.encode()
        self.assertEqual(raw.hex(), "80ec01020e" + "3c03001f90" + "39020200" + "3603010203")
        self.assertEqual(decode_push(raw), push)
        for data in ["", "3c03021f90", "3c03001f903c03001f90", "390202003603010203"]:
            capdu = bytes.fromhex("80ec0102") + bytes((len(data) // 2,)) + bytes.fromhex(data)
            self.assertRaises(RamError, decode_push, capdu if data else capdu[:4])

    def test_identification(self) -> None:
        """P2 04 with and without identification data."""
        self.assertEqual(PushIdentification().encode().hex(), "80ec0104")
        self.assertEqual(decode_push(bytes.fromhex("80ec0104")), PushIdentification())
        self.assertEqual(decode_push(bytes.fromhex("80ec010400")), PushIdentification())
        push = PushIdentification(b"89001234")
        self.assertEqual(decode_push(push.encode()), push)
        self.assertRaises(RamError, decode_push, bytes.fromhex("80ec010403350103"))

    def test_headerErrorsNameTheByte(self) -> None:
        """CLA, INS, P1, P2 and Lc errors name the field and its offset."""
        cases = {
            "00ec0101": ("CLA", 0),
            "80e20101": ("INS", 1),
            "80ec8001": ("P1", 2),
            "80ec0105": ("P2", 3),
            "80ec010103350103ff": ("Lc", 4),
            "80ec01010535010300": ("Lc", 4),
            "80ec010100350103": ("Lc", 4),
            "80ec01": ("header", None),
        }
        for raw, (field, offset) in cases.items():
            with self.assertRaises(RamError) as ctx:
                decode_push(bytes.fromhex(raw))
            self.assertEqual((ctx.exception.field, ctx.exception.offset), (field, offset), raw)

    def test_dataErrorOffsetsCountFromApdu(self) -> None:
        """A TLV error in the data reports the offset within the whole APDU."""
        with self.assertRaises(RamError) as ctx:
            decode_push(bytes.fromhex("80ec010105350103 3905".replace(" ", "")))
        self.assertEqual(ctx.exception.offset, 8)

    def test_tooLong(self) -> None:
        """More than 255 bytes of data do not fit a short APDU."""
        push = PushBipOpening(alpha=b"x" * 250, extra=(CompTlv(0x0D, b"y" * 10),))
        self.assertRaises(RamError, push.encode)

    def test_requestCodes(self) -> None:
        """Each class reports its P2."""
        self.assertEqual(
            [
                k.request
                for k in (PushBipOpening, PushCatTpLink, PushTcpConnection, PushIdentification)
            ],
            [
                PushRequest.BIP_CHANNEL,
                PushRequest.CAT_TP_LINK,
                PushRequest.TCP_CONNECTION,
                PushRequest.IDENTIFICATION,
            ],
        )


_bearers = st.none() | st.one_of(
    st.just(BearerDescription.default()),
    st.builds(BearerDescription, st.just(BearerType.PACKET_SERVICE), st.binary(max_size=6)),
)
_labels = st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)
_nans = st.none() | st.builds(
    lambda labels: NetworkAccessName(".".join(labels)), st.lists(_labels, min_size=1, max_size=4)
)
_addresses = st.none() | st.builds(
    OtherAddress, st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
)
_transports = st.none() | st.builds(
    TransportLevel, st.sampled_from(TransportProtocol), st.integers(0, 0xFFFF)
)
_buffers = st.none() | st.builds(BufferSize, st.integers(0, 0xFFFF))
_extras = st.lists(
    st.builds(CompTlv, st.sampled_from([0x0D, 0x1E, 0x7F10]), st.binary(max_size=8), st.booleans()),
    max_size=2,
).map(tuple)


class PropertyTests(SynchronousTestCase):
    """Round trips and hostile input, by Hypothesis."""

    @given(
        st.sampled_from([PushBipOpening, PushTcpConnection]),
        _bearers,
        _buffers,
        _nans,
        _transports,
        _addresses,
        st.none() | st.binary(max_size=16),
        _extras,
    )
    def test_pushRoundTrip(
        self, kind, bearer, buffer_size, nan, transport, address, alpha, extra
    ) -> None:
        """Any BIP-opening or TCP PUSH decodes to itself."""
        push = kind(bearer, buffer_size, nan, transport, address, alpha, extra)
        self.assertEqual(decode_push(push.encode()), push)

    @given(st.integers(0, 0xFFFF), _buffers, st.none() | st.binary(max_size=40), _extras)
    def test_catTpRoundTrip(self, port, buffer_size, identification, extra) -> None:
        """Any CAT_TP link PUSH decodes to itself."""
        push = PushCatTpLink(port, buffer_size, identification, extra)
        self.assertEqual(decode_push(push.encode()), push)

    @given(st.binary(max_size=60), st.integers(0, 6))
    def test_randomBytes(self, data: bytes, p2: int) -> None:
        """Random data behind a PUSH header, or alone, only ever raises RamError."""
        for raw in (data, bytes((0x80, 0xEC, 0x01, p2, len(data) & 0xFF)) + data):
            try:
                decode_push(raw)
            except RamError:
                pass

    @given(st.binary(max_size=40))
    def test_randomValues(self, data: bytes) -> None:
        """Random values for every typed BIP parameter only ever raise RamError."""
        for kind in (
            BearerDescription,
            BufferSize,
            NetworkAccessName,
            TransportLevel,
            OtherAddress,
        ):
            try:
                value = kind.from_value(data)
            except RamError:
                continue
            self.assertEqual(decode_comprehension_one(value.encode()).value, value.to_value())
