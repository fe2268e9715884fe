# -*- test-case-name: tests.unit.fleet.test_cards -*-
"""The live cards: a bounded cache in front of the fleet's SQLite file.

Ten thousand idle cards must cost almost nothing (the target is 20 KB a
card, docs/simfleet.md), yet a card that gets an SMS must answer at once
with its whole state: registry, applets, counters, the partial
concatenated packets its OTA receiver holds.  So a card exists in memory
only while it is in use, as a L{LiveCard}; the others are rows in
C{cards.db}.  The pool keeps the most recently used cards up to
C{capacity}; when it is full the least recently used card that nothing
holds (no admin session, no queued request: see L{CardPool.pin}) is saved
if it changed and dropped.  Finding a card by MSISDN is an index lookup in
the file, so no per-card dictionary lives in memory either.

An evicted card forgets what only lived in memory, as a card does when the
handset restarts: the parts of a concatenated SMS still waiting for the
rest.  With C{capacity} in the thousands this needs a few thousand other
cards to get SMS between two parts of one push.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar

from twisted.logger import Logger

from simcard.card import SimCard
from simcard.ota_receiver import OtaReceiver
from simcard.state import FleetState, FleetStateError

__all__ = ["CardPool", "LiveCard"]


class LiveCard:
    """A card in memory, with its OTA receiver and how many things hold it.

    @ivar pins: admin sessions and session requests holding the card; a
        pinned card is never evicted (a session runs APDUs on this object).
    """

    __slots__ = ("card", "pins", "receiver")

    def __init__(self, card: SimCard, receiver: OtaReceiver) -> None:
        self.card = card
        self.receiver = receiver
        self.pins = 0

    def __repr__(self) -> str:
        return f"<LiveCard {self.card.iccid} pins={self.pins}>"


ReceiverFactory = Callable[[SimCard], OtaReceiver]
"""Builds a card's OTA receiver when the card is loaded."""


class CardPool:
    """The fleet's cards: loaded on demand, kept in an LRU, saved when dropped.

    @param capacity: cards kept in memory (pinned cards may exceed it).
    @param receiver_factory: builds each loaded card's OTA receiver.

    @ivar loads: cards loaded from the file so far.
    @ivar evictions: cards dropped from memory so far.
    """

    log: ClassVar[Logger] = Logger()

    def __init__(self, *, capacity: int, receiver_factory: ReceiverFactory) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._receiver_factory = receiver_factory
        self._state: FleetState | None = None
        self._live: OrderedDict[str, LiveCard] = OrderedDict()
        self.loads = 0
        self.evictions = 0

    # -- the file --------------------------------------------------------

    def open(self, state: FleetState) -> None:
        """Serve cards from C{state} (the pool then owns it and closes it)."""
        self._state = state

    @property
    def is_open(self) -> bool:
        """Whether a fleet file is attached."""
        return self._state is not None

    @property
    def state(self) -> FleetState:
        """The fleet file.

        @raise FleetStateError: the pool is not open.
        """
        if self._state is None:
            raise FleetStateError("the fleet is not running (no fleet file open)")
        return self._state

    def iccid_for_msisdn(self, msisdn: str) -> str | None:
        """The ICCID of the card with MSISDN C{msisdn}, if the fleet has one."""
        if self._state is None:
            return None
        return self._state.iccid_for_msisdn(msisdn)

    def card_count(self) -> int:
        """How many cards the fleet file holds."""
        return len(self.state)

    # -- live cards ------------------------------------------------------

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, iccid: object) -> bool:
        return iccid in self._live

    def live(self) -> list[LiveCard]:
        """The cards in memory, least recently used first."""
        return list(self._live.values())

    def get(self, iccid: str) -> LiveCard:
        """The card C{iccid}, loaded if needed, now the most recently used.

        @raise FleetStateError: the pool is not open, there is no such card
            (L{simcard.state.UnknownCardError}) or its row is corrupt.
        """
        live = self._live.get(iccid)
        if live is not None:
            self._live.move_to_end(iccid)
            return live
        card = self.state.load_card(iccid)
        live = LiveCard(card, self._receiver_factory(card))
        self._live[iccid] = live
        self.loads += 1
        self._evict()
        return live

    def pin(self, live: LiveCard) -> None:
        """Keep C{live} in memory until a matching L{unpin}."""
        live.pins += 1

    def unpin(self, live: LiveCard) -> None:
        """Release one L{pin}; the card may then be evicted."""
        if live.pins <= 0:
            raise RuntimeError(f"{live!r} is not pinned")
        live.pins -= 1
        self._evict()

    def _evict(self) -> None:
        if len(self._live) <= self.capacity:
            return
        for iccid in [i for i, live in self._live.items() if not live.pins]:
            if len(self._live) <= self.capacity:
                return
            live = self._live.pop(iccid)
            if live.card.dirty and self._state is not None:
                self._state.save_card(live.card)
            self.evictions += 1

    # -- persistence -----------------------------------------------------

    def save(self) -> int:
        """Save every changed live card and commit; return how many were saved."""
        if self._state is None:
            return 0
        saved = self._state.save_dirty(live.card for live in self._live.values())
        self._state.commit()
        return saved

    def close(self) -> int:
        """Save, commit and close the file; forget every live card.

        @return: how many cards were saved.
        """
        if self._state is None:
            return 0
        try:
            saved = self.save()
        finally:
            self._state.close()
            self._state = None
            self._live.clear()
        return saved
