"""Tests for L{bipgw.keys.KeyStore}: gateway-level keys in a sealed, authenticated file."""

from __future__ import annotations

import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    DuplicateKeyError,
    IntegrityError,
    InvalidKeyError,
    InvalidLabelError,
    KdfPurpose,
    KeyInfo,
    KeyKind,
    KeyStore,
    KeystoreFormatError,
    KeystoreNotFoundError,
    KeystoreWriteError,
    RootKey,
    Secret,
    UnknownKeyError,
    WrongRootKeyError,
    _keystore,
)
from tests.unit.keys import private_directory

ROOT = RootKey(Secret(bytes(range(32))))
NEW_ROOT = RootKey(Secret(bytes(range(100, 132))))
TK1 = Secret(bytes.fromhex("000102030405060708090A0B0C0D0E0F"))
TK2 = Secret(bytes.fromhex("F0E0D0C0B0A090807060504030201000F0E0D0C0B0A09080"))
MASTER = Secret(bytes(range(0x20, 0x40)))


class KeyStoreTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = private_directory(self)
        self.path = os.path.join(self.directory, "keystore.json")

    def _read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def _document(self) -> dict[str, object]:
        document: dict[str, object] = json.loads(self._read())
        return document

    def _rewrite(self, document: object) -> None:
        with open(self.path, "w") as f:
            json.dump(document, f)

    def _populated(self) -> KeyStore:
        store = KeyStore.create(self.path, ROOT)
        store.put("TK1", KeyKind.TRANSPORT, TK1, {"scheme": "aes-kwp", "vendor": "ACME"})
        store.put("TK2", "transport", TK2, {"scheme": "3des-ecb"})
        store.put("ota-kic-v1", KeyKind.MASTER_OTA_KIC, MASTER, {"kvn": 1, "active": True})
        return store


