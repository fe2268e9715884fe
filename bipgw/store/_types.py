# -*- test-case-name: tests.unit.store.test_types,tests.unit.store.test_contract -*-
"""The records the application database holds, and the store's errors.

Every record is a frozen C{attrs} value: what a caller gets from the store
is a snapshot it can keep, compare and pass to another thread without
locking.  Records carry plain strings and numbers (ISO-free epoch seconds,
upper-case key purposes) so both stores, and anything that reads the
database with another tool, agree on one representation.

Per-card keys appear only as I{sealed} blobs (L{bipgw.keys.seal} under the
gateway root key, with the label L{card_key_label}); no record here can hold
a key in clear.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from attrs import field, frozen

from bipgw.errors import BipGwError

#: The largest OTA counter: TS 102 225 counters are 5 bytes.
MAX_OTA_COUNTER = (1 << 40) - 1
#: Longest PSK identity accepted (TLS allows more; cards use a few dozen bytes).
MAX_PSK_IDENTITY = 128


class StoreError(BipGwError):
    """Root of the errors raised by L{bipgw.store}.

    Messages name records by their identifiers (ICCID, session id...), which
    are not secret; they never contain key material.
    """


class UnknownRecordError(StoreError, LookupError):
    """The card, tenant, service, session or import named does not exist."""


class DuplicateRecordError(StoreError):
    """A record with the same identifier already exists."""


class StoreConflictError(StoreError):
    """The change would break a rule (a tenant still has services, ...)."""


class CounterExhaustedError(StoreError):
    """The card's OTA counter reached its 5-byte maximum; its keys must be renewed."""


class KeyPurpose(StrEnum):
    """What a per-card key is for; the value is its column stem in vendor files."""

    KIC = "KIC"
    KID = "KID"
    KIK = "KIK"
    PSK = "PSK"
    SCP03_ENC = "SCP03_ENC"
    SCP03_MAC = "SCP03_MAC"
    SCP03_DEK = "SCP03_DEK"


