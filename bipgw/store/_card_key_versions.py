# -*- test-case-name: tests.unit.store.test_card_key_versions -*-
"""Card key versions and their lifecycle: pending, active, retired.

A card's keys come in I{families} that change together on the card
(L{KeyFamily}): its SCP81 PSK, its OTA key set (KIc, KID, KIK), its SCP03
key set (ENC, MAC, DEK).  Each key of a family has a I{version}: the key
version number (KVN) the card holds it under (OTA C{01}-C{0F}, SCP03
C{30}-C{3F}, PSK C{40}-C{4F}, GP 2.3 11.1.8).  A version is:

  - C{pending} while a rotation puts it on the card (the card has not
    confirmed it yet: the gateway keeps using the active one);
  - C{active} once the card confirmed it (exactly one version per purpose);
  - C{retired} when a newer version took over, or a rotation failed.

Imported keys (the vendor file's) are active without a row here until a
rotation retires them; their store version is the vendor file's number
(C{PSK1}, C{SCP03_ENC1}), which L{card_kvn} maps to the card's KVN.  Where
a version came from is its L{KeySource}: C{imported}, C{derived} from a
master key (nothing stored: derived again when needed), or C{generated}
at random by a rotation (sealed in C{card_keys}).

The table holds metadata only, never a key; every change is audited by
the caller (L{bipgw.store.add_audit}).  L{SqlCardKeyVersions} keeps it in
the SQL store, switching versions in one transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs
from sqlalchemy import Connection, and_, insert, select, update

import bipgw.store._schema as s
from bipgw.store._types import CardKey, KeyPurpose, StoreConflictError, StoreError

__all__ = [
    "KeyFamily",
    "KeySource",
    "KeyState",
    "KeyVersion",
    "SqlCardKeyVersions",
    "card_key_versions_for",
    "card_kvn",
]


class KeyState(enum.StrEnum):
    """Where a card key version is in its life."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


class KeySource(enum.StrEnum):
    """Where a card key version came from."""

    IMPORTED = "imported"
    DERIVED = "derived"
    GENERATED = "generated"


class KeyFamily(enum.StrEnum):
    """Keys that change together on the card (C{--purpose} of C{rotate-card})."""

    PSK = "psk"
    OTA = "ota"
    SCP03 = "scp03"

    @property
    def purposes(self) -> tuple[KeyPurpose, ...]:
        """The store purposes of the family's keys, in key identifier order (KID 1, 2, 3)."""
        return _PURPOSES[self]

    @property
    def kvn_range(self) -> range:
        """The key versions the card holds the family under."""
        return _RANGES[self]

    @classmethod
    def of(cls, purpose: KeyPurpose) -> KeyFamily:
        """The family of a purpose."""
        return _FAMILY_OF[purpose]


_PURPOSES: Final = {
    KeyFamily.PSK: (KeyPurpose.PSK,),
    KeyFamily.OTA: (KeyPurpose.KIC, KeyPurpose.KID, KeyPurpose.KIK),
    KeyFamily.SCP03: (KeyPurpose.SCP03_ENC, KeyPurpose.SCP03_MAC, KeyPurpose.SCP03_DEK),
}
_FAMILY_OF: Final = {p: f for f, ps in _PURPOSES.items() for p in ps}
_RANGES: Final = {
    KeyFamily.PSK: range(0x40, 0x50),
    KeyFamily.OTA: range(0x01, 0x10),
    KeyFamily.SCP03: range(0x30, 0x40),
}


def card_kvn(purpose: KeyPurpose, stored_kvn: int) -> int:
    """The key version the card holds a stored key under.

    The vendor file numbers PSK and SCP03 key sets from 1 (C{PSK1},
    C{SCP03_ENC1}): set I{n} is the card's C{3F + n} (PSK) or C{2F + n}
    (SCP03).  Versions the gateway writes itself (rotations, derivations)
    are already the card's.  OTA sets are numbered as on the card.
    """
    family = KeyFamily.of(KeyPurpose(purpose))
    base = family.kvn_range.start
    if family is not KeyFamily.OTA and stored_kvn < base:
        return base - 1 + stored_kvn
    return stored_kvn


