"""Tests for the GP Amd B administration session triggering parameters."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ram import (
    AdminSessionTrigger,
    BearerDescription,
    BufferSize,
    ConnectionParams,
    HttpPostParams,
    NetworkAccessName,
    OtherAddress,
    RamError,
    RetryPolicy,
    SecurityParams,
    TransportLevel,
    TransportProtocol,
    decode_timer,
    encode_timer,
)
from bipgw.codec.tlv import TlvError, decode_ber_one, encode_ber
from tests import vectors

FULL_TREE = "Administration session triggering parameters, full tree (constructed)"


def _tlv(name: str) -> bytes:
    return bytes.fromhex(vectors.by_name("gp_amd_b_tlvs", name)["tlv"])


def _from_inputs(inputs: dict[str, str]) -> AdminSessionTrigger:
    """Build the trigger from the vector's stated inputs, independently of decoding."""
    return AdminSessionTrigger(
        connection=ConnectionParams(
            bearer=BearerDescription.default(),
            buffer_size=BufferSize(int(inputs["buffer"])),
            nan=NetworkAccessName(inputs["nan"]),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, int(inputs["port"])),
            address=OtherAddress(ipaddress.ip_address(inputs["host"])),
        ),
        security=SecurityParams(
            inputs["psk_identity"].split(" ")[0].encode("ascii"),
            int(inputs["kvn"], 16),
            int(inputs["kid"], 16),
        ),
        retry=RetryPolicy(int(inputs["retry_counter"]), timedelta(seconds=3)),
        http=HttpPostParams(inputs["uri"], host=inputs["admin_host"], agent_id=inputs["agent_id"]),
    )


class VectorTests(SynchronousTestCase):
    """Every gp_amd_b_tlvs vector decodes to its stated values and re-encodes identically."""

    def test_fullTreeDecodes(self) -> None:
        """The full 81 tree decodes to the vector's inputs."""
        vector = vectors.by_name("gp_amd_b_tlvs", FULL_TREE)
        raw = bytes.fromhex(vector["tlv"])
        trigger = AdminSessionTrigger.decode(raw)
        connection = trigger.connection
        assert connection is not None
        self.assertEqual(connection.address, OtherAddress(ipaddress.IPv4Address("127.0.0.1")))
        self.assertEqual(
            connection.transport, TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 8443)
        )
        self.assertEqual(connection.buffer_size, BufferSize(512))
        self.assertEqual(connection.nan, NetworkAccessName("internet"))
        self.assertEqual(connection.bearer, BearerDescription.default())
        self.assertEqual(trigger.security, SecurityParams(b"F0FFFFFFFFFFFFFFFFFF", 0x40, 0x01))
        self.assertEqual(trigger.retry, RetryPolicy(3, timedelta(seconds=3)))
        self.assertEqual(
            trigger.http,
            HttpPostParams("/scripts/testRFM", host="localhost", agent_id="GETDATAEXT"),
        )
        self.assertIsNone(trigger.dns)
        self.assertEqual(trigger.encode(), raw)

    def test_fullTreeFromInputs(self) -> None:
        """Building the trigger from the vector's inputs gives the vector's bytes."""
        vector = vectors.by_name("gp_amd_b_tlvs", FULL_TREE)
        built = _from_inputs(vector["inputs"])
        self.assertEqual(built.encode().hex(), vector["tlv"])
        self.assertEqual(AdminSessionTrigger.decode(built.encode()), built)

    def test_securityParams(self) -> None:
        """85 08 04 DEADBEEF 02 00 40 is PSK identity DEADBEEF, KVN 00, KID 40."""
        vector = vectors.by_name(
            "gp_amd_b_tlvs", "Security parameters 85: psk_id=deadbeef, then 02 KVN KID"
        )
        raw = bytes.fromhex(vector["tlv"])
        params = SecurityParams.decode(raw)
        decoded = vector["decoded"]
        self.assertEqual(
            params,
            SecurityParams(
                bytes.fromhex(decoded["psk_id"]), int(decoded["kvn"], 16), int(decoded["kid"], 16)
            ),
        )
        self.assertEqual(params.encode(), raw)

    def test_adminHostAndUri(self) -> None:
        """The 8A and 8C vectors are exactly what HttpPostParams writes inside 89."""
        host = _tlv("Admin host 8A")
        uri = _tlv("Admin URI 8C")
        self.assertEqual(decode_ber_one(host).value.decode(), "admin.host")
        params = HttpPostParams("https://admin.host/uri", host="admin.host")
        self.assertEqual(params.encode(), encode_ber(0x89, host + uri))
        self.assertEqual(HttpPostParams.decode(encode_ber(0x89, host + uri)), params)

    def test_liveRetryPolicy(self) -> None:
        """The live card's 86 07 0001 25 03 001000: counter 1, 00:01:00 (swapped BCD)."""
        raw = _tlv("Retry policy 86 as stored on a live card: counter 0001, timer 25 03 001000")
        policy = RetryPolicy.decode(raw)
        self.assertEqual(policy, RetryPolicy(1, timedelta(minutes=1)))
        self.assertEqual(policy.encode(), raw)


