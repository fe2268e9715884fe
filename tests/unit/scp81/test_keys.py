"""The card key cache: PSKs for the handshake, OTA keys for the pushes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import OtaKeys
from bipgw.keys import RootKey, Secret, psk_identity_for
from bipgw.scp81 import CacheStats, CardKeyCache
from bipgw.store import (
    CardKey,
    CardKeySource,
    CardUpsert,
    KeyPurpose,
    MemoryStore,
    card_key_versions_for,
    seal_card_key,
)
from tests.unit.store.test_sqlite import open_inline

ROOT = RootKey(Secret(bytes(range(32))))


def card_keys(iccid: str, n: int = 0, root: RootKey = ROOT) -> tuple[CardKey, ...]:
    """KIc, KID and PSK of keyset 1 for card C{iccid}, distinct per C{n}."""
    return (
        seal_card_key(root, iccid, KeyPurpose.KIC, 1, "aes-128", Secret(bytes([n, 1]) * 8)),
        seal_card_key(root, iccid, KeyPurpose.KID, 1, "aes-128", Secret(bytes([n, 2]) * 8)),
        seal_card_key(root, iccid, KeyPurpose.PSK, 1, "psk", Secret(bytes([n, 3]) * 8)),
    )


def iccid_of(n: int) -> str:
    """The C{n}-th test ICCID (19 digits)."""
    return f"898821100000{n:07d}"


def add_cards(
    store: MemoryStore, numbers: Sequence[int], *, identities: bool = True, root: RootKey = ROOT
) -> None:
    """Put cards with keys into C{store} (identity C{card-<n>}, or the default)."""
    upserts = [
        CardUpsert(
            iccid=iccid_of(n),
            psk_identity=f"card-{n}".encode() if identities else None,
            keys=card_keys(iccid_of(n), n, root),
        )
        for n in numbers
    ]
    store.upsert_cards(upserts)


def hold(cache: CardKeyCache) -> Callable[[], None]:
    """Take every store-read slot of C{cache}; the function returned gives them back."""
    gate = cache._limit
    for _ in range(gate.limit):
        gate.acquire()
    assert gate.tokens == 0

    def release() -> None:
        for _ in range(gate.limit):
            gate.release()

    return release


def warm(cache: CardKeyCache, numbers: Sequence[int]) -> None:
    """Read cards C{numbers} into C{cache}, as their pushes would."""
    cache.load_cards([iccid_of(n) for n in numbers])


class CardKeyCacheTests(SynchronousTestCase):
    """L{CardKeyCache} reads a card's keys on demand, opens them once and
    answers from memory, holding a bounded number of cards."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.cache = CardKeyCache(self.store, ROOT, self.clock, capacity=5)

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nothingReadUntilNeeded(self) -> None:
        """A new cache holds nothing and reads nothing: the store is never
        listed, whatever it holds."""
        add_cards(self.store, range(8))

        def never(**kwargs: object) -> object:
            raise AssertionError("the cache listed every card")

        self.store.list_cards = never  # type: ignore[method-assign]
        cache = CardKeyCache(self.store, ROOT, self.clock)
        self.assertEqual(len(cache), 0)
        self.assertEqual(cache.stats, CacheStats(cards=0, psks=0, unopened=0))
        self.assertEqual(self.successResultOf(cache.refresh()), CacheStats(0, 0, 0))

    def test_pushLoadsThePsk(self) -> None:
        """The OTA keys a push asks for bring the card's PSK with them, so the
        card's handshake in answer to the push succeeds at once."""
        add_cards(self.store, [5])
        keys = self.successResultOf(self.cache.ota_keys(iccid_of(5), 1))
        self.assertEqual(keys, OtaKeys(bytes([5, 1]) * 8, bytes([5, 2]) * 8))
        self.assertIsNone(self.successResultOf(self.cache.ota_keys(iccid_of(5), 2)))
        self.assertEqual(self.cache.psk_for(b"card-5"), bytes([5, 3]) * 8)
        self.assertEqual(self.cache.iccid_for(b"card-5"), iccid_of(5))
        self.assertIsNone(self.successResultOf(self.cache.ota_keys(iccid_of(6), 1)))

    def test_otaKeysForAnswersAtOnce(self) -> None:
        """C{ota_keys_for} gives a held card's keys themselves, and a Deferred
        for a card it has to read first."""
        add_cards(self.store, [5])
        first = self.cache.ota_keys_for(iccid_of(5), 1)
        self.assertIsInstance(first, Deferred)
        keys = OtaKeys(bytes([5, 1]) * 8, bytes([5, 2]) * 8)
        self.assertEqual(self.successResultOf(first), keys)  # type: ignore[arg-type]
        self.assertEqual(self.cache.ota_keys_for(iccid_of(5), 1), keys)
        self.assertIsNone(self.cache.ota_keys_for(iccid_of(5), 2))

    def test_boundedLeastRecentlyUsedFirstOut(self) -> None:
        """Past its capacity the cache drops the card used least recently; a
        handshake counts as a use."""
        add_cards(self.store, range(7))
        warm(self.cache, range(5))
        self.assertEqual(self.cache.psk_for(b"card-0"), bytes([0, 3]) * 8)
        warm(self.cache, [5, 6])
        self.assertEqual(len(self.cache), 5)
        self.assertIn(iccid_of(0), self.cache)
        self.assertNotIn(iccid_of(1), self.cache)
        self.assertNotIn(iccid_of(2), self.cache)
        self.assertIsNone(self.cache.iccid_for(b"card-1"))
        # The evicted card is read again by its next push.
        self.successResultOf(self.cache.ota_keys(iccid_of(1), 1))
        self.assertEqual(self.cache.psk_for(b"card-1"), bytes([1, 3]) * 8)
        self.assertEqual(len(self.cache), 5)

    def test_defaultIdentity(self) -> None:
        """A card imported without a PSK identity is known by the default one."""
        add_cards(self.store, [4], identities=False)
        warm(self.cache, [4])
        identity = psk_identity_for(iccid_of(4))
        self.assertEqual(self.cache.iccid_for(identity), iccid_of(4))
        self.assertEqual(self.cache.psk_for(identity), bytes([4, 3]) * 8)

    def test_unknownIdentity(self) -> None:
        """An identity no card has gets no key (the handshake is refused)."""
        add_cards(self.store, [1])
        warm(self.cache, [1])
        self.assertIsNone(self.cache.psk_for(b"nobody"))
        self.assertIsNone(self.cache.iccid_for(b"nobody"))

    def test_unsolicitedCardServedOnItsRetry(self) -> None:
        """A card connecting with no push (its keys not held) is refused in
        that handshake and looked up in the background, so its next
        handshake succeeds; an identity the store does not know is not looked
        up again for a while (the negative cache)."""
        add_cards(self.store, [7])
        self.assertIsNone(self.cache.psk_for(b"card-7"))
        self.assertEqual(self.cache.psk_for(b"card-7"), bytes([7, 3]) * 8)
        self.assertIsNone(self.cache.psk_for(b"card-99"))
        add_cards(self.store, [99])
        # Looked up once already, and not found: not again for a while.
        self.assertIsNone(self.cache.psk_for(b"card-99"))
        self.clock.advance(31)
        self.assertIsNone(self.cache.psk_for(b"card-99"))
        self.assertEqual(self.cache.psk_for(b"card-99"), bytes([99, 3]) * 8)

    def test_refreshForgetsUnknownIdentities(self) -> None:
        """After a refresh (an import), an identity the store did not know is
        looked up again at once."""
        self.assertIsNone(self.cache.psk_for(b"card-3"))
        add_cards(self.store, [3])
        self.assertIsNone(self.cache.psk_for(b"card-3"))
        self.successResultOf(self.cache.refresh())
        self.assertIsNone(self.cache.psk_for(b"card-3"))
        self.assertEqual(self.cache.psk_for(b"card-3"), bytes([3, 3]) * 8)

    def test_refreshRereadsHeldCards(self) -> None:
        """A refresh re-reads every card held, and only those."""
        add_cards(self.store, [1, 2, 3])
        warm(self.cache, [1, 2])
        for n in (1, 2, 3):
            self.store.upsert_cards(
                [
                    CardUpsert(
                        iccid=iccid_of(n),
                        psk_identity=f"card-{n}".encode(),
                        keys=card_keys(iccid_of(n), 9),
                    )
                ]
            )
        self.assertEqual(self.successResultOf(self.cache.refresh()), CacheStats(2, 2, 0))
        self.assertEqual(self.cache.psk_for(b"card-1"), bytes([9, 3]) * 8)
        self.assertEqual(self.cache.psk_for(b"card-2"), bytes([9, 3]) * 8)
        self.assertNotIn(iccid_of(3), self.cache)

    def test_loadCardsRefreshesChangedKeys(self) -> None:
        """Re-reading a card after its keys changed replaces them."""
        add_cards(self.store, [2])
        warm(self.cache, [2])
        self.store.upsert_cards(
            [CardUpsert(iccid=iccid_of(2), psk_identity=b"card-2", keys=card_keys(iccid_of(2), 9))]
        )
        self.assertEqual(self.cache.psk_for(b"card-2"), bytes([2, 3]) * 8)
        self.assertEqual(self.successResultOf(self.cache.load_cards([iccid_of(2)])), 1)
        self.assertEqual(self.cache.psk_for(b"card-2"), bytes([9, 3]) * 8)

    def test_keyUnderAnotherRootSkipped(self) -> None:
        """A key sealed under another root key is skipped and counted; the log
        names it by label, never with key bytes."""
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        other = RootKey(Secret(bytes(range(1, 33))))
        add_cards(self.store, [1])
        add_cards(self.store, [2], root=other)
        warm(self.cache, [1, 2])
        self.assertEqual(self.cache.stats, CacheStats(cards=1, psks=1, unopened=3))
        self.assertIsNone(self.cache.psk_for(b"card-2"))
        text = "\n".join(formatEvent(e) for e in logged)
        self.assertIn(f"card:{iccid_of(2)}:PSK1", text)
        self.assertNotIn((bytes([2, 3]) * 8).hex(), text.lower())
        self.assertNotIn(repr(bytes([2, 3]) * 8), text)

    def test_lowestPskVersion(self) -> None:
        """A card with two PSKs is served with the first (lowest version)."""
        iccid = iccid_of(1)
        keys = (
            seal_card_key(ROOT, iccid, KeyPurpose.PSK, 2, "psk", Secret(b"\x22" * 16)),
            seal_card_key(ROOT, iccid, KeyPurpose.PSK, 1, "psk", Secret(b"\x11" * 16)),
        )
        self.store.upsert_cards([CardUpsert(iccid=iccid, psk_identity=b"id", keys=keys)])
        self.successResultOf(self.cache.load_cards([iccid]))
        self.assertEqual(self.cache.psk_for(b"id"), b"\x11" * 16)

    def test_readsBounded(self) -> None:
        """Store reads in flight are bounded: the rest wait for a slot."""
        add_cards(self.store, range(3))
        release = hold(self.cache)
        loading = self.cache.load_cards([iccid_of(n) for n in range(3)])
        self.assertNoResult(loading)
        self.assertEqual(len(self.cache), 0)
        release()
        self.assertEqual(self.successResultOf(loading), 3)

    def test_forget(self) -> None:
        """A forgotten card can no longer connect until it is read again."""
        add_cards(self.store, [1, 2])
        warm(self.cache, [1, 2])
        self.cache.forget(iccid_of(1))
        self.assertNotIn(iccid_of(1), self.cache)
        self.assertIsNone(self.cache.iccid_for(b"card-1"))
        self.cache.forget_all()
        self.assertEqual(len(self.cache), 0)
        self.assertIsNone(self.cache.iccid_for(b"card-2"))

    def test_reprHidesKeys(self) -> None:
        """The cache's text form shows a count, never a key."""
        add_cards(self.store, [1])
        warm(self.cache, [1])
        self.assertEqual(repr(self.cache), "<CardKeyCache 1 cards>")

    def test_failedReadKeepsOldKeys(self) -> None:
        """A store that fails a re-read is logged, and the old keys stay."""
        add_cards(self.store, [1])
        warm(self.cache, [1])

        def broken(iccid: str) -> object:
            raise RuntimeError("database gone")

        self.store.get_card = broken  # type: ignore[method-assign]
        self.successResultOf(self.cache.refresh())
        self.assertEqual(self.cache.psk_for(b"card-1"), bytes([1, 3]) * 8)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_badCapacity(self) -> None:
        """A capacity below one is refused."""
        self.assertRaises(ValueError, CardKeyCache, self.store, ROOT, self.clock, capacity=0)


