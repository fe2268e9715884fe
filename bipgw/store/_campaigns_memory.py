# -*- test-case-name: tests.unit.store.test_campaigns -*-
"""Campaigns in memory: the campaign store of a gateway run without a database,
and the fake the scheduler's tests use.  Same contract as
L{bipgw.store.SqlCampaignStore} (one test suite runs on both); nothing
survives the process.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred, fail, succeed

from bipgw.core import CampaignCard, CampaignRecord, CampaignState, CardState, Claim

__all__ = ["MemoryCampaignStore"]


class MemoryCampaignStore:
    """Campaigns in dictionaries (module docstring).

    @ivar claims: every claim made, as (campaign, indexes) (tests count runs).
    """

    def __init__(self) -> None:
        self._campaigns: dict[str, CampaignRecord] = {}
        self._cards: dict[str, list[CampaignCard]] = {}
        self.claims: list[tuple[str, tuple[int, ...]]] = []

    def create_campaign(
        self, record: CampaignRecord, cards: Sequence[CampaignCard]
    ) -> Deferred[None]:
        if record.id in self._campaigns:
            return fail(KeyError(f"campaign {record.id} exists"))
        self._campaigns[record.id] = attrs.evolve(record, cards=len(cards))
        self._cards[record.id] = list(cards)
        return succeed(None)

    def add_cards(self, campaign_id: str, cards: Sequence[CampaignCard]) -> Deferred[int]:
        if campaign_id not in self._campaigns:
            return fail(KeyError(campaign_id))
        held = self._cards[campaign_id]
        for card in cards:
            held.append(attrs.evolve(card, index=len(held)))
        record = self._campaigns[campaign_id]
        self._campaigns[campaign_id] = attrs.evolve(record, cards=len(held))
        return succeed(len(held))

    def get_campaign(self, campaign_id: str) -> Deferred[CampaignRecord | None]:
        return succeed(self._campaigns.get(campaign_id))

    def list_campaigns(
        self, *, tenant_id: str | None = None, states: Sequence[CampaignState] | None = None
    ) -> Deferred[list[CampaignRecord]]:
        found = [
            r
            for r in self._campaigns.values()
            if (tenant_id is None or r.spec.tenant_id == tenant_id)
            and (states is None or r.state in states)
        ]
        return succeed(sorted(found, key=lambda r: (r.created_at, r.id)))

    def card_counts(self, campaign_id: str) -> Deferred[dict[str, int]]:
        counts: dict[str, int] = {}
        for card in self._cards.get(campaign_id, []):
            counts[card.state.value] = counts.get(card.state.value, 0) + 1
        return succeed(counts)

    def list_cards(
        self, campaign_id: str, *, offset: int = 0, limit: int = 1000
    ) -> Deferred[list[CampaignCard]]:
        return succeed(self._cards.get(campaign_id, [])[offset : offset + limit])

    def claim(self, campaign_id: str, limit: int, now: float) -> Deferred[Claim]:
        cards = self._cards.get(campaign_id, [])
        taken: list[CampaignCard] = []
        for n, card in enumerate(cards):
            if len(taken) >= limit:
                break
            if card.state is CardState.PENDING and card.next_at <= now:
                cards[n] = card = attrs.evolve(
                    card, state=CardState.RUNNING, attempts=card.attempts + 1, updated_at=now
                )
                taken.append(card)
        pending = [c for c in cards if c.state is CardState.PENDING]
        later = [c.next_at for c in pending if c.next_at > now]
        self.claims.append((campaign_id, tuple(c.index for c in taken)))
        return succeed(Claim(tuple(taken), len(pending), min(later) if later else None))

    def update_card(self, card: CampaignCard) -> Deferred[None]:
        self._cards[card.campaign_id][card.index] = card
        return succeed(None)

    def set_state(self, campaign_id: str, state: CampaignState, now: float) -> Deferred[None]:
        record = self._campaigns[campaign_id]
        self._campaigns[campaign_id] = attrs.evolve(record, state=state, updated_at=now)
        return succeed(None)

    def recover(self, campaign_id: str, *, rerun: bool, now: float) -> Deferred[int]:
        cards = self._cards.get(campaign_id, [])
        found = 0
        for n, card in enumerate(cards):
            if card.state is not CardState.RUNNING:
                continue
            found += 1
            if rerun:
                cards[n] = attrs.evolve(card, state=CardState.PENDING, next_at=now, updated_at=now)
            else:
                cards[n] = attrs.evolve(
                    card,
                    state=CardState.INTERRUPTED,
                    reason="gateway-restart",
                    detail=(
                        "the card was running when the gateway stopped; not run again"
                        " (the script is not marked idempotent)"
                    ),
                    updated_at=now,
                )
        return succeed(found)

    def cancel_pending(self, campaign_id: str, now: float) -> Deferred[int]:
        cards = self._cards.get(campaign_id, [])
        found = 0
        for n, card in enumerate(cards):
            if card.state is CardState.PENDING:
                found += 1
                cards[n] = attrs.evolve(
                    card,
                    state=CardState.CANCELLED,
                    reason="cancelled",
                    detail="the campaign was cancelled before this card ran",
                    updated_at=now,
                )
        return succeed(found)
