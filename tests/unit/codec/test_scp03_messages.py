"""SCP03 message values: "i", security levels, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu
from bipgw.codec.scp03 import (
    VALID_LEVELS,
    ExternalAuthenticate,
    InitializeUpdate,
    InitializeUpdateResponse,
    Scp03Error,
    Scp03LengthError,
    Scp03ParameterError,
    ScpParameters,
    SecurityLevel,
    check_level,
)

h = bytes.fromhex

parameters = st.builds(
    lambda s16, prng, rmac, renc: ScpParameters(s16, prng, rmac, rmac and renc),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@st.composite
def iu_responses(draw: st.DrawFn) -> InitializeUpdateResponse:
    params = draw(parameters)
    n = params.size
    return InitializeUpdateResponse(
        draw(st.binary(min_size=10, max_size=10)),
        draw(st.integers(0, 255)),
        params,
        draw(st.binary(min_size=n, max_size=n)),
        draw(st.binary(min_size=n, max_size=n)),
        draw(st.integers(0, 0xFFFFFF)) if params.pseudo_random else None,
    )


class ParameterTests(SynchronousTestCase):
    """The "i" parameter, Amendment D Table 5-1."""

    def test_everyDefinedByte(self) -> None:
        """Each byte the table defines reads back to itself; the others are refused."""
        accepted = []
        for value in range(256):
            try:
                params = ScpParameters.from_byte(value)
            except Scp03Error as e:
                self.assertEqual(e.field, "i")
                continue
            self.assertEqual(params.value, value)
            accepted.append(value)
        expected = [s | p | r for s in (0, 1) for p in (0, 0x10) for r in (0, 0x20, 0x60)]
        self.assertEqual(accepted, sorted(expected))

    def test_seventy(self) -> None:
        """C{70}: S8, pseudo-random challenge, R-MAC and R-ENCRYPTION."""
        self.assertEqual(ScpParameters.from_byte(0x70), ScpParameters(False, True, True, True))
        self.assertEqual(ScpParameters.from_byte(0x71).size, 16)
        self.assertEqual(ScpParameters().size, 8)

    def test_rEncNeedsRMac(self) -> None:
        """R-ENCRYPTION without R-MAC is not a valid value."""
        self.assertRaises(Scp03Error, ScpParameters, r_encryption=True)
        self.assertRaises(Scp03Error, ScpParameters.from_byte, 0x40)


class LevelTests(SynchronousTestCase):
    """Security levels, Amendment D Table 7-6."""

    def test_validLevels(self) -> None:
        """Only 00, 01, 03, 11, 13, 33 exist; others answer 6A86."""
        full = ScpParameters(r_mac=True, r_encryption=True)
        for level in range(256):
            if level in VALID_LEVELS:
                self.assertEqual(check_level(level, full), level)
            else:
                with self.assertRaises(Scp03ParameterError) as ctx:
                    check_level(level, full)
                self.assertEqual((ctx.exception.sw, ctx.exception.field), (0x6A86, "P1"))

    def test_levelNeedsSupport(self) -> None:
        """R-MAC and R-ENC levels need the card's support."""
        self.assertRaises(Scp03ParameterError, check_level, 0x11, ScpParameters())
        self.assertRaises(Scp03ParameterError, check_level, 0x33, ScpParameters(r_mac=True))
        self.assertEqual(check_level(0x13, ScpParameters(r_mac=True)), 0x13)
        level = check_level(0x33, ScpParameters(r_mac=True, r_encryption=True))
        self.assertIn(SecurityLevel.R_ENCRYPTION, level)
        self.assertIn(SecurityLevel.C_DECRYPTION, level)


