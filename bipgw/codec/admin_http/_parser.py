"""Incremental HTTP/1.1 parsers for the card's requests and the server's responses.

An Amd B session is one keep-alive connection carrying several POSTs, read
from TLS records that cut the stream anywhere, so the parsers take bytes as
they come and return each message once complete.  Decisions, all documented
on L{RequestParser}: bare LF line ends are accepted (RFC 9112 section 2.2
allows it, and a card's small HTTP stack gains nothing from being refused
over it) while the serializers always write CRLF; only HTTP/1.1 is spoken;
every size is bounded before it is buffered; after an error the parser
stays broken, because nothing in HTTP/1.1 marks where the next message
would start.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar

from bipgw.codec.admin_http._errors import AdminHttpError
from bipgw.codec.admin_http._head import (
    Field,
    Head,
    parse_field_line,
    parse_request_line,
    parse_status_line,
    request_head,
    response_head,
)
from bipgw.codec.admin_http._headers import show
from bipgw.codec.admin_http._messages import AdminRequest, AdminResponse

DEFAULT_MAX_BODY: Final = 1 << 20
"""The default body limit: a RAM script loading an applet fits, a flood does not."""

_M = TypeVar("_M", AdminRequest, AdminResponse)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;.*)?\Z", re.DOTALL)
# More hex digits than this cannot be a chunk we accept; refused unconverted.
_MAX_CHUNK_DIGITS: Final = 16
# A body of one chunk, as cards send their response scripts: a bare size line.
_ONE_CHUNK = re.compile(rb"([0-9A-Fa-f]{1,8})\r\n")
_LAST_CHUNK: Final = b"\r\n0\r\n\r\n"

_HEAD, _BODY, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _CLOSED = range(7)


class _Dialect(Protocol):
    """What differs between requests and responses: the start line and the
    head built from it.  The parser holds one and asks it; the framing rules
    (line ends, limits, bodies, chunks) are the parser's own."""

    def parse_start(self, line: bytes, offset: int) -> tuple[object, object]:
        """Parse the start line found at stream C{offset}.

        @raise AdminHttpError: for a malformed line.
        """
        ...

    def start_too_long(self, limit: int, offset: int) -> AdminHttpError:
        """The error for a start line longer than C{limit} bytes."""
        ...

    def head(
        self, start: tuple[object, object], fields: list[Field], *, max_body: int, offset: int
    ) -> Head:
        """The message head from its start line and header fields.

        @raise AdminHttpError: for framing the dialect refuses.
        """
        ...


