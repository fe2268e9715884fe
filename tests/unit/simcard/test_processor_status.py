"""Tests for GET STATUS (with paging) and SET STATUS."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import decode_ber
from simcard.gp import ISD_AID, GpConfig, GpProcessor, Registry, default_registry
from tests import vectors
from tests.unit.simcard import found, h, make_profile

USIM = h("A0000000871002FFFFFFFF8900000100")
SSD = h("A000000151535041")


def run(proc: GpProcessor, apdu: str) -> ResponseApdu:
    return proc.process(CommandApdu.from_hex(apdu))


def processor(max_response: int = 240, registry: Registry | None = None) -> GpProcessor:
    return GpProcessor(
        make_profile(),
        registry if registry is not None else default_registry(),
        config=GpConfig(max_response=max_response),
    )


def entries(data: bytes) -> list[dict[int, list[bytes]]]:
    """GET STATUS TLV data as a list of {tag: [values]} per E3 entry."""
    out = []
    for entry in decode_ber(data):
        assert entry.tag == 0xE3
        fields: dict[int, list[bytes]] = {}
        for tlv in entry.children():
            fields.setdefault(tlv.tag, []).append(tlv.value)
        out.append(fields)
    return out


def all_pages(proc: GpProcessor, p1: int, criteria: str = "4F00") -> tuple[bytes, int]:
    """Concatenate every page of a GET STATUS; return data and the page count."""
    first = f"80F2{p1:02X}02{len(h(criteria)):02X}{criteria}00"
    answer = run(proc, first)
    data, pages = answer.data, 1
    while answer.sw == 0x6310:
        answer = run(proc, f"80F2{p1:02X}03{len(h(criteria)):02X}{criteria}00")
        data += answer.data
        pages += 1
    assert answer.sw == 0x9000, hex(answer.sw)
    return data, pages


class GetStatusTests(SynchronousTestCase):
    """GET STATUS lists the registry subsets in TLV and legacy formats."""

    def test_vectorIsd(self) -> None:
        """The public vector lists the ISD: AID, life cycle SECURED, privileges."""
        capdu = vectors.by_name("gp_apdus", "GET STATUS ISD, TLV response")["capdu"]
        answer = processor().process(CommandApdu.from_hex(capdu))
        self.assertEqual(answer.sw, 0x9000)
        self.assertEqual(
            entries(answer.data), [{0x4F: [ISD_AID], 0x9F70: [b"\x0f"], 0xC5: [h("9EFE00")]}]
        )

    def test_applications(self) -> None:
        """P1 40 lists applications and SSDs with ELF (C4) and SD (CC) AIDs."""
        data, _ = all_pages(processor(), 0x40)
        listed = entries(data)
        self.assertEqual([e[0x4F][0] for e in listed][1], USIM)
        usim = listed[1]
        self.assertEqual(usim[0xC4], [h("A0000000871002")])
        self.assertEqual(usim[0xCC], [ISD_AID])
        self.assertEqual(usim[0x9F70], [b"\x0f"])
        self.assertEqual(listed[0][0xC5], [h("800000")])

    def test_loadFilesAndModules(self) -> None:
        """P1 20 lists load files without modules; P1 10 adds 84 module AIDs."""
        elfs = entries(all_pages(processor(), 0x20)[0])
        with_modules = entries(all_pages(processor(), 0x10)[0])
        self.assertEqual(len(elfs), 8)
        self.assertTrue(all(0x84 not in e for e in elfs))
        ssd_package = next(e for e in with_modules if e[0x4F] == [h("A0000001515350")])
        self.assertEqual(ssd_package[0x84], [SSD])
        self.assertEqual(ssd_package[0xCE], [h("0100")])
        self.assertEqual(ssd_package[0x9F70], [b"\x01"])

    def test_pagingReassembles(self) -> None:
        """Pages of 6310 + next occurrence reassemble exactly the whole listing."""
        whole, pages = all_pages(processor(max_response=4096), 0x10)
        self.assertEqual(pages, 1)
        paged, pages = all_pages(processor(), 0x10)
        self.assertGreater(pages, 1)
        self.assertEqual(paged, whole)

    @given(st.integers(min_value=1, max_value=600), st.sampled_from([0x80, 0x40, 0x20, 0x10]))
    def test_anyPageSize(self, size: int, p1: int) -> None:
        """Whatever the page size, each page fits it (or is one entry) and all reassemble."""
        whole, _ = all_pages(processor(max_response=4096), p1)
        proc = processor(max_response=size)
        answer = run(proc, f"80F2{p1:02X}02024F0000")
        data = answer.data
        while answer.sw == 0x6310:
            self.assertTrue(len(answer.data) <= size or len(entries(answer.data)) == 1)
            answer = run(proc, f"80F2{p1:02X}03024F0000")
            data += answer.data
        self.assertEqual(answer.sw, 0x9000)
        self.assertEqual(data, whole)

    def test_vectorNextWithoutFirst(self) -> None:
        """The public 'next occurrence' vector with nothing pending answers 6A88."""
        capdu = vectors.by_name("gp_apdus", "GET STATUS apps+SDs, next occurrence")["capdu"]
        self.assertEqual(processor().process(CommandApdu.from_hex(capdu)).sw, 0x6A88)

    def test_nextMustMatch(self) -> None:
        """A next occurrence for another P1 than the pending listing answers 6A88."""
        proc = processor(max_response=60)
        self.assertEqual(run(proc, "80F21002024F0000").sw, 0x6310)
        self.assertEqual(run(proc, "80F24003024F0000").sw, 0x6A88)
        self.assertEqual(run(proc, "80F21003024F0000").sw, 0x6A88)  # listing dropped

    def test_searchCriteria(self) -> None:
        """A partial AID and a 9F70 life cycle narrow the listing; no match 6A88."""
        data, _ = all_pages(processor(), 0x40, "4F05A000000087")
        self.assertEqual(len(entries(data)), 2)
        data, _ = all_pages(processor(), 0x20, "4F07A0000000620102")
        self.assertEqual([e[0x4F] for e in entries(data)], [[h("A0000000620102")]])
        self.assertEqual(run(processor(), "80F24002054F03F00000").sw, 0x6A88)
        self.assertEqual(run(processor(), "80F24002064F009F70010300").sw, 0x6A88)
        data, _ = all_pages(processor(), 0x40, "4F009F70010F")
        self.assertEqual(len(entries(data)), 3)

    def test_tagList(self) -> None:
        """A 5C tag list limits each entry to the tags asked for."""
        data, _ = all_pages(processor(), 0x40, "4F005C034F9F70")
        self.assertEqual(set(entries(data)[0]), {0x4F, 0x9F70})
        data, _ = all_pages(processor(), 0x40, "4F005C039F70C5")
        self.assertEqual(set(entries(data)[0]), {0x9F70, 0xC5})

    def test_legacyFormat(self) -> None:
        """P2 00 answers the deprecated format: length, AID, life cycle, privileges."""
        answer = run(processor(), "80F28000024F0000")
        self.assertEqual(answer, ResponseApdu(b"\x08" + ISD_AID + h("0F9E"), 0x9000))
        answer = run(processor(max_response=4096), "80F21000094F07A000000151535000")
        self.assertEqual(answer.data, h("07A0000001515350 01 00 01 08A000000151535041"))

    def test_badCommand(self) -> None:
        """Bad P1/P2 answer 6A86; criteria without 4F, or malformed, 6A80."""
        proc = processor()
        self.assertEqual(run(proc, "80F20002024F0000").sw, 0x6A86)
        self.assertEqual(run(proc, "80F28004024F0000").sw, 0x6A86)
        self.assertEqual(run(proc, "80F28002029F7000").sw, 0x6A80)
        self.assertEqual(run(proc, "80F28002034F0500").sw, 0x6A80)
        self.assertEqual(run(proc, "80F2800200").sw, 0x6A80)
        self.assertEqual(run(proc, "80F28002064F00C1020000").sw, 0x6A80)
        self.assertEqual(run(proc, "80F28000064F005C014F00").sw, 0x6A80)  # no 5C in legacy


def set_status(proc: GpProcessor, p1: int, p2: int, aid: bytes = b"") -> int:
    data = f"{len(aid):02X}{aid.hex()}" if aid else ""
    return run(proc, f"80F0{p1:02X}{p2:02X}{data}").sw


class SetStatusTests(SynchronousTestCase):
    """SET STATUS moves applications, Security Domains and the card."""

    def test_lockUnlockApplication(self) -> None:
        """P1 40: 80 locks (keeping the state under bit 8), 00 unlocks; twice 6985."""
        proc = processor()
        self.assertEqual(set_status(proc, 0x40, 0x80, USIM), 0x9000)
        self.assertEqual(found(proc.registry.application(USIM)).life_cycle, 0x8F)
        self.assertEqual(set_status(proc, 0x40, 0x80, USIM), 0x6985)
        self.assertEqual(set_status(proc, 0x40, 0x00, USIM), 0x9000)
        self.assertEqual(found(proc.registry.application(USIM)).life_cycle, 0x0F)
        self.assertEqual(set_status(proc, 0x40, 0x00, USIM), 0x6985)

    def test_applicationRefusals(self) -> None:
        """Unknown AID or the ISD 6A88; a non-state 6A86; an app-specific state 6985."""
        proc = processor()
        self.assertEqual(set_status(proc, 0x40, 0x80, h("F000000000")), 0x6A88)
        self.assertEqual(set_status(proc, 0x40, 0x80, ISD_AID), 0x6A88)
        self.assertEqual(set_status(proc, 0x40, 0x05, USIM), 0x6A86)
        self.assertEqual(set_status(proc, 0x40, 0x1F, USIM), 0x6985)
        self.assertEqual(set_status(proc, 0x20, 0x80, USIM), 0x6A86)

    def test_personalizeSecurityDomain(self) -> None:
        """An SSD goes SELECTABLE -> PERSONALIZED by SET STATUS 0F."""
        registry = default_registry()
        sd = found(registry.application(SSD))
        registry.replace_application(attrs.evolve(sd, life_cycle=0x07))
        proc = processor(registry=registry)
        self.assertEqual(set_status(proc, 0x40, 0x0F, SSD), 0x9000)
        self.assertEqual(found(registry.application(SSD)).life_cycle, 0x0F)
        self.assertEqual(set_status(proc, 0x40, 0x0F, SSD), 0x6985)

    def test_lockSecurityDomainAndApplications(self) -> None:
        """P1 60 locks an SSD with its associated applications; 00 unlocks them."""
        registry = default_registry()
        usim = found(registry.application(USIM))
        registry.delete(USIM, related=False)
        registry.add_application(attrs.evolve(usim, sd_aid=SSD))
        proc = processor(registry=registry)
        self.assertEqual(set_status(proc, 0x60, 0x80, SSD), 0x9000)
        self.assertTrue(found(registry.application(SSD)).is_locked)
        self.assertTrue(found(registry.application(USIM)).is_locked)
        self.assertFalse(
            found(registry.application(h("A0000000871004FFFFFFFF8900000100"))).is_locked
        )
        self.assertEqual(set_status(proc, 0x60, 0x00, SSD), 0x9000)
        self.assertFalse(found(registry.application(USIM)).is_locked)
        self.assertEqual(set_status(proc, 0x60, 0x80, USIM), 0x6A80)
        self.assertEqual(set_status(proc, 0x60, 0x0F, SSD), 0x6A86)

    def test_cardLifeCycle(self) -> None:
        """P1 80 locks, unlocks and terminates the card; backwards 6985, junk 6A80."""
        proc = processor()
        self.assertEqual(set_status(proc, 0x80, 0x7F), 0x9000)
        self.assertEqual(proc.registry.card_life_cycle, 0x7F)
        self.assertEqual(set_status(proc, 0x80, 0x0F, ISD_AID), 0x9000)
        self.assertEqual(set_status(proc, 0x80, 0x07), 0x6985)
        self.assertEqual(set_status(proc, 0x80, 0x42), 0x6A80)
        self.assertEqual(set_status(proc, 0x80, 0x7F, USIM), 0x6A80)
        self.assertEqual(set_status(proc, 0x80, 0xFF), 0x9000)
        self.assertEqual(set_status(proc, 0x80, 0x0F), 0x6A81)
