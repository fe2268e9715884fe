"""Tests for TS 102 226 expanded scripts and the compact format (bipgw.codec.ram)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import bipgw.codec.ram as ram_package
from bipgw.codec import CodecError
from bipgw.codec.ram import (
    BadFormat,
    CommandScript,
    RamError,
    ResponseScript,
    ScriptChaining,
    ScriptChainingResult,
    encode_compact,
    is_outgoing_tpdu,
    split_compact,
)
from bipgw.codec.tlv import TlvError, decode_ber_one, encode_ber, encode_ber_indefinite
from tests import vectors

GET_DATA_0085 = bytes.fromhex("80ca008500")


def _vector(name: str) -> bytes:
    v = vectors.by_name("ts102226_expanded", name)
    return bytes.fromhex(v.get("script") or v["response"])


class CommandVectorTests(SynchronousTestCase):
    """The public command script vectors decode and re-encode byte for byte."""

    def test_indefiniteGetData(self) -> None:
        """The real HTTP trace's AE script holds GET DATA 0085."""
        raw = _vector("indefinite command script GET DATA 0085 (real HTTP trace)")
        script = CommandScript.decode(raw)
        self.assertEqual(script, CommandScript((GET_DATA_0085,), definite=False))
        self.assertEqual(script.encode(), raw)

    def test_indefiniteGetStatus(self) -> None:
        """The GET STATUS script keeps its case 4 APDU whole, Le included."""
        raw = _vector("indefinite command script GET STATUS ISD")
        script = CommandScript.decode(raw)
        self.assertEqual(script.commands, (bytes.fromhex("80f28002024f0000"),))
        self.assertEqual(script.encode(), raw)

    def test_definite(self) -> None:
        """The constructed AA vector decodes to the same command."""
        raw = _vector("definite command script (constructed)")
        script = CommandScript.decode(raw)
        self.assertEqual(script, CommandScript((GET_DATA_0085,), definite=True))
        self.assertEqual(script.encode(), raw)

    def test_chainingValues(self) -> None:
        """Each documented 83 01 xx value maps to its ScriptChaining member and round trips."""
        values = vectors.by_name("ts102226_expanded", "script chaining TLV values")["values"]
        members = {
            "830101": ScriptChaining.FIRST_DELETE_ON_RESET,
            "830111": ScriptChaining.FIRST_KEEP_ON_RESET,
            "830102": ScriptChaining.SUBSEQUENT,
            "830103": ScriptChaining.LAST,
        }
        self.assertEqual(set(values), set(members))
        for tlv, member in members.items():
            script = CommandScript((GET_DATA_0085,), True, chaining=member)
            raw = script.encode()
            self.assertEqual(raw.hex(), "aa0a" + tlv + "220580ca008500")
            self.assertEqual(CommandScript.decode(raw), script)


class ResponseVectorTests(SynchronousTestCase):
    """The public response script vectors decode and re-encode byte for byte."""

    def test_realCardIndefinite(self) -> None:
        """AF 80 23 02 6A 88 00 00: one R-APDU, no executed count, SW 6A88."""
        raw = _vector("indefinite response, SW 6A88")
        response = ResponseScript.decode(raw)
        self.assertEqual(response, ResponseScript((b"\x6a\x88",), None, False))
        self.assertEqual(response.sw(), 0x6A88)
        self.assertEqual(response.data(), b"")
        self.assertEqual(response.status_words, (0x6A88,))
        self.assertEqual(response.encode(), raw)

    def test_definite(self) -> None:
        """AB 07 80 01 01 23 02 6A 88: one executed, SW 6A88."""
        raw = _vector("definite response (constructed): 1 executed, SW 6A88")
        response = ResponseScript.decode(raw)
        self.assertEqual((response.executed, response.definite), (1, True))
        self.assertEqual(response.sw(0), 0x6A88)
        self.assertEqual(response.encode(), raw)

    def test_accessors(self) -> None:
        """sw()/data() split each R-APDU into data and status word."""
        response = ResponseScript((b"\x01\x02\x90\x00", b"\x61\x10"), 2, True)
        self.assertEqual([response.sw(0), response.sw(1)], [0x9000, 0x6110])
        self.assertEqual([response.data(0), response.data(1)], [b"\x01\x02", b""])