class KeyStorePersistenceTests(KeyStoreTestCase):
    """Keys put in a keystore come back, also after reopening the file."""

    def test_persistsAcrossReload(self) -> None:
        """A reopened keystore has the same labels, kinds, metadata and keys."""
        self._populated()
        store = KeyStore.open(self.path, ROOT)
        self.assertEqual(store.labels(), ["TK1", "TK2", "ota-kic-v1"])
        self.assertEqual(store.get("TK1"), TK1)
        self.assertEqual(store.get("TK2"), TK2)
        self.assertEqual(store.get("ota-kic-v1"), MASTER)
        self.assertEqual(
            store.info("TK1"),
            KeyInfo("TK1", KeyKind.TRANSPORT, {"scheme": "aes-kwp", "vendor": "ACME"}, 16),
        )
        self.assertEqual(store.info("ota-kic-v1").meta, {"kvn": 1, "active": True})
        self.assertEqual(store.info("TK2").length, 24)
        self.assertEqual(len(store), 3)
        self.assertIn("TK1", store)
        self.assertNotIn("TK3", store)

    def test_labelsByKind(self) -> None:
        """labels() can be filtered by kind, given as enum or string."""
        store = self._populated()
        self.assertEqual(store.labels(KeyKind.TRANSPORT), ["TK1", "TK2"])
        self.assertEqual(store.labels("master-ota-kic"), ["ota-kic-v1"])
        self.assertEqual(store.labels(KeyKind.MASTER_PSK), [])

    def test_fileIsPrivateAndHoldsNoClearKey(self) -> None:
        """The file is 0600 and no key appears in it in clear (hex or otherwise)."""
        self._populated()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        raw = self._read()
        for key in (TK1, TK2, MASTER, ROOT.secret):
            self.assertNotIn(key.reveal(), raw)
            self.assertNotIn(key.reveal().hex().encode(), raw.lower())
        self.assertEqual(self._document()["root_key_id"], ROOT.key_id)

    def test_delete(self) -> None:
        """A deleted key is gone, also after reopening."""
        self._populated().delete("TK2")
        store = KeyStore.open(self.path, ROOT)
        self.assertEqual(store.labels(), ["TK1", "ota-kic-v1"])
        self.assertRaises(UnknownKeyError, store.get, "TK2")
        self.assertRaises(UnknownKeyError, store.delete, "TK2")

    def test_replace(self) -> None:
        """put() refuses an existing label unless replace is asked for."""
        store = self._populated()
        with self.assertRaises(DuplicateKeyError) as ctx:
            store.put("TK1", KeyKind.TRANSPORT, TK2)
        self.assertEqual(ctx.exception.label, "TK1")
        self.assertEqual(store.get("TK1"), TK1)
        store.put("TK1", KeyKind.TRANSPORT, TK2, {"scheme": "3des-ecb"}, replace=True)
        self.assertEqual(KeyStore.open(self.path, ROOT).get("TK1"), TK2)

    def test_unknownLabel(self) -> None:
        """get() and info() of an unknown label name it and the file."""
        store = self._populated()
        with self.assertRaises(UnknownKeyError) as ctx:
            store.get("TK9")
        self.assertIn("'TK9'", str(ctx.exception))
        self.assertIn(self.path, str(ctx.exception))
        self.assertIsInstance(ctx.exception, LookupError)
        self.assertRaises(UnknownKeyError, store.info, "TK9")

    def test_createRefusesExisting(self) -> None:
        """create() never replaces an existing file."""
        self._populated()
        before = self._read()
        self.assertRaises(KeystoreWriteError, KeyStore.create, self.path, ROOT)
        self.assertEqual(self._read(), before)

    def test_openMissing(self) -> None:
        """open() of a missing file is an error, not an empty keystore."""
        with self.assertRaises(KeystoreNotFoundError) as ctx:
            KeyStore.open(self.path, ROOT)
        self.assertIn(self.path, str(ctx.exception))

    def test_putValidation(self) -> None:
        """Unknown kinds, bad sizes, bad labels, bad metadata and raw bytes are refused."""
        store = KeyStore.create(self.path, ROOT)
        self.assertRaises(InvalidLabelError, store.put, "k", "master-everything", TK1)
        self.assertRaises(InvalidKeyError, store.put, "k", KeyKind.TRANSPORT, Secret(b"1" * 20))
        self.assertRaises(InvalidLabelError, store.put, "", KeyKind.TRANSPORT, TK1)
        self.assertRaises(InvalidLabelError, store.put, "a\nb", KeyKind.TRANSPORT, TK1)
        for meta in ({"x": 1.5}, {"x": [1]}, {"": 1}, {"x": "y" * 2000}):
            self.assertRaises(InvalidLabelError, store.put, "k", KeyKind.TRANSPORT, TK1, meta)
        self.assertRaises(TypeError, store.put, "k", KeyKind.TRANSPORT, TK1.reveal())
        self.assertEqual(store.labels(), [])
        self.assertEqual(KeyStore.open(self.path, ROOT).labels(), [])

    def test_reprHidesKeys(self) -> None:
        """The keystore's and its infos' reprs show no key material."""
        store = self._populated()
        text = repr(store) + repr(store.info("TK1"))
        self.assertIn("entries=3", text)
        self.assertNotIn(TK1.reveal().hex(), text.lower())

    def test_masterKindsHavePurposes(self) -> None:
        """Each master kind names its diversification purpose; transport has none."""
        self.assertIsNone(KeyKind.TRANSPORT.purpose)
        self.assertEqual(KeyKind.MASTER_OTA_KIC.purpose, KdfPurpose.OTA_KIC)
        self.assertEqual(KeyKind.MASTER_PSK.purpose, KdfPurpose.SCP81_PSK)
        masters = [k for k in KeyKind if k is not KeyKind.TRANSPORT]
        self.assertEqual({k.purpose for k in masters}, set(KdfPurpose))


