# -*- test-case-name: tests.unit.store.test_card_key_source -*-
"""Many cards with their keys and key versions, read in one transaction.

A burst of pushes (a campaign, a platform opening hundreds of sessions at
once) makes the key cache read every card it does not hold: its row (for
the PSK identity), its sealed keys and its key lifecycle rows.  Read one
card at a time that is three transactions per card on the store's one
SQLite thread, each a statement built on the reactor thread (issue 14:
1,500 transactions for 500 setups).  L{read_cards} reads a batch of cards
with three C{IN} queries whose statements are built once, at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import BindParameter, Connection, bindparam, select

import bipgw.store._rows as r
import bipgw.store._schema as s
from bipgw.store._card_key_versions import KeyVersion, merged_versions, version_from_row
from bipgw.store._types import Card, CardKey

__all__ = ["MAX_CARDS", "CardRead", "find_cards", "read_cards"]

MAX_CARDS: Final = 500
"""Cards in one read at most (bound parameters per statement stay well
below SQLite's limit, and one read stays short)."""

CardRead = tuple[Card, tuple[CardKey, ...], list[KeyVersion]]
"""A card, its stored keys (by purpose, then version) and its key versions."""

_ICCIDS: BindParameter[str] = bindparam("iccids", expanding=True)
_CARDS = select(s.cards).where(s.cards.c.iccid.in_(_ICCIDS))
_KEYS = (
    select(s.card_keys)
    .where(s.card_keys.c.iccid.in_(_ICCIDS))
    .order_by(s.card_keys.c.iccid, s.card_keys.c.purpose, s.card_keys.c.kvn)
)
_BY_MSISDN = select(s.cards).where(s.cards.c.msisdn.in_(bindparam("msisdns", expanding=True)))
_VERSIONS = select(s.card_key_versions).where(s.card_key_versions.c.iccid.in_(_ICCIDS))


def read_cards(c: Connection, iccids: Sequence[str]) -> dict[str, CardRead]:
    """The cards of C{iccids} the store has (absent ones are left out).

    @param iccids: at most L{MAX_CARDS}.
    """
    if len(iccids) > MAX_CARDS:
        raise ValueError(f"at most {MAX_CARDS} cards in one read, not {len(iccids)}")
    wanted = {"iccids": list(iccids)}
    cards = {card.iccid: card for card in map(r.card_from_row, c.execute(_CARDS, wanted))}
    keys: dict[str, list[CardKey]] = {iccid: [] for iccid in cards}
    for row in c.execute(_KEYS, wanted):
        key = r.card_key_from_row(row)
        if key.iccid in keys:
            keys[key.iccid].append(key)
    rows: dict[str, list[KeyVersion]] = {iccid: [] for iccid in cards}
    for row in c.execute(_VERSIONS, wanted):
        version = version_from_row(row)
        if version.iccid in rows:
            rows[version.iccid].append(version)
    return {
        iccid: (card, tuple(keys[iccid]), merged_versions(keys[iccid], rows[iccid]))
        for iccid, card in cards.items()
    }


CardName = tuple[str, str]
"""How a card is named: C{("iccid", ICCID)} or C{("msisdn", MSISDN digits)}."""


def find_cards(c: Connection, names: Sequence[CardName]) -> list[Card | None]:
    """The card each of C{names} names, or C{None} (in C{names}' order).

    @param names: at most L{MAX_CARDS}.
    """
    if len(names) > MAX_CARDS:
        raise ValueError(f"at most {MAX_CARDS} cards in one read, not {len(names)}")
    iccids = [value for kind, value in names if kind == "iccid"]
    msisdns = [value for kind, value in names if kind == "msisdn"]
    by_iccid: dict[str, Card] = {}
    by_msisdn: dict[str, Card] = {}
    if iccids:
        for card in map(r.card_from_row, c.execute(_CARDS, {"iccids": iccids})):
            by_iccid[card.iccid] = card
    if msisdns:
        for card in map(r.card_from_row, c.execute(_BY_MSISDN, {"msisdns": msisdns})):
            if card.msisdn is not None:
                by_msisdn[card.msisdn] = card
    return [(by_iccid if kind == "iccid" else by_msisdn).get(value) for kind, value in names]
