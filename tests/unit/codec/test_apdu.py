"""Tests for the ISO 7816-4 APDU codec and the status-word table."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec import CodecError, apdu
from bipgw.codec.apdu import (
    SW_DATA_TRUNCATED,
    SW_GP_MORE_DATA,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_TOOLKIT_BUSY,
    ApduError,
    CommandApdu,
    ResponseApdu,
    decode_command,
    describe_sw,
)
from tests import vectors

# --- helpers written from the spec text, independently of the codec -------


def _tlv_values(script: bytes, tag: int) -> list[bytes]:
    """Values of every C{tag} TLV inside a TS 102 226 script template.

    Only what the vectors need: an C{AA}/C{AB} definite or C{AE 80}/C{AF 80}
    indefinite template holding TLVs with one-byte lengths.
    """
    if script[1] == 0x80:
        assert script[-2:] == b"\x00\x00", "indefinite template must end 00 00"
        body = script[2:-2]
    else:
        assert script[1] == len(script) - 2, "definite length must match"
        body = script[2:]
    found = []
    i = 0
    while i < len(body):
        t, n = body[i], body[i + 1]
        assert n < 0x80, "vectors only use one-byte lengths"
        if t == tag:
            found.append(body[i + 2 : i + 2 + n])
        i += 2 + n
    assert i == len(body)
    return found


def _iso_length_rules_accept(raw: bytes) -> bool:
    """ISO 7816-4 5.1, restated: is C{raw} exactly one well-formed C-APDU?"""
    body = len(raw) - 4
    if body < 0:
        return False
    if body <= 1:
        return True
    b1 = raw[4]
    if b1:
        return body in (1 + b1, 2 + b1)
    if body < 3:
        return False
    ext = int.from_bytes(raw[5:7], "big")
    if body == 3:
        return True
    return ext > 0 and body in (3 + ext, 5 + ext)


def _from_parts(header: bytes, data: bytes, le: int | None, extended: bool) -> bytes:
    """Build a C-APDU from its parts by the ISO 7816-4 table, field by field."""
    if not extended:
        lc = bytes([len(data)]) if data else b""
        le_field = b"" if le is None else bytes([le % 256])
        return header + lc + data + le_field
    lc = b"\x00" + len(data).to_bytes(2, "big") if data else b""
    if le is None:
        le_field = b""
    elif data:
        le_field = (le % 65536).to_bytes(2, "big")
    else:
        le_field = b"\x00" + (le % 65536).to_bytes(2, "big")
    return header + lc + data + le_field


# --- strategies -------------------------------------------------------------

_byte = st.integers(min_value=0, max_value=255)


@st.composite
def command_apdus(draw: st.DrawFn) -> CommandApdu:
    """Any valid C-APDU, every case, short and extended (data up to 300 bytes)."""
    data = draw(st.binary(max_size=300))
    le = draw(st.none() | st.integers(min_value=1, max_value=65536))
    needs = len(data) > 255 or (le is not None and le > 256)
    has_lengths = bool(data) or le is not None
    extended = needs or (has_lengths and draw(st.booleans()))
    return CommandApdu(draw(_byte), draw(_byte), draw(_byte), draw(_byte), data, le, extended)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid C-APDU's bytes with one byte changed, cut off, or added."""
    raw = bytearray(draw(command_apdus()).encode())
    how = draw(st.sampled_from(["flip", "truncate", "append", "delete"]))
    i = draw(st.integers(min_value=0, max_value=len(raw) - 1))
    if how == "flip":
        raw[i] ^= draw(st.integers(min_value=1, max_value=255))
    elif how == "truncate":
        del raw[i:]
    elif how == "append":
        raw += draw(st.binary(min_size=1, max_size=3))
    else:
        del raw[i]
    return bytes(raw)


# --- tests ------------------------------------------------------------------


