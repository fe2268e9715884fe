# -*- test-case-name: tests.unit.store.test_card_key_source -*-
"""The card keys the gateway uses: stored ones, filtered by their lifecycle, and derived ones.

Every part that needs a card's keys (the key cache behind the SCP81 PSK
lookup and the push builder, the SCP03 relay) reads them here
(L{CardKeySource}), not from the store directly.  For one card:

  1. its sealed keys in the store (L{bipgw.store.IStore.get_card_keys}),
     without the versions whose lifecycle row says C{pending} or C{retired}
     (L{bipgw.store.KeyVersion});
  2. the versions its lifecycle says are C{active} and C{derived}: derived
     again from the master keys (nothing of them is stored);
  3. the keys the configuration wants derived (L{DerivedKeySpec}): a
     service with C{derived_keys = true} has the keys it uses derived,
     replacing what the store holds for that version (C{forced}); and a
     card whose vendor file omitted a key gets it derived from the master
     for that purpose and version, when there is one (not forced).  A
     family the card's keys were rotated for keeps its rotated version.

Derived keys are sealed in memory only (the consumers open L{CardKey}s);
they are never written anywhere.  Keys are read when asked for, so a
rotation or an import is seen at the next read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.python.failure import Failure

from bipgw.codec.scp03 import StaticKeys
from bipgw.keys import (
    IRootKeys,
    KdfPurpose,
    KeyAlgorithm,
    KeyManagementError,
    MasterKeyRing,
    Secret,
    UnknownKeyError,
    normalise_iccid,
)
from bipgw.store._card_key_versions import (
    KeyFamily,
    KeySource,
    KeyState,
    KeyVersion,
    SqlCardKeyVersions,
    card_kvn,
)
from bipgw.store._card_reads import MAX_CARDS, CardRead, read_cards
from bipgw.store._interfaces import IStore
from bipgw.store._sealing import CardKeySealer, open_card_key
from bipgw.store._types import Card, CardKey, CardKeys, KeyPurpose, UnknownRecordError

__all__ = ["KDF_PURPOSE", "CardKeySource", "DerivedKeySpec", "ICardKeyReader", "kdf_algorithm"]


class ICardKeyReader(Protocol):
    """Where a part reads a card's keys (the store itself, or a L{CardKeySource})."""

    def get_card_keys(self, iccid: str) -> Deferred[CardKeys]:
        """Fire with the card's usable keys, sealed."""


KDF_PURPOSE: Final = {
    KeyPurpose.KIC: KdfPurpose.OTA_KIC,
    KeyPurpose.KID: KdfPurpose.OTA_KID,
    KeyPurpose.KIK: KdfPurpose.OTA_KIK,
    KeyPurpose.PSK: KdfPurpose.SCP81_PSK,
    KeyPurpose.SCP03_ENC: KdfPurpose.SCP03_ENC,
    KeyPurpose.SCP03_MAC: KdfPurpose.SCP03_MAC,
    KeyPurpose.SCP03_DEK: KdfPurpose.SCP03_DEK,
}
"""The diversification purpose of each stored key purpose."""

_SCP03: Final = KeyFamily.SCP03.purposes
_T = TypeVar("_T")


def kdf_algorithm(algorithm: str) -> KeyAlgorithm:
    """What a stored key's algorithm derives as: an SCP81 PSK (C{psk}) is 16 bytes, AES-128."""
    return KeyAlgorithm.AES_128 if algorithm == "psk" else KeyAlgorithm(algorithm)


def store_algorithm(purpose: KeyPurpose, algorithm: KeyAlgorithm) -> str:
    """How the store names the algorithm of a key of C{purpose}."""
    return "psk" if purpose is KeyPurpose.PSK else algorithm.value


@attrs.frozen
class DerivedKeySpec:
    """One key the configuration wants derived for every card.

    @ivar kvn: the key version on the card (OTA C{01}-, SCP03 C{30}-, PSK C{40}-).
    @ivar forced: derived even when the store has the key (a service with
        C{derived_keys}); otherwise only for cards that lack a key of that
        purpose (a vendor file that omitted it).
    """

    purpose: KeyPurpose = attrs.field(converter=KeyPurpose)
    kvn: int
    algorithm: KeyAlgorithm = attrs.field(converter=KeyAlgorithm)
    forced: bool = False


