"""The keys an operator adds (L{bipgw.keys.add_transport_key} and friends),
called as a library, as the demo does; C{tests/unit/cli/test_keys.py} covers
them through the C{bipgw keys} command."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    DuplicateKeyError,
    KeyAlgorithm,
    KeyInputError,
    KeyKind,
    KeyManagementError,
    KeyStore,
    RootKey,
    Secret,
    add_transport_key,
    check_value,
    generate_master_key,
    master_kind,
    read_key_file,
)

_KEY = bytes(range(16))


class OperatorKeyTests(SynchronousTestCase):
    """Keys go into a keystore by label and come back as info and a check value."""

    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.base.mkdir()
        self.keystore = KeyStore.create(self.base / "keystore.json", RootKey.generate())

    def key_file(self, text: str, name: str = "tk.key") -> Path:
        path = self.base / name
        path.write_text(text)
        return path

    def test_addTransportKey(self) -> None:
        """The key in the file is stored under its label with its scheme;
        the check value returned is the AES KCV of the key."""
        info, kcv = add_transport_key(self.keystore, "TK-1", self.key_file(_KEY.hex() + "\n"))
        self.assertEqual(
            (info.label, info.kind, info.meta["scheme"]), ("TK-1", KeyKind.TRANSPORT, "aes-kwp")
        )
        self.assertEqual(self.keystore.get("TK-1"), Secret(_KEY))
        self.assertEqual(kcv, check_value(Secret(_KEY), KeyAlgorithm.AES_128))

    def test_refusalsAreKeyManagementErrors(self) -> None:
        """An unknown scheme or a key of the wrong size is a L{KeyInputError}
        (a L{KeyManagementError}), and nothing is stored; a label taken is refused."""
        path = self.key_file(_KEY.hex())
        self.assertRaises(
            KeyInputError, add_transport_key, self.keystore, "a", path, scheme="rot13"
        )
        short = self.key_file("00" * 8, "short.key")
        error = self.assertRaises(KeyInputError, add_transport_key, self.keystore, "a", short)
        self.assertIsInstance(error, KeyManagementError)
        self.assertEqual(self.keystore.labels(), [])
        add_transport_key(self.keystore, "a", path)
        self.assertRaises(DuplicateKeyError, add_transport_key, self.keystore, "a", path)

    def test_readKeyFileNeverEchoes(self) -> None:
        """A file that is not hex is refused without its text in the message."""
        error = self.assertRaises(KeyInputError, read_key_file, self.key_file("secretzz"))
        self.assertNotIn("secretzz", str(error))

    def test_generateMasterKey(self) -> None:
        """A random master key of the kind named, with its version and algorithm."""
        info, kcv = generate_master_key(self.keystore, "ota-kic", "M-1", length=32, kvn=3)
        self.assertEqual(info.kind, master_kind("master-ota-kic"))
        self.assertEqual((info.meta["kvn"], info.meta["algorithm"]), (3, "aes-256"))
        self.assertEqual(kcv, check_value(self.keystore.get("M-1"), KeyAlgorithm.AES_256))
        self.assertRaises(
            KeyInputError, generate_master_key, self.keystore, "ota-kic", "M-2", kvn=256
        )
