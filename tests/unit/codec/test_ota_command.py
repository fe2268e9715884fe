"""Command packets: lengths, counters, MSL, algorithms, keys, UDH and the error family."""

from __future__ import annotations

import os
import pickle
import warnings
import zlib
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.trial.unittest import SynchronousTestCase

import bipgw.codec.ota as ota
from bipgw.codec import CodecError
from bipgw.codec.ota import (
    COUNTER_MAX,
    BadChecksum,
    BadFormat,
    BadLength,
    ChecksumKind,
    CipheringError,
    CommandPacket,
    CounterBlocked,
    CounterMode,
    CounterTooHigh,
    CounterTooLow,
    InsufficientSecurity,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaError,
    OtaKeys,
    PorStatus,
    SecurityError,
    Spi,
    UnknownTar,
    command_user_data,
    parse_command_header,
    secure_command,
    strip_command_udh,
    verify_command,
)
from bipgw.codec.ota._crypto import checksum, encrypt
from tests import vectors

AES_KEYS = OtaKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
TDES_KEYS = OtaKeys(kic_key=bytes(range(32, 48)), kid_key=bytes(range(48, 64)))
AES_KIC = Kic(1, KicAlgorithm.AES_CBC)
AES_KID = Kid(1, KidAlgorithm.AES_CMAC)
PUSH = bytes.fromhex("80ec01010e350103390203e83e052101020304")


def _packet(
    counter_mode: CounterMode = CounterMode.HIGHER,
    counter: int = 100,
    checksum_kind: ChecksumKind = ChecksumKind.CC,
    ciphered: bool = True,
    kic: Kic = AES_KIC,
    kid: Kid = AES_KID,
    data: bytes = PUSH,
) -> CommandPacket:
    spi = Spi(checksum=checksum_kind, ciphered=ciphered, counter=counter_mode)
    return CommandPacket(spi, kic, kid, b"\x00\x00\x00", counter, data)


def _secured(keys: OtaKeys = AES_KEYS, **kwargs: Any) -> bytes:
    return secure_command(_packet(**kwargs), keys)


