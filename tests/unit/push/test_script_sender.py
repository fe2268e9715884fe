"""The SMS transport's sender: a script secured and submitted as a push is.

The strongest check available without a card: the gateway's own script
path (L{PushSender.send_script}, through the builder, the counter
allocator and the SMS link) reproduces, byte for byte, the command packet
a real card (sysmoISIM-SJA2, in pySim's tests) accepted with counter 100,
and opens that card's real two-command PoR into the compact result.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import Kic, Kid, OtaKeys, Spi
from bipgw.codec.ram import RemoteFormat, RemoteResult, RemoteScript
from bipgw.core import IScriptSender, PushError, PushOrder, SessionId
from bipgw.push import (
    CallbackAddress,
    MemoryCounters,
    PushBuilder,
    PushProfile,
    PushSender,
    SmsSubmission,
)
from tests import vectors

ICCID = "8988211000000467285"
COMMAND = vectors.by_name(
    "scp80_sms_command_packets", "real card SJA2, counter mode 10 (must be higher), CNTR=100"
)
POR = vectors.by_name("scp80_sms_response_packets", "real card SJA2 PoR ciphered+CC, 2 commands")


class _Link:
    """An ISmsLink that records what it is given and accepts it."""

    def __init__(self) -> None:
        self.sent: list[SmsSubmission] = []
        self.refuse: PushError | None = None

    def refusal(self, label: str) -> PushError | None:
        return self.refuse

    def submit(self, sms: SmsSubmission) -> Deferred[tuple[str, ...]]:
        self.sent.append(sms)
        return succeed(tuple(f"id-{i}" for i in range(len(sms.parts))))


class ScriptSenderTests(SynchronousTestCase):
    def setUp(self) -> None:
        keys = OtaKeys(
            kic_key=bytes.fromhex(COMMAND["kic_key"]), kid_key=bytes.fromhex(COMMAND["kid_key"])
        )
        spi = Spi.from_bytes(bytes.fromhex(COMMAND["spi"]))
        profile = PushProfile(
            tar=bytes.fromhex(COMMAND["tar"]),
            spi=spi,
            kic=Kic.from_byte(0x15),
            kid=Kid.from_byte(0x15, spi.checksum),
        )
        self.counters = MemoryCounters({ICCID: 99})
        builder = PushBuilder(
            lambda iccid, kvn: keys, self.counters, CallbackAddress("192.0.2.1", 443), profile
        )
        self.link = _Link()
        self.sender = PushSender(builder, self.link)
        self.order = PushOrder(SessionId("s1"), ICCID, "4912345", 1, "rfm")

    def test_isScriptSender(self) -> None:
        """The push sender is the engine's script sender too."""
        self.assertIsInstance(self.sender, IScriptSender)

    def test_realCardPacket(self) -> None:
        """The SJA2's compact script (SELECT DF.GSM, GET RESPONSE) with counter 100
        is the packet that card accepted, in one SMS to the card's number."""
        commands = (bytes.fromhex("a0a40000027f20"), bytes.fromhex("a0c0000016"))
        data = RemoteScript(commands, RemoteFormat.COMPACT).encode()
        self.assertEqual(data.hex(), COMMAND["secured_data_plain"])
        receipt = self.successResultOf(self.sender.send_script(self.order, data))
        self.assertEqual((receipt.counter, receipt.message_ids), (100, ("id-0",)))
        (sms,) = self.link.sent
        self.assertEqual(sms.parts, (bytes.fromhex(COMMAND["sms_user_data"]),))
        self.assertEqual((sms.msisdn, sms.thread), ("4912345", None))
        self.assertIn("script 1 of session s1", sms.label)

    def test_realCardPor(self) -> None:
        """The SJA2's real PoR verifies under the same keys and TAR, and its data
        is the compact result of the two commands."""
        commands = (bytes.fromhex("a0a40000027f20"), bytes.fromhex("a0c0000016"))
        data = RemoteScript(commands, RemoteFormat.COMPACT).encode()
        self.successResultOf(self.sender.send_script(self.order, data))
        report = self.successResultOf(
            self.sender.verify_por(ICCID, bytes.fromhex(POR["sms_user_data"]))
        )
        self.assertEqual(report.status, 0)
        result = RemoteResult.decode(report.data, RemoteFormat.COMPACT, sent=2)
        self.assertEqual((result.executed, result.last_sw), (2, 0x9000))

    def test_longScriptConcatenated(self) -> None:
        """An expanded script too long for one SM goes as concatenated SMs with
        the command packet identifier in the first one only."""
        commands = tuple(bytes.fromhex("80e2900020") + bytes(32) for _ in range(6))
        data = RemoteScript(commands, RemoteFormat.EXPANDED).encode()
        self.successResultOf(self.sender.send_script(self.order, data))
        parts = self.link.sent[0].parts
        self.assertGreater(len(parts), 1)
        self.assertEqual(parts[0][:3], b"\x07\x70\x00")  # UDHL 7: IEI 70, then IEI 00
        for part in parts[1:]:
            self.assertEqual(part[:2], b"\x05\x00")  # concatenation only
            self.assertNotIn(b"\x70\x00", part[:6])

    def test_linkRefusalSpendsNoCounter(self) -> None:
        """A link that cannot take SMS now refuses the script before a counter is spent."""
        self.link.refuse = PushError("not bound")
        self.failureResultOf(self.sender.send_script(self.order, b"\xa0\xc0\x00\x00\x16"))
        self.assertEqual(self.counters.last[ICCID], 99)