class KeyStoreAtomicityTests(KeyStoreTestCase):
    """A failed write leaves both the file and the object as they were."""

    def _failReplace(self) -> None:
        def broken_replace(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        self.patch(_keystore.os, "replace", broken_replace)

    def test_crashDuringPutKeepsOldFile(self) -> None:
        """If the rename fails, the old file is intact, no temp file remains, no key is added."""
        store = self._populated()
        before = self._read()
        self._failReplace()
        with self.assertRaises(KeystoreWriteError) as ctx:
            store.put("TK3", KeyKind.TRANSPORT, TK1)
        self.assertIn("No space left on device", str(ctx.exception))
        self.assertIn("previous version is unchanged", str(ctx.exception))
        self.assertEqual(self._read(), before)
        self.assertEqual(os.listdir(self.directory), ["keystore.json"])
        self.assertNotIn("TK3", store)
        self.assertEqual(KeyStore.open(self.path, ROOT).labels(), ["TK1", "TK2", "ota-kic-v1"])

    def test_crashDuringDeleteKeepsKey(self) -> None:
        """A failed delete keeps the key in the file and in the object."""
        store = self._populated()
        self._failReplace()
        self.assertRaises(KeystoreWriteError, store.delete, "TK1")
        self.assertEqual(store.get("TK1"), TK1)

    def test_crashDuringRotationKeepsOldRoot(self) -> None:
        """A failed rotation leaves everything under the old root key."""
        store = self._populated()
        self._failReplace()
        self.assertRaises(KeystoreWriteError, store.rotate_root, NEW_ROOT)
        self.assertEqual(store.root_key_id, ROOT.key_id)
        self.assertEqual(store.get("TK1"), TK1)
        self.assertEqual(KeyStore.open(self.path, ROOT).get("TK2"), TK2)

    def test_writeWorksAgainAfterFailure(self) -> None:
        """Once the cause is gone, writing works (nothing was left half done)."""
        store = self._populated()
        real = os.replace
        self._failReplace()
        self.assertRaises(KeystoreWriteError, store.put, "TK3", KeyKind.TRANSPORT, TK1)
        self.patch(_keystore.os, "replace", real)
        store.put("TK3", KeyKind.TRANSPORT, TK1)
        self.assertEqual(KeyStore.open(self.path, ROOT).get("TK3"), TK1)


class KeyStoreRotationTests(KeyStoreTestCase):
    """rotate_root re-seals every key under a new root key."""

    def test_rotate(self) -> None:
        """After rotation only the new root opens the file, and every key is the same."""
        store = self._populated()
        old_sealed = self._document()["entries"]
        store.rotate_root(NEW_ROOT)
        self.assertEqual(store.root_key_id, NEW_ROOT.key_id)
        self.assertEqual(store.get("TK1"), TK1)
        reopened = KeyStore.open(self.path, NEW_ROOT)
        self.assertEqual(
            {label: reopened.get(label) for label in reopened.labels()},
            {"TK1": TK1, "TK2": TK2, "ota-kic-v1": MASTER},
        )
        self.assertEqual(reopened.info("TK1").meta, {"scheme": "aes-kwp", "vendor": "ACME"})
        new_sealed = self._document()["entries"]
        assert isinstance(old_sealed, dict) and isinstance(new_sealed, dict)
        for label in old_sealed:
            self.assertNotEqual(old_sealed[label]["sealed"], new_sealed[label]["sealed"])
        with self.assertRaises(WrongRootKeyError) as ctx:
            KeyStore.open(self.path, ROOT)
        self.assertIn(NEW_ROOT.key_id, str(ctx.exception))
        self.assertIn(ROOT.key_id, str(ctx.exception))

    def test_rotateStopsOnDamagedEntry(self) -> None:
        """A key that no longer unseals stops the rotation before anything is written."""
        store = self._populated()
        before = self._read()
        entry = store._entries["TK2"]
        damaged = entry.sealed[:-1] + bytes([entry.sealed[-1] ^ 1])
        store._entries["TK2"] = _keystore.evolve(entry, sealed=damaged)
        self.assertRaises(IntegrityError, store.rotate_root, NEW_ROOT)
        self.assertEqual(self._read(), before)


class KeyStoreIntegrityTests(KeyStoreTestCase):
    """A keystore changed outside bipgw, or opened with the wrong root key, is refused."""

    def test_wrongRootKey(self) -> None:
        """Opening with another root key says so, naming both ids."""
        self._populated()
        with self.assertRaises(WrongRootKeyError) as ctx:
            KeyStore.open(self.path, NEW_ROOT)
        self.assertIn(ROOT.key_id, str(ctx.exception))

    def test_tamperedMetadata(self) -> None:
        """Changing clear metadata breaks the document MAC."""
        self._populated()
        document = self._document()
        document["entries"]["TK1"]["meta"]["scheme"] = "3des-ecb"  # type: ignore[index]
        self._rewrite(document)
        with self.assertRaises(IntegrityError) as ctx:
            KeyStore.open(self.path, ROOT)
        self.assertIn("modified outside bipgw", str(ctx.exception))

    def test_removedOrRekindedEntry(self) -> None:
        """Deleting an entry or changing its kind breaks the document MAC."""
        self._populated()
        original = self._document()
        removed = json.loads(json.dumps(original))
        del removed["entries"]["TK2"]
        rekinded = json.loads(json.dumps(original))
        rekinded["entries"]["TK1"]["kind"] = "master-psk"
        for document in (removed, rekinded):
            self._rewrite(document)
            self.assertRaises(IntegrityError, KeyStore.open, self.path, ROOT)

    def test_swappedEntriesFailEvenWithValidMac(self) -> None:
        """Sealed values are bound to their label: swapped ones fail even if the MAC is redone."""
        self._populated()
        document = self._document()
        entries = document["entries"]
        assert isinstance(entries, dict)
        entries["TK1"]["sealed"], entries["TK2"]["sealed"] = (
            entries["TK2"]["sealed"],
            entries["TK1"]["sealed"],
        )
        body = {k: v for k, v in document.items() if k != "mac"}
        document["mac"] = _keystore._mac(ROOT, body)
        self._rewrite(document)
        store = KeyStore.open(self.path, ROOT)
        self.assertRaises(IntegrityError, store.get, "TK1")
        self.assertRaises(IntegrityError, store.get, "TK2")
        self.assertEqual(store.get("ota-kic-v1"), MASTER)

    def test_formatErrors(self) -> None:
        """Non-JSON, foreign JSON, future versions and bad fields are format errors."""
        self._populated()
        good = self._document()
        cases: list[tuple[bytes, str]] = [
            (b"\xff\xfe not json", "not JSON"),
            (b"[1, 2]", "not a bipgw keystore"),
            (json.dumps({**good, "format": "other"}).encode(), "not a bipgw keystore"),
            (json.dumps({**good, "version": 2}).encode(), "unsupported version 2"),
            (json.dumps({**good, "extra": 1}).encode(), "unexpected or missing"),
        ]
        for raw, reason in cases:
            with open(self.path, "wb") as f:
                f.write(raw)
            with self.assertRaises(KeystoreFormatError) as ctx:
                KeyStore.open(self.path, ROOT)
            self.assertIn(reason, str(ctx.exception))
            self.assertIn(self.path, str(ctx.exception))

    def test_malformedEntryWithValidMac(self) -> None:
        """A well-authenticated but malformed entry is a format error naming it."""
        self._populated()
        document = self._document()
        entries = document["entries"]
        assert isinstance(entries, dict)
        entries["TK1"]["sealed"] = "!!not base64!!"
        body = {k: v for k, v in document.items() if k != "mac"}
        document["mac"] = _keystore._mac(ROOT, body)
        self._rewrite(document)
        with self.assertRaises(KeystoreFormatError) as ctx:
            KeyStore.open(self.path, ROOT)
        self.assertIn("'TK1'", str(ctx.exception))
