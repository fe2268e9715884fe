"""C{bipgw keys rotate-root} and C{bipgw keys init-hsm}: the commands an operator runs."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli._audit import cli_actor
from bipgw.config import Config, init_install
from bipgw.keys import FileRootKeyRing, Pkcs11MasterKeys, Pkcs11RootKeys, RootKey
from bipgw.store import create_sql_engine
from tests.softhsm import SoftHsm
from tests.unit.cli import run
from tests.unit.config import private_directory
from tests.unit.store import rotation_fixture as fx


class _Install(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = private_directory(self)
        self.install = self.base / "gw"
        init_install(self.install, environ={})
        self.config_path = str(self.install / "bipgw.toml")

    def config(self) -> Config:
        return Config.from_file(self.config_path)

    def set_keys(self, lines: str) -> None:
        path = Path(self.config_path)
        text = path.read_text().replace('backend = "file"\n', "")
        path.write_text(text.replace("[keys]\n", "[keys]\n" + lines, 1))

    def keys(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return run(["keys", *argv, "-c", self.config_path], env)

    def populate(self, cards: int) -> int:
        config = self.config()
        root = config.keys.load_root_key({})
        try:
            return fx.populate(config.database.url, root, cards)
        finally:
            if isinstance(root, Pkcs11RootKeys):
                root.close()


class RotateRootTests(_Install):
    def test_rotates(self) -> None:
        """The command re-seals everything, shows progress and the retired key."""
        rows = self.populate(40)
        old = RootKey.load(self.install / "root.key").key_id
        status, out, err = self.keys("rotate-root", "--batch", "9")
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"rotating root key {old}", out)
        self.assertIn(f"re-sealed {rows}/{rows} rows (", out)
        self.assertIn("rows/s)", out)
        new = RootKey.load(self.install / "root.key").key_id
        self.assertNotEqual(new, old)
        self.assertIn(f"root key {new} is current; {old} retired ({rows} rows", out)
        engine = create_sql_engine(self.config().database.url)
        self.addCleanup(engine.dispose)
        ring = FileRootKeyRing(self.install / "root.key")
        for label, blob, _ in fx.rows(engine):
            self.assertEqual(ring.unseal(label, blob), fx.value_for(label))
        with engine.connect() as c:
            actors = {row[0] for row in c.exec_driver_sql("SELECT actor FROM audit_log")}
        self.assertEqual(actors, {cli_actor()})  # the OS user who rotated, by name

    def test_resumeOnlyWithNothingPending(self) -> None:
        status, out, _ = self.keys("rotate-root", "--resume-only")
        self.assertEqual(status, 0)
        self.assertIn("no rotation under way", out)

    def test_resumes(self) -> None:
        """With a next key on disk (an interrupted run), the command resumes it."""
        self.populate(5)
        _, new = FileRootKeyRing(self.install / "root.key").begin_rotation()
        status, out, _ = self.keys("rotate-root", "--resume-only")
        self.assertEqual(status, 0)
        self.assertIn(f"resuming the rotation to root key {new}", out)
        self.assertEqual(RootKey.load(self.install / "root.key").key_id, new)

    def test_environmentKeyRefused(self) -> None:
        """A root key from BIPGW_ROOT_KEY cannot be rotated by the gateway: said so."""
        text = (self.install / "root.key").read_text()
        status, _, err = self.keys("rotate-root", env={"BIPGW_ROOT_KEY": text.strip()})
        self.assertEqual(status, 1)
        self.assertIn("the root key comes from $BIPGW_ROOT_KEY", err)
        self.assertNotIn(text.strip(), err)
        base64.b64decode(text)  # the variable held a real key

    def test_badBatch(self) -> None:
        status, _, err = self.keys("rotate-root", "--batch", "0")
        self.assertEqual(status, 1)
        self.assertIn("--batch must be at least 1", err)


class HsmCommandTests(_Install):
    """The same commands with [keys] backend = "pkcs11", on SoftHSM2."""

    def setUp(self) -> None:
        super().setUp()
        self.hsm = SoftHsm(self)
        os.remove(self.install / "keystore.json")
        self.set_keys(self.hsm.toml())

    def test_initGenerateRotate(self) -> None:
        status, out, err = self.keys("init-hsm")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("created in the PKCS#11 token", out)
        self.assertIn("empty keystore", out)
        status, out, err = self.keys("init-hsm")
        self.assertEqual(status, 1)
        self.assertIn("already holds a bipgw root key", err)
        status, out, err = self.keys("generate-master", "psk", "M1", "--backend", "pkcs11")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("kdf=2\tgenerated in the token, non-extractable", out)
        status, out, err = self.keys(
            "generate-master", "ota-kic", "K1", "--backend", "pkcs11", "--kdf", "1"
        )
        self.assertEqual((status, err), (0, ""))
        token = self.config().keys.open_token()
        self.addCleanup(token.close)
        # The kind and derivation version are in the token label.
        self.assertEqual(
            Pkcs11MasterKeys(token).labels(), ["master-ota-kic:v1:K1", "master-psk:v2:M1"]
        )
        status, out, err = self.keys("list")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("master keys in the PKCS#11 token", out)
        self.assertIn("M1\tmaster-psk\t16 bytes\tkdf=2\tin token, non-extractable\n", out)
        self.assertIn("K1\tmaster-ota-kic\t16 bytes\tkdf=1\tin token, non-extractable\n", out)
        root = Pkcs11RootKeys(token)
        old = root.key_id
        rows = self.populate(12)
        status, out, err = self.keys("rotate-root", "--batch", "5")
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"{old} retired ({rows} rows and 0 keystore entries", out)
        root.refresh()
        self.assertNotEqual(root.key_id, old)
        # Every key change is in the audit log, by the OS user, never a key.
        engine = create_sql_engine(self.config().database.url)
        self.addCleanup(engine.dispose)
        with engine.connect() as c:
            query = "SELECT actor, action, target, detail FROM audit_log ORDER BY audit_id"
            records = list(c.exec_driver_sql(query))
        self.assertEqual(
            [(r[1], r[2]) for r in records],
            [
                ("keys.init-hsm", "root-key"),
                ("keys.generate-master", "M1"),
                ("keys.generate-master", "K1"),
                ("root-key.rotate.begin", "root-key"),
                ("root-key.rotate.finish", "root-key"),
            ],
        )
        self.assertEqual({r[0] for r in records}, {cli_actor()})
        self.assertIn(f"root key {old} created in the PKCS#11 token", records[0][3])
        self.assertIn("master-psk, 16 bytes, kdf 2, generated in the PKCS#11 token", records[1][3])

    def test_tokenMasterHasNoVersion(self) -> None:
        """--kvn is refused for a token master (it has no key version)."""
        self.assertEqual(self.keys("init-hsm")[0], 0)
        status, _, err = self.keys(
            "generate-master", "psk", "M1", "--backend", "pkcs11", "--kdf", "1", "--kvn", "1"
        )
        self.assertEqual(status, 1)
        self.assertIn("--kvn: a master key in the token has no key version", err)

    def test_missingMechanism(self) -> None:
        """A token without a mechanism bipgw needs: the commands fail with one
        line naming it (SoftHSM2 has them all, so the list asks for one it lacks)."""
        from bipgw.keys import _pkcs11

        self.assertEqual(self.keys("init-hsm")[0], 0)
        self.patch(_pkcs11, "ROOT_MECHANISMS", (*_pkcs11.ROOT_MECHANISMS, "SP800_108_COUNTER_KDF"))
        for argv in (("list",), ("rotate-root",)):
            with self.subTest(argv=argv):
                status, _, err = self.keys(*argv)
                self.assertEqual(status, 1)
                self.assertEqual(
                    err,
                    f"bipgw: error: the PKCS#11 token {self.hsm.label!r} does not offer"
                    " CKM_SP800_108_COUNTER_KDF, which bipgw needs\n",
                )

    def test_wrongPin(self) -> None:
        self.hsm.pin_file.write_text("0000\n")
        status, _, err = self.keys("init-hsm")
        self.assertEqual(status, 1)
        self.assertIn("wrong PIN for the PKCS#11 token", err)

    def test_initHsmNeedsBackend(self) -> None:
        Path(self.config_path).write_text(
            Path(self.config_path).read_text().replace(self.hsm.toml(), "")
        )
        status, _, err = self.keys("init-hsm")
        self.assertEqual(status, 1)
        self.assertIn('needs [keys] backend = "pkcs11"', err)


class HsmConfigTests(_Install):
    """Each hsm_* key has its effect or is refused."""

    def test_hsmKeysWithFileBackend(self) -> None:
        self.set_keys('hsm_module = "/x.so"\n')
        status, _, err = run(["check-config", self.config_path, "--no-keys"])
        self.assertEqual(status, 1)
        self.assertIn('keys.hsm_module: only used with backend = "pkcs11"', err)

    def test_pinFileRequired(self) -> None:
        self.set_keys('backend = "pkcs11"\nhsm_module = "/x.so"\nhsm_token_label = "t"\n')
        status, _, err = run(["check-config", self.config_path, "--no-keys"])
        self.assertEqual(status, 1)
        self.assertIn("keys.hsm_pin_file: missing", err)

    def test_labelOrSlot(self) -> None:
        self.set_keys(
            'backend = "pkcs11"\nhsm_module = "/x.so"\nhsm_pin_file = "p"\n'
            'hsm_token_label = "t"\nhsm_slot = 1\n'
        )
        status, _, err = run(["check-config", self.config_path, "--no-keys"])
        self.assertEqual(status, 1)
        self.assertIn("exactly one of the two", err)

    def test_slotUsed(self) -> None:
        """hsm_slot names the token by slot: a slot with no token is an error naming it."""
        hsm = SoftHsm(self)
        self.set_keys(
            f'backend = "pkcs11"\nhsm_module = "{hsm.module}"\nhsm_pin_file = "{hsm.pin_file}"\n'
            "hsm_slot = 123\n"
        )
        status, _, err = self.keys("init-hsm")
        self.assertEqual(status, 1)
        self.assertIn("no PKCS#11 slot 123", err)

    def test_environmentWithHsmRefused(self) -> None:
        hsm = SoftHsm(self)
        self.set_keys(hsm.toml())
        status, _, err = self.keys("list", env={"BIPGW_ROOT_KEY": "x"})
        self.assertEqual(status, 1)
        self.assertIn('BIPGW_ROOT_KEY is set, but [keys] backend = "pkcs11"', err)
