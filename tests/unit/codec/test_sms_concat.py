"""Tests for splitting secured packets across SMs and reassembling them."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.sms import (
    DCS_CLASS2_8BIT,
    PID_SIM_DATA_DOWNLOAD,
    Address,
    Concatenation,
    InformationElement,
    Reassembler,
    ServiceCentreTimestamp,
    SmsDeliver,
    SmsError,
    UserDataHeader,
    decode_user_data,
    split_command_packet,
    split_response_packet,
)

_CMD = InformationElement(0x70)
_RSP = InformationElement(0x71)


def _concat(ref: int, total: int, seq: int, ref16: bool = False) -> InformationElement:
    return Concatenation(ref, total, seq, ref16).to_element()


def _header(*elements: InformationElement) -> UserDataHeader:
    return UserDataHeader(elements)


class SplitTests(SynchronousTestCase):
    """Packets become the TP-UD of one or more SMs (PROTOCOLS.md 1.1 and 1.8)."""

    def test_singleSm(self) -> None:
        """Up to 137 octets: one TP-UD, 02 70 00 + packet, at most 140 octets."""
        packet = bytes(range(137))
        self.assertEqual(split_command_packet(packet, 5), [bytes.fromhex("027000") + packet])
        self.assertEqual(split_response_packet(b"\x01", 0), [bytes.fromhex("02710001")])

    def test_concatenatedLayout(self) -> None:
        """138 octets: first UDH 07 7000 0003 ref total 01, later 05 0003 ref total seq."""
        packet = bytes(i % 251 for i in range(410))
        parts = split_command_packet(packet, 0x11)
        self.assertEqual([len(p) for p in parts], [140, 140, 140, 410 - 132 - 134 - 134 + 6])
        self.assertEqual(parts[0][:8].hex(), "0770000003110401")
        self.assertEqual(parts[1][:6].hex(), "050003110402")
        self.assertEqual(parts[3][:6].hex(), "050003110404")
        self.assertEqual(parts[0][8:] + b"".join(p[6:] for p in parts[1:]), packet)
        self.assertEqual(len(split_command_packet(bytes(138), 1)), 2)

    def test_sixteenBitReference(self) -> None:
        """With ref16 the element is 08 04 ref(2) total seq and payloads shrink by one."""
        parts = split_command_packet(bytes(300), 0x1234, ref16=True)
        self.assertEqual(parts[0][:9].hex(), "087000080412340301")
        self.assertEqual(parts[1][:7].hex(), "06080412340302")
        self.assertEqual([len(p) for p in parts], [140, 140, 300 - 131 - 133 + 7])

    def test_responseOrder(self) -> None:
        """A concatenated response puts the concat element before 71, as a real card did."""
        parts = split_response_packet(bytes(200), 1)
        self.assertEqual(parts[0][:8].hex(), "0700030102017100")
        self.assertEqual(parts[1][:6].hex(), "050003010202")

    def test_limits(self) -> None:
        """255 SMs is the most; one octet more, or a bad reference, is refused."""
        longest = 132 + 254 * 134
        self.assertEqual(len(split_command_packet(bytes(longest), 0)), 255)
        with self.assertRaises(SmsError) as ctx:
            split_command_packet(bytes(longest + 1), 0)
        self.assertIn("256 SMs", str(ctx.exception))
        self.assertRaises(SmsError, split_command_packet, bytes(200), 256)
        self.assertRaises(SmsError, split_command_packet, bytes(200), -1)
        self.assertRaises(SmsError, split_command_packet, bytes(200), 65536, ref16=True)
        self.assertRaises(SmsError, split_response_packet, b"short", 256)

    def test_partsAreValidDeliverUserData(self) -> None:
        """Each TP-UD fits an SMS-DELIVER with DCS F6 and decodes back to itself."""
        for ud in split_command_packet(bytes(range(256)) * 2, 9):
            header, body = decode_user_data(DCS_CLASS2_8BIT, True, len(ud), ud)
            sm = SmsDeliver(
                originating_address=Address(1, 1, "4912345"),
                scts=ServiceCentreTimestamp(24, 5, 1, 12, 0, 0, 8),
                pid=PID_SIM_DATA_DOWNLOAD,
                dcs=DCS_CLASS2_8BIT,
                user_data_header=header,
                user_data=body,
            )
            self.assertEqual(SmsDeliver.decode(sm.encode()), sm)


class ReassemblerTests(SynchronousTestCase):
    """Parts come back together whatever their order; problems are reported."""

    def test_singleSmPassesThrough(self) -> None:
        """An unconcatenated SM with 70 is a whole packet at once."""
        r = Reassembler()
        self.assertEqual(r.add("a", _header(_CMD), b"packet", 0.0), b"packet")
        self.assertEqual(r.pending, 0)

    def test_eitherElementOrder(self) -> None:
        """70 before or after the concat element, and 70 in later parts, are all accepted."""
        for first in (_header(_CMD, _concat(3, 2, 1)), _header(_concat(3, 2, 1), _CMD)):
            for second in (_header(_concat(3, 2, 2)), _header(_CMD, _concat(3, 2, 2))):
                r = Reassembler()
                self.assertIsNone(r.add("a", second, b"world", 0.0))
                self.assertEqual(r.add("a", first, b"hello ", 1.0), b"hello world")

    def test_onePartConcatenation(self) -> None:
        """A concat element announcing one part completes immediately."""
        r = Reassembler()
        self.assertEqual(r.add("a", _header(_CMD, _concat(1, 1, 1)), b"x", 0.0), b"x")
        self.assertEqual(r.pending, 0)

    def test_identifierRequired(self) -> None:
        """No header, no 70 in an unconcatenated SM, or none in part 1, is an error."""
        r = Reassembler()
        self.assertRaises(SmsError, r.add, "a", None, b"x", 0.0)
        self.assertRaises(SmsError, r.add, "a", _header(_RSP), b"x", 0.0)
        self.assertRaises(SmsError, r.add, "a", _header(_concat(1, 2, 1)), b"x", 0.0)
        self.assertRaises(SmsError, r.add, "a", _header(InformationElement(0x70, b"\x01")), b"", 0)
        self.assertEqual(r.pending, 0)

    def test_responses(self) -> None:
        """A response reassembler wants 71 (and takes the card's concat-first order)."""
        r = Reassembler(packet_iei=0x71)
        parts = split_response_packet(bytes(range(200)), 7)
        self.assertIsNone(r.add_user_data("card", parts[0], 0.0))
        self.assertEqual(r.add_user_data("card", parts[1], 0.0), bytes(range(200)))
        self.assertRaises(SmsError, r.add, "card", _header(_CMD), b"x", 0.0)
        self.assertRaises(ValueError, Reassembler, packet_iei=0x00)

    def test_duplicatesIgnoredAndCounted(self) -> None:
        """The same part twice is counted once, the set still completes."""
        r = Reassembler()
        self.assertIsNone(r.add("a", _header(_CMD, _concat(1, 2, 1)), b"ab", 0.0))
        self.assertIsNone(r.add("a", _header(_CMD, _concat(1, 2, 1)), b"ab", 0.0))
        self.assertEqual(r.duplicates, 1)
        self.assertEqual(r.add("a", _header(_concat(1, 2, 2)), b"cd", 0.0), b"abcd")

    def test_retransmissionAfterCompletion(self) -> None:
        """A part re-sent after its set completed is a duplicate, not a new set, until expiry."""
        r = Reassembler(timeout=10.0)
        r.add("a", _header(_CMD, _concat(1, 2, 1)), b"ab", 0.0)
        r.add("a", _header(_concat(1, 2, 2)), b"cd", 0.0)
        self.assertIsNone(r.add("a", _header(_concat(1, 2, 2)), b"cd", 1.0))
        self.assertEqual((r.duplicates, r.pending), (1, 0))
        self.assertEqual(r.expire(10.0), [])
        self.assertIsNone(r.add("a", _header(_concat(1, 2, 2)), b"cd", 11.0))
        self.assertEqual((r.duplicates, r.pending), (1, 1))

    def test_conflictingContent(self) -> None:
        """The same part number with different content is an error, the held part stays."""
        r = Reassembler()
        r.add("a", _header(_CMD, _concat(1, 2, 1)), b"ab", 0.0)
        self.assertRaises(SmsError, r.add, "a", _header(_CMD, _concat(1, 2, 1)), b"XX", 0.0)
        self.assertEqual(r.add("a", _header(_concat(1, 2, 2)), b"cd", 0.0), b"abcd")

    def test_totalMismatch(self) -> None:
        """A part announcing another total than earlier parts is an error naming both."""
        r = Reassembler()
        r.add("a", _header(_CMD, _concat(17, 3, 1)), b"a", 0.0)
        with self.assertRaises(SmsError) as ctx:
            r.add("a", _header(_concat(17, 2, 2)), b"b", 0.0)
        self.assertIn("announces 2 parts", str(ctx.exception))
        self.assertIn("announced 3", str(ctx.exception))
        r.add("a", _header(_concat(17, 3, 2)), b"b", 0.0)
        self.assertEqual(r.add("a", _header(_concat(17, 3, 3)), b"c", 0.0), b"abc")

    def test_keysKeptApart(self) -> None:
        """Sets differ by originator and by reference kind, not only by reference."""
        r = Reassembler()
        r.add("a", _header(_CMD, _concat(1, 2, 1)), b"A1", 0.0)
        r.add("b", _header(_CMD, _concat(1, 2, 1)), b"B1", 0.0)
        r.add("a", _header(_CMD, _concat(1, 2, 1, ref16=True)), b"W1", 0.0)
        self.assertEqual(r.pending, 3)
        self.assertEqual(r.add("b", _header(_concat(1, 2, 2)), b"B2", 0.0), b"B1B2")
        self.assertEqual(r.add("a", _header(_concat(1, 2, 2, ref16=True)), b"W2", 0.0), b"W1W2")
        self.assertEqual(r.add("a", _header(_concat(1, 2, 2)), b"A2", 0.0), b"A1A2")

    def test_reservedConcatValues(self) -> None:
        """A concat element with sequence above total is refused, not buffered."""
        r = Reassembler()
        bad = _header(_CMD, InformationElement(0x00, b"\x01\x02\x03"))
        self.assertRaises(SmsError, r.add, "a", bad, b"x", 0.0)
        self.assertEqual(r.pending, 0)

    def test_maxParts(self) -> None:
        """A set announcing more parts than allowed is refused."""
        r = Reassembler(max_parts=4)
        self.assertRaises(SmsError, r.add, "a", _header(_CMD, _concat(1, 5, 1)), b"x", 0.0)
        self.assertIsNone(r.add("a", _header(_CMD, _concat(1, 4, 1)), b"x", 0.0))

    def test_payloadSize(self) -> None:
        """A payload larger than one SM's user data is refused."""
        self.assertRaises(SmsError, Reassembler().add, "a", _header(_CMD), bytes(141), 0.0)


class ExpiryTests(SynchronousTestCase):
    """Incomplete sets are dropped on time and reported."""

    def test_missingPartsReported(self) -> None:
        """Ref 17 with only part 1 of 3 expires after the timeout as missing parts 2,3."""
        r = Reassembler(timeout=30.0)
        r.add("+4912345", _header(_CMD, _concat(17, 3, 1)), b"x", 100.0)
        self.assertEqual(r.expire(129.9), [])
        self.assertEqual(r.pending, 1)
        (dropped,) = r.expire(130.0)
        self.assertEqual(dropped.missing, (2, 3))
        self.assertEqual(dropped.received, (1,))
        self.assertEqual((dropped.reference, dropped.total, dropped.reason), (17, 3, "timeout"))
        self.assertEqual(dropped.originator_key, "+4912345")
        self.assertIn("missing parts 2,3 of 3 of ref 17", dropped.describe())
        self.assertEqual((r.pending, r.expired), (0, 1))

    def test_timeoutCountsFromFirstPart(self) -> None:
        """Later parts do not extend the deadline of a set."""
        r = Reassembler(timeout=30.0)
        r.add("a", _header(_CMD, _concat(1, 3, 1)), b"x", 0.0)
        r.add("a", _header(_concat(1, 3, 2)), b"y", 25.0)
        self.assertEqual([d.missing for d in r.expire(30.0)], [(3,)])

    def test_evictionWhenFull(self) -> None:
        """With max_pending sets held, a new set evicts the oldest, reported by expire."""
        r = Reassembler(max_pending=2)
        for ref in (1, 2, 3):
            r.add("a", _header(_CMD, _concat(ref, 2, 1)), bytes([ref]), float(ref))
        self.assertEqual((r.pending, r.evicted), (2, 1))
        (dropped,) = r.expire(3.0)
        self.assertEqual((dropped.reference, dropped.reason), (1, "evicted"))
        self.assertEqual(r.expire(3.0), [])
        self.assertEqual(r.add("a", _header(_concat(3, 2, 2)), b"!", 4.0), b"\x03!")

    def test_badSettings(self) -> None:
        """Non-positive timeout, zero capacity or an impossible part limit are refused."""
        self.assertRaises(ValueError, Reassembler, timeout=0)
        self.assertRaises(ValueError, Reassembler, max_pending=0)
        self.assertRaises(ValueError, Reassembler, max_parts=256)


class ReassemblyPropertyTests(SynchronousTestCase):
    """Split then reassemble, with parts shuffled, duplicated or lost."""

    @given(
        st.one_of(st.binary(max_size=137), st.binary(min_size=138, max_size=1200)),
        st.integers(min_value=0, max_value=65535),
        st.booleans(),
        st.booleans(),
        st.randoms(use_true_random=False),
        st.lists(st.integers(min_value=0, max_value=20), max_size=6),
    )
    def test_shuffledAndDuplicated(
        self,
        packet: bytes,
        reference: int,
        ref16: bool,
        response: bool,
        rnd: random.Random,
        dup_picks: list[int],
    ) -> None:
        """Any order with repeats yields the packet exactly once; repeats are counted."""
        reference = reference if ref16 else reference & 0xFF
        split = split_response_packet if response else split_command_packet
        parts = split(packet, reference, ref16=ref16)
        extra = [parts[i % len(parts)] for i in dup_picks] if len(parts) > 1 else []
        feed = parts + extra
        rnd.shuffle(feed)
        r = Reassembler(packet_iei=0x71 if response else 0x70)
        results = [r.add_user_data("sender", ud, 0.0) for ud in feed]
        self.assertEqual([x for x in results if x is not None], [packet])
        self.assertEqual(r.duplicates, len(extra))
        self.assertEqual(r.pending, 0)

    @given(
        st.binary(min_size=138, max_size=1200),
        st.integers(min_value=0, max_value=255),
        st.integers(min_value=0, max_value=100),
        st.randoms(use_true_random=False),
    )
    def test_missingPartExpires(
        self, packet: bytes, reference: int, lost: int, rnd: random.Random
    ) -> None:
        """Losing one part gives no packet, and expiry names exactly that part."""
        parts = split_command_packet(packet, reference)
        lost_index = lost % len(parts)
        feed = [p for i, p in enumerate(parts) if i != lost_index]
        rnd.shuffle(feed)
        r = Reassembler(timeout=5.0)
        for ud in feed:
            self.assertIsNone(r.add_user_data(1234, ud, 0.0))
        self.assertEqual(r.expire(4.0), [])
        (dropped,) = r.expire(5.0)
        self.assertEqual(dropped.missing, (lost_index + 1,))
        self.assertEqual((dropped.reference, dropped.total), (reference, len(parts)))
        self.assertEqual(r.pending, 0)

    @given(st.lists(st.binary(max_size=150), max_size=8))
    def test_randomUserDataOnlySmsError(self, uds: list[bytes]) -> None:
        """Arbitrary TP-UDs give packets, None or SmsError, and memory stays bounded."""
        r = Reassembler(max_pending=3)
        for ud in uds:
            try:
                r.add_user_data("x", ud, 0.0)
            except SmsError:
                pass
        self.assertLessEqual(r.pending, 3)