class CommandApduVectorTests(SynchronousTestCase):
    """The public vectors decode to the documented fields and re-encode exactly."""

    # (cla, ins, p1, p2, Lc, Le, case) as read from GP 2.3.1 / PROTOCOLS.md 6.
    EXPECTED = {
        "SELECT ISD by AID": (0x00, 0xA4, 0x04, 0x00, 8, 256, 4),
        "GET STATUS ISD, TLV response": (0x80, 0xF2, 0x80, 0x02, 2, 256, 4),
        "GET STATUS apps+SDs, next occurrence": (0x80, 0xF2, 0x40, 0x03, 2, 256, 4),
        "GET DATA extended card resources FF21": (0x80, 0xCA, 0xFF, 0x21, 0, 256, 2),
        "INSTALL [for install and make selectable] with C9 00 and EA toolkit params": (
            0x80,
            0xE6,
            0x0C,
            0x00,
            0x2E,
            256,
            4,
        ),
        "DELETE object and related by AID": (0x80, 0xE4, 0x00, 0x80, 10, None, 3),
        "DELETE key KID 01 KVN 40": (0x80, 0xE4, 0x00, 0x00, 6, None, 3),
    }

    def test_gpApdus(self) -> None:
        """Every GP vector decodes to its documented header, lengths and case."""
        seen = set()
        for v in vectors.section("gp_apdus"):
            raw = bytes.fromhex(v["capdu"])
            apdu = CommandApdu.decode(raw)
            cla, ins, p1, p2, lc, le, case = self.EXPECTED[v["name"]]
            self.assertEqual(
                (apdu.cla, apdu.ins, apdu.p1, apdu.p2, len(apdu.data), apdu.le, apdu.case),
                (cla, ins, p1, p2, lc, le, case),
                v["name"],
            )
            self.assertFalse(apdu.is_extended)
            self.assertEqual(apdu.encode(), raw, v["name"])
            seen.add(v["name"])
        self.assertEqual(seen, set(self.EXPECTED))

    def test_selectCarriesIsdAid(self) -> None:
        """SELECT's data field is the GP default ISD AID A000000151000000."""
        apdu = CommandApdu.decode(
            bytes.fromhex(vectors.by_name("gp_apdus", "SELECT ISD by AID")["capdu"])
        )
        self.assertEqual(apdu.data, bytes.fromhex("A000000151000000"))

    def test_responseFf21(self) -> None:
        """The live FF21 GET DATA response (data only in the vector) round-trips with 9000."""
        data = bytes.fromhex(
            vectors.by_name("gp_apdus", "GET DATA extended card resources FF21")["response"]
        )
        raw = data + b"\x90\x00"
        rapdu = ResponseApdu.decode(raw)
        self.assertEqual((rapdu.data, rapdu.sw, rapdu.ok), (data, SW_OK, True))
        self.assertEqual(rapdu.data[:3], b"\xff\x21\x0b")
        self.assertEqual(rapdu.encode(), raw)

    def test_expandedScriptCommands(self) -> None:
        """The C-APDUs inside TS 102 226 command scripts (tag 22) decode and re-encode."""
        found = []
        for v in vectors.section("ts102226_expanded"):
            if "script" not in v:
                continue
            for value in _tlv_values(bytes.fromhex(v["script"]), 0x22):
                apdu = CommandApdu.decode(value)
                self.assertEqual(apdu.encode(), value)
                found.append((apdu.ins, apdu.p1, apdu.p2, apdu.case, apdu.le))
        self.assertEqual(
            found,
            [
                (0xCA, 0x00, 0x85, 2, 256),  # GET DATA 0085, real trace
                (0xF2, 0x80, 0x02, 4, 256),  # GET STATUS ISD
                (0xCA, 0x00, 0x85, 2, 256),  # definite script
            ],
        )

    def test_expandedScriptResponses(self) -> None:
        """The R-APDUs inside TS 102 226 response scripts (tag 23) give SW 6A88."""
        found = []
        for v in vectors.section("ts102226_expanded"):
            if "response" not in v:
                continue
            for value in _tlv_values(bytes.fromhex(v["response"]), 0x23):
                rapdu = ResponseApdu.decode(value)
                self.assertEqual(rapdu.encode(), value)
                found.append(rapdu)
        self.assertEqual(found, [ResponseApdu(b"", SW_REFERENCED_DATA_NOT_FOUND)] * 2)
        self.assertFalse(found[0].ok)
        self.assertIn("referenced data not found", found[0].meaning)

    def test_pushCommands(self) -> None:
        """TS 102 226 PUSH vectors decode as 80 EC 01 P2 case 3 with their TLV data."""
        pushes = [v for v in vectors.section("cat_bip_tlvs") if "capdu" in v]
        self.assertEqual(len(pushes), 2)
        for v in pushes:
            raw = bytes.fromhex(v["capdu"])
            apdu = CommandApdu.decode(raw)
            self.assertEqual((apdu.cla, apdu.ins, apdu.p1), (0x80, 0xEC, 0x01))
            self.assertIn(apdu.case, (3, 4))
            self.assertEqual(apdu.encode(), raw)
        bip = CommandApdu.decode(bytes.fromhex(pushes[0]["capdu"]))
        self.assertEqual((bip.p2, bip.case), (0x01, 3))
        self.assertEqual(bip.data, bytes.fromhex("350103390203e83e052101020304"))

    def test_envelopeDataField(self) -> None:
        """The SMS-PP ENVELOPE's data field equals the vector's separate envelope_data."""
        v = vectors.by_name(
            "sms_pp_framing",
            "ENVELOPE (SMS-PP DATA DOWNLOAD) for that TPDU, without optional Address TLV",
        )
        apdu = CommandApdu.decode(bytes.fromhex(v["apdu"]))
        self.assertEqual((apdu.cla, apdu.ins, apdu.case), (0x80, 0xC2, 3))
        self.assertEqual(apdu.data, bytes.fromhex(v["envelope_data"]))

    def test_envelopeResponseTrace(self) -> None:
        """The real ENVELOPE answer (PoR data + 9000) decodes as an ok R-APDU."""
        [v] = [
            v
            for v in vectors.section("sms_pp_framing")
            if v["name"].startswith("real ENVELOPE + PoR trace")
        ]
        rapdu = ResponseApdu.from_hex(v["response_data"] + " " + v["response_sw"])
        self.assertEqual(rapdu.data, bytes.fromhex(v["response_data"]))
        self.assertTrue(rapdu.ok)
        self.assertEqual(rapdu.data[:3], b"\x02\x71\x00")

    def test_ota_securedDataApdus(self) -> None:
        """Single-APDU OTA payloads decode as case 3S SELECT 3F00."""
        singles = {
            v["secured_data_plain"]
            for v in vectors.section("scp80_sms_command_packets")
            if len(v["secured_data_plain"]) == 14
        }
        self.assertEqual(singles, {"00a40004023f00", "00a40000023f00"})
        for hex_ in singles:
            apdu = CommandApdu.from_hex(hex_)
            self.assertEqual((apdu.ins, apdu.case, apdu.data), (0xA4, 3, b"\x3f\x00"))

    def test_compactScriptIsNotOneApdu(self) -> None:
        """A compact script of two APDUs is refused as one APDU, naming Lc; each half decodes."""
        script = bytes.fromhex("a0a40000027f20a0c0000016")
        with self.assertRaises(ApduError) as ctx:
            CommandApdu.decode(script)
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("Lc", 4))
        self.assertEqual(CommandApdu.decode(script[:7]), CommandApdu(0xA0, 0xA4, 0, 0, b"\x7f\x20"))
        self.assertEqual(CommandApdu.decode(script[7:]), CommandApdu(0xA0, 0xC0, 0, 0, le=0x16))


