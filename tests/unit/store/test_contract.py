"""The IStore contract, one suite for every implementation.

L{StoreContractMixin} holds the tests; each backend's test case mixes it
into a C{SynchronousTestCase} and says how to make an empty store
(L{MemoryStoreContractTests} here, SQLite in C{test_sqlite}, PostgreSQL in
C{tests/integration/test_store_postgres}).  A behaviour the fake has and
the database lacks (or the reverse) fails one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import RootKey, Secret
from bipgw.store import (
    MAX_OTA_COUNTER,
    ApduTraceRecord,
    AuditRecord,
    CardUpsert,
    CounterExhaustedError,
    DuplicateRecordError,
    ImportReport,
    IStore,
    LineError,
    MemoryStore,
    MsisdnChange,
    Outcome,
    Service,
    SessionEvent,
    SessionRecord,
    StoreConflictError,
    StoreError,
    Tenant,
    UnknownRecordError,
    open_card_key,
    seal_card_key,
)

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


ICCID_A = "8988211000000000018"
ICCID_B = "8988211000000000026"
ICCID_C = "89882390000012345678"
ROOT = RootKey(Secret(bytes(range(32))))
T0 = 1_735_732_800  # 2025-01-01 12:00:00 UTC


def key(iccid: str, purpose: str = "KIC", kvn: int = 1, fill: int = 1) -> Any:
    """A sealed 16-byte key whose bytes are all C{fill}."""
    return seal_card_key(ROOT, iccid, purpose, kvn, "aes-128", Secret(bytes([fill]) * 16))


def card(iccid: str, **changes: Any) -> CardUpsert:
    """A card upsert with plausible fields."""
    fields: dict[str, Any] = {
        "imsi": "001010000000001",
        "psk_identity": iccid.encode(),
        "batch": "B0001",
        "customer": "demo",
        "card_type": "USIM-BIP",
        "extras": {"ACC": "0001"},
    }
    fields.update(changes)
    return CardUpsert(iccid, **fields)


def add(msisdn: str | None, iccid: str | None, at: int = T0, op: str = "ADD", imsi: Any = None):
    """An MSISDN change."""
    return MsisdnChange(op, msisdn, iccid, imsi, at, "test.csv")


def session(session_id: str, iccid: str | None = ICCID_A, opened_at: float = 10.0):
    """A session record in state REQUESTED."""
    return SessionRecord(session_id, "svc", "REQUESTED", opened_at, opened_at, iccid=iccid)


class StoreContractMixin(_Base):
    """Tests every L{IStore} must pass; mix into a C{SynchronousTestCase}."""

    store: IStore

    def make_store(self) -> IStore:
        """An empty, open store."""
        raise NotImplementedError()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(lambda: self.done(self.store.close()))

    # helpers -------------------------------------------------------------

    def done(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def fails(self, d: Deferred[Any], error: type[Exception]) -> Exception:
        return self.failureResultOf(d, error).value

    def outcomes(self, batch: Any) -> list[Outcome]:
        return [r.outcome for r in batch.results]

    def cards(self, *items: CardUpsert, atomic: bool = False) -> Any:
        return self.done(self.store.upsert_cards(list(items), atomic=atomic))

    def apply(self, *changes: MsisdnChange, atomic: bool = False) -> Any:
        return self.done(self.store.apply_msisdn_changes(changes, atomic=atomic, applied_at=99.0))

    # cards ---------------------------------------------------------------

    def test_upsertAddsThenReportsUnchanged(self) -> None:
        """A new card is added with its fields; the same upsert again changes nothing."""
        upsert = card(ICCID_A, keys=(key(ICCID_A),))
        self.assertEqual(self.outcomes(self.cards(upsert)), [Outcome.ADDED])
        got = self.done(self.store.get_card(ICCID_A))
        self.assertEqual(
            (got.imsi, got.psk_identity, got.batch, got.customer, got.card_type, dict(got.extras)),
            ("001010000000001", ICCID_A.encode(), "B0001", "demo", "USIM-BIP", {"ACC": "0001"}),
        )
        self.assertEqual((got.msisdn, got.ota_counter), (None, 0))
        again = card(ICCID_A, keys=(key(ICCID_A),))  # a new seal: other bytes, same key
        self.assertEqual(self.outcomes(self.cards(again)), [Outcome.UNCHANGED])

    def test_upsertUpdatesFieldsKeepsNumberAndCounter(self) -> None:
        """A changed field updates the card; its MSISDN and OTA counter stay."""
        self.cards(card(ICCID_A))
        self.apply(add("33600000001", ICCID_A))
        self.done(self.store.next_ota_counter(ICCID_A))
        self.assertEqual(
            self.outcomes(self.cards(card(ICCID_A, imsi="001010000000099"))), [Outcome.UPDATED]
        )
        got = self.done(self.store.get_card(ICCID_A))
        self.assertEqual(
            (got.imsi, got.msisdn, got.ota_counter), ("001010000000099", "33600000001", 1)
        )

    def test_keysReplacedBySlotOthersKept(self) -> None:
        """A new key for a (purpose, kvn) replaces that key only; the others stay."""
        self.cards(card(ICCID_A, keys=(key(ICCID_A, "KIC", fill=1), key(ICCID_A, "KID", fill=2))))
        result = self.cards(card(ICCID_A, keys=(key(ICCID_A, "KIC", fill=3),)))
        self.assertEqual(self.outcomes(result), [Outcome.UPDATED])
        keys = self.done(self.store.get_card_keys(ICCID_A))
        self.assertEqual(open_card_key(ROOT, keys.find("KIC", 1)).reveal(), b"\x03" * 16)
        self.assertEqual(open_card_key(ROOT, keys.find("KID", 1)).reveal(), b"\x02" * 16)
        self.assertIsNone(keys.find("KIK", 1))

    def test_keysStoredSealedOnly(self) -> None:
        """What the store returns opens only under the card's own label."""
        self.cards(card(ICCID_A, keys=(key(ICCID_A, fill=7),)))
        stored = self.done(self.store.get_card_keys(ICCID_A)).keys[0]
        self.assertNotIn(b"\x07" * 16, stored.sealed)
        self.assertEqual(stored.label, f"card:{ICCID_A}:KIC1")
        self.assertEqual(open_card_key(ROOT, stored).reveal(), b"\x07" * 16)

    def test_sameCardTwiceInOneBatch(self) -> None:
        """A batch naming a card twice adds it, then applies the second version."""
        result = self.cards(
            card(ICCID_A, keys=(key(ICCID_A, fill=1),)),
            card(ICCID_A, keys=(key(ICCID_A, fill=2),)),
            card(ICCID_A, keys=(key(ICCID_A, fill=2),)),
        )
        self.assertEqual(self.outcomes(result), [Outcome.ADDED, Outcome.UPDATED, Outcome.UNCHANGED])
        keys = self.done(self.store.get_card_keys(ICCID_A))
        self.assertEqual(open_card_key(ROOT, keys.find("KIC", 1)).reveal(), b"\x02" * 16)

    def test_pskIdentityTakenIsRejected(self) -> None:
        """A card claiming another card's PSK identity is rejected, naming the owner."""
        self.cards(card(ICCID_A))
        result = self.cards(card(ICCID_B, psk_identity=ICCID_A.encode()))
        (only,) = result.results
        self.assertEqual((only.outcome, only.field), (Outcome.REJECTED, "psk_identity"))
        self.assertIn(ICCID_A, only.reason)
        self.assertIsNone(self.done(self.store.get_card(ICCID_B)))

    def test_atomicBatchRollsBackOnRejection(self) -> None:
        """An atomic batch with one rejection writes nothing; a plain one keeps the rest."""
        self.cards(card(ICCID_A))
        bad = card(ICCID_C, psk_identity=ICCID_A.encode())
        result = self.cards(card(ICCID_B), bad, atomic=True)
        self.assertFalse(result.committed)
        self.assertIsNone(self.done(self.store.get_card(ICCID_B)))
        result = self.cards(card(ICCID_B), bad)
        self.assertTrue(result.committed)
        self.assertEqual(self.outcomes(result), [Outcome.ADDED, Outcome.REJECTED])
        self.assertIsNotNone(self.done(self.store.get_card(ICCID_B)))

    def test_lookups(self) -> None:
        """Cards are found by ICCID, MSISDN and PSK identity; unknown ones give None."""
        self.cards(card(ICCID_A), card(ICCID_B, psk_identity=b"\x00id-b\xff"))
        self.apply(add("33600000002", ICCID_B))
        self.assertEqual(self.done(self.store.card_by_msisdn("33600000002")).iccid, ICCID_B)
        self.assertEqual(self.done(self.store.card_by_psk_identity(b"\x00id-b\xff")).iccid, ICCID_B)
        self.assertEqual(self.done(self.store.get_card(ICCID_A)).iccid, ICCID_A)
        self.assertIsNone(self.done(self.store.get_card("8988211000000000000")))
        self.assertIsNone(self.done(self.store.card_by_msisdn("33600000009")))
        self.assertIsNone(self.done(self.store.card_by_psk_identity(b"nobody")))

    def test_listAndCountWithPaging(self) -> None:
        """Cards list in ICCID order a page at a time, optionally by batch."""
        iccids = [f"89882110000000000{n:02d}" for n in range(10, 15)]
        self.cards(*[card(i, batch="B1" if n % 2 else "B2") for n, i in enumerate(iccids)])
        first = self.done(self.store.list_cards(limit=2))
        second = self.done(self.store.list_cards(after=first[-1].iccid, limit=2))
        rest = self.done(self.store.list_cards(after=second[-1].iccid, limit=10))
        self.assertEqual([c.iccid for c in first + second + rest], iccids)
        b1 = self.done(self.store.list_cards(batch="B1"))
        self.assertEqual([c.iccid for c in b1], iccids[1::2])
        self.assertEqual(self.done(self.store.count_cards()), 5)
        self.assertEqual(self.done(self.store.count_cards(batch="B2")), 3)

    def test_keysOfUnknownCard(self) -> None:
        """Asking for the keys of a card that does not exist is an error."""
        self.fails(self.store.get_card_keys(ICCID_A), UnknownRecordError)

    def test_otaCounterIncrements(self) -> None:
        """Each card's counter goes 1, 2, 3... independently of the others."""
        self.cards(card(ICCID_A), card(ICCID_B))
        got = [self.done(self.store.next_ota_counter(ICCID_A)) for _ in range(3)]
        self.assertEqual(got, [1, 2, 3])
        self.assertEqual(self.done(self.store.next_ota_counter(ICCID_B)), 1)
        self.assertEqual(self.done(self.store.get_card(ICCID_A)).ota_counter, 3)

    def test_otaCounterManyCallers(self) -> None:
        """Many callers asking at once each get a distinct value, in call order."""
        self.cards(card(ICCID_A))
        pending = [self.store.next_ota_counter(ICCID_A) for _ in range(40)]
        self.assertEqual([self.done(d) for d in pending], list(range(1, 41)))

    def test_otaCounterOutcomesEachTheirOwn(self) -> None:
        """Requests made together succeed or fail each on their own: an unknown card
        or an exhausted counter fails that caller only, and the others still count."""
        self.cards(card(ICCID_A), card(ICCID_B, psk_identity=b"b"))
        self.done(self.store.raise_ota_counter(ICCID_B, MAX_OTA_COUNTER))
        pending = [
            self.store.next_ota_counter(ICCID_A),
            self.store.next_ota_counter("89000000000000000999"),
            self.store.next_ota_counter(ICCID_B),
            self.store.raise_ota_counter(ICCID_A, 10),
            self.store.next_ota_counter(ICCID_A),
        ]
        self.assertEqual(self.done(pending[0]), 1)
        self.fails(pending[1], UnknownRecordError)
        self.fails(pending[2], CounterExhaustedError)
        self.assertEqual([self.done(d) for d in pending[3:]], [10, 11])
        self.assertEqual(self.done(self.store.get_card(ICCID_A)).ota_counter, 11)

    def test_otaCounterUnknownCard(self) -> None:
        """No counter is allocated for an unknown card."""
        self.fails(self.store.next_ota_counter(ICCID_A), UnknownRecordError)

    def test_otaCounterExhausted(self) -> None:
        """At the 5-byte maximum the counter refuses to wrap and stays put."""
        self.cards(card(ICCID_A))
        self.assertEqual(
            self.done(self.store.raise_ota_counter(ICCID_A, MAX_OTA_COUNTER)), MAX_OTA_COUNTER
        )
        self.fails(self.store.next_ota_counter(ICCID_A), CounterExhaustedError)
        self.assertEqual(self.done(self.store.get_card(ICCID_A)).ota_counter, MAX_OTA_COUNTER)

    def test_raiseOtaCounterNeverLowers(self) -> None:
        """Raising the counter moves it up only; the next value follows it."""
        self.cards(card(ICCID_A))
        self.assertEqual(self.done(self.store.raise_ota_counter(ICCID_A, 100)), 100)
        self.assertEqual(self.done(self.store.raise_ota_counter(ICCID_A, 5)), 100)
        self.assertEqual(self.done(self.store.next_ota_counter(ICCID_A)), 101)
        self.fails(self.store.raise_ota_counter(ICCID_A, -1), StoreError)
        self.fails(self.store.raise_ota_counter(ICCID_B, 1), UnknownRecordError)

    # MSISDN ----------------------------------------------------------------

    def test_addChangeDelete(self) -> None:
        """ADD maps, CHG renumbers (freeing the old number), DEL unmaps; history keeps all."""
        self.cards(card(ICCID_A))
        result = self.apply(
            add("33600000001", ICCID_A, T0),
            add("33600000002", ICCID_A, T0 + 60, "CHG"),
            add(None, ICCID_A, T0 + 120, "DEL"),
        )
        self.assertEqual(self.outcomes(result), [Outcome.ADDED, Outcome.UPDATED, Outcome.UPDATED])
        self.assertIsNone(self.done(self.store.get_card(ICCID_A)).msisdn)
        history = self.done(self.store.msisdn_history(iccid=ICCID_A))
        self.assertEqual(
            [(h.operation, h.msisdn, h.previous_msisdn, h.effective_at) for h in history],
            [
                ("ADD", "33600000001", None, T0),
                ("CHG", "33600000002", "33600000001", T0 + 60),
                ("DEL", "33600000002", "33600000002", T0 + 120),
            ],
        )
        self.assertEqual((history[0].applied_at, history[0].source), (99.0, "test.csv"))
        by_old_number = self.done(self.store.msisdn_history(msisdn="33600000001"))
        self.assertEqual([h.operation for h in by_old_number], ["ADD", "CHG"])

    def test_chgFreesOldNumber(self) -> None:
        """After CHG the old number finds no card and can be given to another."""
        self.cards(card(ICCID_A), card(ICCID_B, psk_identity=b"b"))
        self.apply(add("33600000001", ICCID_A), add("33600000002", ICCID_A, T0 + 1, "CHG"))
        self.assertIsNone(self.done(self.store.card_by_msisdn("33600000001")))
        result = self.apply(add("33600000001", ICCID_B, T0 + 2))
        self.assertEqual(self.outcomes(result), [Outcome.ADDED])

    def test_delByNumberOnly(self) -> None:
        """DEL with only the number unmaps whichever card holds it."""
        self.cards(card(ICCID_A))
        self.apply(add("33600000001", ICCID_A))
        result = self.apply(add("33600000001", None, T0 + 5, "DEL"))
        self.assertEqual(self.outcomes(result), [Outcome.UPDATED])
        self.assertIsNone(self.done(self.store.get_card(ICCID_A)).msisdn)

    def test_sameChangesAgainAreUnchanged(self) -> None:
        """Applying the same records twice changes nothing and adds no history."""
        self.cards(card(ICCID_A))
        changes = (
            add("33600000001", ICCID_A, T0),
            add("33600000002", ICCID_A, T0 + 60, "CHG"),
            add("33600000002", None, T0 + 120, "DEL"),
        )
        self.apply(*changes)
        again = self.apply(*changes)
        self.assertEqual(self.outcomes(again), [Outcome.UNCHANGED] * 3)
        self.assertEqual(len(self.done(self.store.msisdn_history())), 3)

    def test_numberTakenRejected(self) -> None:
        """ADD or CHG to a number another card holds is rejected, naming that card."""
        self.cards(card(ICCID_A), card(ICCID_B, psk_identity=b"b"))
        self.apply(add("33600000001", ICCID_A))
        result = self.apply(add("33600000001", ICCID_B), add("33600000001", ICCID_B, op="CHG"))
        for r in result.results:
            self.assertEqual((r.outcome, r.field), (Outcome.REJECTED, "MSISDN"))
            self.assertIn(ICCID_A, r.reason)
        self.assertIsNone(self.done(self.store.get_card(ICCID_B)).msisdn)

    def test_addToNumberedCardRejected(self) -> None:
        """ADD to a card that already has another number asks for CHG."""
        self.cards(card(ICCID_A))
        self.apply(add("33600000001", ICCID_A))
        (r,) = self.apply(add("33600000002", ICCID_A, T0 + 1)).results
        self.assertEqual(r.outcome, Outcome.REJECTED)
        self.assertIn("CHG", r.reason)

    def test_unknownIccidRejected(self) -> None:
        """A record for an ICCID the store does not know is rejected, naming it."""
        (r,) = self.apply(add("33600000001", ICCID_A)).results
        self.assertEqual((r.outcome, r.field), (Outcome.REJECTED, "ICCID"))
        self.assertIn(ICCID_A, r.reason)
        self.assertEqual(self.done(self.store.msisdn_history()), [])

    def test_imsiMismatchRejected(self) -> None:
        """A record whose IMSI is not the card's is rejected; a matching one applies."""
        self.cards(card(ICCID_A))
        (r,) = self.apply(add("33600000001", ICCID_A, imsi="001019999999999")).results
        self.assertEqual((r.outcome, r.field), (Outcome.REJECTED, "IMSI"))
        (r,) = self.apply(add("33600000001", ICCID_A, imsi="001010000000001")).results
        self.assertEqual(r.outcome, Outcome.ADDED)

    def test_olderChangeRejected(self) -> None:
        """A change older than one already applied to the card is rejected."""
        self.cards(card(ICCID_A))
        self.apply(add("33600000001", ICCID_A, T0 + 100))
        (r,) = self.apply(add("33600000009", ICCID_A, T0, "CHG")).results
        self.assertEqual((r.outcome, r.field), (Outcome.REJECTED, "EFFECTIVE_TIME"))
        self.assertEqual(self.done(self.store.get_card(ICCID_A)).msisdn, "33600000001")

    def test_delWhenAlreadyUnmappedUnchanged(self) -> None:
        """DEL of a card without a number, or of a free number, is unchanged."""
        self.cards(card(ICCID_A))
        result = self.apply(add(None, ICCID_A, op="DEL"), add("33600000001", None, op="DEL"))
        self.assertEqual(self.outcomes(result), [Outcome.UNCHANGED, Outcome.UNCHANGED])

    def test_atomicMsisdnBatchRollsBack(self) -> None:
        """An atomic batch with one rejected change applies none of them."""
        self.cards(card(ICCID_A))
        result = self.apply(add("33600000001", ICCID_A), add("33600000002", ICCID_B), atomic=True)
        self.assertFalse(result.committed)
        self.assertEqual(self.outcomes(result), [Outcome.ADDED, Outcome.REJECTED])
        self.assertIsNone(self.done(self.store.get_card(ICCID_A)).msisdn)
        self.assertEqual(self.done(self.store.msisdn_history()), [])

    # tenants and services ------------------------------------------------------

    def test_tenantsAndServices(self) -> None:
        """Tenants and services are created, replaced, listed and deleted."""
        self.done(self.store.put_tenant(Tenant("t1", "Tenant One", True, 5.0)))
        self.done(self.store.put_tenant(Tenant("t0", "Zero")))
        self.done(self.store.put_tenant(Tenant("t1", "Renamed", False, 5.0)))
        self.assertEqual(
            self.done(self.store.list_tenants()),
            [Tenant("t0", "Zero"), Tenant("t1", "Renamed", False, 5.0)],
        )
        settings = {"tar": "000000", "max_sessions": 10, "secure": True, "note": None}
        self.done(self.store.put_service(Service("s1", "t1", "OTA", True, settings)))
        self.done(self.store.put_service(Service("s0", "t0")))
        got = self.done(self.store.get_service("s1"))
        self.assertEqual((got.tenant_id, got.name, dict(got.settings)), ("t1", "OTA", settings))
        self.assertEqual(
            [s.service_id for s in self.done(self.store.list_services())], ["s0", "s1"]
        )
        self.assertEqual(
            [s.service_id for s in self.done(self.store.list_services(tenant_id="t1"))], ["s1"]
        )
        self.fails(self.store.delete_tenant("t1"), StoreConflictError)
        self.done(self.store.delete_service("s1"))
        self.done(self.store.delete_tenant("t1"))
        self.assertIsNone(self.done(self.store.get_tenant("t1")))
        self.assertIsNone(self.done(self.store.get_service("s1")))

    def test_serviceNeedsTenant(self) -> None:
        """A service of an unknown tenant, and deleting what is not there, are errors."""
        self.fails(self.store.put_service(Service("s1", "nobody")), UnknownRecordError)
        self.fails(self.store.delete_service("s1"), UnknownRecordError)
        self.fails(self.store.delete_tenant("nobody"), UnknownRecordError)

    # sessions --------------------------------------------------------------------

    def test_endUnfinishedSessions(self) -> None:
        """Start-up recovery (issue 15): every session opened before the start that is
        not final is failed with the reason, at the time given, with one recorded
        transition after its last event; final sessions, and those opened since, stay."""
        states = {"s-req": "requested", "s-push": "pushing", "s-conn": "connected"}
        for sid, state in states.items():
            self.done(self.store.save_session(evolve(session(sid), state=state)))
        self.done(self.store.save_session(evolve(session("s-done"), state="closed", ended_at=11)))
        self.done(self.store.save_session(session("s-new", opened_at=60.0)))
        self.done(
            self.store.add_session_events(
                [SessionEvent("s-conn", n, 10.0 + n, "connected") for n in (1, 2)]
            )
        )
        ended = self.store.end_unfinished_sessions("gateway-restart", "why", 50.0, opened_before=50)
        self.assertEqual(self.done(ended), 3)
        for sid, state in states.items():
            got = self.done(self.store.get_session(sid))
            self.assertEqual(
                (got.state, got.reason, got.detail, got.ended_at, got.updated_at),
                ("failed", "gateway-restart", "why", 50.0, 50.0),
            )
            last = self.done(self.store.session_events(sid))[-1]
            self.assertEqual(
                (last.state, last.previous, last.reason, last.at),
                ("failed", state, "gateway-restart", 50.0),
            )
        self.assertEqual(self.done(self.store.session_events("s-conn"))[-1].seq, 3)
        self.assertEqual(self.done(self.store.get_session("s-done")).state, "closed")
        self.assertEqual(self.done(self.store.get_session("s-new")).state, "REQUESTED")
        again = self.store.end_unfinished_sessions("gateway-restart", "", 70.0, opened_before=50)
        self.assertEqual(self.done(again), 0)

    def test_sessionLifecycle(self) -> None:
        """A session is created, moves through states and finishes with a reason."""
        self.done(self.store.create_session(session("s1")))
        self.fails(self.store.create_session(session("s1")), DuplicateRecordError)
        self.done(self.store.update_session_state("s1", "PUSHING", 11.0))
        self.done(self.store.update_session_state("s1", "AWAITING_CARD", 12.0, detail="sent"))
        got = self.done(self.store.get_session("s1"))
        self.assertEqual((got.state, got.updated_at, got.detail), ("AWAITING_CARD", 12.0, "sent"))
        self.done(
            self.store.finish_session("s1", "FAILED", 20.0, reason="CARD_TIMEOUT", detail="x")
        )
        got = self.done(self.store.get_session("s1"))
        self.assertEqual(
            (got.state, got.ended_at, got.reason, got.detail, got.opened_at),
            ("FAILED", 20.0, "CARD_TIMEOUT", "x", 10.0),
        )

    def test_saveSessionReplacesSnapshot(self) -> None:
        """save_session creates the session, then replaces it whole."""
        record = session("s1")
        self.done(self.store.save_session(record))
        later = SessionRecord(
            "s1", "svc", "CLOSED", 10.0, 30.0, ICCID_A, "336", "agent", 2, 3, 30.0, None, "ok"
        )
        self.done(self.store.save_session(later))
        self.assertEqual(self.done(self.store.get_session("s1")), later)

    def test_writeHistoryInOneWrite(self) -> None:
        """write_history creates or replaces snapshots and appends events and traces."""
        self.done(self.store.save_session(session("s1")))
        later = SessionRecord(
            "s1", "svc", "CLOSED", 10.0, 30.0, ICCID_A, "336", "agent", 2, 3, 30.0, None, "ok"
        )
        fresh = session("s2", ICCID_B, opened_at=11.0)
        events = [SessionEvent("s1", 1, 1.0, "REQUESTED"), SessionEvent("s2", 1, 1.0, "REQUESTED")]
        traces = [ApduTraceRecord("s1", 1, 0, b"\x00\xa4\x00\x00", b"\x90\x00", 3.0, 3.5)]
        self.done(self.store.write_history([later, fresh], events, traces))
        self.assertEqual(self.done(self.store.get_session("s1")), later)
        self.assertEqual(self.done(self.store.get_session("s2")), fresh)
        self.assertEqual(self.done(self.store.session_events("s2")), events[1:])
        self.assertEqual(self.done(self.store.apdu_traces("s1")), traces)
        self.done(self.store.write_history([], [], []))

    def test_unknownSessionUpdates(self) -> None:
        """Updating or finishing a session that does not exist is an error."""
        self.fails(self.store.update_session_state("nope", "X", 1.0), UnknownRecordError)
        self.fails(self.store.finish_session("nope", "X", 1.0, reason=None), UnknownRecordError)
        self.assertIsNone(self.done(self.store.get_session("nope")))

    def test_listSessionsNewestFirst(self) -> None:
        """Sessions list newest first, per card, a page at a time."""
        for n in range(5):
            iccid = ICCID_A if n % 2 == 0 else ICCID_B
            self.done(self.store.create_session(session(f"s{n}", iccid, opened_at=float(n))))
        everything = self.done(self.store.list_sessions())
        self.assertEqual([s.session_id for s in everything], ["s4", "s3", "s2", "s1", "s0"])
        page = self.done(self.store.list_sessions(limit=2, offset=1))
        self.assertEqual([s.session_id for s in page], ["s3", "s2"])
        of_a = self.done(self.store.list_sessions(iccid=ICCID_A))
        self.assertEqual([s.session_id for s in of_a], ["s4", "s2", "s0"])

    def test_eventsAndTracesInOrder(self) -> None:
        """Events come back by seq and traces by script then index, whatever the insert order."""
        events = [
            SessionEvent("s1", 2, 2.0, "PUSHING", "PUSHING", None, "push delivered", False),
            SessionEvent("s1", 1, 1.0, "REQUESTED", None, None, "opened"),
            SessionEvent("s2", 1, 1.0, "REQUESTED"),
            SessionEvent("s1", 3, 3.0, "FAILED", "PUSHING", "PUSH_FAILED", "no route"),
        ]
        self.done(self.store.add_session_events(events))
        self.done(self.store.add_session_events([]))
        got = self.done(self.store.session_events("s1"))
        self.assertEqual(got, sorted(events[:2] + events[3:], key=lambda e: e.seq))
        traces = [
            ApduTraceRecord("s1", 2, 0, b"\x80\xca\x00\x66\x00", None, 5.0, None, "lost"),
            ApduTraceRecord("s1", 1, 1, b"\x00\xa4\x04\x00", b"\x90\x00", 3.0, 3.5),
            ApduTraceRecord("s1", 1, 0, b"\x00\xa4\x00\x00", b"\x6a\x82", 3.0, 3.5),
        ]
        self.done(self.store.add_apdu_traces(traces))
        self.assertEqual(self.done(self.store.apdu_traces("s1")), [traces[2], traces[1], traces[0]])
        self.assertEqual(self.done(self.store.apdu_traces("s2")), [])

    # audit and imports ---------------------------------------------------------

    def test_auditNewestFirst(self) -> None:
        """Audit records get increasing ids and list newest first, page by page."""
        ids = [
            self.done(self.store.add_audit(AuditRecord(float(n), "op", "tenant.put", f"t{n}")))
            for n in range(4)
        ]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 4)
        newest = self.done(self.store.list_audit(limit=2))
        self.assertEqual([r.target for r in newest], ["t3", "t2"])
        older = self.done(self.store.list_audit(before_id=newest[-1].audit_id))
        self.assertEqual([r.target for r in older], ["t1", "t0"])
        self.assertEqual(newest[0].audit_id, ids[-1])

    def test_importRecords(self) -> None:
        """Import reports are kept whole and found by id, by recency and by content hash."""
        report = ImportReport(
            kind="cards",
            file_name="B0001.out",
            sha256="ab" * 32,
            imported_at=7.5,
            records=3,
            added=2,
            rejected=1,
            errors=(LineError(14, "KIC1", "not hex (character 5 of 48)"), LineError(15, None, "x")),
            applied=True,
            header={"Batch": "B0001"},
            notices=("note",),
        )
        first = self.done(self.store.record_import(report))
        second = self.done(self.store.record_import(report))
        self.assertNotEqual(first.import_id, second.import_id)
        self.assertEqual(self.done(self.store.get_import(first.import_id)), first)
        self.assertEqual(first.errors, report.errors)
        self.assertEqual(dict(first.header), {"Batch": "B0001"})
        listed = self.done(self.store.list_imports())
        self.assertEqual([r.import_id for r in listed], [second.import_id, first.import_id])
        older = self.done(self.store.list_imports(before_id=second.import_id))
        self.assertEqual([r.import_id for r in older], [first.import_id])
        self.assertEqual(len(self.done(self.store.find_imports("ab" * 32))), 2)
        self.assertEqual(self.done(self.store.find_imports("cd" * 32)), [])
        self.assertIsNone(self.done(self.store.get_import(999)))

    def test_closedStoreRefuses(self) -> None:
        """After close, calls fail with a StoreError instead of touching anything."""
        self.done(self.store.close())
        self.fails(self.store.get_card(ICCID_A), StoreError)


class MemoryStoreContractTests(StoreContractMixin, SynchronousTestCase):
    """The memory store passes the contract."""

    def make_store(self) -> IStore:
        return MemoryStore()


class ProtocolTests(SynchronousTestCase):
    """The implementations have every IStore method with the same signature."""

    def test_signaturesMatch(self) -> None:
        """MemoryStore and SqlStore define each IStore method with its exact signature."""
        import inspect

        from bipgw.store import SqlStore

        names = [n for n, v in vars(IStore).items() if callable(v) and not n.startswith("_")]
        self.assertGreater(len(names), 30)
        for implementation in (MemoryStore, SqlStore):
            for name in names:
                self.assertEqual(
                    inspect.signature(getattr(implementation, name)),
                    inspect.signature(getattr(IStore, name)),
                    f"{implementation.__name__}.{name}",
                )
        self.assertIsInstance(MemoryStore(), IStore)
