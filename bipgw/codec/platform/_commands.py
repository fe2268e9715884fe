# -*- test-case-name: tests.unit.codec.test_platform_messages -*-
"""The command exchange: the platform's L{Command}, the gateway's L{Result}.

One pair per relayed command, the channel's hot path: each class checks
its usual form with the checks written inline (issue 14) and falls back to
the generic reading (L{bipgw.codec.platform._base}), which names the field
that is wrong, for anything else.  See C{docs/platform-channel.md}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

import attrs

from bipgw.codec.apdu import ApduError, decode_command, describe_sw
from bipgw.codec.platform._base import _Message
from bipgw.codec.platform._fields import (
    HEX,
    MAX_APDUS,
    MAX_TEXT,
    REQUEST_ID,
    SESSION,
    MessageError,
    check_capdus,
    check_script,
    each,
    id_field,
    is_aid,
    is_count,
    is_text,
    json_field,
    read_bool,
    read_hex,
    read_hexes,
    read_int,
    read_strs,
    session_field,
)
from bipgw.codec.ram import MAX_APDU, CommandScript

__all__ = ["Command", "Result"]


@attrs.frozen(kw_only=True)
class Command(_Message):
    """Platform → gateway: run C-APDUs on the card as one script.

    Either C{apdus} (complete C-APDUs) or C{script} (an expanded command
    script, C{AA} or C{AE}, whose form then decides the length coding).
    Answered by L{Result} or C{error}, with the same C{id}.

    @ivar definite: send the script with a definite length (C{AA}).
    @ivar target: the AID (5-16 bytes) of the application the card runs
        this script in (C{X-Admin-Targeted-Application}); absent: the
        session's C{target}, or the security domain running the session.
    """

    TYPE: ClassVar[str] = "command"
    session: str = session_field()
    id: str = id_field()
    apdus: tuple[bytes, ...] | None = json_field(
        "", None, read_hexes, optional=True, validator=check_capdus
    )
    script: bytes | None = json_field("", None, read_hex, optional=True, validator=check_script)
    definite: bool | None = json_field(
        "true or false", lambda v: type(v) is bool, read_bool, optional=True
    )
    target: bytes | None = json_field("an AID (5-16 bytes)", is_aid, read_hex, optional=True)

    def __attrs_post_init__(self) -> None:
        if (self.apdus is None) == (self.script is None):
            raise MessageError("give exactly one of apdus and script", field="command.apdus")
        if self.script is not None and self.definite is not None:
            raise MessageError("a script's own form (AA or AE) decides", field="command.definite")

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Command:
        """Read a command; the usual form (C{session}, C{id}, C{apdus}) with its
        checks written inline (one per relayed command, issue 14), anything
        else (and anything they refuse) the generic way, which names the
        field that is wrong."""
        fast = _plain_command(obj)
        if fast is not None:
            return fast
        command: Command = super().from_json(obj)
        return command

    @property
    def capdus(self) -> tuple[bytes, ...]:
        """The C-APDUs to run, from C{apdus} or out of C{script}."""
        if self.script is not None:
            return CommandScript.decode(self.script).commands
        assert self.apdus is not None
        return self.apdus

    @property
    def definite_length(self) -> bool | None:
        """Whether the card gets a definite-length (C{AA}) script; C{None}
        when the platform did not say (the service's C{definite_scripts} decides)."""
        return self.script[0] == 0xAA if self.script is not None else self.definite


_PLAIN_COMMAND: Final = frozenset({"session", "id", "apdus"})


def _plain_command(obj: Mapping[str, object]) -> Command | None:
    """C{obj} as a L{Command} if it is exactly C{{type?, session, id, apdus}}
    and every check the class makes passes; else C{None}."""
    keys = obj.keys()
    if len(keys) == 4:
        if obj.get("type") != "command":
            return None
    elif len(keys) != 3:
        return None
    if not keys >= _PLAIN_COMMAND:
        return None
    session, rid, hexes = obj["session"], obj["id"], obj["apdus"]
    if not (
        type(session) is str
        and SESSION.match(session) is not None
        and type(rid) is str
        and REQUEST_ID.match(rid) is not None
        and type(hexes) is list
        and 1 <= len(hexes) <= MAX_APDUS
    ):
        return None
    apdus = []
    for text in hexes:
        if type(text) is not str or HEX.match(text) is None:
            return None
        raw = bytes.fromhex(text)
        try:
            decode_command(raw)
        except ApduError:
            return None
        apdus.append(raw)
    command: Command = object.__new__(Command)
    put = object.__setattr__
    put(command, "session", session)
    put(command, "id", rid)
    put(command, "apdus", tuple(apdus))
    put(command, "script", None)
    put(command, "definite", None)
    put(command, "target", None)
    return command


def _meanings(result: Result) -> tuple[str, ...]:
    return tuple(describe_sw(sw) for sw in result.status_words)


@attrs.frozen(kw_only=True)
class Result(_Message):
    """Gateway → platform: the card's answer to command C{id}.

    The card stops at the first C-APDU whose status word is an error (TS
    102 226), so C{rapdus} may be shorter than the command (C{complete} is
    then false).  In JSON, C{sw} lists each R-APDU's status word in hex and
    C{meanings} says them in words (L{bipgw.codec.apdu.describe_sw}).

    @ivar executed: the number of executed commands the card reported.
    @ivar elapsed_ms: from handing the script to the card to its answer.
    """

    TYPE: ClassVar[str] = "result"
    session: str = session_field()
    id: str = id_field()
    rapdus: tuple[bytes, ...] = json_field(
        "",
        None,
        read_hexes,
        validator=each(
            f"an R-APDU (2..{MAX_APDU} bytes)",
            lambda v: isinstance(v, bytes) and 2 <= len(v) <= MAX_APDU,
        ),
    )
    executed: int = json_field("a whole number", is_count, read_int)
    elapsed_ms: int = json_field("a whole number", is_count, read_int)
    complete: bool = json_field("true or false", lambda v: type(v) is bool, read_bool, default=True)
    meanings: tuple[str, ...] = json_field(
        "",
        None,
        read_strs,
        default=attrs.Factory(_meanings, takes_self=True),
        validator=each(f"text of at most {MAX_TEXT} characters", is_text),
    )

    @classmethod
    def relayed(
        cls,
        *,
        session: str,
        id: str,
        rapdus: tuple[bytes, ...],
        executed: int,
        elapsed_ms: int,
        complete: bool,
    ) -> Result:
        """The result the gateway sends for each relayed command.

        The same value, under the same checks, as the class builds, the
        checks written inline (attrs' validator round cost as much as the
        rest of answering a command, issue 14); anything they do not pass
        goes through the class, which raises its usual error.
        """
        if not (
            type(session) is str
            and SESSION.match(session) is not None
            and type(id) is str
            and REQUEST_ID.match(id) is not None
            and type(rapdus) is tuple
            and len(rapdus) <= MAX_APDUS
            and all(type(r) is bytes and 2 <= len(r) <= MAX_APDU for r in rapdus)
            and is_count(executed)
            and is_count(elapsed_ms)
            and type(complete) is bool
        ):
            return cls(
                session=session,
                id=id,
                rapdus=rapdus,
                executed=executed,
                elapsed_ms=elapsed_ms,
                complete=complete,
            )
        result: Result = object.__new__(cls)
        put = object.__setattr__
        put(result, "session", session)
        put(result, "id", id)
        put(result, "rapdus", rapdus)
        put(result, "executed", executed)
        put(result, "elapsed_ms", elapsed_ms)
        put(result, "complete", complete)
        put(result, "meanings", tuple(describe_sw((r[-2] << 8) | r[-1]) for r in rapdus))
        return result

    @property
    def status_words(self) -> tuple[int, ...]:
        """Each R-APDU's status word, C{SW1 << 8 | SW2}."""
        return tuple((r[-2] << 8) | r[-1] for r in self.rapdus)

    @property
    def sw(self) -> int | None:
        """The last status word (the one that ended the script), if any."""
        return self.status_words[-1] if self.rapdus else None

    def data(self, index: int = -1) -> bytes:
        """The response data of R-APDU C{index} (the last by default)."""
        return self.rapdus[index][:-2]

    def to_json(self) -> dict[str, object]:
        """The result as JSON, with C{sw} added.

        Written out rather than through the generic loop: one per relayed
        command; the same keys in the same order (no field can be C{None}).
        """
        rapdus = self.rapdus
        return {
            "type": "result",
            "session": self.session,
            "id": self.id,
            "rapdus": [r.hex().upper() for r in rapdus],
            "executed": self.executed,
            "elapsed_ms": self.elapsed_ms,
            "complete": self.complete,
            "meanings": list(self.meanings),
            "sw": [r[-2:].hex().upper() for r in rapdus],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Result:
        """Read a result; C{sw} must agree with the R-APDUs, one meaning each."""
        result: Result = super().from_json({k: v for k, v in obj.items() if k != "sw"})
        if "sw" not in obj:
            raise MessageError("missing", field="result.sw")
        sws = read_strs(obj["sw"], "result.sw")
        if [s.upper() for s in sws] != [f"{sw:04X}" for sw in result.status_words]:
            raise MessageError("does not match the R-APDUs' status words", field="result.sw")
        if len(result.meanings) != len(result.rapdus):
            raise MessageError("needs one meaning per R-APDU", field="result.meanings")
        return result
