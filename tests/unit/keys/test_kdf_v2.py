"""Tests for derivation v2: SP 800-108 counter mode with a label binding purpose, algorithm, KVN.

The vectors were computed with C{cryptography}'s C{KBKDFCMAC} (an
implementation independent of bipgw's hand-written CMAC loop), and the
property test checks the two agree on any input.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    CardKeyDeriver,
    InvalidKeyError,
    KdfPurpose,
    KeyAlgorithm,
    Secret,
    derive_card_key,
    derive_card_key_v2,
    set_des_parity,
)

MASTER_128 = Secret(bytes(range(0x00, 0x10)))
MASTER_256 = Secret(bytes(range(0x20, 0x40)))
ICCID = "8988211000000000018"

#: Published in docs/keys.md section 5.2; computed with cryptography's KBKDFCMAC.
VECTORS: list[tuple[Secret, str, KdfPurpose, KeyAlgorithm, int, str, str]] = [
    (MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128, 0x01,
     "bipgw/2/OTA-KIC/aes-128/01", "3A6187DCE1052C3E88619BB75E5A1458"),
    (MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128, 0x02,
     "bipgw/2/OTA-KIC/aes-128/02", "EF32579733E3E89AB3A6651AD10DADAD"),
    (MASTER_128, ICCID, KdfPurpose.OTA_KID, KeyAlgorithm.AES_128, 0x01,
     "bipgw/2/OTA-KID/aes-128/01", "1E8B64172CBBFCA5F8405A78A3911191"),
    (MASTER_128, ICCID, KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x40,
     "bipgw/2/SCP81-PSK/aes-128/40", "24E45352716A1B119A4D77E1007A3281"),
    (MASTER_128, ICCID, KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x41,
     "bipgw/2/SCP81-PSK/aes-128/41", "EA4382260CF7B86753FC308E1804115D"),
    (MASTER_128, ICCID, KdfPurpose.SCP03_ENC, KeyAlgorithm.AES_128, 0x30,
     "bipgw/2/SCP03-ENC/aes-128/30", "22A606F7FBE66591E0E5EF185E0FD71D"),
    (MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.DES3_2KEY, 0x01,
     "bipgw/2/OTA-KIC/3des-2key/01", "E6CBC780EA584958E51C7AEC2F5E54E9"),
    (MASTER_256, "89882390000012345678", KdfPurpose.SCP03_DEK, KeyAlgorithm.AES_256, 0x31,
     "bipgw/2/SCP03-DEK/aes-256/31",
     "9A3AA8214AA5DCFF3E41355B84DEAFB072B40D6B59ECD3E3DAE6C34011F2541C"),
]  # fmt: skip


def _kbkdf(master: bytes, label: bytes, iccid: str, algorithm: KeyAlgorithm) -> bytes:
    """The independent implementation: cryptography's KBKDFCMAC."""
    out = KBKDFCMAC(
        algorithms.AES,
        Mode.CounterMode,
        algorithm.key_length,
        4,
        4,
        CounterLocation.BeforeFixed,
        label,
        iccid.encode("ascii"),
        None,
    ).derive(master)
    return set_des_parity(out) if algorithm.is_des else out


class VectorTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        """Each published vector: its label, and its key from both implementations."""
        for master, iccid, purpose, algorithm, kvn, label, expected in VECTORS:
            self.assertEqual(purpose.label_v2(algorithm, kvn), label.encode())
            key = derive_card_key_v2(master, iccid, purpose, algorithm, kvn)
            self.assertEqual(key.reveal().hex().upper(), expected, label)
            independent = _kbkdf(master.reveal(), label.encode(), iccid, algorithm)
            self.assertEqual(independent.hex().upper(), expected, label)

    def test_deriverAgrees(self) -> None:
        """L{CardKeyDeriver.derive_v2} is L{derive_card_key_v2}."""
        deriver = CardKeyDeriver(MASTER_128)
        for _, iccid, purpose, algorithm, kvn, _, expected in VECTORS[:7]:
            got = deriver.derive_v2(iccid, purpose, algorithm, kvn)
            self.assertEqual(got.reveal().hex().upper(), expected)

    def test_v1Unchanged(self) -> None:
        """Derivation v1 keeps its published value (docs/keys.md vector 1)."""
        key = derive_card_key(MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128)
        self.assertEqual(key.reveal().hex().upper(), "04C6F85264D52AA3685E2F53EA090118")

    def test_bindsVersionAndAlgorithm(self) -> None:
        """Other key version, other key; AES and 3DES keys differ beyond parity."""
        one = derive_card_key_v2(MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128, 1)
        two = derive_card_key_v2(MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128, 2)
        des = derive_card_key_v2(MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.DES3_2KEY, 1)
        self.assertNotEqual(one, two)
        self.assertNotEqual(set_des_parity(one.reveal()), des.reveal())

    def test_badVersion(self) -> None:
        """A key version outside 0-255 is refused by name."""
        for kvn in (-1, 256):
            with self.assertRaises(InvalidKeyError) as caught:
                derive_card_key_v2(MASTER_128, ICCID, KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128, kvn)
            self.assertIn("key version", str(caught.exception))

    @given(
        master=st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        serial=st.integers(10**17, 10**20 - 1),
        purpose=st.sampled_from(list(KdfPurpose)),
        algorithm=st.sampled_from(list(KeyAlgorithm)),
        kvn=st.integers(0, 255),
    )
    def test_matchesKbkdf(
        self, master: bytes, serial: int, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
    ) -> None:
        """bipgw's loop and cryptography's KBKDFCMAC agree for any input."""
        iccid = str(serial)
        key = derive_card_key_v2(Secret(master), iccid, purpose, algorithm, kvn)
        expected = _kbkdf(master, purpose.label_v2(algorithm, kvn), iccid, algorithm)
        self.assertEqual(key.reveal(), expected)
