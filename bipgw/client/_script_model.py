# -*- test-case-name: tests.unit.client.test_script,tests.unit.client.test_replay -*-
"""A parsed APDU script: its commands, each with what it must answer.

This is what the reader (L{bipgw.client._script}) makes of a script file
and what a replay (L{bipgw.client._replay}) runs: plain frozen values, so a
replay needs nothing of the text format.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from bipgw.client._script_lines import SourceLocation
from bipgw.client._script_match import DataExpectation, SwExpectation
from bipgw.codec.apdu import CommandApdu

__all__ = ["Command", "Script"]


@attrs.frozen
class Command:
    """One C-APDU of a script, ready to send.

    @ivar index: its number in the script, from 1, includes counted.
    @ivar apdu: the bytes to send.
    @ivar sw: the status words it may answer (default C{9000}).
    @ivar data: what its response data must look like, or C{None} for any.
    @ivar location: where it was written.
    @ivar source: the line as written (comments removed), for the trace.
    @ivar step: the name of the step it belongs to, if any.
    @ivar batch: the number of the C{batch} block it is in, if any;
        commands of one block are sent to the card together.
    @ivar raw: written after C{raw}: sent as is, even if it is not a
        well-formed C-APDU (to test how a card refuses bad input).
    """

    index: int
    apdu: bytes = attrs.field(repr=lambda b: b.hex().upper())
    sw: SwExpectation
    data: DataExpectation | None
    location: SourceLocation
    source: str
    step: str | None = None
    batch: int | None = None
    raw: bool = False

    @property
    def command_apdu(self) -> CommandApdu | None:
        """The decoded C-APDU, or C{None} for a malformed C{raw} one."""
        try:
            return CommandApdu.decode(self.apdu)
        except ValueError:
            return None


@attrs.frozen
class Script:
    """A parsed script: its commands, in order, includes expanded.

    @ivar name: the file name given (or C{<script>}).
    @ivar commands: the C-APDUs with their expectations.
    @ivar variables: every variable's final value (for the C{--json} report).
    @ivar files: the script and every file it included, in reading order
        (each once).
    """

    name: str
    commands: tuple[Command, ...]
    variables: Mapping[str, bytes] = attrs.field(repr=False)
    files: tuple[str, ...] = ()
