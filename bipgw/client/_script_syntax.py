# -*- test-case-name: tests.unit.client.test_script -*-
"""The pieces of an APDU script line: lexing, hex, variables and expectations.

Every error names the file, line and column of the character at fault,
because scripts are written by hand and the person fixing one is looking at
an editor, not at our code.  To keep that exact across continuation lines
(a line ending in C{\\} goes on on the next one), a logical L{Line} keeps
the source position of every character it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Final

import attrs

from bipgw.client._script_match import (
    ByteMatch,
    DataExpectation,
    DataPattern,
    Gap,
    PatternElement,
    RegexPattern,
    SwExpectation,
    SwPattern,
)
from bipgw.codec.apdu import ApduError, CommandApdu
from bipgw.errors import BipGwError

__all__ = [
    "Expectation",
    "Line",
    "ScriptError",
    "SourceLocation",
    "check_name",
    "logical_lines",
    "parse_apdu",
    "parse_expectation",
    "parse_hex_value",
    "parse_text",
]

MAX_VALUE: Final = 65544
"""The most bytes a value or C-APDU may have (an extended case 4 APDU)."""
MAX_REPEAT: Final = 65536
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_PATTERN_HEX: Final = _HEX | frozenset("xX")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_REF: Final = re.compile(r"\$\{([^}\[]*)(?:\[(\d*):(\d*)\])?\}")


@attrs.frozen
class SourceLocation:
    """A place in a script: file name, line and column (both from 1)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


class ScriptError(BipGwError, ValueError):
    """A script that cannot be run: what is wrong, and exactly where.

    @ivar location: the file, line and column at fault.
    @ivar reason: what is wrong, in words.
    """

    def __init__(self, location: SourceLocation, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.location, self.reason))


@attrs.frozen
class Line:
    """A logical line (comments removed, continuations joined).

    @ivar text: the characters.
    @ivar file: the script it comes from.
    @ivar positions: C{(line, column)} of each character of C{text}, plus
        one for the place just after the end.
    """

    text: str
    file: str
    positions: tuple[tuple[int, int], ...]

    def location(self, index: int) -> SourceLocation:
        """Where C{text[index]} was written (the end of the line past the text)."""
        line, column = self.positions[min(max(index, 0), len(self.positions) - 1)]
        return SourceLocation(self.file, line, column)

    def error(self, index: int, reason: str) -> ScriptError:
        """A L{ScriptError} at C{text[index]}."""
        return ScriptError(self.location(index), reason)

    def slice(self, start: int, end: int | None = None) -> Line:
        """The part C{text[start:end]}, positions kept."""
        stop = len(self.text) if end is None else end
        return Line(self.text[start:stop], self.file, self.positions[start : stop + 1])

    def first_column(self) -> int:
        """The index of the first character that is not white space."""
        return len(self.text) - len(self.text.lstrip())

    def first_word(self) -> str:
        """The first run of letters (a keyword, if it is one)."""
        start = self.first_column()
        end = start
        while end < len(self.text) and self.text[end].isalpha():
            end += 1
        if end < len(self.text) and not self.text[end].isspace():
            return ""  # "expect:" or "00A4": not a keyword
        return self.text[start:end]

    def after_word(self) -> Line:
        """The rest of the line after L{first_word}."""
        return self.slice(self.first_column() + len(self.first_word()))

    def partition(self, separator: str) -> tuple[Line, bool, Line]:
        """Split at the first C{separator}: before, found, after."""
        at = self.text.find(separator)
        if at < 0:
            return self, False, self.slice(len(self.text))
        return self.slice(0, at), True, self.slice(at + len(separator))

    def split_arrow(self) -> tuple[Line, bool, Line]:
        """Split a command line at C{=>} (outside a quoted regex)."""
        quoted = False
        for i, ch in enumerate(self.text):
            if ch == '"':
                quoted = not quoted
            elif not quoted and self.text.startswith("=>", i):
                return self.slice(0, i), True, self.slice(i + 2)
        return self, False, self.slice(len(self.text))


