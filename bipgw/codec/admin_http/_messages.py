"""The card's POST and the server's answer as values, and their serializers.

Only the headers GP Amendment B gives a meaning get typed fields; everything
else rides along in C{headers} so that nothing a card sends is lost.  The
framing headers (Content-Length, Transfer-Encoding, Connection) are never
stored: they describe the bytes, not the message, and the serializers write
them from C{body}, the C{chunked} choice and C{keep_alive}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from attrs import Attribute, Factory, field, frozen
from attrs.validators import instance_of, optional

from bipgw.codec.admin_http._errors import AdminHttpError
from bipgw.codec.admin_http._headers import (
    X_ADMIN_PROTOCOL,
    ContentType,
    ScriptStatus,
    check_aid,
    check_field_value,
    check_token,
    format_aid_uri,
    parse_script_status,
    show,
)

_Validator = Callable[[Any, "Attribute[Any]", Any], None]

_FRAMING: Final = frozenset({"content-length", "transfer-encoding", "connection"})
REQUEST_TYPED: Final = frozenset(
    {
        "host",
        "x-admin-protocol",
        "x-admin-from",
        "content-type",
        "x-admin-script-status",
        "x-admin-resume",
    }
)
"""Request headers with a typed field (lower case)."""
RESPONSE_TYPED: Final = frozenset(
    {"x-admin-protocol", "x-admin-next-uri", "content-type", "x-admin-targeted-application"}
)
"""Response headers with a typed field (lower case)."""

NO_BODY_STATUSES: Final = frozenset({204, 304})
"""Final statuses whose responses never have a body (RFC 9112 section 6.3)."""

REASONS: Final = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
"""Default reason phrases; cards ignore them, logs read better with them."""


def has_body(status: int) -> bool:
    """Whether a response with C{status} can carry a body (not 1xx/204/304)."""
    return status >= 200 and status not in NO_BODY_STATUSES


def _hide(body: bytes) -> str:
    # Scripts can carry key material (PUT KEY, STORE DATA of PSKs), even if
    # wrapped; a repr lands in logs, so it shows only the size.
    return f"<{len(body)} bytes>"


def _check_body(_: object, __: object, body: bytes) -> None:
    if not isinstance(body, bytes):
        raise AdminHttpError(f"body must be bytes, not {type(body).__name__}", field="body")


def _check_optional(name: str) -> _Validator:
    def check(_: object, __: object, value: str | None) -> None:
        if value is not None:
            check_field_value(value, name)

    return check


_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+\Z")
"""A request target: visible ASCII only (one regex match, not a per-character loop:
this runs for every card POST)."""


def _check_target(_: object, __: object, target: str) -> None:
    if not isinstance(target, str) or _VISIBLE_ASCII.match(target) is None:
        raise AdminHttpError(
            f"target {show(target)} must be non-empty visible ASCII", field="request target"
        )


def _check_method(_: object, __: object, method: str) -> None:
    check_token(method, "method")


def _to_content_type(value: ContentType | str | None) -> ContentType | None:
    if isinstance(value, str):
        return ContentType.parse(value)
    return value


def _to_script_status(value: ScriptStatus | str | None) -> ScriptStatus | str | None:
    if value is None or isinstance(value, ScriptStatus):
        return value
    return parse_script_status(value)


def _to_headers(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for pair in value:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise AdminHttpError(f"{show(str(pair))} is not a (name, value) pair", field="headers")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _check_headers(typed: frozenset[str]) -> _Validator:
    reserved = typed | _FRAMING

    def check(_: object, __: object, headers: tuple[tuple[str, str], ...]) -> None:
        for name, value in headers:
            check_token(name, "header name")
            check_field_value(value, name)
            if name.lower() in reserved:
                raise AdminHttpError(
                    "set through its own attribute (or written by the serializer)",
                    field=name,
                )

    return check


def _check_status(_: object, __: object, status: int) -> None:
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise AdminHttpError(f"status {status!r} is not in 100..599", field="status")


def _check_reason(_: object, __: object, reason: str) -> None:
    # Edge whitespace is allowed: the status line keeps the reason verbatim.
    check_field_value(reason.strip(" \t") if isinstance(reason, str) else reason, "reason")


def _check_targeted(_: object, __: object, aid: bytes | None) -> None:
    if aid is not None:
        check_aid(aid, "X-Admin-Targeted-Application")


@frozen(kw_only=True)
class AdminRequest:
    """One HTTP POST from a card's security domain to the admin server.

    @ivar method: the request method; cards only POST, and the parser answers
        anything else with 501, but a test client may need to send another.
    @ivar target: the request target, verbatim with its query (the server
        matches it against the X-Admin-Next-URI it sent).
    @ivar host: the Host header (trigger parameter C{8A}), if any.
    @ivar admin_protocol: X-Admin-Protocol; L{X_ADMIN_PROTOCOL} unless given,
        C{None} (what the parser gives when the header is absent) omits it.
    @ivar admin_from: X-Admin-From, the agent ID that identifies the card.
    @ivar content_type: the response script's media type, absent on the
        first POST.
    @ivar script_status: X-Admin-Script-Status: a L{ScriptStatus}, the raw
        text of a status this codec does not know, or C{None} when absent.
    @ivar resume: X-Admin-Resume is C{true}: the card re-sends its last POST
        after an interruption.
    @ivar body: the response script (empty on the first POST).
    @ivar headers: every other header, in order, names as received.
    @ivar keep_alive: C{False} when the card sent C{Connection: close}.
    """

    method: str = field(default="POST", validator=_check_method)
    target: str = field(validator=_check_target)
    host: str | None = field(default=None, validator=_check_optional("Host"))
    admin_protocol: str | None = field(
        default=X_ADMIN_PROTOCOL, validator=_check_optional("X-Admin-Protocol")
    )
    admin_from: str | None = field(default=None, validator=_check_optional("X-Admin-From"))
    content_type: ContentType | None = field(
        default=None, converter=_to_content_type, validator=optional(instance_of(ContentType))
    )
    script_status: ScriptStatus | str | None = field(default=None, converter=_to_script_status)
    resume: bool = field(default=False, validator=instance_of(bool))
    body: bytes = field(default=b"", repr=_hide, validator=_check_body)
    headers: tuple[tuple[str, str], ...] = field(
        default=(), converter=_to_headers, validator=_check_headers(REQUEST_TYPED)
    )
    keep_alive: bool = field(default=True, validator=instance_of(bool))


_REQUEST_FIELDS: Final = frozenset(a.name for a in AdminRequest.__attrs_attrs__)


def checked_request(
    *,
    method: str,
    target: str,
    host: str | None,
    admin_protocol: str | None,
    admin_from: str | None,
    content_type: ContentType | None,
    script_status: ScriptStatus | str | None,
    resume: bool,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    keep_alive: bool,
) -> AdminRequest:
    """An L{AdminRequest} of values the request parser has already checked.

    Every field is set as given, without running the converters and
    validators again: the parser reads the method and target with the same
    rules, every header value with the same character and edge-blank rules,
    converts Content-Type, X-Admin-Script-Status and X-Admin-Resume itself,
    and keeps the typed and framing headers out of C{headers}, which it
    gives as a tuple of pairs.  Building the value through the validators
    cost about as much as reading the head (every card POST, issue 14).
    Anything not from the parser must use the class itself.
    """
    request: AdminRequest = object.__new__(AdminRequest)
    put = object.__setattr__
    put(request, "method", method)
    put(request, "target", target)
    put(request, "host", host)
    put(request, "admin_protocol", admin_protocol)
    put(request, "admin_from", admin_from)
    put(request, "content_type", content_type)
    put(request, "script_status", script_status)
    put(request, "resume", resume)
    put(request, "body", body)
    put(request, "headers", headers)
    put(request, "keep_alive", keep_alive)
    return request


@frozen(kw_only=True)
class AdminResponse:
    """One HTTP response from the admin server to a card.

    A C{200} carries a command script and, unless the session ends after it,
    the X-Admin-Next-URI the card must POST the results to; a C{204} ends the
    session.  A body on a status that cannot have one (1xx, 204, 304) is
    refused at construction, so such a value cannot be sent by mistake.

    @ivar status: the status code, 100 to 599.
    @ivar reason: the reason phrase (defaults to the standard one).
    @ivar admin_protocol: X-Admin-Protocol; L{X_ADMIN_PROTOCOL} unless given,
        C{None} (what the parser gives when the header is absent) omits it.
    @ivar next_uri: X-Admin-Next-URI, verbatim.
    @ivar content_type: the command script's media type.
    @ivar targeted_application: the AID from X-Admin-Targeted-Application,
        present only when the script is for another security domain.
    @ivar body: the command script.
    @ivar headers: every other header, in order, names as received.
    @ivar keep_alive: C{False} when the server sent C{Connection: close}.
    """

    status: int = field(default=200, validator=_check_status)
    reason: str = field(
        default=Factory(lambda self: REASONS.get(self.status, ""), takes_self=True),
        validator=_check_reason,
    )
    admin_protocol: str | None = field(
        default=X_ADMIN_PROTOCOL, validator=_check_optional("X-Admin-Protocol")
    )
    next_uri: str | None = field(default=None, validator=_check_optional("X-Admin-Next-URI"))
    content_type: ContentType | None = field(
        default=None, converter=_to_content_type, validator=optional(instance_of(ContentType))
    )
    targeted_application: bytes | None = field(default=None, validator=_check_targeted)
    body: bytes = field(default=b"", repr=_hide, validator=_check_body)
    headers: tuple[tuple[str, str], ...] = field(
        default=(), converter=_to_headers, validator=_check_headers(RESPONSE_TYPED)
    )
    keep_alive: bool = field(default=True, validator=instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if self.body and not has_body(self.status):
            raise AdminHttpError(f"a {self.status} response cannot have a body", field="body")


def script_response(
    next_uri: str, body: bytes, content_type: ContentType, target: bytes | None = None
) -> AdminResponse:
    """The C{200} that hands the card a command script, answered at C{next_uri}.

    The same value as C{AdminResponse(status=200, next_uri=next_uri,
    content_type=content_type, body=body, targeted_application=target)},
    checked the same way (the next URI as a header value, the body as
    bytes, the target as an AID), without attrs' validator round for the
    fields that are constants: one per relayed command (issue 14).

    @raise AdminHttpError: as the class would.
    """
    check_field_value(next_uri, "X-Admin-Next-URI")
    _check_body(None, None, body)
    if target is not None:
        check_aid(target, "X-Admin-Targeted-Application")
    if not isinstance(content_type, ContentType):
        raise AdminHttpError("not a ContentType", field="Content-Type")
    response: AdminResponse = object.__new__(AdminResponse)
    put = object.__setattr__
    put(response, "status", 200)
    put(response, "reason", "OK")
    put(response, "admin_protocol", X_ADMIN_PROTOCOL)
    put(response, "next_uri", next_uri)
    put(response, "content_type", content_type)
    put(response, "targeted_application", target)
    put(response, "body", body)
    put(response, "headers", ())
    put(response, "keep_alive", True)
    return response


def _chunked(body: bytes) -> bytes:
    if not body:
        return b"0\r\n\r\n"
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def _finish(lines: list[str], extra: tuple[tuple[str, str], ...], keep_alive: bool) -> bytes:
    lines.extend(f"{name}: {value}" for name, value in extra)
    if not keep_alive:
        lines.append("Connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def encode_request(request: AdminRequest, *, chunked: bool = False) -> bytes:
    """Serialize C{request} byte-exactly, with CRLF line ends.

    Header order is fixed: Host, X-Admin-Protocol, X-Admin-From,
    X-Admin-Script-Status, X-Admin-Resume, Content-Type, the framing header,
    the other headers in order, then C{Connection: close} if not keep-alive.
    With C{chunked} the body goes as one chunk (as the real card sent it);
    otherwise a non-empty body gets Content-Length and an empty one gets no
    framing header at all, as the card's first POST in the live trace (RFC
    9112 section 6.3 makes that a zero-length body).
    """
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    if request.host is not None:
        lines.append(f"Host: {request.host}")
    if request.admin_protocol is not None:
        lines.append(f"X-Admin-Protocol: {request.admin_protocol}")
    if request.admin_from is not None:
        lines.append(f"X-Admin-From: {request.admin_from}")
    if request.script_status is not None:
        lines.append(f"X-Admin-Script-Status: {request.script_status}")
    if request.resume:
        lines.append("X-Admin-Resume: true")
    if request.content_type is not None:
        lines.append(f"Content-Type: {request.content_type}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif request.body:
        lines.append(f"Content-Length: {len(request.body)}")
    head = _finish(lines, request.headers, request.keep_alive)
    return head + (_chunked(request.body) if chunked else request.body)


def encode_response(response: AdminResponse, *, chunked: bool = False) -> bytes:
    """Serialize C{response} byte-exactly, with CRLF line ends.

    Header order is fixed and follows the live trace: X-Admin-Protocol,
    X-Admin-Next-URI, the framing header, Content-Type,
    X-Admin-Targeted-Application, the other headers in order, then
    C{Connection: close} if not keep-alive.  A status that can have a body
    always gets Content-Length (even 0) or, with C{chunked}, one chunk: a
    response without either could only end with the connection, which the
    keep-alive Amd B session must not do.  1xx, 204 and 304 get neither.

    @raise AdminHttpError: C{chunked} was asked for a status without a body.
    """
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    if response.admin_protocol is not None:
        lines.append(f"X-Admin-Protocol: {response.admin_protocol}")
    if response.next_uri is not None:
        lines.append(f"X-Admin-Next-URI: {response.next_uri}")
    body_allowed = has_body(response.status)
    if chunked:
        if not body_allowed:
            raise AdminHttpError(
                f"a {response.status} response has no body to chunk", field="Transfer-Encoding"
            )
        lines.append("Transfer-Encoding: chunked")
    elif body_allowed:
        lines.append(f"Content-Length: {len(response.body)}")
    if response.content_type is not None:
        lines.append(f"Content-Type: {response.content_type}")
    if response.targeted_application is not None:
        lines.append(
            f"X-Admin-Targeted-Application: {format_aid_uri(response.targeted_application)}"
        )
    head = _finish(lines, response.headers, response.keep_alive)
    return head + (_chunked(response.body) if chunked else response.body)
