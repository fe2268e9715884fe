"""SPI, KIc and KID coding (TS 102 225 5.1.1-5.1.3), checked over every byte value."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    BadFormat,
    ChecksumKind,
    CounterMode,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaError,
    PorMode,
    Spi,
)


class SpiTests(SynchronousTestCase):
    """The two SPI bytes."""

    def test_commonValues(self) -> None:
        """The SPIs seen on real cards decode to the documented fields."""
        self.assertEqual(
            Spi.from_bytes(b"\x16\x39"),
            Spi(
                checksum=ChecksumKind.CC,
                ciphered=True,
                counter=CounterMode.HIGHER,
                por=PorMode.ALWAYS,
                por_checksum=ChecksumKind.CC,
                por_ciphered=True,
                por_via_submit=True,
            ),
        )
        self.assertEqual(
            Spi.from_bytes(b"\x02\x21"),
            Spi(checksum=ChecksumKind.CC, por=PorMode.ALWAYS, por_via_submit=True),
        )
        self.assertEqual(Spi.from_bytes(b"\x00\x00"), Spi())
        self.assertEqual(Spi.from_bytes(b"\x01\x0a").checksum, ChecksumKind.RC)
        self.assertEqual(Spi.from_bytes(b"\x01\x0a").por, PorMode.ON_ERROR)

    def test_counterElevenIsOneHigher(self) -> None:
        """SPI1 b5-b4 = 11 means "exactly one higher" (pySim calls it "must be lower")."""
        self.assertEqual(Spi.from_bytes(b"\x1e\x00").counter, CounterMode.ONE_HIGHER)
        self.assertEqual(Spi.from_bytes(b"\x0e\x00").counter, CounterMode.PRESENT)

    def test_everyValueRoundTripsOrNamesTheReservedBit(self) -> None:
        """All 65536 SPIs either round-trip exactly or raise BadFormat naming the reserved bits."""
        accepted = 0
        for spi1 in range(256):
            for spi2 in range(256):
                raw = bytes((spi1, spi2))
                reserved = spi1 & 0xE0 or spi2 & 0xC0 or spi2 & 0x03 == 0x03
                if reserved:
                    with self.assertRaises(BadFormat) as ctx:
                        Spi.from_bytes(raw, offset=3)
                    self.assertIn("reserved", ctx.exception.reason)
                    self.assertIn(ctx.exception.field, ("SPI1", "SPI2"))
                else:
                    self.assertEqual(Spi.from_bytes(raw).to_bytes(), raw)
                    accepted += 1
        self.assertEqual(accepted, 32 * 48)

    def test_reservedBitNamed(self) -> None:
        """The error names the byte, the bit and where it is in the packet."""
        with self.assertRaises(BadFormat) as ctx:
            Spi.from_bytes(b"\x22\x00", offset=3)
        self.assertEqual(ctx.exception.field, "SPI1")
        self.assertEqual(ctx.exception.offset, 3)
        self.assertIn("b6", str(ctx.exception))
        with self.assertRaises(BadFormat) as ctx:
            Spi.from_bytes(b"\x00\x80", offset=3)
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("SPI2", 4))
        self.assertIn("b8", str(ctx.exception))
        with self.assertRaises(BadFormat) as ctx:
            Spi.from_bytes(b"\x00\x03")
        self.assertIn("b2-b1", str(ctx.exception))

    def test_wrongSize(self) -> None:
        """Anything but two bytes is refused."""
        self.assertRaises(BadFormat, Spi.from_bytes, b"\x00")
        self.assertRaises(BadFormat, Spi.from_bytes, b"\x00\x00\x00")

    def test_fieldsTyped(self) -> None:
        """A plain int where an enum belongs is refused at construction."""
        self.assertRaises(TypeError, Spi, checksum=2)


class KicTests(SynchronousTestCase):
    """The KIc byte."""

    def test_documentedValues(self) -> None:
        """35 = key 3 3DES two-key, 22 = key 2 AES, 15 = key 1 3DES, 11 = DES-CBC, 1D = DES-ECB."""
        self.assertEqual(Kic.from_byte(0x35), Kic(3, KicAlgorithm.TDES_2KEY))
        self.assertEqual(Kic.from_byte(0x22), Kic(2, KicAlgorithm.AES_CBC))
        self.assertEqual(Kic.from_byte(0x15), Kic(1, KicAlgorithm.TDES_2KEY))
        self.assertEqual(Kic.from_byte(0x11), Kic(1, KicAlgorithm.DES_CBC))
        self.assertEqual(Kic.from_byte(0x19), Kic(1, KicAlgorithm.TDES_3KEY))
        self.assertEqual(Kic.from_byte(0x1D), Kic(1, KicAlgorithm.DES_ECB))
        self.assertEqual(Kic.from_byte(0xF0), Kic(15, KicAlgorithm.IMPLICIT))
        self.assertEqual(Kic.from_byte(0x03), Kic(0, KicAlgorithm.PROPRIETARY))

    def test_everyByte(self) -> None:
        """Every KIc byte round-trips, or is refused for b4-b3 its family reserves."""
        valid = {0x0, 0x1, 0x5, 0x9, 0xD, 0x2, 0x3}
        for value in range(256):
            if value & 0x0F in valid:
                self.assertEqual(Kic.from_byte(value).to_byte(), value)
            else:
                with self.assertRaises(BadFormat) as ctx:
                    Kic.from_byte(value, offset=5)
                self.assertEqual((ctx.exception.field, ctx.exception.offset), ("KIc", 5))
                self.assertIn("b4-b3", ctx.exception.reason)

    def test_keyIndexRange(self) -> None:
        """The key index is a nibble."""
        self.assertRaises(OtaError, Kic, 16, KicAlgorithm.AES_CBC)
        self.assertRaises(OtaError, Kic, -1, KicAlgorithm.AES_CBC)


class KidTests(SynchronousTestCase):
    """The KID byte, whose nibble reads differently under RC and CC."""

    def test_sameNibbleTwoMeanings(self) -> None:
        """Nibble 1 is DES under CC and CRC16 under RC; 5 is 3DES two-key or CRC32."""
        self.assertEqual(Kid.from_byte(0x11, ChecksumKind.CC).algorithm, KidAlgorithm.DES_CBC)
        self.assertEqual(Kid.from_byte(0x11, ChecksumKind.RC).algorithm, KidAlgorithm.CRC16)
        self.assertEqual(Kid.from_byte(0x15, ChecksumKind.CC).algorithm, KidAlgorithm.TDES_2KEY)
        self.assertEqual(Kid.from_byte(0x15, ChecksumKind.RC).algorithm, KidAlgorithm.CRC32)
        self.assertEqual(Kid.from_byte(0x12, ChecksumKind.CC).algorithm, KidAlgorithm.AES_CMAC)
        self.assertEqual(
            Kid(1, KidAlgorithm.TDES_2KEY).for_checksum(ChecksumKind.RC), Kid(1, KidAlgorithm.CRC32)
        )

    def test_everyByteUnderEachKind(self) -> None:
        """Every KID byte round-trips under each checksum kind, or names the reserved bits."""
        tables = {
            ChecksumKind.RC: {0x0, 0x1, 0x5, 0x3},
            ChecksumKind.CC: {0x0, 0x1, 0x5, 0x9, 0x2, 0x3},
            ChecksumKind.NONE: {0x0, 0x1, 0x5, 0x9, 0x2, 0x3},
            ChecksumKind.DS: {0x0, 0x1, 0x5, 0x9, 0x2, 0x3},
        }
        for kind, valid in tables.items():
            for value in range(256):
                if value & 0x0F in valid:
                    kid = Kid.from_byte(value, kind)
                    self.assertEqual(kid.to_byte(), value)
                    self.assertTrue(kid.fits(kind))
                else:
                    with self.assertRaises(BadFormat) as ctx:
                        Kid.from_byte(value, kind, offset=6)
                    self.assertEqual((ctx.exception.field, ctx.exception.offset), ("KID", 6))

    def test_fits(self) -> None:
        """CRC algorithms only go with RC, MAC algorithms never do."""
        self.assertTrue(Kid(1, KidAlgorithm.CRC32).fits(ChecksumKind.RC))
        self.assertFalse(Kid(1, KidAlgorithm.CRC32).fits(ChecksumKind.CC))
        self.assertFalse(Kid(1, KidAlgorithm.AES_CMAC).fits(ChecksumKind.RC))
        self.assertTrue(Kid(1, KidAlgorithm.IMPLICIT).fits(ChecksumKind.RC))
