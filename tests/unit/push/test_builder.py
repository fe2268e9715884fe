"""The push builder, checked by opening what it builds with the OTA codec.

A push is only right if a card can open it: every test verifies the parts
with L{verify_command} (what the card runs) against the same keys, and the
expected C-APDU and triggering parameters are written out by hand from
docs/architecture.md and the public Amd B vector, not produced by the
codec under test.
"""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    ChecksumKind,
    CompactResult,
    CounterTooLow,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaError,
    OtaKeys,
    PorStatus,
    ResponsePacket,
    Spi,
    parse_command_header,
    secure_response,
    strip_command_udh,
    verify_command,
)
from bipgw.codec.ram import AdminSessionTrigger, PushBipOpening, RamError, split_compact
from bipgw.codec.sms import Reassembler
from bipgw.config import Config
from bipgw.core import PushError, PushOrder, SessionId
from bipgw.push import (
    BuiltPush,
    CallbackAddress,
    MemoryCounters,
    PorError,
    PushBuilder,
    PushProfile,
    TriggerKind,
)
from tests import vectors

ICCID = "8988211000000000018"
MSISDN = "447700900123"
KEYS = OtaKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
CALLBACK = CallbackAddress("192.0.2.10", 8443)

# docs/architecture.md: 80 EC 01 01 Lc [35 01 03][39 02 buf][3C 03 02 port][3E 05 21 ipv4],
# buffer 1024 = 0400, port 8443 = 20FB, 192.0.2.10 = C000020A; Lc = 3+4+5+7 = 0x13.
EXPECTED_PUSH = bytes.fromhex("80ec010113350103390204003c030220fb3e0521c000020a")


class StrictCounters:
    """A counter store that persists before answering and insists on strict increase."""

    def __init__(self) -> None:
        self.stored: dict[str, int] = {}
        self.handed: list[int] = []

    def next_ota_counter(self, iccid: str) -> Deferred[int]:
        value = self.stored.get(iccid, 0) + 1
        self.stored[iccid] = value  # persisted first ...
        assert not self.handed or value > self.handed[-1], "counters must strictly increase"
        self.handed.append(value)
        return succeed(value)  # ... then handed out


def _order(attempt: int = 1, service: str = "isd", msisdn: str | None = MSISDN) -> PushOrder:
    return PushOrder(SessionId("s1"), ICCID, msisdn, attempt, service)


def _open(built: BuiltPush, keys: OtaKeys = KEYS, last: int | None = 0) -> tuple[bytes, int]:
    """What the card gets from the push: the secured data and the counter."""
    if len(built.parts) == 1:
        raw = strip_command_udh(built.parts[0])
    else:
        reassembler = Reassembler()
        found = [reassembler.add_user_data(MSISDN, part, 0.0) for part in built.parts]
        assert found[:-1] == [None] * (len(found) - 1)
        whole = found[-1]
        assert whole is not None
        raw = whole
    packet = verify_command(raw, keys, last_counter=last)
    return packet.data, packet.counter


