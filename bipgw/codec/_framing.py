"""Splitting a byte stream into length-prefixed frames.

SMPP PDUs and platform-channel frames both start with a big-endian length;
this is the one buffer both decoders use, so the "arbitrary split" and
"hostile length" behaviour is written (and tested) once.
"""

from __future__ import annotations

from collections.abc import Callable

from bipgw.codec._errors import CodecError


class LengthPrefixedSplitter:
    """Accumulate bytes and cut complete frames off the front.

    @param prefix_size: bytes of the length field (at the start of a frame).
    @param counts_prefix: C{True} when the length counts the prefix itself
        (SMPP's command_length), C{False} when it counts only what follows.
    @param min_frame: the smallest acceptable total frame size.
    @param max_frame: the largest acceptable total frame size; a larger
        announced length is refused before any of the body is buffered.
    @param error: the codec's error class, raised on a bad length.
    @param field: the name of the length field, for error messages.
    """

    __slots__ = (
        "_broken",
        "_buffer",
        "_consumed",
        "_counts_prefix",
        "_error",
        "_field",
        "_max",
        "_min",
        "_prefix",
    )

    def __init__(
        self,
        *,
        prefix_size: int,
        counts_prefix: bool,
        min_frame: int,
        max_frame: int,
        error: Callable[..., CodecError],
        field: str,
    ) -> None:
        self._buffer = bytearray()
        self._consumed = 0
        self._prefix = prefix_size
        self._counts_prefix = counts_prefix
        self._min = min_frame
        self._max = max_frame
        self._error = error
        self._field = field
        self._broken: CodecError | None = None

    @property
    def buffered(self) -> int:
        """How many bytes are held waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add C{data}; return every frame now complete (prefix included).

        A bad length is refused from the prefix alone, before any of the
        body is buffered.  Frames completed before it in the same call are
        still returned (accepted data is never dropped) and the error is
        raised by the next call.  The stream cannot be resynchronised, so
        every later call raises the same error again.
        """
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        frames: list[bytes] = []
        buf = self._buffer
        pos = 0
        prefix = self._prefix
        while len(buf) - pos >= prefix:
            length = int.from_bytes(buf[pos : pos + prefix], "big")
            total = length if self._counts_prefix else length + prefix
            if total < self._min or total > self._max:
                # Report the bounds in the unit the length field uses.
                adjust = 0 if self._counts_prefix else prefix
                self._broken = self._error(
                    f"frame length {length} outside [{self._min - adjust}, {self._max - adjust}]",
                    field=self._field,
                    offset=self._consumed + pos,
                )
                del buf[:pos]
                self._consumed += pos
                if frames:
                    # Hand over what was complete before the bad length;
                    # the next call raises.
                    return frames
                raise self._broken
            if len(buf) - pos < total:
                break
            frames.append(bytes(buf[pos : pos + total]))
            pos += total
        if pos:
            del buf[:pos]
            self._consumed += pos
        return frames
