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

from bipgw.codec.platform._base import Timeouts, _Message, read_timeouts
from bipgw.codec.platform._commands import Command, Result
from bipgw.codec.platform._fields import (
    CODE,
    ICCID,
    LABEL,
    MAX_TEXT,
    MSISDN,
    NAME,
    TOKEN,
    MessageError,
    UnknownTypeError,
    id_field,
    is_aid,
    is_count,
    is_text,
    json_field,
    json_kind,
    matching,
    read_hex,
    read_int,
    read_number,
    seconds_up_to,
    session_field,
    text_field,
)
from bipgw.codec.platform._offers import Offer, Take

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
