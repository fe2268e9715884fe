"""Reading one message head: start line, header lines, and what they imply.

The incremental parser finds the lines; this module decides what they mean:
whether the start line is acceptable, how the body is delimited (the part
that request smuggling attacks), and which typed values the headers carry.
Every refusal names the line's offset in the stream.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from attrs import frozen

from bipgw.codec.admin_http._errors import AdminHttpError
from bipgw.codec.admin_http._headers import (
    ContentType,
    check_field_value,
    is_token,
    parse_aid_uri,
    parse_script_status,
    show,
)
from bipgw.codec.admin_http._messages import (
    REQUEST_TYPED,
    RESPONSE_TYPED,
    AdminRequest,
    AdminResponse,
    checked_request,
    has_body,
)

Field = tuple[str, str, int]
"""One header line: name as received, value, offset of the line."""

_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
# The one request line every card sends, matched at once; anything else takes
# the checks below, which name what is wrong.
_POST_LINE = re.compile(rb"POST ([\x21-\x7e]+) HTTP/1\.1\Z")
# A well-formed field line: a token name, the colon, then only field-value
# bytes (the value is what remains once edge blanks are stripped).  One match
# instead of a token check, a partition and a value check per line: this runs
# for every header of every card POST.  A line it does not match takes the
# checks of L{parse_field_line}, which name the problem.
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)\Z")
_STATUS = re.compile(rb"([0-9]{3})(?: (.*))?\Z", re.DOTALL)
_DIGITS = re.compile(r"[0-9]+\Z")
# Content-Length values longer than this cannot be a body we accept, and are
# refused before being turned into an integer.
_MAX_LENGTH_DIGITS: Final = 18


@frozen
class Head:
    """A complete head: how to read the body and how to build the message.

    @ivar chunked: the body uses the chunked transfer coding.
    @ivar length: the body length when not chunked.
    @ivar keep_alive: no C{Connection: close} was sent.
    @ivar build: makes the message from the body bytes.
    """

    chunked: bool
    length: int
    keep_alive: bool
    build: Callable[[bytes], Any]


def _version(raw: bytes, field: str, offset: int) -> None:
    if _VERSION.match(raw) is None:
        raise AdminHttpError(f"{show(raw)} is not an HTTP version", field=field, offset=offset)
    if raw != b"HTTP/1.1":
        # HTTP/1.0 has no chunked coding, no default keep-alive and allows
        # close-delimited bodies; no Amd B card speaks it.
        raise AdminHttpError(
            f"{raw.decode('ascii')} is not supported, only HTTP/1.1",
            field=field,
            offset=offset,
            status=505,
        )


def parse_request_line(line: bytes, offset: int) -> tuple[str, str]:
    """Read C{POST <target> HTTP/1.1}; return the method and the target."""
    fast = _POST_LINE.match(line)
    if fast is not None:
        return "POST", fast.group(1).decode("ascii")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise AdminHttpError(
            f"{show(line)} is not 'method SP target SP version'",
            field="request line",
            offset=offset,
        )
    raw_method, raw_target, raw_version = parts
    method = raw_method.decode("latin-1")
    if not is_token(method):
        raise AdminHttpError(
            f"method {show(raw_method)} is not a token", field="request line", offset=offset
        )
    if not raw_target or any(b < 0x21 or b > 0x7E for b in raw_target):
        raise AdminHttpError(
            f"target {show(raw_target)} is not visible ASCII", field="request line", offset=offset
        )
    _version(raw_version, "request line", offset)
    if method != "POST":
        raise AdminHttpError(
            f"method {method!r} is not implemented: Amd B cards only POST",
            field="request line",
            offset=offset,
            status=501,
        )
    return method, raw_target.decode("ascii")


def parse_status_line(line: bytes, offset: int) -> tuple[int, str]:
    """Read C{HTTP/1.1 <code> <reason>}; return the code and the reason.

    A missing reason (even without its separating space) is tolerated.
    """
    raw_version, _, rest = line.partition(b" ")
    _version(raw_version, "status line", offset)
    match = _STATUS.match(rest)
    if match is None or int(match.group(1)) < 100:
        raise AdminHttpError(
            f"{show(rest)} is not 'code SP reason'", field="status line", offset=offset
        )
    reason = (match.group(2) or b"").decode("latin-1")
    try:
        check_field_value(reason.strip(" \t"), "status line")
    except AdminHttpError as e:
        raise e.at(offset) from None
    return int(match.group(1)), reason


def parse_field_line(line: bytes, offset: int) -> tuple[str, str]:
    """Read C{name: value}; return the name as received and the trimmed value.

    Obsolete line folding and whitespace before the colon are refused (RFC
    9112 section 5): a lenient reading there is how smuggling starts.
    """
    fast = _FIELD_LINE.match(line)
    if fast is not None:
        return fast.group(1).decode("latin-1"), fast.group(2).strip(b" \t").decode("latin-1")
    if line[:1] in (b" ", b"\t"):
        raise AdminHttpError(
            "obsolete line folding (a line starting with whitespace)",
            field="header line",
            offset=offset,
        )
    name_raw, colon, value_raw = line.partition(b":")
    name = name_raw.decode("latin-1")
    if not colon or not is_token(name):
        raise AdminHttpError(
            f"{show(line)} is not 'name: value' with a token name",
            field="header line",
            offset=offset,
        )
    value = value_raw.strip(b" \t").decode("latin-1")
    try:
        check_field_value(value, name)
    except AdminHttpError as e:
        raise e.at(offset) from None
    return name, value


def _listed(fields: Sequence[Field], name: str) -> list[tuple[str, int]]:
    # Comma-separated list headers; empty elements are allowed (RFC 9110 5.6.1).
    # Every helper from here to _framing gets the fields with lower-case names.
    return [
        (item.strip(" \t"), off)
        for key, value, off in fields
        if key == name
        for item in value.split(",")
        if item.strip(" \t")
    ]


def _keep_alive(fields: Sequence[Field]) -> bool:
    return all(token.lower() != "close" for token, _ in _listed(fields, "connection"))


def _content_length(fields: Sequence[Field], max_body: int) -> int | None:
    values = _listed(fields, "content-length")
    if not values and any(key == "content-length" for key, _, _ in fields):
        off = next(off for key, _, off in fields if key == "content-length")
        raise AdminHttpError("empty value", field="Content-Length", offset=off)
    length: int | None = None
    for text, off in values:
        if _DIGITS.match(text) is None:
            raise AdminHttpError(
                f"{show(text)} is not a decimal number", field="Content-Length", offset=off
            )
        if len(text.lstrip("0")) > _MAX_LENGTH_DIGITS:
            raise AdminHttpError(
                f"{show(text)} exceeds the body limit of {max_body} bytes",
                field="Content-Length",
                offset=off,
                status=413,
            )
        value = int(text)
        if length is not None and value != length:
            raise AdminHttpError(
                f"differing values {length} and {value}", field="Content-Length", offset=off
            )
        length = value
    if length is not None and length > max_body:
        raise AdminHttpError(
            f"{length} exceeds the body limit of {max_body} bytes",
            field="Content-Length",
            offset=values[0][1],
            status=413,
        )
    return length


def _chunked(fields: Sequence[Field]) -> bool:
    codings = _listed(fields, "transfer-encoding")
    if not codings:
        if any(key == "transfer-encoding" for key, _, _ in fields):
            off = next(off for key, _, off in fields if key == "transfer-encoding")
            raise AdminHttpError("empty value", field="Transfer-Encoding", offset=off)
        return False
    names = [coding.partition(";")[0].strip(" \t").lower() for coding, _ in codings]
    last_off = codings[-1][1]
    if names[-1] != "chunked":
        raise AdminHttpError(
            "the final transfer coding is not chunked, so the body has no known end",
            field="Transfer-Encoding",
            offset=last_off,
        )
    if names.count("chunked") > 1:
        raise AdminHttpError("chunked applied twice", field="Transfer-Encoding", offset=last_off)
    for name, (_, off) in zip(names, codings, strict=True):
        if name != "chunked":
            raise AdminHttpError(
                f"transfer coding {show(name)} is not implemented",
                field="Transfer-Encoding",
                offset=off,
                status=501,
            )
    return True


def _framing(
    fields: Sequence[Field], *, max_body: int, bodiless: bool, request: bool, offset: int
) -> tuple[bool, int]:
    if bodiless:
        # RFC 9112 section 6.3 rule 1: these end at the empty line whatever
        # Content-Length or Transfer-Encoding say.
        return False, 0
    names = {key for key, _, _ in fields}
    if "transfer-encoding" in names and "content-length" in names:
        # Refused whatever the values: which one wins is what smuggling
        # attacks exploit (RFC 9112 section 6.3 rule 3).
        raise AdminHttpError(
            "both Transfer-Encoding and Content-Length (a request smuggling pattern)",
            field="Content-Length",
            offset=next(off for key, _, off in fields if key == "content-length"),
        )
    if "transfer-encoding" in names and _chunked(fields):
        return True, 0
    length = _content_length(fields, max_body) if "content-length" in names else None
    if length is not None:
        return False, length
    if request:
        return False, 0
    raise AdminHttpError(
        "neither Content-Length nor chunked: the body could only end with the connection",
        field="header section",
        offset=offset,
        status=411,
    )


def _typed(
    fields: Sequence[Field], lowered: Sequence[Field], names: frozenset[str]
) -> tuple[dict[str, tuple[str, int]], list[tuple[str, str]]]:
    typed: dict[str, tuple[str, int]] = {}
    extra: list[tuple[str, str]] = []
    for (name, value, off), (key, _, _) in zip(fields, lowered, strict=True):
        if key in names:
            if key in typed:
                raise AdminHttpError("header sent twice", field=name, offset=off)
            typed[key] = (value, off)
        elif key not in ("content-length", "transfer-encoding", "connection"):
            extra.append((name, value))
    return typed, extra


def _convert(typed: dict[str, tuple[str, int]], key: str, convert: Callable[[str], Any]) -> Any:
    if key not in typed:
        return None
    value, off = typed[key]
    try:
        return convert(value)
    except AdminHttpError as e:
        raise e.at(off) from None


def _resume(text: str) -> bool:
    flag = text.lower()
    if flag not in ("true", "false"):
        raise AdminHttpError(f"{show(text)} is neither true nor false", field="X-Admin-Resume")
    return flag == "true"


def _value(typed: dict[str, tuple[str, int]], key: str) -> str | None:
    return typed[key][0] if key in typed else None


def _builder(message: Any) -> Callable[[bytes], Any]:
    # The message was made (and every header checked) at the head; the body
    # the parser read is bytes by construction, so it is set on a copy
    # rather than through attrs.evolve, which would run every field's
    # validator a second time for each POST with a body.
    def build(body: bytes) -> Any:
        if not body:
            return message
        made = copy.copy(message)
        object.__setattr__(made, "body", body)
        return made

    return build


def _lowered(fields: Sequence[Field]) -> list[Field]:
    return [(name.lower(), value, off) for name, value, off in fields]


def request_head(
    method: str, target: str, fields: Sequence[Field], *, max_body: int, offset: int
) -> Head:
    """Interpret a request head whose empty line starts at C{offset}."""
    lowered = _lowered(fields)
    typed, extra = _typed(fields, lowered, REQUEST_TYPED)
    chunked, length = _framing(
        lowered, max_body=max_body, bodiless=False, request=True, offset=offset
    )
    keep_alive = _keep_alive(lowered)
    try:
        content_type = _convert(typed, "content-type", ContentType.parse)
        script_status = _convert(typed, "x-admin-script-status", parse_script_status)
        resume = bool(_convert(typed, "x-admin-resume", _resume))
    except AdminHttpError as e:
        raise (e if e.offset is not None else e.at(offset)) from None
    host = _value(typed, "host")
    admin_protocol = _value(typed, "x-admin-protocol")
    admin_from = _value(typed, "x-admin-from")
    headers = tuple(extra)

    def build(body: bytes) -> AdminRequest:
        # Every value was checked above and by the line parser: the request
        # is made once, with its body, without running the validators again.
        return checked_request(
            method=method,
            target=target,
            host=host,
            admin_protocol=admin_protocol,
            admin_from=admin_from,
            content_type=content_type,
            script_status=script_status,
            resume=resume,
            body=body,
            headers=headers,
            keep_alive=keep_alive,
        )

    return Head(chunked, length, keep_alive, build)


def response_head(
    status: int, reason: str, fields: Sequence[Field], *, max_body: int, offset: int
) -> Head:
    """Interpret a response head whose empty line starts at C{offset}.

    1xx, 204 and 304 responses have no body whatever their headers say; the
    framing headers of those are ignored; those of any message are dropped
    once they have been read (the serializers write them again).
    """
    lowered = _lowered(fields)
    typed, extra = _typed(fields, lowered, RESPONSE_TYPED)
    chunked, length = _framing(
        lowered, max_body=max_body, bodiless=not has_body(status), request=False, offset=offset
    )
    keep_alive = _keep_alive(lowered)
    try:
        response = AdminResponse(
            status=status,
            reason=reason,
            admin_protocol=_value(typed, "x-admin-protocol"),
            next_uri=_value(typed, "x-admin-next-uri"),
            content_type=_convert(typed, "content-type", ContentType.parse),
            targeted_application=_convert(typed, "x-admin-targeted-application", parse_aid_uri),
            headers=extra,
            keep_alive=keep_alive,
        )
    except AdminHttpError as e:
        raise (e if e.offset is not None else e.at(offset)) from None
    return Head(chunked, length, keep_alive, _builder(response))
