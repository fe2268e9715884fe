# -*- test-case-name: tests.unit.codec.test_ram_remote -*-
"""Remote APDUs over SMS-PP: the secured data of a command packet and of its PoR.

A script sent over SMS (TS 102 226 section 5, inside a TS 102 225 secured
packet) takes one of two forms, and its answer comes back in the PoR's
response data in the matching form:

  - B{compact} (section 5.1): the C-APDUs concatenated as TPDUs
    (L{encode_compact}); the PoR data is C{n(1) SW(2) data}: how many
    commands ran, the last one's status word and response data.  The
    R-APDUs of the earlier commands do not come back.
  - B{expanded} (section 5.2): a Command Scripting template C{AA L} (the
    definite form: over SMS the length is known before sending) holding
    C{22 L C-APDU} TLVs; the PoR data is a Response Scripting template
    C{AB L {80 01 n} {23 L R-APDU}...} (or C{AF 80 .. 00 00}), with every
    executed command's R-APDU.

How a receiver tells the two apart is not settled in the texts we hold
(PROTOCOLS.md 7, point 7: the TAR ranges of TS 101 220 Annex D are
UNVERIFIED).  We read the first byte of the secured data: a template tag
C{AA}/C{AE} is the expanded format, anything else a compact script.  No
command class byte is C{AA} or C{AE} in the interindustry (C{0x}) or GP
(C{8x}) ranges, so the rule is unambiguous for every command a card here
runs.

Sans-IO: bytes in, values out; every failure is a L{RamError}.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from bipgw.codec.ram._common import RamError
from bipgw.codec.ram._compact import encode_compact, split_compact
from bipgw.codec.ram._responses import ResponseScript
from bipgw.codec.ram._scripts import CommandScript
from bipgw.codec.ram._template import MAX_APDU

__all__ = [
    "RemoteFormat",
    "RemoteResult",
    "RemoteScript",
]

_EXPANDED_TAGS: Final = frozenset({0xAA, 0xAE})


def _apdus(value: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(value)


class RemoteFormat(enum.Enum):
    """The TS 102 226 remote command format of a script sent over SMS."""

    COMPACT = "compact"
    """Concatenated C-APDUs; only the last R-APDU comes back."""
    EXPANDED = "expanded"
    """BER-TLV templates; every executed command's R-APDU comes back."""


def _check_commands(_: object, __: object, value: tuple[bytes, ...]) -> None:
    if not value:
        raise RamError("a script needs at least one C-APDU", field="remote script")
    for index, command in enumerate(value):
        if type(command) is not bytes or not 4 <= len(command) <= MAX_APDU:
            raise RamError(
                f"a C-APDU is 4..{MAX_APDU} bytes", field=f"remote script: command {index}"
            )


