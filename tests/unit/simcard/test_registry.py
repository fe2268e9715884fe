"""Tests for the GlobalPlatform registry, its entries and the CAP reader."""

from __future__ import annotations

import json

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import simcard.gp
from simcard.gp import (
    APP_INSTALLED,
    APP_SELECTABLE,
    CARD_INITIALIZED,
    CARD_LOCKED,
    CARD_OP_READY,
    CARD_SECURED,
    CARD_TERMINATED,
    ISD_AID,
    Application,
    GpError,
    LoadFile,
    Registry,
    _applet,
    _cap,
    _constants,
    _context,
    _defaults,
    _entries,
    _errors,
    _keys,
    _processor,
    _registry,
    default_registry,
    read_cap,
)
from tests.unit.simcard import cap_file, found, h

ELF = h("F0626970677701")
MOD = h("F062697067770101")
SSD = h("F0626970677702")


def _sample() -> Registry:
    """The ISD, one ELF with two modules, one app, one SSD with its own app."""
    return Registry(
        None,
        [LoadFile(ELF, ISD_AID, (MOD, MOD + b"\x02"))],
        [
            Application(MOD, ELF, MOD, ISD_AID, APP_SELECTABLE),
            Application(SSD, ELF, MOD + b"\x02", ISD_AID, APP_SELECTABLE, b"\x80\x00\x00"),
            Application(SSD + b"\x01", ELF, MOD, SSD, APP_INSTALLED),
        ],
    )


def _sw(call: object, *args: object, **kwargs: object) -> int:
    try:
        call(*args, **kwargs)  # type: ignore[operator]
    except GpError as e:
        return e.sw
    return 0x9000


class EntryTests(SynchronousTestCase):
    """Registry entries validate what INSTALL and LOAD give them."""

    def test_aidLengths(self) -> None:
        """AIDs are 5..16 bytes; ELF and module may be empty only for the ISD."""
        self.assertEqual(_sw(LoadFile, h("A0000001"), ISD_AID), 0x6A80)
        self.assertEqual(_sw(Application, bytes(17), b"", b"", b"", 7), 0x6A80)
        self.assertEqual(_sw(Application, bytes(5), b"", b"", b"", 7, b"\x00"), 0x6A80)

    def test_properties(self) -> None:
        """Security Domain, locked and selectable follow privileges and life cycle."""
        app = Application(MOD, ELF, MOD, ISD_AID, APP_INSTALLED, b"\x80\x00\x00", h("C9020102"))
        self.assertTrue(app.is_security_domain)
        self.assertFalse(app.is_selectable)
        self.assertTrue(attrs.evolve(app, life_cycle=0x07).is_selectable)
        self.assertTrue(attrs.evolve(app, life_cycle=0x87).is_locked)
        self.assertFalse(attrs.evolve(app, life_cycle=0x87).is_selectable)
        self.assertEqual(app.application_params, h("0102"))
        self.assertEqual(attrs.evolve(app, install_params=h("C905")).application_params, b"")


