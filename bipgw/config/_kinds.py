# -*- test-case-name: tests.unit.config.test_values -*-
"""The kinds of plain values: text, numbers, choices, hex, lists, paths.

Each checks the TOML type strictly (a TOML boolean is not an integer, a
string is not a number), because a value of the wrong type is almost always
a misunderstanding the operator wants to hear about.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from constantly import NamedConstant
from twisted.logger import LogLevel

from bipgw.config._schema import (
    Context,
    HexInt,
    InvalidValueError,
    Kind,
    relative_text,
    resolve,
    shown,
    toml_literal,
)


@attrs.frozen
class Text:
    """A string, optionally restricted by length and a pattern."""

    min_length: int = 0
    max_length: int = 1024
    pattern: str | None = None
    what: str = "a string"

    @property
    def expected(self) -> str:
        if self.min_length == self.max_length:
            return f"{self.what}, {self.max_length} characters"
        return f"{self.what}, {self.min_length} to {self.max_length} characters"

    def parse(self, raw: object, ctx: Context) -> str:
        if not isinstance(raw, str):
            raise InvalidValueError()
        if not self.min_length <= len(raw) <= self.max_length:
            raise InvalidValueError(f"{len(raw)} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise InvalidValueError()
        return raw

    def dump(self, value: str, ctx: Context) -> object:
        return value


@attrs.frozen
class Integer:
    """A whole number in a range (TOML booleans are refused, though Python's are ints)."""

    minimum: int
    maximum: int
    hex: bool = False

    @property
    def expected(self) -> str:
        if self.hex:
            return f"an integer from 0x{self.minimum:02X} to 0x{self.maximum:02X}"
        return f"an integer from {self.minimum} to {self.maximum}"

    def parse(self, raw: object, ctx: Context) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidValueError()
        if not self.minimum <= raw <= self.maximum:
            raise InvalidValueError()
        return raw

    def dump(self, value: int, ctx: Context) -> object:
        return HexInt(value) if self.hex else value


@attrs.frozen
class IntegerIn:
    """A whole number from a fixed set of values (numbering plans...)."""

    values: tuple[int, ...]

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)

    def parse(self, raw: object, ctx: Context) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw not in self.values:
            raise InvalidValueError()
        return raw

    def dump(self, value: int, ctx: Context) -> object:
        return value


@attrs.frozen
class Number:
    """A finite number (integer or float in the file, always a float in the model).

    @ivar minimum: the lowest value allowed.
    @ivar inclusive: whether C{minimum} itself is allowed.
    @ivar unit: appended to the description (C{"seconds"}...).
    """

    minimum: float = 0.0
    inclusive: bool = False
    maximum: float = 1e9
    unit: str = ""

    @property
    def expected(self) -> str:
        low = f">= {self.minimum:g}" if self.inclusive else f"> {self.minimum:g}"
        unit = f" ({self.unit})" if self.unit else ""
        return f"a number {low} and <= {self.maximum:g}{unit}"

    def parse(self, raw: object, ctx: Context) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidValueError()
        value = float(raw)
        if not math.isfinite(value) or value > self.maximum:
            raise InvalidValueError()
        if value < self.minimum or (value == self.minimum and not self.inclusive):
            raise InvalidValueError()
        return value

    def dump(self, value: float, ctx: Context) -> object:
        return int(value) if value.is_integer() and abs(value) < 2**53 else value


@attrs.frozen
class Boolean:
    """C{true} or C{false} (not 0/1, not "yes")."""

    expected: ClassVar[str] = "true or false"

    def parse(self, raw: object, ctx: Context) -> bool:
        if not isinstance(raw, bool):
            raise InvalidValueError()
        return raw

    def dump(self, value: bool, ctx: Context) -> object:
        return value


@attrs.frozen
class Choice:
    """One of the values of a string enumeration."""

    enum_type: type[enum.Enum]

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(toml_literal(m.value) for m in self.enum_type)

    def parse(self, raw: object, ctx: Context) -> enum.Enum:
        for member in self.enum_type:
            if raw == member.value and isinstance(raw, str):
                return member
        raise InvalidValueError()

    def dump(self, value: enum.Enum, ctx: Context) -> object:
        return value.value


