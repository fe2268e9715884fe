"""Tests for C{bipgw init}: a working install, and never a lost key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import Config, InitError, init_install
from bipgw.keys import ROOT_KEY_ENV, KeyKind, KeyStore, RootKey, Secret
from tests.unit.cli import run
from tests.unit.config import private_directory, write


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


class InitTests(SynchronousTestCase):
    """bipgw init DIR creates an install every other command can use at once."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        self.install = self.base / "gw"

    def _init(self, *extra: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
        return run(["init", str(self.install), *extra], environ)

    def test_createsWorkingInstall(self) -> None:
        """Configuration, root key, keystore, password file and data directory, all usable."""
        status, out, err = self._init("--public-host", "192.0.2.9", "--smpp", "tcp:smsc:2775")
        self.assertEqual((status, err), (0, ""))
        config = Config.from_file(self.install / "bipgw.toml")
        self.assertEqual(config.admin.public_host, "192.0.2.9")
        self.assertEqual(config.smpp.endpoint, "tcp:smsc:2775")
        self.assertEqual(config.keys.root_key_file, self.install / "root.key")
        self.assertTrue(config.gateway.data_dir.is_dir())
        root = config.keys.load_root_key({})
        self.assertEqual(len(config.keys.open_keystore(root)), 0)
        self.assertEqual(run(["check-config", str(self.install / "bipgw.toml")])[0], 0)
        self.assertIn(root.key_id, out)
        self.assertIn("Next steps:", out)
        self.assertIn(f"twistd -n bipgw --config {self.install / 'bipgw.toml'}", out)

    def test_filePermissions(self) -> None:
        """Key and password files are private; the directory too."""
        self._init()
        for name in ("root.key", "keystore.json", "smpp.password"):
            self.assertEqual(_mode(self.install / name), 0o600, name)
        self.assertEqual(_mode(self.install / "bipgw.toml"), 0o640)
        self.assertEqual(_mode(self.install), 0o700)
        self.assertEqual(_mode(self.install / "data"), 0o700)

    def test_neverPrintsKeyBytes(self) -> None:
        """The output names the root key by id, never by value."""
        status, out, _ = self._init()
        self.assertEqual(status, 0)
        key_text = (self.install / "root.key").read_text().strip()
        raw = base64.b64decode(key_text)
        for form in (key_text, raw.hex(), raw.hex().upper()):
            self.assertNotIn(form, out)

    def test_commentedConfig(self) -> None:
        """The configuration file explains each key."""
        self._init()
        text = (self.install / "bipgw.toml").read_text()
        self.assertIn("# Where the SMSC listens", text)
        self.assertIn("[services.isd]", text)

    def test_refusesExistingInstall(self) -> None:
        """A second init changes nothing and says how to force it."""
        self._init()
        before = _snapshot(self.install)
        status, out, err = self._init("--public-host", "192.0.2.99")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("already holds a bipgw install", err)
        self.assertIn("--force", err)
        self.assertEqual(_snapshot(self.install), before)

    def test_refusesAnyKeyFile(self) -> None:
        """A lone root key or keystore is enough to refuse: it may be someone's only copy."""
        for name in ("root.key", "keystore.json"):
            with self.subTest(name=name):
                directory = self.base / name
                directory.mkdir()
                write(directory, name, "x")
                with self.assertRaises(InitError) as ctx:
                    init_install(directory, environ={})
                self.assertIn(name, str(ctx.exception))
                self.assertEqual(_snapshot(directory), {name: b"x"})

    def test_forceKeepsKeys(self) -> None:
        """--force rewrites the configuration and keeps the root key and keystore."""
        self._init()
        config = Config.from_file(self.install / "bipgw.toml")
        root = config.keys.load_root_key({})
        config.keys.open_keystore(root).put("TK1", KeyKind.TRANSPORT, Secret(bytes(16)))
        root_bytes = (self.install / "root.key").read_bytes()
        status, out, err = self._init("--force", "--public-host", "192.0.2.77")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("kept", out)
        self.assertEqual((self.install / "root.key").read_bytes(), root_bytes)
        config = Config.from_file(self.install / "bipgw.toml")
        self.assertEqual(config.admin.public_host, "192.0.2.77")
        self.assertEqual(config.keys.open_keystore(root).labels(), ["TK1"])

    def test_forceRefusesMismatchedKeys(self) -> None:
        """--force with a keystore sealed under another root key stops, changing nothing."""
        self._init()
        (self.install / "keystore.json").unlink()
        KeyStore.create(self.install / "keystore.json", RootKey.generate())
        before = _snapshot(self.install)
        status, _, err = self._init("--force", "--public-host", "192.0.2.77")
        self.assertEqual(status, 1)
        self.assertIn("root key", err)
        self.assertEqual(_snapshot(self.install), before)

    def test_badOptionLeavesNothing(self) -> None:
        """An invalid option is reported by key and option, and nothing is created."""
        status, out, err = self._init("--public-host", "0.0.0.0")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("admin.public_host", err)
        self.assertIn("(from --public-host)", err)
        self.assertFalse(self.install.exists())

    def test_badOptionInExistingDirectory(self) -> None:
        """A failed init in an existing directory leaves it as it was."""
        self.install.mkdir()
        write(self.install, "notes.txt", "mine")
        status, _, err = self._init("--listen", "tcp:0")
        self.assertEqual(status, 1)
        self.assertIn("--public-port", err)
        self.assertEqual(_snapshot(self.install), {"notes.txt": b"mine"})

    def test_passwordFile(self) -> None:
        """--smpp-password-file copies the first line into the install's private file."""
        source = write(self.base, "esme.txt", "pa55\nsecond line\n", 0o644)
        status, out, _ = self._init("--smpp-password-file", str(source))
        self.assertEqual(status, 0)
        self.assertEqual((self.install / "smpp.password").read_bytes(), b"pa55\n")
        self.assertEqual(_mode(self.install / "smpp.password"), 0o600)
        self.assertEqual(Config.from_file(self.install / "bipgw.toml").smpp.password, "pa55")
        self.assertNotIn("ESME password", out)
        self.assertNotIn("pa55", out)

    def test_emptyPasswordAsksForOne(self) -> None:
        """Without a password file, the next steps say where the password goes."""
        _, out, _ = self._init()
        self.assertIn(
            f"Put the ESME password on the first line of {self.install / 'smpp.password'}", out
        )

    def test_unreadablePasswordSource(self) -> None:
        """A missing --smpp-password-file is an error, and nothing is left behind."""
        status, _, err = self._init("--smpp-password-file", str(self.base / "missing"))
        self.assertEqual(status, 1)
        self.assertIn("cannot read the SMSC password file", err)
        self.assertFalse(self.install.exists())

    def test_rootKeyFromEnvironment(self) -> None:
        """With BIPGW_ROOT_KEY set, that key seals the keystore and no key file is written."""
        root = RootKey(Secret(bytes(range(32))))
        env = {ROOT_KEY_ENV: base64.b64encode(bytes(range(32))).decode()}
        status, out, _ = self._init(environ=env)
        self.assertEqual(status, 0)
        self.assertFalse((self.install / "root.key").exists())
        self.assertIn(f"root key {root.key_id} taken from ${ROOT_KEY_ENV}", out)
        KeyStore.open(self.install / "keystore.json", root)

    def test_notADirectory(self) -> None:
        """A file where the install should go."""
        write(self.base, "gw", "x")
        status, _, err = self._init()
        self.assertEqual(status, 1)
        self.assertIn("not a directory", err)

    def test_options(self) -> None:
        """Every option reaches its key."""
        status, _, _ = self._init(
            "--public-port", "443",
            "--listen", "tcp:9443",
            "--system-id", "esme7",
            "--source-address", "777",
            "--node-id", "node-b",
        )  # fmt: skip
        self.assertEqual(status, 0)
        config = Config.from_file(self.install / "bipgw.toml")
        self.assertEqual((config.admin.public_port, config.admin.listen), (443, "tcp:9443"))
        self.assertEqual((config.smpp.system_id, config.smpp.source_address), ("esme7", "777"))
        self.assertEqual(config.gateway.node_id, "node-b")
