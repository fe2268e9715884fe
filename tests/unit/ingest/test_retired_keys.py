"""Vendor files and keystores from before a key was retired are refused clearly.

- A vendor file wrapped under a transport key that was retired (removed
  from the keystore when the vendor moved to a new key) is refused as a
  whole, the report naming the key; nothing is imported.
- A file wrapped under the old key but naming the new one's label is
  refused as "does not open this file's secret columns".
- A keystore file saved before a root-key rotation (sealed under the
  retired root key) does not open under the new one: the error names the
  retired key's id.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import import_card_data
from bipgw.keys import (
    FileRootKeyRing,
    KeyInputError,
    KeyStore,
    RootKey,
    Secret,
    WrongRootKeyError,
    retire_transport_key,
    retired_since,
)
from bipgw.store import MemoryStore, RootRotation, create_sql_engine
from tests.unit.ingest import COLUMNS, ICCIDS, TRANSPORT_KEY, card_line, vendor_file
from tests.unit.store import rotation_fixture as fx

NEW_TRANSPORT = Secret(bytes(range(100, 116)))


class RetiredTransportKeyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(mode=0o700)
        self.root = RootKey.generate()
        self.keystore = KeyStore.create(self.dir / "keystore.json", self.root)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        # The vendor moved to TK2; TK1 is retired.
        self.keystore.put("TK2", "transport", NEW_TRANSPORT, {"scheme": "aes-kwp"})
        self.keystore.delete("TK1")
        self.store = MemoryStore()

    def imported(self, data: bytes):  # type: ignore[no-untyped-def]
        return self.successResultOf(
            import_card_data(self.store, self.keystore, self.root, data, file_name="v.out")
        )

    def test_fileNamingRetiredKey(self) -> None:
        report = self.imported(vendor_file())
        self.assertIn(
            "the transport key 'TK1' named by the header is not in the keystore", report.fatal
        )
        self.assertEqual(self.successResultOf(self.store.list_cards()), [])

    def test_fileNamingKeyMarkedRetired(self) -> None:
        """A key retired with retire_transport_key (bipgw keys retire-transport)
        stays in the keystore, marked; a file naming it is refused as a whole,
        the report saying it was retired and when; nothing is imported."""
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        self.assertEqual(self.imported(vendor_file()).added, 3)
        self.store = MemoryStore()
        info, _ = retire_transport_key(self.keystore, "TK1", at=1_800_000_000)
        self.assertEqual(retired_since(info), 1_800_000_000)
        report = self.imported(vendor_file())
        self.assertIn(
            "the transport key 'TK1' named by the header was retired on 2027-01-15 08:00 UTC",
            report.fatal,
        )
        self.assertEqual(self.successResultOf(self.store.list_cards()), [])
        error = self.assertRaises(
            KeyInputError, retire_transport_key, self.keystore, "TK1", at=1_800_000_001
        )
        self.assertIn("already retired", str(error))
        self.keystore.put("M", "master-psk", NEW_TRANSPORT)
        error = self.assertRaises(KeyInputError, retire_transport_key, self.keystore, "M", at=1)
        self.assertIn("only transport keys are retired", str(error))

    def test_fileWrappedUnderRetiredKeyNamingNewOne(self) -> None:
        lines = [card_line(i, f"00101000000000{n + 1}", COLUMNS) for n, i in enumerate(ICCIDS)]
        report = self.imported(vendor_file(lines, header={"Transport_key": "TK2"}))
        self.assertIn("does not open this file's secret columns", report.fatal)
        self.assertEqual(self.successResultOf(self.store.list_cards()), [])


class KeystoreUnderRetiredRootTests(SynchronousTestCase):
    def test_oldKeystoreCopyRefused(self) -> None:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(mode=0o700)
        root_path = fx.make_root(directory)
        ring = FileRootKeyRing(root_path)
        keystore = fx.make_keystore(directory, ring)
        old_id = ring.key_id
        shutil.copyfile(keystore, directory / "keystore-backup.json")
        url = fx.sqlite_url(directory)
        fx.populate(url, ring, 3)
        engine = create_sql_engine(url)
        self.addCleanup(engine.dispose)
        RootRotation(engine, FileRootKeyRing(root_path), str(keystore)).run()
        error = self.assertRaises(
            WrongRootKeyError,
            KeyStore.open,
            directory / "keystore-backup.json",
            FileRootKeyRing(root_path),
        )
        self.assertIn(f"written under root key '{old_id}'", str(error))
