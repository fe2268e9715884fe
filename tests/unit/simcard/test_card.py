"""Tests for SimCard: bytes in/out, traces, applets, state flags, memory."""

from __future__ import annotations

import gc
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu
from simcard.card import SimCard
from simcard.gp import ISD_AID, Application, Registry, default_registry
from tests import vectors
from tests.unit.simcard import (
    FakeSecureChannel,
    RecordingFactory,
    cap_file,
    h,
    install_apdu,
    load_apdus,
    make_profile,
)

ELF = h("F0626970677701")
MOD = h("F062697067770101")
APP = h("F06269706777010101")


def with_app() -> Registry:
    """The default content plus instance APP of module MOD."""
    registry = default_registry()
    card = SimCard(make_profile(), registry)
    for apdu in [*load_apdus(ELF, cap_file(ELF, [MOD])), install_apdu(ELF, MOD, APP)]:
        assert card.process(apdu).sw == 0x9000
    return registry


def plausible(sw: int) -> bool:
    """A status word a card may answer: 61XX, 62XX-6FXX, 9000 or 9XXX."""
    sw1 = sw >> 8
    return 0x61 <= sw1 <= 0x6F or 0x90 <= sw1 <= 0x9F


class TransmitTests(SynchronousTestCase):
    """transmit() takes and returns bytes and never raises."""

    def test_vectors(self) -> None:
        """Every public GP command vector gets a plausible answer."""
        card = SimCard(make_profile(), with_app())
        for vector in vectors.section("gp_apdus"):
            out = card.transmit(bytes.fromhex(vector["capdu"]))
            self.assertGreaterEqual(len(out), 2)
            self.assertTrue(plausible(int.from_bytes(out[-2:], "big")), vector["name"])

    def test_selectIsd(self) -> None:
        """SELECT ISD by bytes answers the FCI and 9000."""
        out = SimCard(make_profile()).transmit(h("00A4040008A000000151000000 00"))
        self.assertEqual(out[-2:], h("9000"))
        self.assertEqual(out[:2], h("6F41"))

    def test_malformed(self) -> None:
        """A broken length answers 6700; a short APDU with class FF 6E00; nothing raises."""
        card = SimCard(make_profile())
        self.assertEqual(card.transmit(b""), h("6700"))
        self.assertEqual(card.transmit(h("00A4")), h("6700"))
        self.assertEqual(card.transmit(h("00A4040005A000")), h("6700"))
        self.assertEqual(card.transmit(h("FFA4")), h("6E00"))
        self.assertEqual(card.transmit(h("01A4")), h("6881"))
        self.assertEqual(card.transmit(bytearray(h("80CA004200")))[-2:], h("9000"))

    @given(st.binary(max_size=300))
    def test_randomBytes(self, data: bytes) -> None:
        """Random bytes never raise and get >= 2 bytes ending in a plausible SW."""
        card = SimCard(make_profile())
        out = card.transmit(data)
        self.assertGreaterEqual(len(out), 2)
        self.assertTrue(plausible(int.from_bytes(out[-2:], "big")), out.hex())

    @given(
        st.sampled_from([0x00, 0x80, 0x84, 0x04]),
        st.sampled_from([0xA4, 0xCA, 0xF2, 0xE6, 0xE8, 0xE4, 0xE2, 0xD8, 0xF0, 0x50, 0x82, 0x70]),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=60),
    )
    def test_randomCommands(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> None:
        """Well-formed GP commands with random parameters never raise either."""
        card = SimCard(make_profile(), with_app(), applet_factories={MOD: RecordingFactory()})
        card.transmit(h("00A4040009") + APP)
        for apdu in (CommandApdu(cla, ins, p1, p2, data), CommandApdu(cla, ins, p1, p2, data, 256)):
            out = card.transmit(apdu.encode())
            self.assertTrue(plausible(int.from_bytes(out[-2:], "big")), out.hex())
        self.assertEqual(self.flushLoggedErrors(), [])


class TraceTests(SynchronousTestCase):
    """The per-card trace hook sees every exchange."""

    def test_trace(self) -> None:
        """The hook gets the C-APDU and R-APDU bytes."""
        seen: list[tuple[bytes, bytes]] = []
        card = SimCard(make_profile(), trace=lambda c, r: seen.append((c, r)))
        out = card.transmit(h("80CA004200"))
        self.assertEqual(seen, [(h("80CA004200"), out)])
        card.transmit(b"\x00")
        self.assertEqual(seen[-1], (b"\x00", h("6700")))

    def test_traceFailure(self) -> None:
        """A failing hook is logged; the card still answers."""

        def broken(c: bytes, r: bytes) -> None:
            raise ValueError("trace broken")

        card = SimCard(make_profile(), trace=broken)
        self.assertEqual(card.transmit(h("80CA004200"))[-2:], h("9000"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class AppletWiringTests(SynchronousTestCase):
    """Applets are created from factories and their data is kept."""

    def test_factoriesForExistingInstances(self) -> None:
        """A registered instance whose module has a factory gets a live applet."""
        factory = RecordingFactory()
        card = SimCard(make_profile(), with_app(), applet_factories={MOD: factory})
        self.assertEqual([a.aid for a in factory.made], [APP])
        self.assertEqual(card.transmit(h("00A4040009") + APP)[-2:], h("9000"))
        self.assertEqual(card.transmit(h("80E2000002ABCD")), h("9000"))
        self.assertEqual(card.applet_states(), {APP: h("ABCD")})

    def test_savedStateRestored(self) -> None:
        """Saved applet data is handed back to the factory."""
        factory = RecordingFactory()
        SimCard(
            make_profile(), with_app(), applet_factories={MOD: factory}, applet_states={APP: b"xy"}
        )
        self.assertEqual(bytes(factory.made[0].data), b"xy")

    def test_orphanStateKept(self) -> None:
        """Data of an applet without factory is kept and saved again as is."""
        card = SimCard(make_profile(), with_app(), applet_states={APP: b"keep"})
        self.assertEqual(card.applet_states(), {APP: b"keep"})
        card.transmit(h("80E400800B4F09") + APP)
        self.assertEqual(card.applet_states(), {})

    def test_stateForUnknownInstance(self) -> None:
        """Applet data for an instance the registry lacks is refused."""
        self.assertRaises(
            ValueError, SimCard, make_profile(), default_registry(), applet_states={APP: b""}
        )
        self.assertRaises(
            ValueError, SimCard, make_profile(), default_registry(), applet_states={ISD_AID: b""}
        )

    def test_secureChannelFactory(self) -> None:
        """The secure channel factory gets the card and becomes the ISD's hook."""
        got: list[SimCard] = []

        def factory(card: SimCard) -> FakeSecureChannel:
            got.append(card)
            return FakeSecureChannel()

        card = SimCard(make_profile(), secure_channel_factory=factory)
        self.assertEqual(got, [card])
        self.assertIsInstance(card.processor.secure_channel, FakeSecureChannel)
        self.assertEqual(card.transmit(h("8050000008 0000000000000000 00"))[-2:], h("9000"))


class StateFlagTests(SynchronousTestCase):
    """dirty tells the fleet when a save is due."""

    def test_dirty(self) -> None:
        """Reading leaves a card clean; changes to registry, keys or counters dirty it."""
        card = SimCard(make_profile())
        self.assertFalse(card.dirty)
        card.transmit(h("80F28002024F0000"))
        card.transmit(h("80CA00E000"))
        self.assertFalse(card.dirty)
        card.transmit(h("80F0408010A0000000871002FFFFFFFF8900000100"))
        self.assertTrue(card.dirty)
        card.mark_clean()
        card.transmit(h("80E4000006D00101D20140"))
        self.assertTrue(card.dirty)
        self.assertIsNone(card.profile.psk)
        card.mark_clean()
        card.ota_counters.record(1, 7)
        self.assertTrue(card.dirty)
        card.mark_clean()
        self.assertFalse(card.dirty)

    def test_reset(self) -> None:
        """A reset deselects the applet, ends the session, and selects the ISD."""
        factory = RecordingFactory()
        card = SimCard(make_profile(), with_app(), applet_factories={MOD: factory})
        card.transmit(h("00A4040009") + APP)
        card.reset()
        self.assertEqual(card.processor.selected, ISD_AID)
        self.assertEqual(factory.made[0].calls[-1], ("deselect", None))
        self.assertEqual(card.transmit(h("80CA004200"))[-2:], h("9000"))

    def test_resetSurvivesApplet(self) -> None:
        """An applet failing on deselect does not stop a reset (logged)."""
        factory = RecordingFactory()
        card = SimCard(make_profile(), with_app(), applet_factories={MOD: factory})
        card.transmit(h("00A4040009") + APP)
        factory.made[0].deselect = lambda ctx: 1 / 0  # type: ignore[method-assign,assignment]
        card.reset()
        self.assertEqual(card.processor.selected, ISD_AID)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_accessors(self) -> None:
        """The card exposes identity, ISD data and its repr names only the ICCID."""
        card = SimCard(make_profile())
        card.transmit(h("80E29000048502ABCD"))
        self.assertEqual(card.sd_data, {0x85: h("ABCD")})
        self.assertEqual(card.identity.msisdn, "31600000001")
        self.assertEqual(repr(card), f"<SimCard {card.iccid}>")


class MemoryTests(SynchronousTestCase):
    """An idle card stays well under the 20 KB budget (10,000 cards per fleet)."""

    def test_idleCardSize(self) -> None:
        """Profile + registry + processor of an idle card take < 20 KB each."""
        count = 200
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            cards = [SimCard(make_profile(f"89882110000000{i:05d}")) for i in range(count)]
            for card in cards:
                card.transmit(h("80F21002024F0000"))
                card.transmit(h("80F21003024F0000"))
            gc.collect()
            per_card = (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()
        self.assertLess(per_card, 20 * 1024)
        self.assertEqual(len(cards), count)

    def test_sharedEntries(self) -> None:
        """Cards built from the default content share its registry entries."""
        a, b = SimCard(make_profile()), SimCard(make_profile())
        self.assertIs(a.registry.load_files[0], b.registry.load_files[0])
        self.assertIsInstance(a.registry.applications[0], Application)