class CommandFormTests(SynchronousTestCase):
    """Lengths, optional TLVs and their order."""

    def test_longFormLengths(self) -> None:
        """C-APDUs of 128+ bytes use 22 81 xx / 22 82 xxxx, and the template too."""
        apdu200 = b"\x80\xe8\x00\x00\xc3" + bytes(195)
        apdu300 = b"\x80\xe8\x00\x01\x00\x01\x27" + bytes(293)
        raw = CommandScript((apdu200, apdu300), True).encode()
        self.assertEqual(raw[:4].hex(), "aa8201fb")
        self.assertEqual(raw[4:7].hex(), "2281c8")
        self.assertEqual(raw[7 + 200 : 7 + 204].hex(), "2282012c")
        self.assertEqual(CommandScript.decode(raw).commands, (apdu200, apdu300))
        self.assertEqual(decode_ber_one(raw).children()[1].value, apdu300)

    def test_actionsEncodedFirst(self) -> None:
        """Chaining, immediate and error action precede the C-APDUs."""
        script = CommandScript(
            (GET_DATA_0085,), False, ScriptChaining.LAST, immediate_action=b"\x01", error_action=b""
        )
        raw = script.encode()
        self.assertEqual(
            raw.hex(), "ae80" + "830103" + "810101" + "8200" + "220580ca008500" + "0000"
        )
        self.assertEqual(CommandScript.decode(raw), script)

    def test_nonMinimalAndCrFormsAccepted(self) -> None:
        """22 81 05 and the CR form A2 decode to the same commands (general path)."""
        raw = bytes.fromhex("aa08228105" + "80ca008500")
        self.assertEqual(CommandScript.decode(raw).commands, (GET_DATA_0085,))
        raw = bytes.fromhex("ae80" + "a20580ca008500" + "0000")
        self.assertEqual(CommandScript.decode(raw).commands, (GET_DATA_0085,))

    def test_emptyScript(self) -> None:
        """A script without commands is AA 00 or AE 80 00 00."""
        self.assertEqual(CommandScript((), True).encode().hex(), "aa00")
        self.assertEqual(CommandScript((), False).encode().hex(), "ae800000")
        self.assertEqual(CommandScript.decode(bytes.fromhex("ae800000")), CommandScript((), False))


