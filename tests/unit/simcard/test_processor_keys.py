"""Tests for PUT KEY, DELETE [key] and key check values."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import decode_ber_one
from simcard.gp import (
    KEY_TYPE_AES,
    KEY_TYPE_DES,
    KEY_TYPE_PSK,
    GpProcessor,
    default_registry,
    key_check_value,
)
from simcard.model import OtaAlgorithm
from tests import vectors
from tests.unit.simcard import (
    DEK,
    KIC,
    KID,
    PSK,
    FakeSecureChannel,
    encrypt_key,
    found,
    h,
    make_profile,
)

GP_TEST_KEY = h("404142434445464748494A4B4C4D4E4F")
NEW = [bytes(range(n, n + 16)) for n in (0x70, 0x80, 0x90)]


def processor(**kwargs: object) -> GpProcessor:
    return GpProcessor(make_profile(), default_registry(), **kwargs)  # type: ignore[arg-type]


def key_block(key_type: int, key: bytes, dek: bytes = DEK, check: bytes | None = None) -> bytes:
    block = encrypt_key(key, dek)
    kcv = key_check_value(key_type, key) if check is None else check
    return bytes((key_type, len(block))) + block + bytes((len(kcv),)) + kcv


def put_key(p1: int, p2: int, kvn: int, *blocks: bytes) -> CommandApdu:
    return CommandApdu(0x80, 0xD8, p1, p2, bytes((kvn,)) + b"".join(blocks), 256)


class KeyCheckValueTests(SynchronousTestCase):
    """KCVs match the values GP tools print for the GP test key 40..4F."""

    def test_desKcv(self) -> None:
        """3DES KCV: first 3 bytes of 3DES-ECB over 8 zero bytes (8BAF47)."""
        self.assertEqual(key_check_value(KEY_TYPE_DES, GP_TEST_KEY), h("8BAF47"))

    def test_aesKcv(self) -> None:
        """AES KCV: first 3 bytes of AES-ECB over 16 bytes 01 (504A77)."""
        self.assertEqual(key_check_value(KEY_TYPE_AES, GP_TEST_KEY), h("504A77"))


class PutKeyTests(SynchronousTestCase):
    """PUT KEY adds and replaces key sets, decrypting with the DEK."""

    def test_addOtaSet(self) -> None:
        """Three AES keys (P2 81) add OTA key set 2; the answer is KVN + KCVs."""
        proc = processor()
        blocks = [key_block(KEY_TYPE_AES, k) for k in NEW]
        answer = proc.process(put_key(0x00, 0x81, 0x02, *blocks))
        kcvs = b"".join(key_check_value(KEY_TYPE_AES, k) for k in NEW)
        self.assertEqual(answer, ResponseApdu(b"\x02" + kcvs, 0x9000))
        ks = found(proc.profile.ota_key_set(2))
        self.assertEqual((ks.kic, ks.kid, ks.kik), tuple(NEW))
        self.assertEqual(ks.algorithm, OtaAlgorithm.AES)
        self.assertTrue(proc.registry.changed)

    def test_addDesSetWithoutLengthByte(self) -> None:
        """A 16-byte block is the encrypted key alone (GP Table 11-71)."""
        proc = processor()
        blocks = [
            bytes((KEY_TYPE_DES, 16))
            + encrypt_key(k, length_prefix=False)
            + b"\x03"
            + key_check_value(KEY_TYPE_DES, k)
            for k in NEW[:2]
        ]
        self.assertEqual(proc.process(put_key(0x00, 0x81, 0x03, *blocks)).sw, 0x9000)
        ks = found(proc.profile.ota_key_set(3))
        self.assertEqual(ks.algorithm, OtaAlgorithm.TDES)
        self.assertEqual(ks.kik, b"")

    def test_replaceScp03(self) -> None:
        """Replacing SCP03 set 30 by 31 needs the old DEK; later keys need the new DEK."""
        proc = processor()
        blocks = [key_block(KEY_TYPE_AES, k) for k in NEW]
        self.assertEqual(proc.process(put_key(0x30, 0x81, 0x31, *blocks)).sw, 0x9000)
        self.assertIsNone(proc.profile.scp03_key_set(0x30))
        self.assertEqual(found(proc.profile.scp03_key_set()).dek, NEW[2])
        psk = key_block(KEY_TYPE_PSK, NEW[0])
        self.assertEqual(proc.process(put_key(0x40, 0x01, 0x40, psk)).sw, 0x6982)
        psk = key_block(KEY_TYPE_PSK, NEW[0], dek=NEW[2])
        self.assertEqual(proc.process(put_key(0x40, 0x01, 0x40, psk)).sw, 0x9000)
        self.assertEqual(found(proc.profile.psk).key, NEW[0])
        self.assertEqual(found(proc.profile.psk).identity, found(make_profile().psk).identity)

    def test_replaceOneKey(self) -> None:
        """Under the same KVN one key can be replaced; the others stay."""
        proc = processor()
        answer = proc.process(put_key(0x01, 0x03, 0x01, key_block(KEY_TYPE_AES, NEW[0])))
        self.assertEqual(answer.sw, 0x9000)
        ks = found(proc.profile.ota_key_set(1))
        self.assertEqual((ks.kic, ks.kid, ks.kik), (KIC, KID, NEW[0]))

    def test_secureChannelDek(self) -> None:
        """In a session, keys are decrypted with the DEK of the session's key set."""
        sc = FakeSecureChannel()
        proc = processor(secure_channel=sc)
        blocks = [key_block(KEY_TYPE_AES, k) for k in NEW]
        proc.process(put_key(0x00, 0x81, 0x31, *blocks))
        proc.process(CommandApdu.from_hex("8050310008 0000000000000000 00"))
        proc.process(CommandApdu.from_hex("8482000008 0000000000000000"))
        psk = key_block(KEY_TYPE_PSK, NEW[1], dek=NEW[2])
        answer = proc.process(FakeSecureChannel.protect(put_key(0x40, 0x01, 0x40, psk)))
        self.assertEqual(answer.sw, 0x9000)
        self.assertEqual(found(proc.profile.psk).key, NEW[1])

    def test_kcvMismatch(self) -> None:
        """A wrong KCV answers 6982 and changes nothing."""
        proc = processor()
        bad = key_block(KEY_TYPE_PSK, NEW[0], check=h("000000"))
        self.assertEqual(proc.process(put_key(0x40, 0x01, 0x40, bad)).sw, 0x6982)
        self.assertEqual(found(proc.profile.psk).key, PSK)
        self.assertFalse(proc.registry.changed)

    def test_noKcv(self) -> None:
        """An empty KCV is accepted; the answer still carries the computed one."""
        proc = processor()
        block = key_block(KEY_TYPE_PSK, NEW[0], check=b"")
        answer = proc.process(put_key(0x40, 0x01, 0x40, block))
        self.assertEqual(answer.data, b"\x40" + key_check_value(KEY_TYPE_AES, NEW[0]))

    def test_refusals(self) -> None:
        """Status words for the ways PUT KEY can be wrong."""
        proc = processor()
        aes = [key_block(KEY_TYPE_AES, k) for k in NEW]
        cases = [
            (put_key(0x00, 0x81, 0x01, *aes), 0x6985),  # set 1 exists
            (put_key(0x05, 0x81, 0x05, *aes), 0x6A88),  # no set 5 to replace
            (put_key(0x00, 0x81, 0x20, *aes), 0x6A80),  # SCP02 range: no family
            (put_key(0x01, 0x81, 0x31, *aes), 0x6A80),  # family change
            (put_key(0x00, 0x81, 0x02, aes[0]), 0x6A80),  # incomplete new set
            (put_key(0x00, 0x01, 0x02, *aes), 0x6A80),  # one-key form with three
            (put_key(0x00, 0x00, 0x02, *aes), 0x6A86),  # KID 0
            (put_key(0x00, 0x81, 0x41, key_block(KEY_TYPE_PSK, NEW[0])), 0x6A84),  # 2nd PSK
            (put_key(0x40, 0x01, 0x40, key_block(KEY_TYPE_AES, NEW[0])), 0x6A80),  # type
            (put_key(0x00, 0x81, 0x32, *aes[:2], key_block(KEY_TYPE_DES, NEW[2])), 0x6A80),
            (put_key(0x00, 0x81, 0x02, *aes[:2], key_block(KEY_TYPE_DES, NEW[2])), 0x6A80),
            (put_key(0x00, 0x81, 0x02, aes[0][:-2]), 0x6A80),  # truncated
            (put_key(0x00, 0x81, 0x02, b"\xff\x00\x00"), 0x6A80),  # extended format
            (put_key(0x00, 0x81, 0x02, aes[0][:-4] + b"\x02\x00\x00"), 0x6A80),  # KCV size
            (CommandApdu(0x80, 0xD8, 0, 0x81, b"\x02"), 0x6A80),
        ]
        for apdu, sw in cases:
            self.assertEqual(proc.process(apdu).sw, sw, apdu)
        self.assertEqual(proc.profile, make_profile())

    def test_noDek(self) -> None:
        """Without any SCP03 key set the card cannot decrypt keys (6985)."""
        proc = GpProcessor(attrs.evolve(make_profile(), scp03=()), default_registry())
        answer = proc.process(put_key(0x40, 0x01, 0x40, key_block(KEY_TYPE_PSK, NEW[0])))
        self.assertEqual(answer.sw, 0x6985)

    def test_keyInformationFollows(self) -> None:
        """GET DATA E0 lists a key set added by PUT KEY."""
        proc = processor()
        proc.process(put_key(0x00, 0x81, 0x02, *(key_block(KEY_TYPE_AES, k) for k in NEW)))
        template = decode_ber_one(proc.process(CommandApdu.from_hex("80CA00E000")).data)
        entries = [c.value for c in template.children()]
        self.assertIn(h("01028810"), entries)
        self.assertIn(h("03028810"), entries)