class Outcome(StrEnum):
    """What a write did to one record: the counts of an import report."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


class MsisdnOperation(StrEnum):
    """The operations of the MSISDN mapping file (DESIGN.md section 5)."""

    ADD = "ADD"
    DEL = "DEL"
    CHG = "CHG"


class ImportKind(StrEnum):
    """Which kind of file an import record describes."""

    CARDS = "cards"
    MSISDN = "msisdn"


def card_key_label(iccid: str, purpose: KeyPurpose | str, kvn: int) -> str:
    """The seal label of one per-card key: C{card:<ICCID>:<PURPOSE><KVN>}.

    The label is authenticated by L{bipgw.keys.seal}, so it must name the row
    (the card) I{and} the column (purpose and key version): a blob copied to
    another card or purpose then fails to open.  For keyset 1 it is the
    C{docs/keys.md} convention, e.g. C{card:8988211000000000018:KIC1}.
    """
    return f"card:{iccid}:{KeyPurpose(purpose).value}{kvn}"


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value or {}))


def _non_empty(instance: object, attribute: Any, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string")


def _kvn(instance: object, attribute: Any, value: int) -> None:
    if type(value) is not int or not 0 <= value <= 255:
        raise ValueError(f"a key version number is 0 to 255, got {value!r}")


def _psk_identity(instance: object, attribute: Any, value: bytes | None) -> None:
    if value is not None and (
        not isinstance(value, bytes) or not 1 <= len(value) <= MAX_PSK_IDENTITY
    ):
        raise ValueError(f"a PSK identity is 1 to {MAX_PSK_IDENTITY} bytes")


@frozen
class Card:
    """A SIM card as the gateway knows it.

    @ivar iccid: the normalised ICCID (18 to 20 digits, no F filler).
    @ivar msisdn: the number currently mapped to the card (MSISDN file), if any.
    @ivar psk_identity: the SCP81 TLS-PSK identity, unique across cards.
    @ivar extras: vendor-file columns bipgw does not interpret, kept as text.
    @ivar ota_counter: the last OTA counter value allocated (0: none yet).
    """

    iccid: str = field(validator=_non_empty)
    imsi: str | None = None
    msisdn: str | None = None
    psk_identity: bytes | None = field(default=None, validator=_psk_identity)
    batch: str | None = None
    customer: str | None = None
    card_type: str | None = None
    extras: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping, hash=False)
    ota_counter: int = 0


@frozen
class CardKey:
    """One per-card key, sealed under the gateway root key.

    @ivar sealed: L{bipgw.keys.seal} output for the label L{label}; the
        only form in which the store ever holds the key.
    @ivar fingerprint: an HMAC of the key under a root-derived key
        (L{bipgw.store.seal_card_key}); equal fingerprints mean equal keys,
        so a re-import is recognised as unchanged without unsealing, and the
        fingerprint tells nothing about the key without the root key.
    @ivar algorithm: a L{bipgw.keys.KeyAlgorithm} value (C{"aes-128"}...),
        or C{"psk"} for an SCP81 pre-shared key.
    """

    iccid: str = field(validator=_non_empty)
    purpose: KeyPurpose = field(converter=KeyPurpose)
    kvn: int = field(validator=_kvn)
    algorithm: str = field(validator=_non_empty)
    sealed: bytes = field(repr=False)
    fingerprint: bytes = field(repr=False)

    @property
    def label(self) -> str:
        """The label the key is sealed under (L{card_key_label})."""
        return card_key_label(self.iccid, self.purpose, self.kvn)


@frozen
class CardKeys:
    """All the sealed keys of one card."""

    iccid: str
    keys: tuple[CardKey, ...] = ()

    def find(self, purpose: KeyPurpose | str, kvn: int) -> CardKey | None:
        """The key for C{purpose} and key version C{kvn}, if the card has it."""
        wanted = KeyPurpose(purpose)
        for key in self.keys:
            if key.purpose is wanted and key.kvn == kvn:
                return key
        return None


@frozen
class CardUpsert:
    """What an import writes for one card: identity, batch facts and keys.

    The MSISDN and the OTA counter are not here: they change through
    L{IStore.apply_msisdn_changes} and L{IStore.next_ota_counter} only, so
    re-importing a vendor file can never unmap a number or rewind a counter.
    Keys listed are inserted or replaced (when their fingerprint differs);
    keys not listed are kept.
    """

    iccid: str = field(validator=_non_empty)
    imsi: str | None = None
    psk_identity: bytes | None = field(default=None, validator=_psk_identity)
    batch: str | None = None
    customer: str | None = None
    card_type: str | None = None
    extras: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping, hash=False)
    keys: tuple[CardKey, ...] = ()

    def differs_from(self, card: Card) -> bool:
        """Whether writing this would change C{card}'s own fields (not its keys)."""
        return (
            self.imsi,
            self.psk_identity,
            self.batch,
            self.customer,
            self.card_type,
            dict(self.extras),
        ) != (
            card.imsi,
            card.psk_identity,
            card.batch,
            card.customer,
            card.card_type,
            dict(card.extras),
        )


def bulk_card_upsert(
    iccid: str,
    imsi: str | None,
    psk_identity: bytes | None,
    batch: str | None,
    customer: str | None,
    card_type: str | None,
    extras: Mapping[str, str],
    keys: tuple[CardKey, ...],
) -> CardUpsert:
    """A L{CardUpsert} from values an importer has already checked, validators not re-run.

    The bulk import builds a million of these; attrs' validators and
    converters cost more than the rest of the object.  Callers pass what
    the validators would accept (a normalised ICCID, a PSK identity of 1 to
    L{MAX_PSK_IDENTITY} bytes, keys made by L{bipgw.store.CardKeySealer}).
    """
    upsert = object.__new__(CardUpsert)
    put = object.__setattr__
    put(upsert, "iccid", iccid)
    put(upsert, "imsi", imsi)
    put(upsert, "psk_identity", psk_identity)
    put(upsert, "batch", batch)
    put(upsert, "customer", customer)
    put(upsert, "card_type", card_type)
    put(upsert, "extras", types.MappingProxyType(dict(extras)))
    put(upsert, "keys", keys)
    return upsert


