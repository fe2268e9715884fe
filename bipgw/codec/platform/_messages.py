# -*- test-case-name: tests.unit.codec.test_platform_messages -*-
"""The platform channel's message set: one frozen value per message type.

A frame (L{bipgw.codec.platform._frames}) carries one JSON object; its C{"type"} names
the message and the other keys are the fields below.  Each class turns a
decoded object into typed values (C{from_json}: hex to bytes, arrays to
tuples) and back (C{to_json}), and its validators check every field, also
when a value is built in Python, so a platform's mistake is answered with an
error naming the field (C{open.msisdn}, C{command.apdus[2]}) instead of
coming back later as a card's status word.

The same classes serve the Python SDK (L{bipgw.client}), so the two ends
cannot disagree about the format.  Like a codec, this module does no I/O
and imports only L{bipgw.codec} and C{attrs}.

Rules common to every message:
  - unknown fields are refused, so a misspelt optional field never goes
    unnoticed; an optional field may be absent or C{null};
  - correlation ids (C{id}) are chosen by the sender: 1 to 64 printable
    ASCII characters, no spaces;
  - binary values (APDUs, AIDs) are hex strings, either case, no spaces;
    the gateway writes upper case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final, TypeAlias, cast

import attrs

from bipgw.codec.apdu import ApduError, decode_command, describe_sw
from bipgw.codec.platform._base import Timeouts, _Message, read_timeouts
from bipgw.codec.platform._fields import (
    CODE,
    HEX,
    ICCID,
    LABEL,
    MAX_APDUS,
    MAX_TEXT,
    MSISDN,
    NAME,
    REQUEST_ID,
    SESSION,
    TOKEN,
    MessageError,
    UnknownTypeError,
    check_capdus,
    check_script,
    each,
    id_field,
    is_aid,
    is_count,
    is_text,
    json_field,
    json_kind,
    matching,
    read_bool,
    read_hex,
    read_hexes,
    read_int,
    read_number,
    read_strs,
    seconds_up_to,
    session_field,
    text_field,
)
from bipgw.codec.platform._offers import Offer, Take
from bipgw.codec.ram import MAX_APDU, CommandScript

PROTOCOL_VERSION: Final = 1
"""The version C{auth_ok} announces; raised on an incompatible change."""


# -- the messages -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Hello(_Message):
    """Platform → gateway, first: authenticate with a token, or with the TLS
    client certificate when C{token} is absent.  Answered by L{AuthOk}, or
    C{error} C{auth-failed} after which the gateway closes the connection.

    @ivar client: free text naming the platform software, for the logs.
    """

    TYPE: ClassVar[str] = "hello"
    id: str | None = id_field(optional=True)
    token: str | None = json_field(
        "a token (1-512 printable ASCII)", matching(TOKEN), optional=True, secret=True
    )
    client: str | None = json_field("1-128 characters of text", matching(LABEL), optional=True)


@attrs.frozen(kw_only=True)
class AuthOk(_Message):
    """Gateway → platform: authenticated as C{tenant}.

    @ivar heartbeat: the gateway pings after this many idle seconds and
        drops a connection that then stays silent; absent when disabled.
    """

    TYPE: ClassVar[str] = "auth_ok"
    tenant: str = json_field("1-128 characters of text", matching(LABEL))
    id: str | None = id_field(optional=True)
    version: int = json_field("a whole number", is_count, read_int, default=PROTOCOL_VERSION)
    heartbeat: float | None = json_field(
        "seconds", seconds_up_to(86400.0), read_number, optional=True
    )


@attrs.frozen(kw_only=True)
class Open(_Message):
    """Platform → gateway: open a session with a card, by ICCID or MSISDN.

    Answered at once by L{Accepted} (or C{error}), later by L{Ready} or
    L{Failed}.

    @ivar application: the TAR (3 bytes) or AID (5-16 bytes) the session
        addresses, checked against the service's allowed applications.
    @ivar target: the AID (5-16 bytes) of the application the card runs the
        session's scripts in (GP Amd B C{X-Admin-Targeted-Application}),
        unless a command names its own; absent: the security domain that
        runs the admin session.
    """

    TYPE: ClassVar[str] = "open"
    id: str = id_field()
    service: str = json_field("a service name", matching(NAME))
    iccid: str | None = json_field("an ICCID (18-20 digits)", matching(ICCID), optional=True)
    msisdn: str | None = json_field(
        "an MSISDN (1-15 digits, + allowed)", matching(MSISDN), optional=True
    )
    application: bytes | None = json_field(
        "a TAR (3 bytes) or an AID (5-16 bytes)",
        lambda v: isinstance(v, bytes) and (len(v) == 3 or 5 <= len(v) <= 16),
        read_hex,
        optional=True,
    )
    timeouts: Timeouts | None = json_field(  # noqa: RUF009
        "timeouts", lambda v: isinstance(v, Timeouts), read_timeouts, optional=True
    )
    target: bytes | None = json_field("an AID (5-16 bytes)", is_aid, read_hex, optional=True)

    def __attrs_post_init__(self) -> None:
        if (self.iccid is None) == (self.msisdn is None):
            raise MessageError("give exactly one of iccid and msisdn", field="open.iccid")


@attrs.frozen(kw_only=True)
class Accepted(_Message):
    """Gateway → platform: open request C{id} is now session C{session}."""

    TYPE: ClassVar[str] = "accepted"
    id: str = id_field()
    session: str = session_field()


@attrs.frozen(kw_only=True)
class Ready(_Message):
    """Gateway → platform: the card is connected; commands may be sent.

    @ivar iccid: the card (useful when the session was opened by MSISDN).
    """

    TYPE: ClassVar[str] = "ready"
    session: str = session_field()
    iccid: str | None = json_field("an ICCID", matching(ICCID), optional=True)
    msisdn: str | None = json_field("an MSISDN", matching(MSISDN), optional=True)


@attrs.frozen(kw_only=True)
class Failed(_Message):
    """Gateway → platform: the session ended before it was ready.

    @ivar reason: a stable code: the engine's failure reason (C{unknown-card},
        C{card-timeout} ...) or C{ready-timeout}.
    """

    TYPE: ClassVar[str] = "failed"
    session: str = session_field()
    reason: str = json_field("a reason code", matching(CODE))
    message: str = text_field()


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


@attrs.frozen(kw_only=True)
class Close(_Message):
    """Platform → gateway: end the session after the commands already sent."""

    TYPE: ClassVar[str] = "close"
    session: str = session_field()
    id: str = id_field()


@attrs.frozen(kw_only=True)
class Closed(_Message):
    """Gateway → platform: the session closed as close request C{id} asked."""

    TYPE: ClassVar[str] = "closed"
    session: str = session_field()
    id: str = id_field()


@attrs.frozen(kw_only=True)
class Status(_Message):
    """Platform → gateway: what became of session C{session}?

    Any session the tenant may see, not only this connection's: a platform
    that reconnects (after losing its connection, or after a gateway
    restart) asks for the final state of the sessions it had.  Answered by
    L{State} with the same C{id}, or C{error} C{unknown-session}.
    """

    TYPE: ClassVar[str] = "status"
    id: str = id_field()
    session: str = session_field()


def _is_time(v: object) -> bool:
    return type(v) in (int, float) and 0 <= cast(float, v) < 1e11


def _time_field() -> Any:
    return json_field("a time (seconds since the epoch)", _is_time, read_number, optional=True)


@attrs.frozen(kw_only=True)
class State(_Message):
    """Gateway → platform: the answer to L{Status} C{id}.

    The same fields, and the same rules, as the HTTP API's
    C{GET /v1/sessions/{id}}: in full when the asking tenant opened the
    session since the gateway started; only the outcome (C{state},
    C{reason}, C{detail} and the times) when the session is only known from
    the store, for instance after a restart (then it ended C{failed} with
    reason C{gateway-restart}): the random session id is what proves the
    asker opened it, so the card is not shown.

    @ivar state: the session's state (C{requested} ... C{closed}, C{failed}).
    @ivar reason: why it failed, when it did (an engine failure reason).
    @ivar opened_at: when it was opened, in seconds since the epoch; the
        other times likewise.
    """

    TYPE: ClassVar[str] = "state"
    id: str = id_field()
    session: str = session_field()
    state: str = json_field("a state name", matching(CODE))
    reason: str | None = json_field("a reason code", matching(CODE), optional=True)
    detail: str | None = json_field(
        f"text of at most {MAX_TEXT} characters", is_text, optional=True
    )
    opened_at: float | None = _time_field()
    updated_at: float | None = _time_field()
    ended_at: float | None = _time_field()
    service: str | None = json_field("a service name", matching(NAME), optional=True)
    iccid: str | None = json_field("an ICCID", matching(ICCID), optional=True)
    msisdn: str | None = json_field("an MSISDN", matching(MSISDN), optional=True)
    scripts: int | None = json_field("a whole number", is_count, read_int, optional=True)
    push_attempts: int | None = json_field("a whole number", is_count, read_int, optional=True)

    @property
    def ended(self) -> bool:
        """Whether the session has ended (C{closed} or C{failed})."""
        return self.state in ("closed", "failed")


@attrs.frozen(kw_only=True)
class Notification(_Message):
    """Gateway → platform: a ready session ended without being asked to.

    @ivar event: a L{NotificationEvent} value.
    @ivar reason: the engine's failure reason code, if there is one.
    """

    TYPE: ClassVar[str] = "notification"
    session: str = session_field()
    event: str = json_field("an event name", matching(CODE))
    reason: str | None = json_field("a reason code", matching(CODE), optional=True)
    message: str = text_field()


@attrs.frozen(kw_only=True)
class Ping(_Message):
    """Either way: are you there?  Answered by L{Pong} with the same C{id}."""

    TYPE: ClassVar[str] = "ping"
    id: str | None = id_field(optional=True)


@attrs.frozen(kw_only=True)
class Pong(_Message):
    """Either way: the answer to L{Ping}."""

    TYPE: ClassVar[str] = "pong"
    id: str | None = id_field(optional=True)


@attrs.frozen(kw_only=True)
class ErrorMessage(_Message):
    """Gateway → platform: a request (C{id}, when known) was refused or failed.

    @ivar code: stable, for programs (an L{ErrorCode} or an engine failure
        reason); C{message} says it for people.
    @ivar session: the session concerned, when there is one.
    """

    TYPE: ClassVar[str] = "error"
    code: str = json_field("an error code", matching(CODE))
    message: str = text_field()
    id: str | None = id_field(optional=True)
    session: str | None = session_field(optional=True)


Message: TypeAlias = (
    Hello | AuthOk | Open | Accepted | Ready | Failed | Command | Result | Close | Closed
    | Status | State | Notification | Offer | Take | Ping | Pong | ErrorMessage
)  # fmt: skip
"""Any message of the channel."""

CLIENT_MESSAGES: Final[tuple[type[_Message], ...]] = (
    Hello, Open, Command, Close, Status, Take, Ping, Pong
)  # fmt: skip
"""What a platform may send."""
SERVER_MESSAGES: Final[tuple[type[_Message], ...]] = (
    AuthOk, Accepted, Ready, Failed, Result, Closed, State, Notification, Offer, Ping, Pong,
    ErrorMessage,
)  # fmt: skip
"""What the gateway sends."""


def parse_message(obj: Mapping[str, object], accept: Iterable[type[_Message]]) -> Message:
    """The message in C{obj} (a decoded frame), if C{accept} lists its type.

    @raise UnknownTypeError: C{type} is missing, not a string or not accepted.
    @raise MessageError: a field is wrong (the error names it).
    """
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise UnknownTypeError(f"must be a string, not {json_kind(kind)}", field="type")
    for cls in accept:
        if kind == cls.TYPE:
            return cls.from_json(obj)  # type: ignore[return-value]
    raise UnknownTypeError(f"unknown message type {kind[:40]!r}", field="type")
