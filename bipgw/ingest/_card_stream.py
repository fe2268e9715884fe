# -*- test-case-name: tests.unit.ingest.test_import_cards,tests.unit.ingest.test_import_batches -*-
"""A vendor file streamed into card upserts, one batch at a time, in bounded memory.

L{CardStream.batches} is what the store iterates in its own thread
(L{bipgw.store.IStore.upsert_card_batches}): the file is read twice, never
held whole.  The first pass hashes it and counts its card lines, so a
truncated upload (C{Quantity} does not match) or a file past the card limit
is refused before anything is written, as when the file was parsed whole.
The second pass parses, unwraps and seals one batch of cards at a time.

In all-or-nothing mode the store holds one transaction for every batch;
once a line is refused no more batches are given, the rest of the file is
still read for its line errors, and L{RefusedError} is raised at the end to roll
the transaction back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import bipgw.ingest._card_worker as _card_worker
from bipgw.ingest._card_produce import Event, Opener, fewer_collections, produce
from bipgw.ingest._errors import IngestError
from bipgw.ingest._report import Counts
from bipgw.ingest._unwrap import CardOpener
from bipgw.ingest._vendor_file import (
    MAX_LINE_ERRORS,
    VendorHeader,
)
from bipgw.keys import IRootKeys, Secret, TransportScheme
from bipgw.store import BatchResult, CardRowBatch, CardUpsert, LineError, Outcome


class RefusedError(IngestError):
    """An all-or-nothing import met a refused line: roll everything back."""


class CardStream:
    """One vendor file's import: its batches out, its outcome counted.

    The parsing, unwrapping and sealing (L{produce}) run in the store's
    thread, or for a large file from a path in a worker process
    (L{bipgw.ingest._card_worker}) while the store's thread writes: the
    second core does the crypto, this process the database.

    @ivar sha256: the file's digest, known once the first pass is done.
    @ivar failed: secret values whose integrity or check value failed.
    @ivar verified: secret values whose transport key was confirmed.
    """

    def __init__(
        self,
        opener: Opener,
        transport: Secret,
        scheme: TransportScheme,
        root: IRootKeys,
        *,
        batch_size: int,
        all_or_nothing: bool,
        header: VendorHeader,
        columns: tuple[str, ...],
        path: str | None = None,
        workers: bool = False,
    ) -> None:
        """
        @param header: the file's header (the batch facts every card gets).
        @param columns: its columns.
        @param path: the file's path, if it has one (a worker process reads it).
        @param workers: parse and seal in a worker process, if C{path} and
            the root key allow it (L{bipgw.ingest._card_worker.usable}).
        """
        self._opener = opener
        self._transport = transport
        self._scheme = scheme
        self._root = root
        self._header = header
        self._path = path
        self._workers = workers
        self._batch_size = batch_size
        self._all_or_nothing = all_or_nothing
        self.sha256 = ""
        self.records = 0
        self.rejected = 0
        self.failed = 0
        self.verified = 0
        self.errors: list[LineError] = []
        self.counts = Counts()
        self._lines: dict[str, int] = {}
        self._psk_column = "PSK_ID1" if "PSK_ID1" in columns else None
        #: Whether the last L{batches} ran in a worker process.
        self.in_worker = False

    def _events(self) -> Iterator[Event]:
        keys = _card_worker.usable(self._root) if self._workers and self._path else None
        if keys is not None and self._path is not None:
            self.in_worker = True
            return _card_worker.run(
                self._path, self._transport, self._scheme, keys, self._batch_size
            )
        cards = CardOpener(self._transport, self._scheme, self._root)
        return produce(self._opener, cards, self._batch_size)

    def batches(self) -> Iterator[Sequence[CardUpsert]]:
        """The card upserts, a batch at a time (run in the store's thread).

        @raise VendorFileError: the file cannot be imported at all (found
            before the first batch).
        @raise RefusedError: all-or-nothing, and a line was refused (at the end).
        """
        with fewer_collections():
            yield from self._batches()
        if self._all_or_nothing and self.rejected:
            raise RefusedError(f"{self.rejected} records refused")

    def _batches(self) -> Iterator[Sequence[CardUpsert]]:
        header = self._header
        for event in self._events():
            kind = event[0]
            if kind == "sha256":
                self.sha256 = event[1]  # type: ignore[assignment]
            elif kind == "batch":
                _, rows, errors, rejected, parser_rejected = event
                self.rejected += rejected  # type: ignore[operator]
                room = MAX_LINE_ERRORS - len(self.errors)
                if room > 0:
                    self.errors.extend(errors[:room])  # type: ignore[index]
                refusing = self._all_or_nothing and (self.rejected or parser_rejected)
                if refusing or not rows:
                    continue
                self._lines = {row[1]: row[0] for row in rows}  # type: ignore[attr-defined]
                yield CardRowBatch(rows, header.batch, header.customer, header.card_type)  # type: ignore[arg-type]
            elif kind == "end":
                _, records, parser_rejected, parser_errors, failed, verified = event
                self.records = records  # type: ignore[assignment]
                self.rejected += parser_rejected  # type: ignore[operator]
                self.errors[:0] = parser_errors  # type: ignore[call-overload]
                self.failed, self.verified = failed, verified  # type: ignore[assignment]

    def count(self, result: BatchResult) -> None:
        """Count a written batch's outcomes (called by the store after each batch)."""
        for item in result.results:
            self.counts.by_outcome[item.outcome] += 1
            if item.outcome is Outcome.REJECTED:
                column = self._psk_column if item.field == "psk_identity" else item.field
                line = self._lines.get(item.key, 0)
                self.errors.append(LineError(line, column, item.reason or "rejected"))
                self.rejected += 1
