"""Tests for simcard.model: identities, key sets, profiles, OTA counters."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import OtaKeys
from simcard.model import (
    AdminDefaults,
    CardIdentity,
    CardProfile,
    OtaAlgorithm,
    OtaCounters,
    OtaKeySet,
    ProfileError,
    PskCredential,
    Scp03Keys,
)
from tests.unit.simcard import DEK, ENC, ICCID, KIC, KID, KIK, MAC, PSK, found, make_profile


class CardIdentityTests(SynchronousTestCase):
    """ICCID, IMSI and MSISDN are checked when a card identity is built."""

    def test_valid(self) -> None:
        """19- and 20-digit ICCIDs, an IMSI and an optional MSISDN are accepted."""
        self.assertEqual(CardIdentity(ICCID, "001010000000001").msisdn, None)
        self.assertEqual(CardIdentity(ICCID + "0", "001010", "31600000001").iccid, ICCID + "0")

    def test_badIccid(self) -> None:
        """An ICCID with an F filler, too few digits or a non-string is refused."""
        for bad in (ICCID[:-1] + "F", "89882110", 8988211000000000018, ICCID + "01"):
            self.assertRaises(ProfileError, CardIdentity, bad, "001010000000001")

    def test_badImsiAndMsisdn(self) -> None:
        """An IMSI or MSISDN that is not 6..15 / 3..15 digits is refused; '+' too."""
        self.assertRaises(ProfileError, CardIdentity, ICCID, "0010")
        self.assertRaises(ProfileError, CardIdentity, ICCID, "0010100000000001")
        self.assertRaises(ProfileError, CardIdentity, ICCID, "001010000000001", "+3161234")
        self.assertRaises(ProfileError, CardIdentity, ICCID, "001010000000001", "1234567890123456")


class KeyValueTests(SynchronousTestCase):
    """Key values are length-checked and never shown."""

    def test_otaKeyLengths(self) -> None:
        """AES sets take 16/24/32-byte keys, 3DES sets 16/24; the KIK may be empty."""
        OtaKeySet(1, OtaAlgorithm.AES, bytes(32), bytes(32))
        OtaKeySet(15, OtaAlgorithm.TDES, bytes(24), bytes(24), bytes(16))
        self.assertRaises(ProfileError, OtaKeySet, 1, OtaAlgorithm.TDES, bytes(32), bytes(32))
        self.assertRaises(ProfileError, OtaKeySet, 1, OtaAlgorithm.AES, bytes(8), bytes(16))
        self.assertRaises(ProfileError, OtaKeySet, 1, OtaAlgorithm.AES, bytes(16), b"")

    def test_kvnRanges(self) -> None:
        """OTA key versions are 1..15, SCP03 30..3F and PSK 40..4F."""
        self.assertRaises(ProfileError, OtaKeySet, 0, OtaAlgorithm.AES, KIC, KID)
        self.assertRaises(ProfileError, OtaKeySet, 16, OtaAlgorithm.AES, KIC, KID)
        self.assertRaises(ProfileError, Scp03Keys, 0x20, ENC, MAC, DEK)
        self.assertRaises(ProfileError, PskCredential, b"id", PSK, 0x30)
        self.assertEqual(PskCredential(b"id", PSK).kvn, 0x40)

    def test_scp03KeysSameLength(self) -> None:
        """The three SCP03 keys are AES keys of one length."""
        self.assertRaises(ProfileError, Scp03Keys, 0x30, ENC, MAC + bytes(8), DEK)
        self.assertRaises(ProfileError, Scp03Keys, 0x30, bytes(8), bytes(8), bytes(8))

    def test_reprHidesKeys(self) -> None:
        """No key byte shows in the repr or str of any key-holding value."""
        profile = make_profile()
        text = repr(profile) + str(profile.ota_key_sets[0]) + str(profile.psk)
        text += str(profile.scp03[0])
        for key in (KIC, KID, KIK, PSK, ENC, MAC, DEK):
            self.assertNotIn(key.hex(), text.lower())
            self.assertNotIn(repr(key), text)
        self.assertIn("<16 bytes>", text)
        self.assertIn(ICCID, text)  # the PSK identity is not secret

    def test_errorsHideKeys(self) -> None:
        """A refused key is described by its length only."""
        secret = bytes(range(0xA0, 0xA0 + 17))
        with self.assertRaises(ProfileError) as ctx:
            OtaKeySet(1, OtaAlgorithm.AES, secret, KID)
        self.assertNotIn(secret.hex(), str(ctx.exception))
        self.assertIn("17", str(ctx.exception))

    def test_otaKeysForCodec(self) -> None:
        """An OTA key set hands the SCP80 codec its KIc/KID pair."""
        keys = make_profile().ota_key_sets[0].ota_keys()
        self.assertEqual(keys, OtaKeys(kic_key=KIC, kid_key=KID))

    def test_gpKeyTypes(self) -> None:
        """AES sets are GP key type 88, 3DES sets 80."""
        self.assertEqual(OtaAlgorithm.AES.gp_key_type, 0x88)
        self.assertEqual(OtaAlgorithm.TDES.gp_key_type, 0x80)


class CardProfileTests(SynchronousTestCase):
    """A profile groups a card's personalisation and looks keys up."""

    def test_lookups(self) -> None:
        """Key sets are found by version; SCP03 version 0 means the first set."""
        profile = make_profile()
        self.assertEqual(found(profile.ota_key_set(1)).kic, KIC)
        self.assertIsNone(profile.ota_key_set(2))
        self.assertEqual(found(profile.scp03_key_set()).kvn, 0x30)
        self.assertEqual(found(profile.scp03_key_set(0x30)).dek, DEK)
        self.assertIsNone(profile.scp03_key_set(0x31))
        self.assertIsNone(attrs.evolve(profile, scp03=()).scp03_key_set())

    def test_agentId(self) -> None:
        """The admin agent id defaults to the ICCID."""
        profile = make_profile()
        self.assertEqual(profile.agent_id, ICCID)
        other = attrs.evolve(profile, admin=AdminDefaults("h", 8443, "/a", "agent-7"))
        self.assertEqual(other.agent_id, "agent-7")

    def test_uniqueKeyVersions(self) -> None:
        """Two key sets with one version are refused."""
        ks = OtaKeySet(1, OtaAlgorithm.AES, KIC, KID)
        self.assertRaises(ProfileError, CardProfile, CardIdentity(ICCID, "001010"), (ks, ks))
        self.assertRaises(ProfileError, CardProfile, CardIdentity(ICCID, "001010"), [ks])

    def test_adminDefaults(self) -> None:
        """Admin host, port and URI are checked."""
        self.assertRaises(ProfileError, AdminDefaults, "")
        self.assertRaises(ProfileError, AdminDefaults, "a b")
        self.assertRaises(ProfileError, AdminDefaults, "h", 0)
        self.assertRaises(ProfileError, AdminDefaults, "h", 443, "admin")
        self.assertEqual(AdminDefaults("h").uri, "/admin")


