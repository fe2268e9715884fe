# -*- test-case-name: tests.unit.codec.test_platform_frames -*-
"""Platform-channel framing: length-prefixed JSON objects.

Business platforms talk to the gateway over a plain byte stream (TCP or
TLS).  Each message is one frame::

    length (4 bytes, big-endian, counts the payload only) | payload

where the payload is a UTF-8 JSON object.  A length prefix (rather than
newline-delimited JSON) lets a reader refuse an oversized message from its
first four bytes, before buffering any of it, and never scan for
delimiters.

Two kinds of bad input are treated differently, on purpose:

  - a bad I{length} (more than the limit) leaves no way to find the next
    frame, so it is fatal: L{FrameDecoder.feed} raises L{FrameError} now
    and on every later call, and the connection should be dropped;
  - a bad I{payload} (not UTF-8, not JSON, not an object) sits in a frame
    whose end is known, so only that frame is lost: C{feed} returns a
    L{FrameError} in its place, in order, and carries on with the next
    frame.  The caller can answer the error and keep the session alive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, TypeAlias

from bipgw.codec._errors import CodecError
from bipgw.codec._framing import LengthPrefixedSplitter

__all__ = [
    "DEFAULT_MAX_FRAME",
    "PREFIX_SIZE",
    "FrameDecoder",
    "FrameError",
    "FrameResult",
    "encode_frame",
]

DEFAULT_MAX_FRAME: Final = 1 << 20
"""Largest payload accepted by default, in bytes (1 MiB; prefix not counted)."""
PREFIX_SIZE: Final = 4
"""Bytes of the big-endian length prefix."""
_MAX_LENGTH_FIELD: Final = (1 << 32) - 1


class FrameError(CodecError):
    """A platform-channel frame that cannot be encoded or decoded."""

    codec = "platform frame"


FrameResult: TypeAlias = dict[str, object] | FrameError
"""One item returned by L{FrameDecoder.feed}: a message, or why a frame was bad."""


def _check_max(max_frame: int) -> int:
    if type(max_frame) is not int or not 2 <= max_frame <= _MAX_LENGTH_FIELD:
        raise ValueError(f"max_frame must be an int in 2..{_MAX_LENGTH_FIELD}, got {max_frame!r}")
    return max_frame


def _no_constant(name: str) -> object:
    # Python's json accepts NaN/Infinity, which are not JSON; a peer built on
    # any other JSON library could not send or read them.
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # RFC 8259 leaves duplicate names undefined; two readers of one frame
    # could disagree about its meaning, so refuse instead of keeping the last.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=True, separators=(",", ":")
)


def encode_frame(message: Mapping[str, object], *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Serialise one message as a complete frame (prefix included).

    The JSON is compact and UTF-8 (not ASCII-escaped) to keep frames small.
    Values must be JSON-compatible; as with any JSON, tuples come back as
    lists.

    @param message: a mapping with string keys; anything else is refused
        because the receiving side only accepts objects.
    @param max_frame: the largest payload to produce; use the peer's limit.
    @raise FrameError: not a string-keyed mapping, a value JSON cannot
        represent (NaN, a set, a lone surrogate ...), or a payload larger
        than C{max_frame}.
    """
    _check_max(max_frame)
    if not isinstance(message, Mapping):
        raise FrameError(
            f"a message must be a JSON object (mapping), got {type(message).__name__}",
            field="payload",
        )
    for key in message:
        if type(key) is not str:
            raise FrameError(f"object keys must be str, got {key!r}", field="payload")
    try:
        payload = _ENCODER.encode(dict(message)).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise FrameError(f"not representable as JSON: {e}", field="payload") from None
    if len(payload) > max_frame:
        raise FrameError(
            f"payload of {len(payload)} bytes exceeds the limit of {max_frame}", field="length"
        )
    return len(payload).to_bytes(PREFIX_SIZE, "big") + payload


class FrameDecoder:
    """Incremental decoder for a platform-channel byte stream.

    Feed it whatever the transport delivers; it returns each complete
    frame's result in stream order.  See the module docstring for which
    errors are fatal and which are per frame.

    @param max_frame: the largest payload accepted, in bytes.  A larger
        announced length is refused from the prefix alone.
    """

    __slots__ = ("_splitter", "_start")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        _check_max(max_frame)
        self._splitter = LengthPrefixedSplitter(
            prefix_size=PREFIX_SIZE,
            counts_prefix=False,
            min_frame=PREFIX_SIZE,
            max_frame=max_frame + PREFIX_SIZE,
            error=FrameError,
            field="length",
        )
        # Stream offset of the next frame, so per-frame errors point into
        # the stream as a packet capture would show it.
        self._start = 0

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return self._splitter.buffered

    def feed(self, data: bytes) -> list[FrameResult]:
        """Add C{data}; return the result of every frame now complete.

        Each item is the decoded message (a C{dict}), or a L{FrameError}
        saying why that one frame was refused; later frames still decode.

        @raise FrameError: an announced length above the limit.  The stream
            cannot be resynchronised, so every later call raises it again.
            Frames that completed earlier in the I{same} call are dropped
            with it (the shared splitter raises before returning them);
            frames returned by earlier calls are unaffected.
        """
        out: list[FrameResult] = []
        for frame in self._splitter.feed(data):
            out.append(self._decode(frame, self._start))
            self._start += len(frame)
        return out

    @staticmethod
    def _decode(frame: bytes, start: int) -> FrameResult:
        base = start + PREFIX_SIZE
        try:
            text = frame[PREFIX_SIZE:].decode("utf-8")
        except UnicodeDecodeError as e:
            return FrameError(f"invalid UTF-8 ({e.reason})", field="payload", offset=base + e.start)
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError as e:
            return FrameError(
                f"invalid JSON: {e.msg} (line {e.lineno} column {e.colno})",
                field="payload",
                offset=base + len(text[: e.pos].encode("utf-8")),
            )
        except ValueError as e:
            return FrameError(f"invalid JSON: {e}", field="payload", offset=base)
        except RecursionError:
            return FrameError("JSON nested too deeply", field="payload", offset=base)
        if not isinstance(value, dict):
            return FrameError(
                f"JSON payload is {_kind(value)}, not an object", field="payload", offset=base
            )
        return value


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
