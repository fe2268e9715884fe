# -*- test-case-name: tests.unit.codec.test_platform_messages -*-
"""The vocabulary of platform-channel messages, and their field checks.

The building blocks of L{bipgw.codec.platform._messages}: the limits, the
error codes and notification events, readers that turn a JSON value into a
Python value (hex to bytes, arrays to tuples) and validators that check it,
both naming the field in their L{MessageError}.  Every message field is
declared with L{json_field}, which pairs the two.  Nothing here knows a
message type: a reader of a compound value (C{open.timeouts}) lives with the
value, in C{_messages}, so the two modules import one way only.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import attrs

from bipgw.codec._errors import CodecError
from bipgw.codec.apdu import ApduError, decode_command
from bipgw.codec.ram import CommandScript, RamError

MAX_APDUS: Final = 255
"""C-APDUs (and R-APDUs) in one command or result."""
MAX_TIMEOUT: Final = 3600.0
"""The longest timeout a platform may ask for in C{open}, in seconds."""
MAX_TEXT: Final = 4096
"""The longest free text (error messages, meanings) in characters."""

REQUEST_ID: Final = re.compile(r"[\x21-\x7e]{1,64}\Z")
SESSION: Final = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
LABEL: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}\Z")
TOKEN: Final = re.compile(r"[\x21-\x7e]{1,512}\Z")
CODE: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}\Z")
ICCID: Final = re.compile(r"[0-9]{18,20}[Ff]?\Z")
MSISDN: Final = re.compile(r"\+?[0-9]{1,15}\Z")
HEX: Final = re.compile(r"(?:[0-9A-Fa-f]{2})*\Z")


class ErrorCode(enum.StrEnum):
    """The codes of L{ErrorMessage} that the channel itself gives.

    A command the engine refuses, or the card fails, is answered with the
    engine's own failure reason instead (C{not-connected}, C{queue-full},
    C{script-status}, C{card-dropped} ...): one vocabulary for the gateway.
    """

    MALFORMED_FRAME = "malformed-frame"
    """Not a UTF-8 JSON object; only that frame is lost."""
    FRAME_TOO_LARGE = "frame-too-large"
    """The announced length is over the limit; the connection is closed."""
    UNKNOWN_TYPE = "unknown-type"
    """C{type} is missing or not one the gateway accepts."""
    INVALID_MESSAGE = "invalid-message"
    """A field is missing, unknown or wrong; the message names it."""
    NOT_AUTHORIZED = "not-authorized"
    """A request before a successful C{hello}."""
    AUTH_FAILED = "auth-failed"
    """Unknown token or certificate; the connection is closed."""
    ALREADY_AUTHENTICATED = "already-authenticated"
    """A second C{hello}."""
    UNKNOWN_SESSION = "unknown-session"
    """No session of this connection has that id (any more); for C{status},
    no session this tenant may see."""
    SESSION_CLOSING = "session-closing"
    """A command for a session the platform is closing."""
    DUPLICATE_ID = "duplicate-id"
    """A command id already in flight on the same session."""
    LIMIT_REACHED = "limit-reached"
    """A session limit (tenant, service) or the tenant's commands in flight."""
    RATE_LIMITED = "rate-limited"
    """A command over its service's C{rate} (commands per second); retry later."""
    SERVICE_NOT_ALLOWED = "service-not-allowed"
    """The tenant has no such service."""
    APPLICATION_NOT_ALLOWED = "application-not-allowed"
    """The application, or an AID a command SELECTs, is not the service's."""
    READY_TIMEOUT = "ready-timeout"
    """The platform's C{timeouts.ready} passed (a C{failed} reason)."""
    COMMAND_TIMEOUT = "command-timeout"
    """The platform's C{timeouts.command} passed; the session is closed."""
    UNAVAILABLE = "unavailable"
    """The tenant directory (or, for C{status}, the recorded history) failed; try again later."""
    INTERNAL_ERROR = "internal-error"
    """A bug in the gateway, logged with its traceback."""


class NotificationEvent(enum.StrEnum):
    """The C{event} of a L{Notification}."""

    CARD_DROPPED = "card_dropped"
    """The card's connection was lost."""
    TIMEOUT = "timeout"
    """A gateway timeout (idle, command, close) or the platform's C{timeouts.command}."""
    SHUTDOWN = "shutdown"
    """The gateway is stopping."""
    ENDED = "ended"
    """Any other end (a protocol error from the card ...); C{reason} says which."""


class MessageError(CodecError):
    """A message that is not valid; C{field} names the field (C{"open.iccid"})."""

    codec = "platform message"


class UnknownTypeError(MessageError):
    """A JSON object whose C{type} is missing or not one this side accepts."""


# -- reading JSON values, naming the field ------------------------------------


