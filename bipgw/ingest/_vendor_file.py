# -*- test-case-name: tests.unit.ingest.test_vendor_file -*-
"""The card-vendor output file: a pure parser (bytes in, records and line errors out).

The layout (DESIGN.md section 5, C{docs/file-formats.md}): a header of
C{Key: value} lines, a C{Var_Out:} line naming the columns separated by
C{/}, then one card per line, values separated by white space.  Secret
columns are hex of the transport wrapping; this module only checks their
shape (the importer unwraps them) and never puts their text in a message.

The parser refuses the file as a whole (L{VendorFileError}) when it cannot
be trusted at all: no or bad header, a missing required header, a
C{Quantity} that is not the number of card lines (a truncated upload).  A
bad card line is reported (L{LineError}, with its line number and column)
and the others are kept.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping

from attrs import field, frozen

from bipgw.ingest._errors import VendorFileError
from bipgw.ingest._lines import SeenSet
from bipgw.keys import InvalidIccidError, normalise_iccid
from bipgw.store import MAX_PSK_IDENTITY, KeyPurpose, LineError

#: Line errors kept (the rejected count stays exact): a hostile file cannot
#: make the report as large as itself.
MAX_LINE_ERRORS = 10_000
#: Largest vendor file accepted, in bytes.  A million cards with four keys
#: (MAX_CARDS) are ~270 MB; the importer streams the file, so the limit
#: bounds time and disk, not memory.
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Longest line accepted, in characters.
MAX_LINE = 8192
#: Most columns a C{Var_Out} line may name.
MAX_COLUMNS = 64
#: Longest header value or extra column value, in characters.
MAX_VALUE = 255
#: Most card lines in one file.
MAX_CARDS = 1_000_000
#: Header keys every file must have.
REQUIRED_HEADERS = ("Customer", "Quantity", "Type", "Batch", "Transport_key")
#: Optional header keys bipgw interprets.
OPTIONAL_HEADERS = ("Ota_algorithm", "Ota_kvn")
#: Longest hex text of a wrapped secret (1024-byte key + 16 bytes of wrapping).
MAX_SECRET_HEX = 2 * (1024 + 16)

_KNOWN = {name.lower(): name for name in (*REQUIRED_HEADERS, *OPTIONAL_HEADERS)}
_HEADER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_ .-]{0,63}")
_COLUMN = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
_SECRET = re.compile(r"(KIC|KID|KIK|PSK|SCP03_ENC|SCP03_MAC|SCP03_DEK)([1-9][0-9]?)")
_KCV = re.compile(r"(.+)_KCV")
_PSK_ID = re.compile(r"PSK_ID([1-9][0-9]?)")
#: Columns that hold secrets bipgw has no use for (network authentication
#: keys, PINs): never stored, not even as extras.
_DROPPED = re.compile(r"KI|K|OPC?|ADM[0-9]*|PIN[0-9]*|PUK[0-9]*|.*KEY.*")
_HEX = frozenset("0123456789abcdefABCDEF")
_HEX_TEXT = re.compile(r"[0-9a-fA-F]*")


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return types.MappingProxyType(dict(mapping))


class OtaAlgorithm:
    """Values of the C{Ota_algorithm} header."""

    AES = "AES"
    DES3 = "3DES"


@frozen
class VendorHeader:
    """The header block of a vendor file.

    @ivar fields: every header line, by key as written (non-secret facts).
    @ivar ota_kvn: the key version of OTA keyset 1 (KIC1/KID1/KIK1).
    """

    customer: str
    quantity: int
    card_type: str
    batch: str
    transport_key: str
    ota_algorithm: str = OtaAlgorithm.AES
    ota_kvn: int = 1
    fields: Mapping[str, str] = field(factory=dict, converter=_frozen, hash=False)


@frozen
class SecretColumn:
    """A transport-wrapped key column (C{KIC1}, C{PSK1}, C{SCP03_ENC1}...).

    @ivar kvn: the key version the key is stored under: for KIC/KID/KIK
        keyset I{n}, C{Ota_kvn + n - 1}; for PSK and SCP03 keys, I{n}.
    @ivar kcv_column: the column holding its key check value, if any.
    """

    name: str
    purpose: KeyPurpose
    kvn: int
    kcv_column: str | None = None


@frozen
class VendorCard:
    """One valid card line.

    @ivar wrapped: the secret columns' values (their hex decoded), by column name.  Still
        transport-wrapped (useless without the transport key), but kept out
        of C{repr} all the same.
    @ivar kcvs: key check values (6 upper-case hex digits) by secret column.
    @ivar extras: columns bipgw does not interpret, kept as text.
    """

    line: int
    iccid: str
    imsi: str | None
    psk_identity: bytes | None
    wrapped: Mapping[str, bytes] = field(repr=False, hash=False)
    kcvs: Mapping[str, str] = field(hash=False)
    extras: Mapping[str, str] = field(hash=False)


@frozen
class VendorFile:
    """A parsed vendor file: its header, valid cards and refused lines.

    @ivar records: card lines in the file, valid or not (what C{Quantity} counts).
    @ivar rejected: card lines refused (each has one or more L{errors}).
    @ivar dropped_columns: secret-looking columns bipgw ignores (C{KI}, C{OPC}...).
    """

    header: VendorHeader
    columns: tuple[str, ...]
    secrets: tuple[SecretColumn, ...]
    cards: tuple[VendorCard, ...]
    errors: tuple[LineError, ...]
    records: int
    rejected: int
    dropped_columns: tuple[str, ...] = ()


def parse_vendor_file(data: bytes) -> VendorFile:
    """Parse a vendor output file held in memory (the importer streams it instead).

    @raise VendorFileError: when the file as a whole is unusable (its
        message names the line and the reason).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("a vendor file is bytes")
    if len(data) > MAX_FILE_BYTES:
        raise VendorFileError(f"the file has {len(data)} bytes; at most {MAX_FILE_BYTES}")
    lines = iter(enumerate(bytes(data).split(b"\n"), start=1))
    header, columns, secrets, dropped = read_header(lines)
    parser = CardParser(columns, secrets, dropped, header.quantity)
    cards = [card for number, raw in lines if (card := parser.feed(number, raw)) is not None]
    parser.check_quantity(header)
    return VendorFile(
        header,
        columns,
        secrets,
        tuple(cards),
        tuple(parser.errors),
        parser.records,
        parser.rejected,
        dropped,
    )


