"""Card keys as the gateway uses them (bipgw.store.CardKeySource) and their
lifecycle in the SQL store (bipgw.store.SqlCardKeyVersions)."""

from __future__ import annotations

import itertools
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    KdfPurpose,
    KeyAlgorithm,
    KeyKind,
    KeyStore,
    MasterKeyRing,
    RootKey,
    Secret,
    UnknownKeyError,
    derive_card_key,
    derive_card_key_v2,
)
from bipgw.store import (
    CardKeys,
    CardKeySource,
    CardUpsert,
    DerivedKeySpec,
    KeyFamily,
    KeyPurpose,
    KeySource,
    KeyState,
    KeyVersion,
    MemoryStore,
    SqlCardKeyVersions,
    StoreConflictError,
    StoreError,
    card_key_versions_for,
    card_kvn,
    open_card_key,
    seal_card_key,
)
from tests.unit.store.test_sqlite import open_inline

ROOT = RootKey(Secret(bytes(range(32))))
ICCID = "8988211000000000018"
MASTER = Secret(bytes(range(16)))
STORED_PSK = Secret(b"\x11" * 16)
_NAMES = itertools.count()


def ring(kdf: int = 2, kvn: int = 1) -> MasterKeyRing:
    """A keystore with v-C{kdf} masters for the PSK and the SCP03 set, as a ring."""
    path = os.path.abspath(f"keystore-{next(_NAMES)}.json")
    store = KeyStore.create(path, ROOT)
    meta = {"kdf": kdf, "kvn": kvn} if kdf == 2 else {"kvn": kvn}
    for kind in (
        KeyKind.MASTER_PSK,
        KeyKind.MASTER_SCP03_ENC,
        KeyKind.MASTER_SCP03_MAC,
        KeyKind.MASTER_SCP03_DEK,
    ):
        store.put(kind.value, kind, MASTER, dict(meta))
    return MasterKeyRing.from_keystore(store)


def psk_of(source: CardKeySource, keys: CardKeys) -> list[tuple[int, bytes]]:
    return [
        (k.kvn, open_card_key(ROOT, k).reveal()) for k in keys.keys if k.purpose is KeyPurpose.PSK
    ]


def opened(keys: CardKeys) -> list[tuple[KeyPurpose, int, bytes]]:
    """What C{keys} hold (derived keys are sealed anew each time they are read)."""
    return [(k.purpose, k.kvn, open_card_key(ROOT, k).reveal()) for k in keys.keys]


