# -*- test-case-name: tests.unit.store.test_sqlite -*-
"""Rows of the application database to records, and records to rows.

Kept apart from the table definitions (L{bipgw.store._schema}) and the
transactions (L{bipgw.store._queries}) so each stays one concept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def card_from_row(row: Row[Any]) -> Card:
    """A L{Card} from a C{cards} row."""
    m = row._mapping
    return Card(
        iccid=m["iccid"],
        imsi=m["imsi"],
        msisdn=m["msisdn"],
        psk_identity=None if m["psk_identity"] is None else bytes(m["psk_identity"]),
        batch=m["batch"],
        customer=m["customer"],
        card_type=m["card_type"],
        extras=from_json(m["extras"]),
        ota_counter=int(m["ota_counter"]),
    )


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


def session_values(record: SessionRecord) -> dict[str, Any]:
    """The C{sessions} row of a L{SessionRecord}."""
    return {
        "session_id": record.session_id,
        "service": record.service,
        "state": record.state,
        "opened_at": record.opened_at,
        "updated_at": record.updated_at,
        "iccid": record.iccid,
        "msisdn": record.msisdn,
        "agent_id": record.agent_id,
        "push_attempts": record.push_attempts,
        "scripts": record.scripts,
        "ended_at": record.ended_at,
        "reason": record.reason,
        "detail": record.detail,
    }


def session_from_row(row: Row[Any]) -> SessionRecord:
    """A L{SessionRecord} from a C{sessions} row."""
    return SessionRecord(**dict(row._mapping))


def event_values(event: SessionEvent) -> dict[str, Any]:
    """The C{session_events} row of a L{SessionEvent} (without its id)."""
    return {
        "session_id": event.session_id,
        "seq": event.seq,
        "at": event.at,
        "state": event.state,
        "previous": event.previous,
        "reason": event.reason,
        "detail": event.detail,
        "transition": event.transition,
    }


def event_from_row(row: Row[Any]) -> SessionEvent:
    """A L{SessionEvent} from a C{session_events} row."""
    m = dict(row._mapping)
    del m["event_id"]
    m["transition"] = bool(m["transition"])
    return SessionEvent(**m)


def trace_values(trace: ApduTraceRecord) -> dict[str, Any]:
    """The C{apdu_traces} row of an L{ApduTraceRecord}."""
    return {
        "session_id": trace.session_id,
        "script": trace.script,
        "apdu_index": trace.index,
        "capdu": trace.capdu,
        "rapdu": trace.rapdu,
        "sent_at": trace.sent_at,
        "answered_at": trace.answered_at,
        "outcome": trace.outcome,
    }


def trace_from_row(row: Row[Any]) -> ApduTraceRecord:
    """An L{ApduTraceRecord} from an C{apdu_traces} row."""
    m = row._mapping
    return ApduTraceRecord(
        session_id=m["session_id"],
        script=m["script"],
        index=m["apdu_index"],
        capdu=bytes(m["capdu"]),
        rapdu=None if m["rapdu"] is None else bytes(m["rapdu"]),
        sent_at=m["sent_at"],
        answered_at=m["answered_at"],
        outcome=m["outcome"],
    )


def audit_values(record: AuditRecord) -> dict[str, Any]:
    """The C{audit_log} row of an L{AuditRecord} (without its id)."""
    return {
        "at": record.at,
        "actor": record.actor,
        "action": record.action,
        "target": record.target,
        "detail": record.detail,
        "origin": record.origin,
    }


def audit_from_row(row: Row[Any]) -> AuditRecord:
    """An L{AuditRecord} from an C{audit_log} row."""
    m = row._mapping
    return AuditRecord(
        m["at"],
        m["actor"],
        m["action"],
        m["target"],
        m["detail"],
        int(m["audit_id"]),
        origin=m["origin"],
    )


def import_values(report: ImportReport) -> dict[str, Any]:
    """The C{imports} row of an L{ImportReport} (without its id)."""
    return {
        "kind": report.kind.value,
        "file_name": report.file_name,
        "sha256": report.sha256,
        "imported_at": report.imported_at,
        "records": report.records,
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
        "errors": to_json([[e.line, e.column, e.message] for e in report.errors]),
        "fatal": report.fatal,
        "applied": report.applied,
        "header": to_json(dict(report.header)),
        "notices": to_json(list(report.notices)),
        "previous_import_id": report.previous_import_id,
    }


def import_from_row(row: Row[Any]) -> ImportReport:
    """An L{ImportReport} from an C{imports} row."""
    m = row._mapping
    errors: list[list[Any]] = from_json(m["errors"])
    header: Mapping[str, str] = from_json(m["header"])
    return ImportReport(
        kind=m["kind"],
        file_name=m["file_name"],
        sha256=m["sha256"],
        imported_at=m["imported_at"],
        records=m["records"],
        added=m["added"],
        updated=m["updated"],
        unchanged=m["unchanged"],
        rejected=m["rejected"],
        errors=tuple(LineError(line, column, message) for line, column, message in errors),
        fatal=m["fatal"],
        applied=bool(m["applied"]),
        header=header,
        notices=tuple(from_json(m["notices"])),
        previous_import_id=m["previous_import_id"],
        import_id=int(m["import_id"]),
    )
