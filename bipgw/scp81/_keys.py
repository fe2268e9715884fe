# -*- test-case-name: tests.unit.scp81.test_keys -*-
"""The card keys the running gateway needs at once, opened and held in memory.

Two hot paths need a card's keys and cannot wait for the database:

  - the SCP81 listener's PSK lookup runs I{inside} the TLS handshake, as a
    synchronous OpenSSL callback, so identity -> key must be a dictionary
    lookup (L{CardKeyCache.psk_for}, L{CardKeyCache.iccid_for});
  - every push secures its SMS with the card's OTA keys
    (L{CardKeyCache.ota_keys}, the push builder's C{keys_for}).

The store keeps these keys only sealed under the root key.  The cache holds
the keys of the cards in use, opened, as L{bipgw.keys.Secret}s (whose text
forms never show the bytes, so no log line, repr or error can leak one), in
a bounded least-recently-used table: start-up reads no key at all, and
memory does not grow with the number of cards in the database.

Keys are read on demand:

  - a push reads its card's keys before it is sent (L{ota_keys}), so the
    card's PSK is held when the card connects in answer;
  - an identity the cache does not hold (an unsolicited card, or a card
    whose keys were evicted or forgotten) is refused in this handshake (the
    callback cannot wait) and looked up in the background, so the card's
    next connection succeeds (L{psk_for}); an identity the store does not
    know is not looked up again for L{_MISS_RETRY} seconds (a bounded
    negative cache, so a handshake flood costs at most one query per
    identity and interval);
  - the gateway's own imports, and a cluster's invalidation messages,
    re-read the cards they name (L{load_cards}) or every card held
    (L{refresh}).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import attrs
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.codec.ota import OtaKeys
from bipgw.keys import IRootKeys, KeyManagementError, Secret, psk_identity_for
from bipgw.store import (
    Card,
    CardKey,
    CardKeys,
    GroupCommit,
    ICardKeyReader,
    IStore,
    KeyPurpose,
    open_card_key,
)

__all__ = ["CacheStats", "CardKeyCache"]

DEFAULT_CAPACITY: Final = 100_000
"""Cards whose keys are held at once by default (a few hundred bytes each)."""
_MISS_RETRY: Final = 30.0
"""Seconds before an identity the store did not know is looked up again."""
_BATCH: Final = 500
"""Cards read at once at most (one store transaction, L{bipgw.store.CardKeySource.read_cards})."""
_MAX_LOOKUPS: Final = 4096
"""Background identity lookups remembered at once (a handshake flood cannot grow it)."""


@attrs.frozen
class CacheStats:
    """What the cache holds and what went wrong filling it.

    @ivar cards: cards with at least one usable key.
    @ivar psks: cards whose SCP81 PSK is known (they can connect).
    @ivar unopened: sealed keys that did not open (altered, or sealed under
        another root key); they are logged by label and skipped.
    """

    cards: int
    psks: int
    unopened: int


class _Entry:
    """One card's opened keys (memory matters: thousands of cards)."""

    __slots__ = ("iccid", "identity", "ota", "psk")

    def __init__(
        self, iccid: str, identity: bytes, psk: Secret | None, ota: dict[int, OtaKeys]
    ) -> None:
        self.iccid = iccid
        self.identity = identity
        self.psk = psk
        self.ota = ota


