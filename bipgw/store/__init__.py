"""The application database: cards and their sealed keys, MSISDNs, sessions, audit.

Everything goes through L{IStore}, whose methods return Deferreds.  Two
implementations pass the same contract tests:

  - L{MemoryStore}: dictionaries; the fake for tests, and the store of a
    gateway run without a database;
  - L{SqlStore}: SQLAlchemy Core in a thread pool, on SQLite (the default,
    a file created on first run, WAL mode) or PostgreSQL, with the schema
    created and migrated on open (L{LATEST_VERSION}).

L{open_store} picks one from a URL.  Per-card keys are stored only sealed
under the gateway root key (L{seal_card_key}, L{open_card_key}).
L{StoreCardDirectory}, L{StoreSessionRecorder} and L{StoreScp03KeySource}
plug a store into the
session engine (C{bipgw.core}); L{StoreTenantDirectory} is the front doors'
tenant directory (tenants kept by C{bipgw tenant ...}, tokens as scrypt
digests: L{TokenDigest}); L{Partner} and L{FeedFile} are the file feeds'
partners (C{bipgw partner ...}: L{add_partner}) and the files they
delivered; L{BatchingRecorder} is the recorder a gateway runs, writing
the session history behind the sessions, in batches.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from bipgw.store._adapters import (
    StoreCardDirectory,
    StoreSessionRecorder,
    event_record,
    session_record,
    trace_record,
)
from bipgw.store._campaigns import ICampaignRecords, SqlCampaignStore
from bipgw.store._campaigns_memory import MemoryCampaignStore
from bipgw.store._engine import create_sql_engine
from bipgw.store._feed_types import FeedFile, Partner
from bipgw.store._interfaces import IStore, MsisdnPlan, plan_msisdn_change
from bipgw.store._memory import MemoryStore
from bipgw.store._migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaVersionError,
    current_version,
    migrate,
)
from bipgw.store._partner_records import add_partner, disable_partner, parse_ssh_key
from bipgw.store._recorder import BatchingRecorder
from bipgw.store._recovery import (
    RESTART_DETAIL,
    StoreSessionHistory,
    end_sessions_left_open,
    session_status,
)
from bipgw.store._scp03_keys import StoreScp03KeySource
from bipgw.store._sealing import (
    FINGERPRINT_INFO,
    CardKeySealer,
    card_key_fingerprint,
    open_card_key,
    seal_card_key,
)
from bipgw.store._sql import SqlStore
from bipgw.store._tenant_records import add_tenant, disable_tenant, grant_service, replace_token
from bipgw.store._tenants import (
    TENANT_SETTINGS,
    StoreTenantDirectory,
    TokenDigest,
    in_threads,
    is_reserved_row,
    is_settings_row,
    new_token,
    service_grant,
    service_id,
    settings_id,
)
from bipgw.store._types import (
    MAX_OTA_COUNTER,
    MAX_PSK_IDENTITY,
    MAX_REPORTED_ERRORS,
    ApduTraceRecord,
    AuditRecord,
    BatchResult,
    Card,
    CardKey,
    CardKeys,
    CardUpsert,
    CounterExhaustedError,
    DuplicateRecordError,
    ImportKind,
    ImportReport,
    KeyPurpose,
    LineError,
    MsisdnChange,
    MsisdnMapping,
    MsisdnOperation,
    Outcome,
    Service,
    SessionEvent,
    SessionRecord,
    StoreConflictError,
    StoreError,
    Tenant,
    UnknownRecordError,
    WriteResult,
    card_key_label,
)

#: The URL of a store that lives in memory (nothing persists).
MEMORY_URL = "memory:"


def create_store(url: str, *, reactor: Any = None, threads: int | None = None) -> IStore:
    """The store a configuration names, made but not started (L{IStore.start}).

    @raise StoreError: C{url} names no usable database.
    """
    if url.strip() == MEMORY_URL:
        return MemoryStore()
    return SqlStore.create(url, reactor=reactor, threads=threads)


def campaign_store(store: IStore) -> SqlCampaignStore | MemoryCampaignStore:
    """The campaigns' store beside C{store}: on its database, or in memory
    for a memory store."""
    if isinstance(store, SqlStore):
        return SqlCampaignStore(store)
    return MemoryCampaignStore()


def open_store(url: str, *, reactor: Any = None, threads: int | None = None) -> Deferred[IStore]:
    """Open the store a configuration names; fires once it is ready to use.

    @param url: L{MEMORY_URL}, C{sqlite:///PATH} (the file is created on
        first use), or C{postgresql+psycopg://user@host/db}.
    @param reactor: for the SQL store's thread pool; the global reactor if
        C{None}.
    """
    if url.strip() == MEMORY_URL:
        return succeed(MemoryStore())
    d: Deferred[Any] = SqlStore.open(url, reactor=reactor, threads=threads)
    return d


__all__ = [
    "FINGERPRINT_INFO",
    "LATEST_VERSION",
    "MAX_OTA_COUNTER",
    "MAX_PSK_IDENTITY",
    "MAX_REPORTED_ERRORS",
    "MEMORY_URL",
    "MIGRATIONS",
    "RESTART_DETAIL",
    "TENANT_SETTINGS",
    "ApduTraceRecord",
    "AuditRecord",
    "BatchResult",
    "BatchingRecorder",
    "Card",
    "CardKey",
    "CardKeySealer",
    "CardKeys",
    "CardUpsert",
    "CounterExhaustedError",
    "DuplicateRecordError",
    "FeedFile",
    "ICampaignRecords",
    "IStore",
    "ImportKind",
    "ImportReport",
    "KeyPurpose",
    "LineError",
    "MemoryCampaignStore",
    "MemoryStore",
    "Migration",
    "MsisdnChange",
    "MsisdnMapping",
    "MsisdnOperation",
    "MsisdnPlan",
    "Outcome",
    "Partner",
    "SchemaVersionError",
    "Service",
    "SessionEvent",
    "SessionRecord",
    "SqlCampaignStore",
    "SqlStore",
    "StoreCardDirectory",
    "StoreConflictError",
    "StoreError",
    "StoreScp03KeySource",
    "StoreSessionHistory",
    "StoreSessionRecorder",
    "StoreTenantDirectory",
    "Tenant",
    "TokenDigest",
    "UnknownRecordError",
    "WriteResult",
    "add_partner",
    "add_tenant",
    "campaign_store",
    "card_key_fingerprint",
    "card_key_label",
    "create_sql_engine",
    "create_store",
    "current_version",
    "disable_partner",
    "disable_tenant",
    "end_sessions_left_open",
    "event_record",
    "grant_service",
    "in_threads",
    "is_reserved_row",
    "is_settings_row",
    "migrate",
    "new_token",
    "open_card_key",
    "open_store",
    "parse_ssh_key",
    "plan_msisdn_change",
    "replace_token",
    "seal_card_key",
    "service_grant",
    "service_id",
    "session_record",
    "session_status",
    "settings_id",
    "trace_record",
]
