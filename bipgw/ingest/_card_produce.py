# -*- test-case-name: tests.unit.ingest.test_import_cards,tests.unit.ingest.test_card_worker -*-
"""A vendor file's cards parsed, unwrapped and sealed, a batch of plain rows at a time.

L{produce} is the producing half of a card import: it runs in the store's
thread (L{bipgw.ingest._card_stream.CardStream}) or in a worker process
(L{bipgw.ingest._card_worker}), which is why it has a module of its own that
neither of them imports the other through.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from bipgw.ingest._errors import VendorFileError
from bipgw.ingest._lines import numbered_lines
from bipgw.ingest._unwrap import CardOpener
from bipgw.ingest._vendor_file import (
    MAX_CARDS,
    MAX_LINE,
    CardParser,
    SecretColumn,
    VendorCard,
    VendorHeader,
    count_card_lines,
    read_header,
)

__all__ = ["IMPORT_GC_THRESHOLD", "Event", "Opener", "fewer_collections", "produce"]

Opener = Callable[[], BinaryIO]


#: Allocations between two young-generation collections during an import
#: (Python's default is 700): see L{fewer_collections}.
IMPORT_GC_THRESHOLD = 100_000

#: Secret values that failed their integrity check, none opened, after which
#: the file is taken as wrapped under another key and its remaining lines
#: are not tried (checked at batch ends): a wrong key refuses a 1,000,000-card
#: file after its first batch instead of after every value of it.
WRONG_KEY_AFTER = 1_000


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


class _HashingReader:
    """C{readline} over a binary file, hashing every byte read."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()

    def readline(self, limit: int = -1) -> bytes:
        data = self._stream.readline(limit)
        self.digest.update(data)
        if data:
            self.ended = data.endswith(b"\n")
        return data

    #: Whether the last byte read was the end of a line (or nothing was read).
    ended = True

    def finish(self) -> str:
        while chunk := self._stream.read(1 << 20):
            self.digest.update(chunk)
        return self.digest.hexdigest()


def _remember_last(
    lines: Iterator[tuple[int, bytes]], last: list[tuple[int, bytes]]
) -> Iterator[tuple[int, bytes]]:
    """C{lines}, the last one that is not empty kept in C{last}."""
    for item in lines:
        if item[1]:
            last[:] = [item]
        yield item


def _check_cut(
    number: int,
    raw: bytes,
    header: VendorHeader,
    records: int,
    columns: tuple[str, ...],
    secrets: tuple[SecretColumn, ...],
    dropped: tuple[str, ...],
    cards: CardOpener,
) -> None:
    """Refuse a file that ends inside a card line it cannot use: an upload cut short.

    Its last line has no end and is refused (it does not parse, or a value
    does not unwrap): most likely the transfer stopped there (if not in
    that line, C{Quantity} says so), and importing the lines before it
    would half-apply a file the vendor never finished sending.  A last line
    without its end that is a good card is imported as one.

    @raise VendorFileError: naming the line, and the column if one is wrong.
    """
    parser = CardParser(columns, secrets, dropped, 1)
    card = parser.feed(number, raw)
    errors = parser.errors
    if card is not None:
        counters = cards.failed, cards.verified  # this trial is not the import's
        errors = cards.open_rows([card], header, secrets).errors
        cards.failed, cards.verified = counters
    if not errors:
        return
    first = errors[0]
    quantity = header.quantity
    counted = (
        f"; Quantity says {quantity} cards and the file has {records} card lines"
        if records != quantity
        else ""
    )
    raise VendorFileError(
        f"the file ends inside this line, which is refused ({first.message}){counted}:"
        " an upload cut short? Nothing imported",
        line=number,
        field=first.column,
    )


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
    last: list[tuple[int, bytes]] = []
    with opener() as stream:
        reader = _HashingReader(stream)
        lines = numbered_lines(reader, MAX_LINE)  # type: ignore[arg-type]
        header, columns, secrets, dropped = read_header(lines)
        records, over = count_card_lines(_remember_last(lines, last))
        ended = reader.ended
        yield ("sha256", reader.finish())
    if over is not None:
        raise VendorFileError(f"more than {MAX_CARDS} card lines", line=over)
    if not ended and last:
        _check_cut(*last[0], header, records, columns, secrets, dropped, cards)
    with opener() as stream, fewer_collections():
        lines = numbered_lines(stream, MAX_LINE)
        header, columns, secrets, dropped = read_header(lines)
        parser = CardParser(columns, secrets, dropped, header.quantity)
        parser.records = 0
        if records != header.quantity:
            parser.records = records
            parser.check_quantity(header)
        pending: list[VendorCard] = []
        wrong_key = False
        for number, raw in lines:
            card = parser.feed(number, raw)
            if card is None:
                continue
            pending.append(card)
            if len(pending) >= batch_size:
                opened = cards.open_rows(pending, header, secrets)
                yield ("batch", opened.rows, opened.errors, opened.rejected, parser.rejected)
                pending = []
                if cards.failed >= WRONG_KEY_AFTER and not cards.verified:
                    wrong_key = True  # the importer refuses the file: nothing was written
                    break
        if pending:
            opened = cards.open_rows(pending, header, secrets)
            yield ("batch", opened.rows, opened.errors, opened.rejected, parser.rejected)
        yield (
            "end",
            records if wrong_key else parser.records,
            parser.rejected,
            parser.errors,
            cards.failed,
            cards.verified,
        )
