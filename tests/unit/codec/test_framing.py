"""Tests for the shared length-prefixed stream splitter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec._errors import CodecError
from bipgw.codec._framing import LengthPrefixedSplitter


class _TestError(CodecError):
    codec = "test"


def _splitter(max_frame: int = 64) -> LengthPrefixedSplitter:
    return LengthPrefixedSplitter(
        prefix_size=4,
        counts_prefix=True,
        min_frame=4,
        max_frame=max_frame,
        error=_TestError,
        field="length",
    )


def _frame(body: bytes) -> bytes:
    return (len(body) + 4).to_bytes(4, "big") + body


class SplitterTests(SynchronousTestCase):
    """Frames come out whole, whatever the read boundaries."""

    @given(
        st.lists(st.binary(max_size=20), max_size=8),
        st.lists(st.integers(min_value=0, max_value=200), max_size=10),
    )
    def test_anySplit(self, bodies: list[bytes], cuts: list[int]) -> None:
        """Any split of the stream yields the same frames in order."""
        stream = b"".join(_frame(b) for b in bodies)
        points = sorted({c % (len(stream) + 1) for c in cuts})
        pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
        s = _splitter()
        out: list[bytes] = []
        for p in pieces:
            out.extend(s.feed(p))
        self.assertEqual(out, [_frame(b) for b in bodies])
        self.assertEqual(s.buffered, 0)

    def test_oversizedRefusedBeforeBuffering(self) -> None:
        """A length beyond the limit is refused from the prefix alone, naming it."""
        s = _splitter(max_frame=64)
        with self.assertRaises(_TestError) as ctx:
            s.feed((1 << 31).to_bytes(4, "big"))
        self.assertIn("'length'", str(ctx.exception))
        self.assertIn("offset 0", str(ctx.exception))
        self.assertRaises(_TestError, s.feed, b"more")

    def test_tooShortRefused(self) -> None:
        """A length smaller than the prefix itself is an error, not a loop."""
        s = _splitter()
        s.feed(_frame(b"ok"))
        with self.assertRaises(_TestError) as ctx:
            s.feed(b"\x00\x00\x00\x02")
        self.assertEqual(ctx.exception.offset, 6)

    def test_framesBeforeBadLengthKept(self) -> None:
        """Frames completed before a bad length in the same read are returned;
        the error comes with the next call."""
        s = _splitter(max_frame=64)
        out = s.feed(_frame(b"a") + _frame(b"b") + (1 << 20).to_bytes(4, "big"))
        self.assertEqual(out, [_frame(b"a"), _frame(b"b")])
        with self.assertRaises(_TestError) as ctx:
            s.feed(b"")
        self.assertEqual(ctx.exception.offset, 10)

    def test_boundsInLengthUnit(self) -> None:
        """When the length excludes the prefix, the message's bounds do too."""
        s = LengthPrefixedSplitter(
            prefix_size=4,
            counts_prefix=False,
            min_frame=4,
            max_frame=20,
            error=_TestError,
            field="length",
        )
        with self.assertRaises(_TestError) as ctx:
            s.feed((17).to_bytes(4, "big"))
        self.assertIn("outside [0, 16]", str(ctx.exception))

    def test_errorPickles(self) -> None:
        """Codec errors survive pickling (they cross process boundaries)."""
        import pickle

        e = pickle.loads(pickle.dumps(_TestError("bad", field="f", offset=3)))
        self.assertEqual((e.reason, e.field, e.offset), ("bad", "f", 3))
