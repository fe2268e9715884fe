# -*- test-case-name: tests.unit.store.test_sqlite -*-
"""Rows of the application database to records, and records to rows.

Kept apart from the table definitions (L{bipgw.store._schema}) and the
transactions (L{bipgw.store._queries}) so each stays one concept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs
from sqlalchemy import Row

from bipgw.store._schema import from_json, to_json
from bipgw.store._types import (
    ApduTraceRecord,
    AuditRecord,
    Card,
    CardKey,
    ImportReport,
    LineError,
    MsisdnMapping,
    Service,
    SessionEvent,
    SessionRecord,
    Tenant,
)

_R = TypeVar("_R", bound=attrs.AttrsInstance)
_Convert = Callable[[Any], Any]


def _as_is(value: Any) -> Any:
    return value


def _optional(convert: _Convert) -> _Convert:
    """C{convert}, passing C{None} (SQL NULL) through."""
    return lambda value: None if value is None else convert(value)


@attrs.frozen
class RowMap(Generic[_R]):
    """How an attrs record maps to a table's row and back, field by field.

    Each field is the column of the same name unless C{columns} renames it,
    and is stored and read as it is unless C{to_column} or C{from_column}
    converts it; columns that are not fields (a table's own id) are not read.

    @ivar row_id: the field the database sets (an auto-incremented id): read,
        never written.
    """

    record: type[_R]
    row_id: str | None
    # (field, column, to_column, from_column) for each field, in order.
    _plan: tuple[tuple[str, str, _Convert, _Convert], ...]

    @classmethod
    def of(
        cls,
        record: type[_R],
        *,
        columns: Mapping[str, str] | None = None,
        to_column: Mapping[str, _Convert] | None = None,
        from_column: Mapping[str, _Convert] | None = None,
        row_id: str | None = None,
    ) -> RowMap[_R]:
        """The map of C{record}'s fields, renamed and converted where given."""
        columns, to_column, from_column = columns or {}, to_column or {}, from_column or {}
        plan = tuple(
            (
                f.name,
                columns.get(f.name, f.name),
                to_column.get(f.name, _as_is),
                from_column.get(f.name, _as_is),
            )
            for f in attrs.fields(record)
        )
        return cls(record, row_id, plan)

    def values(self, record: _R) -> dict[str, Any]:
        """The row of C{record} (without C{row_id})."""
        return {
            column: store(getattr(record, name))
            for name, column, store, _ in self._plan
            if name != self.row_id
        }

    def from_row(self, row: Row[Any]) -> _R:
        """The record of C{row}."""
        m = row._mapping
        return self.record(**{name: read(m[column]) for name, column, _, read in self._plan})


_CARDS = RowMap.of(
    Card,
    from_column={"psk_identity": _optional(bytes), "extras": from_json, "ota_counter": int},
)
#: A L{Card} from a C{cards} row.
card_from_row = _CARDS.from_row


def card_key_from_row(row: Row[Any]) -> CardKey:
    """A L{CardKey} from a C{card_keys} row."""
    m = row._mapping
    return CardKey(
        m["iccid"],
        m["purpose"],
        m["kvn"],
        m["algorithm"],
        bytes(m["sealed"]),
        bytes(m["fingerprint"]),
    )


def mapping_from_row(row: Row[Any]) -> MsisdnMapping:
    """A L{MsisdnMapping} from a C{msisdn_history} row."""
    m = row._mapping
    return MsisdnMapping(
        entry_id=int(m["entry_id"]),
        operation=m["operation"],
        msisdn=m["msisdn"],
        iccid=m["iccid"],
        imsi=m["imsi"],
        previous_msisdn=m["previous_msisdn"],
        effective_at=int(m["effective_at"]),
        applied_at=m["applied_at"],
        source=m["source"],
    )


def tenant_from_row(row: Row[Any]) -> Tenant:
    """A L{Tenant} from a C{tenants} row."""
    m = row._mapping
    return Tenant(m["tenant_id"], m["name"], bool(m["enabled"]), m["created_at"])


def service_from_row(row: Row[Any]) -> Service:
    """A L{Service} from a C{services} row."""
    m = row._mapping
    return Service(
        m["service_id"], m["tenant_id"], m["name"], bool(m["enabled"]), from_json(m["settings"])
    )


_SESSIONS = RowMap.of(SessionRecord)
#: The C{sessions} row of a L{SessionRecord}.
session_values = _SESSIONS.values
#: A L{SessionRecord} from a C{sessions} row.
session_from_row = _SESSIONS.from_row

_EVENTS = RowMap.of(SessionEvent, from_column={"transition": bool})
#: The C{session_events} row of a L{SessionEvent} (without its id).
event_values = _EVENTS.values
#: A L{SessionEvent} from a C{session_events} row.
event_from_row = _EVENTS.from_row

_TRACES = RowMap.of(
    ApduTraceRecord,
    columns={"index": "apdu_index"},
    from_column={"capdu": bytes, "rapdu": _optional(bytes)},
)
#: The C{apdu_traces} row of an L{ApduTraceRecord}.
trace_values = _TRACES.values
#: An L{ApduTraceRecord} from an C{apdu_traces} row.
trace_from_row = _TRACES.from_row

_AUDIT = RowMap.of(AuditRecord, row_id="audit_id", from_column={"audit_id": int})
#: The C{audit_log} row of an L{AuditRecord} (without its id).
audit_values = _AUDIT.values
#: An L{AuditRecord} from an C{audit_log} row.
audit_from_row = _AUDIT.from_row


def _errors_from_json(text: str) -> tuple[LineError, ...]:
    errors: list[list[Any]] = from_json(text)
    return tuple(LineError(line, column, message) for line, column, message in errors)


_IMPORTS = RowMap.of(
    ImportReport,
    row_id="import_id",
    to_column={
        "kind": lambda kind: kind.value,
        "errors": lambda errors: to_json([[e.line, e.column, e.message] for e in errors]),
        "header": lambda header: to_json(dict(header)),
        "notices": lambda notices: to_json(list(notices)),
    },
    from_column={
        "errors": _errors_from_json,
        "applied": bool,
        "header": from_json,
        "notices": lambda text: tuple(from_json(text)),
        "import_id": int,
    },
)
#: The C{imports} row of an L{ImportReport} (without its id).
import_values = _IMPORTS.values
#: An L{ImportReport} from an C{imports} row.
import_from_row = _IMPORTS.from_row