class CommandErrorTests(SynchronousTestCase):
    """Bad scripts are refused with the field and offset named."""

    def _refused(self, hexdata: str) -> RamError:
        with self.assertRaises(RamError) as ctx:
            CommandScript.decode(bytes.fromhex(hexdata.replace(" ", "")))
        return ctx.exception

    def test_unknownTag(self) -> None:
        """An unknown TLV is an error naming the tag and its offset."""
        e = self._refused("aa0a 220580ca008500 990100")
        self.assertEqual((e.field, e.offset), ("command script: tag 99", 9))

    def test_unknownMultiByteTag(self) -> None:
        """A multi-byte unknown tag is named whole."""
        e = self._refused("ae80 9f700100 0000")
        self.assertIn("9F70", str(e))

    def test_wrongTemplate(self) -> None:
        """Other templates and mismatched length forms are refused."""
        self.assertEqual(self._refused("ab00").offset, 0)
        self.assertEqual(self._refused("aa80 0000").offset, 1)
        self.assertEqual(self._refused("ae00").offset, 1)
        self.assertEqual(self._refused("aa06 220580ca00").offset, 1)
        self.assertEqual(self._refused("aa05 220580ca00").offset, 2)
        self._refused("aa")
        self._refused("aa85 0000000000")

    def test_endOfContents(self) -> None:
        """A missing or early end-of-contents is refused."""
        self._refused("ae80 220580ca008500")
        self._refused("ae80 220580ca008500 0000 00")
        self._refused("ae80 220580ca008500 0001")

    def test_tlvErrorWrapped(self) -> None:
        """TLV-level failures surface as RamError, with the TlvError as cause."""
        e = self._refused("ae80 220980ca008500 0000")
        self.assertNotIsInstance(e, TlvError)
        self.assertIsInstance(e, CodecError)
        self.assertIsInstance(e.__cause__, TlvError)
        self.assertEqual(e.offset, 2)
        self.assertTrue(str(e).startswith("TS 102 226: field 'command script: tag 22'"))

    def test_orderRules(self) -> None:
        """Chaining must come first; actions must precede the first C-APDU, once."""
        self.assertEqual(self._refused("aa0a 220580ca008500 830101").offset, 9)
        self._refused("aa0a 220580ca008500 810101")
        self._refused("aa06 810101 810101")
        self._refused("aa06 820101 820101")
        self._refused("aa03 830104")
        self._refused("aa04 83020101")

    def test_shortApdu(self) -> None:
        """A C-APDU below 4 bytes is refused on decode and on construction."""
        self._refused("aa05 220380ca00")
        self.assertRaises(RamError, CommandScript, (b"\x80\xca",), True)
        self.assertRaises(RamError, CommandScript, [GET_DATA_0085], True)
        self.assertRaises(RamError, CommandScript, (GET_DATA_0085,), True, 0x05)

    def test_sizeLimit(self) -> None:
        """Scripts over max_size are refused up front."""
        raw = CommandScript((GET_DATA_0085,) * 10, True).encode()
        self.assertRaises(RamError, CommandScript.decode, raw, max_size=20)


class ResponseErrorTests(SynchronousTestCase):
    """Bad response scripts are refused with the field named."""

    def _refused(self, hexdata: str) -> RamError:
        with self.assertRaises(RamError) as ctx:
            ResponseScript.decode(bytes.fromhex(hexdata.replace(" ", "")))
        return ctx.exception

    def test_definiteNeedsExecutedCount(self) -> None:
        """AB without a leading 80 TLV is refused; so is the count elsewhere."""
        self._refused("ab04 23026a88")
        self._refused("ab07 23026a88 800101")
        self.assertRaises(RamError, ResponseScript, (b"\x90\x00",), None, True)

    def test_badFormatLast(self) -> None:
        """90 01 xx decodes when last and is refused elsewhere or with an unknown value."""
        response = ResponseScript.decode(bytes.fromhex("ab06 800100 900101".replace(" ", "")))
        self.assertEqual(response.bad_format, BadFormat.UNKNOWN_TAG)
        self.assertEqual(response.responses, ())
        self._refused("ab0a 800101 900101 23029000")
        self._refused("ab06 800100 900109")

    def test_optionalResponses(self) -> None:
        """Chaining and immediate action responses round trip in front of the R-APDUs."""
        response = ResponseScript(
            (b"\x90\x00",),
            1,
            True,
            chaining_response=ScriptChainingResult.NO_PREVIOUS_SCRIPT,
            immediate_action_response=b"\x01",
        )
        raw = response.encode()
        self.assertEqual(raw.hex(), "ab0d" + "800101" + "830101" + "810101" + "23029000")
        self.assertEqual(ResponseScript.decode(raw), response)
        self._refused("ab0a 800101 23029000 830101")
        self._refused("ab06 800101 830109")

    def test_shortRApdu(self) -> None:
        """An R-APDU needs at least the two status bytes."""
        self._refused("af80 230190 0000")
        self.assertRaises(RamError, ResponseScript, (b"\x90",), None, False)

    def test_unknownTag(self) -> None:
        """Unknown tags are refused with their offset."""
        self.assertEqual(self._refused("af80 23029000 040100 0000").offset, 6)

    def test_largeExecutedCount(self) -> None:
        """More than 255 executed commands use a two-byte count."""
        response = ResponseScript((), 300, True)
        self.assertEqual(response.encode().hex(), "ab0480020" + "12c")
        self.assertEqual(ResponseScript.decode(response.encode()), response)
        self.assertRaises(RamError, ResponseScript, (), 70000, True)


