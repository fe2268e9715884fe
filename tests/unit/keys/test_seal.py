"""Tests for L{bipgw.keys.seal} and L{bipgw.keys.unseal}: envelope encryption at rest."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    IntegrityError,
    InvalidLabelError,
    RootKey,
    Secret,
    WrongRootKeyError,
    seal,
    unseal,
)

ROOT = RootKey(Secret(bytes(range(32))))
OTHER_ROOT = RootKey(Secret(bytes(range(1, 33))))
PLAIN = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
LABEL = "card:8988211000000000018:kic1"

labels = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S"), include_characters=" "),
    min_size=1,
    max_size=40,
)


class SealRoundTripTests(SynchronousTestCase):
    """What is sealed under a label opens under the same label and root key."""

    @given(labels, st.binary(min_size=1, max_size=96))
    def test_roundTrip(self, label: str, plaintext: bytes) -> None:
        """unseal(seal(x)) == x, and the blob has the documented size."""
        blob = seal(ROOT, label, plaintext)
        self.assertEqual(len(blob), 1 + 4 + 12 + len(plaintext) + 16)
        self.assertEqual(unseal(ROOT, label, blob), Secret(plaintext))

    def test_acceptsSecret(self) -> None:
        """A Secret can be sealed directly; the result is a Secret."""
        blob = seal(ROOT, LABEL, Secret(PLAIN))
        self.assertEqual(unseal(ROOT, LABEL, blob).reveal(), PLAIN)

    def test_nonceIsRandom(self) -> None:
        """Sealing the same value twice gives different blobs."""
        self.assertNotEqual(seal(ROOT, LABEL, PLAIN), seal(ROOT, LABEL, PLAIN))

    def test_blobHidesPlaintext(self) -> None:
        """The plaintext does not appear in the blob."""
        self.assertNotIn(PLAIN, seal(ROOT, LABEL, PLAIN))

    def test_independentDecryption(self) -> None:
        """The documented format opens with plain AES-GCM and HKDF (docs/keys.md)."""
        blob = seal(ROOT, LABEL, PLAIN)
        key = HKDF(hashes.SHA256(), 32, None, b"bipgw seal v1").derive(bytes(range(32)))
        key_id = HKDF(hashes.SHA256(), 4, None, b"bipgw root key id v1").derive(bytes(range(32)))
        self.assertEqual(blob[0], 1)
        self.assertEqual(blob[1:5], key_id)
        clear = AESGCM(key).decrypt(blob[5:17], blob[17:], blob[:5] + LABEL.encode("utf-8"))
        self.assertEqual(clear, PLAIN)


class SealIntegrityTests(SynchronousTestCase):
    """Any change to a sealed value, its label or its root key is detected."""

    def setUp(self) -> None:
        self.blob = seal(ROOT, LABEL, PLAIN)

    def test_everyBitOfEveryByte(self) -> None:
        """Flipping any single bit anywhere raises IntegrityError."""
        for position in range(len(self.blob)):
            for bit in range(8):
                damaged = bytearray(self.blob)
                damaged[position] ^= 1 << bit
                with self.assertRaises(IntegrityError):
                    unseal(ROOT, LABEL, bytes(damaged))

    @given(st.data())
    def test_anyTamper(self, data: st.DataObject) -> None:
        """Arbitrary replacement of a slice raises IntegrityError."""
        start = data.draw(st.integers(0, len(self.blob) - 1))
        end = data.draw(st.integers(start + 1, len(self.blob)))
        patch = data.draw(st.binary(min_size=0, max_size=40))
        damaged = self.blob[:start] + patch + self.blob[end:]
        if damaged != self.blob:
            self.assertRaises(IntegrityError, unseal, ROOT, LABEL, damaged)

    def test_truncatedOrExtended(self) -> None:
        """Every prefix, and the blob with bytes appended, raise IntegrityError."""
        for n in range(len(self.blob)):
            self.assertRaises(IntegrityError, unseal, ROOT, LABEL, self.blob[:n])
        self.assertRaises(IntegrityError, unseal, ROOT, LABEL, self.blob + b"\x00")

    def test_wrongLabel(self) -> None:
        """A blob moved to another label fails (not as a root key mismatch)."""
        with self.assertRaises(IntegrityError) as ctx:
            unseal(ROOT, "card:8988211000000000026:kic1", self.blob)
        self.assertNotIsInstance(ctx.exception, WrongRootKeyError)
        self.assertIn("card:8988211000000000026:kic1", str(ctx.exception))
        self.assertEqual(ctx.exception.label, "card:8988211000000000026:kic1")

    def test_wrongRoot(self) -> None:
        """Another root key is reported as such, naming both key ids."""
        with self.assertRaises(WrongRootKeyError) as ctx:
            unseal(OTHER_ROOT, LABEL, self.blob)
        self.assertIsInstance(ctx.exception, IntegrityError)
        message = str(ctx.exception)
        self.assertIn(ROOT.key_id, message)
        self.assertIn(OTHER_ROOT.key_id, message)

    def test_unknownVersion(self) -> None:
        """A blob of a future format version is refused by name."""
        with self.assertRaises(IntegrityError) as ctx:
            unseal(ROOT, LABEL, b"\x02" + self.blob[1:])
        self.assertIn("format version 2", str(ctx.exception))

    def test_messagesNeverShowTheKey(self) -> None:
        """No integrity error shows the plaintext or the root key."""
        failures = [
            lambda: unseal(OTHER_ROOT, LABEL, self.blob),
            lambda: unseal(ROOT, "x", self.blob),
            lambda: unseal(ROOT, LABEL, self.blob[:-1] + b"\x00"),
            lambda: unseal(ROOT, LABEL, self.blob[:10]),
        ]
        for failure in failures:
            with self.assertRaises(IntegrityError) as ctx:
                failure()
            text = str(ctx.exception) + repr(ctx.exception)
            for secret in (PLAIN, bytes(range(32))):
                self.assertNotIn(secret.hex(), text.lower())

    def test_badLabels(self) -> None:
        """Empty, over-long, control-character and non-text labels are refused."""
        for label in ("", "a" * 256, "tab\there", "nl\n", b"bytes"):
            self.assertRaises(InvalidLabelError, seal, ROOT, label, PLAIN)
            self.assertRaises(InvalidLabelError, unseal, ROOT, label, self.blob)

    def test_notBytes(self) -> None:
        """A sealed value is bytes; text is a type error."""
        self.assertRaises(TypeError, unseal, ROOT, LABEL, self.blob.hex())