class CounterTests(SynchronousTestCase):
    """The counter rule of SPI1 b5-b4, applied after the checksum."""

    def test_higher(self) -> None:
        """Mode 10 accepts any counter above the stored one and refuses the rest as too low."""
        raw = _secured(counter=100)
        self.assertEqual(verify_command(raw, AES_KEYS, last_counter=99).counter, 100)
        self.assertEqual(verify_command(raw, AES_KEYS, last_counter=0).counter, 100)
        self.assertRaises(CounterTooLow, verify_command, raw, AES_KEYS, last_counter=100)
        self.assertRaises(CounterTooLow, verify_command, raw, AES_KEYS, last_counter=500)

    def test_higherWithStepLimit(self) -> None:
        """A receiver-chosen maximum jump turns a far-ahead counter into CounterTooHigh."""
        raw = _secured(counter=100)
        got = verify_command(raw, AES_KEYS, last_counter=90, max_counter_step=10)
        self.assertEqual(got.counter, 100)
        self.assertRaises(
            CounterTooHigh, verify_command, raw, AES_KEYS, last_counter=89, max_counter_step=10
        )

    def test_oneHigher(self) -> None:
        """Mode 11 means exactly one higher (not "lower", as pySim names it)."""
        raw = _secured(counter_mode=CounterMode.ONE_HIGHER, counter=100)
        self.assertEqual(verify_command(raw, AES_KEYS, last_counter=99).counter, 100)
        self.assertRaises(CounterTooHigh, verify_command, raw, AES_KEYS, last_counter=98)
        self.assertRaises(CounterTooLow, verify_command, raw, AES_KEYS, last_counter=100)
        self.assertRaises(CounterTooLow, verify_command, raw, AES_KEYS, last_counter=101)

    def test_blocked(self) -> None:
        """A stored counter at 2**40-1 blocks the key set whatever the packet says."""
        for mode in (CounterMode.HIGHER, CounterMode.ONE_HIGHER):
            raw = _secured(counter_mode=mode, counter=COUNTER_MAX)
            with self.assertRaises(CounterBlocked) as ctx:
                verify_command(raw, AES_KEYS, last_counter=COUNTER_MAX)
            self.assertEqual(ctx.exception.por_status, PorStatus.COUNTER_BLOCKED)
        raw = _secured(counter=COUNTER_MAX)
        self.assertEqual(
            verify_command(raw, AES_KEYS, last_counter=COUNTER_MAX - 1).counter, COUNTER_MAX
        )

    def test_noCheckModes(self) -> None:
        """Modes 00 and 01 ignore the stored counter."""
        for mode in (CounterMode.NONE, CounterMode.PRESENT):
            raw = _secured(counter_mode=mode, counter=5)
            self.assertEqual(verify_command(raw, AES_KEYS, last_counter=1000).counter, 5)

    def test_noneSkips(self) -> None:
        """last_counter=None skips the rule (for decoders that keep no state)."""
        raw = _secured(counter=1)
        self.assertEqual(verify_command(raw, AES_KEYS, last_counter=None).counter, 1)

    def test_checksumBeforeCounter(self) -> None:
        """A forged replay is a checksum failure: an unauthenticated counter is never judged."""
        raw = bytearray(_secured(counter=100))
        raw[-1] ^= 0x01
        self.assertRaises(BadChecksum, verify_command, bytes(raw), AES_KEYS, last_counter=500)

    def test_realCardReplay(self) -> None:
        """Replaying the real-card CNTR=100 packet to a receiver that stored 100 is too low."""
        v = vectors.by_name(
            "scp80_sms_command_packets",
            "real card SJA2, counter mode 10 (must be higher), CNTR=100",
        )
        keys = OtaKeys(bytes.fromhex(v["kic_key"]), bytes.fromhex(v["kid_key"]))
        raw = bytes.fromhex(v["expected_command_packet"])
        self.assertEqual(verify_command(raw, keys, last_counter=99).counter, 100)
        self.assertRaises(CounterTooLow, verify_command, raw, keys, last_counter=100)

    def test_badStoredCounter(self) -> None:
        """A stored counter outside 5 bytes is the caller's bug, not the packet's."""
        raw = _secured()
        with self.assertRaises(ValueError) as ctx:
            verify_command(raw, AES_KEYS, last_counter=COUNTER_MAX + 1)
        self.assertNotIsInstance(ctx.exception, OtaError)


class MinimumSecurityTests(SynchronousTestCase):
    """The MSL (coded like SPI1) is enforced field by field."""

    def test_belowMinimum(self) -> None:
        """Each weaker field is refused with InsufficientSecurity (PoR status 0A)."""
        cc_counter = 0x12  # CC + counter present: pySim's SAIP MSL default
        with self.assertRaises(InsufficientSecurity) as ctx:
            verify_command(
                _secured(counter_mode=CounterMode.NONE), AES_KEYS, last_counter=0, msl=cc_counter
            )
        self.assertEqual(ctx.exception.por_status, PorStatus.INSUFFICIENT_SECURITY)
        self.assertIn("counter", ctx.exception.reason)
        with self.assertRaises(InsufficientSecurity) as ctx:
            verify_command(_secured(ciphered=False), AES_KEYS, last_counter=0, msl=0x06)
        self.assertIn("ciphered", ctx.exception.reason)
        rc = _secured(checksum_kind=ChecksumKind.RC, kid=Kid(1, KidAlgorithm.CRC32))
        self.assertRaises(InsufficientSecurity, verify_command, rc, AES_KEYS, last_counter=0, msl=2)

    def test_atOrAboveMinimum(self) -> None:
        """Security equal to or stronger than the MSL passes."""
        raw = _secured(counter_mode=CounterMode.HIGHER)
        for msl in (0x00, 0x02, 0x06, 0x12, 0x16):
            self.assertEqual(verify_command(raw, AES_KEYS, last_counter=0, msl=msl).counter, 100)