class TimerTests(SynchronousTestCase):
    """The TS 102 223 timer value, semi-octet BCD with swapped nibbles."""

    def test_encode(self) -> None:
        """Each of HH MM SS is two BCD digits, units digit in the high nibble."""
        self.assertEqual(encode_timer(timedelta(seconds=3)).hex(), "000030")
        self.assertEqual(encode_timer(timedelta(hours=1, minutes=23, seconds=45)).hex(), "103254")
        self.assertEqual(encode_timer(timedelta(hours=99, minutes=59, seconds=59)).hex(), "999595")
        self.assertEqual(encode_timer(timedelta(0)).hex(), "000000")

    def test_decode(self) -> None:
        """Decoding inverts encoding and checks digits and ranges."""
        self.assertEqual(
            decode_timer(bytes.fromhex("103254")), timedelta(hours=1, minutes=23, seconds=45)
        )
        for bad in ["0000", "00000a", "0000a0", "000096", "000600"]:
            self.assertRaises(RamError, decode_timer, bytes.fromhex(bad))

    def test_encodeRefusals(self) -> None:
        """Negative, fractional and overlong delays are refused."""
        for bad in [timedelta(seconds=-1), timedelta(seconds=1.5), timedelta(hours=100)]:
            self.assertRaises(RamError, encode_timer, bad)
            self.assertRaises(RamError, RetryPolicy, 1, bad)


class PartTests(SynchronousTestCase):
    """Optional parts, raw parts and refusals."""

    def test_emptyTrigger(self) -> None:
        """A trigger with no parameters is 81 02 83 00."""
        self.assertEqual(AdminSessionTrigger().encode().hex(), "81028300")
        self.assertEqual(
            AdminSessionTrigger.decode(bytes.fromhex("81028300")), AdminSessionTrigger()
        )

    def test_rawPartsAndOrder(self) -> None:
        """A5 and B3 are kept raw; parts decode in any order and encode in the fixed one."""
        trigger = AdminSessionTrigger(
            security=SecurityParams(b"id", 0x40, 0x01),
            extended_security=b"\x01\x02",
            http=HttpPostParams("/a"),
            dns=bytes.fromhex("d603616263"),
        )
        raw = trigger.encode()
        self.assertEqual(
            raw.hex(),
            "811b"
            + "8312"
            + "850602696402"
            + "4001"
            + "a5020102"
            + "8904"
            + "8c022f61"
            + "b305d603616263",
        )
        self.assertEqual(AdminSessionTrigger.decode(raw), trigger)
        swapped = bytes.fromhex(
            "811b"
            + "b305d603616263"
            + "8312"
            + "8904"
            + "8c022f61"
            + "a5020102"
            + "850602696402"
            + "4001"
        )
        self.assertEqual(AdminSessionTrigger.decode(swapped), trigger)

    def test_retryReportKeptRaw(self) -> None:
        """Bytes after the timer (njiwa's 87 00) survive a round trip."""
        policy = RetryPolicy(2, timedelta(seconds=30), b"\x87\x00")
        self.assertEqual(policy.encode().hex(), "86090002250300000387" + "00")
        self.assertEqual(RetryPolicy.decode(policy.encode()), policy)

    def test_crTimerTagAccepted(self) -> None:
        """The timer TLV may carry the CR flag (A5); it is re-encoded without."""
        policy = RetryPolicy.decode(bytes.fromhex("86070001a503001000"))
        self.assertEqual(policy.delay, timedelta(minutes=1))

    def test_refusals(self) -> None:
        """Unknown and repeated tags, a missing 83 and malformed parts are refused."""
        cases = [
            "8104 8302 9900",  # unknown tag in 83
            "8106 8304 89008900",  # 89 twice
            "8102 b300",  # no 83
            "8104 83008300",  # 83 twice
            "8204 83028900",  # not 81
            "8102 8300 00",  # trailing byte
            "8104 83028900",  # 89 without URI
            "8107 8305 8503010203",  # 85 without 02 KVN KID
            "8107 8305 8603000103",  # 86 without timer
            "8109 8307 840535020303ff",  # 84 broken
        ]
        for raw in cases:
            with self.assertRaises(RamError, msg=raw):
                AdminSessionTrigger.decode(bytes.fromhex(raw.replace(" ", "")))

    def test_errorOffsetsInsideParts(self) -> None:
        """An error deep in 84 names the part and the offset in the whole input."""
        raw = bytes.fromhex("8108 8306 8404 35010339".replace(" ", ""))
        with self.assertRaises(RamError) as ctx:
            AdminSessionTrigger.decode(raw)
        e = ctx.exception
        self.assertEqual(e.offset, 10)
        self.assertIn("tag 39", str(e))
        self.assertIsInstance(e.__cause__, RamError)
        self.assertIsInstance(e.__cause__.__cause__, TlvError)

    def test_valueChecks(self) -> None:
        """Out-of-range constructor values are refused."""
        self.assertRaises(RamError, SecurityParams, b"", 1, 1)
        self.assertRaises(RamError, SecurityParams, b"x" * 256, 1, 1)
        self.assertRaises(RamError, SecurityParams, b"x", 256, 1)
        self.assertRaises(RamError, RetryPolicy, 70000, timedelta(0))
        self.assertRaises(RamError, HttpPostParams, "")
        self.assertRaises(RamError, HttpPostParams, "/\u00e9")
        self.assertRaises(RamError, HttpPostParams, "/a", host="a\r\nb")
        self.assertRaises(RamError, AdminSessionTrigger, security=b"raw")  # type: ignore[arg-type]


