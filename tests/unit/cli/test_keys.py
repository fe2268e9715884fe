"""Tests for C{bipgw keys}: keys go in by file or generation, come out only as labels and KCVs."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import Config, init_install
from bipgw.keys import (
    KeyAlgorithm,
    KeyKind,
    KeyStore,
    Secret,
    check_value,
    unwrap_from_transport,
    wrap_for_transport,
)
from tests.unit.cli import run
from tests.unit.config import private_directory, write

TK_HEX = "00112233445566778899AABBCCDDEEFF"
TK = Secret(bytes.fromhex(TK_HEX))


class KeysTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = private_directory(self)
        self.install = self.base / "gw"
        init_install(self.install, environ={})
        self.config_path = str(self.install / "bipgw.toml")

    def keystore(self) -> KeyStore:
        config = Config.from_file(self.config_path)
        return config.keys.open_keystore(config.keys.load_root_key({}))

    def keys(self, *argv: str) -> tuple[int, str, str]:
        return run(["keys", *argv, "-c", self.config_path])

    def key_file(self, text: str, name: str = "tk.hex") -> str:
        return str(write(self.base, name, text))


class AddTransportTests(KeysTestCase):
    """keys add-transport LABEL --from-file F."""

    def test_stored(self) -> None:
        """The key from the file is stored as a transport key, usable for unwrapping."""
        status, out, err = self.keys(
            "add-transport", "TK1", "--from-file", self.key_file(TK_HEX + "\n")
        )
        self.assertEqual((status, err), (0, ""))
        self.assertIn("stored in", out)
        store = self.keystore()
        self.assertEqual(store.info("TK1").kind, KeyKind.TRANSPORT)
        self.assertEqual(dict(store.info("TK1").meta), {"scheme": "aes-kwp"})
        wrapped = wrap_for_transport(TK, bytes(range(16)))
        self.assertEqual(
            unwrap_from_transport(store.get("TK1"), wrapped).reveal(), bytes(range(16))
        )

    def test_outputShowsCheckValueNotKey(self) -> None:
        """The output has the label and the GP check value, never the key."""
        _, out, _ = self.keys("add-transport", "TK1", "--from-file", self.key_file(TK_HEX))
        self.assertIn("TK1\ttransport\t16 bytes\tKCV " + check_value(TK, KeyAlgorithm.AES_128), out)
        self.assertNotIn(TK_HEX, out.upper())

    def test_groupedAndCommentedFile(self) -> None:
        """Spaces, line breaks and # comment lines in the key file are ignored."""
        text = "# TK1 from ACME, 2024-06\n0011 2233 4455 6677\n8899 AABB CCDD EEFF\n"
        self.assertEqual(
            self.keys("add-transport", "TK1", "--from-file", self.key_file(text))[0], 0
        )
        self.assertEqual(self.keystore().get("TK1"), TK)

    def test_des3Scheme(self) -> None:
        """A 3des-ecb key is recorded with its scheme and DES check value."""
        status, out, _ = self.keys(
            "add-transport",
            "TK2",
            "--from-file",
            self.key_file("0123456789ABCDEF" * 2),
            "--scheme",
            "3des-ecb",
        )
        self.assertEqual(status, 0)
        self.assertEqual(self.keystore().info("TK2").meta["scheme"], "3des-ecb")
        des = Secret(bytes.fromhex("0123456789ABCDEF" * 2))
        self.assertIn("KCV " + check_value(des, KeyAlgorithm.DES3_2KEY), out)

    def test_wrongSizeForScheme(self) -> None:
        """A 32-byte key cannot be a 3DES key."""
        status, _, err = self.keys(
            "add-transport", "TK2", "--from-file", self.key_file("00" * 32), "--scheme", "3des-ecb"
        )
        self.assertEqual(status, 1)
        self.assertIn("3des-ecb transport key is 16, 24 bytes", err)
        self.assertEqual(self.keystore().labels(), [])

    def test_badHexNeverEchoed(self) -> None:
        """A key file that is not hex is reported by position, not content."""
        status, out, err = self.keys(
            "add-transport", "TK1", "--from-file", self.key_file("00112233XYZSECRET")
        )
        self.assertEqual((status, out), (1, ""))
        self.assertIn("character 9 is not a hex digit", err)
        self.assertNotIn("SECRET", err)

    def test_missingFile(self) -> None:
        """An unreadable key file is named."""
        status, _, err = self.keys("add-transport", "TK1", "--from-file", str(self.base / "nope"))
        self.assertEqual(status, 1)
        self.assertIn("cannot read key file", err)

    def test_duplicateLabel(self) -> None:
        """An existing label is kept unless --replace is given."""
        first = self.key_file(TK_HEX)
        second = self.key_file("FF" * 16, "tk2.hex")
        self.keys("add-transport", "TK1", "--from-file", first)
        status, _, err = self.keys("add-transport", "TK1", "--from-file", second)
        self.assertEqual(status, 1)
        self.assertIn("already exists", err)
        self.assertEqual(self.keystore().get("TK1"), TK)
        self.assertEqual(
            self.keys("add-transport", "TK1", "--from-file", second, "--replace")[0], 0
        )
        self.assertEqual(self.keystore().get("TK1").reveal(), b"\xff" * 16)

    def test_fromFileRequired(self) -> None:
        """--from-file is required: a usage error (status 2)."""
        self.assertEqual(self.keys("add-transport", "TK1")[0], 2)


