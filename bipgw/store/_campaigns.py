# -*- test-case-name: tests.unit.store.test_campaigns -*-
"""Campaigns in the application database: C{campaigns} and C{campaign_cards}.

L{SqlCampaignStore} is the campaign scheduler's L{bipgw.core.ICampaignStore}
on the SQL store (SQLite or PostgreSQL), plus what the campaign service
and its front doors read and write (L{ICampaignRecords}).  It shares the
L{SqlStore}'s engine and thread pool, so its queries are counted with the
store's own and the store waits for them when it closes.

A claim (L{SqlCampaignStore.claim}) moves the due pending cards to
C{running} and counts the try in one write transaction (SQLite's write
lock; PostgreSQL's C{FOR UPDATE SKIP LOCKED}, so two gateways sharing the
database never claim the same card), committed before the card's session
is opened: a card is never run twice unless the store was told so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
from sqlalchemy import Connection, and_, func, insert, select, update
from twisted.internet.defer import Deferred

import bipgw.store._schema as s
from bipgw.core import (
    CampaignCard,
    CampaignRecord,
    CampaignSpec,
    CampaignState,
    CardState,
    Claim,
    Pace,
    RetryPolicy,
)
from bipgw.store._sql import SqlStore

__all__ = ["ICampaignRecords", "SqlCampaignStore", "spec_from_json", "spec_json"]

_c = s.campaign_cards.c
_k = s.campaigns.c


def spec_json(spec: CampaignSpec) -> dict[str, Any]:
    """What a C{campaigns.spec} column holds (the tenant and service have their own)."""
    return {"script": spec.script, **spec.policy_json()}


def spec_from_json(
    name: str, tenant_id: str, service: str, value: Mapping[str, Any]
) -> CampaignSpec:
    """The L{CampaignSpec} of a row."""
    return CampaignSpec(
        name=name,
        tenant_id=tenant_id,
        service=service,
        script=value["script"],
        idempotent=bool(value["idempotent"]),
        pace=Pace(**value["pace"]),
        retry=RetryPolicy(**value["retry"]),
        windows=tuple(value["windows"]),
    )


def _record(row: Any) -> CampaignRecord:
    m = row._mapping
    spec = spec_from_json(m["name"], m["tenant_id"], m["service"], s.from_json(m["spec"]))
    return CampaignRecord(
        m["id"], spec, CampaignState(m["state"]), m["created_at"], m["updated_at"], m["cards"]
    )


def _card(row: Any) -> CampaignCard:
    m = row._mapping
    return CampaignCard(
        campaign_id=m["campaign_id"],
        index=m["idx"],
        iccid=m["iccid"],
        msisdn=m["msisdn"],
        variables=s.from_json(m["variables"]),
        state=CardState(m["state"]),
        attempts=m["attempts"],
        next_at=m["next_at"],
        reason=m["reason"],
        detail=m["detail"],
        rapdus=tuple(s.from_json(m["rapdus"])),
        session=m["session"],
        updated_at=m["updated_at"],
    )


def _card_values(card: CampaignCard) -> dict[str, Any]:
    return {
        "iccid": card.iccid,
        "msisdn": card.msisdn,
        "variables": s.to_json(dict(card.variables)),
        "state": card.state.value,
        "attempts": card.attempts,
        "next_at": card.next_at,
        "reason": card.reason,
        "detail": None if card.detail is None else card.detail[:2000],
        "rapdus": s.to_json(list(card.rapdus)),
        "session": card.session,
        "updated_at": card.updated_at,
    }


class ICampaignRecords(Protocol):
    """What the campaign service and its doors read and write, besides the
    scheduler's L{bipgw.core.ICampaignStore}."""

    def create_campaign(
        self, record: CampaignRecord, cards: Sequence[CampaignCard]
    ) -> Deferred[None]:
        """Write a new campaign and its cards."""

    def add_cards(self, campaign_id: str, cards: Sequence[CampaignCard]) -> Deferred[int]:
        """Append cards to a campaign (its new card count)."""

    def get_campaign(self, campaign_id: str) -> Deferred[CampaignRecord | None]:
        """A campaign, or C{None}."""

    def list_campaigns(
        self, *, tenant_id: str | None = None, states: Sequence[CampaignState] | None = None
    ) -> Deferred[list[CampaignRecord]]:
        """Campaigns, oldest first."""

    def card_counts(self, campaign_id: str) -> Deferred[dict[str, int]]:
        """How many cards are in each state."""

    def list_cards(
        self, campaign_id: str, *, offset: int = 0, limit: int = 1000
    ) -> Deferred[list[CampaignCard]]:
        """The cards, in target order."""