def bulk_card_key(
    iccid: str, purpose: KeyPurpose, kvn: int, algorithm: str, sealed: bytes, fingerprint: bytes
) -> CardKey:
    """A L{CardKey} made by L{bipgw.store.CardKeySealer}, validators not re-run."""
    key = object.__new__(CardKey)
    put = object.__setattr__
    put(key, "iccid", iccid)
    put(key, "purpose", purpose)
    put(key, "kvn", kvn)
    put(key, "algorithm", algorithm)
    put(key, "sealed", sealed)
    put(key, "fingerprint", fingerprint)
    return key


@frozen
class WriteResult:
    """The outcome of one item of a batch write.

    @ivar key: the ICCID (cards) or the index in the batch (MSISDN changes).
    @ivar reason: why it was rejected, for the import report.
    @ivar field: the input field the rejection is about (C{"ICCID"},
        C{"MSISDN"}, C{"psk_identity"}...), if one is.
    """

    key: str
    outcome: Outcome
    reason: str | None = None
    field: str | None = None


@frozen
class BatchResult:
    """The outcome of a batch write.

    @ivar committed: C{False} when an atomic batch was rolled back because
        an item was rejected: then nothing of the batch was written.
    """

    results: tuple[WriteResult, ...]
    committed: bool


@frozen
class MsisdnChange:
    """One record of an MSISDN mapping file, ready to apply.

    @ivar msisdn: the number (digits, no C{+}); the I{new} number for C{CHG}.
    @ivar effective_at: when the change took effect, epoch seconds (UTC).
    @ivar source: where it came from (a file name), kept in the history.
    """

    operation: MsisdnOperation = field(converter=MsisdnOperation)
    msisdn: str | None
    iccid: str | None
    imsi: str | None
    effective_at: int
    source: str | None = None


@frozen
class MsisdnMapping:
    """One applied change in the MSISDN history (nothing is ever deleted).

    @ivar previous_msisdn: the card's number before the change (C{CHG},
        C{DEL}), so the history alone tells which number a card had when.
    """

    entry_id: int
    operation: MsisdnOperation = field(converter=MsisdnOperation)
    msisdn: str | None
    iccid: str
    imsi: str | None
    previous_msisdn: str | None
    effective_at: int
    applied_at: float
    source: str | None = None


@frozen
class Tenant:
    """A business platform operator allowed to open sessions."""

    tenant_id: str = field(validator=_non_empty)
    name: str
    enabled: bool = True
    created_at: float = 0.0


@frozen
class Service:
    """A tenant's service (OTA profile, limits); C{settings} holds the details.

    The platform issue will give the settings a schema; until then they are
    JSON scalars by name (C{"tar": "000000"}, C{"max_sessions": 10}...).
    """

    service_id: str = field(validator=_non_empty)
    tenant_id: str = field(validator=_non_empty)
    name: str = ""
    enabled: bool = True
    settings: Mapping[str, str | int | float | bool | None] = field(
        factory=dict, converter=_frozen_mapping, hash=False
    )


@frozen
class SessionRecord:
    """The latest snapshot of one admin session (mirrors the engine's status).

    States and reasons are the engine's enum names, stored as text so the
    store does not depend on the engine's types.
    """

    session_id: str = field(validator=_non_empty)
    service: str
    state: str
    opened_at: float
    updated_at: float
    iccid: str | None = None
    msisdn: str | None = None
    agent_id: str | None = None
    push_attempts: int = 0
    scripts: int = 0
    ended_at: float | None = None
    reason: str | None = None
    detail: str = ""


FINAL_SESSION_STATES: Final = frozenset({"closed", "failed"})
"""The states a session record ends in (the engine's terminal states)."""