class LengthTests(SynchronousTestCase):
    """CPL, CHL and PCNTR are checked before anything is trusted."""

    def test_cpl(self) -> None:
        """An extra or missing byte contradicts CPL, reported at offset 0."""
        raw = _secured()
        for bad in (raw + b"\x00", raw[:-1], raw[:15]):
            with self.assertRaises(BadLength) as ctx:
                verify_command(bad, AES_KEYS, last_counter=None)
            self.assertEqual((ctx.exception.field, ctx.exception.offset), ("CPL", 0))

    def test_chl(self) -> None:
        """A CHL that disagrees with SPI1/KID is refused before any crypto."""
        raw = bytearray(_secured())
        self.assertEqual(raw[2], 0x15)
        raw[2] = 0x0D
        with self.assertRaises(BadLength) as ctx:
            parse_command_header(bytes(raw))
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("CHL", 2))

    def test_chlValues(self) -> None:
        """CHL is 0D without checksum, 0F with CRC16, 11 with CRC32, 15 with a CC."""
        crc16, crc32 = Kid(1, KidAlgorithm.CRC16), Kid(1, KidAlgorithm.CRC32)
        self.assertEqual(_secured(checksum_kind=ChecksumKind.NONE)[2], 0x0D)
        self.assertEqual(_secured(checksum_kind=ChecksumKind.RC, kid=crc16)[2], 0x0F)
        self.assertEqual(_secured(checksum_kind=ChecksumKind.RC, kid=crc32)[2], 0x11)
        self.assertEqual(_secured()[2], 0x15)

    def test_clearPcntrMustBeZero(self) -> None:
        """PCNTR counts cipher padding, so it is 0 in a clear packet."""
        raw = bytearray(_secured(checksum_kind=ChecksumKind.NONE, ciphered=False))
        self.assertEqual(raw[15], 0)
        raw[15] = 1
        with self.assertRaises(BadFormat) as ctx:
            verify_command(bytes(raw), AES_KEYS, last_counter=None)
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("PCNTR", 15))

    def test_cipheredNotWholeBlocks(self) -> None:
        """A ciphered part that is not whole blocks is a ciphering error (PoR 05)."""
        raw = _secured() + b"\x00"
        raw = (len(raw) - 2).to_bytes(2, "big") + raw[2:]
        with self.assertRaises(CipheringError) as ctx:
            verify_command(raw, AES_KEYS, last_counter=None)
        self.assertEqual(ctx.exception.por_status, PorStatus.CIPHERING_ERROR)

    def test_paddingAndPcntr(self) -> None:
        """Ciphering pads CNTR..data with zeros to the block; PCNTR and CPL count the padding."""
        for size, kic, keys in (
            (16, AES_KIC, AES_KEYS),
            (8, Kic(1, KicAlgorithm.TDES_2KEY), TDES_KEYS),
        ):
            kid = Kid(1, KidAlgorithm.TDES_2KEY) if size == 8 else AES_KID
            for n in range(0, 40):
                raw = secure_command(_packet(kic=kic, kid=kid, data=bytes(n)), keys)
                pad = -(6 + 8 + n) % size
                self.assertEqual(len(raw), 10 + 6 + 8 + n + pad)
                self.assertEqual(int.from_bytes(raw[:2], "big"), len(raw) - 2)
                self.assertEqual(verify_command(raw, keys, last_counter=None).data, bytes(n))

    def test_pcntrBeyondPadding(self) -> None:
        """An authentic packet whose PCNTR claims a whole block or more than the data is a
        ciphering error, not a silently truncated script."""
        data = bytes(range(10))
        header = bytes.fromhex("00281506001222000000")  # CPL 40, CHL 21, SPI 0600, KIc/KID 12
        for pcntr in (16, 19, 255):
            counter = bytes(5) + bytes((pcntr,))
            tail = data + bytes(8)
            cc = checksum(KidAlgorithm.AES_CMAC, AES_KEYS.kid_key, header + counter + tail)
            body = encrypt(KicAlgorithm.AES_CBC, AES_KEYS.kic_key, counter + cc + tail)
            raw = header + body
            self.assertEqual(len(raw) - 2, 40)
            with self.assertRaises(CipheringError) as ctx:
                verify_command(raw, AES_KEYS, last_counter=None)
            self.assertEqual((ctx.exception.field, ctx.exception.offset), ("PCNTR", 15))
        # The same construction with the right count is accepted: the test builds real packets.
        counter = bytes(5) + b"\x08"
        cc = checksum(KidAlgorithm.AES_CMAC, AES_KEYS.kid_key, header + counter + tail)
        raw = header + encrypt(KicAlgorithm.AES_CBC, AES_KEYS.kic_key, counter + cc + tail)
        self.assertEqual(verify_command(raw, AES_KEYS, last_counter=None).data, data)

    def test_tooLong(self) -> None:
        """Data that would overflow the two-byte CPL is refused."""
        with self.assertRaises(BadLength) as ctx:
            _secured(data=bytes(0xFFFF))
        self.assertEqual(ctx.exception.field, "CPL")


