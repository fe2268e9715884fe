"""Master keys in a SoftHSM2 token, deriving card keys there (L{bipgw.keys._pkcs11_masters})."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    KdfPurpose,
    KeyAlgorithm,
    KeyKind,
    KeyManagementError,
    KeyStore,
    MasterKeyConflictError,
    MasterKeyRing,
    Pkcs11MasterKeys,
    Pkcs11RootKeys,
    Pkcs11Token,
    RootKey,
    Secret,
    TokenMaster,
    UnknownKeyError,
    derive_card_key,
    derive_card_key_v2,
    token_master_label,
)
from tests.softhsm import SoftHsm

ICCID = "8988211000000000018"
MASTERS = (
    Secret(bytes(range(16))),
    Secret(bytes.fromhex("9f" * 12 + "01" * 12)),
    Secret(bytes(range(100, 132))),
)

iccids = st.builds(
    lambda digits, n: digits[:n],
    st.text("0123456789", min_size=20, max_size=20),
    st.sampled_from((18, 19, 20)),
)


class _Token(SynchronousTestCase):
    def setUp(self) -> None:
        self.hsm = SoftHsm(self)
        self.token = Pkcs11Token(self.hsm.module, self.hsm.pin, token_label=self.hsm.label)
        self.addCleanup(self.token.close)


class TokenDerivationTests(_Token):
    """The token's derivation equals the software KDF for the same master bytes."""

    def setUp(self) -> None:
        super().setUp()
        self.masters = Pkcs11MasterKeys(self.token)
        for i, master in enumerate(MASTERS):
            self.masters.import_key(f"m{i}", master)

    @settings(max_examples=60, deadline=None)
    @given(
        which=st.integers(0, len(MASTERS) - 1),
        iccid=iccids,
        purpose=st.sampled_from(KdfPurpose),
        algorithm=st.sampled_from(KeyAlgorithm),
        kvn=st.integers(0, 255),
    )
    def test_v2SameAsSoftware(
        self, which: int, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
    ) -> None:
        """v2 in the token is L{derive_card_key_v2} (every purpose, algorithm, KVN)."""
        self.assertEqual(
            self.masters.derive_v2(f"m{which}", iccid, purpose, algorithm, kvn),
            derive_card_key_v2(MASTERS[which], iccid, purpose, algorithm, kvn),
        )

    @settings(max_examples=30, deadline=None)
    @given(
        which=st.integers(0, len(MASTERS) - 1),
        iccid=iccids,
        purpose=st.sampled_from(KdfPurpose),
        algorithm=st.sampled_from(KeyAlgorithm),
    )
    def test_v1SameAsSoftware(
        self, which: int, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm
    ) -> None:
        self.assertEqual(
            self.masters.deriver(f"m{which}").derive(iccid, purpose, algorithm),
            derive_card_key(MASTERS[which], iccid, purpose, algorithm),
        )

    def test_versionsIndependent(self) -> None:
        """The key version and algorithm are bound: v2 keys differ between them, and from v1."""
        purpose = KdfPurpose.SCP81_PSK
        aes = KeyAlgorithm.AES_128
        keys = {
            self.masters.derive_v2("m0", ICCID, purpose, aes, 0x40),
            self.masters.derive_v2("m0", ICCID, purpose, aes, 0x41),
            self.masters.derive("m0", ICCID, purpose, aes),
            self.masters.derive_v2("m0", ICCID, KdfPurpose.OTA_KIC, aes, 0x40),
        }
        self.assertEqual(len(keys), 4)

    def test_unknownLabel(self) -> None:
        error = self.assertRaises(UnknownKeyError, self.masters.deriver, "absent")
        self.assertIn("no master key 'absent' in the PKCS#11 token", str(error))


