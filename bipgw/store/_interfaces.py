# -*- test-case-name: tests.unit.store.test_contract,tests.unit.store.test_sqlite -*-
"""The application database's interface, and the rules every store applies.

L{IStore} is a L{typing.Protocol}: mypy checks the memory store, the SQL
store and any fake against it structurally (mypy-zope is not part of the
toolchain, so a zope interface would go unchecked).  Every method returns a
L{Deferred}: the SQL store runs its queries in a thread pool, the memory
store answers at once, and callers cannot tell the difference.

One shared test suite (C{tests/unit/store/test_contract.py}) runs against every
implementation, so "the fake behaves like the database" is checked, not
hoped.

The MSISDN rules live here, as the pure function L{plan_msisdn_change},
because both stores must apply exactly the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from attrs import frozen
from twisted.internet.defer import Deferred

from bipgw.store._feed_types import FeedFile, Partner
from bipgw.store._types import (
    ApduTraceRecord,
    AuditRecord,
    BatchResult,
    Card,
    CardKeys,
    CardUpsert,
    ImportReport,
    MsisdnChange,
    MsisdnMapping,
    MsisdnOperation,
    MsisdnRow,
    MsisdnRowsResult,
    Outcome,
    Service,
    SessionEvent,
    SessionRecord,
    Tenant,
)


@runtime_checkable
class IStore(Protocol):
    """The gateway's application database.

    Errors arrive as failures of the returned Deferred, all derived from
    L{bipgw.store.StoreError}.
    """

    # -- cards -----------------------------------------------------------

    def upsert_cards(
        self, cards: Sequence[CardUpsert], *, atomic: bool = False
    ) -> Deferred[BatchResult]:
        """Insert or update cards and their sealed keys, in one transaction.

        Each card is C{added}, C{updated} (a field differs, or keys were
        given) or C{unchanged}; it is C{rejected} when its PSK identity
        belongs to another card.  With C{atomic}, one rejection rolls the
        whole batch back (C{committed=False}).
        """

    def upsert_card_batches(
        self,
        batches: Iterable[Sequence[CardUpsert]],
        *,
        atomic: bool = False,
        on_batch: Callable[[BatchResult], None],
    ) -> Deferred[bool]:
        """L{upsert_cards} for a stream of batches, consumed off the reactor thread.

        C{batches} is iterated in the store's own thread (an importer's
        parsing, unwrapping and sealing run there, one batch at a time, so
        a million cards never sit in memory).  Without C{atomic} each batch
        is one transaction; with it, every batch is in one transaction and
        the first rejection rolls them all back and stops.  C{on_batch}
        gets each batch's result, in that thread.  Fires with whether the
        writes were committed.
        """

    def get_card(self, iccid: str) -> Deferred[Card | None]:
        """The card with this (normalised) ICCID, or C{None}."""

    def card_by_msisdn(self, msisdn: str) -> Deferred[Card | None]:
        """The card the number is currently mapped to, or C{None}."""

    def card_by_psk_identity(self, identity: bytes) -> Deferred[Card | None]:
        """The card with this SCP81 PSK identity, or C{None}."""

    def list_cards(
        self, *, after: str | None = None, limit: int = 100, batch: str | None = None
    ) -> Deferred[list[Card]]:
        """Cards in ICCID order, from just after C{after}, at most C{limit}.

        Keyset paging: pass the last ICCID of a page to get the next one.
        """

    def count_cards(self, *, batch: str | None = None) -> Deferred[int]:
        """How many cards there are (in C{batch}, if given)."""

    def get_card_keys(self, iccid: str) -> Deferred[CardKeys]:
        """Every sealed key of the card (empty when it has none).

        @raise UnknownRecordError: if there is no such card.
        """

    def next_ota_counter(self, iccid: str) -> Deferred[int]:
        """Allocate the card's next OTA counter: last + 1, durably.

        The new value is committed before the Deferred fires, so values are
        strictly increasing across concurrent callers and restarts.

        @raise UnknownRecordError: if there is no such card.
        @raise CounterExhaustedError: past L{MAX_OTA_COUNTER}.
        """

    def raise_ota_counter(self, iccid: str, at_least: int) -> Deferred[int]:
        """Make the last allocated counter at least C{at_least}; the new last value.

        For resynchronising with a card that reported a higher counter; the
        counter never goes down.
        """

    # -- MSISDN mapping ----------------------------------------------------

    def apply_msisdn_changes(
        self, changes: Sequence[MsisdnChange], *, atomic: bool = False, applied_at: float
    ) -> Deferred[BatchResult]:
        """Apply ADD/DEL/CHG records in the order given (sort by time first).

        Each result's key is the change's index in C{changes}.  The rules
        are L{plan_msisdn_change}'s.  With C{atomic}, one rejection rolls
        everything back.
        """

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
        """Apply a whole MSISDN file's valid lines, in one transaction.

        The lines are applied in effective-time order (their order in
        C{rows} for equal times) with exactly the rules and the results of
        L{apply_msisdn_changes} given the same changes in that order, each
        history row recording C{source}.  C{rows} is iterated in the
        store's own thread, once (an importer parses there); an exception
        it raises rolls everything back and fails the Deferred.  With
        C{atomic}, one rejection rolls everything back (C{committed} is
        then C{False}).  A crash leaves nothing of the file applied.
        C{batch_size}: the changes handled (or history rows written) at a
        time within it.
        """

    def msisdn_history(
        self, *, iccid: str | None = None, msisdn: str | None = None
    ) -> Deferred[list[MsisdnMapping]]:
        """Applied changes touching the card or number, oldest first."""

    # -- tenants and services ------------------------------------------------

    def put_tenant(self, tenant: Tenant) -> Deferred[None]:
        """Create the tenant, or replace the one with the same id."""

    def get_tenant(self, tenant_id: str) -> Deferred[Tenant | None]:
        """The tenant, or C{None}."""

    def list_tenants(self) -> Deferred[list[Tenant]]:
        """Every tenant, by id."""

    def delete_tenant(self, tenant_id: str) -> Deferred[None]:
        """Remove a tenant that has no services left.

        @raise UnknownRecordError: if there is none.
        @raise StoreConflictError: if it still has services.
        """

    def put_service(self, service: Service) -> Deferred[None]:
        """Create or replace a service.

        @raise UnknownRecordError: if its tenant does not exist.
        """

    def get_service(self, service_id: str) -> Deferred[Service | None]:
        """The service, or C{None}."""

    def list_services(self, *, tenant_id: str | None = None) -> Deferred[list[Service]]:
        """Services by id (of one tenant, if given)."""

    def delete_service(self, service_id: str) -> Deferred[None]:
        """Remove a service.

        @raise UnknownRecordError: if there is none.
        """

    # -- sessions ------------------------------------------------------------

    def create_session(self, record: SessionRecord) -> Deferred[None]:
        """Record a new session.

        @raise DuplicateRecordError: if the id is taken.
        """

    def save_session(self, record: SessionRecord) -> Deferred[None]:
        """Create the session or replace its snapshot (for recorders)."""

    def update_session_state(
        self, session_id: str, state: str, at: float, *, detail: str | None = None
    ) -> Deferred[None]:
        """Move the session to C{state} at time C{at}.

        @raise UnknownRecordError: if there is no such session.
        """

    def finish_session(
        self, session_id: str, state: str, at: float, *, reason: str | None, detail: str = ""
    ) -> Deferred[None]:
        """End the session in its final C{state} with a reason (C{None}: normal close).

        @raise UnknownRecordError: if there is no such session.
        """

    def get_session(self, session_id: str) -> Deferred[SessionRecord | None]:
        """The session's latest snapshot, or C{None}."""

    def list_sessions(
        self, *, iccid: str | None = None, limit: int = 100, offset: int = 0
    ) -> Deferred[list[SessionRecord]]:
        """Sessions, newest first (of one card, if given)."""

    def write_history(
        self,
        sessions: Sequence[SessionRecord],
        events: Sequence[SessionEvent],
        traces: Sequence[ApduTraceRecord],
    ) -> Deferred[None]:
        """Save session snapshots (create or replace), then append events and traces.

        All in one write (one transaction, one commit): the recorder's
        batch costs the disk one flush, not one per session.
        """

    def add_session_events(self, events: Sequence[SessionEvent]) -> Deferred[None]:
        """Append transitions, in one write."""

    def end_unfinished_sessions(
        self, reason: str, detail: str, at: float, *, opened_before: float
    ) -> Deferred[int]:
        """End every session opened before C{opened_before} that is not final.

        For start-up recovery: a session left C{requested}, C{pushing},
        C{connected} ... by a gateway that died is C{failed} with C{reason}
        and C{detail} at C{at}, and gets a recorded transition (the next
        C{seq} of its history), in one transaction.  Sessions opened since
        (by this run) are left alone.

        @return: how many sessions were ended.
        """

    def session_events(self, session_id: str) -> Deferred[list[SessionEvent]]:
        """A session's history, in C{seq} order."""

    def add_apdu_traces(self, traces: Sequence[ApduTraceRecord]) -> Deferred[None]:
        """Append APDU traces, in one write."""

    def apdu_traces(self, session_id: str) -> Deferred[list[ApduTraceRecord]]:
        """A session's APDU trace, by script then index."""

    # -- audit and imports ---------------------------------------------------

    def add_audit(self, record: AuditRecord) -> Deferred[int]:
        """Append to the audit log; the new record's id."""

    def list_audit(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> Deferred[list[AuditRecord]]:
        """Audit records, newest first, older than C{before_id} if given."""

    def record_import(self, report: ImportReport) -> Deferred[ImportReport]:
        """Keep an import report; the same report with its C{import_id}."""

    def get_import(self, import_id: int) -> Deferred[ImportReport | None]:
        """One import report, or C{None}."""

    def list_imports(
        self, *, limit: int = 50, before_id: int | None = None
    ) -> Deferred[list[ImportReport]]:
        """Import reports, newest first."""

    def find_imports(self, sha256: str) -> Deferred[list[ImportReport]]:
        """Earlier imports of a file with this content, oldest first."""

    # -- file feed partners and their files ------------------------------------

    def put_partner(self, partner: Partner) -> Deferred[None]:
        """Create the feed partner, or replace the one of the same name."""

    def get_partner(self, name: str) -> Deferred[Partner | None]:
        """The feed partner, or C{None}."""

    def list_partners(self) -> Deferred[list[Partner]]:
        """Every feed partner, by name."""

    def add_feed_file(self, record: FeedFile) -> Deferred[None]:
        """Remember a processed file.

        @raise DuplicateRecordError: the partner already delivered this content.
        """

    def get_feed_file(self, partner: str, sha256: str) -> Deferred[FeedFile | None]:
        """The partner's earlier file with this content, or C{None}."""

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Make the store ready: connect, create or migrate the schema.

        A store is made without touching its database (so a gateway can
        hand it to all its parts when it is built) and started once, when
        the gateway starts; nothing else may be called before this fires.
        """

    def close(self) -> Deferred[None]:
        """Release connections and threads; the store is unusable afterwards."""


@frozen
class MsisdnPlan:
    """What applying one MSISDN change does (L{plan_msisdn_change}).

    When C{outcome} is L{Outcome.ADDED} (C{ADD}) or L{Outcome.UPDATED}
    (C{CHG}, C{DEL}), the card C{iccid}
    gets C{new_msisdn} (C{None}: unmapped) and the history gains a row.
    """

    outcome: Outcome
    reason: str | None = None
    field: str | None = None
    iccid: str | None = None
    new_msisdn: str | None = None
    previous_msisdn: str | None = None


def plan_msisdn_change(
    change: MsisdnChange,
    *,
    card: Card | None,
    holder: Card | None,
    latest_at: int | None,
    duplicate: bool,
) -> MsisdnPlan:
    """Decide what one MSISDN change does, given the current state.

    @param card: the card named by C{change.iccid} (C{None}: no ICCID given,
        or no such card).
    @param holder: the card C{change.msisdn} is mapped to now, if any.
    @param latest_at: the latest effective time already applied to this
        card or number, if any.
    @param duplicate: whether the very same change is already in the history.

    The rules (documented in C{docs/file-formats.md}):
      - the same change applied again is C{unchanged} (re-imports are safe);
      - a change older than one already applied to the card or number is
        rejected: applying it would rewind the mapping;
      - C{ADD} maps a free number to a card without one; C{CHG} gives the
        card a new free number; C{DEL} unmaps (by number, card or both);
        asking for the state that already holds is C{unchanged};
      - a number mapped to another card, or a given IMSI that differs from
        the card's, is rejected with the reason.
    """
    op = change.operation
    if duplicate:
        return MsisdnPlan(Outcome.UNCHANGED)
    if change.iccid is not None and card is None:
        return MsisdnPlan(Outcome.REJECTED, f"unknown ICCID {change.iccid}", "ICCID")
    if card is None:
        # DEL by number only.
        if holder is None:
            return MsisdnPlan(Outcome.UNCHANGED)
        card = holder
    if change.imsi is not None and card.imsi is not None and change.imsi != card.imsi:
        return MsisdnPlan(
            Outcome.REJECTED, f"IMSI {change.imsi} is not the IMSI of card {card.iccid}", "IMSI"
        )
    if latest_at is not None and latest_at > change.effective_at:
        return MsisdnPlan(
            Outcome.REJECTED,
            f"a later change (effective {_show_time(latest_at)}) was already applied"
            f" to card {card.iccid}" + (f" or MSISDN {change.msisdn}" if change.msisdn else ""),
            "EFFECTIVE_TIME",
        )
    taken = holder is not None and holder.iccid != card.iccid
    if op is MsisdnOperation.DEL:
        if change.msisdn is not None and taken:
            return MsisdnPlan(
                Outcome.REJECTED,
                f"MSISDN {change.msisdn} is mapped to card {holder.iccid if holder else ''},"
                f" not {card.iccid}",
                "MSISDN",
            )
        if card.msisdn is None:
            return MsisdnPlan(Outcome.UNCHANGED)
        if change.msisdn is not None and card.msisdn != change.msisdn:
            return MsisdnPlan(
                Outcome.REJECTED,
                f"card {card.iccid} has MSISDN {card.msisdn}, not {change.msisdn}",
                "MSISDN",
            )
        return MsisdnPlan(Outcome.UPDATED, None, None, card.iccid, None, card.msisdn)
    # ADD and CHG name a number, checked by the parser.
    if card.msisdn == change.msisdn:
        return MsisdnPlan(Outcome.UNCHANGED)
    if taken:
        return MsisdnPlan(
            Outcome.REJECTED,
            f"MSISDN {change.msisdn} is mapped to card {holder.iccid if holder else ''}"
            " (it needs a DEL first)",
            "MSISDN",
        )
    if op is MsisdnOperation.ADD and card.msisdn is not None:
        return MsisdnPlan(
            Outcome.REJECTED,
            f"card {card.iccid} already has MSISDN {card.msisdn} (use CHG to change it)",
            "OPERATION",
        )
    outcome = Outcome.ADDED if op is MsisdnOperation.ADD else Outcome.UPDATED
    return MsisdnPlan(outcome, None, None, card.iccid, change.msisdn, card.msisdn)


def _show_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d%H%M%S")
