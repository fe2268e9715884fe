"""The store's records: validation, redaction, and the MSISDN rules as a pure function."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import (
    Card,
    CardKey,
    CardKeys,
    CardUpsert,
    ImportReport,
    LineError,
    MsisdnChange,
    Outcome,
    card_key_label,
    plan_msisdn_change,
)

ICCID = "8988211000000000018"


class RecordTests(SynchronousTestCase):
    """Records check what they hold and never show sealed material."""

    def test_cardKeyReprHidesBlobs(self) -> None:
        """A CardKey's repr shows what it is, not its sealed bytes or fingerprint."""
        key = CardKey(ICCID, "KIC", 1, "aes-128", b"\x01SEALED-BYTES", b"FINGERPRINT")
        self.assertNotIn("SEALED", repr(key))
        self.assertNotIn("FINGERPRINT", repr(key))
        self.assertIn("KIC", repr(key))

    def test_labelConvention(self) -> None:
        """Keys are sealed under card:<ICCID>:<PURPOSE><KVN> (docs/keys.md)."""
        self.assertEqual(card_key_label(ICCID, "KIC", 1), f"card:{ICCID}:KIC1")
        self.assertEqual(card_key_label(ICCID, "SCP03_ENC", 48), f"card:{ICCID}:SCP03_ENC48")
        self.assertRaises(ValueError, card_key_label, ICCID, "KI", 1)

    def test_validation(self) -> None:
        """Bad key versions, purposes, identities and empty ICCIDs are refused."""
        self.assertRaises(ValueError, CardKey, ICCID, "KIC", 256, "aes-128", b"x", b"f")
        self.assertRaises(ValueError, CardKey, ICCID, "NOPE", 1, "aes-128", b"x", b"f")
        self.assertRaises(ValueError, Card, "")
        self.assertRaises(ValueError, CardUpsert, ICCID, psk_identity=b"")
        self.assertRaises(ValueError, CardUpsert, ICCID, psk_identity=b"x" * 129)

    def test_cardKeysFind(self) -> None:
        """CardKeys finds a key by purpose and version."""
        kic = CardKey(ICCID, "KIC", 2, "aes-128", b"s", b"f")
        keys = CardKeys(ICCID, (kic,))
        self.assertIs(keys.find("KIC", 2), kic)
        self.assertIsNone(keys.find("KIC", 1))

    def test_upsertDiffersFrom(self) -> None:
        """An upsert differs from a card when one of its own fields differs (not MSISDN)."""
        stored = Card(ICCID, "001", "336", b"id", "B", "C", "T", {"X": "1"}, 7)
        same = CardUpsert(ICCID, "001", b"id", "B", "C", "T", {"X": "1"})
        self.assertFalse(same.differs_from(stored))
        self.assertTrue(
            CardUpsert(ICCID, "001", b"id", "B", "C", "T", {"X": "2"}).differs_from(stored)
        )

    def test_lineErrorRender(self) -> None:
        """A line error reads 'line N, column C: why'."""
        self.assertEqual(LineError(7, "KIC1", "not hex").render(), "line 7, column KIC1: not hex")
        self.assertEqual(LineError(3, None, "too short").render(), "line 3: too short")

    def test_reportOk(self) -> None:
        """A report is ok only when applied with no refused line and no fatal error."""
        base = ImportReport("cards", "f", "00", 1.0, applied=True)
        self.assertTrue(base.ok)
        self.assertFalse(ImportReport("cards", "f", "00", 1.0, applied=True, rejected=1).ok)
        self.assertFalse(ImportReport("cards", "f", "00", 1.0, fatal="x").ok)


class PlanTests(SynchronousTestCase):
    """plan_msisdn_change decides each record from the state alone."""

    def setUp(self) -> None:
        self.free = Card(ICCID, imsi="001")
        self.numbered = Card(ICCID, imsi="001", msisdn="336")

    def plan(self, op: str, msisdn: str | None, iccid: str | None = ICCID, **state: object):
        change = MsisdnChange(op, msisdn, iccid, None, 100)
        args = {"card": None, "holder": None, "latest_at": None, "duplicate": False, **state}
        return plan_msisdn_change(change, **args)  # type: ignore[arg-type]

    def test_addToFreeCard(self) -> None:
        """ADD of a free number to a card without one maps it."""
        plan = self.plan("ADD", "336", card=self.free)
        self.assertEqual((plan.outcome, plan.iccid, plan.new_msisdn), (Outcome.ADDED, ICCID, "336"))

    def test_duplicateWins(self) -> None:
        """A change already in the history is unchanged, whatever the state says."""
        self.assertEqual(self.plan("ADD", "999", duplicate=True).outcome, Outcome.UNCHANGED)

    def test_stale(self) -> None:
        """A change older than the latest applied one is rejected; an equal time is not."""
        self.assertEqual(
            self.plan("ADD", "336", card=self.free, latest_at=101).outcome, Outcome.REJECTED
        )
        self.assertEqual(
            self.plan("ADD", "336", card=self.free, latest_at=100).outcome, Outcome.ADDED
        )

    def test_chgRecordsPrevious(self) -> None:
        """CHG moves the card to the new number and remembers the old one."""
        plan = self.plan("CHG", "337", card=self.numbered)
        self.assertEqual(
            (plan.outcome, plan.new_msisdn, plan.previous_msisdn), (Outcome.UPDATED, "337", "336")
        )

    def test_delWrongNumber(self) -> None:
        """DEL naming a number the card does not have is rejected."""
        plan = self.plan("DEL", "999", card=self.numbered)
        self.assertEqual((plan.outcome, plan.field), (Outcome.REJECTED, "MSISDN"))
