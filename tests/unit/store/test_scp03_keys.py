"""The store's SCP03 key source (bipgw.store.StoreScp03KeySource): sealed keys
from the store, else diversified from the keystore's masters."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.scp03 import StaticKeys
from bipgw.keys import (
    IntegrityError,
    InvalidIccidError,
    RootKey,
    Scp03MasterKeys,
    Secret,
    UnknownKeyError,
)
from bipgw.store import (
    CardUpsert,
    KeyPurpose,
    MemoryStore,
    StoreScp03KeySource,
    seal_card_key,
)
from tests.unit.simcard import DEK, ENC, ICCID, MAC

KEYS = StaticKeys(ENC, MAC, DEK)
WRONG = StaticKeys(MAC, ENC, DEK)
ROOT = RootKey(Secret(bytes(range(32))))
MASTERS = Scp03MasterKeys(
    Secret(bytes(range(0x20, 0x40))), Secret(bytes(range(0x40, 0x60))), Secret(bytes(range(16)))
)


def store_with(
    root: RootKey, *keys: tuple[KeyPurpose, int, bytes], iccid: str = ICCID
) -> MemoryStore:
    """A memory store holding one card with C{keys} sealed under C{root}."""
    store = MemoryStore()
    sealed = tuple(
        seal_card_key(root, iccid, purpose, kvn, "aes-128", Secret(key))
        for purpose, kvn, key in keys
    )
    store.upsert_cards([CardUpsert(iccid=iccid, keys=sealed)])
    return store


def full_set(kvn: int, keys: StaticKeys) -> list[tuple[KeyPurpose, int, bytes]]:
    """The three SCP03 keys of C{keys} as key set C{kvn}."""
    return [
        (KeyPurpose.SCP03_ENC, kvn, keys.enc),
        (KeyPurpose.SCP03_MAC, kvn, keys.mac),
        (KeyPurpose.SCP03_DEK, kvn, keys.dek),
    ]


class KeySourceTests(SynchronousTestCase):
    """StoreScp03KeySource: sealed keys from the store, else diversified from masters."""

    def keys(self, source: StoreScp03KeySource, iccid: str = ICCID) -> StaticKeys:
        return self.successResultOf(source.keys_for(iccid))

    def test_storedSet(self) -> None:
        """The card's sealed set opens with the root key; the lowest complete
        version wins, an incomplete one is skipped, key_set chooses."""
        stored = [*full_set(2, WRONG), *full_set(1, KEYS), (KeyPurpose.SCP03_ENC, 0, MAC)]
        store = store_with(ROOT, *stored, (KeyPurpose.KIC, 1, DEK))
        self.assertEqual(self.keys(StoreScp03KeySource(store, ROOT)), KEYS)
        self.assertEqual(self.keys(StoreScp03KeySource(store, ROOT, key_set=2)), WRONG)
        self.assertEqual(self.keys(StoreScp03KeySource(store, ROOT), ICCID + "F"), KEYS)

    def test_masterFallback(self) -> None:
        """Without a stored set (or the card), masters diversify the keys: the
        docs/keys.md vector for SCP03 ENC."""
        source = StoreScp03KeySource(store_with(ROOT), ROOT, masters=MASTERS)
        self.assertEqual(
            self.keys(source, "89882390000012345678").enc.hex().upper(),
            "190E99A847EB93A3CB041FC0C93F9B88",
        )

    def test_noKeys(self) -> None:
        """No stored set and no masters: refused naming the card, not a key."""
        for store in (store_with(ROOT, (KeyPurpose.SCP03_ENC, 1, ENC)), MemoryStore()):
            d = StoreScp03KeySource(store, ROOT).keys_for(ICCID)
            error = self.failureResultOf(d, UnknownKeyError).value
            self.assertIn(ICCID, str(error))
            self.assertNotIn(ENC.hex(), str(error).lower())
        self.failureResultOf(
            StoreScp03KeySource(MemoryStore(), ROOT).keys_for("12"), InvalidIccidError
        )

    def test_otherRootKey(self) -> None:
        """Keys sealed under another root key do not open (and are not guessed)."""
        other = RootKey(Secret(bytes(range(1, 33))))
        source = StoreScp03KeySource(store_with(ROOT, *full_set(1, KEYS)), other, masters=MASTERS)
        self.failureResultOf(source.keys_for(ICCID), IntegrityError)

    def test_reprShowsNoKey(self) -> None:
        """The source's repr says whether masters are configured, and nothing of them."""
        self.assertNotIn("0x", repr(StoreScp03KeySource(MemoryStore(), ROOT, masters=MASTERS)))
