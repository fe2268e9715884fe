"""The one error class of the SCP81 admin HTTP codec.

A card's HTTP stack is small and occasionally odd, and the server must answer
a broken request with *some* status before closing the TLS session, so every
refusal carries the status a server would send for it.  Response parsing
reuses the same checks; there the status only classifies the defect.
"""

from __future__ import annotations

from typing import ClassVar

from bipgw.codec._errors import CodecError


class AdminHttpError(CodecError):
    """An admin HTTP message that cannot be parsed, or a value that cannot be sent.

    @ivar status: the HTTP status a server should answer with before closing
        the connection: 400 (malformed), 411 (no usable length), 413 (body
        over the limit), 414 (request line over the limit), 431 (header
        section over the limits), 501 (method or transfer coding not
        implemented) or 505 (not HTTP/1.1).
    """

    codec: ClassVar[str] = "admin HTTP"

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        offset: int | None = None,
        status: int = 400,
    ) -> None:
        self.status = status
        super().__init__(reason, field=field, offset=offset)

    def at(self, offset: int) -> AdminHttpError:
        """The same refusal, located at C{offset} in the stream.

        Value checks run without knowing where the value came from; the
        parser adds the position of the header line before raising.
        """
        return type(self)(self.reason, field=self.field, offset=offset, status=self.status)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.reason, self.field, self.offset, self.status))


def _rebuild(reason: str, field: str | None, offset: int | None, status: int) -> AdminHttpError:
    return AdminHttpError(reason, field=field, offset=offset, status=status)
