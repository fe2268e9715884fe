"""A root-key rotation killed with SIGKILL at every durable step resumes, losing nothing.

L{tests.integration.test_rotate_root_crash} kills the rotation at random
moments, which mostly land in the re-sealing of the database.  This test
kills it at I{each} step that makes something durable, in turn, from a fresh
copy of the same install each time: writing the next root key's file, every
batch's C{UPDATE} (uncommitted) and C{COMMIT}, the audit records, each step of
the keystore's rewrite (temporary file, C{replace}, directory C{fsync}) and of
the retirement of the old key (L{tests.integration._rotate_kill_child} counts
them and sends itself SIGKILL at the chosen one).

After each kill: every database row and every keystore entry opens, to its
original value, under the keys left on disk.  Then the command is run again:
it finishes, everything is under the current key, the next-key file is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import FileRootKeyRing, KeyStore
from bipgw.store import RootRotation, create_sql_engine
from tests.integration._forked import run_forked
from tests.unit.store import rotation_fixture as fx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CARDS = 60  # 120 sealed rows
BATCH = 50  # 3 batches


class KillAtEveryStepTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir(mode=0o700)
        template = self.base / "template"
        template.mkdir(mode=0o700)
        ring = FileRootKeyRing(fx.make_root(template))
        fx.make_keystore(template, ring)
        self.rows = fx.populate(fx.sqlite_url(template), ring, CARDS)
        self.first_key = ring.key_id
        self.template = template

    def _install(self, name: str) -> Path:
        directory = self.base / name
        shutil.copytree(self.template, directory)  # modes kept: root.key stays 0600
        return directory

    def _child(self, directory: Path, kill_at: int) -> subprocess.CompletedProcess[bytes]:
        args = [
            fx.sqlite_url(directory),
            str(directory / "root.key"),
            str(directory / "keystore.json"),
            str(BATCH),
            str(kill_at),
        ]
        result: subprocess.CompletedProcess[bytes] = run_forked(
            "tests.integration._rotate_kill_child", args
        )
        return result

    def _everything_opens(self, directory: Path, step: str) -> None:
        """Every row and keystore entry opens under the keys on disk now."""
        ring = FileRootKeyRing(directory / "root.key")
        engine = create_sql_engine(fx.sqlite_url(directory))
        try:
            found = fx.rows(engine)
        finally:
            engine.dispose()
        self.assertEqual(len(found), self.rows, step)
        for label, blob, _ in found:
            self.assertEqual(ring.unseal(label, blob), fx.value_for(label), f"{step}: {label}")
        store = KeyStore.open(directory / "keystore.json", ring)
        for label in fx.KEYSTORE_LABELS:
            self.assertEqual(store.get(label), fx.value_for("keystore:" + label), step)

    def test_killedAtEveryStep(self) -> None:
        dry = self._child(self._install("dry"), 0)
        self.assertEqual(dry.returncode, 0, dry.stderr.decode()[-3000:])
        steps = dry.stdout.decode().splitlines()
        self.assertEqual(steps[-1], "done")
        steps = steps[:-1]
        # The phases are all there, so every one of them is killed below.
        text = "\n".join(steps)
        for what in ("link root.key.next", "update (uncommitted)", "replace keystore.json"):
            self.assertIn(what, text)
        self.assertIn("replace root.key", text)  # the retirement
        self.assertGreaterEqual(text.count("update (uncommitted)"), self.rows // BATCH)

        for n, step in enumerate(steps, start=1):
            directory = self._install(f"kill-{n}")
            killed = self._child(directory, n)
            where = f"killed at step {n} ({step})"
            self.assertEqual(
                killed.returncode, -signal.SIGKILL, f"{where}: {killed.stderr.decode()[-2000:]}"
            )
            self._everything_opens(directory, where)
            keystore = directory / "keystore.json"
            # Run again (here, in this process: the command's work): it finishes.
            engine = create_sql_engine(fx.sqlite_url(directory))
            try:
                RootRotation(
                    engine, FileRootKeyRing(directory / "root.key"), str(keystore), batch=BATCH
                ).run()
                ring = FileRootKeyRing(directory / "root.key")
                fx.check_all(self, engine, ring, keystore, self.rows)
            finally:
                engine.dispose()
            self.assertEqual(ring.key_ids, (ring.key_id,), where)
            self.assertNotEqual(ring.key_id, self.first_key, where)
            self.assertFalse((directory / "root.key.next").exists(), where)
            shutil.rmtree(directory)
        print(f"\n{len(steps)} kill points, each resumed: {', '.join(sorted(set(steps)))}")


class TokenKillAtEveryStepTests(SynchronousTestCase):
    """The same in a PKCS#11 token (SoftHSM2): each token write of the rotation
    (the next key pair generated, the old pair destroyed, the next key
    relabelled current), the first batch and the keystore's rewrite, killed
    in turn; each copy of the install and token in processes of its own
    (a process reads the token's configuration once)."""

    def setUp(self) -> None:
        from bipgw.keys import Pkcs11RootKeys, Pkcs11Token
        from tests.softhsm import SoftHsm

        self.hsm = SoftHsm(self)
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir(mode=0o700)
        self.template = self.base / "template"
        self.template.mkdir(mode=0o700)
        token = Pkcs11Token(self.hsm.module, self.hsm.pin, token_label=self.hsm.label)
        try:
            root = Pkcs11RootKeys.initialise(token)
            fx.make_keystore(self.template, root)
            self.rows = fx.populate(fx.sqlite_url(self.template), root, CARDS)
        finally:
            token.close()

    def _install(self, name: str) -> tuple[Path, Path]:
        directory = self.base / name
        shutil.copytree(self.template, directory)
        shutil.copytree(self.hsm.dir / "tokens", directory / "tokens")
        conf = directory / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {directory / 'tokens'}\n"
            "objectstore.backend = file\nlog.level = ERROR\n"
        )
        return directory, conf

    def _child(self, mode: str, directory: Path, conf: Path, kill_at: int):  # type: ignore[no-untyped-def]
        args = [mode, fx.sqlite_url(directory), self.hsm.module, self.hsm.label, self.hsm.pin]
        args += [str(directory / "keystore.json"), str(BATCH), str(kill_at)]
        env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
        return run_forked("tests.integration._rotate_token_child", args, env)

    def test_killedAtEveryTokenStep(self) -> None:
        dry = self._child("rotate", *self._install("dry"), 0)
        self.assertEqual(dry.returncode, 0, dry.stderr.decode()[-3000:])
        steps = dry.stdout.decode().splitlines()
        self.assertEqual(steps[-1], "done")
        steps = steps[:-1]
        for what in (
            "token generate bipgw-root-mac",
            "token generate bipgw-root-next",
            "token destroy bipgw-root",
            "token destroy bipgw-root-mac",
            "token relabel bipgw-root",
            "replace keystore.json",
        ):
            self.assertIn(what, steps)
        # Every token write, the first uncommitted batch and its commit, the keystore.
        chosen = [
            n
            for n, step in enumerate(steps, start=1)
            if step.startswith(("token ", "replace "))
            or n
            in (steps.index("update (uncommitted)") + 1, steps.index("update (uncommitted)") + 2)
        ]
        for n in chosen:
            directory, conf = self._install(f"kill-{n}")
            where = f"killed at step {n} ({steps[n - 1]})"
            killed = self._child("rotate", directory, conf, n)
            self.assertEqual(
                killed.returncode, -signal.SIGKILL, f"{where}: {killed.stderr.decode()[-2000:]}"
            )
            resumed = self._child("resume", directory, conf, 0)
            self.assertEqual(
                (resumed.returncode, resumed.stdout.decode().strip()),
                (0, "ok"),
                f"{where}: {resumed.stderr.decode()[-3000:]}",
            )
            shutil.rmtree(directory)
        print(f"\n{len(chosen)} kill points in the token rotation, each resumed")
