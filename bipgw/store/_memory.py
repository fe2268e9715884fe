# -*- test-case-name: tests.unit.store.test_contract -*-
"""L{MemoryStore}: the application database in dictionaries.

It is the test fake for everything that uses a store (the engine, the push
builder, the importer) and the store of a gateway run without a database.
It answers synchronously, with already-fired Deferreds, and runs the same
contract suite as the SQL store, so tests written against it hold for the
database too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from attrs import evolve
from twisted.internet.defer import Deferred, fail, succeed

from bipgw.store._feed_types import FeedFile, Partner
from bipgw.store._memory_state import (
    MemoryState,
    apply_one,
    card_holding,
    end_unfinished,
    upsert_one,
)
from bipgw.store._msisdn_rows import apply_in_batches
from bipgw.store._types import (
    MAX_OTA_COUNTER,
    ApduTraceRecord,
    AuditRecord,
    BatchResult,
    Card,
    CardKeys,
    CardUpsert,
    CounterExhaustedError,
    DuplicateRecordError,
    ImportReport,
    MsisdnChange,
    MsisdnMapping,
    MsisdnRow,
    MsisdnRowsResult,
    Outcome,
    Service,
    SessionEvent,
    SessionRecord,
    StoreConflictError,
    StoreError,
    Tenant,
    UnknownRecordError,
)

_T = TypeVar("_T")


class MemoryStore:
    """An L{IStore} in memory: the fake for tests and database-less runs."""

    def __init__(self) -> None:
        self._state = MemoryState()
        self._closed = False

    def _call(self, operation: Callable[[], _T]) -> Deferred[_T]:
        if self._closed:
            return fail(StoreError("the store is closed"))
        try:
            return succeed(operation())
        except Exception:
            # As the SQL store does: every error arrives through the Deferred.
            return fail()

    # -- cards -----------------------------------------------------------

    def upsert_cards(
        self, cards: Sequence[CardUpsert], *, atomic: bool = False
    ) -> Deferred[BatchResult]:
        """See L{IStore.upsert_cards}."""

        def run() -> BatchResult:
            state = self._state.copy() if atomic else self._state
            results = tuple(upsert_one(state, item) for item in cards)
            rejected = any(r.outcome is Outcome.REJECTED for r in results)
            if atomic and rejected:
                return BatchResult(results, committed=False)
            self._state = state
            return BatchResult(results, committed=True)

        return self._call(run)

    def upsert_card_batches(
        self,
        batches: Iterable[Sequence[CardUpsert]],
        *,
        atomic: bool = False,
        on_batch: Callable[[BatchResult], None],
    ) -> Deferred[bool]:
        """See L{IStore.upsert_card_batches} (here on the caller's thread: no I/O)."""

        def run() -> bool:
            state = self._state.copy() if atomic else self._state
            for batch in batches:
                results = tuple(upsert_one(state, item) for item in batch)
                rejected = any(r.outcome is Outcome.REJECTED for r in results)
                on_batch(BatchResult(results, committed=not (atomic and rejected)))
                if atomic and rejected:
                    return False
            self._state = state
            return True

        return self._call(run)

    def get_card(self, iccid: str) -> Deferred[Card | None]:
        """See L{IStore.get_card}."""
        return self._call(lambda: self._state.cards.get(iccid))

    def card_by_msisdn(self, msisdn: str) -> Deferred[Card | None]:
        """See L{IStore.card_by_msisdn}."""
        return self._call(lambda: card_holding(self._state, msisdn))

    def card_by_psk_identity(self, identity: bytes) -> Deferred[Card | None]:
        """See L{IStore.card_by_psk_identity}."""
        return self._call(lambda: self._state.cards.with_psk(identity))

    def list_cards(
        self, *, after: str | None = None, limit: int = 100, batch: str | None = None
    ) -> Deferred[list[Card]]:
        """See L{IStore.list_cards}."""

        def run() -> list[Card]:
            chosen = [
                c
                for iccid, c in sorted(self._state.cards.items())
                if (after is None or iccid > after) and (batch is None or c.batch == batch)
            ]
            return chosen[: max(limit, 0)]

        return self._call(run)

    def count_cards(self, *, batch: str | None = None) -> Deferred[int]:
        """See L{IStore.count_cards}."""
        return self._call(
            lambda: sum(1 for c in self._state.cards.values() if batch in (None, c.batch))
        )

    def get_card_keys(self, iccid: str) -> Deferred[CardKeys]:
        """See L{IStore.get_card_keys}."""

        def run() -> CardKeys:
            self._card(self._state, iccid)
            keys = self._state.keys.get(iccid, {})
            return CardKeys(iccid, tuple(keys[k] for k in sorted(keys)))

        return self._call(run)

    @staticmethod
    def _card(state: MemoryState, iccid: str) -> Card:
        try:
            return state.cards[iccid]
        except KeyError:
            raise UnknownRecordError(f"no card with ICCID {iccid}") from None

    def next_ota_counter(self, iccid: str) -> Deferred[int]:
        """See L{IStore.next_ota_counter}."""

        def run() -> int:
            card = self._card(self._state, iccid)
            if card.ota_counter >= MAX_OTA_COUNTER:
                raise CounterExhaustedError(f"the OTA counter of card {iccid} is exhausted")
            self._state.cards[iccid] = evolve(card, ota_counter=card.ota_counter + 1)
            return card.ota_counter + 1

        return self._call(run)

    def raise_ota_counter(self, iccid: str, at_least: int) -> Deferred[int]:
        """See L{IStore.raise_ota_counter}."""

        def run() -> int:
            card = self._card(self._state, iccid)
            if not 0 <= at_least <= MAX_OTA_COUNTER:
                raise StoreError(f"an OTA counter is 0 to {MAX_OTA_COUNTER}, not {at_least}")
            value = max(card.ota_counter, at_least)
            self._state.cards[iccid] = evolve(card, ota_counter=value)
            return value

        return self._call(run)

    # -- MSISDN ----------------------------------------------------------

    def apply_msisdn_changes(
        self, changes: Sequence[MsisdnChange], *, atomic: bool = False, applied_at: float
    ) -> Deferred[BatchResult]:
        """See L{IStore.apply_msisdn_changes}."""

        def run() -> BatchResult:
            state = self._state.copy() if atomic else self._state
            results = tuple(
                apply_one(state, index, change, applied_at) for index, change in enumerate(changes)
            )
            if atomic and any(r.outcome is Outcome.REJECTED for r in results):
                return BatchResult(results, committed=False)
            self._state = state
            return BatchResult(results, committed=True)

        return self._call(run)

    def apply_msisdn_rows(
        self,
        rows: Iterable[MsisdnRow],
        *,
        atomic: bool = False,
        applied_at: float,
        source: str | None,
        max_errors: int,
        batch_size: int = 10_000,
    ) -> Deferred[MsisdnRowsResult]:
        """See L{IStore.apply_msisdn_rows} (the rows all read before anything changes)."""

        def run() -> MsisdnRowsResult:
            state = self._state.copy()

            def apply(changes: Sequence[MsisdnChange]) -> BatchResult:
                results = (apply_one(state, i, c, applied_at) for i, c in enumerate(changes))
                return BatchResult(tuple(results), committed=True)

            result = apply_in_batches(
                rows, apply, source=source, max_errors=max_errors, batch_size=batch_size
            )
            if atomic and result.rejected:
                return evolve(result, committed=False)
            self._state = state
            return result

        return self._call(run)

    def msisdn_history(
        self, *, iccid: str | None = None, msisdn: str | None = None
    ) -> Deferred[list[MsisdnMapping]]:
        """See L{IStore.msisdn_history}."""
        return self._call(
            lambda: [
                h
                for h in self._state.history
                if (iccid is None or h.iccid == iccid)
                and (msisdn is None or msisdn in (h.msisdn, h.previous_msisdn))
            ]
        )

    # -- tenants and services ----------------------------------------------

    def put_tenant(self, tenant: Tenant) -> Deferred[None]:
        """See L{IStore.put_tenant}."""
        return self._call(lambda: self._state.tenants.__setitem__(tenant.tenant_id, tenant))

    def get_tenant(self, tenant_id: str) -> Deferred[Tenant | None]:
        """See L{IStore.get_tenant}."""
        return self._call(lambda: self._state.tenants.get(tenant_id))

    def list_tenants(self) -> Deferred[list[Tenant]]:
        """See L{IStore.list_tenants}."""
        return self._call(lambda: [t for _, t in sorted(self._state.tenants.items())])

    def delete_tenant(self, tenant_id: str) -> Deferred[None]:
        """See L{IStore.delete_tenant}."""

        def run() -> None:
            if tenant_id not in self._state.tenants:
                raise UnknownRecordError(f"no tenant {tenant_id!r}")
            if any(s.tenant_id == tenant_id for s in self._state.services.values()):
                raise StoreConflictError(f"tenant {tenant_id!r} still has services")
            del self._state.tenants[tenant_id]

        return self._call(run)

    def put_service(self, service: Service) -> Deferred[None]:
        """See L{IStore.put_service}."""

        def run() -> None:
            if service.tenant_id not in self._state.tenants:
                raise UnknownRecordError(f"no tenant {service.tenant_id!r}")
            self._state.services[service.service_id] = service

        return self._call(run)

    def get_service(self, service_id: str) -> Deferred[Service | None]:
        """See L{IStore.get_service}."""
        return self._call(lambda: self._state.services.get(service_id))

    def list_services(self, *, tenant_id: str | None = None) -> Deferred[list[Service]]:
        """See L{IStore.list_services}."""
        return self._call(
            lambda: [
                s
                for _, s in sorted(self._state.services.items())
                if tenant_id in (None, s.tenant_id)
            ]
        )

    def delete_service(self, service_id: str) -> Deferred[None]:
        """See L{IStore.delete_service}."""

        def run() -> None:
            if self._state.services.pop(service_id, None) is None:
                raise UnknownRecordError(f"no service {service_id!r}")

        return self._call(run)

    # -- sessions ------------------------------------------------------------

    def create_session(self, record: SessionRecord) -> Deferred[None]:
        """See L{IStore.create_session}."""

        def run() -> None:
            if record.session_id in self._state.sessions:
                raise DuplicateRecordError(f"session {record.session_id} already exists")
            self._state.sessions[record.session_id] = record

        return self._call(run)

    def save_session(self, record: SessionRecord) -> Deferred[None]:
        """See L{IStore.save_session}."""
        return self._call(lambda: self._state.sessions.__setitem__(record.session_id, record))

    def _session(self, session_id: str) -> SessionRecord:
        try:
            return self._state.sessions[session_id]
        except KeyError:
            raise UnknownRecordError(f"no session {session_id}") from None

    def update_session_state(
        self, session_id: str, state: str, at: float, *, detail: str | None = None
    ) -> Deferred[None]:
        """See L{IStore.update_session_state}."""

        def run() -> None:
            record = self._session(session_id)
            changes = {"state": state, "updated_at": at}
            record = evolve(record, **changes)  # type: ignore[arg-type]
            if detail is not None:
                record = evolve(record, detail=detail)
            self._state.sessions[session_id] = record

        return self._call(run)

    def finish_session(
        self, session_id: str, state: str, at: float, *, reason: str | None, detail: str = ""
    ) -> Deferred[None]:
        """See L{IStore.finish_session}."""

        def run() -> None:
            record = self._session(session_id)
            self._state.sessions[session_id] = evolve(
                record, state=state, updated_at=at, ended_at=at, reason=reason, detail=detail
            )

        return self._call(run)

    def get_session(self, session_id: str) -> Deferred[SessionRecord | None]:
        """See L{IStore.get_session}."""
        return self._call(lambda: self._state.sessions.get(session_id))

    def list_sessions(
        self, *, iccid: str | None = None, limit: int = 100, offset: int = 0
    ) -> Deferred[list[SessionRecord]]:
        """See L{IStore.list_sessions}."""

        def run() -> list[SessionRecord]:
            chosen = [s for s in self._state.sessions.values() if iccid in (None, s.iccid)]
            chosen.sort(key=lambda s: (s.opened_at, s.session_id), reverse=True)
            return chosen[max(offset, 0) : max(offset, 0) + max(limit, 0)]

        return self._call(run)

    def write_history(
        self,
        sessions: Sequence[SessionRecord],
        events: Sequence[SessionEvent],
        traces: Sequence[ApduTraceRecord],
    ) -> Deferred[None]:
        """See L{IStore.write_history}."""

        def run() -> None:
            for record in sessions:
                self._state.sessions[record.session_id] = record
            self._state.events.extend(events)
            self._state.traces.extend(traces)

        return self._call(run)

    def add_session_events(self, events: Sequence[SessionEvent]) -> Deferred[None]:
        """See L{IStore.add_session_events}."""
        return self._call(lambda: self._state.events.extend(events))

    def end_unfinished_sessions(
        self, reason: str, detail: str, at: float, *, opened_before: float
    ) -> Deferred[int]:
        """See L{IStore.end_unfinished_sessions}."""
        return self._call(lambda: end_unfinished(self._state, reason, detail, at, opened_before))

    def session_events(self, session_id: str) -> Deferred[list[SessionEvent]]:
        """See L{IStore.session_events}."""
        return self._call(
            lambda: sorted(
                (e for e in self._state.events if e.session_id == session_id),
                key=lambda e: e.seq,
            )
        )

    def add_apdu_traces(self, traces: Sequence[ApduTraceRecord]) -> Deferred[None]:
        """See L{IStore.add_apdu_traces}."""
        return self._call(lambda: self._state.traces.extend(traces))

    def apdu_traces(self, session_id: str) -> Deferred[list[ApduTraceRecord]]:
        """See L{IStore.apdu_traces}."""
        return self._call(
            lambda: sorted(
                (t for t in self._state.traces if t.session_id == session_id),
                key=lambda t: (t.script, t.index),
            )
        )

    # -- audit and imports ---------------------------------------------------

    def add_audit(self, record: AuditRecord) -> Deferred[int]:
        """See L{IStore.add_audit}."""

        def run() -> int:
            audit_id = len(self._state.audit) + 1
            self._state.audit.append(evolve(record, audit_id=audit_id))
            return audit_id

        return self._call(run)

    def list_audit(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> Deferred[list[AuditRecord]]:
        """See L{IStore.list_audit}."""

        def run() -> list[AuditRecord]:
            chosen = [
                r
                for r in reversed(self._state.audit)
                if before_id is None or (r.audit_id or 0) < before_id
            ]
            return chosen[: max(limit, 0)]

        return self._call(run)

    def record_import(self, report: ImportReport) -> Deferred[ImportReport]:
        """See L{IStore.record_import}."""

        def run() -> ImportReport:
            kept = evolve(report, import_id=len(self._state.imports) + 1)
            self._state.imports.append(kept)
            return kept

        return self._call(run)

    def get_import(self, import_id: int) -> Deferred[ImportReport | None]:
        """See L{IStore.get_import}."""
        return self._call(
            lambda: next((r for r in self._state.imports if r.import_id == import_id), None)
        )

    def list_imports(
        self, *, limit: int = 50, before_id: int | None = None
    ) -> Deferred[list[ImportReport]]:
        """See L{IStore.list_imports}."""

        def run() -> list[ImportReport]:
            chosen = [
                r
                for r in reversed(self._state.imports)
                if before_id is None or (r.import_id or 0) < before_id
            ]
            return chosen[: max(limit, 0)]

        return self._call(run)

    def find_imports(self, sha256: str) -> Deferred[list[ImportReport]]:
        """See L{IStore.find_imports}."""
        return self._call(lambda: [r for r in self._state.imports if r.sha256 == sha256])

    # -- file feed partners and their files ------------------------------------

    def put_partner(self, partner: Partner) -> Deferred[None]:
        """See L{IStore.put_partner}."""
        return self._call(lambda: self._state.partners.__setitem__(partner.name, partner))

    def get_partner(self, name: str) -> Deferred[Partner | None]:
        """See L{IStore.get_partner}."""
        return self._call(lambda: self._state.partners.get(name))

    def list_partners(self) -> Deferred[list[Partner]]:
        """See L{IStore.list_partners}."""
        return self._call(lambda: [p for _, p in sorted(self._state.partners.items())])

    def add_feed_file(self, record: FeedFile) -> Deferred[None]:
        """See L{IStore.add_feed_file}."""

        def run() -> None:
            key = (record.partner, record.sha256)
            if key in self._state.feed_files:
                raise DuplicateRecordError(
                    f"partner {record.partner} already delivered {record.sha256}"
                )
            self._state.feed_files[key] = record

        return self._call(run)

    def get_feed_file(self, partner: str, sha256: str) -> Deferred[FeedFile | None]:
        """See L{IStore.get_feed_file}."""
        return self._call(lambda: self._state.feed_files.get((partner, sha256)))

    def start(self) -> Deferred[None]:
        """See L{IStore.start}: a memory store is ready when made."""
        return self._call(lambda: None)

    def close(self) -> Deferred[None]:
        """See L{IStore.close}."""
        self._closed = True
        return succeed(None)