class CompactTests(SynchronousTestCase):
    """Compact (SMS) scripts: concatenated T=0 TPDUs."""

    def test_publicExamples(self) -> None:
        """The PROTOCOLS.md 2.1 scripts split into their commands."""
        select = bytes.fromhex("a0a40000027f20")
        get_response = bytes.fromhex("a0c0000016")
        self.assertEqual(split_compact(select + get_response), (select, get_response))
        install = bytes.fromhex("80e60c0005aabbccddee")
        self.assertEqual(
            split_compact(install + bytes.fromhex("00c0000000")),
            (install, bytes.fromhex("00c0000000")),
        )

    def test_pushInCompact(self) -> None:
        """The PUSH vector is a case 3 TPDU and splits back whole."""
        push = bytes.fromhex(
            vectors.by_name(
                "cat_bip_tlvs",
                "TS 102 226 PUSH (request for BIP channel opening) with OPEN CHANNEL TLVs",
            )["capdu"]
        )
        self.assertEqual(split_compact(encode_compact([push, push])), (push, push))

    def test_directionTable(self) -> None:
        """P3 is Le for the case 2 instructions, Lc otherwise (STATUS vs GET STATUS)."""
        self.assertTrue(is_outgoing_tpdu(bytes.fromhex("80f20000")))
        self.assertFalse(is_outgoing_tpdu(bytes.fromhex("80f28002")))
        self.assertTrue(is_outgoing_tpdu(bytes.fromhex("80ca0085")))
        self.assertTrue(is_outgoing_tpdu(bytes.fromhex("00700000")))
        self.assertFalse(is_outgoing_tpdu(bytes.fromhex("00708001")))
        self.assertFalse(is_outgoing_tpdu(bytes.fromhex("00a40400")))

    def test_refusals(self) -> None:
        """Case 4 with Le, 4-byte case 1 and truncated data are refused, naming the command."""
        with self.assertRaises(RamError) as ctx:
            encode_compact([GET_DATA_0085, bytes.fromhex("00a4040008a00000015100000000")])
        self.assertEqual(ctx.exception.field, "command 1")
        self.assertRaises(RamError, encode_compact, [bytes.fromhex("80ca0085")])
        self.assertRaises(RamError, encode_compact, [bytes.fromhex("80ca008500ff")])
        with self.assertRaises(RamError) as ctx:
            split_compact(GET_DATA_0085 + bytes.fromhex("00a4040008a000"))
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("command 1", 5))
        self.assertRaises(RamError, split_compact, bytes.fromhex("80ca00"))

    def test_customDirection(self) -> None:
        """A caller-supplied direction rule is honoured."""
        raw = bytes.fromhex("80aa000002") + bytes.fromhex("80bb000003")
        self.assertEqual(len(split_compact(raw, outgoing=lambda header: True)), 2)
        self.assertRaises(RamError, split_compact, raw, outgoing=lambda header: False)


_apdus = st.lists(
    st.builds(
        lambda header, body: header + body,
        st.binary(min_size=4, max_size=4),
        st.binary(max_size=296),
    ),
    max_size=30,
)
_responses = st.lists(st.binary(min_size=2, max_size=300), max_size=30)
_raw_values = st.none() | st.binary(max_size=4)