class PushTriggerTests(SynchronousTestCase):
    """trigger = push: the PUSH C-APDU in a compact script."""

    def setUp(self) -> None:
        self.keys_asked: list[tuple[str, int]] = []
        self.counters = StrictCounters()
        self.builder = PushBuilder(self.keys_for, self.counters, CALLBACK)

    def keys_for(self, iccid: str, kvn: int) -> OtaKeys | None:
        self.keys_asked.append((iccid, kvn))
        return KEYS if iccid == ICCID else None

    def test_pushOpensToTheExpectedCommand(self) -> None:
        """The card opens the packet with its keys and finds exactly the PUSH C-APDU."""
        built = self.successResultOf(self.builder.build(_order()))
        self.assertEqual(len(built.parts), 1)
        self.assertEqual(built.parts[0][:3], b"\x02\x70\x00")
        data, counter = _open(built)
        self.assertEqual(split_compact(data), (EXPECTED_PUSH,))
        push = PushBipOpening.decode(EXPECTED_PUSH)
        assert push.address is not None and push.transport is not None
        self.assertEqual(push.address.address, ip_address("192.0.2.10"))
        self.assertEqual(push.transport.port, 8443)
        self.assertEqual((counter, built.counter), (1, 1))
        self.assertEqual(self.keys_asked, [(ICCID, 1)])

    def test_defaultSecurityHeader(self) -> None:
        """Defaults: TAR 000000, SPI 16 39, KIc 12, KID 12, CC of 8 bytes (CHL 15)."""
        built = self.successResultOf(self.builder.build(_order()))
        raw = strip_command_udh(built.parts[0])
        self.assertEqual(raw[2:10].hex(), "1516391212000000")
        header = parse_command_header(raw)
        self.assertEqual(header.spi.to_bytes(), b"\x16\x39")
        self.assertEqual((header.kic.to_byte(), header.kid.to_byte()), (0x12, 0x12))

    def test_wrongKeysCannotOpen(self) -> None:
        """Other keys fail the card's checksum: the push really is secured."""
        built = self.successResultOf(self.builder.build(_order()))
        other = OtaKeys(kic_key=bytes(16), kid_key=bytes(16))
        self.assertRaises(OtaError, _open, built, other)

    def test_countersStrictlyIncrease(self) -> None:
        """Each push takes the next counter, and the card accepts each over the last."""
        last = 0
        for attempt in (1, 2, 3):
            built = self.successResultOf(self.builder.build(_order(attempt)))
            _, counter = _open(built, last=last)
            self.assertEqual(counter, attempt)
            last = counter
        self.assertEqual(self.counters.handed, [1, 2, 3])
        self.assertRaises(CounterTooLow, _open, built, KEYS, 3)

    def test_counterNotAboveLastUsedRefused(self) -> None:
        """A counter store that gives a counter already used is refused (a replay)."""
        counters = MemoryCounters()
        builder = PushBuilder(self.keys_for, counters, CALLBACK)
        self.successResultOf(builder.build(_order()))
        counters.last[ICCID] = 0
        failure = self.failureResultOf(builder.build(_order(2)), PushError)
        self.assertIn("not above 1", str(failure.value))

    def test_noMsisdnIsPermanent(self) -> None:
        """A card without MSISDN cannot be pushed; no key or counter is touched."""
        failure = self.failureResultOf(self.builder.build(_order(msisdn=None)), PushError)
        self.assertTrue(failure.value.permanent)
        self.assertEqual((self.keys_asked, self.counters.handed), ([], []))

    def test_noKeysIsPermanentAndSpendsNoCounter(self) -> None:
        """Without keys the push fails permanently before any counter is allocated."""
        builder = PushBuilder(lambda iccid, kvn: None, self.counters, CALLBACK)
        failure = self.failureResultOf(builder.build(_order()), PushError)
        self.assertTrue(failure.value.permanent)
        self.assertIn("key version 1", str(failure.value))
        self.assertEqual(self.counters.handed, [])

    def test_keysThatDoNotFitArePermanent(self) -> None:
        """DES-sized keys under AES KIc/KID fail, without naming the key bytes."""
        secret = bytes.fromhex("0123456789abcdef")
        builder = PushBuilder(
            lambda i, k: OtaKeys(kic_key=secret, kid_key=secret), self.counters, CALLBACK
        )
        failure = self.failureResultOf(builder.build(_order()), PushError)
        self.assertTrue(failure.value.permanent)
        self.assertNotIn(secret.hex(), str(failure.value))

    def test_unknownServiceIsPermanent(self) -> None:
        """With per-service profiles, an unknown service is refused permanently."""
        builder = PushBuilder(self.keys_for, self.counters, CALLBACK, {"isd": PushProfile()})
        failure = self.failureResultOf(builder.build(_order(service="other")), PushError)
        self.assertTrue(failure.value.permanent)
        self.assertIn("'other'", str(failure.value))

    def test_asynchronousKeysAndSeparateKeyVersions(self) -> None:
        """Keys may come later (a database); KIc and KID of other versions are combined."""
        pending: list[tuple[int, Deferred[OtaKeys | None]]] = []

        def keys_for(iccid: str, kvn: int) -> Deferred[OtaKeys | None]:
            d: Deferred[OtaKeys | None] = Deferred()
            pending.append((kvn, d))
            return d

        profile = PushProfile(kic=Kic(2, KicAlgorithm.AES_CBC), kid=Kid(3, KidAlgorithm.AES_CMAC))
        builder = PushBuilder(keys_for, self.counters, CALLBACK, profile)
        result = builder.build(_order())
        pending[0][1].callback(OtaKeys(kic_key=KEYS.kic_key, kid_key=bytes(16)))
        pending[1][1].callback(OtaKeys(kic_key=bytes(16), kid_key=KEYS.kid_key))
        self.assertEqual([kvn for kvn, _ in pending], [2, 3])
        data, _ = _open(self.successResultOf(result))
        self.assertEqual(split_compact(data), (EXPECTED_PUSH,))

    def test_builtReprHidesPayload(self) -> None:
        """A BuiltPush repr shows the part count, not the secured bytes."""
        built = self.successResultOf(self.builder.build(_order()))
        self.assertIn("<1 parts", repr(built))
        self.assertNotIn(built.parts[0][5:12].hex(), repr(built).lower())


