# -*- test-case-name: tests.unit.store.test_contract,tests.unit.ingest.test_import_batches -*-
"""Card upserts in bulk: a few queries and one C{executemany} per table per batch.

An import writes 10,000 cards a batch; one statement per card (and per
key) made 100,000 cards take 90 s.  Here a batch costs three reads (the
cards, their key fingerprints, the owners of their PSK identities, each by
C{IN} lists of at most L{IN_LIMIT}), the outcomes are decided in Python in
the batch's order (later items see earlier ones, as one statement at a time
would), and the writes go to the driver's own C{executemany} with plain
tuples: no per-row round trip, no per-row SQLAlchemy processing.  The SQL
is portable (the driver's parameter style is taken from the dialect).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

from sqlalchemy import Connection, Engine

import bipgw.store._schema as s
from bipgw.store._engine import WRITE_OPTION
from bipgw.store._types import (
    BatchResult,
    CardUpsert,
    KeyPurpose,
    Outcome,
    StoreError,
    WriteResult,
    bulk_card_key,
    bulk_card_upsert,
)

_T = TypeVar("_T")

#: s.to_json's encoding, the encoder made once (json.dumps with options builds one a call).
_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
#: A key purpose's stored text, without the enum's C{value} descriptor.
_PURPOSE = {purpose: purpose.value for purpose in KeyPurpose}

#: Most values in one SQL C{IN} list (SQLite allows 32,766 variables).
IN_LIMIT = 5000


_PURPOSES = {purpose.value: purpose for purpose in KeyPurpose}

#: A sealed key as a bulk import carries it: purpose (its value), key
#: version, algorithm, sealed blob, fingerprint.
KeyRow = tuple[str, int, str, bytes, bytes]
#: A card as a bulk import carries it: source line, ICCID, IMSI, PSK
#: identity, extras, sealed keys.
CardRow = tuple[int, str, "str | None", bytes, dict[str, str], tuple[KeyRow, ...]]
# What upsert_cards decides on: iccid, imsi, identity, batch, customer, type, extras, keys.
_Item = tuple[
    str,
    "str | None",
    "bytes | None",
    "str | None",
    "str | None",
    "str | None",
    dict[str, str],
    tuple[KeyRow, ...],
]


class CardRowBatch(Sequence[CardUpsert]):
    """A batch of card upserts as plain rows (the bulk import's), L{CardUpsert}s only on demand.

    The SQL store writes the rows as they are (L{upsert_cards}): a million
    cards are five million objects fewer.  Any other reader sees
    L{CardUpsert}s, built with the validators skipped (the importer checked
    the values; the keys come from L{bipgw.store.BulkSealer}).
    """

    def __init__(
        self,
        rows: Sequence[CardRow],
        batch: str | None,
        customer: str | None,
        card_type: str | None,
    ) -> None:
        self.rows = rows
        self.facts = (batch, customer, card_type)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> CardUpsert: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[CardUpsert]: ...

    def __getitem__(self, index: int | slice) -> CardUpsert | Sequence[CardUpsert]:
        if isinstance(index, slice):
            return [self._upsert(row) for row in self.rows[index]]
        return self._upsert(self.rows[index])

    def __iter__(self) -> Iterator[CardUpsert]:
        return (self._upsert(row) for row in self.rows)

    def _upsert(self, row: CardRow) -> CardUpsert:
        _, iccid, imsi, identity, extras, keys = row
        return bulk_card_upsert(
            iccid,
            imsi,
            identity,
            *self.facts,
            extras,
            tuple(
                bulk_card_key(iccid, _PURPOSES[purpose], kvn, algorithm, sealed, fingerprint)
                for purpose, kvn, algorithm, sealed, fingerprint in keys
            ),
        )


def _items(items: Sequence[CardUpsert]) -> list[_Item]:
    if isinstance(items, CardRowBatch):
        batch, customer, card_type = items.facts
        return [(r[1], r[2], r[3], batch, customer, card_type, r[4], r[5]) for r in items.rows]
    return [
        (
            i.iccid,
            i.imsi,
            i.psk_identity,
            i.batch,
            i.customer,
            i.card_type,
            dict(i.extras),
            tuple(
                (_PURPOSE[k.purpose], k.kvn, k.algorithm, k.sealed, k.fingerprint) for k in i.keys
            ),
        )
        for i in items
    ]


class Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a transaction to roll it back and still return C{value}."""

    def __init__(self, value: object) -> None:
        self.value = value


def write_batches(
    engine: Engine,
    batches: Iterable[Sequence[_T]],
    write: Callable[[Connection, Sequence[_T]], BatchResult],
    atomic: bool,
    on_batch: Callable[[BatchResult], None],
) -> bool:
    """Write a stream of batches on one connection: a transaction each, or one for all.

    Runs in a store thread (L{bipgw.store.SqlStore.upsert_card_batches}),
    iterating C{batches} there.  Whether everything was committed.
    """
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        if not atomic:
            for batch in batches:
                if batch:
                    with connection.begin():
                        result = write(connection, batch)
                    on_batch(result)
            return True
        try:
            with connection.begin():
                for batch in batches:
                    if batch:
                        on_batch(write(connection, batch))
        except Rollback as rollback:
            on_batch(rollback.value)  # type: ignore[arg-type]
            return False
        return True


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for first in range(0, len(values), IN_LIMIT):
        yield values[first : first + IN_LIMIT]


def in_rows(c: Connection, query: str, values: Sequence[Any]) -> list[Any]:
    """The rows of C{query}, whose C{IN ({marks})} takes C{values}.

    SQLite: a query per L{IN_LIMIT} values, one placeholder each.  PostgreSQL:
    one query with one array parameter (C{= ANY(%s)}): psycopg parses a
    query's placeholders on the client, and 5,000 of them cost more than
    the query itself.
    """
    if not values:
        return []
    if c.dialect.name == "postgresql":
        one = query.replace("IN ({marks})", "= ANY(%s)")
        return list(c.exec_driver_sql(one, (list(values),)).fetchall())
    rows: list[Any] = []
    for chunk in _chunks(values):
        marks = ",".join("?" * len(chunk))
        rows += c.exec_driver_sql(_sql(c, query.format(marks=marks)), tuple(chunk)).fetchall()
    return rows


def _sql(c: Connection, text: str) -> str:
    """C{text} with C{?} placeholders in the driver's parameter style."""
    style = c.dialect.paramstyle
    if style == "qmark":
        return text
    if style in ("format", "pyformat"):
        return text.replace("?", "%s")
    raise StoreError(f"bulk writes do not know parameter style {style!r}")  # pragma: no cover


def upsert_cards(c: Connection, items: Sequence[CardUpsert], *, atomic: bool) -> BatchResult:
    """Insert or update C{items}; see L{IStore.upsert_cards}.

    A L{CardRowBatch} is read as its rows, never as objects.
    """
    rows = _items(items)
    iccids = list(dict.fromkeys(row[0] for row in rows))
    # The card's own fields as the upsert compares them, by ICCID.
    existing: dict[str, tuple[Any, ...]] = {}
    fingerprints: dict[tuple[str, str, int], bytes] = {}
    owners: dict[bytes, str] = {}
    cards, keys = s.cards.name, s.card_keys.name
    query = (
        f"SELECT iccid, imsi, psk_identity, batch, customer, card_type, extras FROM {cards}"
        " WHERE iccid IN ({marks})"
    )
    for row in in_rows(c, query, iccids):
        identity = None if row[2] is None else bytes(row[2])
        existing[row[0]] = (row[1], identity, row[3], row[4], row[5], s.from_json(row[6]))
    query = f"SELECT iccid, purpose, kvn, fingerprint FROM {keys} WHERE iccid IN ({{marks}})"
    for row in in_rows(c, query, iccids):
        fingerprints[(row[0], row[1], row[2])] = bytes(row[3])
    identities = list(dict.fromkeys(row[2] for row in rows if row[2] is not None))
    query = f"SELECT psk_identity, iccid FROM {cards} WHERE psk_identity IN ({{marks}})"
    for row in in_rows(c, query, identities):
        owners[bytes(row[0])] = row[1]
    results = []
    added: dict[str, tuple[Any, ...]] = {}
    updated: dict[str, tuple[Any, ...]] = {}
    stale: list[tuple[str, str, int]] = []
    new_keys: dict[tuple[str, str, int], tuple[Any, ...]] = {}
    unchanged, outcome_added, outcome_updated = Outcome.UNCHANGED, Outcome.ADDED, Outcome.UPDATED
    for iccid, imsi, identity, batch, customer, card_type, extras, card_keys in rows:
        owner = owners.get(identity) if identity else None
        if owner is not None and owner != iccid:
            reason = f"PSK identity already belongs to card {owner}"
            results.append(WriteResult(iccid, Outcome.REJECTED, reason, "psk_identity"))
            continue
        changed = [key for key in card_keys if fingerprints.get((iccid, key[0], key[1])) != key[4]]
        current = existing.get(iccid)
        fields = (imsi, identity, batch, customer, card_type, extras)
        values = (imsi, identity, batch, customer, card_type, _json(extras) if extras else "{}")
        if current is None:
            added[iccid] = (iccid, *values, 0)
            outcome = outcome_added
        elif fields != current or changed:
            if iccid in added:  # named twice in one batch: insert the later values
                added[iccid] = (iccid, *values, 0)
            else:
                updated[iccid] = (*values, iccid)
            outcome = outcome_updated
        else:
            results.append(WriteResult(iccid, unchanged))
            continue
        for purpose, kvn, algorithm, sealed, fingerprint in changed:
            where = (iccid, purpose, kvn)
            if where in fingerprints and where not in new_keys:
                stale.append(where)
            fingerprints[where] = fingerprint
            new_keys[where] = (iccid, purpose, kvn, algorithm, sealed, fingerprint)
        results.append(WriteResult(iccid, outcome))
        # Later items of the same batch see this one (a file may name a card twice).
        existing[iccid] = fields
        if identity is not None:
            owners[identity] = iccid
    if atomic and any(x.outcome is Outcome.REJECTED for x in results):
        raise Rollback(BatchResult(tuple(results), committed=False))
    _write(c, added, updated, stale, new_keys)
    return BatchResult(tuple(results), committed=True)


def _write(
    c: Connection,
    added: dict[str, tuple[Any, ...]],
    updated: dict[str, tuple[Any, ...]],
    stale: list[tuple[str, str, int]],
    new_keys: dict[tuple[str, str, int], tuple[Any, ...]],
) -> None:
    cards, keys = s.cards.name, s.card_keys.name
    fields = "imsi, psk_identity, batch, customer, card_type, extras"
    copy = c.dialect.name == "postgresql"
    if added:
        if copy:
            _copy(c, f"{cards} (iccid, {fields}, ota_counter)", added.values())
        else:
            c.exec_driver_sql(
                _sql(
                    c,
                    f"INSERT INTO {cards} (iccid, {fields}, ota_counter) VALUES (?,?,?,?,?,?,?,?)",
                ),
                list(added.values()),
            )
    if updated:
        assignments = ", ".join(f"{name} = ?" for name in fields.split(", "))
        c.exec_driver_sql(
            _sql(c, f"UPDATE {cards} SET {assignments} WHERE iccid = ?"), list(updated.values())
        )
    if stale:
        c.exec_driver_sql(
            _sql(c, f"DELETE FROM {keys} WHERE iccid = ? AND purpose = ? AND kvn = ?"), stale
        )
    if new_keys:
        if copy:
            _copy(
                c,
                f"{keys} (iccid, purpose, kvn, algorithm, sealed, fingerprint)",
                new_keys.values(),
            )
        else:
            c.exec_driver_sql(
                _sql(
                    c,
                    f"INSERT INTO {keys} (iccid, purpose, kvn, algorithm, sealed, fingerprint)"
                    " VALUES (?,?,?,?,?,?)",
                ),
                list(new_keys.values()),
            )


def _copy(c: Connection, target: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: insert C{rows} with one C{COPY ... FROM STDIN} (psycopg), in the transaction.

    The rows are new (the batch's reads found none of them, in the same
    transaction), so a plain COPY into the table is what the INSERT was,
    constraints and all, at a fraction of C{executemany}'s cost a row.
    """
    cursor = c.connection.cursor()
    try:
        with cursor.copy(f"COPY {target} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()