class PropertyTests(SynchronousTestCase):
    """Round trips and hostile input, by Hypothesis."""

    @given(
        _apdus,
        st.booleans(),
        st.none() | st.sampled_from(ScriptChaining),
        _raw_values,
        _raw_values,
    )
    def test_commandRoundTrip(
        self,
        apdus: list[bytes],
        definite: bool,
        chaining: ScriptChaining | None,
        immediate: bytes | None,
        error: bytes | None,
    ) -> None:
        """Any command script (0..30 APDUs of up to 300 bytes) decodes to itself."""
        script = CommandScript(tuple(apdus), definite, chaining, immediate, error)
        raw = script.encode()
        self.assertEqual(CommandScript.decode(raw), script)
        self.assertEqual(raw[0], 0xAA if definite else 0xAE)

    @given(_apdus, st.booleans())
    def test_fastAndGeneralPathsAgree(self, apdus: list[bytes], definite: bool) -> None:
        """Items written with 83-form lengths (general path) give the same commands
        as the minimal encoding (fast path)."""
        items = b"".join(b"\x22\x83" + len(a).to_bytes(3, "big") + a for a in apdus)
        raw = encode_ber(0xAA, items) if definite else encode_ber_indefinite(0xAE, items)
        self.assertEqual(CommandScript.decode(raw), CommandScript(tuple(apdus), definite))

    @given(
        _responses,
        st.booleans(),
        st.integers(0, 0xFFFF),
        st.none() | st.sampled_from(BadFormat),
        st.none() | st.sampled_from(ScriptChainingResult),
        _raw_values,
    )
    def test_responseRoundTrip(
        self,
        responses: list[bytes],
        definite: bool,
        executed: int,
        bad: BadFormat | None,
        chaining: ScriptChainingResult | None,
        immediate: bytes | None,
    ) -> None:
        """Any response script decodes to itself."""
        count = executed if definite else None
        response = ResponseScript(tuple(responses), count, definite, bad, chaining, immediate)
        self.assertEqual(ResponseScript.decode(response.encode()), response)

    @given(st.binary(max_size=200))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes, alone or behind a script header, only ever raise RamError."""
        for candidate in (
            data,
            b"\xaa" + data,
            b"\xae\x80" + data,
            b"\xab" + data,
            b"\xaf\x80" + data,
        ):
            for decode in (CommandScript.decode, ResponseScript.decode):
                try:
                    decode(candidate)
                except RamError:
                    pass

    @given(_apdus, st.booleans(), st.data())
    def test_mutatedScripts(self, apdus: list[bytes], definite: bool, data: st.DataObject) -> None:
        """A valid script with a byte changed, inserted or dropped only raises RamError."""
        raw = bytearray(CommandScript(tuple(apdus), definite).encode())
        position = data.draw(st.integers(0, len(raw)))
        byte = data.draw(st.integers(0, 255))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set" and position < len(raw):
            raw[position] = byte
        elif action == "insert":
            raw.insert(position, byte)
        elif position < len(raw):
            del raw[position]
        try:
            CommandScript.decode(bytes(raw))
        except RamError:
            pass

    @given(
        st.lists(
            st.one_of(
                st.builds(
                    lambda ins, p3: bytes((0x80, ins, 0, 0, p3)),
                    st.sampled_from([0xB0, 0xB2, 0xC0, 0xCA, 0x12]),
                    st.integers(0, 255),
                ),
                st.builds(
                    lambda ins, body: bytes((0x80, ins, 0x80, 0, len(body))) + body,
                    st.sampled_from([0xA4, 0xD6, 0xE6, 0xE8, 0xF2, 0xEC]),
                    st.binary(max_size=255),
                ),
            ),
            max_size=20,
        )
    )
    def test_compactRoundTrip(self, commands: list[bytes]) -> None:
        """What encode_compact accepts, split_compact splits back identically."""
        self.assertEqual(split_compact(encode_compact(commands)), tuple(commands))

    @given(st.binary(max_size=300))
    def test_compactRandomBytes(self, data: bytes) -> None:
        """Random compact data splits into valid commands or raises RamError."""
        try:
            commands = split_compact(data)
        except RamError:
            return
        self.assertEqual(b"".join(commands), data)
        self.assertEqual(encode_compact(commands), data)


class ExportTests(SynchronousTestCase):
    """The package re-exports what its private modules define."""

    def test_allNamesExist(self) -> None:
        """Every name in __all__ is an attribute of bipgw.codec.ram, and RamError
        belongs to the codec error family."""
        for name in ram_package.__all__:
            self.assertTrue(hasattr(ram_package, name), name)
        self.assertTrue(issubclass(RamError, CodecError))
        self.assertEqual(RamError.codec, "TS 102 226")