class CardKeyCache:
    """The opened PSK identity, PSK and OTA key sets of the cards in use,
    by identity and ICCID, at most C{capacity} cards (least recently used
    first out).

    @param store: where the sealed keys are.
    @param root: the gateway root key that opens them.
    @param clock: times the background lookups of unknown identities.
    @param concurrency: store reads in flight at once while refreshing.
    @param capacity: cards held at once; past it, the card used least
        recently is dropped (its next push, or its next handshake after a
        refused one, reads it again).
    @param keys: where a card's keys are read (C{get_card_keys}), e.g. a
        L{bipgw.store.CardKeySource} that filters them by lifecycle and
        derives missing ones; C{None}: the store itself.
    @ivar misses: handshakes whose identity was not held (refused, and
        looked up in the background).
    """

    _log = Logger()

    def __init__(
        self,
        store: IStore,
        root: IRootKeys,
        clock: IReactorTime,
        *,
        concurrency: int = 8,
        capacity: int = DEFAULT_CAPACITY,
        keys: ICardKeyReader | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity!r}")
        self.capacity = capacity
        self._store = store
        # Where a card's keys are read: a CardKeySource filters them by
        # lifecycle and derives the missing ones; else the store itself.
        self._keys_of = (keys if keys is not None else store).get_card_keys
        # A reader that reads many cards at once (a CardKeySource): cards
        # are read in batches, at most one batch in flight.
        self._read_many: Callable[[Sequence[str]], Any] | None = getattr(keys, "read_cards", None)
        self._batches: GroupCommit[str, None] | None = None
        if self._read_many is not None:
            self._batches = GroupCommit(self._read_batch, limit=_BATCH)
        self._root = root
        self._clock = clock
        self._limit = DeferredSemaphore(concurrency)
        self._by_identity: dict[bytes, _Entry] = {}
        self._by_iccid: OrderedDict[str, _Entry] = OrderedDict()
        self._unopened = 0
        self._lookups: dict[bytes, float] = {}
        self.misses = 0

    # -- the hot paths -------------------------------------------------------

    def psk_for(self, identity: bytes) -> bytes | None:
        """The PSK of the card presenting C{identity}, or C{None} (synchronous).

        An identity not held is looked up in the store in the background,
        so that card's next handshake succeeds.
        """
        entry = self._by_identity.get(identity)
        if entry is None:
            self.misses += 1
            self._look_up(identity)
            return None
        self._by_iccid.move_to_end(entry.iccid)
        return None if entry.psk is None else entry.psk.reveal()

    def iccid_for(self, identity: bytes) -> str | None:
        """The ICCID of the card whose PSK identity is C{identity}, or C{None}."""
        entry = self._by_identity.get(identity)
        return None if entry is None else entry.iccid

    def ota_keys(self, iccid: str, kvn: int) -> Deferred[OtaKeys | None]:
        """The card's OTA key set C{kvn} (KIc and KID), C{None} if it has none.

        A card not held is read from the store first, with its PSK: this is
        how a card's keys arrive before the card answers its push.
        """
        entry = self._by_iccid.get(iccid)
        if entry is not None:
            self._by_iccid.move_to_end(iccid)
            return succeed(entry.ota.get(kvn))

        def loaded(_: object) -> OtaKeys | None:
            found = self._by_iccid.get(iccid)
            return None if found is None else found.ota.get(kvn)

        return self.load_cards([iccid]).addCallback(loaded)

    def ota_keys_for(self, iccid: str, kvn: int) -> OtaKeys | Deferred[OtaKeys | None] | None:
        """As L{ota_keys}, but the answer itself when the card is held (the
        push builder's C{keys_for}: no Deferred per push for keys in memory)."""
        entry = self._by_iccid.get(iccid)
        if entry is not None:
            self._by_iccid.move_to_end(iccid)
            return entry.ota.get(kvn)
        return self.ota_keys(iccid, kvn)

    # -- filling -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_iccid)

    def __contains__(self, iccid: object) -> bool:
        return iccid in self._by_iccid

    def __repr__(self) -> str:
        return f"<CardKeyCache {len(self._by_iccid)} cards>"

    @property
    def stats(self) -> CacheStats:
        """What the cache holds now."""
        psks = sum(1 for e in self._by_iccid.values() if e.psk is not None)
        return CacheStats(len(self._by_iccid), psks, self._unopened)

    def refresh(self) -> Deferred[CacheStats]:
        """Re-read every card held (keys imported again or rotated), and let
        identities the store did not know be looked up again at once.

        Lookups keep answering from the old keys of each card until its new
        ones are read.
        """
        self._lookups.clear()
        return self.load_cards(list(self._by_iccid)).addCallback(lambda _: self.stats)

    load = refresh

    def load_cards(self, iccids: Iterable[str]) -> Deferred[int]:
        """(Re)read these cards' keys, e.g. after an import; fires with how many
        cards are held afterwards among them.  A card the store does not have
        is dropped from the cache."""
        wanted = list(dict.fromkeys(iccids))
        reads: list[Deferred[Any]]
        if self._batches is not None:
            # One read for the whole burst (issue 14): cards asked for
            # while a read runs go together in the next.
            reads = self._batches.submit_many(wanted)
        else:

            def one(iccid: str) -> Deferred[None]:
                d: Deferred[Any] = maybeDeferred(self._store.get_card, iccid)
                d.addCallback(self._card_read, iccid)
                return d

            reads = [self._limit.run(one, iccid) for iccid in wanted]
        done: Deferred[Any] = DeferredList(reads, consumeErrors=True)
        return done.addCallback(
            lambda results: self._log_failures(results, "reading card keys")
        ).addCallback(lambda _: sum(1 for i in wanted if i in self._by_iccid))

    def forget(self, iccid: str) -> None:
        """Drop a card's keys (it was deleted, or its keys revoked or changed
        on another node: its next use reads them again)."""
        entry = self._by_iccid.pop(iccid, None)
        if entry is not None and self._by_identity.get(entry.identity) is entry:
            del self._by_identity[entry.identity]

    def forget_all(self) -> None:
        """Drop every card's keys, and every identity remembered as unknown."""
        self._by_iccid.clear()
        self._by_identity.clear()
        self._lookups.clear()

    # -- internals -----------------------------------------------------------

    def _card_read(self, card: Card | None, iccid: str) -> Deferred[None] | None:
        if card is None:
            self.forget(iccid)
            return None

        return self._keys_of(card.iccid).addCallback(lambda keys: self._keys_read(card, keys))

    def _read_batch(self, iccids: Sequence[str]) -> Deferred[list[Exception | None]]:
        read_many = self._read_many
        assert read_many is not None
        d: Deferred[dict[str, tuple[Card, CardKeys]]] = maybeDeferred(read_many, iccids)

        def read(found: dict[str, tuple[Card, CardKeys]]) -> list[Exception | None]:
            outcomes: list[Exception | None] = []
            for iccid in iccids:
                both = found.get(iccid)
                if both is None:
                    self.forget(iccid)
                else:
                    self._keys_read(*both)
                outcomes.append(None)
            return outcomes

        return d.addCallback(read)

    def _keys_read(self, card: Card, keys: CardKeys) -> None:
        entry, bad = self._entry(card, keys)
        self._unopened += bad
        self.forget(card.iccid)
        if entry is not None:
            self._put(entry)

    def _put(self, entry: _Entry) -> None:
        self._by_iccid[entry.iccid] = entry
        while len(self._by_iccid) > self.capacity:
            _, evicted = self._by_iccid.popitem(last=False)
            if self._by_identity.get(evicted.identity) is evicted:
                del self._by_identity[evicted.identity]
        old = self._by_identity.get(entry.identity)
        if old is not None and old.iccid != entry.iccid:
            self._log.warn(
                "PSK identity of card {iccid} was card {other}'s; it is now {iccid}'s",
                iccid=entry.iccid,
                other=old.iccid,
            )
        self._by_identity[entry.identity] = entry

    def _entry(self, card: Card, keys: CardKeys) -> tuple[_Entry | None, int]:
        """The opened keys of C{card}, and how many of its keys did not open."""
        opened: dict[tuple[KeyPurpose, int], Secret] = {}
        bad = 0
        for key in keys.keys:
            if key.purpose not in (KeyPurpose.KIC, KeyPurpose.KID, KeyPurpose.PSK):
                continue
            secret = self._open(key)
            if secret is None:
                bad += 1
            else:
                opened[(key.purpose, key.kvn)] = secret
        psk_versions = sorted(kvn for purpose, kvn in opened if purpose is KeyPurpose.PSK)
        # One identity, one key: the card's PSK with the lowest key version
        # (vendor files number them PSK1, PSK2 ...; cards use the first).
        psk = opened[(KeyPurpose.PSK, psk_versions[0])] if psk_versions else None
        ota: dict[int, OtaKeys] = {}
        for kvn in {kvn for purpose, kvn in opened if purpose is not KeyPurpose.PSK}:
            kic = opened.get((KeyPurpose.KIC, kvn))
            kid = opened.get((KeyPurpose.KID, kvn))
            ota[kvn] = OtaKeys(
                kic_key=kic.reveal() if kic is not None else b"",
                kid_key=kid.reveal() if kid is not None else b"",
            )
        if psk is None and not ota:
            return None, bad
        identity = card.psk_identity or psk_identity_for(card.iccid)
        return _Entry(card.iccid, identity, psk, ota), bad

    def _open(self, key: CardKey) -> Secret | None:
        try:
            return open_card_key(self._root, key)
        except KeyManagementError as e:
            # The message names the label, never the key.
            self._log.error("card key {label} does not open: {error}", label=key.label, error=e)
            return None

    def _look_up(self, identity: bytes) -> None:
        now = self._clock.seconds()
        last = self._lookups.get(identity)
        if last is not None and now - last < _MISS_RETRY:
            return
        if len(self._lookups) >= _MAX_LOOKUPS:
            self._lookups = {i: t for i, t in self._lookups.items() if now - t < _MISS_RETRY}
            if len(self._lookups) >= _MAX_LOOKUPS:
                return
        self._lookups[identity] = now

        def found(card: Card | None) -> Deferred[int] | None:
            if card is None:
                return None
            self._log.info(
                "card {iccid} connected before its keys were cached; loading them",
                iccid=card.iccid,
            )
            return self.load_cards([card.iccid])

        d: Deferred[Any] = maybeDeferred(self._store.card_by_psk_identity, identity)
        d.addCallback(found)
        d.addErrback(lambda f: self._log.failure("looking up a PSK identity failed", f))

    def _log_failures(self, results: Sequence[tuple[bool, Any]], what: str) -> None:
        for ok, value in results:
            if not ok:
                self._log.failure("{what} failed", value, what=what)