class OtaCountersTests(SynchronousTestCase):
    """The last accepted OTA counter per key version."""

    def test_record(self) -> None:
        """Recording a new value sets it and marks the counters changed."""
        counters = OtaCounters()
        self.assertEqual(counters.last(1), 0)
        self.assertFalse(counters.changed)
        counters.record(1, 5)
        self.assertEqual((counters.last(1), counters.changed), (5, True))
        counters.changed = False
        counters.record(1, 5)
        self.assertFalse(counters.changed)
        self.assertEqual(list(counters), [1])
        self.assertEqual(counters, OtaCounters({1: 5}))

    def test_bounds(self) -> None:
        """Versions outside 1..15 and counters outside 5 bytes are refused."""
        counters = OtaCounters()
        self.assertRaises(ProfileError, counters.record, 0, 1)
        self.assertRaises(ProfileError, counters.record, 1, 1 << 40)
        self.assertRaises(ProfileError, OtaCounters, {1: -1})

    @given(st.dictionaries(st.integers(1, 15), st.integers(0, (1 << 40) - 1), max_size=15))
    def test_roundTrip(self, values: dict[int, int]) -> None:
        """Counters rebuilt from as_dict are equal and unchanged."""
        counters = OtaCounters(values)
        again = OtaCounters(counters.as_dict())
        self.assertEqual(again, counters)
        self.assertFalse(again.changed)
