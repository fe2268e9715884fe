"""Tests for STORE DATA: ISD data and personalization of applications."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from simcard.gp import GpConfig, GpProcessor, default_registry
from tests.unit.simcard import RecordingFactory, cap_file, h, install_apdu, load_apdus, make_profile

ELF = h("F0626970677701")
MOD = h("F062697067770101")
APP = h("F06269706777010101")
# Admin-session defaults as a platform would store them (PROTOCOLS.md 3.5).
SECURITY = h("85 0E 0A 38393838323131303030 02 40 01")


def processor(**kwargs: object) -> GpProcessor:
    return GpProcessor(make_profile(), default_registry(), **kwargs)  # type: ignore[arg-type]


def store(proc: GpProcessor, p1: int, p2: int, data: bytes) -> ResponseApdu:
    return proc.process(CommandApdu(0x80, 0xE2, p1, p2, data))


class IsdStoreDataTests(SynchronousTestCase):
    """STORE DATA to the ISD keeps BER-TLV objects (GET DATA reads them) and DGIs."""

    def test_storeAndRead(self) -> None:
        """80 E2 90 00 with an 85 object; GET DATA 0085 answers it."""
        proc = processor()
        self.assertEqual(store(proc, 0x90, 0x00, SECURITY), ResponseApdu(b"", 0x9000))
        self.assertEqual(proc.registry.sd_data[0x85], SECURITY[2:])
        self.assertTrue(proc.registry.changed)
        self.assertEqual(proc.process(CommandApdu.from_hex("80CA008500")).data, SECURITY)

    def test_overridesDerivedValue(self) -> None:
        """A stored IIN replaces the one derived from the ICCID."""
        proc = processor()
        store(proc, 0x90, 0x00, h("4203123456"))
        self.assertEqual(proc.process(CommandApdu.from_hex("80CA004200")).data, h("4203123456"))

    def test_blocks(self) -> None:
        """Blocks are numbered from 00 and parsed once the last one arrives."""
        proc = processor()
        self.assertEqual(store(proc, 0x10, 0x00, SECURITY[:5]).sw, 0x9000)
        self.assertEqual(proc.registry.sd_data, {})
        self.assertEqual(store(proc, 0x90, 0x01, SECURITY[5:]).sw, 0x9000)
        self.assertEqual(proc.registry.sd_data[0x85], SECURITY[2:])
        self.assertEqual(store(proc, 0x90, 0x01, SECURITY).sw, 0x6A86)

    def test_dgi(self) -> None:
        """DGI-structured data (P1 88) is kept per DGI, with the FF long length too."""
        proc = processor()
        data = h("8010 02 ABCD") + h("0202 FF 0003 010203")
        self.assertEqual(store(proc, 0x88, 0x00, data).sw, 0x9000)
        self.assertEqual(proc.registry.sd_dgi, {0x8010: h("ABCD"), 0x0202: h("010203")})
        self.assertEqual(store(proc, 0x88, 0x00, h("8010 05 AB")).sw, 0x6A80)

    def test_refusals(self) -> None:
        """Encrypted 6A80; no structure 6A80; reserved structure 6A86; computed
        objects 6A80; bad TLV 6A80; over the size limit 6A84."""
        proc = processor(config=GpConfig(max_sd_data=16))
        self.assertEqual(store(proc, 0xF0, 0x00, SECURITY).sw, 0x6A80)
        self.assertEqual(store(proc, 0x80, 0x00, SECURITY).sw, 0x6A80)
        self.assertEqual(store(proc, 0x98, 0x00, SECURITY).sw, 0x6A86)
        self.assertEqual(store(proc, 0x90, 0x00, h("C103000001")).sw, 0x6A80)
        self.assertEqual(store(proc, 0x90, 0x00, h("8505")).sw, 0x6A80)
        self.assertEqual(store(proc, 0x90, 0x00, h("8511") + bytes(17)).sw, 0x6A84)
        self.assertEqual(proc.registry.sd_data, {})


class PersonalizationTests(SynchronousTestCase):
    """After INSTALL [for personalization], STORE DATA goes to the application."""

    def _proc(self) -> tuple[GpProcessor, RecordingFactory]:
        factory = RecordingFactory()
        proc = processor(factories={MOD: factory})
        for apdu in load_apdus(ELF, cap_file(ELF, [MOD])):
            proc.process(apdu)
        proc.process(install_apdu(ELF, MOD, APP))
        return proc, factory

    def test_forwarded(self) -> None:
        """Blocks reach the applet with via_security_domain; the last ends it."""
        proc, factory = self._proc()
        perso = CommandApdu(0x80, 0xE6, 0x20, 0x00, b"\x00\x00\x09" + APP + b"\x00\x00\x00", 256)
        self.assertEqual(proc.process(perso), ResponseApdu(b"\x00", 0x9000))
        self.assertEqual(store(proc, 0x00, 0x00, h("0102")).sw, 0x9000)
        self.assertEqual(store(proc, 0x80, 0x01, h("03")).sw, 0x9000)
        applet = factory.made[0]
        self.assertEqual(bytes(applet.data), h("010203"))
        self.assertTrue(all(call[1][1] for call in applet.calls if call[0] == "process"))  # type: ignore[index]
        self.assertEqual(proc.selected, proc.registry.isd.aid)
        self.assertEqual(store(proc, 0x90, 0x00, SECURITY).sw, 0x9000)  # back to the ISD
        self.assertEqual(bytes(applet.data), h("010203"))

    def test_refusals(self) -> None:
        """Unknown instance 6A88; instance without applet 6985; bad layout 6A80."""
        proc, _ = self._proc()
        usim = h("A0000000871002FFFFFFFF8900000100")
        unknown = b"\x00\x00\x05" + h("F000000000") + b"\x00\x00\x00"
        no_applet = b"\x00\x00\x10" + usim + b"\x00\x00\x00"
        bad = b"\x01\x00\x00\x09" + APP + b"\x00\x00\x00"
        for data, sw in ((unknown, 0x6A88), (no_applet, 0x6985), (bad, 0x6A80)):
            self.assertEqual(proc.process(CommandApdu(0x80, 0xE6, 0x20, 0, data)).sw, sw)
