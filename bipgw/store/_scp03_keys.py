# -*- test-case-name: tests.unit.store.test_scp03_keys -*-
"""Where the secure-channel relay gets a card's SCP03 keys: the store, or a master.

L{bipgw.core.SecuredRelay} needs the ISD's static keys of the card it
talks to (L{bipgw.core.IScp03KeySource}).  They come, in this order, from:

  1. the application database: the card's sealed C{SCP03_ENC}/C{SCP03_MAC}/
     C{SCP03_DEK} keys of one key set (imported from the vendor file's
     C{SCP03_*<n>} columns, key version I{n}), opened with the root key;
  2. when the card has no complete set there and SCP03 master keys are
     configured, diversification from them (L{bipgw.keys.Scp03MasterKeys},
     C{docs/keys.md} section 5: one master per purpose, the ICCID as
     context), which is how the simulated fleet personalises its cards.

The keys are read when a channel opens, not cached: opening a channel is
rare next to pushes and PSK lookups, and a key rotated in the store is then
used at once.  Keys exist only as L{bipgw.keys.Secret} until the codec's
L{StaticKeys} (whose repr hides them too) is built; errors name labels.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from bipgw.codec.scp03 import StaticKeys
from bipgw.keys import (
    IRootKeys,
    KeyManagementError,
    Scp03MasterKeys,
    UnknownKeyError,
    normalise_iccid,
)
from bipgw.store._interfaces import IStore
from bipgw.store._sealing import open_card_key
from bipgw.store._types import CardKeys, KeyPurpose, UnknownRecordError

__all__ = ["StoreScp03KeySource"]

_SET = (KeyPurpose.SCP03_ENC, KeyPurpose.SCP03_MAC, KeyPurpose.SCP03_DEK)


class StoreScp03KeySource:
    """The store's L{bipgw.core.IScp03KeySource}, with a master fallback.

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
        root: IRootKeys,
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
