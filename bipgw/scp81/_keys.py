# -*- test-case-name: tests.unit.scp81.test_keys -*-
"""The card keys the running gateway needs at once, opened and held in memory.

Two hot paths need a card's keys and cannot wait for the database:

  - the SCP81 listener's PSK lookup runs I{inside} the TLS handshake, as a
    synchronous OpenSSL callback, so identity -> key must be a dictionary
    lookup (L{CardKeyCache.psk_for}, L{CardKeyCache.iccid_for});
  - every push secures its SMS with the card's OTA keys
    (L{CardKeyCache.ota_keys}, the push builder's C{keys_for}).

The store keeps these keys only sealed under the root key.  The cache
reads every card's sealed keys once at start-up (L{CardKeyCache.load}),
opens them with the root key and keeps them as L{bipgw.keys.Secret}s, whose
text forms never show the bytes, so no log line, repr or error can leak one.

Cards imported while the gateway runs reach the cache three ways: the
gateway's own import methods refresh the imported cards
(L{CardKeyCache.load_cards}); a push for a card the cache does not know
loads it from the store first (L{ota_keys}); and an unknown PSK identity in
a handshake (which must be refused at once) starts a background lookup, so
the card's next connection succeeds (L{psk_for}).  L{refresh} reloads
everything, e.g. after keys were rotated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
from twisted.python.failure import Failure

from bipgw.codec.ota import OtaKeys
from bipgw.keys import IRootKeys, KeyManagementError, Secret, psk_identity_for
from bipgw.store import (
    Card,
    CardKey,
    CardKeys,
    ICardKeyReader,
    IStore,
    KeyPurpose,
    open_card_key,
)

__all__ = ["CacheStats", "CardKeyCache"]

_PAGE: Final = 500
"""Cards read per C{list_cards} page during a full load."""
_MISS_RETRY: Final = 30.0
"""Seconds before an identity the store did not know is looked up again."""
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
    """Every card's PSK identity, PSK and OTA key sets, opened, by identity and ICCID.

    @param store: where the sealed keys are.
    @param root: the gateway root key that opens them.
    @param clock: times the background lookups of unknown identities.
    @param concurrency: store reads in flight at once while loading.
    @param page_size: cards read per C{list_cards} page while loading.
    @param keys: where a card's keys are read (C{get_card_keys}), e.g. a
        L{bipgw.store.CardKeySource} that filters them by lifecycle and
        derives missing ones; C{None}: the store itself.
    """

    _log = Logger()

    def __init__(
        self,
        store: IStore,
        root: IRootKeys,
        clock: IReactorTime,
        *,
        concurrency: int = 8,
        page_size: int = _PAGE,
        keys: ICardKeyReader | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size!r}")
        self._page = page_size
        self._store = store
        reader: ICardKeyReader = keys if keys is not None else store
        self._keys_of = reader.get_card_keys
        self._root = root
        self._clock = clock
        self._limit = DeferredSemaphore(concurrency)
        self._by_identity: dict[bytes, _Entry] = {}
        self._by_iccid: dict[str, _Entry] = {}
        self._unopened = 0
        self._waiters: list[Deferred[CacheStats]] | None = None
        self._touched: set[str] = set()
        self._lookups: dict[bytes, float] = {}

    # -- the hot paths -------------------------------------------------------

    def psk_for(self, identity: bytes) -> bytes | None:
        """The PSK of the card presenting C{identity}, or C{None} (synchronous).

        An unknown identity is looked up in the store in the background, so
        a card imported after the last load can connect on its next try.
        """
        entry = self._by_identity.get(identity)
        if entry is None or entry.psk is None:
            if entry is None:
                self._look_up(identity)
            return None
        return entry.psk.reveal()

    def iccid_for(self, identity: bytes) -> str | None:
        """The ICCID of the card whose PSK identity is C{identity}, or C{None}."""
        entry = self._by_identity.get(identity)
        return None if entry is None else entry.iccid

    def ota_keys(self, iccid: str, kvn: int) -> Deferred[OtaKeys | None]:
        """The card's OTA key set C{kvn} (KIc and KID), C{None} if it has none.

        A card the cache does not know is read from the store first.
        """
        entry = self._by_iccid.get(iccid)
        if entry is not None:
            return succeed(entry.ota.get(kvn))

        def loaded(_: object) -> OtaKeys | None:
            found = self._by_iccid.get(iccid)
            return None if found is None else found.ota.get(kvn)

        return self.load_cards([iccid]).addCallback(loaded)

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

    def load(self) -> Deferred[CacheStats]:
        """Read every card's keys from the store, replacing what is held.

        Lookups keep answering from the previous contents until the new ones
        are complete, then switch at once.  Concurrent calls share one load.
        """
        waiter: Deferred[CacheStats] = Deferred()
        if self._waiters is not None:
            self._waiters.append(waiter)
            return waiter
        self._waiters = [waiter]
        self._touched = set()
        self._load_all().addBoth(self._loaded)
        return waiter

    refresh = load

    def load_cards(self, iccids: Iterable[str]) -> Deferred[int]:
        """(Re)read these cards' keys, e.g. after an import; fires with how many
        cards are held afterwards among them.  A card the store does not have
        is dropped from the cache."""
        wanted = list(dict.fromkeys(iccids))

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
        """Drop a card's keys (it was deleted, or its keys revoked)."""
        entry = self._by_iccid.pop(iccid, None)
        if entry is not None and self._by_identity.get(entry.identity) is entry:
            del self._by_identity[entry.identity]

    # -- internals -----------------------------------------------------------

    def _load_all(self) -> Deferred[CacheStats]:
        by_iccid: dict[str, _Entry] = {}
        counts = {"unopened": 0}

        def page(after: str | None) -> Deferred[CacheStats]:
            d: Deferred[Any] = maybeDeferred(self._store.list_cards, after=after, limit=self._page)
            d.addCallback(read_page)
            return d

        def read_page(cards: list[Card]) -> Deferred[CacheStats] | CacheStats:
            if not cards:
                return switch()
            reads = [self._limit.run(self._keys_of, c.iccid) for c in cards]
            d: Deferred[Any] = DeferredList(reads, consumeErrors=True)

            def opened(results: Sequence[tuple[bool, Any]]) -> Deferred[CacheStats] | CacheStats:
                for card, (ok, value) in zip(cards, results, strict=True):
                    if not ok:
                        self._log.failure(
                            "reading the keys of card {iccid} failed", value, iccid=card.iccid
                        )
                        continue
                    entry, bad = self._entry(card, value)
                    counts["unopened"] += bad
                    if entry is not None:
                        by_iccid[card.iccid] = entry
                if len(cards) < self._page:
                    return switch()
                return page(cards[-1].iccid)

            return d.addCallback(opened)

        def switch() -> CacheStats:
            # Cards (re)read one by one while this load ran are newer than
            # what the pages said about them.
            for iccid in self._touched:
                current = self._by_iccid.get(iccid)
                if current is None:
                    by_iccid.pop(iccid, None)
                else:
                    by_iccid[iccid] = current
            self._touched = set()
            self._by_iccid = by_iccid
            self._by_identity = {e.identity: e for e in by_iccid.values()}
            self._unopened = counts["unopened"]
            stats = self.stats
            self._log.info(
                "card key cache loaded: {cards} cards, {psks} with an SCP81 PSK,"
                " {unopened} keys that did not open",
                cards=stats.cards,
                psks=stats.psks,
                unopened=stats.unopened,
            )
            return stats

        return page(None)

    def _card_read(self, card: Card | None, iccid: str) -> Deferred[None] | None:
        if self._waiters is not None:
            self._touched.add(iccid)
        if card is None:
            self.forget(iccid)
            return None

        def keys_read(keys: CardKeys) -> None:
            entry, bad = self._entry(card, keys)
            self._unopened += bad
            self.forget(card.iccid)
            if entry is not None:
                self._put(entry)

        return self._keys_of(card.iccid).addCallback(keys_read)

    def _put(self, entry: _Entry) -> None:
        self._by_iccid[entry.iccid] = entry
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

    def _loaded(self, result: CacheStats | Failure) -> None:
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _log_failures(self, results: Sequence[tuple[bool, Any]], what: str) -> None:
        for ok, value in results:
            if not ok:
                self._log.failure("{what} failed", value, what=what)
