# -*- test-case-name: tests.unit.client.test_script -*-
"""What an APDU script expects back: status word and data patterns.

A replay is only useful if it says I{why} a card's answer is wrong, so the
patterns here do more than answer yes or no: L{DataPattern.mismatch}
returns the byte offset where the data stopped matching and what the
pattern wanted there, which the trace turns into a readable diff.

The pattern language (docs/apdu-scripts.md):

  - status words: four characters, each a hex digit or C{X} for any nibble
    (C{9000}, C{61XX}, C{6XXX}); C{|} separates alternatives; C{*} is any;
  - data: hex bytes, where C{X} is any nibble (C{XX} any byte), C{{n}}
    repeats the byte before it, and C{..} or C{*} stand for any number of
    bytes (none included);
  - or a regular expression, matched against the whole data written as
    upper-case hex without spaces.

Matching is linear in the data for patterns without gaps, and at worst
proportional to data length times pattern length (the classic wildcard
algorithm, no exponential backtracking).

L{parse_expectation} reads that language where a script writes it (after
C{=>} or C{expect}), so the patterns, how they are written and how they
match read in this one module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from bipgw.client._script_lines import Line
from bipgw.client._script_values import (
    HEX_DIGITS,
    MAX_VALUE,
    expand_reference,
    hex_run,
    quoted_text,
    skip_space,
)

__all__ = [
    "ANY_BYTE",
    "MAX_REPEAT",
    "ByteMatch",
    "DataExpectation",
    "DataMismatch",
    "DataPattern",
    "Expectation",
    "Gap",
    "RegexPattern",
    "SwExpectation",
    "SwPattern",
    "parse_expectation",
]

MAX_REPEAT: Final = 65536
"""The most times C{{n}} may repeat a byte of a data pattern."""
_PATTERN_HEX: Final = HEX_DIGITS | frozenset("xX")


def _nibble_text(value: int, mask: int, width: int) -> str:
    """Hex digits of C{value}, with C{X} where C{mask} has a zero nibble."""
    out = []
    for shift in range(4 * (width - 1), -1, -4):
        out.append("X" if (mask >> shift) & 0xF == 0 else f"{(value >> shift) & 0xF:X}")
    return "".join(out)


@attrs.frozen
class SwPattern:
    """One status word alternative, with nibble wildcards.

    @ivar value: the status word with wildcard nibbles set to zero.
    @ivar mask: C{F} for every nibble that must equal C{value}'s, C{0} for C{X}.
    """

    value: int
    mask: int

    def matches(self, sw: int) -> bool:
        """Whether C{sw} is an instance of this pattern."""
        return sw & self.mask == self.value

    def __str__(self) -> str:
        return _nibble_text(self.value, self.mask, 4)


@attrs.frozen
class SwExpectation:
    """The status words a command may answer: any of L{alternatives}."""

    alternatives: tuple[SwPattern, ...]

    @classmethod
    def exactly(cls, sw: int) -> SwExpectation:
        """Only C{sw} (the default expectation uses C{9000})."""
        return cls((SwPattern(sw, 0xFFFF),))

    def matches(self, sw: int) -> bool:
        """Whether C{sw} matches one of the alternatives."""
        return any(p.matches(sw) for p in self.alternatives)

    def __str__(self) -> str:
        return "|".join(str(p) for p in self.alternatives)


@attrs.frozen
class ByteMatch:
    """One data byte, with nibble wildcards (C{XX} is any byte)."""

    value: int
    mask: int

    def matches(self, byte: int) -> bool:
        """Whether C{byte} fits."""
        return byte & self.mask == self.value

    def __str__(self) -> str:
        return _nibble_text(self.value, self.mask, 2)


@attrs.frozen
class Gap:
    """Any number of data bytes, none included (written C{..} or C{*})."""

    def __str__(self) -> str:
        return ".."


ANY_BYTE: Final = ByteMatch(0, 0)
"""C{XX}: any one byte."""

PatternElement = ByteMatch | Gap


@attrs.frozen
class DataMismatch:
    """Where and why response data did not match.

    @ivar offset: the data offset where matching failed (the data length
        when the data ended too early).
    @ivar reason: the explanation, for the trace.
    @ivar pattern_index: the pattern element that failed there, or C{None}
        (extra data, regex).
    """

    offset: int
    reason: str
    pattern_index: int | None = None


def _compact(elements: Sequence[PatternElement]) -> tuple[PatternElement, ...]:
    """Merge runs of gaps: they mean the same as one and only slow matching."""
    out: list[PatternElement] = []
    for e in elements:
        if isinstance(e, Gap) and out and isinstance(out[-1], Gap):
            continue
        out.append(e)
    return tuple(out)


@attrs.frozen
class DataPattern:
    """A pattern over response data (see the module docstring).

    @ivar elements: bytes to match and gaps, in order.
    @ivar text: the pattern as written, for the trace.
    """

    elements: tuple[PatternElement, ...] = attrs.field(converter=_compact)
    text: str = ""

    def __str__(self) -> str:
        return self.text or " ".join(str(e) for e in self.elements)

    def matches(self, data: bytes) -> bool:
        """Whether C{data} matches the whole pattern."""
        return self.mismatch(data) is None

    def mismatch(self, data: bytes) -> DataMismatch | None:
        """C{None} when C{data} matches, else where it went wrong.

        Glob matching with single-byte classes: on a failure the scan goes
        back to the last gap and lets it swallow one more byte.  The
        failure reported is the attempt that got furthest into the pattern
        (then into the data), which for a pattern without gaps is exactly
        the first wrong byte.
        """
        elements = self.elements
        n, m = len(data), len(elements)
        pi = di = 0
        star_pi, star_di = -1, 0
        best = (-1, -1, 0)  # (data offset, pattern index, kind) of the best failure
        while True:
            if di < n and pi < m:
                e = elements[pi]
                if isinstance(e, Gap):
                    star_pi, star_di = pi, di
                    pi += 1
                    continue
                if e.matches(data[di]):
                    pi += 1
                    di += 1
                    continue
                failure = (di, pi, 0)
            elif pi < m and isinstance(elements[pi], Gap):
                pi += 1
                continue
            elif di == n and pi == m:
                return None
            else:
                failure = (di, pi, 1 if di == n else 2)
            if (failure[1], failure[0]) >= (best[1], best[0]):
                best = failure
            if star_pi < 0 or star_di >= n:
                return self._explain(data, *best)
            star_di += 1
            pi, di = star_pi + 1, star_di

    def _explain(self, data: bytes, offset: int, index: int, kind: int) -> DataMismatch:
        if kind == 0:
            expected = self.elements[index]
            return DataMismatch(
                offset, f"byte {offset}: expected {expected}, got {data[offset]:02X}", index
            )
        if kind == 1:
            expected = self.elements[index]
            return DataMismatch(
                offset,
                f"data ends after {len(data)} bytes; the pattern expects {expected} next",
                index,
            )
        extra = len(data) - offset
        return DataMismatch(
            offset,
            f"{extra} unexpected byte{'s' if extra != 1 else ''} after the pattern,"
            f" from byte {offset} (end the pattern with * to allow more)",
        )


@attrs.frozen
class RegexPattern:
    """A regular expression over the data as upper-case hex without spaces.

    C{re.fullmatch} semantics: the expression must cover all the data.
    Two hex digits make one byte, so C{..} is one byte here.

    @ivar source: the expression as written.
    """

    source: str
    _compiled: re.Pattern[str] = attrs.field(eq=False, repr=False)

    @_compiled.default
    def _compile(self) -> re.Pattern[str]:
        return re.compile(self.source, re.IGNORECASE)

    def __str__(self) -> str:
        return f'regex "{self.source}"'

    def matches(self, data: bytes) -> bool:
        """Whether the hex of C{data} matches the whole expression."""
        return self._compiled.fullmatch(data.hex().upper()) is not None

    def mismatch(self, data: bytes) -> DataMismatch | None:
        """C{None} when C{data} matches, else a description."""
        if self.matches(data):
            return None
        return DataMismatch(0, f'the data (as hex) does not match the regex "{self.source}"')


DataExpectation = DataPattern | RegexPattern


# -- reading the patterns as a script writes them ----------------------------


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


def parse_expectation(line: Line, variables: Mapping[str, bytes]) -> Expectation:
    """What follows C{=>} or C{expect}: C{[SW|SW...] [data: PATTERN | regex: "RE"]}."""
    text = line.text
    i = skip_space(text, 0)
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
            i = skip_space(text, i)
            if i < len(text) and text[i] == "|":
                i = skip_space(text, i + 1)
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
            run, i = hex_run(line, i, _PATTERN_HEX)
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
            value, i = expand_reference(line, i, variables)
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


def _regex(line: Line) -> RegexPattern:
    source = quoted_text(line)
    try:
        return RegexPattern(source)
    except re.error as e:
        raise line.error(skip_space(line.text, 0), f"bad regex: {e}") from None
