"""PoRs: clear error answers, header-only status 0B, RC PoRs, malformed UD, compact results."""

from __future__ import annotations

import zlib

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    BadChecksum,
    BadFormat,
    BadLength,
    ChecksumKind,
    CipheringError,
    CompactResult,
    CounterTooLow,
    InsufficientSecurity,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaKeys,
    PorMode,
    PorStatus,
    ResponsePacket,
    SecurityError,
    Spi,
    decode_response,
    secure_response,
    verify_response,
)
from tests import vectors

RESPONSES = "scp80_sms_response_packets"
REPLAY = "real card SJA2 PoR, status 06 after counter replay (not ciphered, no CC)"
AES_KEYS = OtaKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
AES_KIC = Kic(1, KicAlgorithm.AES_CBC)
AES_KID = Kid(1, KidAlgorithm.AES_CMAC)
SECURED = Spi.from_bytes(b"\x16\x39")  # the gateway's default: PoR always, CC, ciphered, SUBMIT
TAR = b"\xb0\x00\x10"


def _replay_keys() -> OtaKeys:
    v = vectors.by_name(RESPONSES, REPLAY)
    return OtaKeys(bytes.fromhex(v["kic_key"]), bytes.fromhex(v["kid_key"]))


class ClearErrorTests(SynchronousTestCase):
    """A card that cannot use the keys answers in clear; only failures may come that way."""

    def test_produceRealCardAnswer(self) -> None:
        """The status-06 PoR of the real trace is what a clear error PoR encodes to."""
        v = vectors.by_name(RESPONSES, REPLAY)
        error = ResponsePacket.for_error(TAR, CounterTooLow("replay"))
        self.assertEqual(error.status, PorStatus.COUNTER_LOW)
        por = ResponsePacket(TAR, 0, PorStatus.SECURITY_ERROR)
        self.assertEqual(secure_response(por, Spi(), OtaKeys()).hex(), v["sms_user_data"])

    def test_acceptedUnderTheCommandsSpi(self) -> None:
        """Checked against the command's real SPI2 (19: CC, ciphered), the clear 06 is accepted."""
        ud = bytes.fromhex(vectors.by_name(RESPONSES, REPLAY)["sms_user_data"])
        spi = Spi.from_bytes(b"\x16\x19")
        kic, kid = Kic(1, KicAlgorithm.TDES_2KEY), Kid(1, KidAlgorithm.TDES_2KEY)
        got = verify_response(ud, spi, _replay_keys(), kic=kic, kid=kid)
        self.assertEqual((got.status, got.counter, got.data), (PorStatus.SECURITY_ERROR, 0, b""))
        opened = decode_response(ud, spi, _replay_keys(), kic=kic, kid=kid)
        self.assertFalse(opened.secured)
        self.assertIsNone(opened.checksum_ok)

    def test_clearSuccessRefused(self) -> None:
        """A clear PoR claiming success (or 0B) where SPI2 asks for security is refused."""
        for status in (PorStatus.POR_OK, PorStatus.RESPONSE_BY_SMS_SUBMIT, PorStatus.MORE_TIME):
            ud = secure_response(ResponsePacket(TAR, 7, status, b"\x01\x90\x00"), Spi(), OtaKeys())
            with self.assertRaises(InsufficientSecurity):
                verify_response(ud, SECURED, AES_KEYS, kic=AES_KIC, kid=AES_KID)

    def test_everyClearFailureAccepted(self) -> None:
        """Every security-failure status may come in clear."""
        for status in (1, 2, 3, 4, 5, 6, 9, 10):
            ud = secure_response(ResponsePacket(TAR, 0, status), Spi(), OtaKeys())
            got = verify_response(ud, SECURED, AES_KEYS, kic=AES_KIC, kid=AES_KID)
            self.assertEqual(got.status, status)


class SecuredResponseTests(SynchronousTestCase):
    """PoRs secured per SPI2."""

    def test_headerOnlySmsSubmit(self) -> None:
        """Status 0B with no data (TS 31.115: the PoR follows by SMS-SUBMIT) round-trips secured."""
        por = ResponsePacket(TAR, 100, PorStatus.RESPONSE_BY_SMS_SUBMIT)
        ud = secure_response(por, SECURED, AES_KEYS, kic=AES_KIC, kid=AES_KID)
        self.assertEqual(len(ud), 9 + 16)  # CNTR..CC = 15 bytes, padded to one AES block
        self.assertEqual(ud[5], 0x12)
        self.assertEqual(verify_response(ud, SECURED, AES_KEYS, kic=AES_KIC, kid=AES_KID), por)

    def test_rcPorReadsKidAsCrc(self) -> None:
        """A CC command asking for an RC PoR: KID 15 (3DES) means CRC32 in the PoR."""
        spi = Spi(checksum=ChecksumKind.CC, por=PorMode.ALWAYS, por_checksum=ChecksumKind.RC)
        self.assertEqual(spi.to_bytes(), b"\x02\x05")
        kid = Kid.from_byte(0x15, ChecksumKind.CC)
        por = ResponsePacket(TAR, 3, PorStatus.POR_OK, b"\x01\x90\x00")
        ud = secure_response(por, spi, OtaKeys(), kid=kid)
        self.assertEqual(ud[5], 0x0E)
        self.assertEqual(ud[16:20], zlib.crc32(ud[:16] + ud[20:]).to_bytes(4, "big"))
        self.assertEqual(verify_response(ud, spi, OtaKeys(), kid=kid), por)

    def test_tamperedCc(self) -> None:
        """A flipped data bit fails the CC; decode_response still shows it."""
        por = ResponsePacket(TAR, 3, PorStatus.POR_OK, b"\x01\x90\x00")
        spi = Spi(por=PorMode.ALWAYS, por_checksum=ChecksumKind.CC)
        ud = bytearray(secure_response(por, spi, AES_KEYS, kid=AES_KID))
        ud[-1] ^= 0x40
        self.assertRaises(BadChecksum, verify_response, bytes(ud), spi, AES_KEYS, kid=AES_KID)
        opened = decode_response(bytes(ud), spi, AES_KEYS, kid=AES_KID)
        self.assertIs(opened.checksum_ok, False)
        self.assertEqual(opened.packet.data, b"\x01\x90\x40")

    def test_needsTheCommandsAlgorithms(self) -> None:
        """Without the command's KIc/KID, a secured PoR cannot be built or checked."""
        por = ResponsePacket(TAR)
        self.assertRaises(SecurityError, secure_response, por, SECURED, AES_KEYS, kid=AES_KID)
        self.assertRaises(SecurityError, secure_response, por, SECURED, AES_KEYS, kic=AES_KIC)
        ud = secure_response(por, SECURED, AES_KEYS, kic=AES_KIC, kid=AES_KID)
        self.assertRaises(SecurityError, verify_response, ud, SECURED, AES_KEYS, kid=AES_KID)


