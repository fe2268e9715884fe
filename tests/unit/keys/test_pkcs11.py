"""The PKCS#11 root key backend against a real SoftHSM2 token (L{bipgw.keys._pkcs11})."""

from __future__ import annotations

import os
from pathlib import Path

from pkcs11 import Attribute
from pkcs11.exceptions import AttributeSensitive
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    HsmError,
    HsmMechanismError,
    IntegrityError,
    KdfPurpose,
    KeyAlgorithm,
    KeyStore,
    Pkcs11MasterKeys,
    Pkcs11RootKeys,
    Pkcs11Token,
    Secret,
    UnknownKeyError,
    WrongRootKeyError,
    derive_card_key,
    read_pin_file,
    sealed_key_id,
)
from bipgw.store import RootRotation, create_sql_engine
from tests.softhsm import SoftHsm
from tests.unit.store import rotation_fixture as fx

ICCID = "8988211000000000018"


class _TokenCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.hsm = SoftHsm(self)

    def token(self, pin: str | None = None, **where: object) -> Pkcs11Token:
        if not where:
            where = {"token_label": self.hsm.label}
        token = Pkcs11Token(self.hsm.module, pin or self.hsm.pin, **where)  # type: ignore[arg-type]
        self.addCleanup(token.close)
        return token


class SealingTests(_TokenCase):
    """Seal, unseal and MAC happen in the token, in the documented format."""

    def test_roundTrip(self) -> None:
        """A value sealed in the token opens again, and names the token key's id."""
        root = Pkcs11RootKeys.initialise(self.token())
        blob = root.seal("card:1:PSK1", Secret(b"0123456789abcdef"))
        self.assertEqual(blob[0], 1)
        self.assertEqual(sealed_key_id(blob), root.key_id)
        self.assertEqual(root.unseal("card:1:PSK1", blob), Secret(b"0123456789abcdef"))

    def test_tamperedOrMoved(self) -> None:
        """A flipped bit or another label fails authentication in the token."""
        root = Pkcs11RootKeys.initialise(self.token())
        blob = bytearray(root.seal("card:1:PSK1", b"k" * 16))
        self.assertRaises(IntegrityError, root.unseal, "card:2:PSK1", bytes(blob))
        blob[-1] ^= 1
        self.assertRaises(IntegrityError, root.unseal, "card:1:PSK1", bytes(blob))

    def test_keyNeverLeavesTheToken(self) -> None:
        """The root key objects are sensitive and non-extractable: reading the value fails."""
        token = self.token()
        Pkcs11RootKeys.initialise(token)
        objects = token.objects("bipgw-root")
        self.assertEqual(len(objects), 2)
        for obj in objects.values():
            self.assertFalse(obj[Attribute.EXTRACTABLE])
            self.assertTrue(obj[Attribute.SENSITIVE])
            self.assertRaises(AttributeSensitive, obj.__getitem__, Attribute.VALUE)

    def test_survivesReopen(self) -> None:
        """The root key is a token object: a new session (a restart) opens old values."""
        token = self.token()
        blob = Pkcs11RootKeys.initialise(token).seal("x", b"v")
        token.close()
        again = Pkcs11RootKeys(self.token())
        self.assertEqual(again.unseal("x", blob), Secret(b"v"))

    def test_macDependsOnPurpose(self) -> None:
        """The MAC is keyed per purpose and per root key."""
        root = Pkcs11RootKeys.initialise(self.token())
        self.assertEqual(len(root.mac(b"a", b"data")), 32)
        self.assertNotEqual(root.mac(b"a", b"data"), root.mac(b"b", b"data"))
        self.assertEqual(root.mac(b"a", b"data"), root.mac(b"a", b"data", root.key_id))
        self.assertRaises(WrongRootKeyError, root.mac, b"a", b"data", "00000000")

    def test_keystore(self) -> None:
        """A keystore file works under the token's root key."""
        root = Pkcs11RootKeys.initialise(self.token())
        path = Path(self.mktemp())
        KeyStore.create(path, root).put("TK1", "transport", Secret(b"t" * 16))
        self.assertEqual(KeyStore.open(path, root).get("TK1"), Secret(b"t" * 16))

    def test_initialiseTwiceRefused(self) -> None:
        """A token holding a root key is not given a second one."""
        token = self.token()
        Pkcs11RootKeys.initialise(token)
        self.assertRaises(HsmError, Pkcs11RootKeys.initialise, token)

    def test_noRootKey(self) -> None:
        """A token without a root key says to run init-hsm."""
        error = self.assertRaises(HsmError, Pkcs11RootKeys, self.token())
        self.assertIn("bipgw keys init-hsm", str(error))