class AmdBTriggerTests(SynchronousTestCase):
    """trigger = amdb: the GP Amendment B triggering parameters."""

    def test_publicVectorReproduced(self) -> None:
        """The profile of the public vector's inputs gives its exact 81 TLV."""
        v = vectors.by_name(
            "gp_amd_b_tlvs", "Administration session triggering parameters, full tree (constructed)"
        )
        profile = PushProfile(
            trigger="amdb",
            buffer_size=512,
            apn="internet",
            psk_kvn=0x40,
            psk_kid=0x01,
            retry_counter=3,
            retry_delay=timedelta(seconds=3),
            admin_host="localhost",
            agent_id="GETDATAEXT",
            admin_uri="/scripts/testRFM",
        )
        builder = PushBuilder(
            lambda i, k: KEYS,
            MemoryCounters(),
            CallbackAddress("127.0.0.1", 8443),
            profile,
            psk_identity=lambda iccid: b"F0FFFFFFFFFFFFFFFFFF",
        )
        self.assertEqual(builder.secured_data(ICCID, profile).hex(), v["tlv"])

    def test_longTriggerSplitsAndReassembles(self) -> None:
        """A trigger longer than one SM goes in concatenated parts that reassemble and open."""
        profile = PushProfile(
            trigger=TriggerKind.AMDB, admin_uri="/admin/" + "a" * 150, admin_host="gw.example"
        )
        builder = PushBuilder(lambda i, k: KEYS, MemoryCounters(), CALLBACK, profile)
        built = self.successResultOf(builder.build(_order()))
        self.assertGreater(len(built.parts), 1)
        self.assertTrue(all(len(p) <= 140 for p in built.parts))
        self.assertEqual(built.parts[0][:3], b"\x07\x70\x00")
        self.assertEqual(built.parts[1][:2], b"\x05\x00")
        data, _ = _open(built)
        trigger = AdminSessionTrigger.decode(data)
        assert trigger.http is not None and trigger.security is not None
        assert trigger.connection is not None and trigger.connection.address is not None
        self.assertEqual(trigger.http.uri, profile.admin_uri)
        self.assertEqual(trigger.http.agent_id, ICCID)
        self.assertEqual(trigger.security.psk_identity, ICCID.encode())
        self.assertEqual(trigger.connection.address.address, ip_address("192.0.2.10"))

    def test_fromConfiguredService(self) -> None:
        """A [services.NAME] table becomes the same profile the defaults describe."""
        config = Config.from_string(
            '[smpp]\nendpoint = "tcp:host=127.0.0.1:port=2775"\nsystem_id = "gw"\n'
            'password = "pw"\nsource_address = "1"\n[admin]\npublic_host = "192.0.2.10"\n'
            '[services.isd]\ntrigger = "amdb"\n',
            base_dir="/",
        )
        profile = PushProfile.from_service(config.services["isd"], admin_uri="/admin")
        self.assertEqual(
            profile, PushProfile(trigger="amdb", psk_kvn=0x40, psk_kid=1, admin_uri="/admin")
        )

    def test_badProfileRefusedUpFront(self) -> None:
        """A profile the codec cannot encode is refused when made, not at the first push."""
        self.assertRaises(RamError, PushProfile, admin_uri="")
        self.assertRaises(ValueError, PushProfile, tar=b"\x00")
        rc_only = Spi(checksum=ChecksumKind.RC)
        self.assertRaises(
            ValueError, PushProfile, spi=rc_only, kid=Kid.from_byte(0x12, ChecksumKind.CC)
        )


