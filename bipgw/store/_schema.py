# -*- test-case-name: tests.unit.store.test_migrations,tests.unit.store.test_sqlite -*-
"""The application database's tables, and rows to records and back.

Portable by construction: only SQLAlchemy Core types that SQLite and
PostgreSQL both have (text of bounded length, integers, doubles, booleans,
binary), no server-side defaults, no dialect-specific SQL.  Times are epoch
seconds (doubles; whole seconds for MSISDN effective times), mappings are
JSON text, so any tool can read the database.

Change a table here only together with a new step in L{_migrations}; a
test compares the migrated database with these definitions.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: An auto-incrementing 64-bit key (SQLite needs INTEGER for its rowid alias).
_Serial = BigInteger().with_variant(Integer(), "sqlite")

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(255), nullable=False),
    Column("applied_at", Double, nullable=False),
)

cards = Table(
    "cards",
    metadata,
    Column("iccid", String(20), primary_key=True),
    Column("imsi", String(15)),
    Column("msisdn", String(20)),
    Column("psk_identity", LargeBinary(128)),
    Column("batch", String(255)),
    Column("customer", String(255)),
    Column("card_type", String(255)),
    Column("extras", Text, nullable=False),
    Column("ota_counter", BigInteger, nullable=False),
    Index("ix_cards_msisdn", "msisdn", unique=True),
    Index("ix_cards_psk_identity", "psk_identity", unique=True),
    Index("ix_cards_batch", "batch"),
)


def _card_key_version() -> list[Column[Any]]:
    """The key of a card's key version: the card, the key's purpose, its version number."""
    return [
        Column(
            "iccid",
            String(20),
            ForeignKey("cards.iccid", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("purpose", String(16), primary_key=True),
        Column("kvn", Integer, primary_key=True, autoincrement=False),
    ]


card_keys = Table(
    "card_keys",
    metadata,
    *_card_key_version(),
    Column("algorithm", String(16), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("fingerprint", LargeBinary(64), nullable=False),
)

#: The lifecycle of each card key version (pending, active, retired) and
#: where it came from; never a key (bipgw.store._card_key_versions).
card_key_versions = Table(
    "card_key_versions",
    metadata,
    *_card_key_version(),
    Column("state", String(8), nullable=False),
    Column("source", String(10), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("changed_at", Double, nullable=False),
    Index("ix_card_key_versions_state", "state"),
)

msisdn_history = Table(
    "msisdn_history",
    metadata,
    Column("entry_id", _Serial, primary_key=True, autoincrement=True),
    Column("operation", String(3), nullable=False),
    Column("msisdn", String(20)),
    Column("iccid", String(20), nullable=False),
    Column("imsi", String(15)),
    Column("previous_msisdn", String(20)),
    Column("effective_at", BigInteger, nullable=False),
    Column("applied_at", Double, nullable=False),
    Column("source", String(1024)),
    Index("ix_msisdn_history_iccid", "iccid"),
    Index("ix_msisdn_history_msisdn", "msisdn"),
    Index("ix_msisdn_history_previous", "previous_msisdn"),
)

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
)

services = Table(
    "services",
    metadata,
    Column("service_id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("settings", Text, nullable=False),
    Index("ix_services_tenant", "tenant_id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("state", String(32), nullable=False),
    Column("opened_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("iccid", String(20)),
    Column("msisdn", String(20)),
    Column("agent_id", String(255)),
    Column("push_attempts", Integer, nullable=False),
    Column("scripts", Integer, nullable=False),
    Column("ended_at", Double),
    Column("reason", String(64)),
    Column("detail", Text, nullable=False),
    Index("ix_sessions_iccid", "iccid"),
    Index("ix_sessions_opened", "opened_at"),
)

session_events = Table(
    "session_events",
    metadata,
    Column("event_id", _Serial, primary_key=True, autoincrement=True),
    Column("session_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("state", String(32), nullable=False),
    Column("previous", String(32)),
    Column("reason", String(64)),
    Column("detail", Text, nullable=False),
    Column("transition", Boolean, nullable=False),
    Index("ix_session_events_session", "session_id", "seq"),
)

apdu_traces = Table(
    "apdu_traces",
    metadata,
    Column("trace_id", _Serial, primary_key=True, autoincrement=True),
    Column("session_id", String(64), nullable=False),
    Column("script", Integer, nullable=False),
    Column("apdu_index", Integer, nullable=False),
    Column("capdu", LargeBinary, nullable=False),
    Column("rapdu", LargeBinary),
    Column("sent_at", Double, nullable=False),
    Column("answered_at", Double),
    Column("outcome", String(32), nullable=False),
    Index("ix_apdu_traces_session", "session_id", "script", "apdu_index"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("audit_id", _Serial, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(1024), nullable=False),
    Column("detail", Text, nullable=False),
    Column("origin", String(255), nullable=False, server_default=""),
    Index("ix_audit_log_at", "at"),
)

imports = Table(
    "imports",
    metadata,
    Column("import_id", _Serial, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("file_name", String(1024), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("imported_at", Double, nullable=False),
    Column("records", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("errors", Text, nullable=False),
    Column("fatal", Text),
    Column("applied", Boolean, nullable=False),
    Column("header", Text, nullable=False),
    Column("notices", Text, nullable=False),
    Column("previous_import_id", BigInteger),
    Index("ix_imports_sha256", "sha256"),
)


partners = Table(
    "partners",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("transport_key", String(255)),
    Column("password", Text),
    Column("ssh_keys", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

feed_files = Table(
    "feed_files",
    metadata,
    Column("partner", String(64), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("file_name", String(1024), nullable=False),
    Column("processed_at", Double, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("import_id", BigInteger),
)

operators = Table(
    "operators",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("password", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("changed_at", Double, nullable=False),
)

service_requests = Table(
    "service_requests",
    metadata,
    Column("request_id", _Serial, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("service", String(64), nullable=False),
    Column("aids", Text, nullable=False),
    Column("tars", Text, nullable=False),
    Column("expected_volume", BigInteger, nullable=False),
    Column("note", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("submitted_at", Double, nullable=False),
    Column("decided_at", Double),
    Column("decided_by", String(64)),
    Column("decision_note", Text, nullable=False),
    Index("ix_service_requests_state", "state", "request_id"),
)

session_owners = Table(
    "session_owners",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Index("ix_session_owners_tenant", "tenant_id"),
)


campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("service", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("spec", Text, nullable=False),
    Column("cards", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_campaigns_tenant", "tenant_id"),
    Index("ix_campaigns_state", "state"),
)

campaign_cards = Table(
    "campaign_cards",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("iccid", String(20)),
    Column("msisdn", String(20)),
    Column("variables", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", Double, nullable=False),
    Column("reason", String(64)),
    Column("detail", Text),
    Column("rapdus", Text, nullable=False),
    Column("session", String(64)),
    Column("updated_at", Double, nullable=False),
    Index("ix_campaign_cards_due", "campaign_id", "state", "next_at"),
)


def to_json(value: Any) -> str:
    """Canonical JSON text for a mapping or list column."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def from_json(text: str) -> Any:
    """The value of a JSON text column."""
    return json.loads(text)
