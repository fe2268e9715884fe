"""TS 102 226 expanded remote command and response scripts (BER-TLV).

SCP81 (HTTP) always carries the expanded format, so these two codecs sit on
the path of every APDU a platform sends to a card.  Layout (PROTOCOLS.md 2.2,
2.3):

  - command script: C{AA L} (definite) or C{AE 80 .. 00 00} (indefinite)
    holding an optional Script Chaining TLV C{83 01 xx}, optional Immediate
    Action C{81} and Error Action C{82} TLVs, then one C{22 L C-APDU} per
    command;
  - response script: C{AB L} whose first TLV is C{80 L n} (the number of
    executed command TLVs), or C{AF 80 .. 00 00} (no C{80}), holding optional
    C{83 01 xx} (script chaining response) and C{81 xx} (immediate action
    response), one C{23 L R-APDU} per answer (data then SW1 SW2), and last,
    on a format error, C{90 01 xx} (bad format).

Choices, documented because the specification leaves room:
  - Values are whole APDUs; lengths use the minimal BER form, and so the long
    form (C{22 81 xx}) from 128 bytes on: a real card misparsed anything else.
  - Encoding puts the optional TLVs in the order above.  Decoding accepts
    only that order (chaining first, immediate/error action before the first
    C-APDU, bad format last), because their position changes what a card does
    and the value types here could not represent another order faithfully.
  - An unknown tag is an error (L{RamError} naming tag and offset), never
    silently dropped: a card would answer "bad format, unknown tag" too.
  - The CR-flagged forms C{A2}/C{A3} of the C-APDU/R-APDU tags are accepted
    on decode (TS 101 220 COMPREHENSION-TLV tags) and re-encoded as C{22}/C{23}.
  - The values of Immediate Action, Error Action and Immediate Action
    Response are kept as raw bytes: their coding is UNVERIFIED.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from bipgw.codec.ram._common import RamError
from bipgw.codec.ram._template import (
    TAG_C_APDU,
    TAG_CHAINING,
    TAG_COMMAND_DEFINITE,
    TAG_COMMAND_INDEFINITE,
    TAG_ERROR_ACTION,
    TAG_IMMEDIATE_ACTION,
    all_items,
    apdu_value,
    check_first,
    check_items,
    check_once_before,
    fast_items,
    one_byte_in,
    optional_bytes,
    read_header,
    unknown_tag,
)
from bipgw.codec.tlv import MAX_SIZE, encode_ber, encode_length

__all__ = ["CommandScript", "ScriptChaining"]

# Tag and length of every C-APDU shorter than 256 bytes, built once: the
# encoder then only joins ready-made pieces.
_C_HEADERS: Final = tuple(b"\x22" + encode_length(n) for n in range(256))


class ScriptChaining(enum.IntEnum):
    """Value of the Script Chaining TLV C{83 01 xx} of a command script."""

    FIRST_DELETE_ON_RESET = 0x01
    """First script; the card forgets the chaining state on reset."""
    FIRST_KEEP_ON_RESET = 0x11
    """First script; the chaining state survives a reset."""
    SUBSEQUENT = 0x02
    """A later script, with more to follow."""
    LAST = 0x03
    """The last script of the chain."""


_CHAINING_VALUES: Final = frozenset(ScriptChaining)


def _to_chaining(value: int | None) -> ScriptChaining | None:
    if value is None:
        return None
    try:
        return ScriptChaining(value)
    except ValueError:
        raise RamError(f"unknown script chaining value {value!r}", field="chaining") from None


@attrs.frozen
class CommandScript:
    """An expanded remote command script (C{AA} / C{AE}).

    @ivar commands: the C-APDUs in order, each a complete APDU
        (header, Lc, data, Le as the case needs).
    @ivar definite: C{True} for C{AA} with a definite length, C{False} for
        C{AE 80 .. 00 00} (what SCP81 servers usually send).
    @ivar chaining: the Script Chaining TLV, when scripts are chained.
    @ivar immediate_action: raw value of the Immediate Action TLV C{81}.
    @ivar error_action: raw value of the Error Action TLV C{82}.
    """

    commands: tuple[bytes, ...] = attrs.field(validator=check_items(4, "C-APDU"))
    definite: bool
    chaining: ScriptChaining | None = attrs.field(default=None, converter=_to_chaining)
    immediate_action: bytes | None = attrs.field(default=None, validator=optional_bytes)
    error_action: bytes | None = attrs.field(default=None, validator=optional_bytes)

    def encode(self) -> bytes:
        """The script template, ready for an HTTP body or a secured packet."""
        parts: list[bytes] = []
        append = parts.append
        if self.chaining is not None:
            append(bytes((TAG_CHAINING, 1, self.chaining)))
        if self.immediate_action is not None:
            append(encode_ber(TAG_IMMEDIATE_ACTION, self.immediate_action))
        if self.error_action is not None:
            append(encode_ber(TAG_ERROR_ACTION, self.error_action))
        headers = _C_HEADERS
        for command in self.commands:
            size = len(command)
            append(headers[size] if size < 256 else b"\x22" + encode_length(size))
            append(command)
        body = b"".join(parts)
        if self.definite:
            return b"\xaa" + encode_length(len(body)) + body
        return b"\xae\x80" + body + b"\x00\x00"

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = MAX_SIZE) -> CommandScript:
        """Decode an C{AA} or C{AE} command script.

        @raise RamError: for malformed input, an unknown tag, or optional TLVs
            out of the order described in the module docstring.
        """
        what = "command script"
        data, first, definite = read_header(
            data, TAG_COMMAND_DEFINITE, TAG_COMMAND_INDEFINITE, what, max_size
        )
        fast = fast_items(data, first, definite, TAG_C_APDU, 4)
        if fast is not None:
            return cls(tuple(fast), definite)
        items = all_items(data, first, definite, what)
        commands: list[bytes] = []
        append = commands.append
        chaining: int | None = None
        immediate: bytes | None = None
        error: bytes | None = None
        for index, span in enumerate(items):
            tag, where, start, end, _ = span
            if tag == TAG_C_APDU or tag == 0xA2:
                append(
                    apdu_value(data, span, 4, f"{what}: C-APDU {len(commands)}", noun="a C-APDU")
                )
            elif tag == TAG_CHAINING:
                check_first(index, "script chaining", tag, where, what)
                chaining = one_byte_in(
                    data,
                    span,
                    f"{what}: script chaining",
                    _CHAINING_VALUES,
                    "script chaining value",
                )
            elif tag in (TAG_IMMEDIATE_ACTION, TAG_ERROR_ACTION):
                name = "immediate action" if tag == TAG_IMMEDIATE_ACTION else "error action"
                seen = immediate if tag == TAG_IMMEDIATE_ACTION else error
                check_once_before(commands, seen, name, "C-APDU", tag, where, what)
                if tag == TAG_IMMEDIATE_ACTION:
                    immediate = data[start:end]
                else:
                    error = data[start:end]
            else:
                raise unknown_tag(tag, where, what)
        return cls(tuple(commands), definite, chaining, immediate, error)
