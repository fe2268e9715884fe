"""Hypothesis properties of the OTA codec: round trips over every algorithm and SPI,
counter rules, tampering, wrong keys, and hostile bytes that may only raise OtaError."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    COUNTER_MAX,
    BadChecksum,
    ChecksumKind,
    CipheringError,
    CommandPacket,
    CounterBlocked,
    CounterMode,
    CounterTooHigh,
    CounterTooLow,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaError,
    OtaKeys,
    PorMode,
    PorStatus,
    ResponsePacket,
    Spi,
    decode_response,
    parse_command_header,
    secure_command,
    secure_response,
    strip_command_udh,
    verify_command,
    verify_response,
)

CIPHER_KEY_SIZES = {
    KicAlgorithm.DES_CBC: (8,),
    KicAlgorithm.DES_ECB: (8,),
    KicAlgorithm.TDES_2KEY: (16,),
    KicAlgorithm.TDES_3KEY: (24,),
    KicAlgorithm.AES_CBC: (16, 24, 32),
}
MAC_KEY_SIZES = {
    KidAlgorithm.DES_CBC: (8,),
    KidAlgorithm.TDES_2KEY: (16,),
    KidAlgorithm.TDES_3KEY: (24,),
    KidAlgorithm.AES_CMAC: (16, 24, 32),
}
CC_FAMILY = [*MAC_KEY_SIZES, KidAlgorithm.IMPLICIT, KidAlgorithm.PROPRIETARY]
CLEAR_FAILURES = {1, 2, 3, 4, 5, 6, 9, 10}

tars = st.binary(min_size=3, max_size=3)
counters = st.integers(min_value=0, max_value=COUNTER_MAX)
payloads = st.binary(max_size=120)
any_key = st.sampled_from([0, 8, 16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@st.composite
def _key(draw: st.DrawFn, sizes: tuple[int, ...]) -> bytes:
    n = draw(st.sampled_from(sizes))
    return draw(st.binary(min_size=n, max_size=n))


@st.composite
def _cipher(draw: st.DrawFn, used: bool) -> tuple[Kic, bytes]:
    """A KIc and its key; when unused, any algorithm (even implicit) and any key."""
    index = draw(st.integers(0, 15))
    if used:
        algorithm = draw(st.sampled_from(list(CIPHER_KEY_SIZES)))
        return Kic(index, algorithm), draw(_key(CIPHER_KEY_SIZES[algorithm]))
    return Kic(index, draw(st.sampled_from(list(KicAlgorithm)))), draw(any_key)


@st.composite
def _integrity(draw: st.DrawFn, kind: ChecksumKind) -> tuple[Kid, bytes]:
    """A KID fitting the checksum kind, and its key."""
    index = draw(st.integers(0, 15))
    if kind == ChecksumKind.RC:
        return Kid(index, draw(st.sampled_from([KidAlgorithm.CRC16, KidAlgorithm.CRC32]))), draw(
            any_key
        )
    if kind == ChecksumKind.CC:
        algorithm = draw(st.sampled_from(list(MAC_KEY_SIZES)))
        return Kid(index, algorithm), draw(_key(MAC_KEY_SIZES[algorithm]))
    return Kid(index, draw(st.sampled_from(CC_FAMILY))), draw(any_key)


@st.composite
def commands(
    draw: st.DrawFn,
    kinds: tuple[ChecksumKind, ...] = (ChecksumKind.NONE, ChecksumKind.RC, ChecksumKind.CC),
) -> tuple[CommandPacket, OtaKeys]:
    """Any packet the codec can secure, with matching keys."""
    kind = draw(st.sampled_from(kinds))
    ciphered = draw(st.booleans())
    kic, kic_key = draw(_cipher(ciphered))
    kid, kid_key = draw(_integrity(kind))
    spi = Spi(
        checksum=kind,
        ciphered=ciphered,
        counter=draw(st.sampled_from(list(CounterMode))),
        por=draw(st.sampled_from(list(PorMode))),
        por_checksum=draw(st.sampled_from(list(ChecksumKind))),
        por_ciphered=draw(st.booleans()),
        por_via_submit=draw(st.booleans()),
    )
    packet = CommandPacket(spi, kic, kid, draw(tars), draw(counters), draw(payloads))
    return packet, OtaKeys(kic_key=kic_key, kid_key=kid_key)


@st.composite
def responses(draw: st.DrawFn) -> tuple[ResponsePacket, Spi, OtaKeys, Kic, Kid]:
    """Any PoR the codec can secure, with the command's SPI, KIc, KID and keys."""
    kind = draw(st.sampled_from([ChecksumKind.NONE, ChecksumKind.RC, ChecksumKind.CC]))
    ciphered = draw(st.booleans())
    kic, kic_key = draw(_cipher(ciphered))
    kid, kid_key = draw(_integrity(kind))
    spi = Spi(por=PorMode.ALWAYS, por_checksum=kind, por_ciphered=ciphered)
    por = ResponsePacket(
        draw(tars), draw(counters), draw(st.sampled_from(list(PorStatus))), draw(payloads)
    )
    return por, spi, OtaKeys(kic_key=kic_key, kid_key=kid_key), kic, kid


