"""Tests for remote APDUs over SMS-PP: RemoteScript and RemoteResult (bipgw.codec.ram).

Checked against the public vectors: the constructed definite script and
response of TS 102 226, the compact PoR data of pySim's PoR vectors and the
real SJA2 card's two-command PoR, opened with the OTA codec.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import Kic, Kid, OtaKeys, Spi, decode_response
from bipgw.codec.ram import RamError, RemoteFormat, RemoteResult, RemoteScript
from tests import vectors

GET_DATA_0085 = bytes.fromhex("80ca008500")
C = RemoteFormat.COMPACT
E = RemoteFormat.EXPANDED


def _hex(section: str, name: str, key: str) -> bytes:
    return bytes.fromhex(vectors.by_name(section, name)[key])


class VectorTests(SynchronousTestCase):
    """The public vectors, both ways."""

    def test_expandedScriptVector(self) -> None:
        """One GET DATA in the expanded form is the constructed AA vector, byte for byte."""
        raw = _hex("ts102226_expanded", "definite command script (constructed)", "script")
        self.assertEqual(RemoteScript((GET_DATA_0085,), E).encode(), raw)
        self.assertEqual(RemoteScript.decode(raw), RemoteScript((GET_DATA_0085,), E))

    def test_expandedIndefiniteScriptVector(self) -> None:
        """The real HTTP trace's AE script is read as the expanded form too."""
        raw = _hex(
            "ts102226_expanded",
            "indefinite command script GET DATA 0085 (real HTTP trace)",
            "script",
        )
        self.assertEqual(RemoteScript.decode(raw), RemoteScript((GET_DATA_0085,), E))

    def test_expandedResultVectors(self) -> None:
        """The definite and indefinite response vectors give one R-APDU, SW 6A88."""
        definite = _hex(
            "ts102226_expanded", "definite response (constructed): 1 executed, SW 6A88", "response"
        )
        result = RemoteResult.decode(definite, E, sent=1)
        self.assertEqual(result, RemoteResult(E, 1, (b"\x6a\x88",)))
        self.assertEqual(result.encode(), definite)
        self.assertEqual(result.last_sw, 0x6A88)
        indefinite = _hex("ts102226_expanded", "indefinite response, SW 6A88", "response")
        self.assertEqual(RemoteResult.decode(indefinite, E), RemoteResult(E, 1, (b"\x6a\x88",)))

    def test_compactResultVector(self) -> None:
        """pySim's PoR data 01 6132: one command ran, SW 6132, no data."""
        data = bytes.fromhex(
            vectors.by_name("scp80_sms_response_packets", "PoR plain")["decoded"]["data"]
        )
        result = RemoteResult.decode(data, C, sent=1)
        self.assertEqual(result, RemoteResult(C, 1, (b"\x61\x32",)))
        self.assertEqual(result.encode(), data)

    def test_realCardTwoCommands(self) -> None:
        """The SJA2 card's ciphered PoR, opened with the OTA codec, carries a
        compact result: 2 commands ran, the last SW 9000 with 22 bytes of data."""
        v = vectors.by_name(
            "scp80_sms_response_packets", "real card SJA2 PoR ciphered+CC, 2 commands"
        )
        keys = OtaKeys(kic_key=bytes.fromhex(v["kic_key"]), kid_key=bytes.fromhex(v["kid_key"]))
        spi = Spi.from_bytes(b"\x16" + bytes.fromhex(v["spi2"]))
        opened = decode_response(
            bytes.fromhex(v["sms_user_data"]),
            spi,
            keys,
            kic=Kic.from_byte(0x15),  # key 1, 3DES 2-key (the vector's "algo")
            kid=Kid.from_byte(0x15, spi.por_checksum),
        )
        result = RemoteResult.decode(opened.packet.data, C, sent=2)
        self.assertEqual((result.executed, result.last_sw), (2, 0x9000))
        self.assertEqual(len(result.responses[0]), 22 + 2)


class ScriptTests(SynchronousTestCase):
    """RemoteScript's rules."""

    def test_compactIsConcatenation(self) -> None:
        """The compact form is the TPDUs one after the other (PROTOCOLS.md 2.1)."""
        commands = (bytes.fromhex("a0a40000027f20"), bytes.fromhex("a0c0000016"))
        raw = RemoteScript(commands, C).encode()
        self.assertEqual(raw, b"".join(commands))
        self.assertEqual(RemoteScript.decode(raw), RemoteScript(commands, C))

    def test_compactRefusesCase4WithLe(self) -> None:
        """A case 4 APDU with a trailing Le cannot travel compact: refused, named."""
        with self.assertRaises(RamError) as ctx:
            RemoteScript((GET_DATA_0085, bytes.fromhex("80f28002024f0000")), C).encode()
        self.assertEqual(ctx.exception.field, "command 1")
        # The expanded form carries it whole.
        RemoteScript((bytes.fromhex("80f28002024f0000"),), E).encode()

    def test_emptyRefused(self) -> None:
        """No command, a too-short one, or no data at all is a RamError."""
        self.assertRaises(RamError, RemoteScript, (), E)
        self.assertRaises(RamError, RemoteScript, (b"\x80",), E)
        self.assertRaises(RamError, RemoteScript.decode, b"")


