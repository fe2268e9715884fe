"""Tests for C{simfleet generate}: the fleet directory and its files, per docs/architecture.md."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import KdfPurpose, KeyAlgorithm, Secret, derive_card_key, has_des_parity
from simcard.applets import (
    CREDENTIAL_INSTANCE_AID,
    CREDENTIAL_MODULE_AID,
    credential_applet_factory,
)
from simcard.fleet import (
    FleetAlgorithm,
    GenerateError,
    generate_fleet,
)
from simcard.model import OtaAlgorithm
from simcard.state import FleetState
from tests.unit.fleet.test_harness import (
    cards_from_files,
    fleet_dir,
    luhn_valid,
    make_fleet,
    read_msisdn_file,
    read_vendor_file,
    transport_key,
)


class FilesTests(SynchronousTestCase):
    """The generated files parse per the documented formats and agree with the cards."""

    def setUp(self) -> None:
        self.result, self.config = make_fleet(
            fleet_dir(self), cards=5, admin_host="192.0.2.10", admin_port=9443
        )

    def test_directoryLayout(self) -> None:
        """The fleet directory holds the files docs/architecture.md lists."""
        base = self.result.directory
        for name in (
            "fleet.toml",
            "cards.db",
            "vendor/B0001.out",
            "msisdn/B0001.csv",
            "gateway/transport-keys.toml",
            "gateway/TK-B0001.key",
            "gateway/smpp.password",
            "secrets/master-keys.toml",
        ):
            self.assertTrue((base / name).is_file(), name)

    def test_vendorHeader(self) -> None:
        """The header names the quantity, batch, transport key and OTA algorithm; the
        columns are exactly ICCID/IMSI/KIC1/KID1/KIK1/PSK_ID1/PSK1."""
        vendor = read_vendor_file(self.result.vendor_file.read_text())
        label, _ = transport_key(self.result)
        self.assertEqual(
            vendor.header,
            {
                "Customer": "simfleet",
                "Quantity": "5",
                "Type": "USIM-BIP",
                "Batch": "B0001",
                "Transport_key": label,
                "Ota_algorithm": "AES",
                "Ota_kvn": "1",
            },
        )
        self.assertEqual(
            vendor.columns, ["ICCID", "IMSI", "KIC1", "KID1", "KIK1", "PSK_ID1", "PSK1"]
        )
        self.assertEqual(len(vendor.rows), 5)

    def test_vendorLines(self) -> None:
        """Secret columns are upper-case hex of 24-byte wrappings; PSK_ID1 is the
        hex of the ICCID's ASCII digits."""
        for row in read_vendor_file(self.result.vendor_file.read_text()).rows:
            self.assertTrue(luhn_valid(row["ICCID"]))
            for column in ("KIC1", "KID1", "KIK1", "PSK1"):
                value = row[column]
                self.assertEqual(len(value), 48)
                self.assertEqual(value, value.upper())
                bytes.fromhex(value)
            self.assertEqual(bytes.fromhex(row["PSK_ID1"]), row["ICCID"].encode("ascii"))

    def test_msisdnFile(self) -> None:
        """One ADD record per card, fields in the documented order, times YYYYMMDDHHMMSS."""
        records = read_msisdn_file(self.result.msisdn_file.read_text())
        vendor = read_vendor_file(self.result.vendor_file.read_text())
        self.assertEqual(len(records), 5)
        self.assertEqual(
            [(r[1], r[2]) for r in records], [(v["ICCID"], v["IMSI"]) for v in vendor.rows]
        )
        for msisdn, _, _, operation, effective in records:
            self.assertEqual(operation, "ADD")
            self.assertEqual(effective, "20250101000000")
            self.assertTrue(msisdn.isdigit())
        self.assertEqual(len({r[0] for r in records}), 5)

    def test_keysUnwrapToTheCardsKeys(self) -> None:
        """The vendor file's secret columns unwrap, with the transport key, to the
        keys each card holds in cards.db."""
        with FleetState.open(self.result.cards_db) as state:
            for keys in cards_from_files(self.result):
                card = state.load_card(keys.iccid)
                [ota] = card.profile.ota_key_sets
                psk = card.profile.psk
                assert psk is not None
                self.assertEqual(ota.algorithm, OtaAlgorithm.AES)
                self.assertEqual(
                    (ota.kvn, ota.kic, ota.kid, ota.kik), (1, keys.kic, keys.kid, keys.kik)
                )
                self.assertEqual((psk.identity, psk.key), (keys.psk_identity, keys.psk))
                self.assertEqual(card.identity.msisdn, keys.msisdn)
                self.assertEqual(card.identity.imsi, keys.imsi)

    def test_keysAreDiversified(self) -> None:
        """Each card key is the docs/keys.md KDF of the fleet's master key and the ICCID."""
        masters = tomllib.loads((self.result.directory / "secrets/master-keys.toml").read_text())
        master = {name: Secret.from_hex(v["key"]) for name, v in masters["master"].items()}
        aes = KeyAlgorithm.AES_128
        with FleetState.open(self.result.cards_db) as state:
            card = state.load_card(state.iccids()[2])
        iccid = card.iccid
        [ota] = card.profile.ota_key_sets
        [scp03] = card.profile.scp03
        psk = card.profile.psk
        assert psk is not None
        expected = {
            (ota.kic, "ota_kic", KdfPurpose.OTA_KIC),
            (ota.kid, "ota_kid", KdfPurpose.OTA_KID),
            (ota.kik, "ota_kik", KdfPurpose.OTA_KIK),
            (psk.key, "psk", KdfPurpose.SCP81_PSK),
            (scp03.enc, "scp03_enc", KdfPurpose.SCP03_ENC),
            (scp03.mac, "scp03_mac", KdfPurpose.SCP03_MAC),
            (scp03.dek, "scp03_dek", KdfPurpose.SCP03_DEK),
        }
        for key, name, purpose in expected:
            self.assertEqual(key, derive_card_key(master[name], iccid, purpose, aes).reveal(), name)
        self.assertEqual(scp03.kvn, 0x30)
        self.assertEqual(psk.kvn, 0x40)

    def test_adminDefaultsPersonalised(self) -> None:
        """Cards know the admin server given to the generator."""
        with FleetState.open(self.result.cards_db) as state:
            card = state.load_card(state.iccids()[0])
        admin = card.profile.admin
        self.assertEqual((admin.host, admin.port, admin.uri), ("192.0.2.10", 9443, "/admin"))

    def test_credentialAppletInstalled(self) -> None:
        """Cards hold a selectable credential applet instance that answers its commands."""
        with FleetState.open(
            self.result.cards_db,
            applet_factories={CREDENTIAL_MODULE_AID: credential_applet_factory},
        ) as state:
            card = state.load_card(state.iccids()[0])
        aid = CREDENTIAL_INSTANCE_AID
        select = bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid
        self.assertEqual(card.transmit(select)[-2:], b"\x90\x00")
        public_key = card.transmit(bytes.fromhex("8047000000"))
        self.assertEqual(public_key[-2:], b"\x90\x00")
        self.assertEqual(public_key[0], 0x04)

    def test_secretFilesAreOwnerOnly(self) -> None:
        """Files holding keys or passwords are mode 0600."""
        base = self.result.directory
        for name in (
            "fleet.toml",
            "gateway/transport-keys.toml",
            "gateway/TK-B0001.key",
            "gateway/smpp.password",
            "secrets/master-keys.toml",
            "cards.db",
        ):
            self.assertEqual(stat.S_IMODE((base / name).stat().st_mode), 0o600, name)

    def test_fleetDirectoryNotWorldReadable(self) -> None:
        """cards.db holds clear card keys: its directory gives others nothing (issue 15)."""
        base = self.result.directory
        self.assertEqual(stat.S_IMODE(base.stat().st_mode) & 0o007, 0)
        for extra in ("cards.db-wal", "cards.db-shm"):
            if (base / extra).exists():
                self.assertEqual(stat.S_IMODE((base / extra).stat().st_mode) & 0o077, 0, extra)

    def test_transportKeyFileMatches(self) -> None:
        """The bare-hex key file holds the key of transport-keys.toml."""
        _, key = transport_key(self.result)
        text = (self.result.directory / "gateway/TK-B0001.key").read_text()
        hex_lines = [line for line in text.splitlines() if not line.startswith("#")]
        self.assertEqual(Secret.from_hex("".join(hex_lines)), key)

    def test_fleetTomlReadsBack(self) -> None:
        """fleet.toml is a valid configuration whose ESME password is the one given to
        the gateway, and which records what was generated."""
        password = (self.result.directory / "gateway/smpp.password").read_text().strip()
        self.assertEqual(dict(self.config.smsc.accounts), {"bipgw": password})
        self.assertEqual(len(password), 8)
        generated = self.config.generated
        assert generated is not None
        self.assertEqual((generated.cards, generated.seed, generated.algorithm), (5, 42, "aes"))
        self.assertEqual(self.config.fleet.cards_db, self.result.cards_db.resolve())


