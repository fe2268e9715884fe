# -*- test-case-name: tests.unit.store.test_browse -*-
"""What the operator portal lists and searches: sessions, cards, the audit log.

Every filter is a bound parameter (SQLAlchemy Core expressions, never
text pasted into SQL); the free-text ones (ICCID, MSISDN, an audit
target) match a substring with C{LIKE} and C{%}, C{_} and the escape
character escaped (C{autoescape}), so a filter value is only ever data.
Pages are C{limit}/C{offset} over a total order (newest first, then id).

Which tenant opened a session is not in the engine's session record (the
engine does not know tenants): the front doors report it
(L{bipgw.core.Tenancy}'s C{owners}) and L{SessionOwners} writes it, in
batches, to C{session_owners}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs
from sqlalchemy import Connection, Select, and_, func, insert, select
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

import bipgw.store._rows as r
import bipgw.store._schema as s
from bipgw.store._types import AuditRecord, Card, SessionRecord

__all__ = ["AuditSearch", "CardKeyInfo", "SessionFilter", "SessionOwners", "SqlBrowse"]

MAX_PAGE = 500
"""The most rows one page may ask for."""


class _Transactions(Protocol):
    def transaction(self, work: Any, *, write: bool) -> Deferred[Any]: ...


@attrs.frozen
class SessionFilter:
    """Which sessions to list; C{None} (or empty) leaves a field unfiltered.

    @ivar iccid: a substring of the ICCID.
    @ivar msisdn: a substring of the MSISDN.
    @ivar tenant: the tenant that opened it (exact).
    @ivar service: the gateway service (exact).
    @ivar state: the state (exact).
    @ivar since: opened at or after (epoch seconds).
    @ivar until: opened before (epoch seconds).
    """

    iccid: str | None = None
    msisdn: str | None = None
    tenant: str | None = None
    service: str | None = None
    state: str | None = None
    since: float | None = None
    until: float | None = None


@attrs.frozen
class AuditSearch:
    """Which audit records to list (as L{SessionFilter}).

    @ivar actor: who (exact).
    @ivar action: what (exact).
    @ivar target: a substring of what it was done to.
    """

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None


@attrs.frozen
class CardKeyInfo:
    """What the portal may show of a card key: never its value."""

    purpose: str
    kvn: int
    algorithm: str


def _page(limit: int, offset: int) -> tuple[int, int]:
    return min(max(limit, 0), MAX_PAGE), max(offset, 0)


def _session_query(f: SessionFilter, columns: Sequence[Any]) -> Select[Any]:
    t = s.sessions.c
    o = s.session_owners.c
    query = select(*columns).select_from(
        s.sessions.outerjoin(s.session_owners, o.session_id == t.session_id)
    )
    where = []
    if f.iccid:
        where.append(t.iccid.contains(f.iccid, autoescape=True))
    if f.msisdn:
        where.append(t.msisdn.contains(f.msisdn, autoescape=True))
    if f.tenant:
        where.append(o.tenant_id == f.tenant)
    if f.service:
        where.append(t.service == f.service)
    if f.state:
        where.append(t.state == f.state)
    if f.since is not None:
        where.append(t.opened_at >= f.since)
    if f.until is not None:
        where.append(t.opened_at < f.until)
    return query.where(and_(*where)) if where else query


class SqlBrowse:
    """The portal's read queries on the SQL store (module docstring)."""

    def __init__(self, store: _Transactions) -> None:
        self._store = store

    def _read(self, work: Any) -> Deferred[Any]:
        return self._store.transaction(work, write=False)

    def sessions(
        self, f: SessionFilter, *, limit: int = 50, offset: int = 0
    ) -> Deferred[list[tuple[SessionRecord, str | None]]]:
        """Sessions matching C{f}, newest first, each with its tenant (if known)."""
        limit, offset = _page(limit, offset)
        t = s.sessions.c
        query = _session_query(f, [s.sessions, s.session_owners.c.tenant_id.label("owner")])
        query = query.order_by(t.opened_at.desc(), t.session_id.desc()).limit(limit).offset(offset)

        def work(c: Connection) -> list[tuple[SessionRecord, str | None]]:
            rows = c.execute(query).all()
            found = []
            for row in rows:
                values = dict(row._mapping)
                owner = values.pop("owner")
                found.append((SessionRecord(**values), owner))
            return found

        return self._read(work)

    def count_sessions(self, f: SessionFilter) -> Deferred[int]:
        """How many sessions match C{f}."""
        query = _session_query(f, [func.count()])
        return self._read(lambda c: int(c.execute(query).scalar() or 0))

    def session_owner(self, session_id: str) -> Deferred[str | None]:
        """The tenant that opened C{session_id}, if known."""
        o = s.session_owners.c
        query = select(o.tenant_id).where(o.session_id == session_id)
        return self._read(lambda c: c.execute(query).scalar())

    def session_states(self) -> Deferred[list[str]]:
        """The states sessions are in (for the filter's choices)."""
        query = select(s.sessions.c.state).distinct().order_by(s.sessions.c.state)
        return self._read(lambda c: [row[0] for row in c.execute(query)])

    def cards(self, text: str, *, limit: int = 50) -> Deferred[list[Card]]:
        """Cards whose ICCID, MSISDN or IMSI contains C{text}, by ICCID."""
        limit, _ = _page(limit, 0)
        t = s.cards.c
        match = (
            t.iccid.contains(text, autoescape=True)
            | t.msisdn.contains(text, autoescape=True)
            | t.imsi.contains(text, autoescape=True)
        )
        query = select(s.cards).where(match).order_by(t.iccid).limit(limit)
        return self._read(lambda c: [r.card_from_row(row) for row in c.execute(query)])

    def card_keys(self, iccid: str) -> Deferred[list[CardKeyInfo]]:
        """A card's key purposes, versions and algorithms (no key material is read)."""
        k = s.card_keys.c
        query = (
            select(k.purpose, k.kvn, k.algorithm).where(k.iccid == iccid).order_by(k.purpose, k.kvn)
        )
        return self._read(lambda c: [CardKeyInfo(p, int(v), a) for p, v, a in c.execute(query)])

    def last_session(self, iccid: str) -> Deferred[SessionRecord | None]:
        """The card's newest session, or C{None}."""
        t = s.sessions.c
        query = (
            select(s.sessions)
            .where(t.iccid == iccid)
            .order_by(t.opened_at.desc(), t.session_id.desc())
            .limit(1)
        )

        def work(c: Connection) -> SessionRecord | None:
            row = c.execute(query).first()
            return None if row is None else r.session_from_row(row)

        return self._read(work)

    def audit(
        self, f: AuditSearch, *, limit: int = 50, offset: int = 0
    ) -> Deferred[list[AuditRecord]]:
        """Audit records matching C{f}, newest first."""
        limit, offset = _page(limit, offset)
        t = s.audit_log.c
        where = []
        if f.actor:
            where.append(t.actor == f.actor)
        if f.action:
            where.append(t.action == f.action)
        if f.target:
            where.append(t.target.contains(f.target, autoescape=True))
        if f.since is not None:
            where.append(t.at >= f.since)
        if f.until is not None:
            where.append(t.at < f.until)
        query = select(s.audit_log)
        if where:
            query = query.where(and_(*where))
        query = query.order_by(t.audit_id.desc()).limit(limit).offset(offset)
        return self._read(lambda c: [r.audit_from_row(row) for row in c.execute(query)])

    def record_owners(self, owners: Sequence[tuple[str, str]]) -> Deferred[None]:
        """Remember which tenant opened each session (C{(session_id, tenant_id)})."""
        if not owners:
            return succeed(None)
        rows = [{"session_id": sid, "tenant_id": tenant} for sid, tenant in owners]

        def work(c: Connection) -> None:
            o = s.session_owners.c
            known = {
                row[0]
                for row in c.execute(
                    select(o.session_id).where(o.session_id.in_([x["session_id"] for x in rows]))
                )
            }
            fresh = [x for x in rows if x["session_id"] not in known]
            if fresh:
                c.execute(insert(s.session_owners), fresh)

        d: Deferred[None] = self._store.transaction(work, write=True)
        return d