class AlgorithmTests(SynchronousTestCase):
    """Algorithms the codec applies, and those it must refuse."""

    def test_crc32(self) -> None:
        """RC with KID nibble 5 is CRC-32 (zlib) over CPL..data, 4 bytes big-endian."""
        raw = _secured(
            checksum_kind=ChecksumKind.RC, ciphered=False, kid=Kid(1, KidAlgorithm.CRC32)
        )
        expected = zlib.crc32(raw[:16] + raw[20:]).to_bytes(4, "big")
        self.assertEqual(raw[16:20], expected)

    def test_crc16CheckValue(self) -> None:
        """RC with KID nibble 1 is the ISO/IEC 13239 CRC-16 (check value 906E)."""
        self.assertEqual(checksum(KidAlgorithm.CRC16, b"", b"123456789"), b"\x90\x6e")

    def test_desVariants(self) -> None:
        """Single DES (CBC and ECB) and three-key 3DES round-trip with their key sizes."""
        des = OtaKeys(bytes(range(1, 9)), bytes(range(9, 17)))
        tdes3 = OtaKeys(bytes(range(24)), bytes(range(24, 48)))
        cases = (
            (Kic(1, KicAlgorithm.DES_CBC), Kid(1, KidAlgorithm.DES_CBC), des),
            (Kic(1, KicAlgorithm.DES_ECB), Kid(1, KidAlgorithm.DES_CBC), des),
            (Kic(1, KicAlgorithm.TDES_3KEY), Kid(1, KidAlgorithm.TDES_3KEY), tdes3),
        )
        for kic, kid, keys in cases:
            packet = _packet(kic=kic, kid=kid)
            self.assertEqual(
                verify_command(secure_command(packet, keys), keys, last_counter=99), packet
            )

    def test_desEcbIsEcb(self) -> None:
        """DES-ECB ciphers equal blocks equally, DES-CBC does not."""
        des = OtaKeys(bytes(range(1, 9)), b"")
        data = bytes(2) + bytes(32)  # CNTR/PCNTR/data aligned: blocks 2..5 of plain are zeros
        ecb = _secured(
            kic=Kic(1, KicAlgorithm.DES_ECB),
            keys=des,
            checksum_kind=ChecksumKind.NONE,
            data=data,
            counter=0,
        )[10:]
        cbc = _secured(
            kic=Kic(1, KicAlgorithm.DES_CBC),
            keys=des,
            checksum_kind=ChecksumKind.NONE,
            data=data,
            counter=0,
        )[10:]
        self.assertEqual(ecb[8:16], ecb[16:24])
        self.assertNotEqual(cbc[8:16], cbc[16:24])

    def test_cipherContextsReused(self) -> None:
        """Securing the same packet again, between other keys' packets, gives identical
        bytes, equal to a fresh CBC context's output."""
        packet = _packet(data=bytes(range(50)))
        first = secure_command(packet, AES_KEYS)
        secure_command(_packet(data=b"other"), AES_KEYS)
        secure_command(
            _packet(kic=Kic(1, KicAlgorithm.TDES_2KEY), kid=Kid(1, KidAlgorithm.TDES_2KEY)),
            TDES_KEYS,
        )
        again = secure_command(packet, AES_KEYS)
        self.assertEqual(first, again)
        fresh = Cipher(algorithms.AES(AES_KEYS.kic_key), modes.CBC(bytes(16))).decryptor()
        plain = fresh.update(again[10:]) + fresh.finalize()
        self.assertEqual(plain[:5], (100).to_bytes(5, "big"))
        self.assertEqual(plain[14 : 14 + 50], bytes(range(50)))
        tdes = Cipher(TripleDES(TDES_KEYS.kic_key + TDES_KEYS.kic_key[:8]), modes.CBC(bytes(8)))
        packet3 = _packet(kic=Kic(1, KicAlgorithm.TDES_2KEY), kid=Kid(1, KidAlgorithm.TDES_2KEY))
        raw3 = secure_command(packet3, TDES_KEYS)
        self.assertEqual(raw3, secure_command(packet3, TDES_KEYS))
        context = tdes.decryptor()
        self.assertEqual(
            (context.update(raw3[10:]) + context.finalize())[:5], (100).to_bytes(5, "big")
        )

    def test_noDeprecatedKeyForms(self) -> None:
        """New DES/3DES keys go to cryptography in its non-deprecated 24-byte form."""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for kic, size in ((KicAlgorithm.TDES_2KEY, 16), (KicAlgorithm.DES_CBC, 8)):
                keys = OtaKeys(os.urandom(size), os.urandom(size))
                kid = Kid(1, KidAlgorithm.TDES_2KEY if size == 16 else KidAlgorithm.DES_CBC)
                raw = secure_command(_packet(kic=Kic(1, kic), kid=kid), keys)
                verify_command(raw, keys, last_counter=None)

    def test_digitalSignatureRefused(self) -> None:
        """DS is coded but not supported: SecurityError both ways."""
        packet = _packet(checksum_kind=ChecksumKind.DS)
        self.assertRaises(SecurityError, secure_command, packet, AES_KEYS)
        raw = bytearray(_secured())
        raw[3] = (raw[3] & ~0x03) | 0x03
        self.assertRaises(SecurityError, verify_command, bytes(raw), AES_KEYS, last_counter=None)

    def test_implicitAndProprietary(self) -> None:
        """Implicit or proprietary algorithms are refused when needed, ignored when not."""
        implicit = Kic(1, KicAlgorithm.IMPLICIT)
        self.assertRaises(SecurityError, secure_command, _packet(kic=implicit), AES_KEYS)
        clear = _packet(kic=implicit, ciphered=False)
        self.assertEqual(
            verify_command(secure_command(clear, AES_KEYS), AES_KEYS, last_counter=99), clear
        )
        proprietary = Kid(1, KidAlgorithm.PROPRIETARY)
        self.assertRaises(SecurityError, secure_command, _packet(kid=proprietary), AES_KEYS)

    def test_kidMustFitChecksumKind(self) -> None:
        """A CC algorithm under RC (or a CRC under CC) cannot be coded."""
        self.assertRaises(BadFormat, _packet, checksum_kind=ChecksumKind.RC, kid=AES_KID)
        self.assertRaises(BadFormat, _packet, kid=Kid(1, KidAlgorithm.CRC32))


