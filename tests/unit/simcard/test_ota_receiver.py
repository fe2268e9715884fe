"""Tests for the card's OTA receiver: SMS-PP in, verification, PoR and admin request out.

The packets are built with the gateway's own codec (as the gateway sends
them) and, where a real card's bytes are public, taken from the vectors:
the receiver must produce the real SJA2 card's PoR byte for byte.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    CommandPacket,
    CompactResult,
    CounterMode,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaKeys,
    PorStatus,
    Spi,
    secure_command,
    verify_response,
)
from bipgw.codec.ram import (
    AdminSessionTrigger,
    BearerDescription,
    OtherAddress,
    PushBipOpening,
    PushCatTpLink,
    RemoteFormat,
    RemoteResult,
    RemoteScript,
    TransportLevel,
    TransportProtocol,
)
from bipgw.codec.sms import (
    Address,
    ServiceCentreTimestamp,
    SmsDeliver,
    SmsSubmit,
    UserDataHeader,
    split_command_packet,
)
from simcard.model import AdminDefaults, OtaCounters
from simcard.ota_receiver import ISD_TAR, OtaOutcome, OtaReceiver, OtaResult
from simcard.session_request import AdminSessionRequest, SessionRetryPolicy, TriggerKind
from tests import vectors

AES_KIC = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AES_KID = bytes.fromhex("101112131415161718191a1b1c1d1e1f")
TDES_KIC = bytes.fromhex("c21dd66acac13cb3bc8b331b24afb57b")
TDES_KID = bytes.fromhex("12110c78e678c25408233076aa033615")
GATEWAY = Address(1, 1, "4479000000")
DEFAULTS = AdminDefaults("admin.example", 8443, "/admin")
AGENT = "8988211000000000018"
PUSH_VECTOR = bytes.fromhex(
    vectors.by_name(
        "cat_bip_tlvs",
        "TS 102 226 PUSH (request for BIP channel opening) with OPEN CHANNEL TLVs",
    )["capdu"]
)
SCTS = ServiceCentreTimestamp(22, 7, 25, 0, 0, 0)


def _hex(name: str, section: str) -> dict[str, Any]:
    return vectors.by_name(section, name)


class _Executor:
    """A card stand-in: answers each C-APDU from a table (default 9000), records them."""

    def __init__(self, answers: dict[bytes, bytes] | None = None) -> None:
        self.answers = answers or {}
        self.seen: list[bytes] = []

    def transmit(self, capdu: bytes) -> bytes:
        self.seen.append(capdu)
        return self.answers.get(capdu, b"\x90\x00")


def _deliver(ud: bytes, *, pid: int = 0x7F, dcs: int = 0xF6, origin: Address = GATEWAY) -> bytes:
    header, body = UserDataHeader.decode(ud)
    return SmsDeliver(
        originating_address=origin, scts=SCTS, pid=pid, dcs=dcs,
        user_data_header=header, user_data=body,
    ).encode()  # fmt: skip


def _algorithms(aes: bool) -> tuple[Kic, Kid, OtaKeys]:
    if aes:
        return (
            Kic(1, KicAlgorithm.AES_CBC),
            Kid(1, KidAlgorithm.AES_CMAC),
            OtaKeys(AES_KIC, AES_KID),
        )
    return (
        Kic(1, KicAlgorithm.TDES_2KEY),
        Kid(1, KidAlgorithm.TDES_2KEY),
        OtaKeys(TDES_KIC, TDES_KID),
    )


def _packet(
    data: bytes,
    *,
    spi: bytes = b"\x16\x39",
    counter: int = 1,
    aes: bool = True,
    tar: bytes = ISD_TAR,
    keys: OtaKeys | None = None,
) -> bytes:
    kic, kid, card_keys = _algorithms(aes)
    command = CommandPacket(Spi.from_bytes(spi), kic, kid, tar, counter, data)
    return secure_command(command, keys or card_keys)


def _tpdus(packet: bytes, reference: int = 7) -> list[bytes]:
    return [_deliver(ud) for ud in split_command_packet(packet, reference)]


class _Case(SynchronousTestCase):
    def receiver(
        self,
        keys: dict[int, OtaKeys] | None = None,
        executor: _Executor | None = None,
        **kwargs: object,
    ) -> OtaReceiver:
        self.counters = OtaCounters()
        self.executor = executor or _Executor()
        table = keys if keys is not None else {1: OtaKeys(AES_KIC, AES_KID)}
        return OtaReceiver(
            table.get, self.counters, self.executor, admin=DEFAULTS, agent_id=AGENT,
            **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    def assertClearPor(self, outcome: OtaOutcome, tar: bytes, status: PorStatus) -> None:
        """A refusal: a clear PoR, counter 0, the status only (as the SJA2 answers)."""
        self.assertEqual(outcome.result, OtaResult.REFUSED)
        self.assertEqual(outcome.por_status, status)
        expected = b"\x02\x71\x00\x00\x0b\x0a" + tar + bytes(6) + bytes((status,))
        self.assertEqual(outcome.por_ud, expected)


class RealCardTests(_Case):
    """The receiver answers as the real sysmoISIM-SJA2 card of the public traces."""

    def setUp(self) -> None:
        self.command = _hex(
            "real card SJA2 SIM RFM, compact script SELECT DF.GSM + GET RESPONSE",
            "scp80_sms_command_packets",
        )
        self.keys = {
            1: OtaKeys(
                bytes.fromhex(self.command["kic_key"]), bytes.fromhex(self.command["kid_key"])
            )
        }
        self.tar = bytes.fromhex("b00010")

    def test_realCardPorByteForByte(self) -> None:
        """SELECT DF.GSM + GET RESPONSE gives exactly the SJA2's ciphered, CC'd PoR."""
        por = _hex("real card SJA2 PoR ciphered+CC, 2 commands", "scp80_sms_response_packets")
        data = bytes.fromhex(por["decoded"]["data"])
        executor = _Executor(
            {
                bytes.fromhex("a0a40000027f20"): b"\x9f\x16",
                bytes.fromhex("a0c0000016"): data[3:] + b"\x90\x00",
            }
        )
        receiver = self.receiver(self.keys, executor, tars={self.tar: None})
        outcome = receiver.receive_sms_deliver(
            _deliver(bytes.fromhex(self.command["sms_user_data"])), 100.0
        )
        self.assertEqual(outcome.result, OtaResult.EXECUTED)
        self.assertEqual(outcome.por_ud, bytes.fromhex(por["sms_user_data"]))
        self.assertEqual(outcome.report_ud, outcome.por_ud)
        self.assertFalse(outcome.por_via_submit)
        self.assertEqual(outcome.mo_tpdus, ())
        self.assertEqual(outcome.compact, CompactResult(2, 0x9000, data[3:]))
        self.assertEqual(
            executor.seen, [bytes.fromhex("a0a40000027f20"), bytes.fromhex("a0c0000016")]
        )
        self.assertIsNone(outcome.admin_request)

    def test_counterReplayAsSja2(self) -> None:
        """CNTR 100 is accepted above 99 and stored; sent again, the SJA2 option answers 06."""
        command = _hex(
            "real card SJA2, counter mode 10 (must be higher), CNTR=100",
            "scp80_sms_command_packets",
        )
        replay = _hex(
            "real card SJA2 PoR, status 06 after counter replay (not ciphered, no CC)",
            "scp80_sms_response_packets",
        )
        receiver = self.receiver(
            self.keys, tars={self.tar: None}, replay_status=PorStatus.SECURITY_ERROR
        )
        self.counters.record(1, 99)
        tpdu = _deliver(bytes.fromhex(command["sms_user_data"]))
        first = receiver.receive_sms_deliver(tpdu, 0.0)
        self.assertEqual(first.result, OtaResult.EXECUTED)
        self.assertEqual(first.counter, 100)
        self.assertEqual(self.counters.last(1), 100)
        seen = len(self.executor.seen)
        again = receiver.receive_sms_deliver(tpdu, 1.0)
        self.assertEqual(again.por_ud, bytes.fromhex(replay["sms_user_data"]))
        self.assertEqual(again.result, OtaResult.REFUSED)
        self.assertEqual(len(self.executor.seen), seen)

    def test_counterReplayPerSpec(self) -> None:
        """By default a replayed counter is answered 02 (TS 102 225), in clear, nothing run."""
        command = _hex(
            "real card SJA2, counter mode 10 (must be higher), CNTR=100",
            "scp80_sms_command_packets",
        )
        receiver = self.receiver(self.keys, tars={self.tar: None})
        self.counters.record(1, 100)
        outcome = receiver.receive_sms_deliver(
            _deliver(bytes.fromhex(command["sms_user_data"])), 0.0
        )
        self.assertClearPor(outcome, self.tar, PorStatus.COUNTER_LOW)
        self.assertEqual(self.executor.seen, [])
        self.assertEqual(self.counters.last(1), 100)
        self.assertIn("not above the stored 100", outcome.reason)


class SecurityTests(_Case):
    """Every SPI the gateway uses is verified, answered and routed as SPI2 says."""

    def test_gatewayCombinations(self) -> None:
        """AES and 3DES under SPI 1639, 1221, 0621, 1619, 0201: run, PoR verifies at the gateway."""
        for aes in (True, False):
            for spi_hex in ("1639", "1221", "0621", "1619", "0201"):
                with self.subTest(aes=aes, spi=spi_hex):
                    kic, kid, keys = _algorithms(aes)
                    spi = Spi.from_bytes(bytes.fromhex(spi_hex))
                    receiver = self.receiver({1: keys})
                    self.counters.record(1, 41)
                    script = bytes.fromhex("80f28002024f00") + bytes.fromhex("80ca006600")
                    packet = _packet(script, spi=spi.to_bytes(), counter=42, aes=aes)
                    outcome = receiver.receive_sms_deliver(_tpdus(packet)[0], 0.0)
                    self.assertEqual(outcome.result, OtaResult.EXECUTED, outcome.reason)
                    self.assertEqual(self.executor.seen, [script[:7], script[7:]])
                    stored = 42 if spi.counter >= CounterMode.HIGHER else 41
                    self.assertEqual(self.counters.last(1), stored)
                    assert outcome.por_ud is not None
                    por = verify_response(outcome.por_ud, spi, keys, kic=kic, kid=kid)
                    self.assertEqual(por.status, PorStatus.POR_OK)
                    self.assertEqual(por.counter, 42)
                    self.assertEqual(CompactResult.from_bytes(por.data), CompactResult(2, 0x9000))
                    self.assertEqual(outcome.por_via_submit, spi.por_via_submit)
                    if spi.por_via_submit:
                        self.assertMoPor(outcome, spi, kic, kid, keys)
                    else:
                        self.assertEqual(outcome.report_ud, outcome.por_ud)
                        self.assertEqual(outcome.mo_tpdus, ())

    def assertMoPor(self, outcome: OtaOutcome, spi: Spi, kic: Kic, kid: Kid, keys: OtaKeys) -> None:
        """The PoR goes back to the originator in an SMS-SUBMIT; the report says 0B."""
        self.assertEqual(len(outcome.mo_tpdus), 1)
        submit = SmsSubmit.decode(outcome.mo_tpdus[0])
        self.assertEqual(submit.destination_address, GATEWAY)
        self.assertEqual((submit.pid, submit.dcs), (0x7F, 0xF6))
        assert submit.user_data_header is not None
        self.assertEqual(submit.user_data_header.encode() + submit.user_data, outcome.por_ud)
        assert outcome.report_ud is not None
        header = verify_response(outcome.report_ud, spi, keys, kic=kic, kid=kid)
        self.assertEqual(header.status, PorStatus.RESPONSE_BY_SMS_SUBMIT)
        self.assertEqual(header.data, b"")

    def test_badChecksum(self) -> None:
        """A packet CC'd with another KID key is answered 01 in clear; nothing runs."""
        receiver = self.receiver()
        packet = _packet(b"\x80\xca\x00\x66\x00", keys=OtaKeys(AES_KIC, bytes(16)))
        outcome = receiver.receive_sms_deliver(_tpdus(packet)[0], 0.0)
        self.assertClearPor(outcome, ISD_TAR, PorStatus.RC_CC_DS_FAILED)
        self.assertEqual(self.executor.seen, [])
        self.assertEqual(self.counters.last(1), 0)
        self.assertTrue(outcome.por_via_submit)  # SPI2 of 1639 still routes it
        self.assertEqual(len(outcome.mo_tpdus), 1)
        self.assertIsNone(outcome.report_ud)

    def test_unknownTar(self) -> None:
        """A TAR the card does not know is answered 09, without touching keys or counter."""
        receiver = self.receiver()
        tar = bytes.fromhex("b00011")
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(b"", tar=tar))[0], 0.0)
        self.assertClearPor(outcome, tar, PorStatus.TAR_UNKNOWN)
        self.assertIn("B00011", outcome.reason)

    def test_unknownKeyVersion(self) -> None:
        """A key version the card has no key set for is an unidentified security error (06)."""
        receiver = self.receiver({2: OtaKeys(AES_KIC, AES_KID)})
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(b""))[0], 0.0)
        self.assertClearPor(outcome, ISD_TAR, PorStatus.SECURITY_ERROR)
        self.assertIn("key version 1", outcome.reason)

    def test_minimumSecurityLevel(self) -> None:
        """A TAR whose MSL asks for a counter refuses SPI 0621 with 0A."""
        receiver = self.receiver(tars={ISD_TAR: 0x16})
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(b"", spi=b"\x06\x21"))[0], 0.0)
        self.assertClearPor(outcome, ISD_TAR, PorStatus.INSUFFICIENT_SECURITY)

    def test_oneHigherCounter(self) -> None:
        """Counter mode 11 accepts only the stored value plus one (03 otherwise)."""
        receiver = self.receiver()
        self.counters.record(1, 5)
        skip = receiver.receive_sms_deliver(_tpdus(_packet(b"", spi=b"\x1e\x21", counter=7))[0], 0)
        self.assertClearPor(skip, ISD_TAR, PorStatus.COUNTER_HIGH)
        ok = receiver.receive_sms_deliver(_tpdus(_packet(b"", spi=b"\x1e\x21", counter=6))[0], 0)
        self.assertEqual(ok.result, OtaResult.EXECUTED)
        self.assertEqual(self.counters.last(1), 6)

    def test_porOnErrorOnly(self) -> None:
        """SPI2 "PoR on error": silence on success, a PoR on failure."""
        receiver = self.receiver()
        good = receiver.receive_sms_deliver(_tpdus(_packet(b"", spi=b"\x16\x02", counter=3))[0], 0)
        self.assertEqual(good.result, OtaResult.EXECUTED)
        self.assertIsNone(good.por_ud)
        self.assertIsNone(good.report_ud)
        bad = receiver.receive_sms_deliver(_tpdus(_packet(b"", spi=b"\x16\x02", counter=3))[0], 0)
        self.assertClearPor(bad, ISD_TAR, PorStatus.COUNTER_LOW)
        self.assertEqual(bad.report_ud, bad.por_ud)

    def test_noPorAsked(self) -> None:
        """SPI2 00: nothing is answered, even to a refused packet."""
        receiver = self.receiver()
        outcome = receiver.receive_sms_deliver(
            _tpdus(_packet(b"", spi=b"\x16\x00", keys=OtaKeys(AES_KIC, bytes(16))))[0], 0
        )
        self.assertEqual(outcome.result, OtaResult.REFUSED)
        self.assertIsNone(outcome.por_ud)

    @given(
        position=st.integers(min_value=0, max_value=200),
        flip=st.integers(min_value=1, max_value=255),
    )
    def test_anyChangeRefused(self, position: int, flip: int) -> None:
        """Any one-byte change to a CC'd, ciphered packet is refused and runs nothing."""
        receiver = self.receiver()
        packet = bytearray(_packet(PUSH_VECTOR, counter=9))
        packet[position % len(packet)] ^= flip
        outcome = receiver.receive_sms_deliver(_tpdus(bytes(packet))[0], 0.0)
        self.assertEqual(outcome.result, OtaResult.REFUSED)
        self.assertEqual(self.executor.seen, [])
        self.assertIsNone(outcome.admin_request)
        self.assertEqual(self.counters.last(1), 0)

    @given(st.binary(max_size=180))
    def test_randomBytesNeverRaise(self, tpdu: bytes) -> None:
        """Whatever arrives, the receiver returns an outcome and never runs a command."""
        receiver = self.receiver()
        outcome = receiver.receive_sms_deliver(tpdu, 0.0)
        self.assertIn(outcome.result, set(OtaResult) - {OtaResult.EXECUTED})
        self.assertEqual(self.executor.seen, [])

    def test_keysNeverShown(self) -> None:
        """Reasons and reprs of refusals never contain key bytes."""
        receiver = self.receiver()
        outcomes = [
            receiver.receive_sms_deliver(
                _tpdus(_packet(b"", keys=OtaKeys(AES_KIC, AES_KIC)))[0], 0
            ),
            receiver.receive_sms_deliver(_tpdus(_packet(b"", counter=0))[0], 0),
        ]
        shown = " ".join(o.reason + repr(o) for o in outcomes)
        for key in (AES_KIC, AES_KID):
            self.assertNotIn(key.hex(), shown.lower())