def _strip_comment(raw: str, name: str, number: int) -> str:
    """Cut a C{#} or C{//} comment (outside double quotes)."""
    quoted = False
    i = 0
    while i < len(raw):
        ch = raw[i]
        if quoted:
            if ch == "\\" and i + 1 < len(raw):
                i += 2
                continue
            if ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "#" or raw.startswith("//", i):
            return raw[:i]
        i += 1
    if quoted:
        column = raw.rfind('"') + 1
        raise ScriptError(SourceLocation(name, number, column), "unterminated quoted text")
    return raw


def logical_lines(text: str, name: str) -> Iterator[Line]:
    """The non-blank logical lines of a script, comments removed.

    A line whose text (before any comment) ends with C{\\} continues on the
    next line; the backslash itself is dropped and a space joins the parts.
    """
    chars: list[str] = []
    positions: list[tuple[int, int]] = []
    number = 0
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        body = _strip_comment(raw, name, number).rstrip()
        more = body.endswith("\\")
        if more:
            body = body[:-1]
        for column, ch in enumerate(body, 1):
            chars.append(ch)
            positions.append((number, column))
        if more:
            chars.append(" ")
            positions.append((number, len(body) + 1))
            continue
        if "".join(chars).strip():
            positions.append((number, len(body) + 1))
            yield Line("".join(chars), name, tuple(positions))
        chars, positions = [], []
    if "".join(chars).strip():
        positions.append((number, len(chars) + 1))
        yield Line("".join(chars), name, tuple(positions))


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
        if ch not in _HEX:
            raise ValueError(f"{what}: {ch!r} is not a hex digit")
    if len(compact) % 2:
        raise ValueError(f"{what}: odd number of hex digits ({len(compact)})")
    if len(compact) // 2 > MAX_VALUE:
        raise ValueError(f"{what}: more than {MAX_VALUE} bytes")
    return bytes.fromhex(compact)


def _reference(line: Line, at: int, variables: Mapping[str, bytes]) -> tuple[bytes, int]:
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


def _hex_run(line: Line, at: int, allowed: frozenset[str]) -> tuple[str, int]:
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
        elif ch in _HEX:
            run, end = _hex_run(line, i, _HEX)
            parts[-1] += bytes.fromhex(run)
            columns.extend(range(i, end, 2))
            i = end
        elif ch == "$":
            value, end = _reference(line, i, variables)
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


@attrs.frozen
class Expectation:
    """Parts of an expectation: either may be missing until the command is complete."""

    sw: SwExpectation | None = None
    data: DataExpectation | None = None

    def merge(self, other: Expectation, where: Line) -> Expectation:
        """Add C{other}'s parts; a part given twice is an error at C{where}."""
        if self.sw is not None and other.sw is not None:
            raise where.error(
                where.first_column(), "this command's status word is already expected"
            )
        if self.data is not None and other.data is not None:
            raise where.error(where.first_column(), "this command's data is already expected")
        return Expectation(
            self.sw if other.sw is None else other.sw,
            self.data if other.data is None else other.data,
        )


