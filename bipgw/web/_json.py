# -*- test-case-name: tests.unit.web.test_errors -*-
"""What the HTTP API reads and answers: JSON request bodies, and its errors.

A request body is read once, bounded (C{413} above the limit, whatever the
C{Content-Length} says), must be declared C{application/json}, be UTF-8
JSON and an object; its fields are then checked by the platform channel's
own message codec, so both doors name a bad field the same way.  Every
refusal is an L{ApiError}: a stable C{code} (the platform channel's and the
engine's), a message for people, and the HTTP status L{STATUS_OF} gives it.
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs
from twisted.web.iweb import IRequest

from bipgw.codec.platform import MessageError

__all__ = ["STATUS_OF", "ApiError", "Reply", "json_body", "only_fields", "parse_message"]

STATUS_OF: Final[dict[str, int]] = {
    "invalid-json": 400,
    "invalid-message": 400,
    "invalid-command": 400,
    "invalid-campaign": 400,
    "auth-failed": 401,
    "service-not-allowed": 403,
    "application-not-allowed": 403,
    "not-found": 404,
    "unknown-session": 404,
    "unknown-card": 404,
    "unknown-campaign": 404,
    "method-not-allowed": 405,
    "card-busy": 409,
    "session-closing": 409,
    "session-ended": 409,
    "cancelled": 409,
    "campaign-state": 409,
    "body-too-large": 413,
    "unsupported-media-type": 415,
    "limit-reached": 429,
    "rate-limited": 429,
    "queue-full": 429,
    "internal-error": 500,
    "unavailable": 503,
    "shutdown": 503,
    "not-connected": 504,
    "ready-timeout": 504,
    "command-timeout": 504,
    "card-timeout": 504,
    "por-timeout": 504,
    "push-timeout": 504,
    "queue-timeout": 504,
    "close-timeout": 504,
    "idle-timeout": 504,
}
"""The HTTP status of each error code; any other (a card or push failure) is 502."""


class ApiError(Exception):
    """A request refused: answered C{{code, message[, session]}} with C{status}."""

    def __init__(
        self, code: str, message: str, session: str | None = None, *, allow: str = ""
    ) -> None:
        """
        @param code: the stable error code (a key of L{STATUS_OF}, or a card
            or push failure's reason, answered C{502}).
        @param message: why, for people (which field, which limit).
        @param session: the session concerned, if any.
        @param allow: the methods the path takes, for a C{405}'s C{Allow}.
        """
        super().__init__(message)
        self.code = code
        self.message = message
        self.session = session
        self.allow = allow
        self.status = STATUS_OF.get(code, 502)

    def to_json(self) -> dict[str, Any]:
        """The error's body: C{code}, C{message} and the C{session} if one is concerned."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.session is not None:
            body["session"] = self.session
        return body


@attrs.frozen
class Reply:
    """A JSON answer to send: its status, body and any extra headers."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


def json_body(request: IRequest, limit: int) -> dict[str, Any]:
    """The request's body as a JSON object of at most C{limit} bytes.

    @raise ApiError: C{body-too-large}, C{unsupported-media-type} or
        C{invalid-json}, before anything else looks at the request.
    """
    # Headers are read as bytes: as text, a byte that is not UTF-8 would
    # raise from twisted's header map and answer 500 (found by the fuzzer).
    length = request.getHeader(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError("body-too-large", f"the body is over {limit} bytes")
    kind = (request.getHeader(b"content-type") or b"application/json").split(b";")[0].strip()
    if kind.lower() != b"application/json":
        raise ApiError("unsupported-media-type", "send the body as application/json")
    assert request.content is not None
    data = request.content.read(limit + 1)
    if len(data) > limit:
        raise ApiError("body-too-large", f"the body is over {limit} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError("invalid-json", f"the body is not UTF-8 JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError("invalid-json", "the body must be a JSON object")
    return body


def only_fields(body: dict[str, Any], fields: frozenset[str]) -> None:
    """Refuse a body with a field outside C{fields} (a misspelt field) or a
    C{null} field (the OpenAPI document has no nullable field), naming it."""
    for key, value in body.items():
        if key not in fields:
            raise ApiError("invalid-message", f"field {key!r}: unknown field")
        _not_null(key, value)


def _not_null(name: str, value: Any) -> None:
    if value is None:
        raise ApiError("invalid-message", f"field {name!r}: must not be null (leave it out)")
    if isinstance(value, dict):
        for key, item in value.items():
            _not_null(f"{name}.{key}", item)


def parse_message(kind: Any, obj: dict[str, Any], prefix: str) -> Any:
    """C{kind.from_json(obj)}, a refusal naming the field without the channel's C{prefix}.

    @param kind: a platform channel message class (C{Open}, C{Command}).
    @param prefix: what the codec puts before a field's name (C{"open."}).
    """
    try:
        return kind.from_json(obj)
    except MessageError as e:
        field = (e.field or "").removeprefix(prefix)
        raise ApiError("invalid-message", f"field {field!r}: {e.reason}") from None