def read_header(
    lines: Iterator[tuple[int, bytes]],
) -> tuple[VendorHeader, tuple[str, ...], tuple[SecretColumn, ...], tuple[str, ...]]:
    """Read the header block from numbered lines, up to and including C{Var_Out}.

    @return: the header, the columns, the secret columns and the dropped ones;
        C{lines} is left at the first card line.
    @raise VendorFileError: when the header cannot be trusted.
    """
    fields, columns = _parse_header(lines)
    header = _header(fields)
    secrets, dropped = _classify(columns, header)
    return header, columns, secrets, dropped


class CardParser:
    """Card lines one at a time: the valid cards out, the refused lines counted.

    Remembers each ICCID and PSK identity (L{SeenSet}, fixed memory) to
    refuse a card that repeats an earlier line's.

    @ivar records: card lines seen, valid or not (what C{Quantity} counts).
    @ivar rejected: card lines refused.
    @ivar errors: the first L{MAX_LINE_ERRORS} problems.
    """

    def __init__(
        self,
        columns: tuple[str, ...],
        secrets: tuple[SecretColumn, ...],
        dropped: tuple[str, ...],
        quantity: int,
    ) -> None:
        self._columns = columns
        self._secrets = secrets
        self._dropped = dropped
        self._plan = _plan(columns, secrets, dropped)
        self._seen_iccid = SeenSet(quantity + 1)
        self._seen_identity = SeenSet(quantity + 1)
        self.records = 0
        self.rejected = 0
        self.errors: list[LineError] = []

    def feed(self, number: int, raw: bytes) -> VendorCard | None:
        """The card on line C{number}, or C{None} (a blank, comment or refused line).

        @raise VendorFileError: past L{MAX_CARDS} card lines.
        """
        text, problem = _line(raw)
        card: VendorCard | None = None
        if text is None:
            problems = [LineError(number, None, problem)]
        else:
            if not text.strip() or text.startswith("*"):
                return None
            problems, card = _card(number, text, self._columns, self._plan)
        self.records += 1
        if self.records > MAX_CARDS:
            raise VendorFileError(f"more than {MAX_CARDS} card lines", line=number)
        if card is not None and not problems:
            problems = self._duplicates(card)
        if problems:
            self.rejected += 1
            if len(self.errors) < MAX_LINE_ERRORS:
                self.errors.extend(problems)
            return None
        return card

    def check_quantity(self, header: VendorHeader) -> None:
        """@raise VendorFileError: if the file has not C{Quantity} card lines."""
        if self.records != header.quantity:
            raise VendorFileError(
                f"Quantity says {header.quantity} cards but the file has {self.records} card"
                " lines (truncated or padded upload?)",
                field="Quantity",
            )

    def _duplicates(self, card: VendorCard) -> list[LineError]:
        problems = []
        iccid_line, iccid_slot = self._seen_iccid.probe(card.iccid.encode())
        if iccid_line is not None:
            message = f"ICCID {card.iccid} is also on line {iccid_line}"
            problems.append(LineError(card.line, "ICCID", message))
        identity_slot = None
        if card.psk_identity is not None:
            identity_line, identity_slot = self._seen_identity.probe(card.psk_identity)
            if identity_line is not None:
                message = f"the PSK identity is also on line {identity_line}"
                problems.append(LineError(card.line, "PSK_ID1", message))
        if not problems:
            self._seen_iccid.put(iccid_slot, card.line)
            if identity_slot is not None:
                self._seen_identity.put(identity_slot, card.line)
        return problems


