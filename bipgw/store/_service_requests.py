# -*- test-case-name: tests.unit.store.test_service_requests -*-
"""Service requests: a tenant asks for a gateway service; an operator approves or rejects.

A business platform submits one through the HTTP API (C{POST
/v1/service-requests}, authenticated by its token) naming the gateway
service, the AIDs and TARs it needs and the volume it expects; the request
waits (C{pending}) until an operator approves it in the portal (which
grants the service, L{bipgw.store.grant_service}) or rejects it.  Kept in
the C{service_requests} table (L{SqlServiceRequests}), or in memory for a
gateway run without a database (L{MemoryServiceRequests}).
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Any, Protocol

import attrs
from sqlalchemy import Connection, func, select, update
from twisted.internet.defer import Deferred, fail, succeed

import bipgw.store._schema as s
from bipgw.store._queries import insert_returning_id
from bipgw.store._rows import RowMap
from bipgw.store._types import StoreConflictError, UnknownRecordError

__all__ = [
    "IServiceRequests",
    "MemoryServiceRequests",
    "RequestState",
    "ServiceRequest",
    "SqlServiceRequests",
]


class RequestState(StrEnum):
    """Where a service request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@attrs.frozen
class ServiceRequest:
    """A tenant's request for a gateway service.

    @ivar aids: the applications (hex) it wants to address.
    @ivar tars: the TARs (hex) it wants to address.
    @ivar expected_volume: sessions a day it expects.
    """

    tenant_id: str
    service: str
    aids: tuple[str, ...] = ()
    tars: tuple[str, ...] = ()
    expected_volume: int = 0
    note: str = ""
    state: RequestState = attrs.field(default=RequestState.PENDING, converter=RequestState)
    submitted_at: float = 0.0
    decided_at: float | None = None
    decided_by: str | None = None
    decision_note: str = ""
    request_id: int | None = None


class IServiceRequests(Protocol):
    """Where service requests are kept."""

    def submit(self, request: ServiceRequest) -> Deferred[ServiceRequest]:
        """Keep a new pending request; the same with its C{request_id}."""

    def get(self, request_id: int) -> Deferred[ServiceRequest | None]:
        """One request, or C{None}."""

    def list(
        self, *, state: RequestState | None = None, limit: int = 100, offset: int = 0
    ) -> Deferred[list[ServiceRequest]]:
        """Requests, newest first (in one state, if given)."""

    def decide(
        self, request_id: int, state: RequestState, *, by: str, at: float, note: str = ""
    ) -> Deferred[ServiceRequest]:
        """Approve or reject a pending request.

        @raise UnknownRecordError: no such request.
        @raise StoreConflictError: it was decided already.
        """


_ROWS = RowMap.of(
    ServiceRequest,
    row_id="request_id",
    to_column={"aids": " ".join, "tars": " ".join, "state": lambda state: state.value},
    from_column={
        "aids": lambda text: tuple(text.split()),
        "tars": lambda text: tuple(text.split()),
        "expected_volume": int,
        "request_id": int,
    },
)
_values = _ROWS.values
_from_row = _ROWS.from_row


class _Transactions(Protocol):
    def transaction(self, work: Any, *, write: bool) -> Deferred[Any]: ...