@attrs.frozen
class HexBytes:
    """Bytes written as hex digits (either case), of a fixed or bounded size."""

    min_length: int
    max_length: int

    @property
    def expected(self) -> str:
        if self.min_length == self.max_length:
            unit = "byte" if self.max_length == 1 else "bytes"
            return f"{2 * self.max_length} hex digits ({self.max_length} {unit})"
        return (
            f"an even number of hex digits, {2 * self.min_length} to {2 * self.max_length}"
            f" ({self.min_length} to {self.max_length} bytes)"
        )

    def parse(self, raw: object, ctx: Context) -> bytes:
        if not isinstance(raw, str) or not re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", raw):
            raise InvalidValueError()
        value = bytes.fromhex(raw)
        if not self.min_length <= len(value) <= self.max_length:
            raise InvalidValueError()
        return value

    def dump(self, value: bytes, ctx: Context) -> object:
        return value.hex().upper()


@attrs.frozen
class ListOf:
    """A list (a tuple in the model) whose items are all of one kind."""

    item: Kind
    min_items: int = 0
    max_items: int = 64

    @property
    def expected(self) -> str:
        return f"a list of {self.min_items} to {self.max_items} items, each {self.item.expected}"

    def parse(self, raw: object, ctx: Context) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise InvalidValueError()
        if not self.min_items <= len(raw) <= self.max_items:
            raise InvalidValueError(f"{len(raw)} items")
        items = []
        for index, value in enumerate(raw):
            try:
                items.append(self.item.parse(value, ctx))
            except InvalidValueError as e:
                detail = f" ({e.detail})" if e.detail else ""
                raise InvalidValueError(
                    f"item {index + 1} ({shown(value)}): expected {self.item.expected}{detail}",
                    complete=True,
                ) from None
        return tuple(items)

    def dump(self, value: Sequence[Any], ctx: Context) -> object:
        return [self.item.dump(v, ctx) for v in value]


@attrs.frozen
class FilePath:
    """A file or directory path; a relative one is relative to the config file."""

    expected: ClassVar[str] = "a path (relative paths start at the configuration file's directory)"

    def parse(self, raw: object, ctx: Context) -> Path:
        if not isinstance(raw, str) or not raw or "\0" in raw:
            raise InvalidValueError()
        return resolve(ctx.base_dir, raw)

    def dump(self, value: Path, ctx: Context) -> object:
        return relative_text(ctx.base_dir, value)


@attrs.frozen
class LogLevelKind:
    """A twisted.logger level name."""

    expected: ClassVar[str] = 'one of "debug", "info", "warn", "error", "critical"'

    def parse(self, raw: object, ctx: Context) -> NamedConstant:
        if not isinstance(raw, str):
            raise InvalidValueError()
        try:
            return LogLevel.levelWithName(raw)
        except Exception:
            raise InvalidValueError() from None

    def dump(self, value: NamedConstant, ctx: Context) -> object:
        return value.name


@attrs.frozen
class Parsed:
    """A value checked by a codec's own parser (SPI, KIc...).

    @ivar base: the kind of the raw text (e.g. L{HexBytes}).
    @ivar convert: builds the value from what C{base} parsed; any
        C{ValueError} it raises becomes the detail of the message.
    @ivar unconvert: the inverse, back to what C{base} dumps.
    """

    base: Kind
    convert: Callable[[Any], Any]
    unconvert: Callable[[Any], Any]
    what: str = ""

    @property
    def expected(self) -> str:
        return f"{self.base.expected}{', ' + self.what if self.what else ''}"

    def parse(self, raw: object, ctx: Context) -> Any:
        value = self.base.parse(raw, ctx)
        try:
            return self.convert(value)
        except ValueError as e:
            raise InvalidValueError(str(e)) from None

    def dump(self, value: Any, ctx: Context) -> object:
        return self.base.dump(self.unconvert(value), ctx)


#: A duration in seconds: any positive number.
SECONDS = Number(unit="seconds")