@attrs.frozen
class KeyVersion:
    """One version of one card key: metadata only, never the key."""

    iccid: str
    purpose: KeyPurpose = attrs.field(converter=KeyPurpose)
    kvn: int
    state: KeyState = attrs.field(converter=KeyState)
    source: KeySource = attrs.field(converter=KeySource)
    algorithm: str
    created_at: float | None = None
    changed_at: float | None = None

    @property
    def family(self) -> KeyFamily:
        """The family the key belongs to."""
        return KeyFamily.of(self.purpose)


def _row(v: KeyVersion) -> dict[str, Any]:
    return {
        "iccid": v.iccid,
        "purpose": v.purpose.value,
        "kvn": v.kvn,
        "state": v.state.value,
        "source": v.source.value,
        "algorithm": v.algorithm,
        "created_at": v.created_at if v.created_at is not None else 0.0,
        "changed_at": v.changed_at if v.changed_at is not None else 0.0,
    }


def version_from_row(row: Any) -> KeyVersion:
    """A L{KeyVersion} from a C{card_key_versions} row."""
    m = row._mapping
    return KeyVersion(
        m["iccid"],
        m["purpose"],
        m["kvn"],
        m["state"],
        m["source"],
        m["algorithm"],
        m["created_at"],
        m["changed_at"],
    )


def merged_versions(stored: Iterable[Any], rows: Iterable[KeyVersion]) -> list[KeyVersion]:
    """The versions of C{rows}, plus the stored keys (C{iccid, purpose, kvn,
    algorithm} rows of C{card_keys}) that have none: imported, active."""
    out = {(v.iccid, v.purpose, v.kvn): v for v in rows}
    for key in stored:
        purpose = KeyPurpose(key.purpose)
        kvn = card_kvn(purpose, key.kvn)
        if (key.iccid, purpose, kvn) not in out:
            out[(key.iccid, purpose, kvn)] = KeyVersion(
                key.iccid, purpose, kvn, KeyState.ACTIVE, KeySource.IMPORTED, key.algorithm
            )
    return sorted(out.values(), key=lambda v: (v.iccid, v.purpose.value, v.kvn))


