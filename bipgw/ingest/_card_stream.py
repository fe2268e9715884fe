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

import hashlib
from collections.abc import Callable, Iterator
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
    count_card_lines,
    read_header,
)
from bipgw.keys import IRootKeys, Secret, TransportScheme
from bipgw.store import BatchResult, CardUpsert, LineError, Outcome

Opener = Callable[[], BinaryIO]


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


class CardStream:
    """One vendor file's import: its batches out, its outcome counted.

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
    ) -> None:
        self._opener = opener
        self._opener_keys = CardOpener(transport, scheme, root)
        self._batch_size = batch_size
        self._all_or_nothing = all_or_nothing
        self.sha256 = ""
        self.records = 0
        self.rejected = 0
        self.errors: list[LineError] = []
        self.counts = Counts()
        self._lines: dict[str, int] = {}
        self._psk_column: str | None = None

    @property
    def failed(self) -> int:
        return self._opener_keys.failed

    @property
    def verified(self) -> int:
        return self._opener_keys.verified

    def batches(self) -> Iterator[list[CardUpsert]]:
        """The card upserts, a batch at a time (run in the store's thread).

        @raise VendorFileError: the file cannot be imported at all (found
            before the first batch).
        @raise RefusedError: all-or-nothing, and a line was refused (at the end).
        """
        with self._opener() as stream:
            reader = _HashingReader(stream)
            lines = numbered_lines(reader, MAX_LINE)  # type: ignore[arg-type]
            header, *_ = read_header(lines)
            records, over = count_card_lines(lines)
            self.sha256 = reader.finish()
        if over is not None:
            raise VendorFileError(f"more than {MAX_CARDS} card lines", line=over)
        with self._opener() as stream:
            lines = numbered_lines(stream, MAX_LINE)
            header, columns, secrets, dropped = read_header(lines)
            parser = CardParser(columns, secrets, dropped, header.quantity)
            parser.records = 0
            if records != header.quantity:
                parser.records = records
                parser.check_quantity(header)
            self._psk_column = "PSK_ID1" if "PSK_ID1" in columns else None
            pending: list[VendorCard] = []
            for number, raw in lines:
                card = parser.feed(number, raw)
                if card is None:
                    continue
                pending.append(card)
                if len(pending) >= self._batch_size:
                    yield from self._open(pending, parser, header, secrets)
                    pending = []
            yield from self._open(pending, parser, header, secrets)
            self.records = parser.records
            self.rejected += parser.rejected
            self.errors[:0] = parser.errors
        if self._all_or_nothing and self.rejected:
            raise RefusedError(f"{self.rejected} records refused")

    def _open(
        self, cards: list[VendorCard], parser: CardParser, header: object, secrets: object
    ) -> Iterator[list[CardUpsert]]:
        if not cards:
            return
        opened = self._opener_keys.open(cards, header, secrets)  # type: ignore[arg-type]
        self.rejected += opened.rejected
        room = MAX_LINE_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(opened.errors[:room])
        refusing = self._all_or_nothing and (self.rejected or parser.rejected)
        if refusing or not opened.cards:
            return
        self._lines = {upsert.iccid: line for line, upsert in opened.cards}
        yield [upsert for _, upsert in opened.cards]

    def count(self, result: BatchResult) -> None:
        """Count a written batch's outcomes (called by the store after each batch)."""
        for item in result.results:
            self.counts.by_outcome[item.outcome] += 1
            if item.outcome is Outcome.REJECTED:
                column = self._psk_column if item.field == "psk_identity" else item.field
                line = self._lines.get(item.key, 0)
                self.errors.append(LineError(line, column, item.reason or "rejected"))
                self.rejected += 1