@frozen
class SessionEvent:
    """One transition (or, with C{transition=False}, a note) in a session's history."""

    session_id: str
    seq: int
    at: float
    state: str
    previous: str | None = None
    reason: str | None = None
    detail: str = ""
    transition: bool = True


@frozen
class ApduTraceRecord:
    """One C-APDU sent in a session and its R-APDU (C{None}: never answered)."""

    session_id: str
    script: int
    index: int
    capdu: bytes
    rapdu: bytes | None
    sent_at: float
    answered_at: float | None
    outcome: str = "ok"


@frozen
class AuditRecord:
    """Who did what to which object, for the operators' audit trail.

    Never holds a secret: a token, password or key is named (its label, its
    check value), never written.

    @ivar at: when (epoch seconds).
    @ivar actor: who: C{cli:<OS user>} for a command, the tenant's name for
        the HTTP API, C{gateway <node>} for the gateway itself.
    @ivar action: what, as C{<object>.<verb>} (C{tenant.add}, C{keys.generate-master}).
    @ivar target: which object (a tenant's name, a key's label, a file).
    @ivar detail: what changed, in words.
    @ivar audit_id: assigned by the store; C{None} before it is written.
    @ivar origin: from where (C{host <hostname>} for a command, the peer's
        address for a request), empty when not known.
    """

    at: float
    actor: str
    action: str
    target: str = ""
    detail: str = ""
    audit_id: int | None = None
    origin: str = field(default="", kw_only=True)


@frozen
class LineError:
    """One refused line of an imported file.

    @ivar line: the 1-based line number in the file (0: the file as a whole).
    @ivar column: the column or field concerned, if one is.
    @ivar message: why, in words; never the text of a secret column.
    """

    line: int
    column: str | None
    message: str

    def render(self) -> str:
        """C{"line 7, column KIC1: not hex"}."""
        where = f"line {self.line}"
        if self.column is not None:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


#: One valid line of an MSISDN file, as L{IStore.apply_msisdn_rows} takes it:
#: its line number, operation (C{"ADD"}, C{"DEL"}, C{"CHG"}), MSISDN, ICCID,
#: IMSI and effective time (epoch seconds); fields as in L{MsisdnChange}.
MsisdnRow = tuple[int, str, "str | None", "str | None", "str | None", int]


@frozen
class MsisdnRowsResult:
    """What L{IStore.apply_msisdn_rows} did with a file's lines.

    @ivar errors: the rejected lines' errors (line, field, reason), in the
        order the lines were applied; at most the C{max_errors} asked for,
        while C{rejected} counts them all.
    @ivar committed: C{False} when an atomic file was rolled back because a
        line was rejected: then nothing of it was written.
    """

    added: int
    updated: int
    unchanged: int
    rejected: int
    errors: tuple[LineError, ...]
    committed: bool


@frozen
class ImportReport:
    """What one import of a vendor or MSISDN file did, line by line.

    @ivar sha256: hex digest of the file's bytes; the same content imported
        again is recognised by it (L{previous_import_id}).
    @ivar records: card or mapping lines in the file (good and bad).
    @ivar errors: refused lines (at most L{MAX_REPORTED_ERRORS}; C{rejected}
        counts them all).
    @ivar fatal: why the file as a whole was refused, if it was.
    @ivar applied: whether the file's valid lines were written (C{False}
        when the file was refused as a whole: then nothing was).
    @ivar header: the vendor file's header (never secret) or empty.
    @ivar notices: remarks that are not errors (ignored columns...).
    """

    kind: ImportKind = field(converter=ImportKind)
    file_name: str
    sha256: str
    imported_at: float
    records: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: tuple[LineError, ...] = ()
    fatal: str | None = None
    applied: bool = False
    header: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping, hash=False)
    notices: tuple[str, ...] = ()
    previous_import_id: int | None = None
    import_id: int | None = None

    @property
    def ok(self) -> bool:
        """Whether every line was accepted and the file applied."""
        return self.fatal is None and self.rejected == 0 and self.applied


#: How many line errors an import report keeps (its C{rejected} count is exact).
MAX_REPORTED_ERRORS = 1000