class SqlServiceRequests:
    """L{IServiceRequests} in the SQL store's C{service_requests} table."""

    def __init__(self, store: _Transactions) -> None:
        self._store = store

    def submit(self, request: ServiceRequest) -> Deferred[ServiceRequest]:
        """See L{IServiceRequests.submit}."""
        values = _values(request)

        def work(c: Connection) -> ServiceRequest:
            key = insert_returning_id(c, s.service_requests, values)
            return attrs.evolve(request, request_id=key)

        d: Deferred[ServiceRequest] = self._store.transaction(work, write=True)
        return d

    def get(self, request_id: int) -> Deferred[ServiceRequest | None]:
        """See L{IServiceRequests.get}."""

        def work(c: Connection) -> ServiceRequest | None:
            t = s.service_requests
            row = c.execute(select(t).where(t.c.request_id == request_id)).first()
            return None if row is None else _from_row(row)

        d: Deferred[ServiceRequest | None] = self._store.transaction(work, write=False)
        return d

    def list(
        self, *, state: RequestState | None = None, limit: int = 100, offset: int = 0
    ) -> Deferred[list[ServiceRequest]]:
        """See L{IServiceRequests.list}."""

        def work(c: Connection) -> list[ServiceRequest]:
            t = s.service_requests
            query = select(t).order_by(t.c.request_id.desc())
            if state is not None:
                query = query.where(t.c.state == RequestState(state).value)
            query = query.limit(max(limit, 0)).offset(max(offset, 0))
            return [_from_row(row) for row in c.execute(query)]

        d: Deferred[list[ServiceRequest]] = self._store.transaction(work, write=False)
        return d

    def count_pending(self) -> Deferred[int]:
        """How many requests wait for a decision."""

        def work(c: Connection) -> int:
            t = s.service_requests.c
            query = select(func.count()).where(t.state == RequestState.PENDING.value)
            return int(c.execute(query).scalar() or 0)

        d: Deferred[int] = self._store.transaction(work, write=False)
        return d

    def decide(
        self, request_id: int, state: RequestState, *, by: str, at: float, note: str = ""
    ) -> Deferred[ServiceRequest]:
        """See L{IServiceRequests.decide}."""
        state = RequestState(state)

        def work(c: Connection) -> ServiceRequest:
            t = s.service_requests
            row = c.execute(select(t).where(t.c.request_id == request_id)).first()
            if row is None:
                raise UnknownRecordError(f"no service request {request_id}")
            found = _from_row(row)
            if found.state is not RequestState.PENDING:
                raise StoreConflictError(
                    f"service request {request_id} was {found.state.value} already"
                )
            changes = {
                "state": state.value,
                "decided_at": at,
                "decided_by": by,
                "decision_note": note,
            }
            pending = (t.c.request_id == request_id) & (t.c.state == RequestState.PENDING.value)
            if not c.execute(update(t).where(pending).values(**changes)).rowcount:
                raise StoreConflictError(f"service request {request_id} was decided already")
            return attrs.evolve(
                found, state=state, decided_at=at, decided_by=by, decision_note=note
            )

        d: Deferred[ServiceRequest] = self._store.transaction(work, write=True)
        return d


class MemoryServiceRequests:
    """L{IServiceRequests} in memory (a gateway run without a database)."""

    def __init__(self) -> None:
        self._requests: dict[int, ServiceRequest] = {}
        self._ids = itertools.count(1)

    def submit(self, request: ServiceRequest) -> Deferred[ServiceRequest]:
        """See L{IServiceRequests.submit}."""
        kept = attrs.evolve(request, request_id=next(self._ids))
        assert kept.request_id is not None
        self._requests[kept.request_id] = kept
        return succeed(kept)

    def get(self, request_id: int) -> Deferred[ServiceRequest | None]:
        """See L{IServiceRequests.get}."""
        return succeed(self._requests.get(request_id))

    def list(
        self, *, state: RequestState | None = None, limit: int = 100, offset: int = 0
    ) -> Deferred[list[ServiceRequest]]:
        """See L{IServiceRequests.list}."""
        found = [r for _, r in sorted(self._requests.items(), reverse=True)]
        if state is not None:
            found = [r for r in found if r.state is RequestState(state)]
        return succeed(found[max(offset, 0) : max(offset, 0) + max(limit, 0)])

    def count_pending(self) -> Deferred[int]:
        """How many requests wait for a decision."""
        return succeed(sum(r.state is RequestState.PENDING for r in self._requests.values()))

    def decide(
        self, request_id: int, state: RequestState, *, by: str, at: float, note: str = ""
    ) -> Deferred[ServiceRequest]:
        """See L{IServiceRequests.decide}."""
        found = self._requests.get(request_id)
        if found is None:
            return fail(UnknownRecordError(f"no service request {request_id}"))
        if found.state is not RequestState.PENDING:
            return fail(
                StoreConflictError(f"service request {request_id} was {found.state.value} already")
            )
        decided = attrs.evolve(
            found, state=RequestState(state), decided_at=at, decided_by=by, decision_note=note
        )
        self._requests[request_id] = decided
        return succeed(decided)
