"""Tests for INSTALL, LOAD and DELETE [card content]."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import encode_ber
from simcard.gp import ISD_AID, GpConfig, GpProcessor, default_registry
from tests import vectors
from tests.unit.simcard import (
    RecordingFactory,
    cap_file,
    found,
    h,
    install_apdu,
    load_apdus,
    make_profile,
)

# The live INSTALL vector's load file, module and instance.
V_ELF = h("AA1902BC225801")
V_MOD = h("AA1902BC22580101")
ELF = h("F0626970677701")
MOD = h("F062697067770101")
SSD = h("A000000151535041")
OK_00 = ResponseApdu(b"\x00", 0x9000)


def processor(**kwargs: object) -> GpProcessor:
    return GpProcessor(make_profile(), default_registry(), **kwargs)  # type: ignore[arg-type]


def run(proc: GpProcessor, apdu: str | CommandApdu) -> ResponseApdu:
    return proc.process(CommandApdu.from_hex(apdu) if isinstance(apdu, str) else apdu)


def load(proc: GpProcessor, elf: bytes, data: bytes, **kwargs: object) -> list[ResponseApdu]:
    return [run(proc, a) for a in load_apdus(elf, data, **kwargs)]  # type: ignore[arg-type]


def install_for_load(elf: bytes, sd: bytes = b"", digest: bytes = b"", params: bytes = b"") -> str:
    fields = [elf, sd, digest, params, b""]
    body = b"".join(bytes((len(f),)) + f for f in fields)
    return f"80E60200{len(body):02X}{body.hex()}00"


class LoadTests(SynchronousTestCase):
    """INSTALL [for load] and LOAD register an executable load file."""

    def test_loadRegistersModules(self) -> None:
        """The last LOAD registers the ELF with the CAP's applets as modules."""
        proc = processor()
        cap = cap_file(ELF, [MOD, MOD + b"\x02"], (1, 3))
        answers = load(proc, ELF, cap, block=32, with_hash=True)
        self.assertEqual(answers[0], OK_00)
        self.assertTrue(all(a == ResponseApdu(b"", 0x9000) for a in answers[1:-1]))
        self.assertEqual(answers[-1], OK_00)
        elf = found(proc.registry.load_file(ELF))
        self.assertIsNotNone(elf)
        self.assertEqual(elf.modules, (MOD, MOD + b"\x02"))
        self.assertEqual(elf.version, h("0103"))
        self.assertEqual(elf.size, len(cap))
        self.assertEqual(elf.digest, hashlib.sha256(cap).digest())
        self.assertEqual(elf.sd_aid, ISD_AID)

    @given(st.integers(min_value=1, max_value=255))
    def test_anyBlockSize(self, size: int) -> None:
        """Any split of the load data into blocks registers the same load file."""
        proc = processor()
        answers = load(proc, ELF, cap_file(ELF, [MOD]), block=size)
        self.assertEqual(answers[-1], OK_00)
        self.assertEqual(found(proc.registry.load_file(ELF)).modules, (MOD,))

    def test_dapBlockAccepted(self) -> None:
        """E2 DAP blocks before C4 are accepted (not verified)."""
        proc = processor()
        run(proc, install_for_load(ELF))
        blob = encode_ber(0xE2, encode_ber(0x4F, ISD_AID) + encode_ber(0xC3, bytes(8)))
        blob += encode_ber(0xC4, cap_file(ELF, [MOD]))
        self.assertEqual(run(proc, CommandApdu(0x80, 0xE8, 0x80, 0, blob)), OK_00)

    def test_libraryAndUnknownFormat(self) -> None:
        """Data that is not a CAP file is kept as a load file without modules."""
        proc = processor()
        self.assertEqual(load(proc, ELF, b"not a cap file")[-1], OK_00)
        self.assertEqual(found(proc.registry.load_file(ELF)).modules, ())

    def test_installForLoadRefusals(self) -> None:
        """AID in use 6985, unknown SD 6A88, bad hash length 6A80, field count 6A80."""
        proc = processor()
        self.assertEqual(run(proc, install_for_load(h("A0000000620001"))).sw, 0x6985)
        self.assertEqual(run(proc, install_for_load(ELF, sd=h("F000000000"))).sw, 0x6A88)
        self.assertEqual(run(proc, install_for_load(ELF, digest=bytes(19))).sw, 0x6A80)
        self.assertEqual(run(proc, install_for_load(h("F000"))).sw, 0x6A80)
        self.assertEqual(run(proc, "80E602000807F062697067770100").sw, 0x6A80)
        self.assertEqual(run(proc, "80E6020004 05F0626900").sw, 0x6A80)

    def test_memory(self) -> None:
        """Too little memory answers 6A84, at INSTALL (declared) or at LOAD."""
        proc = processor(config=GpConfig(nvm_total=100))
        params = encode_ber(0xEF, encode_ber(0xC6, (200).to_bytes(2, "big")))
        self.assertEqual(run(proc, install_for_load(ELF, params=params)).sw, 0x6A84)
        self.assertEqual(load(proc, ELF, bytes(150))[-1].sw, 0x6A84)
        self.assertIsNone(proc.registry.load_file(ELF))
        proc = processor(config=GpConfig(max_load_file_size=50))
        self.assertEqual(load(proc, ELF, bytes(100))[-1].sw, 0x6A84)
        answers = [a.sw for a in load(proc, ELF, bytes(2000), block=250)]
        self.assertEqual(answers[:6], [0x9000] * 5 + [0x6A84])
        self.assertEqual(answers[-1], 0x6985)  # the sequence ended at the refusal
        proc = processor(config=GpConfig(max_load_files=8))
        self.assertEqual(run(proc, install_for_load(ELF)).sw, 0x6A84)

    def test_loadRefusals(self) -> None:
        """LOAD without INSTALL 6985, out of order 6A86, bad P1 6A86, no data 6700."""
        proc = processor()
        self.assertEqual(run(proc, "80E8800003C40100").sw, 0x6985)
        run(proc, install_for_load(ELF))
        self.assertEqual(run(proc, "80E8800103C40100").sw, 0x6A86)
        self.assertEqual(run(proc, "80E8000003C40100").sw, 0x6985)  # the sequence was ended
        run(proc, install_for_load(ELF))
        self.assertEqual(run(proc, "80E8400003C40100").sw, 0x6A86)
        run(proc, install_for_load(ELF))
        self.assertEqual(run(proc, "80E88000").sw, 0x6700)

    def test_loadDataRefusals(self) -> None:
        """Hash mismatch, no C4, trailing junk or a wrong package AID answer 6A80."""
        proc = processor()
        cap = cap_file(ELF, [MOD])
        run(proc, install_for_load(ELF, digest=hashlib.sha256(b"other").digest()))
        self.assertEqual(
            run(proc, CommandApdu(0x80, 0xE8, 0x80, 0, encode_ber(0xC4, cap))).sw, 0x6A80
        )
        for blob in (encode_ber(0xC3, cap), encode_ber(0xC4, cap) + b"\x00", h("C405")):
            run(proc, install_for_load(ELF))
            self.assertEqual(run(proc, CommandApdu(0x80, 0xE8, 0x80, 0, blob)).sw, 0x6A80)
        self.assertEqual(load(proc, ELF, cap_file(h("F0626970677799"), [MOD]))[-1].sw, 0x6A80)
        self.assertIsNone(proc.registry.load_file(ELF))

    def test_otherCommandEndsLoad(self) -> None:
        """Another INSTALL between INSTALL [for load] and LOAD ends the sequence."""
        proc = processor()
        run(proc, install_for_load(ELF))
        run(proc, "80E60800" + "0E0000" + "08A000000151535041" + "000000")
        self.assertEqual(run(proc, "80E8800003C40100").sw, 0x6985)


