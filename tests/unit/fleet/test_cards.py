"""Tests for the card pool: cards in memory only while used, saved when dropped."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from simcard.card import SimCard
from simcard.fleet import CardPool
from simcard.ota_receiver import OtaReceiver
from simcard.state import FleetState, FleetStateError, UnknownCardError
from tests.unit.fleet.test_harness import fleet_dir, make_fleet


def _receiver(card: SimCard) -> OtaReceiver:
    return OtaReceiver(
        lambda kvn: None, card.ota_counters, card, admin=card.profile.admin, agent_id=card.iccid
    )


class CardPoolTests(SynchronousTestCase):
    """An LRU of live cards in front of the fleet file."""

    def setUp(self) -> None:
        result, _ = make_fleet(fleet_dir(self), cards=5)
        self.path = result.cards_db
        self.pool = CardPool(capacity=2, receiver_factory=_receiver)
        self.pool.open(FleetState.open(self.path))
        self.addCleanup(self.pool.close)
        self.iccids = self.pool.state.iccids()

    def test_lookupByMsisdn(self) -> None:
        """MSISDNs are found in the file; unknown ones give None."""
        self.assertEqual(self.pool.iccid_for_msisdn("33600000002"), self.iccids[1])
        self.assertIsNone(self.pool.iccid_for_msisdn("33699999999"))
        self.assertEqual(self.pool.card_count(), 5)

    def test_loadedOnceThenCached(self) -> None:
        """A card is loaded on first use and the same object served after."""
        first = self.pool.get(self.iccids[0])
        self.assertIs(self.pool.get(self.iccids[0]), first)
        self.assertEqual(self.pool.loads, 1)
        self.assertIsInstance(first.receiver, OtaReceiver)

    def test_leastRecentlyUsedEvicted(self) -> None:
        """Past capacity, the least recently used card leaves memory."""
        a, b, c = self.iccids[:3]
        self.pool.get(a)
        self.pool.get(b)
        self.pool.get(a)
        self.pool.get(c)
        self.assertEqual([live.card.iccid for live in self.pool.live()], [a, c])
        self.assertEqual(self.pool.evictions, 1)

    def test_pinnedCardsStay(self) -> None:
        """A pinned card is not evicted, even past capacity; unpinning lets it go."""
        a, b, c = self.iccids[:3]
        pinned = self.pool.get(a)
        self.pool.pin(pinned)
        self.pool.get(b)
        self.pool.get(c)
        self.assertIn(a, self.pool)
        self.assertNotIn(b, self.pool)
        self.pool.get(self.iccids[3])
        self.assertEqual(len(self.pool), 2)
        self.pool.unpin(pinned)
        self.pool.get(self.iccids[4])
        self.assertNotIn(a, self.pool)
        self.assertEqual(len(self.pool), 2)
        self.assertRaises(RuntimeError, self.pool.unpin, pinned)

    def test_changedCardSavedOnEviction(self) -> None:
        """A card evicted with unsaved changes is written back; reloading sees them."""
        a = self.iccids[0]
        live = self.pool.get(a)
        live.card.ota_counters.record(1, 99)
        for iccid in self.iccids[1:3]:
            self.pool.get(iccid)
        self.assertNotIn(a, self.pool)
        self.assertEqual(self.pool.get(a).card.ota_counters.last(1), 99)

    def test_saveAndClose(self) -> None:
        """save() writes changed live cards and commits; close() saves too."""
        live = self.pool.get(self.iccids[0])
        live.card.ota_counters.record(1, 5)
        self.assertEqual(self.pool.save(), 1)
        self.assertEqual(self.pool.save(), 0)
        live.card.ota_counters.record(1, 6)
        self.assertEqual(self.pool.close(), 1)
        self.assertEqual(self.pool.close(), 0)
        with FleetState.open(self.path) as state:
            self.assertEqual(state.load_card(self.iccids[0]).ota_counters.last(1), 6)

    def test_unknownCard(self) -> None:
        """An ICCID the file does not hold is an UnknownCardError."""
        self.assertRaises(UnknownCardError, self.pool.get, "8988211999999999999")

    def test_notOpen(self) -> None:
        """Before open, lookups find nothing and loads fail clearly."""
        pool = CardPool(capacity=1, receiver_factory=_receiver)
        self.assertIsNone(pool.iccid_for_msisdn("33600000001"))
        self.assertRaises(FleetStateError, pool.get, self.iccids[0])
        self.assertEqual(pool.save(), 0)
        self.assertRaises(ValueError, CardPool, capacity=0, receiver_factory=_receiver)
