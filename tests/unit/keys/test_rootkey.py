"""Tests for L{bipgw.keys.RootKey}: the gateway root key, in a file or the environment."""

from __future__ import annotations

import base64
import os
import pickle
import stat

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    ROOT_KEY_ENV,
    InsecureRootKeyFileError,
    RootKey,
    RootKeyError,
    Secret,
)
from tests.unit.keys import private_directory

KEY = bytes(range(0xA0, 0xC0))


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class RootKeyFileTests(SynchronousTestCase):
    """The root key file is private, written atomically and never overwritten."""

    def setUp(self) -> None:
        self.directory = private_directory(self)
        self.path = os.path.join(self.directory, "root.key")

    def _writeFile(self, content: bytes, mode: int) -> None:
        with open(self.path, "wb") as f:
            f.write(content)
        os.chmod(self.path, mode)

    def test_saveAndLoad(self) -> None:
        """A saved key loads back equal, from a 0600 file of base64 text."""
        root = RootKey(Secret(KEY))
        root.save(self.path)
        self.assertEqual(_mode(self.path), 0o600)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), base64.b64encode(KEY) + b"\n")
        self.assertEqual(RootKey.load(self.path), root)
        self.assertEqual(os.listdir(self.directory), ["root.key"])

    def test_saveIgnoresPermissiveUmask(self) -> None:
        """Even with umask 000 the file is created 0600."""
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        RootKey.generate().save(self.path)
        self.assertEqual(_mode(self.path), 0o600)

    def test_saveNeverOverwrites(self) -> None:
        """An existing file is left untouched: losing a root key loses every key."""
        self._writeFile(b"precious\n", 0o600)
        with self.assertRaises(RootKeyError) as ctx:
            RootKey.generate().save(self.path)
        self.assertIn("refusing to overwrite", str(ctx.exception))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"precious\n")
        self.assertEqual(os.listdir(self.directory), ["root.key"])

    def test_saveLosingTheRaceNeverOverwrites(self) -> None:
        """If the file appears between the check and the link, it is still kept."""
        real_link = os.link

        def racing_link(src: str, dst: str) -> None:
            self._writeFile(b"other\n", 0o600)
            real_link(src, dst)

        self.patch(os, "link", racing_link)
        self.assertRaises(RootKeyError, RootKey.generate().save, self.path)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"other\n")
        self.assertEqual(os.listdir(self.directory), ["root.key"])

    def test_loadRefusesGroupOrWorldAccess(self) -> None:
        """Any permission for group or others is refused with the mode and the fix."""
        RootKey(Secret(KEY)).save(self.path)
        for mode in (0o640, 0o604, 0o620, 0o602, 0o644, 0o660, 0o666, 0o610):
            os.chmod(self.path, mode)
            with self.assertRaises(InsecureRootKeyFileError) as ctx:
                RootKey.load(self.path)
            message = str(ctx.exception)
            self.assertIn(f"{mode:04o}", message)
            self.assertIn(f"chmod 600 {self.path}", message)
            self.assertNotIn(base64.b64encode(KEY).decode(), message)

    def test_loadAcceptsOwnerOnly(self) -> None:
        """Modes 0600 and 0400 are accepted."""
        RootKey(Secret(KEY)).save(self.path)
        for mode in (0o600, 0o400):
            os.chmod(self.path, mode)
            self.assertEqual(RootKey.load(self.path).secret, Secret(KEY))

    def test_loadMissing(self) -> None:
        """A missing file is a clear error naming the path."""
        with self.assertRaises(RootKeyError) as ctx:
            RootKey.load(self.path)
        self.assertIn(f"no root key file at {self.path}", str(ctx.exception))

    def test_loadDirectory(self) -> None:
        """A directory is not a root key file."""
        with self.assertRaises(RootKeyError) as ctx:
            RootKey.load(self.directory)
        self.assertIn("not a regular file", str(ctx.exception))

    def test_loadBadContent(self) -> None:
        """Non-base64 text, a wrong length or a huge file are refused without quoting them."""
        cases = [
            (b"this is not base64!!\n", "does not hold base64"),
            (base64.b64encode(KEY[:16]) + b"\n", "holds 16 bytes"),
            (b"A" * 5000, "too large"),
        ]
        for content, reason in cases:
            self._writeFile(content, 0o600)
            with self.assertRaises(RootKeyError) as ctx:
                RootKey.load(self.path)
            self.assertIn(reason, str(ctx.exception))
            self.assertNotIn(content[:16].decode(), str(ctx.exception))
            os.unlink(self.path)


