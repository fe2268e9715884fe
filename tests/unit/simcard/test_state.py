"""Tests for simcard.state: the fleet's SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from simcard.card import SimCard
from simcard.gp import GpConfig
from simcard.model import OtaCounters
from simcard.state import (
    FleetState,
    FleetStateError,
    UnknownCardError,
    profile_from_dict,
    profile_to_dict,
)
from tests.unit.simcard import (
    PSK,
    FakeSecureChannel,
    RecordingFactory,
    cap_file,
    found,
    h,
    install_apdu,
    load_apdus,
    make_profile,
)

ELF = h("F0626970677701")
MOD = h("F062697067770101")
APP = h("F06269706777010101")


class FleetStateTests(SynchronousTestCase):
    """Cards survive a save, a close and a reopen."""

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="simcard-state-")
        self.addCleanup(shutil.rmtree, directory)
        self.path = Path(directory) / "cards.db"

    def _open(self, **kwargs: object) -> FleetState:
        fleet = FleetState.open(self.path, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(fleet.close)
        return fleet

    def test_roundTrip(self) -> None:
        """Registry, keys, ISD data, counters and applet data come back equal."""
        factory = RecordingFactory()
        card = SimCard(make_profile(), applet_factories={MOD: factory})
        for apdu in [*load_apdus(ELF, cap_file(ELF, [MOD])), install_apdu(ELF, MOD, APP)]:
            self.assertEqual(card.process(apdu).sw, 0x9000)
        card.transmit(h("80E4000006D00103D20101"))  # drop the KIK
        card.transmit(h("80E29000048502ABCD"))
        card.transmit(h("00A4040009") + APP)
        card.transmit(h("80E2000003010203"))  # applet data
        card.registry.next_sequence_counter()
        card.ota_counters.record(1, 41)
        with FleetState.open(self.path) as fleet:
            fleet.insert_cards([card])
        self.assertFalse(card.dirty)

        again = self._open(applet_factories={MOD: RecordingFactory()}).load_card(card.iccid)
        self.assertEqual(again.profile, card.profile)
        self.assertEqual(found(again.profile.ota_key_set(1)).kik, b"")
        self.assertEqual(again.registry, card.registry)
        self.assertEqual(again.registry.sequence_counter, 1)
        self.assertEqual(again.sd_data, {0x85: h("ABCD")})
        self.assertEqual(again.ota_counters, OtaCounters({1: 41}))
        self.assertEqual(again.applet_states(), {APP: h("010203")})
        self.assertFalse(again.dirty)
        again.transmit(h("00A4040009") + APP)
        self.assertEqual(again.transmit(h("8010000000")), h("010203 9000"))

    def test_saveUpdates(self) -> None:
        """save_card replaces the row; uncommitted saves are lost on close."""
        fleet = FleetState.open(self.path)
        fleet.insert_profiles([make_profile()])
        fleet.commit()
        card = fleet.load_card(make_profile().iccid)
        card.ota_counters.record(1, 5)
        fleet.save_card(card)
        fleet.commit()
        card.ota_counters.record(1, 6)
        fleet.save_card(card)
        fleet.close()
        fleet = self._open()
        self.assertEqual(fleet.load_card(card.iccid).ota_counters.last(1), 5)

    def test_saveDirty(self) -> None:
        """save_dirty writes only cards that changed."""
        fleet = self._open()
        profiles = [make_profile(f"89882110000000{i:05d}", f"3160000{i:04d}") for i in range(3)]
        fleet.insert_profiles(profiles)
        cards = [fleet.load_card(p.iccid) for p in profiles]
        cards[1].ota_counters.record(2, 9)
        self.assertEqual(fleet.save_dirty(cards), 1)
        self.assertEqual(fleet.save_dirty(cards), 0)
        self.assertEqual(fleet.load_card(profiles[1].iccid).ota_counters.last(2), 9)

    def test_bulkInsert(self) -> None:
        """insert_profiles adds many cards with the default content in one go."""
        fleet = self._open()
        profiles = [make_profile(f"89882110000{i:08d}", f"316{i:08d}") for i in range(2000)]
        self.assertEqual(fleet.insert_profiles(profiles), 2000)
        fleet.commit()
        self.assertEqual(len(fleet), 2000)
        self.assertEqual(fleet.iccids()[:2], [profiles[0].iccid, profiles[1].iccid])
        self.assertEqual(fleet.iccid_for_msisdn("31600001234"), profiles[1234].iccid)
        self.assertIsNone(fleet.iccid_for_msisdn("999"))
        card = fleet.load_card(profiles[1999].iccid)
        self.assertEqual(len(card.registry.load_files), 8)
        self.assertEqual(card.transmit(h("80CA004200"))[-2:], h("9000"))

    def test_fillingWritesNoLog(self) -> None:
        """While filling, a large transaction goes through no WAL; the file is WAL again after."""
        fleet = self._open()
        profiles = [make_profile(f"89882110000{i:08d}", f"316{i:08d}") for i in range(300)]
        wal = Path(f"{self.path}-wal")
        with fleet.filling():
            fleet.insert_profiles(profiles)
            fleet.commit()
            self.assertFalse(wal.exists() and wal.stat().st_size > 0)
        self.assertEqual(fleet._db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        fleet.close()
        self.assertEqual(len(self._open()), 300)

    def test_fillingUncommittedIsLost(self) -> None:
        """Filling without a commit adds nothing, and leaves the file in WAL mode."""
        fleet = self._open()
        with self.assertRaises(ZeroDivisionError), fleet.filling():
            fleet.insert_profiles([make_profile()])
            1 / 0  # noqa: B018
        self.assertEqual(fleet._db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(len(fleet), 0)

    def test_duplicateRefused(self) -> None:
        """Inserting an existing card fails and adds none of the batch."""
        fleet = self._open()
        fleet.insert_profiles([make_profile()])
        other = make_profile("89882110000000000026")
        with self.assertRaises(FleetStateError):
            fleet.insert_profiles([other, make_profile()])
        self.assertEqual(fleet.iccids(), [make_profile().iccid])
        fleet.commit()
        self.assertEqual(len(fleet), 1)

    def test_unknownCard(self) -> None:
        """Loading an ICCID that is not there raises UnknownCardError (a KeyError)."""
        fleet = self._open()
        with self.assertRaises(KeyError):
            fleet.load_card("8988211000000000000")
        self.assertRaises(UnknownCardError, fleet.load_card, "1")
        fleet.insert_profiles([make_profile()])
        fleet.delete_card(make_profile().iccid)
        self.assertEqual(len(fleet), 0)

    def test_corruptRow(self) -> None:
        """A corrupt row is reported by card and column, without key bytes."""
        fleet = self._open()
        fleet.insert_profiles([make_profile()])
        fleet.commit()
        db = sqlite3.connect(self.path)
        row = json.loads(db.execute("SELECT profile FROM cards").fetchone()[0])
        row["psk"]["key"] = PSK.hex() + "zz"
        db.execute("UPDATE cards SET profile = ?", (json.dumps(row),))
        db.commit()
        db.close()
        with self.assertRaises(FleetStateError) as ctx:
            fleet.load_card(make_profile().iccid)
        self.assertIn("profile", str(ctx.exception))
        self.assertNotIn(PSK.hex(), str(ctx.exception))
        db = sqlite3.connect(self.path)
        db.execute(
            "UPDATE cards SET profile = ?, registry = '{}'",
            (json.dumps(profile_to_dict(make_profile())),),
        )
        db.commit()
        db.close()
        with self.assertRaises(FleetStateError) as ctx:
            fleet.load_card(make_profile().iccid)
        self.assertIn("registry", str(ctx.exception))

    def test_schemaVersion(self) -> None:
        """A file of another schema version, or not SQLite at all, is refused."""
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA user_version = 9")
        db.close()
        self.assertRaises(FleetStateError, FleetState.open, self.path)
        self.path.write_bytes(b"this is not a database" * 100)
        self.assertRaises(FleetStateError, FleetState.open, self.path)

    def test_fleetWideSettings(self) -> None:
        """Loaded cards get the fleet's config and secure channel factory."""
        fleet = self._open(
            config=GpConfig(max_response=40), secure_channel_factory=lambda c: FakeSecureChannel()
        )
        fleet.insert_profiles([make_profile()])
        card = fleet.load_card(make_profile().iccid)
        self.assertEqual(card.processor.config.max_response, 40)
        self.assertIsInstance(card.processor.secure_channel, FakeSecureChannel)

    def test_memoryDatabase(self) -> None:
        """':memory:' works for tests and tools."""
        fleet = FleetState.open(":memory:")
        self.addCleanup(fleet.close)
        fleet.insert_profiles([make_profile()])
        self.assertEqual(len(fleet), 1)


class ProfileCodingTests(SynchronousTestCase):
    """Profiles go to JSON and back unchanged."""

    def test_roundTrip(self) -> None:
        """profile_from_dict(profile_to_dict(p)) == p, through JSON."""
        profile = make_profile()
        self.assertEqual(
            profile_from_dict(json.loads(json.dumps(profile_to_dict(profile)))), profile
        )
        no_psk = profile_to_dict(profile)
        no_psk["psk"] = None
        self.assertIsNone(profile_from_dict(no_psk).psk)


class FleetFileModeTests(SynchronousTestCase):
    """The fleet file holds clear card keys: created readable by its owner only."""

    def test_newFileIsPrivate(self) -> None:
        """Under the usual umask 022 a new cards.db is still 0600."""
        where = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, where)
        old = os.umask(0o022)
        try:
            with FleetState.open(where / "cards.db"):
                pass
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE((where / "cards.db").stat().st_mode), 0o600)