_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_connections = st.none() | st.builds(
    ConnectionParams,
    st.none() | st.just(BearerDescription.default()),
    st.none() | st.builds(BufferSize, st.integers(0, 0xFFFF)),
    st.none()
    | st.builds(
        lambda labels: NetworkAccessName(".".join(labels)),
        st.lists(st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True), min_size=1, max_size=3),
    ),
    st.none()
    | st.builds(TransportLevel, st.sampled_from(TransportProtocol), st.integers(0, 0xFFFF)),
    st.none() | st.builds(OtherAddress, st.ip_addresses()),
)
_triggers = st.builds(
    AdminSessionTrigger,
    _connections,
    st.none()
    | st.builds(
        SecurityParams, st.binary(min_size=1, max_size=64), st.integers(0, 255), st.integers(0, 255)
    ),
    st.none() | st.binary(max_size=20),
    st.none()
    | st.builds(
        RetryPolicy,
        st.integers(0, 0xFFFF),
        st.integers(0, 99 * 3600 + 59 * 60 + 59).map(lambda s: timedelta(seconds=s)),
        st.binary(max_size=4),
    ),
    st.none() | st.builds(HttpPostParams, _text, st.none() | _text, st.none() | _text),
    st.none() | st.binary(max_size=20),
)


class PropertyTests(SynchronousTestCase):
    """Round trips and hostile input, by Hypothesis."""

    @given(_triggers)
    def test_roundTrip(self, trigger: AdminSessionTrigger) -> None:
        """Any trigger decodes to itself."""
        self.assertEqual(AdminSessionTrigger.decode(trigger.encode()), trigger)

    @given(st.integers(0, 99 * 3600 + 59 * 60 + 59))
    def test_timerRoundTrip(self, seconds: int) -> None:
        """Every whole-second delay up to 99:59:59 codes and decodes to itself."""
        delay = timedelta(seconds=seconds)
        self.assertEqual(decode_timer(encode_timer(delay)), delay)

    @given(st.binary(max_size=200))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes, alone or under 81/83 headers, only ever raise RamError."""
        session = encode_ber(0x83, data)
        for raw in (data, encode_ber(0x81, data), encode_ber(0x81, session)):
            try:
                AdminSessionTrigger.decode(raw)
            except RamError:
                pass

    @given(_triggers, st.data())
    def test_mutated(self, trigger: AdminSessionTrigger, data: st.DataObject) -> None:
        """A valid trigger with a byte changed, inserted or dropped only raises RamError."""
        raw = bytearray(trigger.encode())
        position = data.draw(st.integers(0, len(raw)))
        byte = data.draw(st.integers(0, 255))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set" and position < len(raw):
            raw[position] = byte
        elif action == "insert":
            raw.insert(position, byte)
        elif position < len(raw):
            del raw[position]
        try:
            AdminSessionTrigger.decode(bytes(raw))
        except RamError:
            pass
