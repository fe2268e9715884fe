"""Typed values of the X-Admin-* and Content-Type headers of GP Amendment B.

The session logic wants to ask "did the script succeed?" or "which security
domain is targeted?", not to compare header strings, so the codec turns the
header texts into typed values here, and back into canonical text for sending.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Final

from attrs import field, frozen

from bipgw.codec.admin_http._errors import AdminHttpError

X_ADMIN_PROTOCOL: Final = "globalplatform-remote-admin/1.0"
"""The X-Admin-Protocol value of every Amd B request and response."""

_TOKEN_CHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TOKEN_CHARS + r"\Z")
# Field values: HTAB, SP, VCHAR and obs-text (RFC 9110 section 5.5), read as
# ISO-8859-1 so that every byte maps to one character and back.
_FIELD_CHARS = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
_SHOW = 40


def show(text: str | bytes) -> str:
    """A short repr of peer-supplied text for an error message.

    Error messages end up in operator logs; a hostile peer must not be able
    to write kilobytes into them through one header.
    """
    if len(text) > _SHOW:
        return repr(text[:_SHOW]) + "..."
    return repr(text)


def is_token(text: str) -> bool:
    """Whether C{text} is an RFC 9110 token (header names, methods, codings)."""
    return _TOKEN.match(text) is not None


def check_token(text: str, what: str) -> None:
    """Refuse a header name or method that is not a token."""
    if not isinstance(text, str) or not is_token(text):
        raise AdminHttpError(f"{show(text)} is not an HTTP token", field=what)


def check_field_value(text: str, what: str) -> None:
    """Refuse text that cannot be sent verbatim as a header value.

    CR, LF and other controls would let a value inject header lines; edge
    whitespace would be lost by the receiver, breaking the round trip.
    """
    if not isinstance(text, str) or _FIELD_CHARS.match(text) is None:
        raise AdminHttpError(
            f"value {show(text)} holds a control or non-Latin-1 character", field=what
        )
    if text != text.strip(" \t"):
        raise AdminHttpError(f"value {show(text)} has edge whitespace", field=what)


class ScriptStatus(enum.StrEnum):
    """The X-Admin-Script-Status values a card reports for the last script.

    Only L{OK} means the previous response script ran.  A status the codec
    does not know is kept as its raw text rather than refused (see
    L{parse_script_status}), so this enum never has to be complete.
    """

    OK = "ok"
    UNKNOWN_APPLICATION = "unknown-application"
    NOT_A_SECURITY_DOMAIN = "not-a-security-domain"
    SECURITY_ERROR = "security-error"
    UNAVAILABLE_SE = "unavailable-se"
    TEMPORARILY_UNAVAILABLE_APPLICATION = "temporarily-unavailable-application"
    SCRIPT_FORMAT_ERROR = "script-format-error"


_STATUSES: Final = {s.value: s for s in ScriptStatus}


def parse_script_status(text: str) -> ScriptStatus | str:
    """Read an X-Admin-Script-Status value.

    Known values (compared case-insensitively) become L{ScriptStatus}
    members.  Any other non-empty value is returned as its text: GP keeps
    adding status values (SE-RAM added three), and refusing an unknown one
    would turn a card's failure report into a protocol error the server can
    only answer with 400, losing the report.  Callers treat anything other
    than L{ScriptStatus.OK} as a failed script.

    @raise AdminHttpError: the value is empty or not a valid header value.
    """
    check_field_value(text, "X-Admin-Script-Status")
    if not text:
        raise AdminHttpError("empty script status", field="X-Admin-Script-Status")
    return _STATUSES.get(text.lower(), text)


def _check_params(_: object, __: object, params: tuple[tuple[str, str], ...]) -> None:
    for pair in params:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise AdminHttpError(f"parameter {show(str(pair))} is not a pair", field="Content-Type")
        name, value = pair
        check_token(name, "Content-Type")
        if name != name.lower():
            raise AdminHttpError(
                f"parameter name {show(name)} is not lower case", field="Content-Type"
            )
        if not isinstance(value, str) or _FIELD_CHARS.match(value) is None:
            raise AdminHttpError(
                f"parameter value {show(value)} holds a control character", field="Content-Type"
            )


def _check_media_type(_: object, __: object, media_type: str) -> None:
    kind, slash, sub = media_type.partition("/") if isinstance(media_type, str) else ("", "", "")
    if not slash or not is_token(kind) or not is_token(sub) or media_type != media_type.lower():
        raise AdminHttpError(
            f"media type {show(media_type)} is not a lower-case 'type/subtype'",
            field="Content-Type",
        )


def _to_tuple(params: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(params)


_MEDIA_RE = re.compile(rf"[ \t]*({_TOKEN_CHARS})/({_TOKEN_CHARS})[ \t]*")
_PARAM_RE = re.compile(
    rf';[ \t]*(?:({_TOKEN_CHARS})[ \t]*=[ \t]*({_TOKEN_CHARS}|"(?:[^"\\]|\\.)*"))?[ \t]*'
)
_QUOTED_PAIR = re.compile(r"\\(.)")


@frozen
class ContentType:
    """A media type with its parameters, compared as HTTP compares them.

    Type, subtype and parameter names are case-insensitive, so they are
    stored lower-cased; parameter values keep their case and order.  Amd B
    cards are known to vary spacing and case, hence the tolerant L{parse}.

    @ivar media_type: C{"type/subtype"}, lower case.
    @ivar params: C{(name, value)} pairs in order, names lower case, values
        unquoted.
    """

    media_type: str = field(validator=_check_media_type)
    params: tuple[tuple[str, str], ...] = field(
        default=(), converter=_to_tuple, validator=_check_params
    )

    @classmethod
    def parse(cls, text: str) -> ContentType:
        """Read a Content-Type value, tolerating whitespace around C{;} and C{=}.

        A card sends the same one or two values on every POST, so the values
        read are remembered (the first L{_PARSED_KEPT} distinct texts, so a
        peer sending new ones cannot grow the memory).

        @raise AdminHttpError: the text is not C{type/subtype *(; name=value)}.
        """
        known = _PARSED.get(text)
        if known is not None and cls is ContentType:
            return known
        parsed = cls._parse(text)
        if cls is ContentType and len(_PARSED) < _PARSED_KEPT:
            _PARSED[text] = parsed
        return parsed

    @classmethod
    def _parse(cls, text: str) -> ContentType:
        match = _MEDIA_RE.match(text)
        if match is None:
            raise AdminHttpError(f"{show(text)} is not a media type", field="Content-Type")
        media = f"{match.group(1)}/{match.group(2)}".lower()
        params: list[tuple[str, str]] = []
        pos = match.end()
        while pos < len(text):
            param = _PARAM_RE.match(text, pos)
            if param is None or param.end() == pos:
                raise AdminHttpError(
                    f"bad parameter syntax at character {pos} of {show(text)}",
                    field="Content-Type",
                )
            name, value = param.group(1), param.group(2)
            if name is not None:
                if value.startswith('"'):
                    value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
                params.append((name.lower(), value))
            pos = param.end()
        return cls(media, tuple(params))

    def param(self, name: str) -> str | None:
        """The value of parameter C{name} (any case), or C{None}."""
        wanted = name.lower()
        for key, value in self.params:
            if key == wanted:
                return value
        return None

    def __str__(self) -> str:
        """The canonical header text: no spaces, values quoted only if needed."""
        parts = [self.media_type]
        for name, value in self.params:
            if not is_token(value):
                value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            parts.append(f"{name}={value}")
        return ";".join(parts)


_PARSED: dict[str, ContentType] = {}
_PARSED_KEPT: Final = 64


GP_COMMAND: Final = ContentType(
    "application/vnd.globalplatform.card-content-mgt", (("version", "1.0"),)
)
"""Content type of the server's command script (Amd B)."""
GP_RESPONSE: Final = ContentType(
    "application/vnd.globalplatform.card-content-mgt-response", (("version", "1.0"),)
)
"""Content type of the card's response script (Amd B)."""
ETSI_COMMAND: Final = ContentType("application/vnd.etsi.scp.command-data", (("version", "1.0"),))
"""Content type of an ETSI RFM/RAM command script over HTTPS (TS 102 226)."""
ETSI_RESPONSE: Final = ContentType("application/vnd.etsi.scp.response-data", (("version", "1.0"),))
"""Content type of an ETSI RFM/RAM response script over HTTPS (TS 102 226)."""


