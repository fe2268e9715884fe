"""The SCP03 master keys (bipgw.keys.Scp03MasterKeys): diversification and the keystore."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.scp03 import StaticKeys
from bipgw.keys import (
    KeyAlgorithm,
    KeyKind,
    KeyManagementError,
    KeyStore,
    RootKey,
    Scp03MasterKeys,
    Secret,
    UnknownKeyError,
)
from simcard.fleet import FleetAlgorithm, card_numbers
from simcard.fleet import MasterKeys as FleetMasters
from simcard.model import AdminDefaults

ROOT = RootKey(Secret(bytes(range(32))))
MASTERS = Scp03MasterKeys(
    Secret(bytes(range(0x20, 0x40))), Secret(bytes(range(0x40, 0x60))), Secret(bytes(range(16)))
)


class MasterKeyTests(SynchronousTestCase):
    """Card SCP03 keys diversified from one master per purpose."""

    def test_derive(self) -> None:
        """The docs/keys.md vector for SCP03 ENC, and the fleet's personalisation."""
        self.assertEqual(
            MASTERS.derive("89882390000012345678").enc.hex().upper(),
            "190E99A847EB93A3CB041FC0C93F9B88",
        )
        fleet = FleetMasters(*(Secret(bytes((i,)) * 16) for i in range(7)))
        profile = fleet.profile(card_numbers(7), FleetAlgorithm.AES, AdminDefaults("gw.example"))
        (card,) = profile.scp03
        masters = Scp03MasterKeys(fleet.scp03_enc, fleet.scp03_mac, fleet.scp03_dek)
        self.assertEqual(
            masters.derive(profile.identity.iccid), StaticKeys(card.enc, card.mac, card.dek)
        )

    def test_fromKeystore(self) -> None:
        """The keystore's three master-scp03 keys; the key version chooses among several."""
        keystore = KeyStore.create(self.mktemp(), ROOT)
        self.assertRaises(UnknownKeyError, Scp03MasterKeys.from_keystore, keystore)
        for name, secret in (("enc", MASTERS.enc), ("mac", MASTERS.mac), ("dek", MASTERS.dek)):
            keystore.put(f"scp03-{name}", f"master-scp03-{name}", secret, {"kvn": 1})
        self.assertEqual(Scp03MasterKeys.from_keystore(keystore), MASTERS)
        keystore.put("scp03-enc-2", KeyKind.MASTER_SCP03_ENC, Secret(bytes(16)), {"kvn": 2})
        self.assertRaises(KeyManagementError, Scp03MasterKeys.from_keystore, keystore)
        self.assertEqual(Scp03MasterKeys.from_keystore(keystore, kvn=1), MASTERS)
        self.assertRaises(UnknownKeyError, Scp03MasterKeys.from_keystore, keystore, kvn=2)
        self.assertRaises(
            ValueError, Scp03MasterKeys, *attrs.astuple(MASTERS)[:3], KeyAlgorithm.DES3_2KEY
        )