class SqlCampaignStore:
    """Campaigns on an L{SqlStore} (module docstring)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    # The store's own transaction runner (same package): counted, off the reactor.
    def _read(self, work: Any) -> Deferred[Any]:
        return self._store._read(work)

    def _write(self, work: Any) -> Deferred[Any]:
        return self._store._write(work)

    # -- records -----------------------------------------------------------------

    def create_campaign(
        self, record: CampaignRecord, cards: Sequence[CampaignCard]
    ) -> Deferred[None]:
        spec = record.spec
        row = {
            "id": record.id,
            "tenant_id": spec.tenant_id,
            "service": spec.service,
            "name": spec.name,
            "state": record.state.value,
            "spec": s.to_json(spec_json(spec)),
            "cards": len(cards),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }
        rows = [{"campaign_id": record.id, "idx": c.index, **_card_values(c)} for c in cards]

        def work(c: Connection) -> None:
            c.execute(insert(s.campaigns).values(**row))
            for start in range(0, len(rows), 500):
                c.execute(insert(s.campaign_cards), rows[start : start + 500])

        return self._write(work)

    def add_cards(self, campaign_id: str, cards: Sequence[CampaignCard]) -> Deferred[int]:
        def work(c: Connection) -> int:
            count = c.execute(select(_k.cards).where(_k.id == campaign_id)).scalar()
            if count is None:
                raise KeyError(campaign_id)
            rows = [
                {"campaign_id": campaign_id, "idx": count + n, **_card_values(card)}
                for n, card in enumerate(cards)
            ]
            for start in range(0, len(rows), 500):
                c.execute(insert(s.campaign_cards), rows[start : start + 500])
            total = int(count) + len(rows)
            c.execute(update(s.campaigns).where(_k.id == campaign_id).values(cards=total))
            return total

        return self._write(work)

    def get_campaign(self, campaign_id: str) -> Deferred[CampaignRecord | None]:
        def work(c: Connection) -> CampaignRecord | None:
            row = c.execute(select(s.campaigns).where(_k.id == campaign_id)).first()
            return None if row is None else _record(row)

        return self._read(work)

    def list_campaigns(
        self, *, tenant_id: str | None = None, states: Sequence[CampaignState] | None = None
    ) -> Deferred[list[CampaignRecord]]:
        query = select(s.campaigns).order_by(_k.created_at, _k.id)
        if tenant_id is not None:
            query = query.where(_k.tenant_id == tenant_id)
        if states is not None:
            query = query.where(_k.state.in_([st.value for st in states]))
        return self._read(lambda c: [_record(r) for r in c.execute(query)])

    def card_counts(self, campaign_id: str) -> Deferred[dict[str, int]]:
        query = (
            select(_c.state, func.count()).where(_c.campaign_id == campaign_id).group_by(_c.state)
        )
        return self._read(lambda c: {str(st): int(n) for st, n in c.execute(query)})

    def list_cards(
        self, campaign_id: str, *, offset: int = 0, limit: int = 1000
    ) -> Deferred[list[CampaignCard]]:
        query = (
            select(s.campaign_cards)
            .where(_c.campaign_id == campaign_id, _c.idx >= offset)
            .order_by(_c.idx)
            .limit(limit)
        )
        return self._read(lambda c: [_card(r) for r in c.execute(query)])

    # -- the scheduler's ICampaignStore --------------------------------------------

    def claim(self, campaign_id: str, limit: int, now: float) -> Deferred[Claim]:
        def work(c: Connection) -> Claim:
            pending = and_(_c.campaign_id == campaign_id, _c.state == CardState.PENDING.value)
            due = (
                select(s.campaign_cards)
                .where(pending, _c.next_at <= now)
                .order_by(_c.idx)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            taken: list[CampaignCard] = []
            for row in c.execute(due).all():
                card = _card(row)
                done = c.execute(
                    update(s.campaign_cards)
                    .where(
                        _c.campaign_id == campaign_id,
                        _c.idx == card.index,
                        _c.state == CardState.PENDING.value,
                    )
                    .values(
                        state=CardState.RUNNING.value,
                        attempts=card.attempts + 1,
                        updated_at=now,
                    )
                )
                if done.rowcount:
                    taken.append(
                        attrs.evolve(
                            card,
                            state=CardState.RUNNING,
                            attempts=card.attempts + 1,
                            updated_at=now,
                        )
                    )
            waiting = c.execute(select(func.count()).where(pending)).scalar()
            later = c.execute(
                select(func.min(_c.next_at)).where(pending, _c.next_at > now)
            ).scalar()
            return Claim(tuple(taken), int(waiting or 0), None if later is None else float(later))

        return self._write(work)

    def update_card(self, card: CampaignCard) -> Deferred[None]:
        values = _card_values(card)

        def work(c: Connection) -> None:
            c.execute(
                update(s.campaign_cards)
                .where(_c.campaign_id == card.campaign_id, _c.idx == card.index)
                .values(**values)
            )

        return self._write(work)

    def set_state(self, campaign_id: str, state: CampaignState, now: float) -> Deferred[None]:
        def work(c: Connection) -> None:
            c.execute(
                update(s.campaigns)
                .where(_k.id == campaign_id)
                .values(state=state.value, updated_at=now)
            )

        return self._write(work)

    def recover(self, campaign_id: str, *, rerun: bool, now: float) -> Deferred[int]:
        running = and_(_c.campaign_id == campaign_id, _c.state == CardState.RUNNING.value)
        if rerun:
            values: dict[str, Any] = {"state": CardState.PENDING.value, "next_at": now}
        else:
            values = {
                "state": CardState.INTERRUPTED.value,
                "reason": "gateway-restart",
                "detail": (
                    "the card was running when the gateway stopped; not run again"
                    " (the script is not marked idempotent)"
                ),
            }

        def work(c: Connection) -> int:
            return int(
                c.execute(
                    update(s.campaign_cards).where(running).values(updated_at=now, **values)
                ).rowcount
            )

        return self._write(work)

    def cancel_pending(self, campaign_id: str, now: float) -> Deferred[int]:
        pending = and_(_c.campaign_id == campaign_id, _c.state == CardState.PENDING.value)

        def work(c: Connection) -> int:
            return int(
                c.execute(
                    update(s.campaign_cards)
                    .where(pending)
                    .values(
                        state=CardState.CANCELLED.value,
                        reason="cancelled",
                        detail="the campaign was cancelled before this card ran",
                        updated_at=now,
                    )
                ).rowcount
            )

        return self._write(work)
