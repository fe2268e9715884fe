"""TS 102 226 compact remote command format (SMS): concatenated APDUs.

The compact format has no TLV framing: the secured data is the commands one
after the other, in the form a terminal sends them over T=0 (ISO/IEC 7816-3
TPDUs).  Every command is then C{CLA INS P1 P2 P3} plus, for an incoming
command, C{P3} data bytes:

  - case 1 travels as C{P3 = 00};
  - case 2 (data out of the card) has C{P3 = Le} and no data;
  - case 3 has C{P3 = Lc} and the data;
  - case 4 travels as its case 3 part, the data fetched by an explicit
    GET RESPONSE (C{A0C0000016}, C{00C0000000}) that the script itself holds
    (PROTOCOLS.md 2.1).

So a compact script can only be split back into commands when one knows, per
instruction, whether C{P3} counts data that follows (Lc) or data expected
back (Le): that is L{is_outgoing_tpdu}, which knows the case-2 instructions
of TS 102 221 / TS 51.011 and GlobalPlatform, and may be replaced by the
caller.  L{encode_compact} checks every command against the same rule, so
what it encodes, L{split_compact} splits identically.  ISO 7816-4 APDUs that
are not TPDUs (a 4-byte case 1, a case 4 with a trailing Le, extended
lengths) are refused with an error naming the command.

The compact response (executed count, last SW, last data) is coded by the
OTA codec, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from bipgw.codec.ram._common import RamError
from bipgw.codec.tlv import MAX_SIZE

__all__ = ["encode_compact", "is_outgoing_tpdu", "split_compact"]

_OUTGOING_INS: Final = frozenset(
    (
        0xB0,  # READ BINARY
        0xB2,  # READ RECORD
        0xC0,  # GET RESPONSE
        0xCA,  # GET DATA (GlobalPlatform, TS 102 221)
        0x12,  # FETCH
        0x84,  # GET CHALLENGE
    )
)


def is_outgoing_tpdu(header: bytes) -> bool:
    """C{True} when C{P3} of a command with this C{CLA INS P1 P2} is Le.

    C{F2} is STATUS (case 2, P1 C{00}-C{02}) for TS 102 221 / TS 51.011 but
    GET STATUS (data in, P1 C{80}/C{40}/C{20}/C{10}) for GlobalPlatform;
    C{70} MANAGE CHANNEL returns the channel number only when opening
    (P1 C{00}).
    """
    ins = header[1]
    if ins in _OUTGOING_INS:
        return True
    if ins == 0xF2:
        return header[2] < 0x10
    if ins == 0x70:
        return header[2] == 0x00
    return False


def _tpdu_size(head: bytes | memoryview, outgoing: Callable[[bytes], bool]) -> int:
    return 5 if outgoing(bytes(head[:4])) else 5 + head[4]


def encode_compact(
    commands: Sequence[bytes], *, outgoing: Callable[[bytes], bool] = is_outgoing_tpdu
) -> bytes:
    """Concatenate C{commands} into compact secured data.

    @raise RamError: if a command is not a well-formed TPDU (see the module
        docstring); the error names the command's index.
    """
    for index, command in enumerate(commands):
        if type(command) is not bytes or len(command) < 5:
            raise RamError(
                "a compact-format command is CLA INS P1 P2 P3 [data]: at least 5 bytes",
                field=f"command {index}",
            )
        size = _tpdu_size(command, outgoing)
        if len(command) != size:
            kind = "Le (no data follows)" if size == 5 else f"Lc ({command[4]} data bytes)"
            raise RamError(
                f"P3 {command[4]:02X} is {kind}, so the command must be {size} bytes, "
                f"not {len(command)}",
                field=f"command {index}",
            )
    return b"".join(commands)


def split_compact(
    data: bytes,
    *,
    outgoing: Callable[[bytes], bool] = is_outgoing_tpdu,
    max_size: int = MAX_SIZE,
) -> tuple[bytes, ...]:
    """Split compact secured data back into its commands.

    @raise RamError: if the data ends inside a command or is too large.
    """
    data = bytes(data)
    if len(data) > max_size:
        raise RamError(f"{len(data)} bytes exceed the {max_size}-byte limit", offset=0)
    view = memoryview(data)
    commands: list[bytes] = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 5:
            raise RamError(
                f"{end - pos} bytes left, a command needs at least 5",
                field=f"command {len(commands)}",
                offset=pos,
            )
        size = _tpdu_size(view[pos : pos + 5], outgoing)
        if pos + size > end:
            raise RamError(
                f"P3 announces {size - 5} data bytes, only {end - pos - 5} remain",
                field=f"command {len(commands)}",
                offset=pos,
            )
        commands.append(data[pos : pos + size])
        pos += size
    return tuple(commands)
