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

import gc
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from bipgw.ingest._errors import IngestError, VendorFileError
from bipgw.ingest._lines import numbered_lines
from bipgw.ingest._report import Counts
from bipgw.ingest._unwrap import CardOpener
from bipgw.ingest._vendor_file import (
    MAX_CARDS,
    MAX_LINE,
    MAX_LINE_ERRORS,
    CardParser,
    VendorCard,
    VendorHeader,
    count_card_lines,
    read_header,
)
from bipgw.keys import IRootKeys, Secret, TransportScheme
from bipgw.store import BatchResult, CardRowBatch, CardUpsert, LineError, Outcome

Opener = Callable[[], BinaryIO]


#: Allocations between two young-generation collections during an import
#: (Python's default is 700): see L{fewer_collections}.
IMPORT_GC_THRESHOLD = 100_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while a file is imported.

    A batch of 10,000 cards is some 200,000 live objects, and every young
    collection that finds them surviving promotes them, so the full
    collections that follow walk them all: measured, a fifth of an
    import's CPU.  The import creates no cycles (its objects are freed by
    reference counting); other code running meanwhile is only collected
    less often, never not at all.  The thresholds are process-wide and are
    put back when the last import running at once ends.
    """
    with _gc_lock:
        _gc_users[0] += 1
        if _gc_users[0] == 1:
            _gc_saved[:] = gc.get_threshold()
            gc.set_threshold(IMPORT_GC_THRESHOLD, _gc_saved[1], _gc_saved[2])
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users[0] -= 1
            if _gc_users[0] == 0:
                gc.set_threshold(*_gc_saved)


# Imports running at once (the outermost one sets and restores the thresholds).
_gc_lock = threading.Lock()
_gc_users = [0]
_gc_saved: list[int] = []


class RefusedError(IngestError):
    """An all-or-nothing import met a refused line: roll everything back."""


class _HashingReader:
    """C{readline} over a binary file, hashing every byte read."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()

    def readline(self, limit: int = -1) -> bytes:
        data = self._stream.readline(limit)
        self.digest.update(data)
        return data

    def finish(self) -> str:
        while chunk := self._stream.read(1 << 20):
            self.digest.update(chunk)
        return self.digest.hexdigest()


#: What L{produce} yields: C{("sha256", digest)} once the first pass is
#: done, C{("batch", rows, errors, rejected, parser_rejected)} for each
#: batch, then C{("end", records, parser_rejected, parser_errors, failed,
#: verified)}.  Plain values: a worker process pickles them as they are.
Event = tuple[object, ...]


def produce(opener: Opener, cards: CardOpener, batch_size: int) -> Iterator[Event]:
    """A vendor file's cards parsed, unwrapped and sealed, a batch of rows at a time.

    Runs in the store's thread, or in a worker process (L{bipgw.ingest._card_worker}).

    @raise VendorFileError: the file cannot be imported at all (before the first batch).
    """
    with opener() as stream:
        reader = _HashingReader(stream)
        lines = numbered_lines(reader, MAX_LINE)  # type: ignore[arg-type]
        header, *_ = read_header(lines)
        records, over = count_card_lines(lines)
        yield ("sha256", reader.finish())
    if over is not None:
        raise VendorFileError(f"more than {MAX_CARDS} card lines", line=over)
    with opener() as stream, fewer_collections():
        lines = numbered_lines(stream, MAX_LINE)
        header, columns, secrets, dropped = read_header(lines)
        parser = CardParser(columns, secrets, dropped, header.quantity)
        parser.records = 0
        if records != header.quantity:
            parser.records = records
            parser.check_quantity(header)
        pending: list[VendorCard] = []
        for number, raw in lines:
            card = parser.feed(number, raw)
            if card is None:
                continue
            pending.append(card)
            if len(pending) >= batch_size:
                opened = cards.open_rows(pending, header, secrets)
                yield ("batch", opened.rows, opened.errors, opened.rejected, parser.rejected)
                pending = []
        if pending:
            opened = cards.open_rows(pending, header, secrets)
            yield ("batch", opened.rows, opened.errors, opened.rejected, parser.rejected)
        yield (
            "end",
            parser.records,
            parser.rejected,
            parser.errors,
            cards.failed,
            cards.verified,
        )


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
        from bipgw.ingest import _card_worker

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
