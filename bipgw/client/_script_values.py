# -*- test-case-name: tests.unit.client.test_script -*-
"""The values written on an APDU script line: hex, variables and C-APDUs.

A C-APDU or a C{set} value is hex digits, C{${NAME}} references to
variables (optionally sliced, C{${NAME[2:4]}}) and, in a C-APDU, one
C{( data )} group whose length becomes Lc; a step name or include path is
plain or quoted text.  Each reader here takes a L{Line}, so every error
points at the character at fault.  The expectations after C{=>} have their
own pattern language (L{bipgw.client._script_match}), which uses the hex
runs and references read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from bipgw.client._script_lines import Line
from bipgw.codec.apdu import ApduError, CommandApdu

__all__ = [
    "HEX_DIGITS",
    "MAX_VALUE",
    "check_name",
    "expand_reference",
    "hex_run",
    "parse_apdu",
    "parse_hex_value",
    "parse_text",
    "quoted_text",
    "skip_space",
]

MAX_VALUE: Final = 65544
"""The most bytes a value or C-APDU may have (an extended case 4 APDU)."""
HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
"""The characters of a hex run."""
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_REF: Final = re.compile(r"\$\{([^}\[]*)(?:\[(\d*):(\d*)\])?\}")


def check_name(name: str) -> str:
    """Return C{name} if it is a valid variable name.

    @raise ValueError: it is not (letters, digits, C{_}; no leading digit).
    """
    if not _NAME.match(name):
        raise ValueError(
            f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)"
        )
    return name


def parse_hex_value(text: str, what: str) -> bytes:
    """Hex digits with any white space, as a C{--var} value.

    @raise ValueError: a character that is not hex, or an odd digit count.
    """
    compact = "".join(text.split())
    for ch in compact:
        if ch not in HEX_DIGITS:
            raise ValueError(f"{what}: {ch!r} is not a hex digit")
    if len(compact) % 2:
        raise ValueError(f"{what}: odd number of hex digits ({len(compact)})")
    if len(compact) // 2 > MAX_VALUE:
        raise ValueError(f"{what}: more than {MAX_VALUE} bytes")
    return bytes.fromhex(compact)


def expand_reference(line: Line, at: int, variables: Mapping[str, bytes]) -> tuple[bytes, int]:
    """Expand the C{${NAME}} or C{${NAME[a:b]}} at C{at}; return it and where it ends."""
    m = _REF.match(line.text, at)
    if m is None:
        raise line.error(at, "a variable is written ${NAME} or ${NAME[start:end]}")
    name = m.group(1)
    if not _NAME.match(name):
        raise line.error(at + 2, f"{name!r} is not a variable name")
    if name not in variables:
        raise line.error(
            at, f"unknown variable {name} (set it with 'set {name} = ...' or --var {name}=...)"
        )
    value = variables[name]
    if m.group(2) is not None:
        start = int(m.group(2) or 0)
        end = int(m.group(3)) if m.group(3) else len(value)
        if not start <= end <= len(value):
            raise line.error(
                at, f"slice [{start}:{end}] is outside {name}, which has {len(value)} bytes"
            )
        value = value[start:end]
    return value, m.end()


def hex_run(line: Line, at: int, allowed: frozenset[str]) -> tuple[str, int]:
    """The run of C{allowed} characters at C{at}, whole bytes; return it and where it ends.

    C{allowed} is L{HEX_DIGITS}, or those and C{X} in a data pattern.
    """
    end = at
    while end < len(line.text) and line.text[end] in allowed:
        end += 1
    run = line.text[at:end]
    if end < len(line.text) and line.text[end].isalnum():
        raise line.error(end, f"{line.text[end]!r} is not a hex digit")
    if len(run) % 2:
        raise line.error(at, f"odd number of hex digits in {run!r} (write bytes as 2 digits)")
    return run, end


def parse_apdu(
    line: Line, variables: Mapping[str, bytes], *, raw: bool, what: str = "C-APDU"
) -> bytes:
    """The bytes of a C-APDU (or a C{set} value) written on C{line}.

    Hex digits, white space, C{${NAME}} references and, in a C-APDU not
    marked C{raw}, one C{( data )} group whose length becomes Lc.  A C-APDU
    must be well formed (ISO 7816-4) unless it is C{raw}.
    """
    parts: list[bytearray] = [bytearray()]
    columns: list[int] = []  # text index of each byte, for error positions
    group_at = -1
    text = line.text
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in HEX_DIGITS:
            run, end = hex_run(line, i, HEX_DIGITS)
            parts[-1] += bytes.fromhex(run)
            columns.extend(range(i, end, 2))
            i = end
        elif ch == "$":
            value, end = expand_reference(line, i, variables)
            parts[-1] += value
            columns.extend([i] * len(value))
            i = end
        elif ch == "(" and what == "C-APDU" and not raw and group_at < 0:
            group_at = i
            parts.append(bytearray())
            i += 1
        elif ch == ")" and len(parts) == 2:
            parts.append(bytearray())
            i += 1
        elif ch == "(":
            reason = "only one ( ) group" if group_at >= 0 else "no ( ) group"
            raise line.error(i, f"{reason} is allowed here (a C-APDU not marked raw has one)")
        else:
            raise line.error(i, f"unexpected {ch!r} in a {what} (hex digits and ${{NAME}})")
        if sum(len(p) for p in parts) > MAX_VALUE:
            raise line.error(i, f"a {what} has at most {MAX_VALUE} bytes")
    if len(parts) == 2:
        raise line.error(group_at, "( is never closed with )")
    if what != "C-APDU":
        return bytes(parts[0])
    if len(parts) == 3:
        return _grouped(line, group_at, bytes(parts[0]), bytes(parts[1]), bytes(parts[2]))
    apdu = bytes(parts[0])
    if not apdu:
        raise line.error(line.first_column(), "empty C-APDU")
    if raw:
        return apdu
    try:
        CommandApdu.decode(apdu)
    except ApduError as e:
        offset = e.offset if e.offset is not None and e.offset < len(columns) else 0
        raise line.error(
            columns[offset],
            f"not a well-formed C-APDU: {e.reason} (write 'raw' before it to send it anyway)",
        ) from None
    return apdu


def _grouped(line: Line, at: int, header: bytes, data: bytes, trailer: bytes) -> bytes:
    """Encode C{header (data) trailer}: Lc from the data, Le from the trailer."""
    if len(header) != 4:
        raise line.error(at, f"( ) must follow the 4 header bytes CLA INS P1 P2, not {len(header)}")
    if len(trailer) > 2:
        raise line.error(at, "after ( ) only Le may follow: 1 byte, or 2 for an extended Le")
    le = None
    if len(trailer) == 1:
        le = trailer[0] or 256
    elif len(trailer) == 2:
        le = int.from_bytes(trailer, "big") or 65536
    extended = len(data) > 255 or len(trailer) == 2
    try:
        apdu = CommandApdu(
            header[0],
            header[1],
            header[2],
            header[3],
            data,
            le,
            extended and bool(data or le),
        )
    except ApduError as e:
        raise line.error(at, f"cannot build the C-APDU: {e.reason}") from None
    return apdu.encode()


def skip_space(text: str, i: int) -> int:
    """The index of the first character at or after C{i} that is not white space."""
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def quoted_text(line: Line) -> str:
    """The double-quoted text on C{line} (nothing else may follow it)."""
    text = line.text
    i = skip_space(text, 0)
    if i == len(text) or text[i] != '"':
        raise line.error(i, 'expected text in double quotes, "like this"')
    out = []
    j = i + 1
    while j < len(text) and text[j] != '"':
        if text[j] == "\\" and j + 1 < len(text) and text[j + 1] == '"':
            j += 1
        out.append(text[j])
        j += 1
    if j == len(text):
        raise line.error(i, "unterminated quoted text")
    rest = skip_space(text, j + 1)
    if rest < len(text):
        raise line.error(rest, "nothing may follow the closing quote")
    return "".join(out)


def parse_text(line: Line, variables: Mapping[str, bytes] | None = None) -> str:
    """A name or path: the rest of the line, or the text in double quotes.

    With C{variables}, C{${NAME}} is replaced by its value in hex.
    """
    text = line.text.strip()
    value = quoted_text(line) if text.startswith('"') else text
    if variables is None or "$" not in value:
        return value
    for m in _REF.finditer(line.text):
        expand_reference(line, m.start(), variables)  # errors where the reference was written
    flat = Line(value, line.file, line.positions[:1] * (len(value) + 1))
    return _REF.sub(lambda m: expand_reference(flat, m.start(), variables)[0].hex().upper(), value)