def _sw_alternative(line: Line, at: int, token: str) -> SwPattern:
    if token == "*":
        return SwPattern(0, 0)
    if len(token) != 4 or any(ch not in _PATTERN_HEX for ch in token):
        raise line.error(
            at, f"{token!r} is not a status word pattern (4 hex digits or X, e.g. 9000, 61XX)"
        )
    value = mask = 0
    for ch in token:
        wild = ch in "xX"
        value = value << 4 | (0 if wild else int(ch, 16))
        mask = mask << 4 | (0 if wild else 0xF)
    return SwPattern(value, mask)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def parse_expectation(line: Line, variables: Mapping[str, bytes]) -> Expectation:
    """What follows C{=>} or C{expect}: C{[SW|SW...] [data: PATTERN | regex: "RE"]}."""
    text = line.text
    i = _skip_space(text, 0)
    if i == len(text):
        raise line.error(i, "expected a status word, data: or regex:")
    sw = None
    if not text.lower().startswith(("data:", "regex:"), i):
        alternatives = []
        while True:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] != "|":
                i += 1
            alternatives.append(_sw_alternative(line, start, text[start:i]))
            i = _skip_space(text, i)
            if i < len(text) and text[i] == "|":
                i = _skip_space(text, i + 1)
                continue
            break
        sw = SwExpectation(tuple(alternatives))
    if i == len(text):
        return Expectation(sw, None)
    lowered = text.lower()
    if lowered.startswith("data:", i):
        return Expectation(sw, _data_pattern(line.slice(i + 5), variables))
    if lowered.startswith("regex:", i):
        return Expectation(sw, _regex(line.slice(i + 6)))
    raise line.error(i, "expected data: or regex: after the status word")


def _data_pattern(line: Line, variables: Mapping[str, bytes]) -> DataPattern:
    text = line.text
    elements: list[PatternElement] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _PATTERN_HEX:
            run, i = _hex_run(line, i, _PATTERN_HEX)
            for k in range(0, len(run), 2):
                pair = run[k : k + 2]
                elements.append(_byte_pattern(pair))
            if i < len(text) and text[i] == "{":
                close = text.find("}", i)
                count = text[i + 1 : close] if close > 0 else ""
                if not count.isdigit() or not 1 <= int(count) <= MAX_REPEAT:
                    raise line.error(i, f"{{n}} repeats the byte before it, n in 1..{MAX_REPEAT}")
                elements.extend([elements[-1]] * (int(count) - 1))
                i = close + 1
        elif text.startswith("..", i) or ch == "*":
            elements.append(Gap())
            i += 1 if ch == "*" else 2
        elif ch == "$":
            value, i = _reference(line, i, variables)
            elements.extend(ByteMatch(b, 0xFF) for b in value)
        else:
            raise line.error(
                i, f"unexpected {ch!r} in a data pattern (hex, XX, {{n}}, .., * and ${{NAME}})"
            )
        if len(elements) > MAX_VALUE:
            raise line.error(i, f"a data pattern has at most {MAX_VALUE} elements")
    return DataPattern(tuple(elements), " ".join(text.split()))


def _byte_pattern(pair: str) -> ByteMatch:
    value = mask = 0
    for ch in pair:
        wild = ch in "xX"
        value = value << 4 | (0 if wild else int(ch, 16))
        mask = mask << 4 | (0 if wild else 0xF)
    return ByteMatch(value, mask)


def _quoted(line: Line) -> str:
    """The double-quoted text on C{line} (nothing else may follow it)."""
    text = line.text
    i = _skip_space(text, 0)
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
    rest = _skip_space(text, j + 1)
    if rest < len(text):
        raise line.error(rest, "nothing may follow the closing quote")
    return "".join(out)


def _regex(line: Line) -> RegexPattern:
    source = _quoted(line)
    try:
        return RegexPattern(source)
    except re.error as e:
        raise line.error(_skip_space(line.text, 0), f"bad regex: {e}") from None


def parse_text(line: Line, variables: Mapping[str, bytes] | None = None) -> str:
    """A name or path: the rest of the line, or the text in double quotes.

    With C{variables}, C{${NAME}} is replaced by its value in hex.
    """
    text = line.text.strip()
    value = _quoted(line) if text.startswith('"') else text
    if variables is None or "$" not in value:
        return value
    for m in _REF.finditer(line.text):
        _reference(line, m.start(), variables)  # errors where the reference was written
    flat = Line(value, line.file, line.positions[:1] * (len(value) + 1))
    return _REF.sub(lambda m: _reference(flat, m.start(), variables)[0].hex().upper(), value)