class SourceTests(SynchronousTestCase):
    def store(self, *keys: tuple[KeyPurpose, int, Secret]) -> MemoryStore:
        store = MemoryStore()
        sealed = tuple(seal_card_key(ROOT, ICCID, p, kvn, "psk", k) for p, kvn, k in keys)
        self.successResultOf(store.upsert_cards([CardUpsert(iccid=ICCID, keys=sealed)]))
        return store

    def test_missingKeyDerived(self) -> None:
        """A card without a PSK gets the one derived (v2) for the wanted key version."""
        spec = DerivedKeySpec(KeyPurpose.PSK, 0x40, KeyAlgorithm.AES_128)
        source = CardKeySource(self.store(), ROOT, masters=ring(), wanted=[spec])
        keys = self.successResultOf(source.get_card_keys(ICCID))
        expected = derive_card_key_v2(
            MASTER, ICCID, KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x40
        )
        self.assertEqual(psk_of(source, keys), [(0x40, expected.reveal())])

    def test_storedKeyKept(self) -> None:
        """Without C{forced}, a stored key wins over derivation."""
        spec = DerivedKeySpec(KeyPurpose.PSK, 0x40, KeyAlgorithm.AES_128)
        store = self.store((KeyPurpose.PSK, 1, STORED_PSK))
        source = CardKeySource(store, ROOT, masters=ring(), wanted=[spec])
        keys = self.successResultOf(source.get_card_keys(ICCID))
        self.assertEqual(psk_of(source, keys), [(1, STORED_PSK.reveal())])

    def test_forcedReplacesStored(self) -> None:
        """A forced spec (a service with derived_keys) replaces the stored key of that version."""
        spec = DerivedKeySpec(KeyPurpose.PSK, 0x40, KeyAlgorithm.AES_128, forced=True)
        store = self.store((KeyPurpose.PSK, 1, STORED_PSK))
        source = CardKeySource(store, ROOT, masters=ring(), wanted=[spec])
        keys = self.successResultOf(source.get_card_keys(ICCID))
        expected = derive_card_key_v2(
            MASTER, ICCID, KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x40
        )
        self.assertEqual(psk_of(source, keys), [(0x40, expected.reveal())])

    def test_forcedWithoutMaster(self) -> None:
        """check() names the missing master kind."""
        spec = DerivedKeySpec(KeyPurpose.KIC, 1, KeyAlgorithm.AES_128, forced=True)
        source = CardKeySource(self.store(), ROOT, masters=ring(), wanted=[spec])
        error = self.assertRaises(UnknownKeyError, source.check)
        self.assertIn("master-ota-kic", str(error))

    def test_v1MasterKeepsOldKeys(self) -> None:
        """A master without kdf=2 derives with v1: keys in the field keep their value."""
        source = CardKeySource(
            self.store(),
            ROOT,
            masters=ring(kdf=1),
            wanted=[DerivedKeySpec(KeyPurpose.SCP03_ENC, 0x30, "aes-128")],
        )
        keys = self.successResultOf(source.get_card_keys(ICCID))
        (enc,) = keys.keys
        v1 = derive_card_key(MASTER, ICCID, KdfPurpose.SCP03_ENC, KeyAlgorithm.AES_128)
        self.assertEqual(open_card_key(ROOT, enc), v1)

    def test_scp03Derived(self) -> None:
        """keys_for gives the derived SCP03 set when the store has none."""
        wanted = [
            DerivedKeySpec(p, 0x30, "aes-128")
            for p in (KeyPurpose.SCP03_ENC, KeyPurpose.SCP03_MAC, KeyPurpose.SCP03_DEK)
        ]
        source = CardKeySource(self.store(), ROOT, masters=ring(), wanted=wanted)
        static = self.successResultOf(source.keys_for(ICCID))
        enc = derive_card_key_v2(MASTER, ICCID, KdfPurpose.SCP03_ENC, KeyAlgorithm.AES_128, 0x30)
        self.assertEqual(static.enc, enc.reveal())

    def test_noScp03(self) -> None:
        """No stored set and no master: UnknownKeyError naming the card."""
        source = CardKeySource(self.store(), ROOT)
        failure = self.failureResultOf(source.keys_for(ICCID), UnknownKeyError)
        self.assertIn(ICCID, str(failure.value))

    def test_cardKvn(self) -> None:
        """Vendor numbering (PSK1, SCP03_ENC1) maps to the card's key versions."""
        self.assertEqual(card_kvn(KeyPurpose.PSK, 1), 0x40)
        self.assertEqual(card_kvn(KeyPurpose.PSK, 0x41), 0x41)
        self.assertEqual(card_kvn(KeyPurpose.SCP03_MAC, 2), 0x31)
        self.assertEqual(card_kvn(KeyPurpose.KIC, 3), 3)

    def test_readCardsMemoryStore(self) -> None:
        """On a store without a lifecycle, C{read_cards} reads each card as C{get_card_keys}."""
        store = self.store((KeyPurpose.PSK, 1, STORED_PSK))
        source = CardKeySource(store, ROOT)
        found = self.successResultOf(source.read_cards([ICCID, "8988211000000000034"]))
        self.assertEqual(list(found), [ICCID])
        self.assertEqual(psk_of(source, found[ICCID][1]), [(1, STORED_PSK.reveal())])

    def test_memoryStoreHasNoLifecycle(self) -> None:
        self.assertIsNone(card_key_versions_for(MemoryStore()))