class KeyTests(SynchronousTestCase):
    """Keys are checked against the algorithm and never shown."""

    def test_reprHidesKeys(self) -> None:
        """repr and str show lengths only."""
        keys = OtaKeys(bytes.fromhex("00112233445566778899aabbccddeeff"), b"\xab" * 24)
        for text in (repr(keys), str(keys), repr([keys])):
            self.assertNotIn("00112233", text)
            self.assertNotIn("abab", text)
            self.assertNotIn("\\x", text)
            self.assertIn("16 bytes", text)
            self.assertIn("24 bytes", text)

    def test_lengthAgainstAlgorithm(self) -> None:
        """A key of the wrong size for the packet's algorithm is named, its bytes are not."""
        keys = OtaKeys(kic_key=bytes.fromhex("0123456789abcdef" * 3), kid_key=bytes(16))
        with self.assertRaises(SecurityError) as ctx:
            _secured(
                kic=Kic(1, KicAlgorithm.TDES_2KEY), kid=Kid(1, KidAlgorithm.TDES_2KEY), keys=keys
            )
        self.assertEqual(ctx.exception.field, "KIc")
        self.assertIn("TDES_2KEY needs a 16-byte key", str(ctx.exception))
        self.assertIn("24 bytes", str(ctx.exception))
        self.assertNotIn("0123456789", str(ctx.exception))
        with self.assertRaises(SecurityError) as ctx:
            _secured(keys=OtaKeys(bytes(16), b""))
        self.assertEqual(ctx.exception.field, "KID")

    def test_impossibleLengths(self) -> None:
        """Key sizes no algorithm uses, and non-bytes, are refused at construction."""
        with self.assertRaises(SecurityError) as ctx:
            OtaKeys(kic_key=bytes.fromhex("deadbeefcafe0102030405"))
        self.assertNotIn("deadbeef", str(ctx.exception))
        self.assertEqual(ctx.exception.field, "kic_key")
        self.assertRaises(SecurityError, OtaKeys, kid_key="00" * 16)