class RotationTests(_TokenCase):
    """bipgw keys rotate-root works on the token too."""

    def test_rotation(self) -> None:
        token = self.token()
        root = Pkcs11RootKeys.initialise(token)
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        keystore = fx.make_keystore(directory, root)
        url = fx.sqlite_url(directory)
        rows = fx.populate(url, root, 30)
        engine = create_sql_engine(url)
        self.addCleanup(engine.dispose)
        old = root.key_id
        reader = Pkcs11RootKeys(self.token())  # another process's view, loaded before
        result = RootRotation(engine, root, str(keystore), batch=7).run()
        self.assertEqual(result.old_key_id, old)
        self.assertNotEqual(result.new_key_id, old)
        fx.check_all(self, engine, root, keystore, rows)
        labels = set(token.objects("bipgw-root"))
        self.assertEqual(
            labels, {f"bipgw-root:{result.new_key_id}", f"bipgw-root-mac:{result.new_key_id}"}
        )
        for label, blob, _ in fx.rows(engine):
            self.assertEqual(reader.unseal(label, blob), fx.value_for(label))

    def test_resumeAfterOldKeyDestroyed(self) -> None:
        """Killed between destroying the old key and relabelling the next, the
        next key is still found, and the rotation finishes."""
        token = self.token()
        root = Pkcs11RootKeys.initialise(token)
        old, new = root.begin_rotation()
        blob = root.seal("x", b"v")
        for label, obj in token.objects("bipgw-root").items():
            if label.endswith(str(old)):
                obj.destroy()
        again = Pkcs11RootKeys(self.token())
        self.assertEqual(again.rotation(), (None, new))
        self.assertEqual(again.finish_rotation(), new)
        self.assertEqual(again.unseal("x", blob), Secret(b"v"))
        self.assertIsNone(again.rotation())


class MasterKeyTests(_TokenCase):
    """Diversification with the token's AES-CMAC equals the software KDF."""

    def test_sameAsSoftware(self) -> None:
        masters = Pkcs11MasterKeys(self.token())
        master = Secret(bytes(range(16)))
        masters.import_key("psk-1", master)
        for algorithm in (KeyAlgorithm.AES_128, KeyAlgorithm.AES_256, KeyAlgorithm.DES3_2KEY):
            for purpose in (KdfPurpose.SCP81_PSK, KdfPurpose.OTA_KIC):
                self.assertEqual(
                    masters.derive("psk-1", ICCID, purpose, algorithm),
                    derive_card_key(master, ICCID, purpose, algorithm),
                )

    def test_generated(self) -> None:
        """A generated master is listed, non-extractable, and derives."""
        token = self.token()
        masters = Pkcs11MasterKeys(token)
        masters.generate("m", 32)
        self.assertEqual(masters.labels(), ["m"])
        obj = token.objects("bipgw-master:")["bipgw-master:m"]
        self.assertFalse(obj[Attribute.EXTRACTABLE])
        key = masters.derive("m", ICCID, KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128)
        self.assertEqual(len(key), 16)
        self.assertRaises(
            UnknownKeyError, masters.derive, "n", ICCID, KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128
        )


class BadInputTests(_TokenCase):
    """Wrong PIN, missing token, missing module, missing mechanism: clear errors."""

    def test_wrongPin(self) -> None:
        error = self.assertRaises(
            HsmError, Pkcs11Token, self.hsm.module, "0000", token_label=self.hsm.label
        )
        self.assertEqual(str(error), f"wrong PIN for the PKCS#11 token '{self.hsm.label}'")

    def test_missingToken(self) -> None:
        error = self.assertRaises(
            HsmError, Pkcs11Token, self.hsm.module, self.hsm.pin, token_label="absent"
        )
        self.assertIn("no PKCS#11 token 'absent'", str(error))
        error = self.assertRaises(HsmError, Pkcs11Token, self.hsm.module, self.hsm.pin, slot=987)
        self.assertIn("no PKCS#11 slot 987", str(error))

    def test_missingModule(self) -> None:
        error = self.assertRaises(
            HsmError, Pkcs11Token, "/nonexistent/libpkcs11.so", "1", token_label="x"
        )
        self.assertIn("no PKCS#11 module at /nonexistent/libpkcs11.so", str(error))

    def test_missingMechanism(self) -> None:
        """SoftHSM2 has no SP 800-108 KDF mechanism: the error names it."""
        token = self.token()
        error = self.assertRaises(
            HsmMechanismError, token.require, ["AES_GCM", "SP800_108_COUNTER_KDF"]
        )
        self.assertIn("CKM_SP800_108_COUNTER_KDF", str(error))
        token.require(["CKM_AES_GCM", "AES_CMAC", "SHA256_HMAC"])

    def test_pinFile(self) -> None:
        """The PIN file must be private and hold the PIN alone; errors never show it."""
        self.assertEqual(read_pin_file(self.hsm.pin_file), self.hsm.pin)
        os.chmod(self.hsm.pin_file, 0o644)
        error = self.assertRaises(HsmError, read_pin_file, self.hsm.pin_file)
        self.assertIn("chmod 600", str(error))
        self.assertNotIn(self.hsm.pin, str(error))
        self.assertRaises(HsmError, read_pin_file, self.hsm.dir / "absent")
