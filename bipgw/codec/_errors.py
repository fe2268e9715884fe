"""The error family shared by every codec.

Each codec module derives one subclass (``SmppError``, ``OtaError`` ...) so a
caller can catch exactly one codec's failures, or L{CodecError} for all of
them.  Messages always say *which field*, *where* (byte offset, when there is
one) and *why*, because the person reading them is an operator looking at a
log line about a malformed PDU from a partner they do not control.
"""

from __future__ import annotations

from typing import ClassVar

from bipgw.errors import BipGwError


class CodecError(BipGwError, ValueError):
    """Bytes that cannot be decoded, or a value that cannot be encoded.

    @ivar reason: why the input was refused, in words.
    @ivar field: the protocol field concerned, if known.
    @ivar offset: the byte offset in the input where the problem starts.
    """

    codec: ClassVar[str] = "codec"

    def __init__(self, reason: str, *, field: str | None = None, offset: int | None = None) -> None:
        self.reason = reason
        self.field = field
        self.offset = offset
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.field is not None:
            where.append(f"field {self.field!r}")
        if self.offset is not None:
            where.append(f"at offset {self.offset}")
        prefix = f"{self.codec}: " + (" ".join(where) + ": " if where else "")
        return prefix + self.reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.reason, self.field, self.offset))


def _rebuild(
    cls: type[CodecError], reason: str, field: str | None, offset: int | None
) -> CodecError:
    return cls(reason, field=field, offset=offset)