def _flip(raw: bytes, data: st.DataObject) -> bytes:
    index = data.draw(st.integers(0, len(raw) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    return raw[:index] + bytes((raw[index] ^ mask,)) + raw[index + 1 :]


def _without_parity(key: bytes) -> bytes:
    # DES ignores the low bit of every key byte: keys differing only there are equal.
    return bytes(b & 0xFE for b in key)


class _NoKeysInErrors:
    """Assert that an OtaError's text carries none of the keys."""

    def assertNoKeys(self: Any, error: OtaError, keys: OtaKeys) -> None:
        text = str(error) + repr(error)
        for key in (keys.kic_key, keys.kid_key):
            if len(key) >= 8:
                self.assertNotIn(key.hex(), text.replace(" ", ""))
                self.assertNotIn(repr(key)[2:-1], text)


class CommandPropertyTests(SynchronousTestCase, _NoKeysInErrors):
    """Secure/verify over every algorithm and SPI combination."""

    @given(commands())
    def test_roundTrip(self, case: tuple[CommandPacket, OtaKeys]) -> None:
        """verify_command(secure_command(p)) == p, with consistent CPL/CHL and the clear header."""
        packet, keys = case
        raw = secure_command(packet, keys)
        self.assertEqual(int.from_bytes(raw[:2], "big"), len(raw) - 2)
        self.assertEqual(
            parse_command_header(raw), (packet.spi, packet.kic, packet.kid, packet.tar)
        )
        self.assertEqual(verify_command(raw, keys, last_counter=None), packet)
        self.assertEqual(strip_command_udh(b"\x02\x70\x00" + raw), raw)

    @given(commands(), st.data())
    def test_tamperedByte(self, case: tuple[CommandPacket, OtaKeys], data: st.DataObject) -> None:
        """Any changed byte raises OtaError when a CC (or a clear RC) protects the packet;
        without protection it may pass, but nothing but OtaError is ever raised."""
        packet, keys = case
        bad = _flip(secure_command(packet, keys), data)
        try:
            verify_command(bad, keys, last_counter=None)
        except OtaError as e:
            self.assertNoKeys(e, keys)
            return
        kind = packet.spi.checksum
        # A ciphered RC catches a change with probability 1 - 2**-16 or 2**-32 only.
        self.assertTrue(
            kind == ChecksumKind.NONE or (kind == ChecksumKind.RC and packet.spi.ciphered)
        )

    @given(commands(kinds=(ChecksumKind.CC,)), st.data())
    def test_wrongKeys(self, case: tuple[CommandPacket, OtaKeys], data: st.DataObject) -> None:
        """A CC packet checked with another KID key (and maybe KIc key) fails as
        BadChecksum or CipheringError."""
        packet, keys = case
        raw = secure_command(packet, keys)
        kid_key = data.draw(st.binary(min_size=len(keys.kid_key), max_size=len(keys.kid_key)))
        assume(_without_parity(kid_key) != _without_parity(keys.kid_key))
        kic_key = keys.kic_key
        if packet.spi.ciphered and data.draw(st.booleans(), label="wrong KIc too"):
            kic_key = data.draw(st.binary(min_size=len(kic_key), max_size=len(kic_key)))
        wrong = OtaKeys(kic_key=kic_key, kid_key=kid_key)
        with self.assertRaises((BadChecksum, CipheringError)):
            verify_command(raw, wrong, last_counter=None)

    @given(commands(kinds=(ChecksumKind.CC,)), st.data())
    def test_wrongCipherKey(self, case: tuple[CommandPacket, OtaKeys], data: st.DataObject) -> None:
        """A ciphered CC packet deciphered with another KIc key fails as BadChecksum or
        CipheringError."""
        packet, keys = case
        assume(packet.spi.ciphered)
        raw = secure_command(packet, keys)
        kic_key = data.draw(st.binary(min_size=len(keys.kic_key), max_size=len(keys.kic_key)))
        assume(_without_parity(kic_key) != _without_parity(keys.kic_key))
        with self.assertRaises((BadChecksum, CipheringError)):
            verify_command(raw, OtaKeys(kic_key=kic_key, kid_key=keys.kid_key), last_counter=None)

    @given(
        st.sampled_from(list(CounterMode)),
        counters,
        st.data(),
    )
    def test_counterRules(self, mode: CounterMode, counter: int, data: st.DataObject) -> None:
        """The outcome follows TS 102 225: modes 00/01 never check; 10 needs higher; 11 needs
        exactly one higher; a stored maximum blocks."""
        near = [c for c in (counter - 2, counter - 1, counter, counter + 1, COUNTER_MAX) if c >= 0]
        last = data.draw(
            st.one_of(st.sampled_from([c for c in near if c <= COUNTER_MAX]), counters)
        )
        keys = OtaKeys(bytes(16), bytes(range(16)))
        spi = Spi(checksum=ChecksumKind.CC, ciphered=True, counter=mode)
        packet = CommandPacket(
            spi, Kic(1, KicAlgorithm.AES_CBC), Kid(1, KidAlgorithm.AES_CMAC), b"abc", counter, b"x"
        )
        raw = secure_command(packet, keys)
        expected: type[OtaError] | None = None
        if mode in (CounterMode.HIGHER, CounterMode.ONE_HIGHER):
            if last == COUNTER_MAX:
                expected = CounterBlocked
            elif counter <= last:
                expected = CounterTooLow
            elif mode == CounterMode.ONE_HIGHER and counter != last + 1:
                expected = CounterTooHigh
        if expected is None:
            self.assertEqual(verify_command(raw, keys, last_counter=last).counter, counter)
        else:
            self.assertRaises(expected, verify_command, raw, keys, last_counter=last)


@st.composite
def plausible_commands(draw: st.DrawFn) -> bytes:
    """Random packets with a right CPL and valid SPI/KIc/KID, to get past the first checks."""
    spi = draw(
        st.builds(
            Spi,
            checksum=st.sampled_from(list(ChecksumKind)),
            ciphered=st.booleans(),
            counter=st.sampled_from(list(CounterMode)),
        )
    )
    kic = draw(st.sampled_from([0x12, 0x15, 0x19, 0x11, 0x1D, 0x10, 0x13]))
    kid = draw(st.sampled_from([0x12, 0x15, 0x19, 0x11, 0x10, 0x13]))
    chl = draw(st.sampled_from([0x0D, 0x0F, 0x11, 0x15, draw(st.integers(0, 255))]))
    rest = draw(st.binary(min_size=6, max_size=80))
    body = bytes((chl, *spi.to_bytes(), kic, kid)) + b"\x00\x00\x01" + rest
    return len(body).to_bytes(2, "big") + body


class HostileInputTests(SynchronousTestCase, _NoKeysInErrors):
    """Random and mutated bytes raise OtaError and nothing else."""

    @given(st.binary(max_size=200), any_key, any_key, st.one_of(st.none(), counters))
    def test_randomCommand(self, raw: bytes, kic: bytes, kid: bytes, last: int | None) -> None:
        """Random bytes into the receiver's functions only raise OtaError."""
        keys = OtaKeys(kic, kid)
        for call in (
            lambda: verify_command(raw, keys, last_counter=last, msl=0),
            lambda: parse_command_header(raw),
            lambda: strip_command_udh(raw),
        ):
            try:
                call()
            except OtaError as e:
                self.assertNoKeys(e, keys)

    @given(plausible_commands(), any_key, any_key, st.one_of(st.none(), counters))
    def test_plausibleCommand(self, raw: bytes, kic: bytes, kid: bytes, last: int | None) -> None:
        """Well-framed random packets under every SPI and algorithm only raise OtaError."""
        keys = OtaKeys(kic, kid)
        try:
            verify_command(raw, keys, last_counter=last)
        except OtaError as e:
            self.assertNoKeys(e, keys)

    @given(st.binary(max_size=120), st.data())
    def test_randomResponse(self, tail: bytes, data: st.DataObject) -> None:
        """Random PoRs (raw, or with a right UDH and RPL) under any SPI2 only raise OtaError."""
        _, spi, keys, kic, kid = data.draw(responses())
        if data.draw(st.booleans(), label="framed"):
            ud = b"\x02\x71\x00" + len(tail).to_bytes(2, "big") + tail
        else:
            ud = tail
        try:
            verify_response(ud, spi, keys, kic=kic, kid=kid)
        except OtaError as e:
            self.assertNoKeys(e, keys)


class ResponsePropertyTests(SynchronousTestCase, _NoKeysInErrors):
    """Secure/verify of PoRs over every SPI2 and algorithm."""

    @given(responses())
    def test_roundTrip(self, case: tuple[ResponsePacket, Spi, OtaKeys, Kic, Kid]) -> None:
        """verify_response(secure_response(r)) == r, and RPL/RHL are consistent."""
        por, spi, keys, kic, kid = case
        ud = secure_response(por, spi, keys, kic=kic, kid=kid)
        self.assertEqual(ud[:3], b"\x02\x71\x00")
        self.assertEqual(int.from_bytes(ud[3:5], "big"), len(ud) - 5)
        self.assertEqual(verify_response(ud, spi, keys, kic=kic, kid=kid), por)
        opened = decode_response(ud, spi, keys, kic=kic, kid=kid)
        self.assertTrue(opened.secured)
        self.assertIsNot(opened.checksum_ok, False)

    @given(responses(), st.data())
    def test_tamperedByte(
        self, case: tuple[ResponsePacket, Spi, OtaKeys, Kic, Kid], data: st.DataObject
    ) -> None:
        """A changed byte in a CC PoR raises OtaError, unless it turned the PoR into a clear
        security-failure report (which verify_response accepts by design)."""
        por, spi, keys, kic, kid = case
        bad = _flip(secure_response(por, spi, keys, kic=kic, kid=kid), data)
        try:
            got = verify_response(bad, spi, keys, kic=kic, kid=kid)
        except OtaError as e:
            self.assertNoKeys(e, keys)
            return
        if spi.por_checksum == ChecksumKind.CC:
            self.assertFalse(decode_response(bad, spi, keys, kic=kic, kid=kid).secured)
            self.assertIn(got.status, CLEAR_FAILURES)