class SessionOwners:
    """Collects C{(session, tenant)} pairs and writes them every C{interval} seconds.

    Called by the tenancy on every session a tenant opens (on the reactor);
    one transaction per interval, not per session.  At most C{max_pending}
    pairs wait; past that, the oldest unwritten are dropped and counted
    (the portal then shows no tenant for them, nothing else is affected).
    """

    _log = Logger()

    def __init__(
        self,
        browse: SqlBrowse,
        clock: IReactorTime,
        *,
        interval: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        self._browse = browse
        self._clock = clock
        self._interval = interval
        self._max = max_pending
        self._pending: list[tuple[str, str]] = []
        self._call: Any = None
        self.dropped = 0

    def __call__(self, session_id: str, tenant_id: str) -> None:
        """Remember that C{tenant_id} opened C{session_id}."""
        if len(self._pending) >= self._max:
            self._pending.pop(0)
            self.dropped += 1
        self._pending.append((session_id, tenant_id))
        if self._call is None:
            self._call = self._clock.callLater(self._interval, self.flush)

    def flush(self) -> Deferred[None]:
        """Write what waits now."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        batch, self._pending = self._pending, []
        d = self._browse.record_owners(batch)

        def failed(failure: Any) -> None:
            self._log.failure("cannot record the tenants of {n} sessions", failure, n=len(batch))

        return d.addErrback(failed)
