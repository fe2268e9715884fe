"""The root key file and its rotation partner (L{FileRootKeyRing})."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    FileRootKeyRing,
    IntegrityError,
    IRotatableRootKeys,
    RootKey,
    RootKeyError,
    Secret,
    WrongRootKeyError,
    sealed_key_id,
)


class KeyRingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(mode=0o700)
        self.path = self.dir / "root.key"
        self.first = RootKey.generate()
        self.first.save(self.path)

    def test_single(self) -> None:
        """Without a rotation it is the root key file's key."""
        ring = FileRootKeyRing(self.path)
        self.assertIsInstance(ring, IRotatableRootKeys)
        self.assertEqual(ring.key_id, self.first.key_id)
        self.assertEqual(ring.key_ids, (self.first.key_id,))
        self.assertIsNone(ring.rotation())
        blob = ring.seal("l", b"v")
        self.assertEqual(self.first.unseal("l", blob), Secret(b"v"))
        self.assertEqual(ring.mac(b"p", b"d"), self.first.mac(b"p", b"d"))

    def test_rotationSealsUnderNext(self) -> None:
        """During a rotation new values go under the next key; both keys open."""
        ring = FileRootKeyRing(self.path)
        old_blob = ring.seal("l", b"old")
        old, new = ring.begin_rotation()
        self.assertEqual(old, self.first.key_id)
        self.assertEqual(ring.begin_rotation(), (old, new))  # idempotent
        self.assertTrue(os.path.exists(str(self.path) + ".next"))
        self.assertEqual(oct(os.stat(str(self.path) + ".next").st_mode & 0o777), "0o600")
        new_blob = ring.seal("l", b"new")
        self.assertEqual(sealed_key_id(new_blob), new)
        self.assertEqual(ring.unseal("l", old_blob), Secret(b"old"))
        self.assertEqual(ring.unseal("l", new_blob), Secret(b"new"))
        self.assertEqual(ring.finish_rotation(), new)
        self.assertEqual(RootKey.load(self.path).key_id, new)
        self.assertFalse(os.path.exists(str(self.path) + ".next"))
        # Loaded once, the old key still opens in this process.
        self.assertEqual(ring.unseal("l", old_blob), Secret(b"old"))
        self.assertRaises(WrongRootKeyError, FileRootKeyRing(self.path).unseal, "l", old_blob)

    def test_otherProcessRotates(self) -> None:
        """A ring loaded before another process began rotating finds the next
        key when it meets a value sealed under it, and seals under it after."""
        reader = FileRootKeyRing(self.path)
        rotator = FileRootKeyRing(self.path)
        _, new = rotator.begin_rotation()
        blob = rotator.seal("l", b"v")
        self.assertEqual(reader.unseal("l", blob), Secret(b"v"))
        self.assertEqual(sealed_key_id(reader.batch_sealer().seal("m", b"w")), new)

    def test_damaged(self) -> None:
        """A blob with no valid header is an integrity error, not a crash."""
        ring = FileRootKeyRing(self.path)
        self.assertRaises(IntegrityError, ring.unseal, "l", b"\x07" * 40)
        self.assertRaises(WrongRootKeyError, ring.unseal, "l", b"\x01" + b"\x00" * 40)

    def test_missing(self) -> None:
        self.assertRaises(RootKeyError, FileRootKeyRing, self.dir / "absent.key")