class UserDataTests(SynchronousTestCase):
    """The SMS user data header around a command packet."""

    def test_roundTrip(self) -> None:
        """command_user_data prefixes 02 70 00; strip_command_udh takes it off."""
        raw = _secured()
        self.assertEqual(command_user_data(raw)[:3], b"\x02\x70\x00")
        self.assertEqual(strip_command_udh(command_user_data(raw)), raw)

    def test_otherElementsSkipped(self) -> None:
        """Unrelated information elements around IEI 70 are skipped."""
        ud = bytes.fromhex("052401007000") + b"packet"
        self.assertEqual(strip_command_udh(ud), b"packet")

    def test_refused(self) -> None:
        """No UDH, a concatenated part, no IEI 70, a non-empty IEI 70 or a truncated UDH fail."""
        cases = {
            b"": BadLength,
            b"\x05\x70\x00": BadLength,
            bytes.fromhex("07700000030102010000"): BadFormat,
            bytes.fromhex("0224000000"): BadFormat,
            bytes.fromhex("037001aa00"): BadFormat,
            bytes.fromhex("03700000"): BadLength,
            bytes.fromhex("027005"): BadLength,
        }
        for ud, error in cases.items():
            with self.subTest(ud.hex()):
                self.assertRaises(error, strip_command_udh, ud)


class ErrorTests(SynchronousTestCase):
    """One family, one PoR status each, and well-formed messages."""

    def test_porStatuses(self) -> None:
        """Each failure carries the PoR status a receiver answers with."""
        expected = {
            BadChecksum: 0x01,
            CounterTooLow: 0x02,
            CounterTooHigh: 0x03,
            CounterBlocked: 0x04,
            CipheringError: 0x05,
            SecurityError: 0x06,
            BadFormat: 0x06,
            BadLength: 0x06,
            UnknownTar: 0x09,
            InsufficientSecurity: 0x0A,
        }
        for cls, status in expected.items():
            self.assertTrue(issubclass(cls, OtaError))
            self.assertTrue(issubclass(cls, CodecError))
            self.assertEqual(cls.por_status, status)
            self.assertEqual(cls("x").por_status, PorStatus(status))
        self.assertEqual(len(set(expected) - {BadFormat, BadLength}), 8)

    def test_statusCodes(self) -> None:
        """PorStatus has every code 00..0C, valued as on the wire."""
        self.assertEqual([int(s) for s in PorStatus], list(range(0x0D)))
        self.assertEqual(PorStatus.RESPONSE_BY_SMS_SUBMIT, 0x0B)

    def test_messageAndPickle(self) -> None:
        """Messages start with the codec name and survive pickling with their class."""
        error = CounterTooLow("5 is not above 7", field="CNTR", offset=10)
        self.assertEqual(str(error), "OTA: field 'CNTR' at offset 10: 5 is not above 7")
        copy = pickle.loads(pickle.dumps(error))
        self.assertIs(type(copy), CounterTooLow)
        self.assertEqual((copy.reason, copy.field, copy.offset), ("5 is not above 7", "CNTR", 10))


class ExportTests(SynchronousTestCase):
    """The package's public surface."""

    def test_allResolves(self) -> None:
        """Every name in __all__ exists, and the private modules are not in it."""
        for name in ota.__all__:
            self.assertTrue(hasattr(ota, name), name)
            self.assertFalse(name.startswith("_"))
        self.assertEqual(sorted(ota.__all__), sorted(set(ota.__all__)))
        self.assertIs(ota.verify_command, verify_command)
