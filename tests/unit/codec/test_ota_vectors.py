"""The OTA codec against the public SCP80 vectors, and against an independent derivation.

Every vector of C{scp80_sms_command_packets} and C{scp80_sms_response_packets}
is checked byte for byte.  The checksums are also recomputed here without the
codec, composing C{cryptography} primitives differently (block-by-block ECB
chaining for the 3DES CC, a hand-written SP 800-38B CMAC over AES-ECB,
fresh CBC contexts for ciphering), so the codec is not only agreeing with
itself.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    BadChecksum,
    CommandPacket,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaKeys,
    PorStatus,
    Spi,
    command_user_data,
    decode_response,
    parse_command_header,
    secure_command,
    secure_response,
    strip_command_udh,
    verify_command,
    verify_response,
)
from bipgw.codec.ota._crypto import checksum
from tests import vectors

COMMANDS = "scp80_sms_command_packets"
RESPONSES = "scp80_sms_response_packets"
_ALGORITHMS = {
    "3des": (KicAlgorithm.TDES_2KEY, KidAlgorithm.TDES_2KEY),
    "aes": (KicAlgorithm.AES_CBC, KidAlgorithm.AES_CMAC),
}


def _keys(v: dict[str, Any]) -> OtaKeys:
    return OtaKeys(kic_key=bytes.fromhex(v["kic_key"]), kid_key=bytes.fromhex(v["kid_key"]))


def _command(v: dict[str, Any]) -> CommandPacket:
    spi = Spi.from_bytes(bytes.fromhex(v["spi"]))
    return CommandPacket(
        spi=spi,
        kic=Kic.from_byte(int(v["kic_byte"], 16)),
        kid=Kid.from_byte(int(v["kid_byte"], 16), spi.checksum),
        tar=bytes.fromhex(v["tar"]),
        counter=int(v["cntr"], 16),
        data=bytes.fromhex(v["secured_data_plain"]),
    )


def _por_security(v: dict[str, Any]) -> tuple[Spi, Kic, Kid]:
    kic_alg, kid_alg = _ALGORITHMS[v["algo"]]
    spi = Spi.from_bytes(bytes((0, int(v["spi2"], 16))))
    return spi, Kic(1, kic_alg), Kid(1, kid_alg)


# --- an independent toolbox: no code shared with bipgw.codec.ota._crypto ---


def _tdes_ecb_block(key: bytes, block: bytes) -> bytes:
    full = key + key[:8] if len(key) == 16 else key
    return Cipher(TripleDES(full), modes.ECB()).encryptor().update(block)


def _tdes_cbc_mac(key: bytes, data: bytes) -> bytes:
    """Full 3DES-CBC, IV=0, chained by hand one ECB block at a time."""
    data += bytes(-len(data) % 8)
    state = bytes(8)
    for i in range(0, len(data), 8):
        mixed = bytes(a ^ b for a, b in zip(state, data[i : i + 8], strict=True))
        state = _tdes_ecb_block(key, mixed)
    return state


def _aes_block(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def _double(block: bytes) -> bytes:
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ 0x87
    return value.to_bytes(16, "big")


def _aes_cmac(key: bytes, data: bytes) -> bytes:
    """NIST SP 800-38B CMAC written out over AES-ECB."""
    k1 = _double(_aes_block(key, bytes(16)))
    k2 = _double(k1)
    blocks = [data[i : i + 16] for i in range(0, len(data), 16)] or [b""]
    last = blocks[-1]
    if len(last) == 16:
        last = bytes(a ^ b for a, b in zip(last, k1, strict=True))
    else:
        padded = last + b"\x80" + bytes(15 - len(last))
        last = bytes(a ^ b for a, b in zip(padded, k2, strict=True))
    state = bytes(16)
    for block in [*blocks[:-1], last]:
        state = _aes_block(key, bytes(a ^ b for a, b in zip(state, block, strict=True)))
    return state


def _cbc_decrypt(kic_alg: KicAlgorithm, key: bytes, data: bytes) -> bytes:
    if kic_alg == KicAlgorithm.AES_CBC:
        cipher = Cipher(algorithms.AES(key), modes.CBC(bytes(16)))
    else:
        cipher = Cipher(TripleDES(key + key[:8]), modes.CBC(bytes(8)))
    context = cipher.decryptor()
    return context.update(data) + context.finalize()


class CommandVectorTests(SynchronousTestCase):
    """Every public command-packet vector, exactly."""

    def test_vectorsPresent(self) -> None:
        """The section is there and not empty (a silent skip would prove nothing)."""
        self.assertGreaterEqual(len(vectors.section(COMMANDS)), 9)

    def test_secureMatchesEveryVector(self) -> None:
        """secure_command gives expected_command_packet, and with the UDH sms_user_data."""
        for v in vectors.section(COMMANDS):
            with self.subTest(v["name"]):
                raw = secure_command(_command(v), _keys(v))
                self.assertEqual(raw.hex(), v["expected_command_packet"])
                self.assertEqual(command_user_data(raw).hex(), v["sms_user_data"])

    def test_verifyRecoversEveryVector(self) -> None:
        """verify_command on the vector's user data recovers the plain data and fields."""
        for v in vectors.section(COMMANDS):
            with self.subTest(v["name"]):
                raw = strip_command_udh(bytes.fromhex(v["sms_user_data"]))
                got = verify_command(raw, _keys(v), last_counter=None)
                self.assertEqual(got, _command(v))
                self.assertEqual(got.data.hex(), v["secured_data_plain"])

    def test_headerReadableBeforeKeys(self) -> None:
        """The clear header (SPI, KIc, KID, TAR) comes out without any key."""
        for v in vectors.section(COMMANDS):
            with self.subTest(v["name"]):
                spi, kic, kid, tar = parse_command_header(
                    bytes.fromhex(v["expected_command_packet"])
                )
                self.assertEqual(spi.to_bytes().hex(), v["spi"])
                self.assertEqual(kic.to_byte(), int(v["kic_byte"], 16))
                self.assertEqual(kid.to_byte(), int(v["kid_byte"], 16))
                self.assertEqual(tar.hex(), v["tar"])

    def test_cplPresentWhenClear(self) -> None:
        """Unciphered packets carry CPL too (pySim's encoder drops it; TS 31.115 does not)."""
        v = vectors.by_name(COMMANDS, "no security (Test_SMS_3DES)")
        raw = secure_command(_command(v), _keys(v))
        self.assertEqual(raw[:2], (len(raw) - 2).to_bytes(2, "big"))
        self.assertEqual(raw[2:].hex(), "0d00193535b0000000000000000000a40000023f00")

    def test_tdesCcIndependently(self) -> None:
        """A hand-chained 3DES-CBC MAC over CPL..data equals the vector's CC and the codec's."""
        v = vectors.by_name(COMMANDS, "3DES CC only, not ciphered (Test_SMS_3DES)")
        packet = bytes.fromhex(v["expected_command_packet"])
        cc = packet[16:24]
        mac_input = packet[:16] + packet[24:]
        key = bytes.fromhex(v["kid_key"])
        self.assertEqual(cc.hex(), "072ea17bdb72060e")
        self.assertEqual(_tdes_cbc_mac(key, mac_input), cc)
        self.assertEqual(checksum(KidAlgorithm.TDES_2KEY, key, mac_input), cc)

    def test_tdesCipheredIndependently(self) -> None:
        """Deciphering a real-card vector by hand gives CNTR, PCNTR, a matching CC and the data."""
        v = vectors.by_name(COMMANDS, "real card SJA2, counter mode 10 (must be higher), CNTR=100")
        packet = bytes.fromhex(v["expected_command_packet"])
        plain = _cbc_decrypt(KicAlgorithm.TDES_2KEY, bytes.fromhex(v["kic_key"]), packet[10:])
        self.assertEqual(plain[:5].hex(), v["cntr"])
        pcntr = plain[5]
        self.assertEqual((6 + 8 + 12 + pcntr) % 8, 0)
        mac_input = packet[:10] + plain[:6] + plain[14:]
        self.assertEqual(_tdes_cbc_mac(bytes.fromhex(v["kid_key"]), mac_input), plain[6:14])
        self.assertEqual(plain[14 : len(plain) - pcntr].hex(), v["secured_data_plain"])

    def test_aesCmacIndependently(self) -> None:
        """A hand-written AES-CMAC over the deciphered AES vector equals its CC (8 bytes)."""
        v = vectors.by_name(COMMANDS, "AES128-SJA5-CIPHERED-CC")
        packet = bytes.fromhex(v["expected_command_packet"])
        plain = _cbc_decrypt(KicAlgorithm.AES_CBC, bytes.fromhex(v["kic_key"]), packet[10:])
        pcntr = plain[5]
        self.assertEqual(pcntr, (-(6 + 8 + 7)) % 16)
        self.assertEqual(plain[6 + 8 :].hex(), v["secured_data_plain"] + "00" * pcntr)
        mac_input = packet[:10] + plain[:6] + plain[14:]
        full = _aes_cmac(bytes.fromhex(v["kid_key"]), mac_input)
        self.assertEqual(full[:8], plain[6:14])
        self.assertEqual(
            checksum(KidAlgorithm.AES_CMAC, bytes.fromhex(v["kid_key"]), mac_input), full[:8]
        )

    def test_cmacPublishedVectors(self) -> None:
        """The codec's AES-CMAC (first 8 bytes) matches RFC 4493 examples 1 and 2."""
        key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
        msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
        self.assertEqual(
            checksum(KidAlgorithm.AES_CMAC, key, b""), bytes.fromhex("bb1d6929e9593728")
        )
        self.assertEqual(
            checksum(KidAlgorithm.AES_CMAC, key, msg), bytes.fromhex("070a16b46b4d4144")
        )
        self.assertEqual(_aes_cmac(key, msg).hex(), "070a16b46b4d4144f79bdd9dd04a287c")


