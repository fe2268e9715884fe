# -*- test-case-name: tests.unit.store.test_rotation -*-
"""Root-key rotation: a new root key, every sealed value moved under it.

The steps, each safe to interrupt (C{kill -9}) and resumed by running the
rotation again:

  1. the root keys create the next key durably (L{IRotatableRootKeys.begin_rotation});
     from then on new values are sealed under it and both keys open;
  2. every sealed row of the database is re-sealed under it, in batches
     (L{Resealer});
  3. the keystore file is rewritten under it (L{KeyStore.reseal});
  4. when nothing, in the database or the keystore, is sealed under any
     other key, the old key is retired: deleted from disk or destroyed in
     the token (L{IRotatableRootKeys.finish_rotation}).

The start and the end are written to the audit log (key ids and row
counts only).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
from sqlalchemy.engine import Engine

from bipgw.keys import IRotatableRootKeys, KeyManagementError, KeyStore
from bipgw.store._reseal import Resealer, write_audit
from bipgw.store._types import AuditRecord

__all__ = ["Progress", "RootRotation", "RotationResult"]

_MAX_PASSES = 10


@attrs.frozen
class Progress:
    """Where a rotation stands: rows re-sealed of those to do, and the rate."""

    done: int
    total: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Rows re-sealed per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        return f"re-sealed {self.done}/{self.total} rows ({self.rate:,.0f} rows/s)"


@attrs.frozen
class RotationResult:
    """What a rotation did.

    @ivar resumed: an interrupted rotation was continued (no new key made).
    """

    old_key_id: str | None
    new_key_id: str
    rows: int
    keystore_entries: int
    resumed: bool
    seconds: float


class RootRotation:
    """Runs (or resumes) one root-key rotation over a database and a keystore."""

    def __init__(
        self,
        engine: Engine,
        root: IRotatableRootKeys,
        keystore_path: str | None,
        *,
        batch: int = 1000,
        actor: str = "cli",
        progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._root = root
        self._keystore_path = keystore_path
        self._resealer = Resealer(engine, root, batch=batch)
        self._actor = actor
        self._progress = progress
        self._clock = clock
        self._wall = wall

    def pending(self) -> tuple[str | None, str] | None:
        """C{(old, new)} if a rotation is under way (interrupted), else C{None}."""
        return self._root.rotation()

    def run(self) -> RotationResult:
        """Rotate, or finish the rotation under way; see the module docstring."""
        start = self._clock()
        pending = self._root.rotation()
        resumed = pending is not None
        old, new = self._root.begin_rotation()
        self._audit(
            "root-key.rotate.resume" if resumed else "root-key.rotate.begin",
            f"from {old or '(already retired)'} to {new} in {self._root.describe()}",
        )
        rows = 0
        entries = 0
        for _ in range(_MAX_PASSES):
            rows += self._resealer.run(self._counter(self._resealer.count_not_under(new)))
            keystore = self._keystore()
            if keystore is not None:
                entries += keystore.reseal()
            left = self._resealer.count_not_under(new) + self._keystore_left(keystore, new)
            if left == 0:
                break
        else:
            raise KeyManagementError(
                f"values are still being sealed under a key other than {new} after"
                f" {_MAX_PASSES} passes: is a process still sealing under the old root key?"
                " Run the rotation again; the old key is kept until nothing uses it"
            )
        current = self._root.finish_rotation()
        self._audit(
            "root-key.rotate.finish",
            f"retired {old or '(already retired)'}; current root key {current};"
            f" {rows} rows and {entries} keystore entries re-sealed",
        )
        return RotationResult(old, current, rows, entries, resumed, self._clock() - start)

    def _counter(self, total: int) -> Callable[[int], None]:
        done = 0
        began = self._clock()
        self._report(Progress(0, total, 0.0))

        def batch_done(n: int) -> None:
            nonlocal done
            done += n
            self._report(Progress(done, max(total, done), self._clock() - began))

        return batch_done

    def _keystore(self) -> KeyStore | None:
        if self._keystore_path is None:
            return None
        return KeyStore.open(self._keystore_path, self._root)

    @staticmethod
    def _keystore_left(keystore: KeyStore | None, new: str) -> int:
        if keystore is None:
            return 0
        return sum(n for key_id, n in keystore.sealed_under().items() if key_id != new)

    def _report(self, progress: Progress) -> None:
        if self._progress is not None:
            self._progress(progress)

    def _audit(self, action: str, detail: str) -> None:
        write_audit(
            self._engine,
            AuditRecord(
                at=self._wall(), actor=self._actor, action=action, target="root-key", detail=detail
            ),
        )