class RootKeyEnvironmentTests(SynchronousTestCase):
    """Containers pass the root key as base64 in an environment variable."""

    def test_fromEnvironment(self) -> None:
        """The default variable holds base64 of the 32 bytes; white space is ignored."""
        env = {ROOT_KEY_ENV: " " + base64.b64encode(KEY).decode() + "\n"}
        self.assertEqual(RootKey.from_environment(env).secret, Secret(KEY))
        self.assertEqual(ROOT_KEY_ENV, "BIPGW_ROOT_KEY")

    def test_otherName(self) -> None:
        """Another variable name can be given."""
        env = {"MY_ROOT": base64.b64encode(KEY).decode()}
        self.assertEqual(RootKey.from_environment(env, name="MY_ROOT").secret, Secret(KEY))

    def test_processEnvironment(self) -> None:
        """Without a mapping, the process environment is read."""
        self.patch(os, "environ", {ROOT_KEY_ENV: base64.b64encode(KEY).decode()})
        self.assertEqual(RootKey.from_environment().secret, Secret(KEY))

    def test_missingOrBad(self) -> None:
        """A missing, non-base64 or wrong-length variable is named, its value never shown."""
        with self.assertRaises(RootKeyError) as ctx:
            RootKey.from_environment({})
        self.assertIn("BIPGW_ROOT_KEY is not set", str(ctx.exception))
        for value in ("not base64 at all", base64.b64encode(KEY[:31]).decode(), "é"):
            with self.assertRaises(RootKeyError) as ctx:
                RootKey.from_environment({ROOT_KEY_ENV: value})
            self.assertIn("environment variable BIPGW_ROOT_KEY", str(ctx.exception))
            self.assertNotIn(value, str(ctx.exception))


class RootKeyValueTests(SynchronousTestCase):
    """The root key value: identifier, sub-keys, redaction."""

    def test_generate(self) -> None:
        """Generated root keys are 32 random bytes."""
        a, b = RootKey.generate(), RootKey.generate()
        self.assertEqual(len(a.secret), 32)
        self.assertNotEqual(a, b)
        self.assertNotEqual(a.key_id, b.key_id)

    def test_onlyThirtyTwoBytes(self) -> None:
        """A root key is exactly 32 bytes, wrapped in a Secret."""
        self.assertRaises(RootKeyError, RootKey, Secret(KEY[:16]))
        self.assertRaises(RootKeyError, RootKey, KEY)

    def test_keyIdIsHkdf(self) -> None:
        """The id is the first 4 bytes of HKDF-SHA256(root, info "bipgw root key id v1")."""
        expected = HKDF(hashes.SHA256(), 4, None, b"bipgw root key id v1").derive(KEY)
        self.assertEqual(RootKey(Secret(KEY)).key_id, expected.hex())

    def test_subkeysAreHkdfPerPurpose(self) -> None:
        """Sub-keys are HKDF-SHA256 of the root with the purpose as info; never the root."""
        root = RootKey(Secret(KEY))
        for info in (b"bipgw seal v1", b"bipgw keystore mac v1"):
            expected = HKDF(hashes.SHA256(), 32, None, info).derive(KEY)
            self.assertEqual(root.subkey(info).reveal(), expected)
            self.assertNotEqual(root.subkey(info).reveal(), KEY)
        self.assertNotEqual(root.subkey(b"a"), root.subkey(b"b"))
        self.assertRaises(TypeError, root.subkey, b"")

    def test_reprShowsOnlyTheId(self) -> None:
        """repr names the key by its public id."""
        root = RootKey(Secret(KEY))
        self.assertEqual(repr(root), f"<RootKey id={root.key_id}>")
        self.assertNotIn(KEY.hex(), repr(root))

    def test_notPicklable(self) -> None:
        """A root key cannot be pickled (its Secret refuses)."""
        self.assertRaises(TypeError, pickle.dumps, RootKey.generate())