class CommandApduCaseTests(SynchronousTestCase):
    """Each ISO 7816-4 case encodes to the exact layout of 5.1."""

    def test_case1(self) -> None:
        """Case 1 is the four header bytes alone."""
        apdu = CommandApdu(0x00, 0x70, 0x80, 0x01)
        self.assertEqual(apdu.encode(), bytes.fromhex("00708001"))
        self.assertEqual((apdu.case, apdu.is_extended), (1, False))

    def test_case2Short(self) -> None:
        """Case 2S: one Le byte; Le 256 is sent as 00 and read back as 256."""
        self.assertEqual(CommandApdu(0x80, 0xCA, 0x00, 0x66, le=0x20).encode().hex(), "80ca006620")
        apdu = CommandApdu.from_hex("80 CA 00 66 00")
        self.assertEqual((apdu.le, apdu.case, apdu.extended), (256, 2, False))

    def test_case3Short(self) -> None:
        """Case 3S: Lc then data, no Le."""
        apdu = CommandApdu(0x00, 0xA4, 0x00, 0x04, b"\x3f\x00")
        self.assertEqual(apdu.encode().hex(), "00a40004023f00")
        self.assertEqual(apdu.case, 3)

    def test_case4Short(self) -> None:
        """Case 4S: Lc, data, then one Le byte."""
        apdu = CommandApdu(0x00, 0xA4, 0x04, 0x00, b"\xa0\x00", le=256)
        self.assertEqual(apdu.encode().hex(), "00a4040002a00000")
        self.assertEqual(apdu.case, 4)

    def test_case2Extended(self) -> None:
        """Case 2E: 00 then two Le bytes; 65536 is sent as 0000."""
        self.assertEqual(CommandApdu(0, 0xB0, 0, 0, le=257).encode().hex(), "00b00000000101")
        apdu = CommandApdu.from_hex("00B00000 000000")
        self.assertEqual((apdu.le, apdu.case, apdu.extended), (65536, 2, True))

    def test_case3Extended(self) -> None:
        """Case 3E: 00, two Lc bytes, data; chosen automatically above 255 bytes."""
        data = bytes(range(256))
        apdu = CommandApdu(0x80, 0xE2, 0x80, 0x00, data)
        self.assertTrue(apdu.extended)
        self.assertEqual(apdu.encode(), bytes.fromhex("80e28000000100") + data)
        self.assertEqual(apdu.case, 3)

    def test_case4Extended(self) -> None:
        """Case 4E: 00, Lc(2), data, Le(2) with no second 00."""
        apdu = CommandApdu(0x00, 0x88, 0x00, 0x00, b"\x01\x02", le=65536, extended=True)
        self.assertEqual(apdu.encode().hex(), "0088000000000201020000")
        self.assertEqual(CommandApdu.decode(apdu.encode()), apdu)

    def test_forcedExtended(self) -> None:
        """A small APDU can be forced into the extended form and decodes as such."""
        apdu = CommandApdu(0x00, 0xA4, 0x04, 0x00, b"\xa0", le=1, extended=True)
        self.assertEqual(apdu.encode().hex(), "00a40400000001a00001")
        self.assertEqual(CommandApdu.decode(apdu.encode()), apdu)
        self.assertNotEqual(apdu, CommandApdu(0x00, 0xA4, 0x04, 0x00, b"\xa0", le=1))

    def test_shortLimits(self) -> None:
        """255 data bytes and Le 256 stay short; one more of either goes extended."""
        self.assertFalse(CommandApdu(0, 0xD6, 0, 0, bytes(255), le=256).extended)
        self.assertTrue(CommandApdu(0, 0xD6, 0, 0, bytes(256)).extended)
        self.assertTrue(CommandApdu(0, 0xB0, 0, 0, le=257).extended)

    def test_largestApdu(self) -> None:
        """65535 data bytes with Le 65536 is the largest APDU and round-trips."""
        apdu = CommandApdu(0, 0xD6, 0, 0, bytes(65535), le=65536)
        raw = apdu.encode()
        self.assertEqual(len(raw), 4 + 3 + 65535 + 2)
        self.assertEqual(raw[4:7], b"\x00\xff\xff")
        self.assertEqual(CommandApdu.decode(raw), apdu)

    def test_acceptsBytesLike(self) -> None:
        """bytearray/memoryview data and input are accepted and stored as bytes."""
        apdu = CommandApdu(0, 0xA4, 0, 4, bytearray(b"\x3f\x00"))
        self.assertIs(type(apdu.data), bytes)
        self.assertEqual(CommandApdu.decode(memoryview(apdu.encode())), apdu)
        self.assertEqual(hash(apdu), hash(CommandApdu(0, 0xA4, 0, 4, b"\x3f\x00")))

    def test_reprIsHex(self) -> None:
        """The repr shows bytes in hex, as specs and traces do."""
        self.assertEqual(
            repr(CommandApdu(0x80, 0xCA, 0x00, 0x66, b"\x01", le=256)),
            "CommandApdu(cla=0x80, ins=0xCA, p1=0x00, p2=0x66, data=hex'01',"
            " le=256, extended=False)",
        )