class RegistryTests(SynchronousTestCase):
    """Registry operations and the status words GP gives for refusals."""

    def test_default(self) -> None:
        """A new card has the ISD SECURED, system packages, USIM, ISIM and an SSD."""
        registry = default_registry()
        self.assertEqual(registry.isd.aid, ISD_AID)
        self.assertEqual(registry.card_life_cycle, CARD_SECURED)
        self.assertEqual(len(registry.load_files), 8)
        self.assertEqual(len(registry.applications), 3)
        self.assertTrue(found(registry.application(h("A000000151535041"))).is_security_domain)
        self.assertFalse(registry.changed)

    def test_defaultsShareEntries(self) -> None:
        """Two default registries share their (frozen) entries but not containers."""
        a, b = default_registry(), default_registry()
        self.assertIs(a.applications[0], b.applications[0])
        a.delete(a.applications[1].aid, related=False)
        self.assertEqual(len(b.applications), 3)

    def test_addLoadFile(self) -> None:
        """An ELF needs a free AID (6985) and a known Security Domain (6A88)."""
        registry = _sample()
        self.assertEqual(_sw(registry.add_load_file, LoadFile(ELF, ISD_AID)), 0x6985)
        self.assertEqual(_sw(registry.add_load_file, LoadFile(MOD, ISD_AID)), 0x6985)
        self.assertEqual(_sw(registry.add_load_file, LoadFile(h("F000000001"), MOD)), 0x6A88)
        registry.add_load_file(LoadFile(h("F000000001"), SSD))
        self.assertTrue(registry.changed)

    def test_addApplication(self) -> None:
        """An instance needs a free AID, a known ELF and module, and a known SD."""
        registry = _sample()
        app = Application(h("F000000002"), ELF, MOD, ISD_AID, APP_INSTALLED)
        self.assertEqual(_sw(registry.add_application, attrs.evolve(app, aid=MOD)), 0x6985)
        self.assertEqual(_sw(registry.add_application, attrs.evolve(app, aid=ELF)), 0x6985)
        self.assertEqual(
            _sw(registry.add_application, attrs.evolve(app, elf_aid=h("F0000000FF"))), 0x6A88
        )
        self.assertEqual(
            _sw(registry.add_application, attrs.evolve(app, module_aid=h("F0000000FF"))), 0x6A88
        )
        self.assertEqual(_sw(registry.add_application, attrs.evolve(app, sd_aid=MOD)), 0x6A88)
        registry.add_application(app)
        self.assertEqual(registry.applications[-1], app)

    def test_constructionChecksConsistency(self) -> None:
        """A registry whose instances name an unknown SD cannot be built."""
        bad = Application(h("F000000002"), ELF, MOD, h("F0000000EE"), APP_INSTALLED)
        self.assertEqual(_sw(Registry, None, [LoadFile(ELF, ISD_AID, (MOD,))], [bad]), 0x6A88)
        no_sd = Application(ISD_AID, b"", b"", b"", CARD_SECURED, b"\x00\x00\x00")
        self.assertEqual(_sw(Registry, no_sd), 0x6A80)

    def test_deleteApplication(self) -> None:
        """A plain application is deleted alone; the ISD never (6985); unknown 6A88."""
        registry = _sample()
        removed = registry.delete(MOD, related=False)
        self.assertEqual([a.aid for a in removed], [MOD])
        self.assertIsNone(registry.application(MOD))
        self.assertEqual(_sw(registry.delete, ISD_AID, related=True), 0x6985)
        self.assertEqual(_sw(registry.delete, MOD, related=False), 0x6A88)

    def test_deleteLoadFile(self) -> None:
        """An ELF with instances needs 'and related'; then its instances go too."""
        registry = _sample()
        self.assertEqual(_sw(registry.delete, ELF, related=False), 0x6985)
        removed = registry.delete(ELF, related=True)
        self.assertEqual({a.aid for a in removed}, {MOD, SSD, SSD + b"\x01"})
        self.assertEqual(registry.load_files, ())
        self.assertEqual(registry.applications, ())

    def test_deleteSecurityDomain(self) -> None:
        """An SSD with associated content goes only with it."""
        registry = _sample()
        self.assertEqual(_sw(registry.delete, SSD, related=False), 0x6985)
        removed = registry.delete(SSD, related=True)
        self.assertEqual({a.aid for a in removed}, {SSD, SSD + b"\x01"})
        self.assertIsNotNone(registry.application(MOD))

    def test_deleteRefusesOrphans(self) -> None:
        """Deleting an SSD's ELF refuses when an instance elsewhere still uses it."""
        registry = _sample()
        registry.add_load_file(LoadFile(h("F000000010"), SSD, (h("F00000001001"),)))
        registry.add_application(
            Application(h("F000000011"), h("F000000010"), h("F00000001001"), ISD_AID, 7)
        )
        self.assertEqual(_sw(registry.delete, SSD, related=True), 0x6985)
        self.assertIsNotNone(registry.application(SSD))

    def test_cardLifeCycle(self) -> None:
        """The card moves forward, locks and unlocks, and terminates for good."""
        registry = Registry(Application(ISD_AID, b"", b"", b"", CARD_OP_READY, b"\x80\x00\x00"))
        for state in (CARD_INITIALIZED, CARD_SECURED, CARD_LOCKED, CARD_SECURED):
            registry.set_card_life_cycle(state)
        self.assertEqual(_sw(registry.set_card_life_cycle, CARD_INITIALIZED), 0x6985)
        self.assertEqual(_sw(registry.set_card_life_cycle, 0x03), 0x6A80)
        registry.set_card_life_cycle(CARD_TERMINATED)
        self.assertEqual(_sw(registry.set_card_life_cycle, CARD_SECURED), 0x6985)
        self.assertEqual(registry.card_life_cycle, CARD_TERMINATED)

    def test_selectable(self) -> None:
        """SELECT candidates: the ISD, then selectable unlocked instances, by prefix."""
        registry = _sample()
        self.assertEqual([a.aid for a in registry.selectable(h("F062"))], [MOD, SSD])
        self.assertEqual([a.aid for a in registry.selectable(h("A0"))], [ISD_AID])
        registry.replace_application(
            attrs.evolve(found(registry.application(MOD)), life_cycle=0x87)
        )
        self.assertEqual([a.aid for a in registry.selectable(h("F062"))], [SSD])

    def test_sequenceCounter(self) -> None:
        """The SCP03 sequence counter increments and marks the registry changed."""
        registry = _sample()
        self.assertEqual(registry.next_sequence_counter(), 1)
        self.assertTrue(registry.changed)
        registry.sequence_counter = 0xFFFFFF
        self.assertEqual(_sw(registry.next_sequence_counter), 0x6985)

    def test_dictRoundTrip(self) -> None:
        """to_dict is JSON-serialisable and from_dict rebuilds an equal registry."""
        registry = _sample()
        registry.sd_data[0x85] = h("0102")
        registry.sd_dgi[0x8010] = h("03")
        registry.sequence_counter = 7
        again = Registry.from_dict(json.loads(json.dumps(registry.to_dict())))
        self.assertEqual(again, registry)
        self.assertEqual(again.sd_data, {0x85: h("0102")})
        self.assertFalse(again.changed)
        self.assertNotEqual(again, default_registry())

    def test_copyIsIndependent(self) -> None:
        """A copy changes without changing the original."""
        registry = _sample()
        clone = registry.copy()
        clone.delete(MOD, related=False)
        clone.sd_data[1] = b""
        self.assertIsNotNone(registry.application(MOD))
        self.assertEqual(registry.sd_data, {})


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["elf", "app", "del", "delrel"]), st.integers(0, 5), st.integers(0, 5)
    ),
    max_size=25,
)