def json_kind(value: object) -> str:
    for kind, name in ((bool, "a boolean"), (int | float, "a number"), (str, "a string")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else "an array" if isinstance(value, list) else "an object"


def _want(value: object, kind: Any, what: str, field: str) -> Any:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise MessageError(f"must be {what}, not {json_kind(value)}", field=field)
    return value


def read_str(value: object, field: str) -> str:
    return str(_want(value, str, "a string", field))


def read_hex(value: object, field: str) -> bytes:
    if not HEX.match(read_str(value, field)):
        raise MessageError("must be hex digits in pairs, without spaces", field=field)
    return bytes.fromhex(str(value))


def read_list(value: object, field: str) -> list[object]:
    items: list[object] = _want(value, list, "an array", field)
    if len(items) > MAX_APDUS:
        raise MessageError(f"{len(items)} items; at most {MAX_APDUS} allowed", field=field)
    return items


def read_hexes(value: object, field: str) -> tuple[bytes, ...]:
    return tuple(read_hex(v, f"{field}[{i}]") for i, v in enumerate(read_list(value, field)))


def read_strs(value: object, field: str) -> tuple[str, ...]:
    return tuple(read_str(v, f"{field}[{i}]") for i, v in enumerate(read_list(value, field)))


def read_int(value: object, field: str) -> int:
    return int(_want(value, int, "a whole number", field))


def read_number(value: object, field: str) -> float:
    return float(_want(value, int | float, "a number", field))


def read_bool(value: object, field: str) -> bool:
    return bool(_want(value, bool, "true or false", field))


def read_object(value: object, field: str) -> dict[str, object]:
    """A JSON object (the reader of a compound field such as C{open.timeouts})."""
    obj: dict[str, object] = _want(value, dict, "an object", field)
    return obj


# -- checking typed values, naming the field ----------------------------------

_Check: TypeAlias = Callable[[Any], bool]


def _name(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{getattr(instance, 'TYPE', '?')}.{attribute.name}"


def json_field(
    what: str,
    check: _Check | None = None,
    read: Callable[[object, str], object] = read_str,
    *,
    optional: bool = False,
    default: object = attrs.NOTHING,
    validator: Callable[[Any, Any, Any], None] | None = None,
    secret: bool = False,
) -> Any:
    """An attrs field: validated by C{check} (its error says "is not C{what}")
    or by C{validator}, read from JSON by C{read}."""

    def validate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        if validator is not None:
            validator(instance, attribute, value)
        elif check is not None and not check(value):
            shown = "(hidden)" if secret else show_value(value)
            raise MessageError(f"{shown} is not {what}", field=_name(instance, attribute))

    if optional and default is attrs.NOTHING:
        default = None
    return attrs.field(
        default=default, validator=validate, metadata={"json": read}, repr=not secret
    )


def show_value(value: object) -> str:
    """A refused value as people read it: bytes as hex digits (as they were
    sent), anything else as its repr, at most 80 characters either way."""
    text = value.hex().upper() if isinstance(value, bytes) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def matching(pattern: re.Pattern[str]) -> _Check:
    return lambda v: isinstance(v, str) and pattern.match(v) is not None


def is_aid(v: object) -> bool:
    """An application identifier: 5 to 16 bytes (ISO/IEC 7816-4)."""
    return isinstance(v, bytes) and 5 <= len(v) <= 16


def is_count(v: object) -> bool:
    return type(v) is int and 0 <= v < 1 << 53


def seconds_up_to(maximum: float) -> _Check:
    return lambda v: type(v) in (int, float) and 0 < v <= maximum


def is_text(v: object) -> bool:
    return isinstance(v, str) and len(v) <= MAX_TEXT


def each(what: str, check: _Check, minimum: int = 0) -> Callable[[Any, Any, Any], None]:
    def validate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        name = _name(instance, attribute)
        if not isinstance(value, tuple) or not minimum <= len(value) <= MAX_APDUS:
            raise MessageError(f"must hold {minimum} to {MAX_APDUS} items", field=name)
        for i, item in enumerate(value):
            if not check(item):
                raise MessageError(f"is not {what}", field=f"{name}[{i}]")

    return validate


def check_capdus(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    each("bytes", lambda v: isinstance(v, bytes), 1)(instance, attribute, value)
    capdus: tuple[bytes, ...] = value  # type: ignore[assignment]
    for i, capdu in enumerate(capdus):
        try:
            decode_command(capdu)
        except ApduError as e:
            raise MessageError(
                f"not a C-APDU: {e}", field=f"{_name(instance, attribute)}[{i}]"
            ) from None


def check_script(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    try:
        script = CommandScript.decode(value)  # type: ignore[arg-type]
    except (RamError, TypeError) as e:
        raise MessageError(
            f"not an expanded command script: {e}", field=_name(instance, attribute)
        ) from None
    if script.chaining is not None or script.immediate_action or script.error_action:
        raise MessageError(
            "script chaining, immediate and error action TLVs are not relayed",
            field=_name(instance, attribute),
        )
    check_capdus(instance, attribute, script.commands)


_ID = "a request id (1-64 printable ASCII)"
_SID = "a session id (1-64 of A-Z a-z 0-9 _ -)"


def id_field(optional: bool = False) -> Any:
    return json_field(_ID, matching(REQUEST_ID), optional=optional)


def session_field(optional: bool = False) -> Any:
    return json_field(_SID, matching(SESSION), optional=optional)


def text_field() -> Any:
    return json_field(f"text of at most {MAX_TEXT} characters", is_text, default="")
