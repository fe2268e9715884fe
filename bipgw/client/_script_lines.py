# -*- test-case-name: tests.unit.client.test_script -*-
"""The text of an APDU script as logical lines, and the places errors name.

Every error names the file, line and column of the character at fault,
because scripts are written by hand and the person fixing one is looking at
an editor, not at our code.  To keep that exact across continuation lines
(a line ending in C{\\} goes on on the next one), a logical L{Line} keeps
the source position of every character it holds; the readers of what a line
says (L{bipgw.client._script_values}, L{bipgw.client._script_match}) raise
their L{ScriptError}s through it.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from bipgw.errors import BipGwError

__all__ = [
    "Line",
    "ScriptError",
    "SourceLocation",
    "logical_lines",
]


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