class ResultTests(SynchronousTestCase):
    """RemoteResult's rules."""

    def test_moreThanSent(self) -> None:
        """A count above the script's commands is refused (not our script's answer)."""
        data = RemoteResult(E, 2, (b"\x90\x00", b"\x90\x00")).encode()
        with self.assertRaises(RamError) as ctx:
            RemoteResult.decode(data, E, sent=1)
        self.assertIn("script had 1", str(ctx.exception))
        self.assertRaises(RamError, RemoteResult.decode, b"\x03\x90\x00", C, sent=2)

    def test_moreResponsesThanExecuted(self) -> None:
        """Two R-APDUs under an executed count of 1 is refused."""
        raw = bytes.fromhex("ab0a8001012302900023029000")
        self.assertRaises(RamError, RemoteResult.decode, raw, E)

    def test_rejected(self) -> None:
        """The card's bad-format code survives the round trip."""
        result = RemoteResult(E, 0, (), rejected=1)
        self.assertEqual(RemoteResult.decode(result.encode(), E), result)

    def test_compactNeedsThreeBytes(self) -> None:
        """Fewer than count and SW is a RamError naming the layout."""
        with self.assertRaises(RamError) as ctx:
            RemoteResult.decode(b"\x01\x90", C)
        self.assertIn("count(1) SW(2)", str(ctx.exception))

    def test_forCommands(self) -> None:
        """A card's answer: all R-APDUs expanded, the last one compact."""
        rapdus = (b"\x01\x02\x90\x00", b"\x6a\x82")
        self.assertEqual(RemoteResult.for_commands(E, rapdus).responses, rapdus)
        compact = RemoteResult.for_commands(C, rapdus)
        self.assertEqual((compact.executed, compact.responses), (2, (b"\x6a\x82",)))
        self.assertRaises(RamError, RemoteResult.for_commands, C, ())


_apdus = st.lists(
    st.builds(lambda h, b: h + b, st.binary(min_size=4, max_size=4), st.binary(max_size=250)),
    min_size=1,
    max_size=20,
)
_compact = st.lists(
    st.one_of(
        st.builds(
            lambda ins, p3: bytes((0x80, ins, 0, 0, p3)),
            st.sampled_from([0xB0, 0xB2, 0xC0, 0xCA]),
            st.integers(0, 255),
        ),
        st.builds(
            lambda ins, body: bytes((0x80, ins, 0x80, 0, len(body))) + body,
            st.sampled_from([0xA4, 0xD6, 0xE6, 0xE8, 0xF2]),
            st.binary(max_size=255),
        ),
    ),
    min_size=1,
    max_size=20,
)
_rapdus = st.lists(st.binary(min_size=2, max_size=258), min_size=1, max_size=20)


class PropertyTests(SynchronousTestCase):
    """Round trips and hostile input, by Hypothesis."""

    @given(_apdus)
    def test_expandedScriptRoundTrip(self, commands: list[bytes]) -> None:
        """Any expanded script decodes to itself, and starts with the AA template."""
        script = RemoteScript(commands, E)
        raw = script.encode()
        self.assertEqual(raw[0], 0xAA)
        self.assertEqual(RemoteScript.decode(raw), script)

    @given(_compact)
    def test_compactScriptRoundTrip(self, commands: list[bytes]) -> None:
        """Any compact script of TPDUs decodes to itself."""
        script = RemoteScript(commands, C)
        self.assertEqual(RemoteScript.decode(script.encode()), script)

    @given(_rapdus, st.sampled_from(RemoteFormat))
    def test_resultRoundTrip(self, rapdus: list[bytes], format: RemoteFormat) -> None:
        """A card's result decodes to itself in either form."""
        result = RemoteResult.for_commands(format, rapdus)
        self.assertEqual(RemoteResult.decode(result.encode(), format, sent=len(rapdus)), result)

    @given(st.binary(max_size=400), st.sampled_from(RemoteFormat))
    def test_randomBytes(self, data: bytes, format: RemoteFormat) -> None:
        """Random bytes, alone or behind a template tag, only ever raise RamError."""
        for candidate in (data, b"\xaa" + data, b"\xab" + data, b"\xaf\x80" + data):
            try:
                RemoteScript.decode(candidate)
            except RamError:
                pass
            try:
                RemoteResult.decode(candidate, format, sent=5)
            except RamError:
                pass