class InstallTests(SynchronousTestCase):
    """INSTALL [for install / make selectable / personalization]."""

    def _loaded(self, factory: RecordingFactory | None = None) -> GpProcessor:
        proc = processor(factories={V_MOD: factory} if factory else None)
        self.assertEqual(load(proc, V_ELF, cap_file(V_ELF, [V_MOD]))[-1], OK_00)
        return proc

    def test_vector(self) -> None:
        """The live INSTALL vector (C9 00 + EA toolkit params) gives 9000 and a
        SELECTABLE instance with privileges 000000 and its parameters."""
        proc = self._loaded()
        capdu = vectors.by_name(
            "gp_apdus", "INSTALL [for install and make selectable] with C9 00 and EA toolkit params"
        )["capdu"]
        self.assertEqual(run(proc, capdu), OK_00)
        app = found(proc.registry.application(V_MOD))
        self.assertEqual(app.life_cycle, 0x07)
        self.assertEqual(app.privileges, h("000000"))
        self.assertEqual(app.elf_aid, V_ELF)
        self.assertEqual(app.install_params, h("C900EA0C800A00000F01000000000000"))
        self.assertEqual(app.sd_aid, ISD_AID)
        listing = run(proc, "80F24002054F03AA190200")
        self.assertIn(encode_ber(0x4F, V_MOD) + h("9F700107"), listing.data)

    def test_vectorNeedsLoadFile(self) -> None:
        """Without its load file the same vector answers 6A88."""
        capdu = vectors.by_name(
            "gp_apdus", "INSTALL [for install and make selectable] with C9 00 and EA toolkit params"
        )["capdu"]
        self.assertEqual(run(processor(), capdu).sw, 0x6A88)

    def test_installCreatesApplet(self) -> None:
        """The module's factory makes the applet, with the C9 parameters."""
        factory = RecordingFactory()
        proc = self._loaded(factory)
        apdu = install_apdu(V_ELF, V_MOD, V_MOD + b"\x07", params=h("C9021234"))
        self.assertEqual(run(proc, apdu), OK_00)
        self.assertEqual(factory.made[0].aid, V_MOD + b"\x07")
        self.assertEqual(factory.made[0].params, h("1234"))
        self.assertIn(V_MOD + b"\x07", proc.applets)

    def test_installRefusals(self) -> None:
        """Unknown ELF or module 6A88; no C9, bad privileges, bad AID 6A80; in use 6985."""
        proc = self._loaded()
        app = V_MOD + b"\x09"
        self.assertEqual(run(proc, install_apdu(ELF, V_MOD, app)).sw, 0x6A88)
        self.assertEqual(run(proc, install_apdu(V_ELF, MOD, app)).sw, 0x6A88)
        self.assertEqual(run(proc, install_apdu(V_ELF, V_MOD, app, params=h("EA00"))).sw, 0x6A80)
        self.assertEqual(run(proc, install_apdu(V_ELF, V_MOD, app, params=h("C905"))).sw, 0x6A80)
        self.assertEqual(
            run(proc, install_apdu(V_ELF, V_MOD, app, privileges=h("0000"))).sw, 0x6A80
        )
        self.assertEqual(run(proc, install_apdu(V_ELF, V_MOD, h("F0"))).sw, 0x6A80)
        self.assertEqual(run(proc, install_apdu(V_ELF, V_MOD, ISD_AID)).sw, 0x6985)
        self.assertEqual(run(proc, "80E60C010100").sw, 0x6A86)
        self.assertEqual(run(proc, "80E6100000").sw, 0x6A86)
        self.assertIsNone(proc.registry.application(app))

    def test_maxApplications(self) -> None:
        """Past the configured number of applications INSTALL answers 6A84."""
        proc = processor(config=GpConfig(max_applications=4))
        load(proc, V_ELF, cap_file(V_ELF, [V_MOD]))
        self.assertEqual(run(proc, install_apdu(V_ELF, V_MOD, V_MOD)).sw, 0x9000)
        self.assertEqual(run(proc, install_apdu(V_ELF, V_MOD, V_MOD + b"\x01")).sw, 0x6A84)

    def test_makeSelectable(self) -> None:
        """[for install] then [for make selectable]: 03 -> 07; again 6985."""
        proc = self._loaded()
        self.assertEqual(run(proc, install_apdu(V_ELF, V_MOD, V_MOD, p1=0x04)), OK_00)
        self.assertEqual(found(proc.registry.application(V_MOD)).life_cycle, 0x03)
        body = "0000" + "08" + V_MOD.hex() + "0180" + "00" + "00"
        command = f"80E60800{len(h(body)):02X}{body}00"
        self.assertEqual(run(proc, command), OK_00)
        app = found(proc.registry.application(V_MOD))
        self.assertEqual((app.life_cycle, app.privileges), (0x07, h("800000")))
        self.assertEqual(run(proc, command).sw, 0x6985)
        unknown = "0000" + "05F000000000" + "00" + "00" + "00"
        self.assertEqual(run(proc, f"80E60800{len(h(unknown)):02X}{unknown}00").sw, 0x6A88)
        with_elf = "01AA" + "00" + "08" + V_MOD.hex() + "000000"
        self.assertEqual(run(proc, f"80E60800{len(h(with_elf)):02X}{with_elf}00").sw, 0x6A80)