class GenerateMasterTests(KeysTestCase):
    """keys generate-master KIND LABEL."""

    def test_generated(self) -> None:
        """A random AES key of the kind, with its key version and algorithm recorded."""
        status, out, err = self.keys(
            "generate-master", "ota-kic", "KIC-V1", "--kdf", "1", "--kvn", "3"
        )
        self.assertEqual((status, err), (0, ""))
        info = self.keystore().info("KIC-V1")
        self.assertEqual(info.kind, KeyKind.MASTER_OTA_KIC)
        self.assertEqual(dict(info.meta), {"kvn": 3, "algorithm": "aes-128", "kdf": 1})
        self.assertEqual(info.length, 16)
        kcv = check_value(self.keystore().get("KIC-V1"), KeyAlgorithm.AES_128)
        self.assertIn(f"KCV {kcv}", out)
        self.assertNotIn(self.keystore().get("KIC-V1").reveal().hex().upper(), out.upper())

    def test_prefixedKindAndLength(self) -> None:
        """Kinds may carry the master- prefix; 32-byte keys are AES-256."""
        status, _, _ = self.keys("generate-master", "master-psk", "PSK", "--length", "32")
        self.assertEqual(status, 0)
        self.assertEqual(self.keystore().info("PSK").meta["algorithm"], "aes-256")

    def test_keysDiffer(self) -> None:
        """Two generated keys are different keys."""
        self.keys("generate-master", "ota-kid", "A")
        self.keys("generate-master", "ota-kid", "B")
        self.assertNotEqual(self.keystore().get("A"), self.keystore().get("B"))

    def test_unknownKind(self) -> None:
        """A kind that is not a master kind (transport included) is refused, listing the kinds."""
        for kind in ("ota-kix", "transport"):
            with self.subTest(kind=kind):
                status, _, err = self.keys("generate-master", kind, "X")
                self.assertEqual(status, 1)
                self.assertIn("master-ota-kic", err)

    def test_badLength(self) -> None:
        """Lengths other than 16, 24 and 32 are usage errors."""
        self.assertEqual(self.keys("generate-master", "psk", "X", "--length", "20")[0], 2)


class ListTests(KeysTestCase):
    """keys list."""

    def test_empty(self) -> None:
        """An empty keystore says so."""
        status, out, _ = self.keys("list")
        self.assertEqual(status, 0)
        self.assertIn("no keys in", out)

    def test_labelsAndKindsNeverValues(self) -> None:
        """One line per key, sorted: label, kind, size, KCV, metadata; no key bytes."""
        self.keys("add-transport", "TK1", "--from-file", self.key_file(TK_HEX))
        self.keys("generate-master", "scp03-enc", "ENC")
        status, out, _ = self.keys("list")
        self.assertEqual(status, 0)
        lines = out.splitlines()
        self.assertEqual(
            [line.split("\t")[:2] for line in lines],
            [["ENC", "master-scp03-enc"], ["TK1", "transport"]],
        )
        self.assertIn("scheme=aes-kwp", lines[1])
        store = self.keystore()
        for label in store.labels():
            self.assertNotIn(store.get(label).reveal().hex(), out.lower())


class ConfigurationLookupTests(KeysTestCase):
    """Which configuration the keys commands use."""

    def test_configBeforeAction(self) -> None:
        """-c may come before the action too."""
        status, out, _ = run(["keys", "-c", self.config_path, "list"])
        self.assertEqual(status, 0)
        self.assertIn("no keys", out)

    def test_environment(self) -> None:
        """Without -c, BIPGW_CONFIG names the file."""
        status, out, _ = run(["keys", "list"], {"BIPGW_CONFIG": self.config_path})
        self.assertEqual((status, "no keys" in out), (0, True))

    def test_defaultFileInWorkingDirectory(self) -> None:
        """Without either, ./bipgw.toml; its absence is a clear error."""
        status, _, err = run(["keys", "list"])
        self.assertEqual(status, 1)
        self.assertIn("bipgw.toml: no such file", err)

    def test_missingRootKey(self) -> None:
        """A missing root key is named, with no traceback."""
        Path(self.install / "root.key").unlink()
        status, _, err = self.keys("list")
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("bipgw: error: no root key file at"), err)
