"""Tests for per-card key diversification (NIST SP 800-108, AES-CMAC) and ICCIDs."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    InvalidIccidError,
    InvalidKeyError,
    KdfPurpose,
    KeyAlgorithm,
    Secret,
    derive_card_key,
    has_des_parity,
    normalise_iccid,
    psk_identity_for,
    set_des_parity,
)

MASTER_128 = Secret(bytes(range(0x00, 0x10)))
MASTER_256 = Secret(bytes(range(0x20, 0x40)))

#: Computed once with bipgw and published in docs/keys.md; a change here is a
#: change of every diversified key in the field.
VECTORS: list[tuple[Secret, str, KdfPurpose, KeyAlgorithm, str]] = [
    (MASTER_128, "8988211000000000018", KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128,
     "04C6F85264D52AA3685E2F53EA090118"),
    (MASTER_128, "8988211000000000018", KdfPurpose.OTA_KID, KeyAlgorithm.AES_128,
     "DB2FB4F5502FE704AAB932177EE144DA"),
    (MASTER_128, "8988211000000000018", KdfPurpose.OTA_KIK, KeyAlgorithm.AES_128,
     "A1D44C521F8EBDB8B8943063E48BF609"),
    (MASTER_128, "8988211000000000018", KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128,
     "64467BFC0F8C038EF3F73BB6B7337B17"),
    (MASTER_128, "8988211000000000018", KdfPurpose.OTA_KIC, KeyAlgorithm.DES3_2KEY,
     "04C7F85264D52AA2685E2F52EA080119"),
    (MASTER_128, "8988211000000000018", KdfPurpose.OTA_KID, KeyAlgorithm.DES3_3KEY,
     "83DFFB3E7FB9B50BC7E670914CDC2CB0E9100DD568687301"),
    (MASTER_128, "8988211000000000026", KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128,
     "371D18BFACD9FA4B7F9BFFF1A005E078"),
    (MASTER_256, "89882390000012345678", KdfPurpose.OTA_KIC, KeyAlgorithm.AES_256,
     "44868AB2BF4B03A2A5BE46EB5B0A8DFC8B39D9F630D9DB75D29A3464B656BD53"),
    (MASTER_256, "89882390000012345678", KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128,
     "C27A8B606D85EBB8971E3D5426A7A436"),
    (MASTER_256, "89882390000012345678", KdfPurpose.SCP03_ENC, KeyAlgorithm.AES_128,
     "190E99A847EB93A3CB041FC0C93F9B88"),
]  # fmt: skip

#: NIST CAVP SP 800-108 KBKDF vectors, CounterMode, CTRLOCATION=BEFORE_FIXED:
#: (PRF key, counter bytes, FixedInputData, KO).
CAVP: list[tuple[str, int, str, str]] = [
    # [PRF=CMAC_AES128][RLEN=32_BITS] COUNT=0, L=128
    ("c10b152e8c97b77e18704e0f0bd38305", 4,
     "98cd4cbbbebe15d17dc86e6dbad800a2dcbd64f7c7ad0e78e9cf94ffdba89d03"
     "e97eadf6c4f7b806caf52aa38f09d0eb71d71f497bcc6906b48d36c4",
     "26faf61908ad9ee881b8305c221db53f"),
    # [PRF=CMAC_AES128][RLEN=32_BITS] COUNT=10, L=256 (two PRF blocks)
    ("695f1b1a16c949cea51cdf2554ec9d42", 4,
     "4fce5942832a390aa1cbe8a0bf9d202cb799e986c9d6b51f45e4d597a6b57f06"
     "a4ebfec6467335d116b7f5f9c5b954062f661820f5db2a5bbb3e0625",
     "d34b601ec18c34dfa0f9e0b7523e218bdddb9befe8d08b6c0202d75ace0dba89"),
    # [PRF=CMAC_AES256][RLEN=32_BITS] COUNT=0, L=128
    ("d0b1b3b70b2393c48ca05159e7e28cbeadea93f28a7cdae964e5136070c45d5c", 4,
     "dd2f151a3f173492a6fbbb602189d51ddf8ef79fc8e96b8fcbe6dabe73a35b48"
     "104f9dff2d63d48786d2b3af177091d646a9efae005bdfacb61a1214",
     "8c449fb474d1c1d4d2a33827103b656a"),
    # [PRF=CMAC_AES128][RLEN=8_BITS] COUNT=0, L=128
    ("dff1e50ac0b69dc40f1051d46c2b069c", 1,
     "c16e6e02c5a3dcc8d78b9ac1306877761310455b4e41469951d9e6c2245a064b"
     "33fd8c3b01203a7824485bf0a64060c4648b707d2607935699316ea5",
     "8be8f0869b3c0ba97b71863d1b9f7813"),
]  # fmt: skip


def _sp800_108_counter_cmac(key: bytes, counter_bytes: int, fixed: bytes, length: int) -> bytes:
    """SP 800-108 counter mode written out: K(i) = CMAC(key, [i] || fixed)."""
    out = b""
    i = 1
    while len(out) < length:
        mac = CMAC(algorithms.AES(key))
        mac.update(i.to_bytes(counter_bytes, "big") + fixed)
        out += mac.finalize()
        i += 1
    return out[:length]


def _odd_parity(key: bytes) -> bytes:
    """Set each byte's low bit so the byte has an odd number of ones (written out)."""
    out = []
    for byte in key:
        ones = sum((byte >> bit) & 1 for bit in range(1, 8))
        out.append((byte & 0xFE) | (0 if ones % 2 else 1))
    return bytes(out)


