# -*- test-case-name: tests.unit.core.test_secured -*-
"""Where the secure-channel relay gets a card's SCP03 keys: the store, or a master.

L{bipgw.core.SecuredRelay} needs the ISD's static keys of the card it
talks to (L{bipgw.core.IScp03KeySource}).  They come, in this order, from:

  1. the application database: the card's sealed C{SCP03_ENC}/C{SCP03_MAC}/
     C{SCP03_DEK} keys of one key set (imported from the vendor file's
     C{SCP03_*<n>} columns, key version I{n}), opened with the root key;
  2. when the card has no complete set there and SCP03 master keys are
     configured, diversification from them (C{docs/keys.md} section 5: one
     master per purpose, the ICCID as context), which is how the simulated
     fleet personalises its cards.

The keys are read when a channel opens, not cached: opening a channel is
rare next to pushes and PSK lookups, and a key rotated in the store is then
used at once.  Keys exist only as L{bipgw.keys.Secret} until the codec's
L{StaticKeys} (whose repr hides them too) is built; errors name labels.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from bipgw.codec.scp03 import StaticKeys
from bipgw.keys import (
    KdfPurpose,
    KeyAlgorithm,
    KeyKind,
    KeyManagementError,
    KeyStore,
    RootKey,
    Secret,
    UnknownKeyError,
    derive_card_key,
    normalise_iccid,
)
from bipgw.store import CardKeys, IStore, KeyPurpose, UnknownRecordError, open_card_key

__all__ = ["Scp03MasterKeys", "StoreScp03KeySource"]

_AES = (KeyAlgorithm.AES_128, KeyAlgorithm.AES_192, KeyAlgorithm.AES_256)
_KINDS = (KeyKind.MASTER_SCP03_ENC, KeyKind.MASTER_SCP03_MAC, KeyKind.MASTER_SCP03_DEK)
_SET = (KeyPurpose.SCP03_ENC, KeyPurpose.SCP03_MAC, KeyPurpose.SCP03_DEK)


def _aes_only(_: object, __: object, value: KeyAlgorithm) -> None:
    if value not in _AES:
        raise ValueError(f"SCP03 keys are AES keys, not {value.value}")


@attrs.frozen
class Scp03MasterKeys:
    """The master keys cards' SCP03 keys are diversified from, one per purpose.

    @ivar algorithm: what the card keys are: AES-128 by default, as the
        simulated fleet derives them.
    """

    enc: Secret
    mac: Secret
    dek: Secret
    algorithm: KeyAlgorithm = attrs.field(default=KeyAlgorithm.AES_128, validator=_aes_only)

    def derive(self, iccid: str) -> StaticKeys:
        """The card C{iccid}'s static key set.

        @raise bipgw.keys.InvalidIccidError: C{iccid} is not an ICCID.
        """
        algorithm = self.algorithm

        def one(master: Secret, purpose: KdfPurpose) -> bytes:
            return derive_card_key(master, iccid, purpose, algorithm).reveal()

        return StaticKeys(
            one(self.enc, KdfPurpose.SCP03_ENC),
            one(self.mac, KdfPurpose.SCP03_MAC),
            one(self.dek, KdfPurpose.SCP03_DEK),
        )

    @classmethod
    def from_keystore(
        cls,
        keystore: KeyStore,
        *,
        kvn: int | None = None,
        algorithm: KeyAlgorithm = KeyAlgorithm.AES_128,
    ) -> Scp03MasterKeys:
        """The keystore's C{master-scp03-enc/mac/dek} keys.

        @param kvn: take the keys whose C{kvn} metadata is this; needed only
            when the keystore holds more than one key of a kind.
        @param algorithm: what the card keys are.  Not read from the
            entries' C{algorithm} metadata, which C{bipgw keys
            generate-master} sets from the master's own length: a 32-byte
            master still diversifies the fleet's AES-128 card keys.
        @raise bipgw.keys.UnknownKeyError: a kind has no key (of that version).
        @raise bipgw.keys.KeyManagementError: a kind has several and C{kvn}
            does not choose one.
        @raise ValueError: C{algorithm} is not AES.
        """
        enc, mac, dek = (keystore.get(_one_label(keystore, kind, kvn)) for kind in _KINDS)
        return cls(enc, mac, dek, algorithm)


def _one_label(keystore: KeyStore, kind: KeyKind, kvn: int | None) -> str:
    labels = keystore.labels(kind)
    if kvn is not None:
        labels = [label for label in labels if keystore.info(label).meta.get("kvn") == kvn]
    version = "" if kvn is None else f" for key version {kvn}"
    if not labels:
        raise UnknownKeyError(f"the keystore has no {kind.value} key{version}")
    if len(labels) > 1:
        raise KeyManagementError(
            f"the keystore has {len(labels)} {kind.value} keys{version}"
            f" ({', '.join(labels)}); say which key version to use"
        )
    return labels[0]


class StoreScp03KeySource:
    """An L{bipgw.core.IScp03KeySource} over the store, with a master fallback.

    @param store: where the cards' sealed keys are.
    @param root: the gateway root key that opens them.
    @param masters: diversify keys for cards the store has no complete set
        for; C{None} refuses such cards.
    @param key_set: the stored key version to use; C{None} takes the lowest
        complete set (the vendor's set 1, the card's default).
    """

    def __init__(
        self,
        store: IStore,
        root: RootKey,
        *,
        masters: Scp03MasterKeys | None = None,
        key_set: int | None = None,
    ) -> None:
        self._store = store
        self._root = root
        self._masters = masters
        self._key_set = key_set

    def __repr__(self) -> str:
        fallback = "with" if self._masters is not None else "without"
        return f"<StoreScp03KeySource {fallback} master keys>"

    def keys_for(self, iccid: str) -> Deferred[StaticKeys]:
        """The card's static SCP03 keys, from the store or diversified.

        @return: fails with L{bipgw.keys.UnknownKeyError} when neither has
            them, L{bipgw.keys.IntegrityError} when a stored key does not
            open, or the store's error.
        """
        try:
            iccid = normalise_iccid(iccid)
        except KeyManagementError as e:
            return fail(e)
        d = self._store.get_card_keys(iccid)
        d.addErrback(self._unknown_card, iccid)
        return d.addCallback(self._from_keys, iccid)

    def _unknown_card(self, failure: Failure, iccid: str) -> None:
        failure.trap(UnknownRecordError)
        return None

    def _from_keys(self, keys: CardKeys | None, iccid: str) -> StaticKeys:
        stored = () if keys is None else keys.keys
        versions = sorted(
            {key.kvn for key in stored if key.purpose is KeyPurpose.SCP03_ENC}
            if self._key_set is None
            else {self._key_set}
        )
        for kvn in versions:
            found = [key for key in stored if key.kvn == kvn and key.purpose in _SET]
            if len(found) == len(_SET):
                by_purpose = {key.purpose: key for key in found}
                enc, mac, dek = (open_card_key(self._root, by_purpose[p]).reveal() for p in _SET)
                return StaticKeys(enc, mac, dek)
        if self._masters is not None:
            return self._masters.derive(iccid)
        where = "is not in the store" if keys is None else "has no complete SCP03 key set"
        wanted = "" if self._key_set is None or keys is None else f" of key version {self._key_set}"
        raise UnknownKeyError(
            f"card {iccid} {where}{wanted}, and no SCP03 master keys are configured"
        )
