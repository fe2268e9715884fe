# -*- test-case-name: tests.unit.ingest.test_lines -*-
"""Reading an uploaded file line by line in bounded memory, and remembering what was seen.

A vendor file of a million cards is ~270 MB: the importers never hold it
whole.  L{numbered_lines} reads a binary file with a bounded C{readline},
so a line without an end (a hostile file of one huge line) costs at most
C{limit} bytes at a time; L{SeenSet} remembers a million ICCIDs or PSK
identities (with the line each was first seen on) in ~30 MB of arrays,
where a C{dict} of strings would take ~150 MB.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from typing import BinaryIO

#: Bytes read at once when hashing a file.
_CHUNK = 1 << 20


def numbered_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes]]:
    """The file's lines (without C{\\n}), numbered from 1, as C{split(b"\\n")} gives them.

    A line longer than C{limit} bytes is given as its first C{limit + 1}
    bytes (so the caller reports it as too long) and the rest is skipped
    without being kept.  Like C{split}, a file ending in C{\\n} has a last,
    empty line.
    """
    number = 0
    while True:
        raw = stream.readline(limit + 1)
        number += 1
        if not raw:
            yield number, b""
            return
        if raw.endswith(b"\n"):
            yield number, raw[:-1]
            continue
        if len(raw) <= limit:
            yield number, raw  # the last line, without an end
            yield number + 1, b""  # never reached as a record: it is blank
            return
        while True:  # too long: skip the rest of the line
            rest = stream.readline(_CHUNK)
            if not rest or rest.endswith(b"\n"):
                break
        yield number, raw
        if not rest:
            return


def sha256_of(stream: BinaryIO) -> str:
    """The hex SHA-256 of the rest of C{stream}, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class SeenSet:
    """Which values (ICCIDs, PSK identities) were seen, and on which line, in fixed memory.

    Open addressing over arrays: each value is known by its 128-bit
    BLAKE2b digest (two chances in 10^27 of a false "seen" among a million
    values: far below any other failure), and its slot holds the line.
    Sized once for C{capacity} values (the file's C{Quantity}).
    """

    def __init__(self, capacity: int) -> None:
        size = 16
        while size < capacity * 2:
            size *= 2
        self._mask = size - 1
        self._high = array("Q", bytes(8 * size))
        self._low = array("Q", bytes(8 * size))
        self._line = array("L", bytes(array("L").itemsize * size))
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _find(self, value: bytes) -> tuple[int, int, int]:
        digest = hashlib.blake2b(value, digest_size=16).digest()
        high = int.from_bytes(digest[:8], "big")
        low = int.from_bytes(digest[8:], "big") | 1  # 0 marks an empty slot
        slot = high & self._mask
        while True:
            stored = self._low[slot]
            if stored == 0 or (stored == low and self._high[slot] == high):
                return slot, high, low
            slot = (slot + 1) & self._mask

    def probe(self, value: bytes) -> tuple[int | None, tuple[int, int, int]]:
        """The line C{value} was seen on (or C{None}), and where to L{put} it."""
        slot, high, low = self._find(value)
        return (self._line[slot] if self._low[slot] else None), (slot, high, low)

    def put(self, where: tuple[int, int, int], line: int) -> None:
        """Remember the value L{probe} found unseen, on C{line}.

        @raise OverflowError: past three quarters of the table (the caller sized it).
        """
        slot, high, low = where
        if self._low[slot]:
            return
        if self._count * 4 >= (self._mask + 1) * 3:
            raise OverflowError("more values than this SeenSet was sized for")
        self._high[slot], self._low[slot], self._line[slot] = high, low, line
        self._count += 1

    def add(self, value: bytes, line: int) -> int | None:
        """Remember C{value} on C{line}; the line it was seen on before, if it was."""
        seen, where = self.probe(value)
        if seen is None:
            self.put(where, line)
        return seen