class PorTests(SynchronousTestCase):
    """verify_por: the card's PoR for the last push, with its keys."""

    def setUp(self) -> None:
        self.builder = PushBuilder(lambda i, k: KEYS, MemoryCounters(), CALLBACK)
        self.spi = Spi.from_bytes(b"\x16\x39")
        self.kic, self.kid = Kic.from_byte(0x12), Kid.from_byte(0x12, ChecksumKind.CC)

    def por(self, counter: int, tar: bytes = b"\x00\x00\x00", keys: OtaKeys = KEYS) -> bytes:
        packet = ResponsePacket(tar, counter, PorStatus.POR_OK, CompactResult(1, 0x9000).to_bytes())
        return secure_response(packet, self.spi, keys, kic=self.kic, kid=self.kid)

    def test_genuinePor(self) -> None:
        """A PoR secured with the card's keys opens to its status, counter and data."""
        self.successResultOf(self.builder.build(_order()))
        packet = self.successResultOf(self.builder.verify_por(ICCID, self.por(1)))
        self.assertEqual((packet.status, packet.counter), (PorStatus.POR_OK, 1))
        self.assertEqual(CompactResult.from_bytes(packet.data).last_sw, 0x9000)

    def test_forgedPorRefused(self) -> None:
        """A PoR secured with other keys is refused with PorError."""
        self.successResultOf(self.builder.build(_order()))
        forged = self.por(1, keys=OtaKeys(kic_key=KEYS.kic_key, kid_key=bytes(16)))
        self.failureResultOf(self.builder.verify_por(ICCID, forged), PorError)

    def test_otherTarRefused(self) -> None:
        """A PoR for another TAR is not the push's."""
        self.successResultOf(self.builder.build(_order()))
        wrong = self.por(1, b"\xb0\x00\x10")
        failure = self.failureResultOf(self.builder.verify_por(ICCID, wrong), PorError)
        self.assertIn("b00010", str(failure.value))

    def test_noProfileToCheckWith(self) -> None:
        """With per-service profiles and no push built for the card, there is nothing to check."""
        builder = PushBuilder(lambda i, k: KEYS, MemoryCounters(), CALLBACK, {"isd": PushProfile()})
        self.failureResultOf(builder.verify_por(ICCID, self.por(1)), PorError)

    def test_missingKeys(self) -> None:
        """A card without keys cannot have its PoR checked."""
        builder = PushBuilder(lambda i, k: None, MemoryCounters(), CALLBACK)
        failure = self.failureResultOf(builder.verify_por(ICCID, self.por(1)), PorError)
        self.assertIn("key version 1", str(failure.value))


class ExportTests(SynchronousTestCase):
    """bipgw.push exports exactly the objects of its private modules."""

    def test_allExported(self) -> None:
        """Every name in __all__ is its private module's own object, and all are exported."""
        from bipgw import push
        from bipgw.push import _builder, _profile, _sender

        modules = (_builder, _profile, _sender)
        for name in push.__all__:
            (home,) = [m for m in modules if name in m.__all__]
            self.assertIs(getattr(push, name), getattr(home, name))
        self.assertEqual(sorted(push.__all__), sorted(n for m in modules for n in m.__all__))