class CommandApduErrorTests(SynchronousTestCase):
    """Malformed bytes and bad values are refused, naming the field."""

    def assertApduError(self, raw: str, field: str, offset: int | None = None) -> ApduError:
        with self.assertRaises(ApduError) as ctx:
            CommandApdu.from_hex(raw)
        self.assertEqual(ctx.exception.field, field)
        if offset is not None:
            self.assertEqual(ctx.exception.offset, offset)
        self.assertIn(f"'{field}'", str(ctx.exception))
        self.assertTrue(str(ctx.exception).startswith("APDU: "))
        return ctx.exception

    def test_headerTooShort(self) -> None:
        """Fewer than four bytes is refused, naming the header."""
        for raw in ("", "00", "00a404"):
            self.assertApduError(raw, "header", 0)

    def test_shortLcDisagrees(self) -> None:
        """A short Lc that does not match the bytes after it names Lc, and says both counts."""
        e = self.assertApduError("00a40004 02 3f", "Lc", 4)
        self.assertIn("Lc=2", e.reason)
        self.assertIn("1 bytes follow", e.reason)
        self.assertApduError("00a40004 02 3f00 00 00", "Lc", 4)

    def test_shortLcZero(self) -> None:
        """00 followed by a single byte is neither short (Lc 00) nor extended."""
        self.assertApduError("00a40004 00 01", "Lc", 4)

    def test_extendedLcZero(self) -> None:
        """An extended Lc of 0000 followed by more bytes is refused."""
        self.assertApduError("00a40004 000000 01", "Lc", 4)

    def test_extendedLcDisagrees(self) -> None:
        """An extended Lc that does not match the remaining bytes names Lc."""
        self.assertApduError("00a40004 000003 0102", "Lc", 4)
        self.assertApduError("00a40004 000001 01 00", "Lc", 4)

    def test_badHex(self) -> None:
        """Non-hex text names 'hex' and the character offset; odd digit counts are refused."""
        self.assertApduError("00 a4 0g 00", "hex", 7)
        self.assertApduError("00a4000", "hex")

    def test_fieldValidation(self) -> None:
        """Out-of-range or mistyped values name the field at construction."""
        cases = [
            (dict(cla=256), "cla"),
            (dict(ins=-1), "ins"),
            (dict(p1="1"), "p1"),
            (dict(p2=True), "p2"),
            (dict(data="3f00"), "data"),
            (dict(data=bytes(65536)), "data"),
            (dict(data=bytes(256), extended=False), "data"),
            (dict(le=0), "le"),
            (dict(le=65537), "le"),
            (dict(le=257, extended=False), "le"),
            (dict(le=1.0), "le"),
            (dict(extended=True), "extended"),
            (dict(le=1, extended=1), "extended"),
        ]
        for kwargs, field in cases:
            args: dict[str, object] = dict(cla=0, ins=0xA4, p1=0, p2=0)
            args.update(kwargs)
            with self.assertRaises(ApduError, msg=repr(kwargs)) as ctx:
                CommandApdu(**args)  # type: ignore[arg-type]
            self.assertEqual(ctx.exception.field, field, repr(kwargs))

    def test_errorFamily(self) -> None:
        """ApduError is a CodecError and a ValueError, and survives pickling."""
        e = ApduError("bad", field="Lc", offset=4)
        self.assertIsInstance(e, CodecError)
        self.assertIsInstance(e, ValueError)
        again = pickle.loads(pickle.dumps(e))
        self.assertEqual((type(again), str(again)), (ApduError, str(e)))


