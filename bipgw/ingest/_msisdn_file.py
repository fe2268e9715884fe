# -*- test-case-name: tests.unit.ingest.test_msisdn_file -*-
"""The MSISDN mapping file: a pure parser (bytes in, changes and line errors out).

The layout (DESIGN.md section 5, C{docs/file-formats.md}): ASCII, one
record a line, C{MSISDN,ICCID,IMSI,OPERATION,EFFECTIVE_TIME}, an empty field
left empty.  Each line is checked field by field; a bad line is reported
with its number and field, and the others are kept.  Whether a valid line
can be applied (is the ICCID known? is the number free?) is the store's
decision, made in effective-time order by the importer.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from attrs import frozen

from bipgw.ingest._errors import MsisdnFileError
from bipgw.keys import InvalidIccidError, normalise_iccid
from bipgw.store import LineError, MsisdnChange, MsisdnOperation

#: The fields of a line, in order.
FIELDS = ("MSISDN", "ICCID", "IMSI", "OPERATION", "EFFECTIVE_TIME")
#: Line errors kept (the rejected count stays exact): a hostile file cannot
#: make the report as large as itself.
MAX_LINE_ERRORS = 10_000
#: Largest file accepted, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Longest line accepted, in characters.
MAX_LINE = 1024
#: Most records in one file.
MAX_RECORDS = 5_000_000
#: The format of EFFECTIVE_TIME (UTC).
TIME_FORMAT = "%Y%m%d%H%M%S"

_Reporter = Callable[[str, str], None]


@frozen
class MsisdnRecord:
    """One valid line: its number and the change it asks for."""

    line: int
    change: MsisdnChange


@frozen
class MsisdnFile:
    """A parsed MSISDN file.

    @ivar records: lines holding a record, valid or not (blank lines and
        the optional title line do not count).
    @ivar rejected: records refused (each has one or more L{errors}).
    """

    changes: tuple[MsisdnRecord, ...]
    errors: tuple[LineError, ...]
    records: int
    rejected: int


def parse_msisdn_file(data: bytes, *, default_time: int, source: str | None = None) -> MsisdnFile:
    """Parse an MSISDN mapping file.

    @param default_time: the effective time (epoch seconds) of records
        whose EFFECTIVE_TIME is empty: the time of the import.
    @param source: recorded with each change (the file name).
    @raise MsisdnFileError: if the file is too large to be one.
    """
    scan = MsisdnScan(data, default_time=default_time, source=source)
    changes = [
        MsisdnRecord(line, change)
        for batch in scan.in_file_order(1 << 30)
        for line, change in batch
    ]
    return MsisdnFile(tuple(changes), scan.errors, scan.records, scan.rejected)


class MsisdnScan:
    """An MSISDN file checked line by line, its valid changes given back in batches.

    The import streams: the first pass (here) checks every line and keeps,
    for each valid one, only where it starts, its line number and its
    effective time (three machine integers in C{array}s, 24 bytes a
    record); L{in_effective_order} then parses the valid lines again a
    batch at a time, in effective-time order (file order for equal times).
    A file already in time order, the usual case, is not sorted at all.
    Memory is the file's bytes plus those arrays, whatever the file holds.

    @ivar records: lines holding a record, valid or not.
    @ivar rejected: records refused (each has one or more L{errors}).
    @ivar valid: records that are valid changes.
    """

    def __init__(self, data: bytes, *, default_time: int, source: str | None = None) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("an MSISDN file is bytes")
        if len(data) > MAX_FILE_BYTES:
            raise MsisdnFileError(f"the file has {len(data)} bytes; at most {MAX_FILE_BYTES}")
        self._data = data if isinstance(data, bytes) else bytes(data)  # no copy of bytes
        self._default = default_time
        self._source = source
        self._offsets = array("q")
        self._lines = array("q")
        self._times = array("q")
        self._ordered = True
        errors: list[LineError] = []
        self.records = self.rejected = 0
        for number, offset, raw in self._raw_lines(0, 1):
            self.records += 1
            if self.records > MAX_RECORDS:
                raise MsisdnFileError(f"more than {MAX_RECORDS} records", line=number)
            fields = _quick(raw, default_time)
            problems: list[LineError] = []
            if fields is None:
                problems, fields = _fields(number, raw, default_time)
            if problems:
                self.rejected += 1
                if len(errors) < MAX_LINE_ERRORS:
                    errors.extend(problems)
            elif fields is not None:
                effective = fields[4]
                if self._times and effective < self._times[-1]:
                    self._ordered = False
                self._offsets.append(offset)
                self._lines.append(number)
                self._times.append(effective)
        self.errors = tuple(errors)
        self.valid = len(self._lines)

    def _raw_lines(self, start: int, number: int) -> Iterator[tuple[int, int, bytes]]:
        """(line number, offset, line) of every record line from C{start} (the title skipped)."""
        data = self._data
        first = start == 0
        end = len(data)
        while start < end or (start == end and first and end == 0):
            stop = data.find(b"\n", start)
            if stop < 0:
                stop = end
            raw = data[start:stop]
            offset, start = start, stop + 1
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            line, number = number, number + 1
            if not raw.strip():
                continue
            if first:
                first = False
                if raw.replace(b" ", b"").upper() == _TITLE:
                    continue
            yield line, offset, raw

    def _change(self, index: int) -> MsisdnChange:
        offset = self._offsets[index]
        stop = self._data.find(b"\n", offset)
        raw = self._data[offset : stop if stop >= 0 else len(self._data)]
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        fields = _quick(raw, self._default)
        if fields is None:
            fields = _valid_fields(raw, self._default)
        return MsisdnChange(*fields, self._source)

    def in_file_order(self, size: int) -> Iterator[list[tuple[int, MsisdnChange]]]:
        """The valid changes, C{size} at a time, as (line number, change), in file order."""
        return self._batches(range(self.valid), size)

    def in_effective_order(self, size: int) -> Iterator[list[tuple[int, MsisdnChange]]]:
        """The valid changes, C{size} at a time, in effective-time order (then file order)."""
        if self._ordered:
            return self._batches(range(self.valid), size)
        times = self._times
        return self._batches(sorted(range(self.valid), key=times.__getitem__), size)

    def _batches(self, order: Iterable[int], size: int) -> Iterator[list[tuple[int, MsisdnChange]]]:
        batch: list[tuple[int, MsisdnChange]] = []
        lines = self._lines
        for index in order:
            batch.append((lines[index], self._change(index)))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


_TITLE = ",".join(FIELDS).encode()


#: A valid line as the set-based apply takes it (L{bipgw.store.MsisdnRow}):
#: line number, operation, MSISDN, ICCID, IMSI, effective time.
Row = tuple[int, str, "str | None", "str | None", "str | None", int]


class MsisdnRowsRefused(Exception):  # noqa: N818 - the file's own verdict, raised to stop a store
    """An all-or-nothing file held invalid lines: raised at the end of L{MsisdnLines.rows}.

    The store applying the rows rolls back (nothing of the file is written);
    the lines' errors are in the L{MsisdnLines}.
    """


class MsisdnLines:
    """An MSISDN file read in one pass: its valid lines as compact rows, in file order.

    L{MsisdnScan} checks every line, then parses the valid ones a second
    time, in time order, into L{MsisdnChange}s; the set-based apply
    (L{bipgw.store.IStore.apply_msisdn_rows}) sorts by time itself, so here
    each line is read once: one regular expression over the whole text
    finds the plain lines (L{_PLAIN}'s form), and each other line is
    checked by L{_quick} and L{_fields}, as L{MsisdnScan} does, with the
    same errors.  Memory is the file's text (a second copy of its bytes)
    and the rows in flight.

    @ivar records: lines holding a record, valid or not (final once
        L{rows} is exhausted).
    @ivar rejected: records refused.
    @ivar valid: rows given.
    @ivar errors: the first L{MAX_LINE_ERRORS} errors, in file order.
    """

    def __init__(self, data: bytes, *, default_time: int, all_or_nothing: bool = False) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("an MSISDN file is bytes")
        if len(data) > MAX_FILE_BYTES:
            raise MsisdnFileError(f"the file has {len(data)} bytes; at most {MAX_FILE_BYTES}")
        self._data = bytes(data)
        self._default = default_time
        self._refuse = all_or_nothing
        self.records = self.rejected = self.valid = 0
        self.errors: list[LineError] = []
        self._title = 0

    def rows(self) -> Iterator[Row]:
        """Every valid line's row, in file order (each line read once).

        @raise MsisdnFileError: past L{MAX_RECORDS} records.
        @raise MsisdnRowsRefused: at the end, if all-or-nothing and a line was refused.
        """
        data = self._data
        self._title = _title_line(data)
        times, default, limit = _TIMES, self._default, MAX_RECORDS
        records = valid = 0
        line = 1
        # A piece of the file at a time, cut after a newline, as text (Latin-1:
        # a character a byte, offsets as in the bytes): never a copy of the whole.
        piece = 0
        while piece < len(data):
            stop = data.find(b"\n", piece + _PIECE)
            stop = len(data) if stop < 0 else stop + 1
            text = data[piece:stop].decode("latin-1")
            position = 0
            for match in _PLAIN_LINES(text):
                start = match.start()
                if start != position:
                    # The lines between two plain ones, checked one by one.
                    self.records = records
                    yield from self._other_lines(piece + position, piece + start, line)
                    records = self.records
                    line += text.count("\n", position, start)
                msisdn, iccid, imsi, operation, at = match.groups()
                effective = default if at is None else times.get(at) or _plain_time(at)
                if effective is None or (msisdn is None and operation != "DEL"):
                    # Not a date, or ADD/CHG without a number: the full check says why.
                    self.records = records
                    yield from self._other_lines(piece + start, piece + match.end(), line)
                    records = self.records
                else:
                    records += 1
                    if records > limit:
                        raise MsisdnFileError(f"more than {limit} records", line=line)
                    valid += 1
                    yield (line, operation, msisdn, iccid, imsi, effective)
                position = match.end() + 1
                line += 1
            if position < len(text):
                self.records = records
                yield from self._other_lines(piece + position, stop, line)
                records = self.records
                line += text.count("\n", position)
            piece = stop
        self.records = records
        self.valid += valid
        if self._refuse and self.rejected:
            raise MsisdnRowsRefused(f"{self.rejected} invalid line(s)")

    def _other_lines(self, start: int, stop: int, line: int) -> Iterator[Row]:
        """The rows of the lines in C{data[start:stop]} (line C{line} first), checked one by one."""
        for raw in self._data[start:stop].split(b"\n"):
            number, line = line, line + 1
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            if number == self._title or not raw.strip():
                continue
            self.records += 1
            if self.records > MAX_RECORDS:
                raise MsisdnFileError(f"more than {MAX_RECORDS} records", line=number)
            fields = _quick(raw, self._default)
            problems: list[LineError] = []
            if fields is None:
                problems, fields = _fields(number, raw, self._default)
            if problems:
                self.rejected += 1
                if len(self.errors) < MAX_LINE_ERRORS:
                    self.errors.extend(problems)
            elif fields is not None:
                operation, msisdn, iccid, imsi, effective = fields
                self.valid += 1
                yield (number, operation.value, msisdn, iccid, imsi, effective)


def _title_line(data: bytes) -> int:
    """The number of the title line (the first non-blank one, if it is the title), or 0."""
    start, number = 0, 1
    while True:
        stop = data.find(b"\n", start)
        raw = data[start : stop if stop >= 0 else len(data)]
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if raw.strip():
            return number if raw.replace(b" ", b"").upper() == _TITLE else 0
        if stop < 0:
            return 0
        start, number = stop + 1, number + 1


#: Bytes of the file decoded to text at a time by L{MsisdnLines} (then cut after a newline).
_PIECE = 1 << 20


def _plain_time(text: str) -> int | None:
    """L{_time} of fourteen digits, by arithmetic on the day's start; C{None} if no date.

    The import's files name many seconds (more than L{_TIMES} keeps), few days.
    """
    day = _DAYS.get(text[:8], -1)
    if day == -1:
        day = _time(text[:8] + "000000", 0, _ignore)
        if len(_DAYS) < 100_000:
            _DAYS[text[:8]] = day
    hours, minutes, seconds = int(text[8:10]), int(text[10:12]), int(text[12:14])
    if day is None or hours > 23 or minutes > 59 or seconds > 59:
        return None
    return day + hours * 3600 + minutes * 60 + seconds


#: The start (epoch seconds) of the days named as YYYYMMDD, C{None} for no date.
_DAYS: dict[str, int | None] = {}


#: L{_PLAIN} over a whole text, a line at a time (the line's C{\r} left out).
_PLAIN_LINES = re.compile(
    r"^(?:\+?([0-9]{5,15}))?,([0-9]{18,20})[Ff]*,([0-9]{6,15})?,(ADD|DEL|CHG),([0-9]{14})?\r?$",
    re.MULTILINE,
).finditer


_Fields = tuple[MsisdnOperation, str | None, str | None, str | None, int]
_OPERATIONS = {operation.value: operation for operation in MsisdnOperation}


#: A line in its plainest form (no white space, upper-case operation, an ICCID
#: given): every line it matches, L{_fields} finds valid with the same fields.
_PLAIN = re.compile(
    rb"(?:\+?([0-9]{5,15}))?,([0-9]{18,20})[Ff]*,([0-9]{6,15})?,(ADD|DEL|CHG),([0-9]{14})?"
).fullmatch
_PLAIN_OPERATIONS = {operation.value.encode(): operation for operation in MsisdnOperation}


def _quick(raw: bytes, default_time: int) -> _Fields | None:
    """L{_fields} of a plain valid line, in a fraction of its time; C{None} for any other line.

    Most lines of a file are plain: this is the import's fast path.  A line
    it does not vouch for is left to L{_fields} (and its error messages).
    """
    match = _PLAIN(raw)
    if match is None:
        return None
    msisdn, iccid, imsi, operation_text, at = match.groups()
    operation = _PLAIN_OPERATIONS[operation_text]
    if msisdn is None and operation is not MsisdnOperation.DEL:
        return None  # ADD and CHG need the MSISDN: _fields says so
    effective = default_time if at is None else _TIMES.get(at.decode())
    if effective is None:
        effective = _time(at.decode(), default_time, _ignore)
        if effective is None:
            return None  # not a valid date: _fields says so
    return (
        operation,
        msisdn.decode() if msisdn is not None else None,
        iccid.decode(),
        imsi.decode() if imsi is not None else None,
        effective,
    )


def _ignore(name: str, message: str) -> None:
    pass


def _fields(number: int, raw: bytes, default_time: int) -> tuple[list[LineError], _Fields | None]:
    """A line's checked fields (operation, MSISDN, ICCID, IMSI, time), or its errors."""
    if len(raw) > MAX_LINE:
        return [LineError(number, None, f"the line is longer than {MAX_LINE} characters")], None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return [LineError(number, None, "the line is not ASCII text")], None
    if not text.isprintable():
        return [LineError(number, None, "the line holds control characters")], None
    values = [v.strip() for v in text.split(",")]
    if len(values) != len(FIELDS):
        message = f"{len(values)} fields; a record has {len(FIELDS)}: {','.join(FIELDS)}"
        return [LineError(number, None, message)], None
    errors: list[LineError] = []

    def bad(name: str, message: str) -> None:
        errors.append(LineError(number, name, message))

    msisdn_text, iccid_text, imsi, operation_text, time_text = values
    msisdn = _msisdn(msisdn_text, bad)
    iccid: str | None = None
    if iccid_text:
        try:
            iccid = normalise_iccid(iccid_text)
        except InvalidIccidError as e:
            bad("ICCID", str(e))
    if imsi and not (imsi.isdigit() and 6 <= len(imsi) <= 15):
        bad("IMSI", f"IMSI {imsi[:32]!r} must be 6 to 15 digits")
    operation = _OPERATIONS.get(operation_text.upper())
    if operation is None:
        bad("OPERATION", f"{operation_text[:16]!r} is not ADD, DEL or CHG")
    effective = _time(time_text, default_time, bad)
    if operation in (MsisdnOperation.ADD, MsisdnOperation.CHG):
        if not msisdn_text:
            bad("MSISDN", f"{operation} needs the MSISDN")
        if not iccid_text:
            bad("ICCID", f"{operation} needs the ICCID")
    elif operation is MsisdnOperation.DEL and not msisdn_text and not iccid_text:
        bad("MSISDN", "DEL needs the MSISDN, the ICCID or both")
    if errors or operation is None or effective is None:
        return errors, None
    return [], (operation, msisdn, iccid, imsi or None, effective)


def _valid_fields(raw: bytes, default_time: int) -> _Fields:
    """L{_fields} of a line it found valid (the second pass), without checking it again."""
    msisdn, iccid, imsi, operation, at = [v.strip() for v in raw.decode("ascii").split(",")]
    effective = _TIMES.get(at) if at else default_time
    if effective is None:
        effective = _time(at, default_time, _valid)
        assert effective is not None
    return (
        _OPERATIONS[operation.upper()],
        (msisdn[1:] if msisdn.startswith("+") else msisdn) or None,
        iccid.rstrip("Ff") or None,
        imsi or None,
        effective,
    )


def _valid(name: str, message: str) -> None:
    raise AssertionError(f"a line checked valid is not: {name}: {message}")


def _msisdn(text: str, bad: _Reporter) -> str | None:
    if not text:
        return None
    digits = text[1:] if text.startswith("+") else text
    if not (digits.isdigit() and 5 <= len(digits) <= 15):
        bad("MSISDN", f"MSISDN {text[:32]!r} must be 5 to 15 digits (an optional + first)")
        return None
    return digits


def _time(text: str, default: int, bad: _Reporter) -> int | None:
    if not text:
        return default
    known = _TIMES.get(text)
    if known is not None:
        return known
    if not (text.isdigit() and len(text) == 14):
        bad("EFFECTIVE_TIME", f"{text[:32]!r} is not YYYYMMDDHHMMSS")
        return None
    try:
        # strptime's digits, without its cost (ten times this); the same dates are valid.
        moment = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            tzinfo=UTC,
        )
    except ValueError:
        bad("EFFECTIVE_TIME", f"{text} is not a valid date and time")
        return None
    at = int(moment.timestamp())
    if len(_TIMES) < 100_000:
        _TIMES[text] = at
    return at


#: EFFECTIVE_TIME texts already converted (a file repeats them: one per second at most).
_TIMES: dict[str, int] = {}
