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
from bipgw.store._audit import MAX_AUDIT_LIMIT, AuditFilter, add_audit_now, find_audit
from bipgw.store._browse import (
    AuditSearch,
    CardKeyInfo,
    SessionFilter,
    SessionOwners,
    SqlBrowse,
)
from bipgw.store._bulk import CardRow, CardRowBatch, KeyRow
from bipgw.store._campaigns import ICampaignRecords, SqlCampaignStore
from bipgw.store._campaigns_memory import MemoryCampaignStore
from bipgw.store._card_key_rotation import StoreKeyRotationPlanner
from bipgw.store._card_key_source import (
    CardKeySource,
    DerivedKeySpec,
    ICardKeyReader,
    kdf_algorithm,
)
from bipgw.store._card_key_versions import (
    KeyFamily,
    KeySource,
    KeyState,
    KeyVersion,
    SqlCardKeyVersions,
    card_key_versions_for,
    card_kvn,
)
from bipgw.store._engine import create_sql_engine
from bipgw.store._feed_types import FeedFile, Partner
from bipgw.store._group import GroupCommit
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
from bipgw.store._operators import (
    IOperators,
    Operator,
    Role,
    SqlOperators,
    check_operator_name,
    check_password,
)
from bipgw.store._partner_records import add_partner, disable_partner, parse_ssh_key
from bipgw.store._probe import OPERATIONS as STORE_OPERATIONS
from bipgw.store._probe import probe as probe_store
from bipgw.store._probe import time_statements
from bipgw.store._recorder import BatchingRecorder
from bipgw.store._recovery import (
    RESTART_DETAIL,
    StoreSessionHistory,
    end_sessions_left_open,
    session_status,
)
from bipgw.store._reseal import SEALED_COLUMNS, Resealer, SealedColumn, write_audit
from bipgw.store._rotation import Progress, RootRotation, RotationResult
from bipgw.store._scp03_keys import StoreScp03KeySource
from bipgw.store._sealing import (
    FINGERPRINT_INFO,
    BulkSealer,
    CardKeySealer,
    card_key_fingerprint,
    open_card_key,
    seal_card_key,
)
from bipgw.store._service_requests import (
    IServiceRequests,
    MemoryServiceRequests,
    RequestState,
    ServiceRequest,
    SqlServiceRequests,
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
    WriteResult,
    bulk_card_key,
    bulk_card_upsert,
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
    "MAX_AUDIT_LIMIT",
    "MAX_OTA_COUNTER",
    "MAX_PSK_IDENTITY",
    "MAX_REPORTED_ERRORS",
    "MEMORY_URL",
    "MIGRATIONS",
    "RESTART_DETAIL",
    "SEALED_COLUMNS",
    "STORE_OPERATIONS",
    "TENANT_SETTINGS",
    "ApduTraceRecord",
    "AuditFilter",
    "AuditRecord",
    "AuditSearch",
    "BatchResult",
    "BatchingRecorder",
    "BulkSealer",
    "Card",
    "CardKey",
    "CardKeyInfo",
    "CardKeySealer",
    "CardKeySource",
    "CardKeys",
    "CardRow",
    "CardRowBatch",
    "CardUpsert",
    "CounterExhaustedError",
    "DerivedKeySpec",
    "DuplicateRecordError",
    "FeedFile",
    "GroupCommit",
    "ICampaignRecords",
    "ICardKeyReader",
    "IOperators",
    "IServiceRequests",
    "IStore",
    "ImportKind",
    "ImportReport",
    "KeyFamily",
    "KeyPurpose",
    "KeyRow",
    "KeySource",
    "KeyState",
    "KeyVersion",
    "LineError",
    "MemoryCampaignStore",
    "MemoryServiceRequests",
    "MemoryStore",
    "Migration",
    "MsisdnChange",
    "MsisdnMapping",
    "MsisdnOperation",
    "MsisdnPlan",
    "MsisdnRow",
    "MsisdnRowsResult",
    "Operator",
    "Outcome",
    "Partner",
    "Progress",
    "RequestState",
    "Resealer",
    "Role",
    "RootRotation",
    "RotationResult",
    "SchemaVersionError",
    "SealedColumn",
    "Service",
    "ServiceRequest",
    "SessionEvent",
    "SessionFilter",
    "SessionOwners",
    "SessionRecord",
    "SqlBrowse",
    "SqlCampaignStore",
    "SqlCardKeyVersions",
    "SqlOperators",
    "SqlServiceRequests",
    "SqlStore",
    "StoreCardDirectory",
    "StoreConflictError",
    "StoreError",
    "StoreKeyRotationPlanner",
    "StoreScp03KeySource",
    "StoreSessionHistory",
    "StoreSessionRecorder",
    "StoreTenantDirectory",
    "Tenant",
    "TokenDigest",
    "UnknownRecordError",
    "WriteResult",
    "add_audit_now",
    "add_partner",
    "add_tenant",
    "bulk_card_key",
    "bulk_card_upsert",
    "campaign_store",
    "card_key_fingerprint",
    "card_key_label",
    "card_key_versions_for",
    "card_kvn",
    "check_operator_name",
    "check_password",
    "create_sql_engine",
    "create_store",
    "current_version",
    "disable_partner",
    "disable_tenant",
    "end_sessions_left_open",
    "event_record",
    "find_audit",
    "grant_service",
    "in_threads",
    "is_reserved_row",
    "is_settings_row",
    "kdf_algorithm",
    "migrate",
    "new_token",
    "open_card_key",
    "open_store",
    "parse_ssh_key",
    "plan_msisdn_change",
    "probe_store",
    "replace_token",
    "seal_card_key",
    "service_grant",
    "service_id",
    "session_record",
    "session_status",
    "settings_id",
    "time_statements",
    "trace_record",
    "write_audit",
]