class SqlCardKeyVersions:
    """The card key lifecycle in the SQL store (SQLite, PostgreSQL).

    @param store: the L{bipgw.store.SqlStore}; queries run in its threads.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    def __repr__(self) -> str:
        return "<SqlCardKeyVersions>"

    def versions(self, iccid: str) -> Any:
        """Fire with the card's versions (rows and imported keys), metadata only."""
        return self.list_versions(iccid=iccid)

    def list_versions(self, *, iccid: str | None = None, limit: int = 10000) -> Any:
        """Fire with the versions of one card, or of every card (up to C{limit} cards)."""

        def work(c: Connection) -> list[KeyVersion]:
            k, v = s.card_keys.c, s.card_key_versions.c
            keys = select(k.iccid, k.purpose, k.kvn, k.algorithm)
            rows = select(s.card_key_versions)
            if iccid is not None:
                keys, rows = keys.where(k.iccid == iccid), rows.where(v.iccid == iccid)
            else:
                first = select(s.cards.c.iccid).order_by(s.cards.c.iccid).limit(limit)
                cards = [r[0] for r in c.execute(first)]
                keys = keys.where(k.iccid.in_(cards))
                rows = rows.where(v.iccid.in_(cards))
            return merged_versions(c.execute(keys), [version_from_row(r) for r in c.execute(rows)])

        return self._store._read(work)

    def begin(self, versions: Sequence[KeyVersion], sealed: Sequence[CardKey] = ()) -> Any:
        """Record new C{pending} versions of one family of one card (and their
        sealed keys, for generated ones), in one transaction.

        @raise StoreConflictError: (the Deferred fails) the family already
            has a pending version, or the version exists.
        """
        if not versions:
            raise ValueError("no versions to begin")

        def work(c: Connection) -> None:
            first = versions[0]
            v = s.card_key_versions.c
            purposes = [p.value for p in first.family.purposes]
            pending = c.execute(
                select(v.kvn).where(
                    and_(
                        v.iccid == first.iccid,
                        v.purpose.in_(purposes),
                        v.state == KeyState.PENDING.value,
                    )
                )
            ).first()
            if pending is not None:
                raise StoreConflictError(
                    f"card {first.iccid} has a {first.family.value} key version"
                    f" {pending[0]:02X} pending already"
                )
            for version in versions:
                exists = c.execute(
                    select(v.state).where(
                        and_(
                            v.iccid == version.iccid,
                            v.purpose == version.purpose.value,
                            v.kvn == version.kvn,
                        )
                    )
                ).first()
                if exists is not None:
                    raise StoreConflictError(
                        f"card {version.iccid} has a {version.purpose.value} key version"
                        f" {version.kvn:02X} already ({exists[0]})"
                    )
                c.execute(insert(s.card_key_versions).values(**_row(version)))
            for key in sealed:
                c.execute(
                    insert(s.card_keys).values(
                        iccid=key.iccid,
                        purpose=key.purpose.value,
                        kvn=key.kvn,
                        algorithm=key.algorithm,
                        sealed=key.sealed,
                        fingerprint=key.fingerprint,
                    )
                )

        return self._store._write(work)

    def activate(self, iccid: str, family: KeyFamily, kvn: int, at: float) -> Any:
        """The card confirmed version C{kvn} of C{family}: in one transaction it
        becomes C{active} and every other active version of the family
        (imported keys included) C{retired}.

        @raise StoreError: (the Deferred fails) no such pending version.
        """
        purposes = [p.value for p in family.purposes]

        def work(c: Connection) -> None:
            v, k = s.card_key_versions.c, s.card_keys.c
            mine = and_(v.iccid == iccid, v.purpose.in_(purposes), v.kvn == kvn)
            found = c.execute(select(v.state).where(mine)).all()
            if not found or any(r[0] != KeyState.PENDING.value for r in found):
                raise StoreError(
                    f"card {iccid} has no pending {family.value} key version {kvn:02X}"
                )
            # Imported keys get their row now, to be retired.
            stored = c.execute(
                select(k.iccid, k.purpose, k.kvn, k.algorithm).where(
                    and_(k.iccid == iccid, k.purpose.in_(purposes))
                )
            ).all()
            rows = [
                version_from_row(r)
                for r in c.execute(
                    select(s.card_key_versions).where(
                        and_(v.iccid == iccid, v.purpose.in_(purposes))
                    )
                )
            ]
            for version in merged_versions(stored, rows):
                if version.source is KeySource.IMPORTED and version not in rows:
                    retired = attrs.evolve(
                        version, state=KeyState.RETIRED, created_at=at, changed_at=at
                    )
                    c.execute(insert(s.card_key_versions).values(**_row(retired)))
            c.execute(
                update(s.card_key_versions)
                .where(
                    and_(
                        v.iccid == iccid,
                        v.purpose.in_(purposes),
                        v.kvn != kvn,
                        v.state == KeyState.ACTIVE.value,
                    )
                )
                .values(state=KeyState.RETIRED.value, changed_at=at)
            )
            c.execute(
                update(s.card_key_versions)
                .where(mine)
                .values(state=KeyState.ACTIVE.value, changed_at=at)
            )

        return self._store._write(work)

    def abandon(self, iccid: str, family: KeyFamily, kvn: int, at: float) -> Any:
        """A rotation to C{kvn} failed: its pending versions are retired (the
        active ones stay active)."""
        purposes = [p.value for p in family.purposes]

        def work(c: Connection) -> int:
            v = s.card_key_versions.c
            result = c.execute(
                update(s.card_key_versions)
                .where(
                    and_(
                        v.iccid == iccid,
                        v.purpose.in_(purposes),
                        v.kvn == kvn,
                        v.state == KeyState.PENDING.value,
                    )
                )
                .values(state=KeyState.RETIRED.value, changed_at=at)
            )
            return int(result.rowcount or 0)

        return self._store._write(work)


def card_key_versions_for(store: Any) -> SqlCardKeyVersions | None:
    """The lifecycle of C{store}'s card keys: SQL stores keep one; other
    stores (the memory store of tests) have none, and then every stored
    key is active and keys cannot be rotated."""
    from bipgw.store._sql import SqlStore

    return SqlCardKeyVersions(store) if isinstance(store, SqlStore) else None