class GenerateTests(SynchronousTestCase):
    """Seeds, algorithms and refusals."""

    def test_seedIsReproducible(self) -> None:
        """The same seed gives the same files byte for byte; another seed other keys."""
        a = generate_fleet(fleet_dir(self), cards=3, seed=9)
        b = generate_fleet(fleet_dir(self), cards=3, seed=9)
        c = generate_fleet(fleet_dir(self), cards=3, seed=10)
        for name in ("vendor/B0001.out", "msisdn/B0001.csv", "fleet.toml", "gateway/TK-B0001.key"):
            self.assertEqual((a.directory / name).read_bytes(), (b.directory / name).read_bytes())
        self.assertNotEqual(
            (a.directory / "gateway/TK-B0001.key").read_bytes(),
            (c.directory / "gateway/TK-B0001.key").read_bytes(),
        )
        self.assertNotEqual(
            [k.kic for k in cards_from_files(a)], [k.kic for k in cards_from_files(c)]
        )

    def test_withoutSeedKeysAreFresh(self) -> None:
        """Without a seed two fleets share no keys."""
        a = generate_fleet(fleet_dir(self), cards=2)
        b = generate_fleet(fleet_dir(self), cards=2)
        self.assertNotEqual(
            [k.psk for k in cards_from_files(a)], [k.psk for k in cards_from_files(b)]
        )

    def test_tripleDes(self) -> None:
        """--algorithm 3des gives 3DES two-key OTA keys with DES parity, announced in the header."""
        result = generate_fleet(fleet_dir(self), cards=2, seed=1, algorithm=FleetAlgorithm.TDES)
        vendor = read_vendor_file(result.vendor_file.read_text())
        self.assertEqual(vendor.header["Ota_algorithm"], "3DES")
        for keys in cards_from_files(result):
            for key in (keys.kic, keys.kid, keys.kik):
                self.assertEqual(len(key), 16)
                self.assertTrue(has_des_parity(key))
        with FleetState.open(result.cards_db) as state:
            card = state.load_card(state.iccids()[0])
        self.assertEqual(card.profile.ota_key_sets[0].algorithm, OtaAlgorithm.TDES)

    def test_progress(self) -> None:
        """Progress is reported after each thousand cards and at the end."""
        seen: list[tuple[int, int]] = []
        generate_fleet(
            fleet_dir(self), cards=2500, seed=1, progress=lambda d, t: seen.append((d, t))
        )
        self.assertEqual(seen, [(1000, 2500), (2000, 2500), (2500, 2500)])

    def test_refusesUsedDirectory(self) -> None:
        """A directory that is not empty is refused; nothing in it is touched."""
        out = Path(fleet_dir(self))
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        with self.assertRaises(GenerateError) as ctx:
            generate_fleet(out, cards=1)
        self.assertIn("not an empty directory", str(ctx.exception))
        self.assertEqual(sorted(p.name for p in out.iterdir()), ["notes.txt"])

    def test_failureLeavesNothing(self) -> None:
        """A generation that fails midway removes what it wrote (a new directory goes,
        an empty one is left empty)."""

        def interrupted(done: int, total: int) -> None:
            raise KeyboardInterrupt

        new = Path(fleet_dir(self))
        self.assertRaises(
            KeyboardInterrupt, generate_fleet, new, cards=1200, seed=1, progress=interrupted
        )
        self.assertFalse(new.exists())
        empty = Path(fleet_dir(self))
        empty.mkdir()
        self.assertRaises(
            KeyboardInterrupt, generate_fleet, empty, cards=1200, seed=1, progress=interrupted
        )
        self.assertEqual(list(empty.iterdir()), [])

    def test_badArguments(self) -> None:
        """Impossible counts, ports and batch names are refused before anything is written."""
        out = Path(fleet_dir(self))
        for kwargs in ({"cards": 0}, {"cards": 1, "admin_port": 0}, {"cards": 1, "batch": "a/b"}):
            self.assertRaises(GenerateError, generate_fleet, out, **kwargs)
        self.assertFalse(out.exists())