class MalformedResponseTests(SynchronousTestCase):
    """Lengths, UDH and status are checked and named."""

    def _plain(self, status: int = 0, data: bytes = b"") -> bytes:
        return secure_response(ResponsePacket(TAR, 0, status, data), Spi(), OtaKeys())

    def test_udh(self) -> None:
        """A PoR starts 02 71 00 (the command UDH 02 70 00 is not a PoR)."""
        ud = b"\x02\x70\x00" + self._plain()[3:]
        with self.assertRaises(BadFormat) as ctx:
            verify_response(ud, Spi(), OtaKeys())
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("UDH", 0))

    def test_rplAndRhl(self) -> None:
        """RPL must count what follows; RHL must fit SPI2 and the UD."""
        ud = self._plain(data=b"\x01\x90\x00")
        for bad, field in ((ud + b"\x00", "RPL"), (ud[:-1], "RPL"), (ud[:15], "RPL")):
            with self.assertRaises(BadLength) as ctx:
                verify_response(bad, Spi(), OtaKeys())
            self.assertEqual(ctx.exception.field, field)
        wrong_rhl = ud[:5] + b"\x0e" + ud[6:]
        with self.assertRaises(BadLength) as ctx:
            verify_response(wrong_rhl, Spi(), OtaKeys())
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("RHL", 5))

    def test_unknownStatus(self) -> None:
        """A status byte beyond 0C is refused, naming the status field."""
        ud = self._plain()[:-1] + b"\x0d"
        with self.assertRaises(BadFormat) as ctx:
            verify_response(ud, Spi(), OtaKeys())
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("status", 15))

    def test_clearPaddingCount(self) -> None:
        """A clear PoR has PCNTR 0."""
        ud = bytearray(self._plain(data=b"\x01\x90\x00"))
        ud[14] = 2
        self.assertRaises(BadFormat, verify_response, bytes(ud), Spi(), OtaKeys())

    def test_cipheredNotWholeBlocks(self) -> None:
        """A ciphered PoR with a CC whose length is not whole blocks is a ciphering error."""
        ud = secure_response(ResponsePacket(TAR), SECURED, AES_KEYS, kic=AES_KIC, kid=AES_KID)
        ud = ud[:3] + (len(ud) - 4).to_bytes(2, "big") + ud[5:] + b"\x00"
        self.assertRaises(
            CipheringError, verify_response, ud, SECURED, AES_KEYS, kic=AES_KIC, kid=AES_KID
        )

    def test_packetFields(self) -> None:
        """ResponsePacket checks its TAR and counter, and takes a status as an int."""
        self.assertEqual(ResponsePacket(TAR, 0, 9).status, PorStatus.TAR_UNKNOWN)
        self.assertRaises(BadFormat, ResponsePacket, TAR, 0, 0x0D)
        self.assertRaises(BadFormat, ResponsePacket, b"\x00\x00", 0)
        self.assertRaises(BadFormat, ResponsePacket, TAR, 1 << 40)


class CompactResultTests(SynchronousTestCase):
    """Response data of compact scripts: count, last SW, last data."""

    def test_realCard(self) -> None:
        """The real two-command PoR reads as 2 executed, SW 9000 and the GET RESPONSE data."""
        data = bytes.fromhex(
            vectors.by_name(RESPONSES, "real card SJA2 PoR ciphered+CC, 2 commands")["decoded"][
                "data"
            ]
        )
        result = CompactResult.from_bytes(data)
        self.assertEqual((result.executed, result.last_sw, len(result.last_data)), (2, 0x9000, 22))
        self.assertEqual(result.to_bytes(), data)

    def test_swOnly(self) -> None:
        """01 6132: one command, SW 6132, no data."""
        self.assertEqual(
            CompactResult.from_bytes(bytes.fromhex("016132")), CompactResult(1, 0x6132)
        )

    def test_refused(self) -> None:
        """Fewer than three bytes, or out-of-range values, are refused."""
        self.assertRaises(BadLength, CompactResult.from_bytes, b"\x01\x90")
        self.assertRaises(BadFormat, CompactResult, 256, 0x9000)
        self.assertRaises(BadFormat, CompactResult, 1, 0x10000)
