"""Property tests for the SMPP codec: round trips, stream splits, hostile input."""

from __future__ import annotations

import random
from operator import attrgetter
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import (
    PDU_TYPES,
    DeliverSm,
    Pdu,
    PduDecoder,
    SmppError,
    SubmitSm,
    Tlv,
    decode,
    encode,
    response_for_error,
    with_sequence_number,
)
from bipgw.codec.smpp._body import read_mandatory, write_mandatory
from bipgw.codec.smpp._codec import _BY_ID, _LAYOUTS, _fast_mandatory, _fast_read
from tests.unit.codec.test_smpp_strategies import any_pdu, pdus


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


def _headerOnlyResponse(raw: bytes, pdu: Pdu) -> bool:
    """A body-less response the codec tolerates (and re-encodes with its body)."""
    layout = _LAYOUTS[type(pdu)]
    return len(raw) == 16 and pdu.is_response and not layout.header_only


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid PDU with a few bytes changed, cut, inserted or deleted.

    Half the time command_length is then fixed up, so the mutation reaches
    the body parser instead of stopping at the length check.
    """
    raw = bytearray(encode(draw(any_pdu)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["set", "cut", "insert", "delete"]))
        # Mostly in the body: header damage is caught by the length check alone.
        low = 0 if draw(st.integers(min_value=0, max_value=9)) == 0 else min(16, len(raw))
        at = draw(st.integers(min_value=low, max_value=len(raw)))
        if op == "set" and at < len(raw):
            raw[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == "cut":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at : at + draw(st.integers(min_value=1, max_value=8))]
    if draw(st.booleans()) and len(raw) >= 4:
        raw[0:4] = len(raw).to_bytes(4, "big")
    return bytes(raw)


class RoundTripTests(SynchronousTestCase):
    """encode and decode are inverse for every PDU type."""

    @settings(max_examples=50)
    @given(st.data())
    def test_everyTypeRoundTrips(self, data: st.DataObject) -> None:
        """For one drawn PDU of each of the 27 types, decode(encode(pdu)) == pdu.

        Each example covers every type, so 50 examples are 1,350 round trips.
        """
        for cls in PDU_TYPES:
            pdu = data.draw(pdus[cls], label=cls.__name__)
            raw = encode(pdu)
            self.assertEqual(int.from_bytes(raw[:4], "big"), len(raw))
            self.assertEqual(int.from_bytes(raw[4:8], "big"), cls.command_id)
            back = decode(raw)
            self.assertEqual(back, pdu)
            self.assertIs(type(back), cls)
            self.assertEqual(encode(back), raw)

    @given(pdus[DeliverSm], st.randoms(use_true_random=False))
    def test_tlvOrderSurvives(self, pdu: Any, rnd: random.Random) -> None:
        """Optional parameters in any wire order decode and re-encode in that order."""
        raw = encode(pdu)
        layout = _LAYOUTS[DeliverSm]
        _, pos = read_mandatory(layout, raw[16:])
        tlvs, body = [], raw[16 + pos :]
        while body:
            n = 4 + int.from_bytes(body[2:4], "big")
            tlvs.append(body[:n])
            body = body[n:]
        rnd.shuffle(tlvs)
        shuffled = raw[: 16 + pos] + b"".join(tlvs)
        back: Any = decode(shuffled)
        # Typed values are the same; pass-through ones keep their new order.
        self.assertEqual(attrs.evolve(back, extra_tlvs=pdu.extra_tlvs), pdu)
        key = attrgetter("tag", "value")
        self.assertEqual(sorted(back.extra_tlvs, key=key), sorted(pdu.extra_tlvs, key=key))
        self.assertEqual(encode(back), shuffled)

    @given(pdus[SubmitSm])
    def test_evolvedPduDropsStaleOrder(self, pdu: Any) -> None:
        """A decoded PDU changed with attrs.evolve encodes its new TLVs, not stale ones."""
        back: Any = decode(encode(pdu))
        changed = attrs.evolve(
            back, message_payload=None, extra_tlvs=(*back.extra_tlvs, Tlv(0x1400, b"x"))
        )
        self.assertEqual(decode(encode(changed)), changed)


class SequenceNumberTests(SynchronousTestCase):
    """A PDU encoded once gets its sequence_number written in its header."""

    @given(any_pdu, st.integers(0, 0xFFFFFFFF))
    def test_sameAsEncodingAgain(self, pdu: Pdu, seq: int) -> None:
        """Patching the number gives the octets of the PDU encoded with it."""
        again = encode(attrs.evolve(pdu, sequence_number=seq))
        self.assertEqual(with_sequence_number(encode(pdu), seq), again)

    def test_refused(self) -> None:
        """Not one whole PDU, or a number that is not 32-bit, is refused."""
        raw = encode(SubmitSm(1, 0, destination_addr="1"))
        for data, seq in ((raw[:10], 1), (raw + b"x", 1), (raw, -1), (raw, 1 << 32)):
            self.assertRaises(SmppError, with_sequence_number, data, seq)


class FastPathTests(SynchronousTestCase):
    """The regex/template fast paths agree with the field-by-field code."""

    @given(any_pdu)
    def test_fastEncodeMatchesSlow(self, pdu: Pdu) -> None:
        """Where the template path applies it writes exactly what the slow writer does."""
        layout = _LAYOUTS[type(pdu)]
        if not layout.fast:
            return
        slow = bytearray()
        write_mandatory(layout, pdu, slow)
        self.assertEqual(_fast_mandatory(layout, pdu), bytes(slow))

    @given(_mutated())
    def test_fastDecodeMatchesSlow(self, raw: bytes) -> None:
        """Whenever the regex path reads a body, the slow reader reads the same."""
        if len(raw) < 16:
            return
        layout = _BY_ID.get(int.from_bytes(raw[4:8], "big"))
        if layout is None or not layout.fast:
            return
        fast = _fast_read(layout, raw[16:])
        if fast is None:
            return
        values, pos = read_mandatory(layout, raw[16:])
        self.assertEqual((tuple(values), pos), fast)


class StreamTests(SynchronousTestCase):
    """PduDecoder yields the same PDUs however the stream is cut."""

    @given(
        st.lists(any_pdu, max_size=5),
        st.lists(st.integers(min_value=0, max_value=5000), max_size=12),
    )
    def test_anySplit(self, sent: list[Pdu], cuts: list[int]) -> None:
        """Any split of a stream of PDUs gives back the PDUs, in order, with nothing left over."""
        stream = b"".join(encode(p) for p in sent)
        decoder = PduDecoder()
        received: list[Pdu] = []
        for piece in _split(stream, cuts):
            received.extend(decoder.feed(piece))
        self.assertEqual(received, sent)
        self.assertEqual(decoder.buffered, 0)


class HostileInputTests(SynchronousTestCase):
    """Malformed input raises SmppError and nothing else."""

    def _check(self, raw: bytes) -> None:
        try:
            pdu = decode(raw)
        except SmppError as e:
            self.assertIsInstance(e.command_status, int)
            answer = response_for_error(e)
            if answer is not None:
                self.assertEqual(answer.command_status, e.command_status)
                encode(answer)
            return
        # Whatever decodes is a valid PDU: it re-encodes, to the same bytes.
        again = encode(pdu)
        self.assertEqual(decode(again), pdu)
        if not _headerOnlyResponse(raw, pdu):
            self.assertEqual(again, raw)

    @given(st.binary(max_size=300))
    def test_randomBytes(self, raw: bytes) -> None:
        """Random bytes either decode to a PDU that re-encodes identically, or raise SmppError."""
        self._check(raw)

    @given(st.integers(min_value=0, max_value=len(PDU_TYPES) - 1), st.binary(max_size=120))
    def test_randomBodies(self, which: int, body: bytes) -> None:
        """A valid header of every type with a random body decodes cleanly or raises SmppError."""
        cid = PDU_TYPES[which].command_id
        raw = (16 + len(body)).to_bytes(4, "big") + cid.to_bytes(4, "big") + bytes(8) + body
        self._check(raw)

    @given(_mutated())
    def test_mutatedPdus(self, raw: bytes) -> None:
        """Valid PDUs with bytes changed, cut, inserted or deleted raise only SmppError."""
        self._check(raw)

    @given(st.lists(_mutated(), max_size=4))
    def test_mutatedStream(self, frames: list[bytes]) -> None:
        """The stream decoder reports a bad frame in place and never raises anything else."""
        decoder = PduDecoder()
        try:
            for item in decoder.feed_results(b"".join(frames)):
                self.assertIsInstance(item, Pdu | SmppError)
        except SmppError:
            pass