def count_card_lines(lines: Iterator[tuple[int, bytes]]) -> tuple[int, int | None]:
    """Card lines left in C{lines} (what C{Quantity} counts), without parsing them.

    @return: the count and, past L{MAX_CARDS}, the line where the limit was passed.
    """
    records = 0
    for number, raw in lines:
        text, _ = _line(raw)
        if text is not None and (not text.strip() or text.startswith("*")):
            continue
        records += 1
        if records > MAX_CARDS:
            return records, number
    return records, None


def _line(raw: bytes) -> tuple[str | None, str]:
    """The line's text, or C{None} and why it is unreadable."""
    raw = raw[:-1] if raw.endswith(b"\r") else raw
    if len(raw) > MAX_LINE:
        return None, f"the line is longer than {MAX_LINE} characters"
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None, "the line is not ASCII text"
    if not text.isprintable() and not text.replace("\t", " ").isprintable():
        return None, "the line holds control characters"
    return text, ""


def _parse_header(lines: Iterator[tuple[int, bytes]]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The header fields and the columns; C{lines} is left after C{Var_Out}."""
    fields: dict[str, str] = {}
    for number, raw in lines:
        text, problem = _line(raw)
        if text is None:
            raise VendorFileError(problem, line=number)
        if not text.strip() or text.startswith("*"):
            continue
        key, sep, value = text.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _HEADER_KEY.fullmatch(key):
            raise VendorFileError(
                "expected a 'Key: value' header line or the 'Var_Out:' line", line=number
            )
        if key.lower() == "var_out":
            return fields, _columns(value, number)
        name = _KNOWN.get(key.lower(), key)
        if name in fields:
            raise VendorFileError(f"header {name} appears twice", line=number, field=name)
        if len(value) > MAX_VALUE:
            raise VendorFileError(
                f"the value is longer than {MAX_VALUE} characters", line=number, field=name
            )
        fields[name] = value
    raise VendorFileError("no 'Var_Out:' line naming the columns")


def _columns(value: str, number: int) -> tuple[str, ...]:
    names = tuple(part.strip().upper() for part in value.split("/"))
    if len(names) > MAX_COLUMNS:
        raise VendorFileError(f"Var_Out names more than {MAX_COLUMNS} columns", line=number)
    for name in names:
        if not _COLUMN.fullmatch(name):
            raise VendorFileError(
                f"bad column name {name[:40]!r} (letters, digits and _)",
                line=number,
                field="Var_Out",
            )
    if len(set(names)) != len(names):
        raise VendorFileError("Var_Out names a column twice", line=number, field="Var_Out")
    if "ICCID" not in names:
        raise VendorFileError("Var_Out has no ICCID column", line=number, field="Var_Out")
    return names


def _header(fields: dict[str, str]) -> VendorHeader:
    missing = [name for name in REQUIRED_HEADERS if not fields.get(name)]
    if missing:
        raise VendorFileError(f"missing header(s): {', '.join(missing)}")
    quantity = _integer(fields["Quantity"], "Quantity", 0, MAX_CARDS)
    algorithm = fields.get("Ota_algorithm", OtaAlgorithm.AES).upper()
    if algorithm not in (OtaAlgorithm.AES, OtaAlgorithm.DES3):
        raise VendorFileError("Ota_algorithm must be AES or 3DES", field="Ota_algorithm")
    kvn = _integer(fields.get("Ota_kvn", "1"), "Ota_kvn", 1, 15)
    return VendorHeader(
        customer=fields["Customer"],
        quantity=quantity,
        card_type=fields["Type"],
        batch=fields["Batch"],
        transport_key=fields["Transport_key"],
        ota_algorithm=algorithm,
        ota_kvn=kvn,
        fields=fields,
    )


def _integer(text: str, name: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        raise VendorFileError(f"{name} must be a whole number from {low} to {high}", field=name)
    return int(text)


def _classify(
    columns: tuple[str, ...], header: VendorHeader
) -> tuple[tuple[SecretColumn, ...], tuple[str, ...]]:
    secrets = []
    for name in columns:
        match = _SECRET.fullmatch(name)
        if match is None:
            continue
        purpose = KeyPurpose(match.group(1))
        keyset = int(match.group(2))
        ota = purpose in (KeyPurpose.KIC, KeyPurpose.KID, KeyPurpose.KIK)
        kvn = header.ota_kvn + keyset - 1 if ota else keyset
        if ota and kvn > 15:
            raise VendorFileError(
                f"column {name} would have OTA key version {kvn}; at most 15", field="Var_Out"
            )
        kcv_name = f"{name}_KCV"
        secrets.append(SecretColumn(name, purpose, kvn, kcv_name if kcv_name in columns else None))
    for name in columns:
        kcv = _KCV.fullmatch(name)
        if kcv is not None and not any(s.name == kcv.group(1) for s in secrets):
            raise VendorFileError(
                f"column {name} is the check value of a column the file does not have",
                field="Var_Out",
            )
    dropped = tuple(
        name
        for name in columns
        if _DROPPED.fullmatch(name) and not _SECRET.fullmatch(name) and not _KCV.fullmatch(name)
    )
    return tuple(secrets), dropped


# What a column is, decided once per file (L{_plan}) instead of by regex on every line.
_SECRET_COL, _KCV_COL, _PSK_ID_COL, _EXTRA_COL, _SKIP_COL = range(5)


def _plan(
    columns: tuple[str, ...], secrets: tuple[SecretColumn, ...], dropped: tuple[str, ...]
) -> tuple[tuple[str, int, str], ...]:
    """Each column's name, kind and (for a KCV column) the secret column it checks."""
    secret_names = {s.name for s in secrets}
    plan = []
    for column in columns:
        if column in secret_names:
            plan.append((column, _SECRET_COL, ""))
        elif (kcv_match := _KCV.fullmatch(column)) is not None:
            plan.append((column, _KCV_COL, kcv_match.group(1)))
        elif (psk_id := _PSK_ID.fullmatch(column)) is not None and psk_id.group(1) == "1":
            plan.append((column, _PSK_ID_COL, ""))
        elif column not in ("ICCID", "IMSI") and column not in dropped:
            plan.append((column, _EXTRA_COL, ""))
        else:
            plan.append((column, _SKIP_COL, ""))
    return tuple(plan)


def _card(
    number: int,
    text: str,
    columns: tuple[str, ...],
    plan: tuple[tuple[str, int, str], ...],
) -> tuple[list[LineError], VendorCard | None]:
    values = text.split()
    if len(values) != len(columns):
        message = f"{len(values)} values, but Var_Out names {len(columns)} columns"
        return [LineError(number, None, message)], None
    row = dict(zip(columns, values, strict=True))
    errors: list[LineError] = []

    def bad(column: str, message: str) -> None:
        errors.append(LineError(number, column, message))

    iccid = row["ICCID"]
    if not (19 <= len(iccid) <= 20 and iccid.isascii() and iccid.isdigit()):
        try:
            iccid = normalise_iccid(iccid)
        except InvalidIccidError as e:
            bad("ICCID", str(e))
    imsi = row.get("IMSI")
    if imsi is not None and not (imsi.isascii() and imsi.isdigit() and 6 <= len(imsi) <= 15):
        bad("IMSI", f"IMSI {imsi[:32]!r} must be 6 to 15 digits")
    wrapped: dict[str, bytes] = {}
    kcvs: dict[str, str] = {}
    extras: dict[str, str] = {}
    identity: bytes | None = None
    for (column, kind, target), value in zip(plan, values, strict=True):
        if kind == _SECRET_COL:
            data = _hex_bytes(value, MAX_SECRET_HEX)
            if data is None:
                bad(column, _hex_problem(value, MAX_SECRET_HEX) or "not hex")
            else:
                wrapped[column] = data
        elif kind == _KCV_COL:
            if _hex_problem(value, 6) or len(value) != 6:
                bad(column, "a key check value is 6 hex digits")
            kcvs[target] = value.upper()
        elif kind == _PSK_ID_COL:
            problem = _hex_problem(value, 2 * MAX_PSK_IDENTITY)
            if problem:
                bad(column, f"{problem} (PSK_ID1 is the hex of the identity)")
            else:
                identity = bytes.fromhex(value)
        elif kind == _EXTRA_COL:
            if len(value) > MAX_VALUE:
                bad(column, f"longer than {MAX_VALUE} characters")
            extras[column] = value
    if errors:
        return errors, None
    return [], VendorCard(number, iccid, imsi, identity, wrapped, kcvs, extras)


def _hex_bytes(text: str, limit: int) -> bytes | None:
    """The bytes of even-length hex text of at most C{limit} digits (no white space), or C{None}."""
    if len(text) > limit or len(text) % 2:
        return None
    try:
        data = bytes.fromhex(text)
    except ValueError:
        return None
    # fromhex skips white space between bytes; a split line has none, but be exact.
    return data if 2 * len(data) == len(text) else None


def _hex_problem(text: str, limit: int) -> str | None:
    """Why C{text} is not even-length hex of at most C{limit} digits; never quotes it."""
    if len(text) <= limit and not len(text) % 2 and _HEX_TEXT.fullmatch(text):
        return None
    if len(text) > limit:
        return f"{len(text)} hex digits; at most {limit}"
    for position, char in enumerate(text, start=1):
        if char not in _HEX:
            return f"not hex (character {position} of {len(text)})"
    if len(text) % 2:
        return f"odd number of hex digits ({len(text)})"
    return None
