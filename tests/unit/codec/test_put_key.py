"""PUT KEY for SCP03 (bipgw.codec.scp03.put_key_command), checked against a
byte layout computed here from GP 2.3 11.8 / Amendment D and against the
simulated card's own parser (simcard.gp, written independently); the
simulated card's parser is fuzzed with Hypothesis."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu
from bipgw.codec.scp03 import (
    KEY_TYPE_AES,
    KEY_TYPE_DES,
    KEY_TYPE_PSK,
    NewKey,
    PutKeyError,
    check_put_key_answer,
    key_check_value,
    put_key_command,
)
from simcard.gp import GpProcessor, default_registry
from tests.unit.simcard import DEK, make_profile

NEW = [bytes(range(n, n + 16)) for n in (0x70, 0x80, 0x90)]


def _aes_cbc(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return enc.update(data) + enc.finalize()


class EncodingTests(SynchronousTestCase):
    def test_layout(self) -> None:
        """One AES key: 80 D8 P1 P2 Lc, KVN, 88 11 10 E(key) 03 KCV, Le 00."""
        command = put_key_command(0x31, [NewKey(KEY_TYPE_AES, NEW[0])], DEK, old_kvn=0x30)
        expected_data = (
            b"\x31\x88\x11\x10"
            + _aes_cbc(DEK, NEW[0])
            + b"\x03"
            + _aes_cbc(NEW[0], b"\x01" * 16)[:3]
        )
        self.assertEqual(
            command.encode(),
            b"\x80\xd8\x30\x01" + bytes((len(expected_data),)) + expected_data + b"\x00",
        )

    def test_gpTestKeyKcv(self) -> None:
        """KCVs of the GP test key 40..4F: 3DES 8BAF47, AES 504A77 (GP tools print these)."""
        key = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
        self.assertEqual(key_check_value(KEY_TYPE_DES, key).hex().upper(), "8BAF47")
        self.assertEqual(key_check_value(KEY_TYPE_AES, key).hex().upper(), "504A77")

    def test_des24Padded(self) -> None:
        """A 24-byte 3DES key is padded to 32 and its length put first."""
        command = put_key_command(2, [NewKey(KEY_TYPE_DES, bytes(range(1, 25)))], DEK)
        self.assertEqual(command.data[1:4], b"\x80\x21\x18")

    def test_refusals(self) -> None:
        with self.assertRaises(PutKeyError):
            put_key_command(0x80, [NewKey(KEY_TYPE_AES, NEW[0])], DEK)
        with self.assertRaises(PutKeyError):
            put_key_command(1, [], DEK)
        with self.assertRaises(PutKeyError):
            NewKey(KEY_TYPE_DES, bytes(32))
        with self.assertRaises(PutKeyError):
            put_key_command(1, [NewKey(KEY_TYPE_AES, NEW[0])], b"short")

    def test_reprHidesKey(self) -> None:
        self.assertNotIn(NEW[0].hex(), repr(NewKey(KEY_TYPE_AES, NEW[0])))


class CardAgreesTests(SynchronousTestCase):
    """The simulated card (its own parser) takes what the codec builds."""

    def card(self) -> GpProcessor:
        return GpProcessor(make_profile(), default_registry())

    def run_on_card(self, command: CommandApdu) -> tuple[bytes, int]:
        answer = self.card_.process(command)
        return answer.data, answer.sw

    def setUp(self) -> None:
        self.card_ = self.card()

    def test_scp03Set(self) -> None:
        """Replacing SCP03 set 30 by 31: the card answers 31 and the three KCVs."""
        keys = [NewKey(KEY_TYPE_AES, k) for k in NEW]
        data, sw = self.run_on_card(put_key_command(0x31, keys, DEK, old_kvn=0x30))
        check_put_key_answer(data, sw, 0x31, keys)
        new = self.card_.profile.scp03_key_set(0x31)
        assert new is not None
        self.assertEqual((new.enc, new.mac, new.dek), tuple(NEW))
        self.assertIsNone(self.card_.profile.scp03_key_set(0x30))

    def test_psk(self) -> None:
        """Moving the PSK from 40 to 41."""
        keys = [NewKey(KEY_TYPE_PSK, NEW[1])]
        data, sw = self.run_on_card(put_key_command(0x41, keys, DEK, old_kvn=0x40))
        check_put_key_answer(data, sw, 0x41, keys)
        psk = self.card_.profile.psk
        assert psk is not None
        self.assertEqual((psk.kvn, psk.key), (0x41, NEW[1]))

    def test_otaDes(self) -> None:
        """A 3DES OTA set (16-byte keys: no length byte) as set 2."""
        keys = [NewKey(KEY_TYPE_DES, k) for k in NEW]
        data, sw = self.run_on_card(put_key_command(2, keys, DEK))
        check_put_key_answer(data, sw, 2, keys)

    def test_refusedAnswer(self) -> None:
        """A card refusal or a wrong KCV is reported without key material."""
        keys = [NewKey(KEY_TYPE_AES, k) for k in NEW]
        with self.assertRaises(PutKeyError) as refused:
            check_put_key_answer(b"", 0x6982, 0x31, keys)
        self.assertIn("6982", str(refused.exception))
        with self.assertRaises(PutKeyError) as wrong:
            check_put_key_answer(b"\x31" + bytes(9), 0x9000, 0x31, keys)
        self.assertIn("key 1", str(wrong.exception))
        for k in NEW:
            self.assertNotIn(k.hex(), str(wrong.exception))


class FuzzTests(SynchronousTestCase):
    """Whatever PUT KEY carries, the simulated card answers a status word
    (never 6F00, an internal error) and its profile stays valid."""

    @settings(max_examples=300, deadline=None)
    @given(p1=st.integers(0, 255), p2=st.integers(0, 255), data=st.binary(max_size=300))
    def test_anyData(self, p1: int, p2: int, data: bytes) -> None:
        card = GpProcessor(make_profile(), default_registry())
        answer = card.process(CommandApdu(0x80, 0xD8, p1, p2, data, le=256))
        self.assertNotEqual(answer.sw, 0x6F00)
        self.assertIsNotNone(card.profile.scp03_key_set(0x30) or card.profile.scp03)

    @settings(max_examples=200, deadline=None)
    @given(
        kvn=st.integers(0, 0x7F),
        old=st.integers(0, 0x7F),
        kinds=st.lists(
            st.tuples(
                st.sampled_from([KEY_TYPE_AES, KEY_TYPE_DES, KEY_TYPE_PSK]),
                st.sampled_from([16, 24, 32]),
            ),
            min_size=1,
            max_size=3,
        ),
        flip=st.integers(0, 400),
    )
    def test_mutatedCommands(
        self, kvn: int, old: int, kinds: list[tuple[int, int]], flip: int
    ) -> None:
        """Valid-looking PUT KEYs, one byte flipped: answered, never a crash."""
        keys = []
        for key_type, size in kinds:
            if key_type == KEY_TYPE_DES and size == 32:
                size = 24
            keys.append(NewKey(key_type, bytes(range(size))))
        if kvn == 0:
            kvn = 1
        command = put_key_command(kvn, keys, DEK, old_kvn=old)
        data = bytearray(command.data)
        if flip < len(data):
            data[flip] ^= 0x5A
        card = GpProcessor(make_profile(), default_registry())
        answer = card.process(CommandApdu(0x80, 0xD8, command.p1, command.p2, bytes(data), le=256))
        self.assertNotEqual(answer.sw, 0x6F00)
