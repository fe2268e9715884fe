"""Per-card keys sealed for the store: label binding and fingerprints."""

from __future__ import annotations

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import IntegrityError, RootKey, Secret, WrongRootKeyError
from bipgw.store import card_key_fingerprint, open_card_key, seal_card_key

ICCID = "8988211000000000018"
OTHER = "8988211000000000026"
ROOT = RootKey(Secret(bytes(range(32))))
KEY = Secret(bytes.fromhex("04C6F85264D52AA3685E2F53EA090118"))


class SealingTests(SynchronousTestCase):
    """seal_card_key / open_card_key."""

    def test_roundTrip(self) -> None:
        """A sealed key opens to the same bytes, and the blob does not contain them."""
        stored = seal_card_key(ROOT, ICCID, "KIC", 1, "aes-128", KEY)
        self.assertNotIn(KEY.reveal(), stored.sealed)
        self.assertNotIn(KEY.reveal(), stored.fingerprint)
        self.assertEqual(open_card_key(ROOT, stored), KEY)

    def test_blobBoundToCardAndPurpose(self) -> None:
        """A blob moved to another card, purpose or version does not open."""
        stored = seal_card_key(ROOT, ICCID, "KIC", 1, "aes-128", KEY)
        for moved in (
            evolve(stored, iccid=OTHER),
            evolve(stored, purpose="KID"),
            evolve(stored, kvn=2),
        ):
            self.assertRaises(IntegrityError, open_card_key, ROOT, moved)

    def test_otherRootKey(self) -> None:
        """A key sealed under another root key is reported as such."""
        stored = seal_card_key(ROOT, ICCID, "KIC", 1, "aes-128", KEY)
        self.assertRaises(WrongRootKeyError, open_card_key, RootKey.generate(), stored)

    def test_fingerprints(self) -> None:
        """Fingerprints match for the same key and label, and differ otherwise."""
        one = seal_card_key(ROOT, ICCID, "KIC", 1, "aes-128", KEY)
        two = seal_card_key(ROOT, ICCID, "KIC", 1, "aes-128", KEY)
        self.assertNotEqual(one.sealed, two.sealed)
        self.assertEqual(one.fingerprint, two.fingerprint)
        other_key = seal_card_key(ROOT, ICCID, "KIC", 1, "aes-128", Secret(b"\x00" * 16))
        other_label = seal_card_key(ROOT, ICCID, "KID", 1, "aes-128", KEY)
        other_root = seal_card_key(RootKey.generate(), ICCID, "KIC", 1, "aes-128", KEY)
        for different in (other_key, other_label, other_root):
            self.assertNotEqual(one.fingerprint, different.fingerprint)

    def test_fingerprintDefinition(self) -> None:
        """The fingerprint is HMAC-SHA256(HKDF(root, info), label || 00 || key), as documented."""
        import hashlib
        import hmac

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        subkey = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"bipgw card key fingerprint v1"
        ).derive(bytes(range(32)))
        label = f"card:{ICCID}:KIC1"
        expected = hmac.new(
            subkey, label.encode() + b"\x00" + KEY.reveal(), hashlib.sha256
        ).digest()
        self.assertEqual(card_key_fingerprint(ROOT, label, KEY), expected)
