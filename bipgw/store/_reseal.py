# -*- test-case-name: tests.unit.store.test_rotation -*-
"""Re-sealing the database's sealed columns under another root key.

A root-key rotation (C{bipgw keys rotate-root}, L{bipgw.store.RootRotation})
re-seals every stored key under the new root key.  The rows are walked in
primary-key order, a batch per transaction; each row is opened under
whichever root key sealed it (its header names the key) and written back
sealed under the new one, with its fingerprint recomputed under the new key
too.  The update is conditional on the blob still being the one read (a
compare-and-swap), so a key the gateway replaced meanwhile is not
overwritten with its old value.

Each row is sealed under exactly one key at every moment, and a crash
between two batches (or inside one: the transaction rolls back) leaves
every row openable under the old or the new key; running again simply
skips rows already under the new key.  The C{card_keys} table is the one
sealed column of the schema today (L{SEALED_COLUMNS}); a new sealed column
is added there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
from sqlalchemy import Table, and_, bindparam, func, select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from bipgw.keys import IRootKeys, Secret
from bipgw.store._engine import WRITE_OPTION
from bipgw.store._queries import insert_returning_id
from bipgw.store._rows import audit_values
from bipgw.store._schema import audit_log, card_keys
from bipgw.store._sealing import FINGERPRINT_INFO
from bipgw.store._types import AuditRecord, card_key_label

__all__ = ["SEALED_COLUMNS", "Resealer", "SealedColumn", "write_audit"]


@attrs.frozen
class SealedColumn:
    """One sealed column of the schema and how its seal label is made.

    @ivar keys: the primary-key columns, in walking order.
    @ivar label: the seal label of a row, from its primary-key values.
    @ivar fingerprint: the column holding HMAC(root, label 00 key), if any.
    """

    table: Table
    keys: tuple[str, ...]
    sealed: str
    label: Callable[[tuple[Any, ...]], str]
    fingerprint: str | None = None


#: Every sealed column of the application database.
SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(
        card_keys,
        ("iccid", "purpose", "kvn"),
        "sealed",
        lambda pk: card_key_label(pk[0], pk[1], pk[2]),
        "fingerprint",
    ),
)


def _key_id_bytes(key_id: str) -> bytes:
    return bytes.fromhex(key_id)


class Resealer:
    """Moves the rows of every sealed column under the root keys' sealing key.

    Synchronous (SQLAlchemy Core on its own engine): it is run by the
    C{bipgw keys rotate-root} command, never on a reactor thread.
    """

    def __init__(
        self,
        engine: Engine,
        root: IRootKeys,
        *,
        batch: int = 1000,
        columns: tuple[SealedColumn, ...] = SEALED_COLUMNS,
    ) -> None:
        if batch < 1:
            raise ValueError("a batch holds at least one row")
        self._engine = engine
        self._root = root
        self._batch = batch
        self._columns = columns

    def count_by_key(self) -> dict[str, int]:
        """How many sealed values each root key id seals."""
        counts: dict[str, int] = {}
        with self._engine.connect() as c:
            for column in self._columns:
                head = func.substr(column.table.c[column.sealed], 2, 4).label("head")
                query = select(head, func.count()).group_by(head)
                for head_bytes, n in c.execute(query):
                    key_id = bytes(head_bytes).hex()
                    counts[key_id] = counts.get(key_id, 0) + int(n)
        return counts

    def count_not_under(self, key_id: str) -> int:
        """How many sealed values are I{not} sealed under C{key_id}."""
        return sum(n for k, n in self.count_by_key().items() if k != key_id)

    def run(self, on_batch: Callable[[int], None] | None = None) -> int:
        """Re-seal every row not under the sealing key; how many were.

        @param on_batch: called after each committed batch with its size.
        """
        total = 0
        for column in self._columns:
            for done in self._walk(column):
                total += done
                if on_batch is not None:
                    on_batch(done)
        return total

    def _walk(self, column: SealedColumn) -> Iterator[int]:
        table = column.table
        keys = [table.c[k] for k in column.keys]
        blob = table.c[column.sealed]
        target = self._root.key_id
        after: tuple[Any, ...] | None = None
        while True:
            query = (
                select(*keys, blob)
                .where(func.substr(blob, 2, 4) != _key_id_bytes(target))
                .order_by(*keys)
                .limit(self._batch)
            )
            if after is not None:
                query = query.where(tuple_(*keys) > tuple_(*after))
            with self._engine.connect() as c:
                rows = [tuple(row) for row in c.execute(query)]
            if not rows:
                return
            after = rows[-1][:-1]
            sealer = self._root.batch_sealer(len(rows))
            if sealer.key_id != target:
                raise RuntimeError(
                    f"the sealing root key changed from {target} to {sealer.key_id} during"
                    " the re-sealing: another rotation is running"
                )
            updates = []
            for row in rows:
                pk, old = row[:-1], bytes(row[-1])
                label = column.label(pk)
                value = self._root.unseal(label, old)
                new = {"b_old": old, "b_new": sealer.seal(label, value)}
                if column.fingerprint is not None:
                    new["b_fp"] = self._fingerprint(label, value, target)
                new.update({f"b_{name}": v for name, v in zip(column.keys, pk, strict=True)})
                updates.append(new)
            values: dict[str, Any] = {column.sealed: bindparam("b_new")}
            if column.fingerprint is not None:
                values[column.fingerprint] = bindparam("b_fp")
            statement = (
                update(table)
                .where(
                    and_(*(k == bindparam(f"b_{k.name}") for k in keys), blob == bindparam("b_old"))
                )
                .values(values)
            )
            writer = self._engine.connect().execution_options(**{WRITE_OPTION: True})
            with writer as c, c.begin():
                c.execute(statement, updates)
            yield len(rows)

    def _fingerprint(self, label: str, key: Secret, key_id: str) -> bytes:
        return self._root.mac(
            FINGERPRINT_INFO, label.encode("utf-8") + b"\x00" + key.reveal(), key_id
        )


def write_audit(engine: Engine, record: AuditRecord) -> int:
    """L{IStore.add_audit} for a synchronous tool on its own engine; the id."""
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as c, c.begin():
        return _insert_audit(c, record)


def _insert_audit(c: Connection, record: AuditRecord) -> int:
    return insert_returning_id(c, audit_log, audit_values(record))