@attrs.frozen
class RemoteScript:
    """The C-APDUs of one command packet, and the form they travel in.

    @ivar commands: the C-APDUs, in order.
    @ivar format: compact or expanded.
    """

    commands: tuple[bytes, ...] = attrs.field(converter=_apdus, validator=_check_commands)
    format: RemoteFormat = attrs.field(validator=attrs.validators.instance_of(RemoteFormat))

    def encode(self) -> bytes:
        """The secured data of the command packet.

        @raise RamError: a command that the compact form cannot carry (an
            ISO 7816-4 case 4 APDU with Le, an extended length; the error
            names it), or an expanded script too large for a template.
        """
        if self.format is RemoteFormat.COMPACT:
            return encode_compact(self.commands)
        return CommandScript(self.commands, definite=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> RemoteScript:
        """Read the secured data of a command packet (as a card does).

        @raise RamError: malformed data in either format.
        """
        data = bytes(data)
        if not data:
            raise RamError("no secured data", field="remote script", offset=0)
        if data[0] in _EXPANDED_TAGS:
            script = CommandScript.decode(data)
            return cls(script.commands, RemoteFormat.EXPANDED)
        return cls(split_compact(data), RemoteFormat.COMPACT)


def _check_responses(_: object, __: object, value: tuple[bytes, ...]) -> None:
    for index, response in enumerate(value):
        if type(response) is not bytes or not 2 <= len(response) <= MAX_APDU:
            raise RamError(
                f"an R-APDU is 2..{MAX_APDU} bytes (data, SW1 SW2)",
                field=f"remote result: response {index}",
            )


def _check_executed(_: object, __: object, value: int) -> None:
    if type(value) is not int or not 0 <= value <= 0xFF:
        raise RamError(f"the executed count is 0..255, not {value!r}", field="remote result")


@attrs.frozen
class RemoteResult:
    """What a card answers to a L{RemoteScript}, from the PoR's response data.

    @ivar format: the form of the script it answers.
    @ivar executed: how many commands ran (the card stops at the first failure).
    @ivar responses: in the expanded form, one R-APDU per executed command;
        in the compact form, only the last executed command's R-APDU (none
        when no command ran).
    @ivar rejected: in the expanded form, the card's "bad format" code
        (C{90 01 xx}) when it could not parse the script, else C{None}.
    """

    format: RemoteFormat = attrs.field(validator=attrs.validators.instance_of(RemoteFormat))
    executed: int = attrs.field(validator=_check_executed)
    responses: tuple[bytes, ...] = attrs.field(converter=_apdus, validator=_check_responses)
    rejected: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.format is RemoteFormat.COMPACT:
            if len(self.responses) != 1:
                raise RamError(
                    "a compact result carries exactly one R-APDU (the last one's)",
                    field="remote result",
                )
            if self.rejected is not None:
                raise RamError("the compact form has no bad-format code", field="remote result")

    @property
    def last_sw(self) -> int | None:
        """The status word of the last R-APDU, if there is one."""
        if not self.responses:
            return None
        last = self.responses[-1]
        return (last[-2] << 8) | last[-1]

    def encode(self) -> bytes:
        """The PoR's response data (as a card builds it)."""
        if self.format is RemoteFormat.COMPACT:
            last = self.responses[0]
            return bytes((self.executed,)) + last[-2:] + last[:-2]
        return ResponseScript(
            self.responses, self.executed, True, bad_format=self.rejected
        ).encode()

    @classmethod
    def decode(cls, data: bytes, format: RemoteFormat, *, sent: int | None = None) -> RemoteResult:
        """Read a PoR's response data for a script sent in C{format}.

        @param sent: how many C-APDUs the script had, to refuse an answer
            that claims more (a PoR for another script, or a broken card).
        @raise RamError: malformed data, a count above C{sent}, or more
            R-APDUs than the count says ran.
        """
        data = bytes(data)
        if format is RemoteFormat.COMPACT:
            if len(data) < 3:
                raise RamError(
                    f"{len(data)} bytes; a compact result is count(1) SW(2) [data]",
                    field="remote result",
                    offset=0,
                )
            result = cls(format, data[0], (data[3:] + data[1:3],))
        else:
            script = ResponseScript.decode(data)
            executed = len(script.responses) if script.executed is None else script.executed
            if len(script.responses) > executed:
                raise RamError(
                    f"{len(script.responses)} R-APDUs for {executed} executed commands",
                    field="remote result",
                )
            bad = None if script.bad_format is None else int(script.bad_format)
            result = cls(format, executed, script.responses, bad)
        if sent is not None and result.executed > sent:
            raise RamError(
                f"says {result.executed} commands ran; the script had {sent}",
                field="remote result",
            )
        return result

    @classmethod
    def for_commands(
        cls, format: RemoteFormat, responses: Sequence[bytes], *, rejected: int | None = None
    ) -> RemoteResult:
        """The result a card reports after running commands that answered C{responses}.

        @param responses: the R-APDU of every command that ran, in order.
        """
        responses = tuple(responses)
        if format is RemoteFormat.COMPACT:
            if not responses:
                raise RamError("a compact result needs the last R-APDU", field="remote result")
            return cls(format, len(responses), responses[-1:])
        return cls(format, len(responses), responses, rejected)