class ResponseVectorTests(SynchronousTestCase):
    """Every public PoR vector: decoded fields, CC verdict and re-securing."""

    def test_vectorsPresent(self) -> None:
        """The section is there and not empty."""
        self.assertGreaterEqual(len(vectors.section(RESPONSES)), 9)

    def test_decodeEveryVector(self) -> None:
        """decode_response gives the listed RPL, RHL, TAR, CNTR, PCNTR, status, CC and data."""
        for v in vectors.section(RESPONSES):
            with self.subTest(v["name"]):
                spi, kic, kid = _por_security(v)
                opened = decode_response(
                    bytes.fromhex(v["sms_user_data"]), spi, _keys(v), kic=kic, kid=kid
                )
                d = v["decoded"]
                self.assertEqual(
                    (opened.rpl, opened.rhl, opened.pcntr, opened.checksum.hex()),
                    (d["rpl"], d["rhl"], d["pcntr"], d["cc"]),
                )
                self.assertEqual(opened.packet.tar.hex(), d["tar"])
                self.assertEqual(opened.packet.counter, int(d["cntr"], 16))
                self.assertEqual(opened.packet.status, PorStatus(d["status"]))
                self.assertEqual(opened.packet.data.hex(), d["data"])
                self.assertIs(opened.checksum_ok, d["cc_ok"])

    def test_verifyFollowsCcVerdict(self) -> None:
        """verify_response accepts exactly the vectors whose CC is good (or absent)."""
        for v in vectors.section(RESPONSES):
            with self.subTest(v["name"]):
                spi, kic, kid = _por_security(v)
                ud = bytes.fromhex(v["sms_user_data"])
                if v["decoded"]["cc_ok"] is False:
                    self.assertRaises(
                        BadChecksum, verify_response, ud, spi, _keys(v), kic=kic, kid=kid
                    )
                else:
                    got = verify_response(ud, spi, _keys(v), kic=kic, kid=kid)
                    self.assertEqual(got.data.hex(), v["decoded"]["data"])

    def test_resecureEveryVector(self) -> None:
        """Re-securing each decoded good PoR with its SPI2 gives the card's bytes back.

        All cards in the vectors pad with zeros, as this codec does.
        """
        checked = 0
        for v in vectors.section(RESPONSES):
            if v["decoded"]["cc_ok"] is False:
                continue
            with self.subTest(v["name"]):
                spi, kic, kid = _por_security(v)
                ud = bytes.fromhex(v["sms_user_data"])
                packet = verify_response(ud, spi, _keys(v), kic=kic, kid=kid)
                self.assertEqual(secure_response(packet, spi, _keys(v), kic=kic, kid=kid), ud)
                checked += 1
        self.assertGreaterEqual(checked, 8)

    def test_porCcIncludesUdhIndependently(self) -> None:
        """The PoR CC is a 3DES-CBC MAC whose input starts with the UDH 02 71 00."""
        v = vectors.by_name(RESPONSES, "3DES PoR CC only")
        ud = bytes.fromhex(v["sms_user_data"])
        mac_input = ud[:16] + ud[24:]
        self.assertEqual(mac_input[:3], b"\x02\x71\x00")
        self.assertEqual(
            _tdes_cbc_mac(bytes.fromhex(v["kid_key"]), mac_input).hex(), v["decoded"]["cc"]
        )
        self.assertNotEqual(
            _tdes_cbc_mac(bytes.fromhex(v["kid_key"]), mac_input[3:]).hex(), v["decoded"]["cc"]
        )

    def test_aesPorIndependently(self) -> None:
        """The AES PoR deciphers by hand and its CC is the hand CMAC over UDH..padding."""
        v = vectors.by_name(RESPONSES, "AES PoR ciphered+CC")
        ud = bytes.fromhex(v["sms_user_data"])
        plain = _cbc_decrypt(KicAlgorithm.AES_CBC, bytes.fromhex(v["kic_key"]), ud[9:])
        mac_input = ud[:9] + plain[:7] + plain[15:]
        self.assertEqual(plain[5], v["decoded"]["pcntr"])
        self.assertEqual(
            _aes_cmac(bytes.fromhex(v["kid_key"]), mac_input)[:8].hex(), v["decoded"]["cc"]
        )
