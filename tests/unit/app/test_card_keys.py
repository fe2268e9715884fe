"""What [services.NAME] derived_keys does to the gateway's card keys
(bipgw.app.card_key_source, derived_key_specs, rotation_services)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import build_gateway
from bipgw.app._card_keys import derived_key_specs
from bipgw.app._gateway import rotation_services
from bipgw.config import Config, init_install
from bipgw.keys import (
    KdfPurpose,
    KeyAlgorithm,
    UnknownKeyError,
    derive_card_key_v2,
    generate_master_key,
)
from bipgw.store import KeyPurpose, MemoryStore, open_card_key
from tests.unit.app.test_gateway import _toml
from tests.unit.scp81.test_keys import add_cards, iccid_of


class DerivedKeysOptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        init_install(self.directory, environ={})

    def config(self, extra: str) -> Config:
        path = self.directory / "bipgw.toml"
        path.write_text(_toml() + extra)
        return Config.from_file(path)

    def test_specs(self) -> None:
        """A service with derived_keys forces its KIc/KID/PSK (and SCP03 with
        secure_apdus); other services only fill gaps."""
        config = self.config("[services.derived]\nderived_keys = true\nsecure_apdus = true\n")
        specs = {(s.purpose, s.kvn): s for s in derived_key_specs(config)}
        self.assertTrue(specs[(KeyPurpose.PSK, 0x40)].forced)
        self.assertTrue(specs[(KeyPurpose.KIC, 1)].forced)
        self.assertEqual(specs[(KeyPurpose.KIC, 1)].algorithm, KeyAlgorithm.AES_128)
        self.assertTrue(specs[(KeyPurpose.SCP03_DEK, 0x30)].forced)
        plain = {(s.purpose, s.kvn): s for s in derived_key_specs(self.config(""))}
        self.assertFalse(any(s.forced for s in plain.values()))
        self.assertEqual(set(plain), set(specs))

    def test_missingMasterRefusesToStart(self) -> None:
        """derived_keys without the master keys: the gateway does not build,
        and the error names the missing kind."""
        config = self.config("[services.derived]\nderived_keys = true\n")
        with self.assertRaises(UnknownKeyError) as caught:
            build_gateway(config, Clock(), environ={}, store=MemoryStore())
        self.assertIn("master-", str(caught.exception))

    def test_derivedKeysReplaceStored(self) -> None:
        """With derived_keys the key cache holds the derived PSK and OTA keys,
        not the store's."""
        path = self.directory / "bipgw.toml"
        path.write_text(
            _toml().replace("[services.isd]\n", "[services.isd]\nderived_keys = true\n")
        )
        config = Config.from_file(path)
        root = config.keys.load_root_key({})
        keystore = config.keys.open_keystore(root)
        for kind in ("psk", "ota-kic", "ota-kid"):
            generate_master_key(keystore, kind, kind)
        store = MemoryStore()
        add_cards(store, [1], root=root)
        gateway = build_gateway(config, Clock(), environ={}, store=store)
        keys = self.successResultOf(gateway.key_source.get_card_keys(iccid_of(1)))
        psk = next(k for k in keys.keys if k.purpose is KeyPurpose.PSK)
        master = keystore.get("psk")
        expected = derive_card_key_v2(
            master, iccid_of(1), KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x40
        )
        self.assertEqual(open_card_key(root, psk), expected)
        stored = self.successResultOf(store.get_card_keys(iccid_of(1)))
        stored_psk = next(k for k in stored.keys if k.purpose is KeyPurpose.PSK)
        self.assertNotEqual(open_card_key(root, stored_psk), expected)

    def test_rotationServices(self) -> None:
        """Only services with secure_apdus and put-key carry rotations."""
        config = self.config(
            "[services.sec]\nsecure_apdus = true\n"
            '[services.nokey]\nsecure_apdus = true\nisd_commands = ["get-status"]\n'
        )
        self.assertEqual(rotation_services(config), ("sec",))