class CommandApduPropertyTests(SynchronousTestCase):
    """Properties over generated APDUs and bytes."""

    @given(command_apdus())
    def test_roundTrip(self, apdu: CommandApdu) -> None:
        """decode(encode(x)) == x for every case, short and extended."""
        self.assertEqual(CommandApdu.decode(apdu.encode()), apdu)

    @given(
        st.binary(min_size=4, max_size=4),
        st.binary(max_size=300),
        st.none() | st.integers(min_value=1, max_value=65536),
        st.booleans(),
    )
    def test_matchesIsoLayout(
        self, header: bytes, data: bytes, le: int | None, force: bool
    ) -> None:
        """Encoding equals the field-by-field ISO layout, and decoding recovers the parts."""
        extended = len(data) > 255 or (le is not None and le > 256)
        extended = extended or (force and (bool(data) or le is not None))
        raw = _from_parts(header, data, le, extended)
        apdu = CommandApdu(*header, data=data, le=le, extended=extended)
        self.assertEqual(apdu.encode(), raw)
        back = CommandApdu.decode(raw)
        self.assertEqual(
            (bytes([back.cla, back.ins, back.p1, back.p2]), back.data, back.le, back.extended),
            (header, data, le, extended),
        )
        self.assertEqual(back.case, 1 + (le is not None) + (2 if data else 0))

    @given(st.binary(max_size=300) | mutated())
    def test_anyBytes(self, raw: bytes) -> None:
        """Any bytes either raise ApduError or decode to an APDU that re-encodes identically."""
        try:
            apdu = CommandApdu.decode(raw)
        except ApduError:
            self.assertFalse(_iso_length_rules_accept(raw))
        else:
            self.assertTrue(_iso_length_rules_accept(raw))
            self.assertEqual(apdu.encode(), raw)