class RegistryInvariantTests(SynchronousTestCase):
    """Whatever sequence of operations succeeds, the registry stays consistent."""

    @given(_OPS)
    def test_consistent(self, ops: list[tuple[str, int, int]]) -> None:
        """Every instance's ELF, module and SD exist; every ELF's SD exists."""
        registry = Registry()
        aid = lambda n: h("F0000000") + bytes((n,))  # noqa: E731
        for op, a, b in ops:
            try:
                if op == "elf":
                    sd = aid(b) if b % 2 else ISD_AID
                    registry.add_load_file(LoadFile(aid(a), sd, (aid(a) + b"\x01",)))
                elif op == "app":
                    privileges = b"\x80\x00\x00" if a % 2 else b"\x00\x00\x00"
                    registry.add_application(
                        Application(aid(a), aid(b), aid(b) + b"\x01", ISD_AID, 7, privileges)
                    )
                else:
                    registry.delete(aid(a), related=op == "delrel")
            except GpError as e:
                self.assertIn(e.sw, (0x6985, 0x6A88))
            for app in registry.applications:
                elf = found(registry.load_file(app.elf_aid))
                self.assertIsNotNone(elf)
                self.assertIn(app.module_aid, elf.modules)
                self.assertTrue(found(registry.application(app.sd_aid)).is_security_domain)
            for elf in registry.load_files:
                self.assertIsNotNone(registry.application(elf.sd_aid))
        self.assertEqual(Registry.from_dict(registry.to_dict()), registry)


class CapTests(SynchronousTestCase):
    """The CAP reader finds package AID, version and applet AIDs."""

    def test_read(self) -> None:
        """Header and Applet components give the package and its modules."""
        info = read_cap(cap_file(ELF, [MOD, MOD + b"\x02"], (2, 1)))
        self.assertEqual(info.package_aid, ELF)
        self.assertEqual(info.version, h("0201"))
        self.assertEqual(info.modules, (MOD, MOD + b"\x02"))

    def test_library(self) -> None:
        """A CAP without Applet component is a library: no modules."""
        self.assertEqual(read_cap(cap_file(ELF, [])).modules, ())

    def test_notCap(self) -> None:
        """Bytes that are not CAP components give an empty result."""
        for data in (b"", h("010003DECAFF"), h("00000100"), cap_file(ELF, [MOD])[:-1]):
            self.assertIsNone(read_cap(data).package_aid)

    @given(st.binary(max_size=200))
    def test_neverRaises(self, data: bytes) -> None:
        """Random bytes never make the reader raise."""
        info = read_cap(data)
        self.assertIsInstance(info.modules, tuple)


class ExportTests(SynchronousTestCase):
    """simcard.gp exports exactly its documented surface."""

    def test_namesAreOriginals(self) -> None:
        """Every exported name is defined in one of the private modules."""
        modules = (
            _applet, _cap, _constants, _context, _defaults, _entries, _errors, _keys,
            _processor, _registry,
        )  # fmt: skip
        for name in simcard.gp.__all__:
            exported = getattr(simcard.gp, name)
            self.assertTrue(any(exported is v for m in modules for v in vars(m).values()), name)
        self.assertEqual(len(set(simcard.gp.__all__)), len(simcard.gp.__all__))