class TokenMasterTests(_Token):
    """Kind and derivation version come from the token label."""

    def test_parse(self) -> None:
        psk = KeyKind.MASTER_PSK
        self.assertEqual(
            TokenMaster.parse("master-psk:v2:a:b"), TokenMaster("master-psk:v2:a:b", "a:b", psk, 2)
        )
        self.assertEqual(TokenMaster.parse("master-psk:v1:x").kdf, 1)
        # Made before the version field: v1, what Pkcs11MasterKeys.derive computed.
        self.assertEqual(
            TokenMaster.parse("master-psk:old"), TokenMaster("master-psk:old", "old", psk, 1)
        )
        self.assertIsNone(TokenMaster.parse("psk-1").kind)
        self.assertIsNone(TokenMaster.parse("transport:v2:x").kind)
        self.assertIsNone(TokenMaster.parse("master-psk:").kind)

    def test_labelRefusals(self) -> None:
        self.assertRaises(KeyManagementError, token_master_label, KeyKind.TRANSPORT, "x")
        self.assertRaises(KeyManagementError, token_master_label, KeyKind.MASTER_PSK, "x", 3)
        self.assertEqual(token_master_label(KeyKind.MASTER_PSK, "x"), "master-psk:v2:x")

    def test_masterKeys(self) -> None:
        """Each token master is a L{MasterKey} of its purpose, deriving in the token."""
        masters = Pkcs11MasterKeys(self.token)
        masters.import_key(token_master_label(KeyKind.MASTER_PSK, "P"), MASTERS[0])
        masters.import_key(token_master_label(KeyKind.MASTER_OTA_KIC, "K", 1), MASTERS[1])
        masters.import_key("no-kind", MASTERS[2])
        masters.generate(token_master_label(KeyKind.MASTER_SCP03_ENC, "E"), 32)
        found = {purpose: master for purpose, master in masters.masters()}
        self.assertEqual(
            set(found), {KdfPurpose.SCP81_PSK, KdfPurpose.OTA_KIC, KdfPurpose.SCP03_ENC}
        )
        self.assertEqual(
            (found[KdfPurpose.SCP81_PSK].label, found[KdfPurpose.SCP81_PSK].kdf), ("P", 2)
        )
        self.assertEqual(found[KdfPurpose.OTA_KIC].kdf, 1)
        self.assertIn("in the PKCS#11 token", found[KdfPurpose.SCP81_PSK].where)
        ring = MasterKeyRing(masters.masters())
        aes = KeyAlgorithm.AES_128
        self.assertEqual(
            ring.derive(ICCID, KdfPurpose.SCP81_PSK, aes, 0x40),
            derive_card_key_v2(MASTERS[0], ICCID, KdfPurpose.SCP81_PSK, aes, 0x40),
        )
        self.assertEqual(
            ring.derive(ICCID, KdfPurpose.OTA_KIC, aes, 1),
            derive_card_key(MASTERS[1], ICCID, KdfPurpose.OTA_KIC, aes),
        )
        entries = {e.label: e for e in masters.entries()}
        self.assertEqual(entries["E"].length, 32)
        self.assertTrue(all(e.protected for e in entries.values()))
        self.assertIsNone(entries["no-kind"].kind)
        # What is shown about them never holds a value.
        for master in MASTERS:
            self.assertNotIn(master.reveal().hex(), repr(masters.entries()) + repr(ring))

    def test_heldBy(self) -> None:
        """A token without master keys gives none (and needs no CKM_AES_CMAC)."""
        self.assertIsNone(Pkcs11MasterKeys.held_by(self.token))
        Pkcs11MasterKeys(self.token).generate(token_master_label(KeyKind.MASTER_PSK, "P"))
        held = Pkcs11MasterKeys.held_by(self.token)
        assert held is not None
        self.assertEqual(len(held.masters()), 1)


class CombineTests(_Token):
    """The keystore's and the token's masters in one ring; a purpose in both is refused."""

    def keystore(self) -> KeyStore:
        path = Path(self.mktemp())
        return KeyStore.create(path, RootKey.generate())

    def test_combined(self) -> None:
        keystore = self.keystore()
        keystore.put("KS-KIC", KeyKind.MASTER_OTA_KIC, MASTERS[1], {"kdf": 2})
        Pkcs11MasterKeys(self.token).import_key(
            token_master_label(KeyKind.MASTER_PSK, "HSM-PSK"), MASTERS[0]
        )
        ring = MasterKeyRing.combine(
            MasterKeyRing.from_keystore(keystore),
            MasterKeyRing(Pkcs11MasterKeys(self.token).masters()),
        )
        self.assertTrue(ring.has(KdfPurpose.SCP81_PSK))
        self.assertTrue(ring.has(KdfPurpose.OTA_KIC))
        self.assertEqual(len(ring.masters()), 2)

    def test_conflictRefused(self) -> None:
        keystore = self.keystore()
        keystore.put("KS-PSK", KeyKind.MASTER_PSK, MASTERS[1], {"kdf": 2})
        Pkcs11MasterKeys(self.token).import_key(
            token_master_label(KeyKind.MASTER_PSK, "HSM-PSK"), MASTERS[0]
        )
        error = self.assertRaises(
            MasterKeyConflictError,
            MasterKeyRing.combine,
            MasterKeyRing.from_keystore(keystore),
            MasterKeyRing(Pkcs11MasterKeys(self.token).masters()),
        )
        self.assertIn("master-psk master keys in two places", str(error))
        self.assertIn("'KS-PSK' in the keystore", str(error))
        self.assertIn("'HSM-PSK' in the PKCS#11 token", str(error))

    def test_rootKeyToken(self) -> None:
        """The root key's token session serves its master keys."""
        root = Pkcs11RootKeys.initialise(self.token)
        self.assertIs(root.token, self.token)