class ResponseApduTests(SynchronousTestCase):
    """R-APDUs: data then SW1 SW2."""

    def test_fields(self) -> None:
        """sw1/sw2 split the status word; encode puts it after the data."""
        r = ResponseApdu(b"\x01\x02", 0x6C10)
        self.assertEqual((r.sw1, r.sw2), (0x6C, 0x10))
        self.assertEqual(r.encode().hex(), "01026c10")
        self.assertIn("exact length is 16", r.meaning)
        self.assertEqual(repr(r), "ResponseApdu(data=hex'0102', sw=0x6C10)")

    def test_statusOnly(self) -> None:
        """Two bytes are a status word with no data."""
        self.assertEqual(ResponseApdu.decode(b"\x90\x00"), ResponseApdu(b"", SW_OK))

    def test_tooShort(self) -> None:
        """Fewer than two bytes is refused, naming the status word."""
        for raw in (b"", b"\x90"):
            with self.assertRaises(ApduError) as ctx:
                ResponseApdu.decode(raw)
            self.assertEqual((ctx.exception.field, ctx.exception.offset), ("sw", 0))

    def test_limits(self) -> None:
        """Data beyond 65536 bytes and SWs outside 16 bits are refused by field."""
        self.assertEqual(len(ResponseApdu.decode(bytes(65538)).data), 65536)
        with self.assertRaises(ApduError) as ctx:
            ResponseApdu.decode(bytes(65539))
        self.assertEqual(ctx.exception.field, "data")
        for sw in (-1, 0x10000, "9000"):
            with self.assertRaises(ApduError) as ctx:
                ResponseApdu(b"", sw)  # type: ignore[arg-type]
            self.assertEqual(ctx.exception.field, "sw")

    def test_ok(self) -> None:
        """9000, 61XX, 91XX and 9FXX are ok; warnings and errors are not."""
        for sw in (0x9000, 0x6100, 0x6110, 0x9110, 0x9F22):
            self.assertTrue(ResponseApdu(b"", sw).ok, hex(sw))
        for sw in (0x6310, 0x62F1, 0x6A88, 0x6700, 0x9300, 0x6CFF, 0x9001, 0x0000):
            self.assertFalse(ResponseApdu(b"", sw).ok, hex(sw))

    @given(st.binary(max_size=300), st.integers(min_value=0, max_value=0xFFFF))
    def test_roundTrip(self, data: bytes, sw: int) -> None:
        """decode(encode(x)) == x, and any two or more bytes decode."""
        r = ResponseApdu(data, sw)
        self.assertEqual(ResponseApdu.decode(r.encode()), r)
        self.assertEqual(ResponseApdu.decode(data + b"\x00\x00").encode(), data + b"\x00\x00")