class BatchedCardKeyCacheTests(CardKeyCacheTests):
    """The same cache over a L{CardKeySource} on SQLite, which reads many
    cards in one transaction: every behaviour above holds, and a burst of
    cards is read in one transaction, at most one read in flight."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = open_inline("sqlite://", self)  # type: ignore[assignment]
        self.cache = self.cached(capacity=5)

    def cached(self, **kwargs: Any) -> CardKeyCache:
        source = CardKeySource(self.store, ROOT, versions=card_key_versions_for(self.store))
        return CardKeyCache(self.store, ROOT, self.clock, keys=source, **kwargs)

    def counted(self) -> list[int]:
        """Count the store's transactions (one entry per transaction, its size unknown)."""
        calls: list[int] = []
        real = self.store.transaction  # type: ignore[attr-defined]

        def transaction(work: Any, *, write: bool) -> Any:
            calls.append(1)
            return real(work, write=write)

        self.store.transaction = transaction  # type: ignore[attr-defined]
        return calls

    def test_readsBounded(self) -> None:
        """Cards asked for while a read runs wait and are read together in the
        next one: one read in flight, one transaction per batch."""
        add_cards(self.store, range(20))
        self.cache = self.cached(capacity=100)
        transactions = self.counted()
        first = self.cache.load_cards([iccid_of(n) for n in range(10)])
        self.assertEqual(self.successResultOf(first), 10)
        self.assertEqual(len(transactions), 1)
        gate: Deferred[None] = Deferred()
        real = self.store.transaction  # type: ignore[attr-defined]

        def slow(work: Any, *, write: bool) -> Any:
            return gate.addCallback(lambda _: real(work, write=write))

        self.store.transaction = slow  # type: ignore[attr-defined]
        waiting = [self.cache.ota_keys(iccid_of(n), 1) for n in range(10, 20)]
        self.assertNoResult(waiting[-1])
        self.store.transaction = real  # type: ignore[attr-defined]
        transactions = self.counted()
        gate.callback(None)
        for n, d in zip(range(10, 20), waiting, strict=True):
            self.assertEqual(self.successResultOf(d), OtaKeys(bytes([n, 1]) * 8, bytes([n, 2]) * 8))
        # The first card's read ran alone; the nine asked for meanwhile, together.
        self.assertEqual(len(transactions), 1)

    def test_failedReadKeepsOldKeys(self) -> None:
        """A store that fails a re-read is logged, and the old keys stay."""
        add_cards(self.store, [1])
        warm(self.cache, [1])

        def broken(work: Any, *, write: bool) -> object:
            raise RuntimeError("database gone")

        self.store.transaction = broken  # type: ignore[attr-defined]
        self.successResultOf(self.cache.refresh())
        self.assertEqual(self.cache.psk_for(b"card-1"), bytes([1, 3]) * 8)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