_AID_URI = re.compile(r"//aid/([0-9A-Fa-f]{10})(?:/((?:[0-9A-Fa-f]{2}){0,11}))?\Z", re.IGNORECASE)


def check_aid(aid: bytes, what: str = "AID") -> None:
    """Refuse an AID outside ISO 7816-5's 5 to 16 bytes (a 5-byte RID + PIX)."""
    if not isinstance(aid, bytes) or not 5 <= len(aid) <= 16:
        raise AdminHttpError("an AID is a 5-byte RID plus at most 11 bytes of PIX", field=what)


def parse_aid_uri(text: str) -> bytes:
    """Read C{//aid/<RID>/<PIX>} (X-Admin-Targeted-Application) as AID bytes.

    Like the rest of a URI's scheme-less authority, C{aid} and the hex are
    case-insensitive.  An AID that is only a RID may be written
    C{//aid/<RID>/} or C{//aid/<RID>}.

    @raise AdminHttpError: not of that form.
    """
    match = _AID_URI.match(text)
    if match is None:
        raise AdminHttpError(
            f"{show(text)} is not '//aid/<10 hex RID>/<hex PIX>'",
            field="X-Admin-Targeted-Application",
        )
    return bytes.fromhex(match.group(1) + (match.group(2) or ""))


def format_aid_uri(aid: bytes) -> str:
    """Write AID bytes as C{//aid/<RID>/<PIX>}, upper-case hex as in Amd B.

    The PIX separator is always written, even for an empty PIX, so the text
    always has the two components the Amd B grammar names.
    """
    check_aid(aid, "X-Admin-Targeted-Application")
    return f"//aid/{aid[:5].hex().upper()}/{aid[5:].hex().upper()}"