class DescribeSwTests(SynchronousTestCase):
    """Status words in words."""

    def test_total(self) -> None:
        """Every 16-bit value gets a non-empty text, never an exception."""
        for sw in range(0x10000):
            text = describe_sw(sw)
            self.assertIsInstance(text, str)
            self.assertTrue(text.strip(), hex(sw))

    def test_outOfRange(self) -> None:
        """Values that are not status words are described, not raised on."""
        self.assertIn("not a status word", describe_sw(0x10000))
        self.assertIn("not a status word", describe_sw(-1))

    def test_known(self) -> None:
        """The ISO, TS 102 221/226 and GlobalPlatform values read as specified."""
        expected = {
            SW_OK: "normal ending",
            0x6400: "no specific diagnosis",
            0x6581: "memory failure",
            0x6700: "wrong length",
            0x6881: "logical channel",
            0x6982: "security status not satisfied",
            0x6983: "blocked",
            0x6984: "reference data not usable",
            0x6985: "conditions of use not satisfied",
            0x6986: "no current EF",
            0x6A80: "incorrect parameters in the command data",
            0x6A81: "function not supported",
            0x6A82: "not found",
            0x6A84: "not enough memory",
            0x6A86: "incorrect parameters P1-P2",
            0x6A88: "referenced data not found",
            0x6B00: "wrong parameters P1-P2",
            0x6D00: "instruction code not supported",
            0x6E00: "class not supported",
            0x6F00: "no precise diagnosis",
            SW_GP_MORE_DATA: "more data",
            SW_DATA_TRUNCATED: "truncated",
            SW_TOOLKIT_BUSY: "Toolkit busy",
            0x6283: "card locked",
            0x6438: "imported package not available",
        }
        for sw, words in expected.items():
            self.assertIn(words, describe_sw(sw), hex(sw))

    def test_lengthsInSw2(self) -> None:
        """61XX, 6CXX, 91XX and 9FXX report SW2 as a length (00 meaning 256)."""
        self.assertIn("32 response bytes available", describe_sw(0x6120))
        self.assertIn("256 response bytes", describe_sw(0x6100))
        self.assertIn("exact length is 8", describe_sw(0x6C08))
        self.assertIn("proactive command pending, 15 bytes", describe_sw(0x910F))
        self.assertIn("34 response bytes", describe_sw(0x9F22))

    def test_counter(self) -> None:
        """63CX reports the counter X."""
        self.assertIn("counter 3", describe_sw(0x63C3))
        self.assertIn("counter 0", describe_sw(0x63C0))

    def test_classFallback(self) -> None:
        """Unlisted values are described by their ISO class and keep SW2 visible."""
        self.assertIn("warning, non-volatile memory unchanged (SW2 55)", describe_sw(0x6255))
        self.assertIn("command not allowed", describe_sw(0x69F0))
        self.assertIn("wrong parameters", describe_sw(0x6A99))
        self.assertIn("execution error, non-volatile memory changed", describe_sw(0x6512))
        self.assertIn("application-specific", describe_sw(0x9001))
        self.assertIn("NULL procedure byte", describe_sw(0x6000))
        self.assertIn("neither 6X nor 9X", describe_sw(0x1234))

    @given(st.integers(min_value=0, max_value=0xFFFF))
    def test_meaningMatchesResponse(self, sw: int) -> None:
        """ResponseApdu.meaning is describe_sw of its status word."""
        self.assertEqual(ResponseApdu(b"", sw).meaning, describe_sw(sw))


class DecodeCommandTests(SynchronousTestCase):
    """L{decode_command}: L{CommandApdu.decode}, remembering short C-APDUs, bounded."""

    def test_sameValue(self) -> None:
        """It gives what decode gives, the same object for the same bytes again."""
        raw = bytes.fromhex("80F28000024F00")
        first = decode_command(raw)
        self.assertEqual(first, CommandApdu.decode(raw))
        self.assertIs(decode_command(bytes(raw)), first)

    def test_errorsNotKept(self) -> None:
        """A malformed APDU raises every time, as decode does."""
        for _ in range(2):
            self.assertRaises(ApduError, decode_command, b"\x00\xa4\x04\x00\x05\x01")

    def test_bounded(self) -> None:
        """However many distinct APDUs pass, at most 256 are kept; long ones never."""
        for i in range(1000):
            decode_command(b"\x80\xca" + i.to_bytes(2, "big"))
        long = b"\x80\xe2\x00\x00\x00\x01\x2c" + bytes(300)
        self.assertEqual(decode_command(long), CommandApdu.decode(long))
        self.assertLessEqual(len(apdu._DECODED), 256)
        self.assertNotIn(long, apdu._DECODED)