class DeleteKeyTests(SynchronousTestCase):
    """DELETE [key] by KID and/or KVN."""

    def test_vectorDeletePsk(self) -> None:
        """The public vector (KID 01, KVN 40) deletes the PSK."""
        proc = processor()
        capdu = vectors.by_name("gp_apdus", "DELETE key KID 01 KVN 40")["capdu"]
        self.assertEqual(proc.process(CommandApdu.from_hex(capdu)), ResponseApdu(b"\x00", 0x9000))
        self.assertIsNone(proc.profile.psk)
        self.assertEqual(proc.process(CommandApdu.from_hex(capdu)).sw, 0x6A88)

    def test_deleteSet(self) -> None:
        """D2 alone deletes a whole set; D0 03 removes only an OTA KIK."""
        proc = processor()
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000006 D00103 D20101")).sw, 0x9000)
        self.assertEqual(found(proc.profile.ota_key_set(1)).kik, b"")
        self.assertEqual(found(proc.profile.ota_key_set(1)).kic, KIC)
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000003 D20101")).sw, 0x9000)
        self.assertIsNone(proc.profile.ota_key_set(1))
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000003 D20130")).sw, 0x9000)
        self.assertEqual(proc.profile.scp03, ())

    def test_deleteRefusals(self) -> None:
        """Half a working set 6985; unknown key 6A88; a two-byte KID 6A80."""
        proc = processor()
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000006 D00101 D20101")).sw, 0x6985)
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000006 D00104 D20101")).sw, 0x6A88)
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000003 D20107")).sw, 0x6A88)
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000003 D20120")).sw, 0x6A88)
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000004 D0020101")).sw, 0x6A80)
        self.assertEqual(proc.profile, make_profile())

    def test_deleteByKidOnly(self) -> None:
        """D0 alone deletes that KID in every set holding it, all or nothing."""
        proc = processor()
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000003 D00103")).sw, 0x6985)
        self.assertEqual(proc.profile, make_profile())  # the SCP03 DEK cannot go alone
        proc = GpProcessor(attrs.evolve(make_profile(), scp03=()), default_registry())
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000003 D00103")).sw, 0x9000)
        self.assertEqual(found(proc.profile.ota_key_set(1)).kik, b"")
        self.assertEqual(found(proc.profile.ota_key_set(1)).kic, KIC)
        self.assertEqual(proc.process(CommandApdu.from_hex("80E4000003 D00101")).sw, 0x6985)