class ExecutionTests(_Case):
    """Compact scripts run until the first failure; PUSH and triggers give a session."""

    def test_pushVector(self) -> None:
        """The public PUSH to 1.2.3.4 yields a session there, completed from the defaults."""
        receiver = self.receiver()
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(PUSH_VECTOR))[0], 0.0)
        self.assertEqual(outcome.result, OtaResult.EXECUTED)
        self.assertEqual(
            outcome.admin_request,
            AdminSessionRequest(
                address="1.2.3.4", port=8443, host="admin.example", uri="/admin",
                agent_id=AGENT, bearer=BearerDescription.default(), buffer_size=1000,
            ),
        )  # fmt: skip
        self.assertEqual(outcome.compact, CompactResult(1, 0x9000))
        self.assertEqual(self.executor.seen, [], "the security domain handles PUSH itself")

    def test_pushWithPort(self) -> None:
        """A PUSH naming the TCP port connects there."""
        push = PushBipOpening(
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 4433),
            address=OtherAddress(ip_address("10.0.0.1")),
        ).encode()
        outcome = self.receiver().receive_sms_deliver(_tpdus(_packet(push))[0], 0.0)
        assert outcome.admin_request is not None
        self.assertEqual(
            (outcome.admin_request.address, outcome.admin_request.port), ("10.0.0.1", 4433)
        )
        self.assertEqual(outcome.admin_request.trigger, TriggerKind.PUSH)

    def test_unsupportedPush(self) -> None:
        """A CAT_TP PUSH or a UDP transport is refused in the script result, no session."""
        cat_tp = PushCatTpLink(0x1F90).encode()
        udp = PushBipOpening(
            transport=TransportLevel(TransportProtocol.UDP_CLIENT_REMOTE, 9)
        ).encode()
        for capdu, sw in ((cat_tp, 0x6A81), (udp, 0x6A80)):
            with self.subTest(sw=hex(sw)):
                outcome = self.receiver().receive_sms_deliver(_tpdus(_packet(capdu))[0], 0.0)
                self.assertIsNone(outcome.admin_request)
                self.assertEqual(outcome.compact, CompactResult(1, sw))

    def test_scriptStopsAtFirstError(self) -> None:
        """The third command never runs once the second answered 6A82; the PoR says so."""
        select = bytes.fromhex("00a4040007a0000000871002")
        executor = _Executor({select: b"\x6a\x82"})
        receiver = self.receiver(executor=executor)
        script = bytes.fromhex("80ca006600") + select + bytes.fromhex("80ca00cf00")
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(script))[0], 0.0)
        self.assertEqual(executor.seen, [script[:5], select])
        self.assertEqual(outcome.compact, CompactResult(2, 0x6A82))
        self.assertIn("command 2 of 3: SW 6A82", outcome.reason)

    def test_warningsContinue(self) -> None:
        """A 6310 (GP "more data") and a 61XX do not stop a script."""
        first, second = bytes.fromhex("80f24002024f00"), bytes.fromhex("80f24003024f00")
        executor = _Executor({first: b"\x01\x63\x10", second: b"\x61\x10"})
        receiver = self.receiver(executor=executor)
        script = first + second + bytes.fromhex("80ca006600")
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(script))[0], 0.0)
        self.assertEqual(outcome.compact, CompactResult(3, 0x9000))

    def test_expandedScript(self) -> None:
        """RAM over SMS in the expanded format: a multi-SM AA script runs whole and
        the PoR (by SMS-SUBMIT) carries every R-APDU in an AB template."""
        select = bytes.fromhex("00a4040008a000000151000000")
        status = bytes.fromhex("80f28000024f0000")
        data = bytes.fromhex("80ca006600")
        long_apdu = bytes.fromhex("80e29000") + bytes((150,)) + bytes(range(150))
        executor = _Executor({select: b"\x6f\x00\x90\x00", status: b"\xe3\x02\x90\x00"})
        receiver = self.receiver(executor=executor)
        script = RemoteScript((select, status, long_apdu, data), RemoteFormat.EXPANDED)
        tpdus = _tpdus(_packet(script.encode()))
        self.assertGreater(len(tpdus), 1)
        outcomes = [receiver.receive_sms_deliver(t, 0.0) for t in tpdus]
        outcome = outcomes[-1]
        self.assertEqual(outcome.result, OtaResult.EXECUTED)
        self.assertEqual(executor.seen, list(script.commands))
        self.assertIsNone(outcome.compact)
        kic, kid, keys = _algorithms(True)
        assert outcome.por_ud is not None
        por = verify_response(outcome.por_ud, Spi.from_bytes(b"\x16\x39"), keys, kic=kic, kid=kid)
        result = RemoteResult.decode(por.data, RemoteFormat.EXPANDED, sent=4)
        self.assertEqual(
            result.responses, (b"\x6f\x00\x90\x00", b"\xe3\x02\x90\x00", b"\x90\x00", b"\x90\x00")
        )

    def test_expandedStopsAtFirstError(self) -> None:
        """An expanded script stops at the first error too; the PoR holds the R-APDUs so far."""
        select = bytes.fromhex("00a4040007a0000000871002")
        receiver = self.receiver(executor=_Executor({select: b"\x6a\x82"}))
        script = RemoteScript((select, bytes.fromhex("80ca006600")), RemoteFormat.EXPANDED)
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(script.encode()))[0], 0.0)
        kic, kid, keys = _algorithms(True)
        assert outcome.por_ud is not None
        por = verify_response(outcome.por_ud, Spi.from_bytes(b"\x16\x39"), keys, kic=kic, kid=kid)
        self.assertEqual(
            RemoteResult.decode(por.data, RemoteFormat.EXPANDED),
            RemoteResult(RemoteFormat.EXPANDED, 1, (b"\x6a\x82",)),
        )
        self.assertIn("command 1 of 2: SW 6A82", outcome.reason)

    def test_expandedBadFormat(self) -> None:
        """An AA template the card cannot parse runs nothing; the PoR says bad format."""
        receiver = self.receiver()
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(b"\xaa\x05\x22\x09\x80"))[0], 0.0)
        kic, kid, keys = _algorithms(True)
        assert outcome.por_ud is not None
        por = verify_response(outcome.por_ud, Spi.from_bytes(b"\x16\x39"), keys, kic=kic, kid=kid)
        result = RemoteResult.decode(por.data, RemoteFormat.EXPANDED)
        self.assertEqual((result.executed, result.rejected is not None), (0, True))
        self.assertEqual(self.executor.seen, [])

    def test_truncatedScript(self) -> None:
        """Compact data that ends inside a command runs nothing and reports 6700."""
        outcome = self.receiver().receive_sms_deliver(
            _tpdus(_packet(bytes.fromhex("80e60200")))[0], 0.0
        )
        self.assertEqual(outcome.result, OtaResult.EXECUTED)
        self.assertEqual(outcome.compact, CompactResult(0, 0x6700))
        self.assertEqual(self.executor.seen, [])

    def test_amdBTrigger(self) -> None:
        """The public triggering-parameters tree yields its session, PSK and retry policy."""
        tree = bytes.fromhex(
            _hex("Administration session triggering parameters, full tree (constructed)",
                 "gp_amd_b_tlvs")["tlv"]
        )  # fmt: skip
        receiver = self.receiver()
        parts = _tpdus(_packet(tree))
        self.assertEqual(len(parts), 2)
        receiver.receive_sms_deliver(parts[0], 0.0)
        outcome = receiver.receive_sms_deliver(parts[1], 0.0)
        self.assertEqual(outcome.result, OtaResult.EXECUTED)
        self.assertEqual(
            outcome.admin_request,
            AdminSessionRequest(
                address="127.0.0.1", port=8443, host="localhost", uri="/scripts/testRFM",
                agent_id="GETDATAEXT", bearer=BearerDescription.default(), buffer_size=512,
                apn="internet", psk_identity=b"F0FFFFFFFFFFFFFFFFFF", psk_kvn=0x40, psk_kid=0x01,
                retry=SessionRetryPolicy(3, 3.0), trigger=TriggerKind.AMDB,
            ),
        )  # fmt: skip
        assert outcome.por_ud is not None
        por = verify_response(
            outcome.por_ud, Spi.from_bytes(b"\x16\x39"), OtaKeys(AES_KIC, AES_KID),
            kic=Kic(1, KicAlgorithm.AES_CBC), kid=Kid(1, KidAlgorithm.AES_CMAC),
        )  # fmt: skip
        self.assertEqual((por.status, por.data), (PorStatus.POR_OK, b""))

    def test_minimalTrigger(self) -> None:
        """A trigger with no parameters falls back to every personalised default."""
        outcome = self.receiver().receive_sms_deliver(
            _tpdus(_packet(AdminSessionTrigger().encode()))[0], 0.0
        )
        self.assertEqual(
            outcome.admin_request,
            AdminSessionRequest(
                address="admin.example", port=8443, host="admin.example", uri="/admin",
                agent_id=AGENT, trigger=TriggerKind.AMDB,
            ),
        )  # fmt: skip

    def test_badTrigger(self) -> None:
        """Secured data starting 81 that is no trigger is reported 6A80, no session."""
        outcome = self.receiver().receive_sms_deliver(_tpdus(_packet(b"\x81\x02\x99\x00"))[0], 0)
        self.assertIsNone(outcome.admin_request)
        self.assertEqual(outcome.compact, CompactResult(0, 0x6A80))
        self.assertIn("bad triggering parameters", outcome.reason)


