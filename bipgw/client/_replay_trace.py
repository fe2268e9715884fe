# -*- test-case-name: tests.unit.client.test_replay -*-
"""Readable traces of a replay, and its JSON report.

The trace is for the person who has to understand what a card did: each
command's C-APDU cut into header, Lc, data and Le (the way specifications
draw them), the R-APDU data, the status word with its meaning
(L{bipgw.codec.apdu.describe_sw}), the time it took and a tick or a cross;
when data did not match, the expected pattern and the data are printed one
above the other with a caret under the first wrong byte.  The same facts,
complete and untruncated, are in L{report_json} for programs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from bipgw.client._replay import CommandOutcome, ReplayReport, Verdict
from bipgw.client._script_model import Command, Script
from bipgw.codec.apdu import CommandApdu, describe_sw

__all__ = ["TraceWriter", "format_capdu", "format_trace", "report_json"]

PASS_MARK: Final = "\u2713"
FAIL_MARK: Final = "\u2717"
_PER_LINE: Final = 16
_WINDOW: Final = 8
_INLINE: Final = 16
_INDENT: Final = "      "


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02X}" for b in data)


def _wrapped(data: bytes, limit: int | None, indent: str) -> str:
    """C{data} as spaced hex, C{_PER_LINE} bytes a line, cut after C{limit} bytes.

    Data at most one line longer than the limit is shown whole: cutting
    it would save less than the note saying so costs.
    """
    cut = limit is not None and len(data) > limit + _PER_LINE
    shown = data[:limit] if cut else data
    lines = [_hex(shown[i : i + _PER_LINE]) for i in range(0, len(shown), _PER_LINE)] or [""]
    text = ("\n" + indent).join(lines)
    if len(shown) < len(data):
        text += f" \u2026 (+{len(data) - len(shown)} bytes, {len(data)} in all)"
    return text


def format_capdu(apdu: bytes, limit: int | None = None, indent: str = _INDENT) -> str:
    """A C-APDU as C{CLA INS P1 P2 | Lc .. | data | Le ..}.

    Data longer than 16 bytes goes on the lines below, C{indent}ed.  A
    C{raw} command that does not decode is shown as plain hex.
    """
    try:
        c = CommandApdu.decode(apdu)
    except ValueError:
        return _wrapped(apdu, limit, indent) + "  (not a well-formed C-APDU)"
    parts = [_hex(apdu[:4])]
    tail = ""
    if c.data:
        n = len(c.data)
        lc = b"\x00" + n.to_bytes(2, "big") if c.extended else bytes((n,))
        parts.append(f"Lc {_hex(lc)}")
        if len(c.data) <= _INLINE:
            parts.append(_hex(c.data))
        else:
            parts.append(f"data ({n} bytes)")
            tail = f"\n{indent}{_wrapped(c.data, limit, indent)}"
    if c.le is not None:
        if c.extended:
            le = (c.le & 0xFFFF).to_bytes(2, "big")
            le = le if c.data else b"\x00" + le
        else:
            le = bytes((c.le & 0xFF,))
        parts.append(f"Le {_hex(le)}")
    return " | ".join(parts) + tail


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _diff(outcome: CommandOutcome, indent: str) -> list[str]:
    """The expected pattern above the data, a caret under the first wrong byte."""
    mismatch = outcome.data_mismatch
    data = outcome.data
    if mismatch is None or data is None or outcome.command.data is None:
        return []
    start = max(0, mismatch.offset - _WINDOW)
    window = data[start : mismatch.offset + _WINDOW]
    prefix = "\u2026 " if start else ""
    more = " \u2026" if start + len(window) < len(data) else ""
    got = prefix + (_hex(window) if window else "(no data)") + more
    lines = [
        f"{indent}expected  {outcome.command.data}",
        f"{indent}got       {got}",
    ]
    if mismatch.pattern_index is not None or mismatch.offset < len(data):
        column = len(prefix) + 3 * (mismatch.offset - start)
        lines.append(f"{indent}          {' ' * column}^^ byte {mismatch.offset}")
    return lines


class TraceWriter:
    """Writes a replay's trace as it goes: header, each outcome, summary.

    @param write: where the text goes (each call gets complete lines).
    @param limit: the most data bytes shown per APDU (C{None}: all).
    """

    def __init__(self, write: Callable[[str], object], *, limit: int | None = 64) -> None:
        self._write = write
        self._limit = limit
        self._step: str | None = None

    def header(self, script: Script, target: str) -> None:
        """Say what runs against what."""
        files = len(script.files)
        extra = f", {files - 1} included file{'s' if files > 2 else ''}" if files > 1 else ""
        self._write(
            f"replay {script.name}: {len(script.commands)} command"
            f"{'s' if len(script.commands) != 1 else ''}{extra}\n"
            f"target: {target}\n"
        )

    def outcome(self, outcome: CommandOutcome) -> None:
        """One command: what was sent, what came back, and the verdict."""
        c = outcome.command
        lines = [""]
        if c.step is not None and c.step != self._step:
            lines.append(f"== {c.step} ==")
        self._step = c.step
        batch = f"  [batch {c.batch}]" if c.batch is not None else ""
        where = f"{c.location.file}:{c.location.line}"
        lines.append(f"#{c.index}  {where}{batch}")
        lines.append(f"  >   {format_capdu(c.apdu, self._limit)}")
        if outcome.verdict is Verdict.NOT_RUN:
            lines.append("  -   not run (an earlier command failed)")
            self._write("\n".join(lines) + "\n")
            return
        data, sw = outcome.data, outcome.sw
        if data:
            lines.append(f"  <   {_wrapped(data, self._limit, _INDENT)}")
        if sw is not None:
            lines.append(f"  SW  {sw:04X}  {describe_sw(sw)}")
        expected = f"expected {c.sw}" + (f", data {c.data}" if c.data is not None else "")
        if outcome.verdict is Verdict.PASSED:
            lines.append(f"  {PASS_MARK}   {_ms(outcome.elapsed)}  {expected}")
        else:
            lines.append(f"  {FAIL_MARK}   {_ms(outcome.elapsed)}  {'; '.join(outcome.problems)}")
            lines.extend(_diff(outcome, _INDENT))
        self._write("\n".join(lines) + "\n")

    def summary(self, report: ReplayReport) -> None:
        """The verdict of the whole run, and each failure again, briefly."""
        total = len(report.outcomes)
        if report.passed:
            self._write(
                f"\n{PASS_MARK} PASSED: all {total} commands matched"
                f" in {_ms(report.elapsed)} ({report.script.name})\n"
            )
            return
        counts = (
            f"{report.count(Verdict.PASSED)} passed, {report.count(Verdict.FAILED)} failed,"
            f" {report.count(Verdict.NOT_RUN)} not run"
        )
        lines = [f"\n{FAIL_MARK} FAILED: {counts} of {total} commands in {_ms(report.elapsed)}"]
        if report.error is not None:
            lines.append(f"  {report.error}")
        for o in report.outcomes:
            if o.verdict is Verdict.FAILED:
                where = f"{o.command.location.file}:{o.command.location.line}"
                lines.append(f"  #{o.command.index} {where}: {'; '.join(o.problems)}")
        self._write("\n".join(lines) + "\n")


def format_trace(report: ReplayReport, *, limit: int | None = 64) -> str:
    """The whole trace of a finished replay as one text."""
    out: list[str] = []
    writer = TraceWriter(out.append, limit=limit)
    writer.header(report.script, report.target)
    for outcome in report.outcomes:
        writer.outcome(outcome)
    writer.summary(report)
    return "".join(out)


def _command_json(c: Command) -> dict[str, Any]:
    return {
        "index": c.index,
        "step": c.step,
        "location": str(c.location),
        "batch": c.batch,
        "capdu": c.apdu.hex().upper(),
        "expected_sw": str(c.sw),
        "expected_data": None if c.data is None else str(c.data),
    }


def report_json(report: ReplayReport) -> dict[str, Any]:
    """The report as a JSON-ready dict: every byte, every verdict, times in ms."""
    commands = []
    for o in report.outcomes:
        entry = _command_json(o.command)
        sw = o.sw
        entry.update(
            {
                "verdict": o.verdict.value,
                "rapdu": None if o.response is None else o.response.hex().upper(),
                "data": None if o.data is None else o.data.hex().upper(),
                "sw": None if sw is None else f"{sw:04X}",
                "sw_meaning": None if sw is None else describe_sw(sw),
                "elapsed_ms": None if o.elapsed is None else round(o.elapsed * 1000, 3),
                "problems": list(o.problems),
                "mismatch_offset": None if o.data_mismatch is None else o.data_mismatch.offset,
            }
        )
        commands.append(entry)
    return {
        "script": report.script.name,
        "files": list(report.script.files),
        "target": report.target,
        "passed": report.passed,
        "error": report.error,
        "elapsed_ms": round(report.elapsed * 1000, 3),
        "counts": {v.value: report.count(v) for v in Verdict},
        "commands": commands,
    }
