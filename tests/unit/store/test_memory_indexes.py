"""The memory store's card and history indexes agree with a scan of what it
holds, whatever writes came before, and an atomic batch that is refused
leaves them as they were (its copy has indexes of its own)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import CardUpsert, MemoryStore, MsisdnChange
from bipgw.store._memory_state import MemoryState

ICCIDS = [f"8988211000000000{n:03d}" for n in range(6)]
NUMBERS = [f"4917000000{n:02d}" for n in range(5)]
PSKS = [bytes([0x30 + n]) * 8 for n in range(4)]

upserts = st.builds(
    lambda i, p: ("card", CardUpsert(ICCIDS[i], psk_identity=None if p is None else PSKS[p])),
    st.integers(0, len(ICCIDS) - 1),
    st.none() | st.integers(0, len(PSKS) - 1),
)
changes = st.builds(
    lambda op, n, i, t: (
        "msisdn",
        MsisdnChange(op, NUMBERS[n], None if i is None else ICCIDS[i], None, t),
    ),
    st.sampled_from(["ADD", "DEL", "CHG"]),
    st.integers(0, len(NUMBERS) - 1),
    st.none() | st.integers(0, len(ICCIDS) - 1),
    st.integers(1, 20),
)


def scanned(state: MemoryState) -> tuple[dict[bytes, str], dict[str, str]]:
    """The lookups as a scan of every card answers them (the first holder)."""
    psk: dict[bytes, str] = {}
    msisdn: dict[str, str] = {}
    for card in state.cards.values():
        if card.psk_identity is not None:
            psk.setdefault(card.psk_identity, card.iccid)
        if card.msisdn is not None:
            msisdn.setdefault(card.msisdn, card.iccid)
    return psk, msisdn


class IndexTests(SynchronousTestCase):
    def check(self, state: MemoryState) -> None:
        psk, msisdn = scanned(state)
        self.assertEqual(state.cards.by_psk, psk)
        self.assertEqual(state.cards.by_msisdn, msisdn)
        for iccid in ICCIDS:
            self.assertEqual(
                state.history.by_iccid.get(iccid, []),
                [h for h in state.history if h.iccid == iccid],
            )
        for number in NUMBERS:
            self.assertEqual(
                state.history.by_number.get(number, []),
                [h for h in state.history if number in (h.msisdn, h.previous_msisdn)],
            )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(upserts | changes, max_size=30), st.booleans())
    def test_indexesFollowEveryWrite(self, writes: list[tuple[str, object]], atomic: bool) -> None:
        store = MemoryStore()
        for kind, item in writes:
            before = scanned(store._state)
            if kind == "card":
                assert isinstance(item, CardUpsert)
                result = self.successResultOf(store.upsert_cards([item], atomic=atomic))
                if not result.committed:  # refused whole: nothing moved
                    self.assertEqual(scanned(store._state), before)
            else:
                assert isinstance(item, MsisdnChange)
                self.successResultOf(
                    store.apply_msisdn_changes([item], atomic=atomic, applied_at=1.0)
                )
            self.check(store._state)
            for identity in PSKS:
                found = self.successResultOf(store.card_by_psk_identity(identity))
                want = scanned(store._state)[0].get(identity)
                self.assertEqual(None if found is None else found.iccid, want)

    def test_copyIsIndependent(self) -> None:
        """An atomic batch works on a copy: writing to it leaves the
        original's indexes alone."""
        store = MemoryStore()
        self.successResultOf(store.upsert_cards([CardUpsert(ICCIDS[0], psk_identity=PSKS[0])]))
        copy = store._state.copy()
        copy.cards[ICCIDS[0]] = copy.cards[ICCIDS[0]].__class__(ICCIDS[0], psk_identity=PSKS[1])
        self.assertEqual(store._state.cards.by_psk, {PSKS[0]: ICCIDS[0]})
        self.assertEqual(copy.cards.by_psk, {PSKS[1]: ICCIDS[0]})
