# -*- test-case-name: tests.unit.store.test_feeds -*-
"""The file feeds' records as rows of C{partners} and C{feed_files}, and their writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, insert, select

import bipgw.store._schema as s
from bipgw.store._feed_types import FeedFile, Partner
from bipgw.store._queries import replace
from bipgw.store._types import DuplicateRecordError, ImportKind


def partner_values(partner: Partner) -> dict[str, Any]:
    """A C{partners} row for C{partner}."""
    return {
        "name": partner.name,
        "kind": partner.kind.value,
        "enabled": partner.enabled,
        "transport_key": partner.transport_key,
        "password": None if partner.password is None else s.to_json(dict(partner.password)),
        "ssh_keys": "\n".join(partner.ssh_keys),
        "created_at": partner.created_at,
    }


def partner_from_row(row: Row[Any] | Mapping[str, Any]) -> Partner:
    """A L{Partner} from a C{partners} row."""
    m = row._mapping if isinstance(row, Row) else row
    password = None if m["password"] is None else s.from_json(m["password"])
    return Partner(
        name=m["name"],
        kind=ImportKind(m["kind"]),
        enabled=bool(m["enabled"]),
        transport_key=m["transport_key"],
        password=password,
        ssh_keys=tuple(k for k in m["ssh_keys"].split("\n") if k),
        created_at=m["created_at"],
    )


def feed_file_from_row(row: Row[Any]) -> FeedFile:
    """A L{FeedFile} from a C{feed_files} row."""
    m = row._mapping
    return FeedFile(
        m["partner"], m["sha256"], m["file_name"], m["processed_at"], m["outcome"], m["import_id"]
    )


def put_partner(c: Connection, partner: Partner) -> None:
    """Create or replace a partner row."""
    replace(c, s.partners, s.partners.c.name == partner.name, partner_values(partner))


def add_feed_file(c: Connection, record: FeedFile) -> None:
    """Remember a processed file; refuse a second record of the same content."""
    t = s.feed_files.c
    key = (t.partner == record.partner) & (t.sha256 == record.sha256)
    if c.execute(select(t.sha256).where(key)).first() is not None:
        raise DuplicateRecordError(f"partner {record.partner} already delivered {record.sha256}")
    c.execute(
        insert(s.feed_files).values(
            partner=record.partner,
            sha256=record.sha256,
            file_name=record.file_name,
            processed_at=record.processed_at,
            outcome=record.outcome,
            import_id=record.import_id,
        )
    )