class DeleteTests(SynchronousTestCase):
    """DELETE of card content and keys, with the public vectors."""

    def _installed(self) -> GpProcessor:
        proc = processor(factories={V_MOD: RecordingFactory()})
        load(proc, V_ELF, cap_file(V_ELF, [V_MOD]))
        run(proc, install_apdu(V_ELF, V_MOD, V_MOD))
        return proc

    def test_vectorDeleteRelated(self) -> None:
        """The public 'object and related' vector deletes the instance and its applet."""
        proc = self._installed()
        capdu = vectors.by_name("gp_apdus", "DELETE object and related by AID")["capdu"]
        self.assertEqual(run(proc, capdu), OK_00)
        self.assertIsNone(proc.registry.application(V_MOD))
        self.assertNotIn(V_MOD, proc.applets)
        self.assertIsNotNone(proc.registry.load_file(V_ELF))
        self.assertEqual(run(proc, capdu).sw, 0x6A88)

    def test_deleteLoadFile(self) -> None:
        """An ELF with an instance needs P2 80 (else 6985); then both go."""
        proc = self._installed()
        self.assertEqual(run(proc, "80E4000009 4F07AA1902BC225801 00").sw, 0x6985)
        self.assertEqual(run(proc, "80E4008009 4F07AA1902BC225801 00"), OK_00)
        self.assertIsNone(proc.registry.load_file(V_ELF))
        self.assertIsNone(proc.registry.application(V_MOD))

    def test_deleteRefusals(self) -> None:
        """ISD or an ELF in use 6985; bad P1/P2 6A86; bad or ambiguous data 6A80."""
        proc = processor()
        self.assertEqual(run(proc, "80E400000A 4F08A000000151000000 00").sw, 0x6985)
        self.assertEqual(run(proc, "80E4000109 4F07AA1902BC225801").sw, 0x6A86)
        self.assertEqual(run(proc, "80E4010009 4F07AA1902BC225801").sw, 0x6A86)
        self.assertEqual(run(proc, "80E4000003 4F0500").sw, 0x6A80)
        self.assertEqual(run(proc, "80E4000004 4F02AAAA").sw, 0x6A80)
        self.assertEqual(run(proc, "80E400000A 4F05F000000000 D20101").sw, 0x6A80)
        self.assertEqual(run(proc, "80E4000003 C10100").sw, 0x6A80)
        self.assertEqual(run(proc, "80E4000000").sw, 0x6A80)
        self.assertEqual(run(proc, "80E4000009 4F07A0000001515350").sw, 0x6985)
