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
from bipgw.store import CardKey, CardUpsert, KeyPurpose, MemoryStore, seal_card_key

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


class CardKeyCacheTests(SynchronousTestCase):
    """L{CardKeyCache} opens sealed keys once and answers from memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.cache = CardKeyCache(self.store, ROOT, self.clock, page_size=3)

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_loadReadsEveryPage(self) -> None:
        """A load reads every card, page after page, and opens its keys."""
        add_cards(self.store, range(8))
        stats = self.successResultOf(self.cache.load())
        self.assertEqual(stats, CacheStats(cards=8, psks=8, unopened=0))
        self.assertEqual(len(self.cache), 8)
        for n in range(8):
            self.assertEqual(self.cache.psk_for(f"card-{n}".encode()), bytes([n, 3]) * 8)
            self.assertEqual(self.cache.iccid_for(f"card-{n}".encode()), iccid_of(n))

    def test_otaKeysByVersion(self) -> None:
        """The OTA key set of a version pairs the card's KIc and KID of that version."""
        add_cards(self.store, [5])
        self.successResultOf(self.cache.load())
        keys = self.successResultOf(self.cache.ota_keys(iccid_of(5), 1))
        self.assertEqual(keys, OtaKeys(bytes([5, 1]) * 8, bytes([5, 2]) * 8))
        self.assertIsNone(self.successResultOf(self.cache.ota_keys(iccid_of(5), 2)))

    def test_defaultIdentity(self) -> None:
        """A card imported without a PSK identity is known by the default one."""
        add_cards(self.store, [4], identities=False)
        self.successResultOf(self.cache.load())
        identity = psk_identity_for(iccid_of(4))
        self.assertEqual(self.cache.iccid_for(identity), iccid_of(4))
        self.assertEqual(self.cache.psk_for(identity), bytes([4, 3]) * 8)

    def test_unknownIdentity(self) -> None:
        """An identity no card has gets no key (the handshake is refused)."""
        add_cards(self.store, [1])
        self.successResultOf(self.cache.load())
        self.assertIsNone(self.cache.psk_for(b"nobody"))
        self.assertIsNone(self.cache.iccid_for(b"nobody"))

    def test_unknownIdentityLookedUpInBackground(self) -> None:
        """A card imported after the load is found on its first handshake, so
        its next handshake succeeds; lookups of one identity are spaced out."""
        self.successResultOf(self.cache.load())
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

    def test_otaKeysOfCardNotYetCached(self) -> None:
        """A push for a card imported after the load reads its keys first."""
        self.successResultOf(self.cache.load())
        add_cards(self.store, [3])
        keys = self.successResultOf(self.cache.ota_keys(iccid_of(3), 1))
        self.assertEqual(keys, OtaKeys(bytes([3, 1]) * 8, bytes([3, 2]) * 8))
        self.assertEqual(self.cache.psk_for(b"card-3"), bytes([3, 3]) * 8)
        self.assertIsNone(self.successResultOf(self.cache.ota_keys(iccid_of(6), 1)))

    def test_loadCardsRefreshesChangedKeys(self) -> None:
        """Re-reading a card after its keys changed replaces them."""
        add_cards(self.store, [2])
        self.successResultOf(self.cache.load())
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
        stats = self.successResultOf(self.cache.load())
        self.assertEqual(stats, CacheStats(cards=1, psks=1, unopened=3))
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
        self.successResultOf(self.cache.load())
        self.assertEqual(self.cache.psk_for(b"id"), b"\x11" * 16)

    def test_concurrentLoadsShareOne(self) -> None:
        """Two loads at once read the store once and both get the result."""
        add_cards(self.store, range(4))
        reads: list[str | None] = []
        list_cards = self.store.list_cards

        def counting(**kwargs: object) -> object:
            reads.append(kwargs.get("after"))  # type: ignore[arg-type]
            return list_cards(**kwargs)  # type: ignore[arg-type]

        self.store.list_cards = counting  # type: ignore[method-assign]
        release = hold(self.cache)
        first, second = self.cache.load(), self.cache.load()
        self.assertNoResult(first)
        release()
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))
        self.assertEqual(reads, [None, iccid_of(2)])

    def test_cardReadDuringLoadSurvives(self) -> None:
        """A card re-read while a full load runs keeps its newer keys, although
        the load read its older ones."""
        add_cards(self.store, range(4))
        self.successResultOf(self.cache.load())
        list_cards = self.store.list_cards
        later: Deferred[Any] = Deferred()

        def second_page_later(**kwargs: Any) -> Deferred[Any]:
            if kwargs.get("after") is None:
                return list_cards(**kwargs)
            return later.addCallback(lambda _: list_cards(**kwargs))

        self.store.list_cards = second_page_later  # type: ignore[method-assign]
        loading = self.cache.load()
        # The first page (cards 0 to 2) is read; now card 1's keys change.
        new_keys = card_keys(iccid_of(1), 7)
        self.store.upsert_cards(
            [CardUpsert(iccid=iccid_of(1), psk_identity=b"card-1", keys=new_keys)]
        )
        self.successResultOf(self.cache.load_cards([iccid_of(1)]))
        self.assertNoResult(loading)
        later.callback(None)
        self.successResultOf(loading)
        self.assertEqual(self.cache.psk_for(b"card-1"), bytes([7, 3]) * 8)
        self.assertEqual(self.cache.psk_for(b"card-3"), bytes([3, 3]) * 8)

    def test_forget(self) -> None:
        """A forgotten card can no longer connect."""
        add_cards(self.store, [1])
        self.successResultOf(self.cache.load())
        self.cache.forget(iccid_of(1))
        self.assertNotIn(iccid_of(1), self.cache)
        self.assertIsNone(self.cache.iccid_for(b"card-1"))

    def test_reprHidesKeys(self) -> None:
        """The cache's text form shows a count, never a key."""
        add_cards(self.store, [1])
        self.successResultOf(self.cache.load())
        self.assertEqual(repr(self.cache), "<CardKeyCache 1 cards>")

    def test_failedLoadReported(self) -> None:
        """A store that fails the load fails every waiter, and keeps the old keys."""
        add_cards(self.store, [1])
        self.successResultOf(self.cache.load())

        def broken(**kwargs: object) -> object:
            raise RuntimeError("database gone")

        self.store.list_cards = broken  # type: ignore[method-assign]
        self.failureResultOf(self.cache.load(), RuntimeError)
        self.assertEqual(self.cache.psk_for(b"card-1"), bytes([1, 3]) * 8)

    def test_badPageSize(self) -> None:
        """A page size below one is refused."""
        self.assertRaises(ValueError, CardKeyCache, self.store, ROOT, self.clock, page_size=0)