class CardKeySource:
    """A card's usable keys: stored, lifecycle-filtered, derived (module docstring).

    It is the key cache's key reader (L{get_card_keys}) and the SCP03
    relay's L{bipgw.core.IScp03KeySource} (L{keys_for}).

    @param store: where the sealed keys are.
    @param root: the root key (opening stored keys, sealing derived ones in memory).
    @param masters: the master keys to derive from; C{None}: none.
    @param versions: the card key lifecycle; C{None} (a memory store): every
        stored key is active.
    @param wanted: the keys the configuration wants derived.
    """

    def __init__(
        self,
        store: IStore,
        root: IRootKeys,
        *,
        masters: MasterKeyRing | None = None,
        versions: SqlCardKeyVersions | None = None,
        wanted: Sequence[DerivedKeySpec] = (),
    ) -> None:
        self._store = store
        self._root = root
        self._sealer = CardKeySealer(root)
        self.masters = masters if masters is not None else MasterKeyRing()
        self.versions = versions
        self._wanted = tuple(wanted)

    def __repr__(self) -> str:
        return f"<CardKeySource {len(self._wanted)} derived key specs, {self.masters!r}>"

    @property
    def root(self) -> IRootKeys:
        """The root key the source opens and seals card keys with."""
        return self._root

    def check(self) -> None:
        """Refuse a configuration that wants keys forced derived without a master.

        @raise UnknownKeyError: naming the master kind that is missing.
        """
        for spec in self._wanted:
            if spec.forced and self.masters.master_for(KDF_PURPOSE[spec.purpose], spec.kvn) is None:
                self.masters.require("0" * 19, KDF_PURPOSE[spec.purpose], spec.algorithm, spec.kvn)

    # -- readers --------------------------------------------------------------

    def get_card_keys(self, iccid: str) -> Deferred[CardKeys]:
        """Fire with the card's usable keys, sealed (derived ones in memory only)."""
        return self._read(iccid).addCallback(lambda both: self.resolve(iccid, *both))

    def read_cards(self, iccids: Sequence[str]) -> Deferred[dict[str, tuple[Card, CardKeys]]]:
        """Fire with the cards of C{iccids} the store has, each with its usable keys.

        On an SQL store the whole batch is one transaction (L{read_cards});
        on another store, each card is read as L{get_card_keys} reads it.
        """
        if self.versions is None:
            return self._read_each(iccids)
        batches = [iccids[i : i + MAX_CARDS] for i in range(0, len(iccids), MAX_CARDS)]
        reads: list[Deferred[dict[str, CardRead]]] = [
            self._store.transaction(partial(read_cards, iccids=batch), write=False)  # type: ignore[attr-defined]
            for batch in batches
        ]

        def resolved(found: list[dict[str, CardRead]]) -> dict[str, tuple[Card, CardKeys]]:
            out: dict[str, tuple[Card, CardKeys]] = {}
            for part in found:
                for iccid, (card, keys, rows) in part.items():
                    out[iccid] = (card, self.resolve(iccid, CardKeys(iccid, keys), rows))
            return out

        return _gathered(reads).addCallback(resolved)

    def card_versions(self, iccid: str) -> Deferred[list[KeyVersion]]:
        """Fire with the card's lifecycle rows and imported keys (metadata)."""
        if self.versions is None:
            return self._stored(iccid).addCallback(
                lambda keys: [
                    KeyVersion(
                        iccid,
                        k.purpose,
                        card_kvn(k.purpose, k.kvn),
                        KeyState.ACTIVE,
                        KeySource.IMPORTED,
                        k.algorithm,
                    )
                    for k in keys.keys
                ]
            )
        d: Deferred[list[KeyVersion]] = self.versions.versions(iccid)
        return d

    def keys_for(self, iccid: str) -> Deferred[StaticKeys]:
        """The card's active static SCP03 keys (L{bipgw.core.IScp03KeySource}).

        @return: fails with L{UnknownKeyError} when the card has no complete
            set, stored or derived.
        """
        try:
            iccid = normalise_iccid(iccid)
        except KeyManagementError as e:
            return Deferred.fromCoroutine(_raise(e))
        return self.get_card_keys(iccid).addCallback(self._static, iccid)

    def opened(self, key: CardKey) -> Secret:
        """The key a L{CardKey} of this source holds."""
        return open_card_key(self._root, key)

    # -- the rule -------------------------------------------------------------

    def resolve(self, iccid: str, stored: CardKeys, rows: Iterable[KeyVersion]) -> CardKeys:
        """The usable keys of a card from its stored keys and lifecycle rows."""
        rows = list(rows)
        state = {(v.purpose, v.kvn): v for v in rows}
        keys: list[CardKey] = []
        for key in stored.keys:
            version = state.get((key.purpose, card_kvn(key.purpose, key.kvn)))
            if version is None or version.state is KeyState.ACTIVE:
                keys.append(key)
        held = {(k.purpose, card_kvn(k.purpose, k.kvn)) for k in keys}
        for version in rows:
            if (
                version.state is KeyState.ACTIVE
                and version.source is KeySource.DERIVED
                and (version.purpose, version.kvn) not in held
            ):
                derived = self._derive(
                    iccid, version.purpose, version.kvn, kdf_algorithm(version.algorithm)
                )
                if derived is not None:
                    keys.append(derived)
        rotated = {
            v.family
            for v in rows
            if v.state is KeyState.ACTIVE and v.source is not KeySource.IMPORTED
        }
        for spec in self._wanted:
            if KeyFamily.of(spec.purpose) in rotated:
                continue
            same = [k for k in keys if k.purpose is spec.purpose]
            if spec.forced:
                keys = [
                    k
                    for k in keys
                    if not (k.purpose is spec.purpose and card_kvn(k.purpose, k.kvn) == spec.kvn)
                ]
            elif same:
                continue
            derived = self._derive(iccid, spec.purpose, spec.kvn, spec.algorithm)
            if derived is not None:
                keys.append(derived)
        return CardKeys(stored.iccid or iccid, tuple(keys))

    # -- internals ------------------------------------------------------------

    def _derive(
        self, iccid: str, purpose: KeyPurpose, kvn: int, algorithm: KeyAlgorithm
    ) -> CardKey | None:
        secret = self.masters.derive(iccid, KDF_PURPOSE[purpose], algorithm, kvn)
        if secret is None:
            return None
        return self._sealer.seal(iccid, purpose, kvn, store_algorithm(purpose, algorithm), secret)

    def _stored(self, iccid: str) -> Deferred[CardKeys]:
        d: Deferred[CardKeys] = self._store.get_card_keys(iccid)

        def unknown(failure: Failure) -> CardKeys:
            failure.trap(UnknownRecordError)
            return CardKeys(iccid)

        return d.addErrback(unknown)

    def _read_each(self, iccids: Sequence[str]) -> Deferred[dict[str, tuple[Card, CardKeys]]]:
        out: dict[str, tuple[Card, CardKeys]] = {}

        def one(iccid: str) -> Deferred[None]:
            def card_read(card: Card | None) -> Deferred[None] | None:
                if card is None:
                    return None

                def keys_read(keys: CardKeys) -> None:
                    out[iccid] = (card, keys)

                return self.get_card_keys(iccid).addCallback(keys_read)

            return self._store.get_card(iccid).addCallback(card_read)

        return _gathered([one(i) for i in iccids]).addCallback(lambda _: out)

    def _read(self, iccid: str) -> Deferred[tuple[CardKeys, list[KeyVersion]]]:
        rows: Deferred[Any] = (
            succeed([]) if self.versions is None else self.versions.versions(iccid)
        )
        both: Deferred[Any] = gatherResults([self._stored(iccid), rows], consumeErrors=True)

        def unwrap(failure: Failure) -> Failure:
            inner = getattr(failure.value, "subFailure", None)
            return inner if isinstance(inner, Failure) else failure

        return both.addCallbacks(lambda r: (r[0], [v for v in r[1] if v.iccid == iccid]), unwrap)

    def _static(self, keys: CardKeys, iccid: str) -> StaticKeys:
        versions = sorted(
            {card_kvn(k.purpose, k.kvn) for k in keys.keys if k.purpose is KeyPurpose.SCP03_ENC}
        )
        for kvn in versions:
            found = {
                k.purpose: k
                for k in keys.keys
                if k.purpose in _SCP03 and card_kvn(k.purpose, k.kvn) == kvn
            }
            if len(found) == len(_SCP03):
                enc, mac, dek = (self.opened(found[p]).reveal() for p in _SCP03)
                return StaticKeys(enc, mac, dek)
        raise UnknownKeyError(
            f"card {iccid} has no complete SCP03 key set, stored or derived from master keys"
        )


def _gathered(reads: list[Deferred[_T]]) -> Deferred[list[_T]]:
    """C{gatherResults} that fails with the first read's own failure."""

    def unwrap(failure: Failure) -> Failure:
        inner = getattr(failure.value, "subFailure", None)
        return inner if isinstance(inner, Failure) else failure

    both: Deferred[list[_T]] = gatherResults(reads, consumeErrors=True)
    return both.addErrback(unwrap)


async def _raise(error: Exception) -> Any:
    raise error
