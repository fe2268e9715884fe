# -*- test-case-name: tests.unit.web.portal.test_trace -*-
"""A session's APDU trace, decoded for the portal and exported as an C{.apdu} script.

Each traced exchange becomes a L{TraceRow}: the C-APDU split into its
header, data and Le (L{bipgw.codec.apdu.CommandApdu}), the R-APDU's data
and status word, and the status word's meaning
(L{bipgw.codec.apdu.describe_sw}).  L{apdu_script} writes the trace in
the script format C{bipgw replay} runs (docs/apdu-scripts.md): one
C-APDU per line with the status word the card answered as the
expectation, the response data as a comment.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from bipgw.codec import CodecError
from bipgw.codec.apdu import CommandApdu, describe_sw
from bipgw.core import ISD_COMMANDS
from bipgw.store import ApduTraceRecord, SessionRecord

__all__ = ["TraceRow", "apdu_script", "decode_trace"]

_INS_NAMES = {ins: name for name, found in ISD_COMMANDS.items() for ins in found}


def _spaced(data: bytes) -> str:
    return data.hex(" ").upper()


@attrs.frozen
class TraceRow:
    """One traced exchange, decoded."""

    script: int
    index: int
    capdu: str
    header: str
    instruction: str
    data: str
    le: str
    rapdu: str
    response_data: str
    sw: str
    meaning: str
    ok: bool
    outcome: str
    sent_at: float
    answered_at: float | None


def _row(trace: ApduTraceRecord) -> TraceRow:
    header = data = le = ""
    instruction = "?"
    try:
        command = CommandApdu.decode(trace.capdu)
    except (CodecError, ValueError):
        header = "(not a well-formed C-APDU)"
    else:
        header = f"{command.cla:02X} {command.ins:02X} {command.p1:02X} {command.p2:02X}"
        instruction = _INS_NAMES.get(command.ins, f"INS {command.ins:02X}")
        data = _spaced(command.data)
        le = "" if command.le is None else str(command.le)
    rapdu = trace.rapdu
    sw = meaning = response = ""
    ok = False
    if rapdu is not None and len(rapdu) >= 2:
        word = int.from_bytes(rapdu[-2:], "big")
        sw = f"{word:04X}"
        meaning = describe_sw(word)
        response = _spaced(rapdu[:-2])
        ok = word == 0x9000 or rapdu[-2] in (0x61, 0x91, 0x9F)
    elif rapdu is not None:
        meaning = "(response shorter than a status word)"
    return TraceRow(
        trace.script,
        trace.index,
        _spaced(trace.capdu),
        header,
        instruction,
        data,
        le,
        "" if rapdu is None else _spaced(rapdu),
        response,
        sw,
        meaning,
        ok,
        trace.outcome,
        trace.sent_at,
        trace.answered_at,
    )


def decode_trace(traces: Sequence[ApduTraceRecord]) -> list[TraceRow]:
    """The trace, decoded, in order."""
    return [_row(t) for t in traces]


def apdu_script(session: SessionRecord, traces: Sequence[ApduTraceRecord]) -> str:
    """The trace as an C{.apdu} script C{bipgw replay} accepts."""
    lines = [
        f"# APDU trace of session {session.session_id} exported by the bipgw portal",
        f"# card ICCID {session.iccid or '-'}, service {session.service}, state {session.state}",
        "",
    ]
    script = None
    for trace in traces:
        if trace.script != script:
            script = trace.script
            lines.append(f'step "script {script}"')
        capdu = _spaced(trace.capdu)
        try:
            CommandApdu.decode(trace.capdu)
        except (CodecError, ValueError):
            capdu = "raw " + capdu  # sent as it was, unchecked
        rapdu = trace.rapdu
        if rapdu is not None and len(rapdu) >= 2:
            lines.append(f"{capdu} => {rapdu[-2:].hex().upper()}")
            if len(rapdu) > 2:
                lines.append(f"# response data: {_spaced(rapdu[:-2])}")
        else:
            lines.append(f"{capdu}")
            lines.append(f"# no response recorded ({trace.outcome})")
    return "\n".join(lines) + "\n"
