# -*- test-case-name: tests.unit.client.test_script -*-
"""APDU scripts: the text format C{bipgw replay} runs, parsed into commands.

An operator keeps the APDUs of a routine job (list a card's applications,
install an applet, store a certificate) in a file that says what each
command should answer, and replays it against any card.  This module turns
such a file into a L{Script}: every C-APDU as bytes, with its expectation,
its step name and the place it was written.  docs/apdu-scripts.md is the
reference; in short::

    # comments start with # or //
    set AID = A0 00 00 01 51 00 00 00      # variables hold bytes
    include include/select-isd.apdu        # relative to this file
    step "read CPLC"                       # names the commands that follow
    80 CA 9F 7F 00 => 9000 data: 9F 7F 2A *
    00 A4 04 00 (${AID}) 00 => 9000|6283   # ( ) computes Lc
    expect data: 6F XX ..                  # or expectations on their own line

Everything is checked before anything is sent: an unknown variable, a bad
hex digit, an include cycle or a malformed C-APDU is a L{ScriptError}
naming the file, line and column, and nothing reaches the card.

Parsing is pure: files are read through the C{read} callable given to
L{parse_script} (L{load_script} passes one that reads the disk).

This module reads the statements (C{set}, C{include}, C{step}, C{batch},
C{raw}, C{expect}) and keeps the variables and the include stack; below
it, each concept in its own module, every call going downward:
L{bipgw.client._script_lines} cuts the text into logical lines that know
where each character was written, L{bipgw.client._script_values} reads the
hex, variables and C-APDUs on a line, L{bipgw.client._script_match} reads
and matches the expectations, and L{bipgw.client._script_model} holds the
L{Script} that results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import attrs

from bipgw.client._script_lines import Line, ScriptError, SourceLocation, logical_lines
from bipgw.client._script_match import Expectation, SwExpectation, parse_expectation
from bipgw.client._script_model import Command, Script
from bipgw.client._script_values import check_name, parse_apdu, parse_hex_value, parse_text

__all__ = [
    "MAX_COMMANDS",
    "MAX_INCLUDE_DEPTH",
    "MAX_SCRIPT_SIZE",
    "load_script",
    "parse_script",
    "parse_variable",
]

MAX_SCRIPT_SIZE: Final = 1 << 20
"""The largest script file read, in bytes (includes each count on their own)."""
MAX_INCLUDE_DEPTH: Final = 16
"""How deep includes may nest."""
MAX_COMMANDS: Final = 10_000
"""The most C-APDUs one script (with its includes) may hold."""

_DEFAULT_SW: Final = SwExpectation.exactly(0x9000)
_KEYWORDS: Final = frozenset({"set", "include", "step", "expect", "batch", "end", "raw"})


def parse_variable(assignment: str) -> tuple[str, bytes]:
    """Read a C{--var NAME=VALUE} option: a variable name and hex bytes.

    @raise ScriptError: not C{NAME=HEX} (the location is C{--var}).
    """
    where = SourceLocation("--var", 1, 1)
    name, sep, value = assignment.partition("=")
    name = name.strip()
    if not sep:
        raise ScriptError(where, f"{assignment!r} is not NAME=VALUE")
    try:
        check_name(name)
        return name, parse_hex_value(value, f"--var {name}")
    except ValueError as e:
        raise ScriptError(where, str(e)) from None


@attrs.define
class _Pending:
    """A command whose expectation may still be completed by C{expect} lines."""

    apdu: bytes
    location: SourceLocation
    source: str
    step: str | None
    batch: int | None
    raw: bool
    expectation: Expectation


class _Parser:
    """One parse: the shared variables, the command list and the include stack."""

    def __init__(self, read: Callable[[Path], str], variables: Mapping[str, bytes] | None) -> None:
        self.read = read
        self.fixed = dict(variables or {})
        self.variables: dict[str, bytes] = dict(self.fixed)
        self.commands: list[Command] = []
        self.files: list[str] = []
        self.stack: list[Path] = []
        self.batches = 0
        self.batch: int | None = None
        self.step: str | None = None

    def finish(self, pending: _Pending | None) -> None:
        if pending is None:
            return
        if len(self.commands) >= MAX_COMMANDS:
            raise ScriptError(pending.location, f"more than {MAX_COMMANDS} commands")
        exp = pending.expectation
        self.commands.append(
            Command(
                len(self.commands) + 1,
                pending.apdu,
                exp.sw if exp.sw is not None else _DEFAULT_SW,
                exp.data,
                pending.location,
                pending.source,
                pending.step,
                pending.batch,
                pending.raw,
            )
        )

    def run_file(self, text: str, name: str, path: Path | None) -> None:
        if path is not None:
            self.stack.append(path)
        if name not in self.files:
            self.files.append(name)
        pending: _Pending | None = None
        batch_line: Line | None = None
        for line in logical_lines(text, name):
            keyword = line.first_word().lower()
            if keyword not in _KEYWORDS:
                self.finish(pending)
                pending = self.command(line, raw=False)
                continue
            rest = line.after_word()
            if keyword == "raw":
                self.finish(pending)
                pending = self.command(rest, raw=True, whole=line)
            elif keyword == "expect":
                if pending is None:
                    raise line.error(
                        line.first_column(), "expect without a command before it in this file"
                    )
                exp = parse_expectation(rest, self.variables)
                pending.expectation = pending.expectation.merge(exp, rest)
            else:
                self.finish(pending)
                pending = None
                if keyword == "set":
                    self.assign(rest)
                elif keyword == "step":
                    self.step = parse_text(rest, self.variables) or None
                elif keyword == "include":
                    self.include(rest, path, name)
                elif keyword == "batch":
                    if self.batch is not None or rest.text.strip():
                        raise line.error(
                            line.first_column(), "batch takes nothing after it and does not nest"
                        )
                    self.batches += 1
                    self.batch = self.batches
                    batch_line = line
                else:  # end
                    if rest.text.strip().lower() not in ("", "batch"):
                        raise rest.error(
                            rest.first_column(), "only 'end' or 'end batch' closes a batch"
                        )
                    if batch_line is None:
                        raise line.error(line.first_column(), "end without a batch in this file")
                    self.batch, batch_line = None, None
        self.finish(pending)
        if batch_line is not None:
            raise batch_line.error(batch_line.first_column(), "batch is never closed with 'end'")
        if path is not None:
            self.stack.pop()

    def command(self, line: Line, *, raw: bool, whole: Line | None = None) -> _Pending:
        written = whole or line
        apdu_part, arrow, expect_part = line.split_arrow()
        apdu = parse_apdu(apdu_part, self.variables, raw=raw)
        expectation = Expectation()
        if arrow:
            expectation = parse_expectation(expect_part, self.variables)
        return _Pending(
            apdu,
            written.location(written.first_column()),
            " ".join(written.text.split()),
            self.step,
            self.batch,
            raw,
            expectation,
        )

    def assign(self, rest: Line) -> None:
        name_part, sep, value_part = rest.partition("=")
        if not sep:
            raise rest.error(rest.first_column(), "set needs NAME = VALUE")
        name = name_part.text.strip()
        try:
            check_name(name)
        except ValueError as e:
            raise name_part.error(name_part.first_column(), str(e)) from None
        value = parse_apdu(value_part, self.variables, raw=True, what="value")
        if name not in self.fixed:  # the command line wins
            self.variables[name] = value

    def include(self, rest: Line, here: Path | None, here_name: str) -> None:
        target = parse_text(rest, self.variables)
        at = rest.location(rest.first_column())
        if not target:
            raise ScriptError(at, "include needs a file name")
        base = here.parent if here is not None else Path.cwd()
        path = Path(os.path.normpath(base / target))
        if len(self.stack) >= MAX_INCLUDE_DEPTH:
            raise ScriptError(at, f"includes nest deeper than {MAX_INCLUDE_DEPTH}")
        if path in self.stack:
            chain = " -> ".join(str(p) for p in [*self.stack[self.stack.index(path) :], path])
            raise ScriptError(at, f"include cycle: {chain}")
        try:
            text = self.read(path)
        except ScriptError:
            raise
        except (OSError, UnicodeDecodeError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ScriptError(at, f"cannot include {str(path)!r}: {reason}") from None
        # Named as the user would write it from where they run: relative
        # to the including file's name, not resolved to an absolute path.
        shown = (
            target if os.path.isabs(target) else os.path.join(os.path.dirname(here_name), target)
        )
        saved_batch = self.batch
        self.run_file(text, os.path.normpath(shown), path)
        self.batch = saved_batch


def parse_script(
    text: str,
    *,
    name: str = "<script>",
    path: str | os.PathLike[str] | None = None,
    variables: Mapping[str, bytes] | None = None,
    read: Callable[[Path], str] | None = None,
) -> Script:
    """Parse a script's text.

    @param name: how errors and traces name the script.
    @param path: where the script lives, which C{include} paths are
        relative to (the current directory when C{None}).
    @param variables: values fixed from outside (C{--var}); the script's
        own C{set} of one of these names is ignored, so the command line
        always wins.
    @param read: reads an included file (its path resolved); by default
        the disk, with L{MAX_SCRIPT_SIZE} enforced.
    @raise ScriptError: anything wrong, named by file, line and column.
    """
    parser = _Parser(read or _read_file, variables)
    for var in parser.fixed:
        try:
            check_name(var)
        except ValueError as e:
            raise ScriptError(SourceLocation("--var", 1, 1), str(e)) from None
    here = Path(os.path.normpath(Path.cwd() / path)) if path is not None else None
    parser.run_file(text, name, here)
    return Script(name, tuple(parser.commands), dict(parser.variables), tuple(parser.files))


def load_script(
    path: str | os.PathLike[str], *, variables: Mapping[str, bytes] | None = None
) -> Script:
    """Read and parse the script file at C{path} (see L{parse_script}).

    @raise ScriptError: the file cannot be read, or anything in it is wrong.
    """
    name = os.fspath(path)
    try:
        text = _read_file(Path(name))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ScriptError(SourceLocation(name, 0, 0), f"cannot read the script: {reason}") from None
    return parse_script(text, name=name, path=name, variables=variables)


def _read_file(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_SCRIPT_SIZE + 1)
    if len(data) > MAX_SCRIPT_SIZE:
        raise ValueError(f"larger than {MAX_SCRIPT_SIZE} bytes")
    return data.decode("utf-8")