class SmsTests(_Case):
    """The SMS layer: only 8-bit data downloads count; concatenated packets reassemble."""

    def _long_script(self) -> bytes:
        # A PUSH after enough GET DATAs to need three SMs.
        return bytes.fromhex("80ca006600") * 50 + PUSH_VECTOR

    def test_concatenatedOutOfOrder(self) -> None:
        """Parts arriving 3, 1, 2 give one packet; repeats are ignored as duplicates."""
        receiver = self.receiver()
        parts = _tpdus(_packet(self._long_script()))
        self.assertEqual(len(parts), 3)
        self.assertEqual(receiver.receive_sms_deliver(parts[2], 0.0).result, OtaResult.WAITING)
        self.assertEqual(receiver.receive_sms_deliver(parts[0], 1.0).result, OtaResult.WAITING)
        self.assertEqual(receiver.receive_sms_deliver(parts[0], 1.5).result, OtaResult.DUPLICATE)
        outcome = receiver.receive_sms_deliver(parts[1], 2.0)
        self.assertEqual(outcome.result, OtaResult.EXECUTED, outcome.reason)
        assert outcome.admin_request is not None
        self.assertEqual(outcome.admin_request.address, "1.2.3.4")
        self.assertEqual(outcome.compact, CompactResult(51, 0x9000))
        self.assertEqual(receiver.receive_sms_deliver(parts[1], 3.0).result, OtaResult.DUPLICATE)

    def test_incompleteSetExpires(self) -> None:
        """A set whose parts stop coming is dropped after the timeout."""
        receiver = self.receiver(reassembly_timeout=10.0)
        parts = _tpdus(_packet(self._long_script()))
        receiver.receive_sms_deliver(parts[0], 0.0)
        receiver.receive_sms_deliver(parts[1], 1.0)
        late = receiver.receive_sms_deliver(parts[2], 20.0)
        self.assertEqual(late.result, OtaResult.WAITING)
        self.assertEqual(self.executor.seen, [])

    def test_longPorGoesBySubmit(self) -> None:
        """A PoR too big for the delivery report is sent as concatenated SMS-SUBMITs."""
        big = bytes(range(200))
        capdu = bytes.fromhex("80ca00ff00")
        receiver = self.receiver(executor=_Executor({capdu: big + b"\x90\x00"}))
        outcome = receiver.receive_sms_deliver(_tpdus(_packet(capdu, spi=b"\x16\x19"))[0], 0.0)
        self.assertTrue(outcome.por_via_submit)
        self.assertEqual(len(outcome.mo_tpdus), 2)
        payload = b""
        for tpdu in outcome.mo_tpdus:
            submit = SmsSubmit.decode(tpdu)
            payload += submit.user_data
        assert outcome.por_ud is not None
        self.assertEqual(payload, outcome.por_ud[3:])
        assert outcome.report_ud is not None
        kic, kid, keys = _algorithms(True)
        spi = Spi.from_bytes(b"\x16\x19")
        header = verify_response(outcome.report_ud, spi, keys, kic=kic, kid=kid)
        self.assertEqual(header.status, PorStatus.RESPONSE_BY_SMS_SUBMIT)
        full = verify_response(outcome.por_ud, spi, keys, kic=kic, kid=kid)
        self.assertEqual(CompactResult.from_bytes(full.data), CompactResult(1, 0x9000, big))

    def test_notADataDownload(self) -> None:
        """A text SM (PID 00) or a 7-bit one is not for the card's OTA stack: no PoR."""
        ud = split_command_packet(_packet(b""), 1)[0]
        for pid, dcs, data in ((0x00, 0xF6, ud), (0x7F, 0x00, b"\x02\x70\x00\x01\x02")):
            with self.subTest(pid=pid, dcs=dcs):
                outcome = self.receiver().receive_sms_deliver(_deliver(data, pid=pid, dcs=dcs), 0)
                self.assertEqual(outcome.result, OtaResult.NOT_OTA)
                self.assertIsNone(outcome.por_ud)
                self.assertEqual(self.executor.seen, [])

    def test_malformedTpdu(self) -> None:
        """Bytes that are no SMS-DELIVER are ignored with a reason naming the field."""
        outcome = self.receiver().receive_sms_deliver(b"\x40\x0a", 0.0)
        self.assertEqual(outcome.result, OtaResult.NOT_OTA)
        self.assertIn("TP-", outcome.reason)

    def test_missingPacketIdentifier(self) -> None:
        """An 8-bit SM without the 70 identifier is not a secured packet."""
        ud = b"\x00" + _packet(b"")
        outcome = self.receiver().receive_sms_deliver(_deliver(ud), 0.0)
        self.assertEqual(outcome.result, OtaResult.NOT_OTA)

    def test_shortPacketAnsweredIfTarKnown(self) -> None:
        """A packet whose header cannot be read still gets a clear PoR (06) when it has a TAR."""
        packet = bytearray(_packet(b""))
        packet[3] |= 0x80  # SPI1 b8 is reserved
        outcome = self.receiver().receive_sms_deliver(_tpdus(bytes(packet))[0], 0.0)
        self.assertClearPor(outcome, ISD_TAR, PorStatus.SECURITY_ERROR)
