# -*- test-case-name: tests.unit.store.test_sqlite -*-
"""L{SqlStore}: the application database on SQLAlchemy Core (SQLite, PostgreSQL).

Every query runs in a thread pool (L{bipgw.store._sql_threads}), so the
reactor never blocks on disk or network.  Each method is one transaction
that commits before its Deferred fires: that is what makes an allocated OTA
counter durable before the push that uses it is sent.  Engines are set up
by L{bipgw.store._engine}; write transactions live in
L{bipgw.store._queries}, tables in L{bipgw.store._schema}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

from attrs import evolve
from sqlalchemy import Connection, Engine, Select, func, insert, select
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

import bipgw.store._bulk as b
import bipgw.store._bulk_msisdn as m
import bipgw.store._feeds as f
import bipgw.store._msisdn_rows as mr
import bipgw.store._queries as q
import bipgw.store._rows as r
import bipgw.store._schema as s
from bipgw.store._engine import create_sql_engine
from bipgw.store._feed_types import FeedFile, Partner
from bipgw.store._group import GroupCommit
from bipgw.store._migrations import migrate
from bipgw.store._sql_threads import SqlThreads
from bipgw.store._types import (
    MAX_OTA_COUNTER,
    ApduTraceRecord,
    AuditRecord,
    BatchResult,
    Card,
    CardKeys,
    CardUpsert,
    DuplicateRecordError,
    ImportReport,
    MsisdnChange,
    MsisdnMapping,
    MsisdnRow,
    MsisdnRowsResult,
    Service,
    SessionEvent,
    SessionRecord,
    StoreError,
    Tenant,
)

_T = TypeVar("_T")


class SqlStore:
    """An L{IStore} on SQLAlchemy Core, its queries in a thread pool.

    Make it with L{SqlStore.create} and L{start} it (or both at once with
    L{SqlStore.open} or L{bipgw.store.open_store}): starting creates the
    schema or migrates it.  L{close} when done.
    """

    _log = Logger()

    def __init__(
        self, engine: Engine, *, reactor: Any, threadpool: ThreadPool, owns_pool: bool
    ) -> None:
        """Use L{create} or L{open}."""
        self._reactor = reactor
        self._threads = SqlThreads(
            engine, reactor=reactor, threadpool=threadpool, owns_pool=owns_pool
        )
        self._counters: GroupCommit[q.CounterRequest, int] = GroupCommit(
            lambda batch: self._write(lambda c: q.counter_batch(c, batch))
        )

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tools and tests; never use it on the reactor thread)."""
        return self._threads.engine

    @classmethod
    def create(
        cls,
        url: str,
        *,
        reactor: Any = None,
        threadpool: ThreadPool | None = None,
        threads: int | None = None,
    ) -> SqlStore:
        """The store for C{url}, not started yet (L{start} connects).

        Made at once, without touching the database, so that a gateway can
        hand it to every part when it is built and open it when it starts;
        a URL that names no usable database (an unknown dialect, a missing
        driver) is refused here, before anything runs.

        @param reactor: for C{callFromThread}, C{seconds} and the shutdown
            trigger; the global reactor if C{None}.
        @param threadpool: run queries there (the caller starts and stops
            it) instead of in a pool of the store's own, which has
            C{threads} threads: 1 for SQLite, 4 otherwise.
        @raise StoreError: C{url} names no usable database.
        """
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        engine = create_sql_engine(url)
        owns = threadpool is None
        if threadpool is None:
            size = threads or (1 if engine.dialect.name == "sqlite" else 4)
            threadpool = ThreadPool(minthreads=0, maxthreads=size, name="bipgw-store")
        return cls(engine, reactor=reactor, threadpool=threadpool, owns_pool=owns)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        reactor: Any = None,
        threadpool: ThreadPool | None = None,
        threads: int | None = None,
    ) -> Deferred[SqlStore]:
        """L{create} then L{start}: fires with the store once it is ready."""
        try:
            store = cls.create(url, reactor=reactor, threadpool=threadpool, threads=threads)
        except StoreError as e:
            return fail(e)
        return store.start().addCallback(lambda _: store)

    def start(self) -> Deferred[None]:
        """Connect, create or migrate the schema; fires once the store is ready.

        On failure the store is closed (its threads released) and the
        Deferred fails with the reason.
        """
        self._threads.start()
        shown = self.engine.url.render_as_string(hide_password=True)
        now = self._reactor.seconds()

        def ready(applied: list[int]) -> None:
            self._log.info(
                "database {url} ready (schema steps applied now: {applied})",
                url=shown,
                applied=applied or "none",
            )

        def failed(reason: Failure) -> Deferred[None]:
            closing: Deferred[Any] = self.close()
            closing.addBoth(lambda _: reason)
            return closing

        d = self._run(lambda c: migrate(c, now=now), write=True)
        return d.addCallbacks(ready, failed)

    def _run(self, work: Callable[[Connection], _T], *, write: bool) -> Deferred[_T]:
        return self._threads.run(work, write=write)

    def transaction(self, work: Callable[[Connection], _T], *, write: bool) -> Deferred[_T]:
        """Run C{work(connection)} in one transaction in the store's threads
        (for the store's other concepts: L{bipgw.store._operators}, ...)."""
        return self._run(work, write=write)

    def _read(self, work: Callable[[Connection], _T]) -> Deferred[_T]:
        return self._run(work, write=False)

    def _write(self, work: Callable[[Connection], _T]) -> Deferred[_T]:
        return self._run(work, write=True)

    def _all(self, query: Select[Any], convert: Callable[[Any], _T]) -> Deferred[list[_T]]:
        return self._read(lambda c: [convert(row) for row in c.execute(query)])

    def _first(self, query: Select[Any], convert: Callable[[Any], _T]) -> Deferred[_T | None]:
        def work(c: Connection) -> _T | None:
            row = c.execute(query).first()
            return None if row is None else convert(row)

        return self._read(work)

    def close(self) -> Deferred[None]:
        """Wait for running queries, then release connections and threads."""
        return self._threads.close()

    # -- cards -----------------------------------------------------------

    def upsert_cards(
        self, cards: Sequence[CardUpsert], *, atomic: bool = False
    ) -> Deferred[BatchResult]:
        """See L{IStore.upsert_cards}."""
        items = list(cards)
        if not items:
            return succeed(BatchResult((), committed=True))
        return self._write(lambda c: b.upsert_cards(c, items, atomic=atomic))

    def upsert_card_batches(
        self,
        batches: Iterable[Sequence[CardUpsert]],
        *,
        atomic: bool = False,
        on_batch: Callable[[BatchResult], None],
    ) -> Deferred[bool]:
        """See L{IStore.upsert_card_batches} (the loop is L{b.write_batches})."""
        write = partial(b.upsert_cards, atomic=atomic)
        engine = self.engine
        return self._threads.call(lambda: b.write_batches(engine, batches, write, atomic, on_batch))

    def get_card(self, iccid: str) -> Deferred[Card | None]:
        """See L{IStore.get_card}."""
        return self._first(select(s.cards).where(s.cards.c.iccid == iccid), r.card_from_row)

    def card_by_msisdn(self, msisdn: str) -> Deferred[Card | None]:
        """See L{IStore.card_by_msisdn}."""
        return self._first(select(s.cards).where(s.cards.c.msisdn == msisdn), r.card_from_row)

    def card_by_psk_identity(self, identity: bytes) -> Deferred[Card | None]:
        """See L{IStore.card_by_psk_identity}."""
        query = select(s.cards).where(s.cards.c.psk_identity == identity)
        return self._first(query, r.card_from_row)

    def list_cards(
        self, *, after: str | None = None, limit: int = 100, batch: str | None = None
    ) -> Deferred[list[Card]]:
        """See L{IStore.list_cards}."""
        query = select(s.cards).order_by(s.cards.c.iccid).limit(max(limit, 0))
        if after is not None:
            query = query.where(s.cards.c.iccid > after)
        if batch is not None:
            query = query.where(s.cards.c.batch == batch)
        return self._all(query, r.card_from_row)

    def count_cards(self, *, batch: str | None = None) -> Deferred[int]:
        """See L{IStore.count_cards}."""
        query = select(func.count()).select_from(s.cards)
        if batch is not None:
            query = query.where(s.cards.c.batch == batch)
        return self._read(lambda c: int(c.execute(query).scalar() or 0))

    def get_card_keys(self, iccid: str) -> Deferred[CardKeys]:
        """See L{IStore.get_card_keys}."""
        k = s.card_keys.c
        query = select(s.card_keys).where(k.iccid == iccid).order_by(k.purpose, k.kvn)

        def work(c: Connection) -> CardKeys:
            q.require_card(c, iccid)
            return CardKeys(iccid, tuple(r.card_key_from_row(row) for row in c.execute(query)))

        return self._read(work)

    def next_ota_counter(self, iccid: str) -> Deferred[int]:
        """See L{IStore.next_ota_counter}.

        Counters requested while another counter transaction commits wait
        and are committed together in the next one (group commit,
        L{bipgw.store._group}); each Deferred fires once its own value is
        committed.
        """
        if self._threads.closed:
            return fail(StoreError("the store is closed"))
        return self._counters.submit((iccid, None))

    def raise_ota_counter(self, iccid: str, at_least: int) -> Deferred[int]:
        """See L{IStore.raise_ota_counter} (in the counters' group commit, in order)."""
        if not 0 <= at_least <= MAX_OTA_COUNTER:
            return fail(StoreError(f"an OTA counter is 0 to {MAX_OTA_COUNTER}, not {at_least}"))
        if self._threads.closed:
            return fail(StoreError("the store is closed"))
        return self._counters.submit((iccid, at_least))

    # -- MSISDN ----------------------------------------------------------

    def apply_msisdn_changes(
        self, changes: Sequence[MsisdnChange], *, atomic: bool = False, applied_at: float
    ) -> Deferred[BatchResult]:
        """See L{IStore.apply_msisdn_changes}."""
        items = list(changes)
        return self._write(
            lambda c: m.apply_msisdn_changes(c, items, atomic=atomic, applied_at=applied_at)
        )

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
        """See L{IStore.apply_msisdn_rows}: set-based on SQLite (L{mr.apply_rows_sqlite});
        elsewhere the batch path, every batch in one transaction."""
        engine = self.engine
        if engine.dialect.name == "sqlite":

            def in_thread() -> MsisdnRowsResult:
                return mr.apply_rows_sqlite(
                    engine,
                    rows,
                    atomic=atomic,
                    applied_at=applied_at,
                    source=source,
                    max_errors=max_errors,
                    batch_size=batch_size,
                )

            return self._threads.call(in_thread)

        def batches(c: Connection) -> MsisdnRowsResult:
            def apply(changes: Sequence[MsisdnChange]) -> BatchResult:
                return m.apply_msisdn_changes(c, changes, atomic=False, applied_at=applied_at)

            result = mr.apply_in_batches(
                rows, apply, source=source, max_errors=max_errors, batch_size=batch_size
            )
            if atomic and result.rejected:
                raise b.Rollback(evolve(result, committed=False))
            return result

        return self._write(batches)

    def msisdn_history(
        self, *, iccid: str | None = None, msisdn: str | None = None
    ) -> Deferred[list[MsisdnMapping]]:
        """See L{IStore.msisdn_history}."""
        h = s.msisdn_history.c
        query = select(s.msisdn_history).order_by(h.entry_id)
        if iccid is not None:
            query = query.where(h.iccid == iccid)
        if msisdn is not None:
            query = query.where((h.msisdn == msisdn) | (h.previous_msisdn == msisdn))
        return self._all(query, r.mapping_from_row)

    # -- tenants and services ----------------------------------------------

    def put_tenant(self, tenant: Tenant) -> Deferred[None]:
        """See L{IStore.put_tenant}."""
        values = {
            "tenant_id": tenant.tenant_id,
            "name": tenant.name,
            "enabled": tenant.enabled,
            "created_at": tenant.created_at,
        }
        key = s.tenants.c.tenant_id == tenant.tenant_id
        return self._write(lambda c: q.replace(c, s.tenants, key, values))

    def get_tenant(self, tenant_id: str) -> Deferred[Tenant | None]:
        """See L{IStore.get_tenant}."""
        query = select(s.tenants).where(s.tenants.c.tenant_id == tenant_id)
        return self._first(query, r.tenant_from_row)

    def list_tenants(self) -> Deferred[list[Tenant]]:
        """See L{IStore.list_tenants}."""
        return self._all(select(s.tenants).order_by(s.tenants.c.tenant_id), r.tenant_from_row)

    def delete_tenant(self, tenant_id: str) -> Deferred[None]:
        """See L{IStore.delete_tenant}."""
        return self._write(lambda c: q.delete_tenant(c, tenant_id))

    def put_service(self, service: Service) -> Deferred[None]:
        """See L{IStore.put_service}."""
        values = {
            "service_id": service.service_id,
            "tenant_id": service.tenant_id,
            "name": service.name,
            "enabled": service.enabled,
            "settings": s.to_json(dict(service.settings)),
        }
        return self._write(lambda c: q.put_service(c, values))

    def get_service(self, service_id: str) -> Deferred[Service | None]:
        """See L{IStore.get_service}."""
        query = select(s.services).where(s.services.c.service_id == service_id)
        return self._first(query, r.service_from_row)

    def list_services(self, *, tenant_id: str | None = None) -> Deferred[list[Service]]:
        """See L{IStore.list_services}."""
        query = select(s.services).order_by(s.services.c.service_id)
        if tenant_id is not None:
            query = query.where(s.services.c.tenant_id == tenant_id)
        return self._all(query, r.service_from_row)

    def delete_service(self, service_id: str) -> Deferred[None]:
        """See L{IStore.delete_service}."""
        key = s.services.c.service_id == service_id
        return self._write(lambda c: q.delete_where(c, s.services, key, f"service {service_id!r}"))

    # -- sessions ------------------------------------------------------------

    def create_session(self, record: SessionRecord) -> Deferred[None]:
        """See L{IStore.create_session}."""
        taken = select(s.sessions.c.session_id).where(s.sessions.c.session_id == record.session_id)

        def work(c: Connection) -> None:
            if c.execute(taken).first() is not None:
                raise DuplicateRecordError(f"session {record.session_id} already exists")
            c.execute(insert(s.sessions).values(**r.session_values(record)))

        return self._write(work)

    def save_session(self, record: SessionRecord) -> Deferred[None]:
        """See L{IStore.save_session}."""
        key = s.sessions.c.session_id == record.session_id
        return self._write(lambda c: q.replace(c, s.sessions, key, r.session_values(record)))

    def _update_session(self, session_id: str, values: dict[str, Any]) -> Deferred[None]:
        key = s.sessions.c.session_id == session_id
        what = f"session {session_id}"
        return self._write(lambda c: q.update_where(c, s.sessions, key, values, what))

    def update_session_state(
        self, session_id: str, state: str, at: float, *, detail: str | None = None
    ) -> Deferred[None]:
        """See L{IStore.update_session_state}."""
        values: dict[str, Any] = {"state": state, "updated_at": at}
        if detail is not None:
            values["detail"] = detail
        return self._update_session(session_id, values)

    def finish_session(
        self, session_id: str, state: str, at: float, *, reason: str | None, detail: str = ""
    ) -> Deferred[None]:
        """See L{IStore.finish_session}."""
        values = {"state": state, "updated_at": at, "ended_at": at, "reason": reason}
        return self._update_session(session_id, {**values, "detail": detail})

    def get_session(self, session_id: str) -> Deferred[SessionRecord | None]:
        """See L{IStore.get_session}."""
        query = select(s.sessions).where(s.sessions.c.session_id == session_id)
        return self._first(query, r.session_from_row)

    def list_sessions(
        self, *, iccid: str | None = None, limit: int = 100, offset: int = 0
    ) -> Deferred[list[SessionRecord]]:
        """See L{IStore.list_sessions}."""
        t = s.sessions.c
        query = select(s.sessions).order_by(t.opened_at.desc(), t.session_id.desc())
        query = query.limit(max(limit, 0)).offset(max(offset, 0))
        if iccid is not None:
            query = query.where(t.iccid == iccid)
        return self._all(query, r.session_from_row)

    def _insert_many(self, table: Any, rows: list[dict[str, Any]]) -> Deferred[None]:
        if not rows:
            return succeed(None)
        return self._write(lambda c: q.insert_rows(c, table, rows))

    def write_history(
        self,
        sessions: Sequence[SessionRecord],
        events: Sequence[SessionEvent],
        traces: Sequence[ApduTraceRecord],
    ) -> Deferred[None]:
        """See L{IStore.write_history}: one transaction, so one commit (one fsync)."""
        if not (sessions or events or traces):
            return succeed(None)
        rows = q.history_rows(sessions, events, traces)
        return self._write(lambda c: q.write_history(c, *rows))

    def add_session_events(self, events: Sequence[SessionEvent]) -> Deferred[None]:
        """See L{IStore.add_session_events}."""
        return self._insert_many(s.session_events, [r.event_values(e) for e in events])

    def end_unfinished_sessions(
        self, reason: str, detail: str, at: float, *, opened_before: float
    ) -> Deferred[int]:
        """See L{IStore.end_unfinished_sessions}."""
        return self._write(lambda c: q.end_unfinished(c, reason, detail, at, opened_before))

    def session_events(self, session_id: str) -> Deferred[list[SessionEvent]]:
        """See L{IStore.session_events}."""
        t = s.session_events.c
        query = select(s.session_events).where(t.session_id == session_id)
        return self._all(query.order_by(t.seq, t.event_id), r.event_from_row)

    def add_apdu_traces(self, traces: Sequence[ApduTraceRecord]) -> Deferred[None]:
        """See L{IStore.add_apdu_traces}."""
        return self._insert_many(s.apdu_traces, [r.trace_values(t) for t in traces])

    def apdu_traces(self, session_id: str) -> Deferred[list[ApduTraceRecord]]:
        """See L{IStore.apdu_traces}."""
        t = s.apdu_traces.c
        query = select(s.apdu_traces).where(t.session_id == session_id)
        return self._all(query.order_by(t.script, t.apdu_index, t.trace_id), r.trace_from_row)

    # -- audit and imports ---------------------------------------------------

    def add_audit(self, record: AuditRecord) -> Deferred[int]:
        """See L{IStore.add_audit}."""
        values = r.audit_values(record)
        return self._write(lambda c: q.insert_returning_id(c, s.audit_log, values))

    def list_audit(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> Deferred[list[AuditRecord]]:
        """See L{IStore.list_audit}."""
        t = s.audit_log.c
        query = select(s.audit_log).order_by(t.audit_id.desc()).limit(max(limit, 0))
        if before_id is not None:
            query = query.where(t.audit_id < before_id)
        return self._all(query, r.audit_from_row)

    def record_import(self, report: ImportReport) -> Deferred[ImportReport]:
        """See L{IStore.record_import}."""
        values = r.import_values(report)
        return self._write(lambda c: q.record_import(c, values))

    def get_import(self, import_id: int) -> Deferred[ImportReport | None]:
        """See L{IStore.get_import}."""
        query = select(s.imports).where(s.imports.c.import_id == import_id)
        return self._first(query, r.import_from_row)

    def list_imports(
        self, *, limit: int = 50, before_id: int | None = None
    ) -> Deferred[list[ImportReport]]:
        """See L{IStore.list_imports}."""
        t = s.imports.c
        query = select(s.imports).order_by(t.import_id.desc()).limit(max(limit, 0))
        if before_id is not None:
            query = query.where(t.import_id < before_id)
        return self._all(query, r.import_from_row)

    def find_imports(self, sha256: str) -> Deferred[list[ImportReport]]:
        """See L{IStore.find_imports}."""
        t = s.imports.c
        query = select(s.imports).where(t.sha256 == sha256).order_by(t.import_id)
        return self._all(query, r.import_from_row)

    # -- file feed partners and their files ------------------------------------

    def put_partner(self, partner: Partner) -> Deferred[None]:
        """See L{IStore.put_partner}."""
        return self._write(lambda c: f.put_partner(c, partner))

    def get_partner(self, name: str) -> Deferred[Partner | None]:
        """See L{IStore.get_partner}."""
        query = select(s.partners).where(s.partners.c.name == name)
        return self._first(query, f.partner_from_row)

    def list_partners(self) -> Deferred[list[Partner]]:
        """See L{IStore.list_partners}."""
        return self._all(select(s.partners).order_by(s.partners.c.name), f.partner_from_row)

    def add_feed_file(self, record: FeedFile) -> Deferred[None]:
        """See L{IStore.add_feed_file}."""
        return self._write(lambda c: f.add_feed_file(c, record))

    def get_feed_file(self, partner: str, sha256: str) -> Deferred[FeedFile | None]:
        """See L{IStore.get_feed_file}."""
        t = s.feed_files.c
        query = select(s.feed_files).where((t.partner == partner) & (t.sha256 == sha256))
        return self._first(query, f.feed_file_from_row)
