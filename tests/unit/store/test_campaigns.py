"""The campaign store's contract, on memory and SQLite (PostgreSQL in
tests/integration/test_store_postgres.py): cards claimed once, results
kept, recovery after a crash, cancel."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    CampaignCard,
    CampaignRecord,
    CampaignSpec,
    CampaignState,
    CardState,
    Pace,
    RetryPolicy,
)
from bipgw.store import MemoryCampaignStore, SqlCampaignStore
from tests.unit.store.test_sqlite import open_inline

SPEC = CampaignSpec(
    name="rotate keys",
    tenant_id="acme",
    service="isd",
    script="80 CA 9F 7F 00 => 9000",
    idempotent=True,
    pace=Pace(rate=5, concurrency=3, burst=2),
    retry=RetryPolicy(attempts=4, backoff=2, give_up=frozenset({"unknown-card"})),
    windows=("02:00-05:00", "22:00-23:00"),
)


def record(cid: str = "c-1", tenant: str = "acme", at: float = 100.0) -> CampaignRecord:
    import attrs

    spec = attrs.evolve(SPEC, tenant_id=tenant)
    return CampaignRecord(cid, spec, CampaignState.CREATED, at, at, 0)


def cards(cid: str, n: int) -> list[CampaignCard]:
    return [
        CampaignCard(
            cid,
            i,
            iccid=f"89882110000000{i:05d}" if i % 2 == 0 else None,
            msisdn=None if i % 2 == 0 else f"3360000{i:04d}",
            variables={"KEY": f"{i:02X}" * 4},
        )
        for i in range(n)
    ]


class CampaignStoreMixin:
    """Tests every campaign store passes; C{make()} gives a fresh one."""

    def make(self) -> Any:
        raise NotImplementedError("each store's test case says how to make its campaign store")

    def done(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)  # type: ignore[attr-defined]

    def setUp(self) -> None:
        self.store = self.make()
        self.done(self.store.create_campaign(record(), cards("c-1", 5)))

    def test_roundTrip(self) -> None:
        """A campaign and its cards come back as written."""
        got = self.done(self.store.get_campaign("c-1"))
        self.assertEqual(
            got, record().__class__("c-1", record().spec, CampaignState.CREATED, 100.0, 100.0, 5)
        )  # type: ignore[attr-defined]
        listed = self.done(self.store.list_cards("c-1"))
        self.assertEqual(listed, cards("c-1", 5))  # type: ignore[attr-defined]
        self.assertIsNone(self.done(self.store.get_campaign("nope")))

    def test_listByTenantAndState(self) -> None:
        self.done(self.store.create_campaign(record("c-2", "other", 50.0), cards("c-2", 1)))
        self.done(self.store.set_state("c-1", CampaignState.RUNNING, 120.0))
        ids = [r.id for r in self.done(self.store.list_campaigns())]
        self.assertEqual(ids, ["c-2", "c-1"])  # type: ignore[attr-defined]
        mine = self.done(self.store.list_campaigns(tenant_id="acme"))
        self.assertEqual(
            [(r.id, r.state, r.updated_at) for r in mine], [("c-1", CampaignState.RUNNING, 120.0)]
        )  # type: ignore[attr-defined]
        running = self.done(self.store.list_campaigns(states=[CampaignState.RUNNING]))
        self.assertEqual([r.id for r in running], ["c-1"])  # type: ignore[attr-defined]

    def test_claimOnceInOrder(self) -> None:
        """A claim takes the due pending cards in order, counts the try, and
        never hands a card out twice."""
        first = self.done(self.store.claim("c-1", 2, 200.0))
        self.assertEqual([c.index for c in first.cards], [0, 1])  # type: ignore[attr-defined]
        self.assertEqual({(c.state, c.attempts) for c in first.cards}, {(CardState.RUNNING, 1)})  # type: ignore[attr-defined]
        self.assertEqual(first.waiting, 3)  # type: ignore[attr-defined]
        second = self.done(self.store.claim("c-1", 10, 200.0))
        self.assertEqual([c.index for c in second.cards], [2, 3, 4])  # type: ignore[attr-defined]
        third = self.done(self.store.claim("c-1", 10, 200.0))
        self.assertEqual((third.cards, third.waiting, third.next_due), ((), 0, None))  # type: ignore[attr-defined]
        counts = self.done(self.store.card_counts("c-1"))
        self.assertEqual(counts, {"running": 5})  # type: ignore[attr-defined]

    def test_backoffNotDue(self) -> None:
        """A pending card whose next try is later is not claimed; its time is said."""
        import attrs

        card = self.done(self.store.claim("c-1", 1, 200.0)).cards[0]
        failed = attrs.evolve(
            card, state=CardState.PENDING, next_at=260.0, reason="card-timeout", detail="x"
        )
        self.done(self.store.update_card(failed))
        claim = self.done(self.store.claim("c-1", 10, 210.0))
        self.assertEqual([c.index for c in claim.cards], [1, 2, 3, 4])  # type: ignore[attr-defined]
        self.assertEqual((claim.waiting, claim.next_due), (1, 260.0))  # type: ignore[attr-defined]
        again = self.done(self.store.claim("c-1", 10, 260.0)).cards
        self.assertEqual([(c.index, c.attempts, c.reason) for c in again], [(0, 2, "card-timeout")])  # type: ignore[attr-defined]

    def test_resultKept(self) -> None:
        import attrs

        card = self.done(self.store.claim("c-1", 1, 200.0)).cards[0]
        ended = attrs.evolve(
            card,
            state=CardState.SUCCEEDED,
            rapdus=("9F7F2A00", "9000"),
            session="s-9",
            iccid="89882110000000000000"[:19],
            updated_at=230.0,
        )
        self.done(self.store.update_card(ended))
        self.assertEqual(self.done(self.store.list_cards("c-1", offset=0, limit=1)), [ended])  # type: ignore[attr-defined]
        self.assertEqual(self.done(self.store.card_counts("c-1")), {"succeeded": 1, "pending": 4})  # type: ignore[attr-defined]

    def test_recover(self) -> None:
        """Running cards become interrupted (or pending again for a rerun)."""
        self.done(self.store.claim("c-1", 2, 200.0))
        self.assertEqual(self.done(self.store.recover("c-1", rerun=False, now=300.0)), 2)  # type: ignore[attr-defined]
        got = self.done(self.store.list_cards("c-1"))
        self.assertEqual(
            [c.state for c in got[:3]], [CardState.INTERRUPTED] * 2 + [CardState.PENDING]
        )  # type: ignore[attr-defined]
        self.assertEqual(got[0].reason, "gateway-restart")  # type: ignore[attr-defined]
        self.done(self.store.claim("c-1", 1, 300.0))
        self.assertEqual(self.done(self.store.recover("c-1", rerun=True, now=400.0)), 1)  # type: ignore[attr-defined]
        claim = self.done(self.store.claim("c-1", 10, 400.0))
        self.assertEqual([(c.index, c.attempts) for c in claim.cards], [(2, 2), (3, 1), (4, 1)])  # type: ignore[attr-defined]

    def test_cancelPending(self) -> None:
        self.done(self.store.claim("c-1", 1, 200.0))
        self.assertEqual(self.done(self.store.cancel_pending("c-1", 210.0)), 4)  # type: ignore[attr-defined]
        self.assertEqual(self.done(self.store.card_counts("c-1")), {"running": 1, "cancelled": 4})  # type: ignore[attr-defined]

    def test_addCards(self) -> None:
        """Cards added later are numbered after the others."""
        total = self.done(self.store.add_cards("c-1", cards("c-1", 2)))
        self.assertEqual(total, 7)  # type: ignore[attr-defined]
        got = self.done(self.store.list_cards("c-1", offset=5))
        self.assertEqual([c.index for c in got], [5, 6])  # type: ignore[attr-defined]
        self.assertEqual(self.done(self.store.get_campaign("c-1")).cards, 7)  # type: ignore[attr-defined]


class MemoryCampaignStoreTests(CampaignStoreMixin, SynchronousTestCase):
    def make(self) -> Any:
        return MemoryCampaignStore()


class SqliteCampaignStoreTests(CampaignStoreMixin, SynchronousTestCase):
    def make(self) -> Any:
        store = open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)
        self.addCleanup(lambda: self.successResultOf(store.close()))
        return SqlCampaignStore(store)