def _reference(master: bytes, iccid_digits: str, purpose: KdfPurpose, alg: KeyAlgorithm) -> bytes:
    """The KDF exactly as docs/keys.md describes it, independent of KBKDFCMAC."""
    length = alg.key_length
    fixed = purpose.value + b"\x00" + iccid_digits.encode("ascii") + (length * 8).to_bytes(4, "big")
    key = _sp800_108_counter_cmac(master, 4, fixed, length)
    return _odd_parity(key) if alg.is_des else key


iccids = st.builds(
    lambda digits, filler: digits + filler,
    st.text(alphabet="0123456789", min_size=18, max_size=20),
    st.sampled_from(["", "F", "f"]),
)
masters = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


class ReferenceLoopTests(SynchronousTestCase):
    """The hand-written SP 800-108 loop used as an independent check is itself right."""

    def test_nistVectors(self) -> None:
        """It reproduces NIST CAVP KBKDF counter-mode CMAC-AES vectors."""
        for key, counter_bytes, fixed, expected in CAVP:
            out = _sp800_108_counter_cmac(
                bytes.fromhex(key), counter_bytes, bytes.fromhex(fixed), len(expected) // 2
            )
            self.assertEqual(out.hex(), expected)


class DiversificationTests(SynchronousTestCase):
    """Per-card keys follow docs/keys.md exactly."""

    def test_publishedVectors(self) -> None:
        """The vectors published in docs/keys.md are reproduced."""
        for master, iccid, purpose, algorithm, expected in VECTORS:
            key = derive_card_key(master, iccid, purpose, algorithm)
            self.assertEqual(key.reveal().hex().upper(), expected, (iccid, purpose, algorithm))

    def test_docsPublishTheSameVectors(self) -> None:
        """The vector table in docs/keys.md lists exactly these vectors."""
        docs = Path(__file__).resolve().parents[3] / "docs" / "keys.md"
        rows = [
            [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
            for line in docs.read_text().splitlines()
            if line.startswith("| `") and "…" in line
        ]
        names = {
            "KIc": KdfPurpose.OTA_KIC,
            "KID": KdfPurpose.OTA_KID,
            "KIK": KdfPurpose.OTA_KIK,
            "SCP81 PSK": KdfPurpose.SCP81_PSK,
            "SCP03 ENC": KdfPurpose.SCP03_ENC,
        }
        published = [(m, i, names[p], KeyAlgorithm(a), k) for m, i, p, a, k in rows]
        expected = [
            (
                f"{m.reveal()[:3].hex().upper()}…{m.reveal()[-1:].hex().upper()}` ({len(m)})",
                i,
                p,
                a,
                k,
            )
            for m, i, p, a, k in VECTORS
        ]
        self.assertEqual(published, expected)

    def test_publishedVectorsIndependently(self) -> None:
        """The written-out reference computes the same published vectors."""
        for master, iccid, purpose, algorithm, expected in VECTORS:
            out = _reference(master.reveal(), iccid, purpose, algorithm)
            self.assertEqual(out.hex().upper(), expected)

    @given(
        masters,
        iccids,
        st.sampled_from(list(KdfPurpose)),
        st.sampled_from(list(KeyAlgorithm)),
    )
    def test_matchesIndependentRecomputation(
        self, master: bytes, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm
    ) -> None:
        """For any master, ICCID, purpose and algorithm, KBKDFCMAC agrees with the loop."""
        key = derive_card_key(Secret(master), iccid, purpose, algorithm)
        self.assertEqual(len(key), algorithm.key_length)
        self.assertEqual(key.reveal(), _reference(master, iccid.rstrip("Ff"), purpose, algorithm))

    def test_desKeysHaveOddParity(self) -> None:
        """3DES outputs have odd parity; AES outputs are the raw KDF output."""
        for algorithm in KeyAlgorithm:
            key = derive_card_key(MASTER_128, "8988211000000000018", KdfPurpose.OTA_KIC, algorithm)
            if algorithm.is_des:
                self.assertTrue(has_des_parity(key.reveal()))

    def test_inputsSeparateKeys(self) -> None:
        """Different purposes, ICCIDs or masters give different keys."""
        keys = {
            derive_card_key(master, iccid, purpose, KeyAlgorithm.AES_128)
            for master in (MASTER_128, MASTER_256)
            for iccid in ("8988211000000000018", "8988211000000000026")
            for purpose in KdfPurpose
        }
        self.assertEqual(len(keys), 2 * 2 * len(KdfPurpose))

    def test_fillerDoesNotChangeTheKey(self) -> None:
        """An ICCID with F filler diversifies like the bare digits."""
        a = derive_card_key(
            MASTER_128, "8988211000000000018F", KdfPurpose.OTA_KID, KeyAlgorithm.AES_128
        )
        b = derive_card_key(
            MASTER_128, "8988211000000000018", KdfPurpose.OTA_KID, KeyAlgorithm.AES_128
        )
        self.assertEqual(a, b)

    def test_masterMustBeAes(self) -> None:
        """A master key that is not an AES key size is refused, without its bytes."""
        master = Secret(bytes(range(20)))
        with self.assertRaises(InvalidKeyError) as ctx:
            derive_card_key(master, "8988211000000000018", KdfPurpose.OTA_KIC, KeyAlgorithm.AES_128)
        self.assertIn("bipgw OTA KIc", str(ctx.exception))
        self.assertIn("got 20", str(ctx.exception))
        self.assertNotIn(master.reveal().hex(), str(ctx.exception).lower())

    def test_badIccid(self) -> None:
        """A bad ICCID stops derivation with the ICCID error."""
        self.assertRaises(
            InvalidIccidError,
            derive_card_key,
            MASTER_128,
            "12345",
            KdfPurpose.OTA_KIC,
            KeyAlgorithm.AES_128,
        )

    def test_purposeLabels(self) -> None:
        """The SP 800-108 labels are the documented ASCII strings."""
        self.assertEqual(
            {p.name: p.label for p in KdfPurpose},
            {
                "OTA_KIC": b"bipgw OTA KIc",
                "OTA_KID": b"bipgw OTA KID",
                "OTA_KIK": b"bipgw OTA KIK",
                "SCP81_PSK": b"bipgw SCP81 PSK",
                "SCP81_DEK": b"bipgw SCP81 DEK",
                "SCP03_ENC": b"bipgw SCP03 ENC",
                "SCP03_MAC": b"bipgw SCP03 MAC",
                "SCP03_DEK": b"bipgw SCP03 DEK",
            },
        )


class ParityTests(SynchronousTestCase):
    """DES parity adjustment."""

    @given(st.binary(min_size=1, max_size=32))
    def test_setParity(self, key: bytes) -> None:
        """The result has odd parity and differs from the input in low bits only."""
        fixed = set_des_parity(key)
        self.assertTrue(has_des_parity(fixed))
        self.assertEqual(bytes(b & 0xFE for b in fixed), bytes(b & 0xFE for b in key))
        self.assertEqual(fixed, _odd_parity(key))

    def test_knownBytes(self) -> None:
        """00 -> 01, FF -> FE, FE stays, 01 stays; 0123456789ABCDEF already has parity."""
        self.assertEqual(set_des_parity(b"\x00\xff\xfe\x01"), b"\x01\xfe\xfe\x01")
        self.assertFalse(has_des_parity(b"\x00"))
        self.assertEqual(
            set_des_parity(bytes.fromhex("0123456789ABCDEF")).hex(), "0123456789abcdef"
        )


class IccidTests(SynchronousTestCase):
    """ICCID normalisation and the PSK identity convention."""

    def test_normalise(self) -> None:
        """White space and trailing F filler (either case) are removed."""
        self.assertEqual(normalise_iccid(" 8988211000000000018F\n"), "8988211000000000018")
        self.assertEqual(normalise_iccid("8988211000000000018f"), "8988211000000000018")
        self.assertEqual(normalise_iccid("898821100000000001FF"), "898821100000000001")
        self.assertEqual(normalise_iccid("89882390000012345678"), "89882390000012345678")

    def test_luhnNotChecked(self) -> None:
        """A wrong Luhn digit is accepted: the ICCID is an identifier here."""
        self.assertEqual(normalise_iccid("8988211000000000019"), "8988211000000000019")

    def test_refused(self) -> None:
        """Other characters, or a length outside 18..20 digits, are refused by name."""
        # The last one is the ICCID in full-width digits: isdigit() but not ASCII.
        full_width = "".join(chr(0xFF10 + int(c)) for c in "8988211000000000018")
        bad_iccids = [
            "89882110000000001",
            "898821100000000001234",
            "8988211000000000O18",
            "89 88211000000000018",
            "8988211000000000018E",
            "",
            "F" * 19,
            full_width,
        ]
        for bad in bad_iccids:
            with self.assertRaises(InvalidIccidError) as ctx:
                normalise_iccid(bad)
            self.assertIn("ICCID", str(ctx.exception))
        self.assertRaises(InvalidIccidError, normalise_iccid, 8988211000000000018)

    def test_longInputShortened(self) -> None:
        """A huge input is not copied whole into the error message."""
        with self.assertRaises(InvalidIccidError) as ctx:
            normalise_iccid("9" * 10000)
        self.assertLess(len(str(ctx.exception)), 200)

    def test_pskIdentity(self) -> None:
        """The PSK identity is the normalised ICCID in ASCII."""
        self.assertEqual(psk_identity_for("8988211000000000018F"), b"8988211000000000018")
        self.assertEqual(psk_identity_for("89882390000012345678"), b"89882390000012345678")
        self.assertRaises(InvalidIccidError, psk_identity_for, "not an iccid")