class LifecycleMixin:
    """Pending, active, retired in an SQL store; the source follows them.

    Mixed into a SynchronousTestCase that says how to make the store
    (SQLite here, PostgreSQL in tests/integration/test_store_postgres.py).
    """

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()
        sealed = (seal_card_key(ROOT, ICCID, KeyPurpose.PSK, 1, "psk", STORED_PSK),)
        self.successResultOf(self.store.upsert_cards([CardUpsert(iccid=ICCID, keys=sealed)]))
        self.versions = card_key_versions_for(self.store)
        assert isinstance(self.versions, SqlCardKeyVersions)
        self.source = CardKeySource(self.store, ROOT, masters=ring(), versions=self.versions)
        self.new = KeyVersion(
            ICCID, KeyPurpose.PSK, 0x41, KeyState.PENDING, KeySource.DERIVED, "aes-128", 5.0, 5.0
        )

    def psk(self) -> list[tuple[int, bytes]]:
        return psk_of(self.source, self.successResultOf(self.source.get_card_keys(ICCID)))

    def test_importedListedActive(self) -> None:
        (only,) = self.successResultOf(self.versions.versions(ICCID))
        self.assertEqual(
            (only.purpose, only.kvn, only.state, only.source),
            (KeyPurpose.PSK, 0x40, KeyState.ACTIVE, KeySource.IMPORTED),
        )

    def test_pendingNotUsed(self) -> None:
        """A pending version is not used: the old key stays."""
        self.successResultOf(self.versions.begin([self.new]))
        self.assertEqual(self.psk(), [(1, STORED_PSK.reveal())])

    def test_activateSwitches(self) -> None:
        """Once activated the derived version is used and the imported one is retired."""
        self.successResultOf(self.versions.begin([self.new]))
        self.successResultOf(self.versions.activate(ICCID, KeyFamily.PSK, 0x41, 9.0))
        derived = derive_card_key_v2(
            MASTER, ICCID, KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x41
        )
        self.assertEqual(self.psk(), [(0x41, derived.reveal())])
        states = {
            (v.kvn, v.state, v.source) for v in self.successResultOf(self.versions.versions(ICCID))
        }
        self.assertEqual(
            states,
            {
                (0x40, KeyState.RETIRED, KeySource.IMPORTED),
                (0x41, KeyState.ACTIVE, KeySource.DERIVED),
            },
        )

    def test_abandonKeepsOld(self) -> None:
        """A failed rotation retires the pending version; the old key stays active."""
        self.successResultOf(self.versions.begin([self.new]))
        self.assertEqual(
            self.successResultOf(self.versions.abandon(ICCID, KeyFamily.PSK, 0x41, 9.0)), 1
        )
        self.assertEqual(self.psk(), [(1, STORED_PSK.reveal())])
        self.failureResultOf(self.versions.activate(ICCID, KeyFamily.PSK, 0x41, 10.0), StoreError)

    def test_onePendingPerFamily(self) -> None:
        self.successResultOf(self.versions.begin([self.new]))
        other = KeyVersion(ICCID, KeyPurpose.PSK, 0x42, "pending", "derived", "aes-128")
        failure = self.failureResultOf(self.versions.begin([other]), StoreConflictError)
        self.assertIn("pending already", str(failure.value))

    def test_readCardsAsOneByOne(self) -> None:
        """C{read_cards} gives each card the keys C{get_card_keys} gives it
        (lifecycle applied), and leaves out cards the store does not have."""
        other = "8988211000000000026"
        sealed = (seal_card_key(ROOT, other, KeyPurpose.PSK, 1, "psk", Secret(b"\x22" * 16)),)
        self.successResultOf(self.store.upsert_cards([CardUpsert(iccid=other, keys=sealed)]))
        self.successResultOf(self.versions.begin([self.new]))
        self.successResultOf(self.versions.activate(ICCID, KeyFamily.PSK, 0x41, 9.0))
        found = self.successResultOf(self.source.read_cards([ICCID, "8988211000000000034", other]))
        self.assertEqual(sorted(found), sorted([ICCID, other]))
        for iccid in (ICCID, other):
            card, keys = found[iccid]
            self.assertEqual(card.iccid, iccid)
            alone = self.successResultOf(self.source.get_card_keys(iccid))
            self.assertEqual(opened(keys), opened(alone))
        self.assertEqual(psk_of(self.source, found[other][1]), [(1, b"\x22" * 16)])
        self.assertEqual(len(psk_of(self.source, found[ICCID][1])), 1)

    def test_listAll(self) -> None:
        listed = self.successResultOf(self.versions.list_versions())
        self.assertEqual([v.iccid for v in listed], [ICCID])


class LifecycleTests(LifecycleMixin, SynchronousTestCase):
    """The lifecycle on SQLite (in memory)."""

    def make_store(self) -> Any:
        return open_inline("sqlite://", self)
