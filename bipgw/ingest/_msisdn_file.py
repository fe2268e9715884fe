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

from collections.abc import Callable
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
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("an MSISDN file is bytes")
    if len(data) > MAX_FILE_BYTES:
        raise MsisdnFileError(f"the file has {len(data)} bytes; at most {MAX_FILE_BYTES}")
    changes: list[MsisdnRecord] = []
    errors: list[LineError] = []
    records = rejected = 0
    first = True
    for number, raw in enumerate(bytes(data).split(b"\n"), start=1):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if not raw.strip():
            continue
        if first and raw.replace(b" ", b"").upper() == ",".join(FIELDS).encode():
            first = False
            continue
        first = False
        records += 1
        if records > MAX_RECORDS:
            raise MsisdnFileError(f"more than {MAX_RECORDS} records", line=number)
        problems, change = _record(number, raw, default_time, source)
        if problems:
            rejected += 1
            if len(errors) < MAX_LINE_ERRORS:
                errors.extend(problems)
        elif change is not None:
            changes.append(MsisdnRecord(number, change))
    return MsisdnFile(tuple(changes), tuple(errors), records, rejected)


def _record(
    number: int, raw: bytes, default_time: int, source: str | None
) -> tuple[list[LineError], MsisdnChange | None]:
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
    try:
        operation: MsisdnOperation | None = MsisdnOperation(operation_text.upper())
    except ValueError:
        operation = None
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
    return [], MsisdnChange(operation, msisdn, iccid, imsi or None, effective, source)


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
    if not (text.isdigit() and len(text) == 14):
        bad("EFFECTIVE_TIME", f"{text[:32]!r} is not YYYYMMDDHHMMSS")
        return None
    try:
        moment = datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        bad("EFFECTIVE_TIME", f"{text} is not a valid date and time")
        return None
    return int(moment.timestamp())
