"""Tests for platform-channel framing (length-prefixed JSON objects)."""

from __future__ import annotations

import json
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec import CodecError
from bipgw.codec.platform import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    FrameError,
    FrameResult,
    encode_frame,
)


def _independent_frame(message: object, **dumps: object) -> bytes:
    """A frame built with the stdlib alone (struct + json), not our encoder."""
    payload = json.dumps(message, **dumps).encode("utf-8")  # type: ignore[arg-type]
    return struct.pack(">I", len(payload)) + payload


def _raw_frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _pieces(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.dictionaries(st.text(max_size=10), _json, max_size=5)


class EncodeFrameTests(SynchronousTestCase):
    """encode_frame writes the documented layout and refuses what peers cannot read."""

    def test_layout(self) -> None:
        """4-byte big-endian payload length, then compact UTF-8 JSON."""
        frame = encode_frame({"op": "open", "msisdn": "491", "n": [1, 2], "é": None})
        payload = '{"op":"open","msisdn":"491","n":[1,2],"é":null}'.encode()
        self.assertEqual(frame, len(payload).to_bytes(4, "big") + payload)

    @given(messages)
    def test_matchesStdlib(self, message: dict[str, object]) -> None:
        """The bytes equal a frame built independently with struct and json."""
        self.assertEqual(
            encode_frame(message),
            _independent_frame(message, separators=(",", ":"), ensure_ascii=False),
        )

    def test_notAnObject(self) -> None:
        """Only mappings can be sent: arrays and scalars are refused."""
        for value in ([1], "x", 3, None):
            with self.assertRaises(FrameError) as ctx:
                encode_frame(value)  # type: ignore[arg-type]
            self.assertEqual(ctx.exception.field, "payload")

    def test_unrepresentable(self) -> None:
        """Non-str keys, NaN, sets, lone surrogates and cycles are refused as FrameError."""
        cyclic: dict[str, object] = {}
        cyclic["self"] = cyclic
        for value in (
            {1: "int key"},
            {"x": float("nan")},
            {"x": float("inf")},
            {"x": {1, 2}},
            {"x": "\ud800"},
            {"x": b"bytes"},
            cyclic,
        ):
            with self.assertRaises(FrameError, msg=repr(value)):
                encode_frame(value)  # type: ignore[arg-type]

    def test_oversizeRefused(self) -> None:
        """A payload of exactly max_frame is sent; one byte more is refused, naming length."""
        message = {"a": "x" * 10}  # {"a":"xxxxxxxxxx"} = 18 bytes
        self.assertEqual(len(encode_frame(message, max_frame=18)), 22)
        with self.assertRaises(FrameError) as ctx:
            encode_frame(message, max_frame=17)
        self.assertEqual(ctx.exception.field, "length")
        self.assertIn("18 bytes", str(ctx.exception))

    def test_defaultLimit(self) -> None:
        """The default limit is 1 MiB of payload."""
        self.assertEqual(DEFAULT_MAX_FRAME, 1024 * 1024)
        big = {"a": "x" * (DEFAULT_MAX_FRAME - 8)}
        self.assertEqual(len(encode_frame(big)), DEFAULT_MAX_FRAME + 4)
        self.assertRaises(FrameError, encode_frame, {"a": "x" * (DEFAULT_MAX_FRAME - 7)})

    def test_badLimit(self) -> None:
        """A limit that the 4-byte prefix cannot express is a programming error."""
        self.assertRaises(ValueError, encode_frame, {}, max_frame=1 << 32)
        self.assertRaises(ValueError, FrameDecoder, 0)


class FrameDecoderTests(SynchronousTestCase):
    """FrameDecoder.feed returns messages, and per-frame errors, in stream order."""

    @given(st.lists(messages, max_size=6), st.lists(st.integers(min_value=0), max_size=8))
    def test_roundTripAnySplit(self, msgs: list[dict[str, object]], cuts: list[int]) -> None:
        """Encoded messages come back equal, whatever the read boundaries."""
        stream = b"".join(encode_frame(m) for m in msgs)
        decoder = FrameDecoder()
        out: list[FrameResult] = []
        for piece in _pieces(stream, cuts):
            out.extend(decoder.feed(piece))
        self.assertEqual(out, msgs)
        self.assertEqual(decoder.buffered, 0)

    @given(st.lists(messages, min_size=1, max_size=4))
    def test_independentPeer(self, msgs: list[dict[str, object]]) -> None:
        """Frames written by stdlib json (default spacing, ASCII escapes) decode."""
        stream = b"".join(_independent_frame(m, indent=1) for m in msgs)
        self.assertEqual(FrameDecoder().feed(stream), msgs)

    def test_byteAtATime(self) -> None:
        """Feeding one byte at a time yields each message when its last byte arrives."""
        decoder = FrameDecoder()
        frame = encode_frame({"op": "apdu", "c": "00a4040000"})
        results = [decoder.feed(frame[i : i + 1]) for i in range(len(frame))]
        self.assertEqual(results[:-1], [[]] * (len(frame) - 1))
        self.assertEqual(results[-1], [{"op": "apdu", "c": "00a4040000"}])

    def test_badJsonThenGood(self) -> None:
        """A bad JSON frame is reported in place and the next frame still decodes."""
        stream = _raw_frame(b'{"a":') + encode_frame({"b": 2})
        decoder = FrameDecoder()
        [bad, good] = decoder.feed(stream)
        self.assertIsInstance(bad, FrameError)
        assert isinstance(bad, FrameError)
        self.assertEqual(bad.field, "payload")
        self.assertIn("invalid JSON", bad.reason)
        self.assertEqual(bad.offset, 4 + 5)
        self.assertEqual(good, {"b": 2})
        self.assertEqual(decoder.feed(encode_frame({"c": 3})), [{"c": 3}])

    def test_jsonErrorOffsetInBytes(self) -> None:
        """The JSON error offset counts stream bytes, not characters, across frames."""
        first = encode_frame({"x": 1})
        bad = '{"é€":1 x}'.encode()
        [ok, err] = FrameDecoder().feed(first + _raw_frame(bad))
        self.assertEqual(ok, {"x": 1})
        assert isinstance(err, FrameError)
        self.assertEqual(err.offset, len(first) + 4 + bad.index(b"x}"))

    def test_invalidUtf8(self) -> None:
        """Invalid UTF-8 is reported with the offset of the bad byte in the stream."""
        payload = b'{"a":"\xc3\xa9\xff"}'
        [err, ok] = FrameDecoder().feed(_raw_frame(payload) + encode_frame({}))
        assert isinstance(err, FrameError)
        self.assertIn("UTF-8", err.reason)
        self.assertEqual(err.offset, 4 + payload.index(b"\xff"))
        self.assertEqual(ok, {})

    def test_notAnObject(self) -> None:
        """Valid JSON that is not an object is reported, saying what it was."""
        kinds = {b"[1]": "an array", b'"s"': "a string", b"null": "null", b"1.5": "a number"}
        decoder = FrameDecoder()
        for payload, kind in kinds.items():
            [err] = decoder.feed(_raw_frame(payload))
            assert isinstance(err, FrameError)
            self.assertIn(f"is {kind}, not an object", err.reason)

    def test_nonStandardJsonRefused(self) -> None:
        """NaN/Infinity, duplicate keys, trailing data and an empty payload are per-frame errors."""
        decoder = FrameDecoder()
        for payload in (b'{"a":NaN}', b'{"a":-Infinity}', b'{"a":1,"a":2}', b"{} {}", b""):
            [err] = decoder.feed(_raw_frame(payload))
            self.assertIsInstance(err, FrameError, payload)
        self.assertEqual(decoder.feed(encode_frame({"ok": True})), [{"ok": True}])

    def test_deepNesting(self) -> None:
        """Deeply nested JSON is a FrameError, not a RecursionError."""
        [err] = FrameDecoder().feed(_raw_frame(b'{"a":' + b"[" * 200_000))
        assert isinstance(err, FrameError)
        self.assertIn("nested too deeply", err.reason)

    def test_oversizeRefusedBeforeBuffering(self) -> None:
        """An announced length above the limit is fatal from the prefix alone."""
        decoder = FrameDecoder(max_frame=16)
        self.assertEqual(decoder.feed(encode_frame({"a": "x"})), [{"a": "x"}])
        with self.assertRaises(FrameError) as ctx:
            decoder.feed((17).to_bytes(4, "big"))
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("length", 13))
        self.assertIn("17", str(ctx.exception))
        self.assertLessEqual(decoder.buffered, 4)
        self.assertRaises(FrameError, decoder.feed, encode_frame({}))

    def test_limitIsPayloadSize(self) -> None:
        """max_frame counts the payload only: exactly max_frame bytes are accepted."""
        decoder = FrameDecoder(max_frame=9)
        self.assertEqual(decoder.feed(_raw_frame(b'{"a":"x"}')), [{"a": "x"}])

    def test_defaultLimitDecoder(self) -> None:
        """By default 1 MiB payloads decode and 1 MiB + 1 is refused at once."""
        decoder = FrameDecoder()
        big = {"a": "x" * (DEFAULT_MAX_FRAME - 8)}
        self.assertEqual(decoder.feed(encode_frame(big)), [big])
        self.assertRaises(FrameError, decoder.feed, (DEFAULT_MAX_FRAME + 1).to_bytes(4, "big"))

    @given(st.lists(st.binary(max_size=24), max_size=6), st.binary(max_size=40))
    def test_randomPayloads(self, payloads: list[bytes], tail: bytes) -> None:
        """Arbitrary payloads give a dict or a FrameError per frame; junk only FrameError."""
        decoder = FrameDecoder(max_frame=32)
        out = decoder.feed(b"".join(_raw_frame(p) for p in payloads))
        self.assertEqual(len(out), len(payloads))
        for payload, item in zip(payloads, out, strict=True):
            if isinstance(item, FrameError):
                self.assertEqual(item.field, "payload")
            else:
                self.assertEqual(item, json.loads(payload))
        try:
            rest = decoder.feed(tail)
        except FrameError:
            return
        for item in rest:
            self.assertIsInstance(item, dict | FrameError)

    @given(st.binary(max_size=200))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes only ever raise FrameError (a CodecError)."""
        decoder = FrameDecoder(max_frame=64)
        try:
            for item in decoder.feed(data):
                self.assertIsInstance(item, dict | FrameError)
        except FrameError as e:
            self.assertIsInstance(e, CodecError)