class InitializeUpdateTests(SynchronousTestCase):
    """INITIALIZE UPDATE command and answer."""

    def test_command(self) -> None:
        """C{80 50 KVN 00 08 challenge 00}, and read back."""
        command = InitializeUpdate(0x30, h("0102030405060708"))
        apdu = command.to_apdu()
        self.assertEqual(apdu.encode(), h("8050300008010203040506070800"))
        self.assertEqual(InitializeUpdate.from_apdu(apdu, 8), command)
        without_le = CommandApdu.decode(h("80503000080102030405060708"))
        self.assertEqual(InitializeUpdate.from_apdu(without_le, 8), command)

    def test_commandRefusals(self) -> None:
        """P2 other than 00 is 6A86; a challenge of the wrong size 6700."""
        with self.assertRaises(Scp03ParameterError) as ctx:
            InitializeUpdate.from_apdu(CommandApdu.decode(h("8050300108") + bytes(8)), 8)
        self.assertEqual(ctx.exception.field, "P2")
        with self.assertRaises(Scp03LengthError) as ctx2:
            InitializeUpdate.from_apdu(CommandApdu.decode(h("8050300008") + bytes(8)), 16)
        self.assertEqual((ctx2.exception.field, ctx2.exception.offset), ("Lc", 4))
        self.assertRaises(
            Scp03ParameterError,
            InitializeUpdate.from_apdu,
            CommandApdu(0x80, 0x51, 0, 0, bytes(8)),
            8,
        )
        self.assertRaises(Scp03LengthError, InitializeUpdate, 0x30, bytes(9))
        self.assertRaises(Scp03Error, InitializeUpdate, 256, bytes(8))

    @given(iu_responses())
    def test_responseRoundTrip(self, response: InitializeUpdateResponse) -> None:
        """decode(encode(x)) == x, with the length Table 7-3 gives."""
        raw = response.encode()
        n = response.parameters.size
        self.assertEqual(len(raw), 13 + 2 * n + (3 if response.parameters.pseudo_random else 0))
        self.assertEqual(raw[11], 0x03)
        self.assertEqual(InitializeUpdateResponse.decode(raw), response)

    @given(st.binary(max_size=64))
    def test_randomBytes(self, raw: bytes) -> None:
        """Any bytes either decode or raise Scp03Error only."""
        try:
            InitializeUpdateResponse.decode(raw)
        except Scp03Error:
            pass

    def test_responseRefusals(self) -> None:
        """Another SCP, a bad length for the mode, a counter that should not be there."""
        good = h("000000000000000000003003703eb51047495b249f66c484c1d2ef1948000002")
        with self.assertRaises(Scp03Error) as ctx:
            InitializeUpdateResponse.decode(good[:11] + b"\x02" + good[12:])
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("key information", 11))
        self.assertRaises(Scp03LengthError, InitializeUpdateResponse.decode, good[:-1])
        self.assertRaises(Scp03LengthError, InitializeUpdateResponse.decode, good[:12])
        no_counter = good[:12] + b"\x60" + good[13:]  # random challenges: 29 bytes
        self.assertRaises(Scp03LengthError, InitializeUpdateResponse.decode, no_counter)
        self.assertEqual(InitializeUpdateResponse.decode(no_counter[:-3]).sequence_counter, None)
        with self.assertRaises(Scp03Error) as ctx:
            InitializeUpdateResponse(bytes(10), 0x30, ScpParameters(), bytes(8), bytes(8), 1)
        self.assertEqual(ctx.exception.field, "sequence counter")
        self.assertRaises(
            Scp03LengthError,
            InitializeUpdateResponse,
            bytes(10),
            1,
            ScpParameters(),
            bytes(16),
            bytes(16),
        )


class ExternalAuthenticateTests(SynchronousTestCase):
    """EXTERNAL AUTHENTICATE as the card splits it."""

    def test_split(self) -> None:
        """Level from P1, cryptogram then MAC from the data."""
        apdu = CommandApdu.decode(h("8482330010") + bytes(range(16)))
        command = ExternalAuthenticate.from_apdu(apdu, 8)
        self.assertEqual(command, ExternalAuthenticate(0x33, bytes(range(8)), bytes(range(8, 16))))

    def test_refusals(self) -> None:
        """P2 other than 00 is 6A86, data other than 2 x size is 6700."""
        self.assertRaises(
            Scp03ParameterError,
            ExternalAuthenticate.from_apdu,
            CommandApdu.decode(h("8482010110") + bytes(16)),
            8,
        )
        self.assertRaises(
            Scp03LengthError,
            ExternalAuthenticate.from_apdu,
            CommandApdu.decode(h("8482010010") + bytes(16)),
            16,
        )
        self.assertRaises(
            Scp03ParameterError,
            ExternalAuthenticate.from_apdu,
            CommandApdu(0x84, 0x50, 1, 0, bytes(16)),
            8,
        )