class _Parser(Generic[_M]):
    """The shared state machine: head lines, then a body, then the next head.

    @param dialect: parses start lines and builds heads (requests or responses).
    """

    def __init__(
        self,
        dialect: _Dialect,
        *,
        max_header_bytes: int = 8192,
        max_headers: int = 64,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        for name, limit in (
            ("max_header_bytes", max_header_bytes),
            ("max_headers", max_headers),
            ("max_body", max_body),
        ):
            if not isinstance(limit, int) or limit < 1:
                raise ValueError(f"{name} must be a positive int, not {limit!r}")
        self._dialect = dialect
        self._max_head = max_header_bytes
        self._max_headers = max_headers
        self._max_body = max_body
        self._buf = bytearray()
        self._consumed = 0  # stream offset of self._buf[0]
        self._scanned = 0  # bytes of the current partial line known to hold no LF
        self._state = _HEAD
        self._start: tuple[object, object] | None = None
        self._fields: list[Field] = []
        self._head_bytes = 0
        self._message_at = 0
        self._body = bytearray()
        self._remaining = 0
        self._build: Callable[[bytes], _M] | None = None
        self._keep_alive = True
        self._broken: AdminHttpError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a message not yet complete (raw input plus body so far)."""
        return len(self._buf) + len(self._body)

    def feed(self, data: bytes) -> list[_M]:
        """Add C{data}; return every message now complete, in order.

        @raise AdminHttpError: the stream is malformed or over a limit; every
            later call raises the same error, since HTTP cannot resynchronise.
            Messages completed earlier in the same call are dropped with it.
        """
        if self._broken is not None:
            raise self._broken
        self._buf += data
        out: list[_M] = []
        pos = 0
        try:
            while True:
                after = self._step(pos, out)
                if after is None:
                    break
                pos = after
        except AdminHttpError as e:
            self._broken = e
            self._buf.clear()
            self._body.clear()
            self._fields.clear()
            raise
        del self._buf[:pos]
        self._consumed += pos
        return out

    def finish(self) -> None:
        """Say the stream has ended.

        @raise AdminHttpError: it ended inside a message (or the parser was
            already broken), so the connection lost a request or response.
        """
        if self._broken is not None:
            raise self._broken
        partial = self._state not in (_HEAD, _CLOSED) or self._start is not None
        if partial or self._buf.strip(b"\r\n"):
            self._broken = AdminHttpError(
                "the stream ended inside a message",
                field="stream",
                offset=self._message_at,
            )
            raise self._broken

    def _start_too_long(self, offset: int) -> AdminHttpError:
        return self._dialect.start_too_long(self._max_head, offset)

    def _line(self, pos: int, limit: int, too_long: Callable[[int], AdminHttpError]) -> int | None:
        """Find the end of the line at C{pos}; C{None} if it is not all here.

        C{limit} bounds the line with its terminator; it is enforced as soon
        as that many bytes are buffered, not when the line ends.
        """
        buf = self._buf
        nl = buf.find(b"\n", pos + self._scanned)
        if nl < 0:
            self._scanned = len(buf) - pos
            if self._scanned >= limit:
                raise too_long(self._consumed + pos)
            return None
        self._scanned = 0
        if nl + 1 - pos > limit:
            raise too_long(self._consumed + pos)
        cr = buf.find(b"\r", pos, nl)
        if 0 <= cr < nl - 1:
            raise AdminHttpError(
                "a CR not followed by LF inside a line",
                field="line end",
                offset=self._consumed + cr,
            )
        return nl + 1

    @staticmethod
    def _text(buf: bytearray, pos: int, end: int) -> bytes:
        stop = end - 2 if end - pos >= 2 and buf[end - 2] == 0x0D else end - 1
        return bytes(buf[pos:stop])

    def _step(self, pos: int, out: list[_M]) -> int | None:
        state = self._state
        if state == _HEAD and self._start is None:
            whole = self._whole_head(pos, out)
            if whole is not None:
                return whole
        if state in (_HEAD, _TRAILER):
            return self._head_line(pos, out)
        if state in (_BODY, _CHUNK_DATA):
            return self._body_bytes(pos, out)
        if state == _CHUNK_LINE:
            whole = self._whole_chunked(pos, out)
            if whole is not None:
                return whole
            return self._chunk_line(pos)
        if state == _CHUNK_END:
            return self._chunk_end(pos)
        return self._after_close(pos)

    def _head_too_long(self, offset: int) -> AdminHttpError:
        what = "trailer section" if self._state == _TRAILER else "header section"
        return AdminHttpError(
            f"longer than {self._max_head} bytes", field=what, offset=offset, status=431
        )

    def _head_line(self, pos: int, out: list[_M]) -> int | None:
        budget = self._max_head - self._head_bytes
        too_long = (
            self._start_too_long
            if self._start is None and self._state == _HEAD
            else self._head_too_long
        )
        end = self._line(pos, budget, too_long)
        if end is None:
            return None
        offset = self._consumed + pos
        self._head_bytes += end - pos
        line = self._text(self._buf, pos, end)
        if self._state == _HEAD and self._start is None:
            if line:  # empty lines before a start line are skipped (RFC 9112 2.2)
                self._message_at = offset
                self._start = self._dialect.parse_start(line, offset)
            return end
        if line:
            if len(self._fields) >= self._max_headers:
                raise AdminHttpError(
                    f"more than {self._max_headers} header lines",
                    field="trailer section" if self._state == _TRAILER else "header section",
                    offset=offset,
                    status=431,
                )
            name, value = parse_field_line(line, offset)
            self._fields.append((name, value, offset))
            return end
        if self._state == _TRAILER:
            # Trailers were checked and counted; nothing in Amd B uses them.
            self._complete(out)
            return end
        self._finish_head(offset, out)
        return end

    def _whole_head(self, pos: int, out: list[_M]) -> int | None:
        """Read a head that is all in the buffer at once; C{None} to go line by line.

        The usual case (a card's POST arrives in one TLS record) costs one
        search and one split instead of a state machine step per line.  It
        is taken only when no line rule can be at stake: the head starts
        with its start line, ends with CRLF CRLF within the header limit,
        and every line ends with CRLF (no bare LF or CR); each line then
        gets the same parsing, in the same order, as L{_head_line} would
        give it, so errors and their offsets are the same.
        """
        buf = self._buf
        if self._scanned or len(buf) - pos < 4 or buf[pos] in (0x0D, 0x0A):
            return None
        blank = buf.find(b"\r\n\r\n", pos, pos + self._max_head)
        if blank < 0:
            return None
        end = blank + 4
        raw = bytes(buf[pos:blank])
        lines = raw.split(b"\r\n")
        if raw.count(b"\n") != len(lines) - 1 or raw.count(b"\r") != len(lines) - 1:
            return None
        if len(lines) - 1 > self._max_headers:
            return None
        offset = self._consumed + pos
        self._message_at = offset
        start = self._dialect.parse_start(lines[0], offset)
        fields: list[Field] = []
        offset += len(lines[0]) + 2
        for line in lines[1:]:
            name, value = parse_field_line(line, offset)
            fields.append((name, value, offset))
            offset += len(line) + 2
        self._start = start
        self._fields = fields
        self._head_bytes = end - pos
        self._finish_head(offset, out)
        return end

    def _finish_head(self, offset: int, out: list[_M]) -> None:
        """The empty line at C{offset} ended the head: read how the body comes."""
        assert self._start is not None
        head = self._dialect.head(self._start, self._fields, max_body=self._max_body, offset=offset)
        self._start = None
        self._fields = []
        self._head_bytes = 0
        self._build = head.build
        self._keep_alive = head.keep_alive
        if head.chunked:
            self._state = _CHUNK_LINE
        elif head.length:
            self._state = _BODY
            self._remaining = head.length
        else:
            self._complete(out)

    def _complete(self, out: list[_M]) -> None:
        assert self._build is not None
        out.append(self._build(bytes(self._body)))
        self._body.clear()
        self._build = None
        self._fields = []
        self._head_bytes = 0
        self._state = _HEAD if self._keep_alive else _CLOSED

    def _body_bytes(self, pos: int, out: list[_M]) -> int | None:
        take = min(self._remaining, len(self._buf) - pos)
        if take == 0:
            return None
        self._body += self._buf[pos : pos + take]
        self._remaining -= take
        if self._remaining == 0:
            if self._state == _BODY:
                self._complete(out)
            else:
                self._state = _CHUNK_END
        return pos + take

    def _whole_chunked(self, pos: int, out: list[_M]) -> int | None:
        """Read a chunked body of one chunk that is all in the buffer; C{None}
        to go step by step.

        Cards send a response script as one chunk, then the last chunk and
        no trailer: C{<hex size> CRLF <data> CRLF 0 CRLF CRLF}.  That exact
        form, within the body limit, is read at once; it is what the steps
        would read from it (a size line without extensions, the data, its
        CRLF, the last chunk, an empty trailer section), so anything else
        (extensions, bare LFs, trailers, a size over the limit, a body not
        all here) takes the steps and their errors.
        """
        if self._body:
            return None
        buf = self._buf
        match = _ONE_CHUNK.match(buf, pos)
        if match is None or match.end() - pos > self._max_head:
            return None
        size = int(match.group(1), 16)
        start = match.end()
        end = start + size
        if not 0 < size <= self._max_body or buf[end : end + len(_LAST_CHUNK)] != _LAST_CHUNK:
            return None
        self._scanned = 0
        self._body += buf[start:end]
        self._complete(out)
        return end + len(_LAST_CHUNK)

    def _chunk_line_too_long(self, offset: int) -> AdminHttpError:
        return AdminHttpError(
            f"longer than {self._max_head} bytes", field="chunk size line", offset=offset
        )

    def _chunk_line(self, pos: int) -> int | None:
        end = self._line(pos, self._max_head, self._chunk_line_too_long)
        if end is None:
            return None
        offset = self._consumed + pos
        line = self._text(self._buf, pos, end)
        match = _CHUNK_SIZE.match(line)
        if match is None:
            raise AdminHttpError(
                f"{show(line)} is not a hex chunk size", field="chunk size line", offset=offset
            )
        digits = match.group(1).lstrip(b"0")
        size = int(digits, 16) if 0 < len(digits) <= _MAX_CHUNK_DIGITS else 0
        if len(digits) > _MAX_CHUNK_DIGITS or len(self._body) + size > self._max_body:
            raise AdminHttpError(
                f"chunk of {show(match.group(1))} (hex) bytes takes the body over the"
                f" limit of {self._max_body} bytes",
                field="chunk size line",
                offset=offset,
                status=413,
            )
        if size:
            self._state = _CHUNK_DATA
            self._remaining = size
        else:
            self._state = _TRAILER
        return end

    def _chunk_end(self, pos: int) -> int | None:
        buf = self._buf
        if len(buf) - pos < 1:
            return None
        if buf[pos] == 0x0A:
            self._state = _CHUNK_LINE
            return pos + 1
        if buf[pos] == 0x0D:
            if len(buf) - pos < 2:
                return None
            if buf[pos + 1] == 0x0A:
                self._state = _CHUNK_LINE
                return pos + 2
        raise AdminHttpError(
            "chunk data not followed by CRLF", field="chunk data", offset=self._consumed + pos
        )

    def _after_close(self, pos: int) -> int | None:
        rest = self._buf[pos:]
        if not rest.strip(b"\r\n"):
            return None if not rest else pos + len(rest)
        raise AdminHttpError(
            "data after a message with Connection: close",
            field="stream",
            offset=self._consumed + pos,
        )


class _RequestDialect:
    """The server side's dialect: request lines (method, target)."""

    def parse_start(self, line: bytes, offset: int) -> tuple[object, object]:
        return parse_request_line(line, offset)

    def start_too_long(self, limit: int, offset: int) -> AdminHttpError:
        return AdminHttpError(
            f"longer than {limit} bytes", field="request line", offset=offset, status=414
        )

    def head(
        self, start: tuple[object, object], fields: list[Field], *, max_body: int, offset: int
    ) -> Head:
        method, target = start
        assert isinstance(method, str) and isinstance(target, str)
        return request_head(method, target, fields, max_body=max_body, offset=offset)


class _ResponseDialect:
    """The card side's dialect: status lines (status, reason)."""

    def parse_start(self, line: bytes, offset: int) -> tuple[object, object]:
        return parse_status_line(line, offset)

    def start_too_long(self, limit: int, offset: int) -> AdminHttpError:
        return AdminHttpError(
            f"longer than {limit} bytes", field="status line", offset=offset, status=431
        )

    def head(
        self, start: tuple[object, object], fields: list[Field], *, max_body: int, offset: int
    ) -> Head:
        status, reason = start
        assert isinstance(status, int) and isinstance(reason, str)
        return response_head(status, reason, fields, max_body=max_body, offset=offset)


_REQUEST: Final = _RequestDialect()
_RESPONSE: Final = _ResponseDialect()


class RequestParser(_Parser[AdminRequest]):
    """Split a card's byte stream into L{AdminRequest}s (the server side).

    Accepted: HTTP/1.1 POSTs with a Content-Length body, a chunked body
    (extensions ignored; trailers checked against the header limits and
    dropped) or no framing header (an empty body, as on the first POST);
    empty lines before a request line; bare LF for CRLF anywhere; no Host
    header (C{host} is then C{None}: RFC 9112 wants a 400, but the admin
    server does not route on Host, the trigger parameters may omit it, and
    refusing would end the session for nothing).

    Refused, with the status to answer: another HTTP version (505, HTTP/1.0
    included: it cannot do chunked bodies or default keep-alive, and no Amd
    B card sends it); another method (501); Transfer-Encoding together with
    Content-Length, or differing Content-Lengths (400: smuggling patterns);
    a transfer coding other than chunked (501, or 400 when chunked is not
    last); obsolete line folding, whitespace before a colon, a stray CR
    (400); a request line over C{max_header_bytes} (414), a header section
    over C{max_header_bytes} or C{max_headers} (431); a body over
    C{max_body} (413), refused as soon as the length or chunk size is read;
    any byte other than CR/LF after a request with C{Connection: close}.

    @param max_header_bytes: limit on the request line plus header lines
        (terminators included); also bounds each chunk size line and the
        trailer section.
    @param max_headers: limit on the number of header (or trailer) lines.
    @param max_body: limit on the decoded body.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = 8192,
        max_headers: int = 64,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        super().__init__(
            _REQUEST,
            max_header_bytes=max_header_bytes,
            max_headers=max_headers,
            max_body=max_body,
        )


class ResponseParser(_Parser[AdminResponse]):
    """Split a server's byte stream into L{AdminResponse}s (the card side).

    The same rules as L{RequestParser}, plus: 1xx, 204 and 304 responses end
    at their empty line whatever their framing headers say (1xx interim
    responses are returned like any other; the caller skips them); a
    response that may have a body but has neither Content-Length nor chunked
    coding is refused (status 411), since only closing the connection could
    end it and the Amd B session is one keep-alive connection.  Responses
    to HEAD are not handled: cards only POST.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = 8192,
        max_headers: int = 64,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        super().__init__(
            _RESPONSE,
            max_header_bytes=max_header_bytes,
            max_headers=max_headers,
            max_body=max_body,
        )
