"""Tests for the fault book: settings, overlays, text values and the SMSC's view."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from simcard.channel import ChannelFaults
from simcard.fleet import (
    FAULT_KEYS,
    CardFaults,
    FaultBook,
    FleetConfigError,
    LiveSmscFaults,
    ReplayMode,
    fault_changes,
    parse_fault_text,
)
from simcard.smsc import FaultConfig, FaultInjector, FaultPlan

ICCID = "8988211000000000011"
OTHER = "8988211000000000029"


class CardFaultsTests(SynchronousTestCase):
    """One card's faults, and what the admin channel gets of them."""

    def test_noneByDefault(self) -> None:
        """The default shows no fault and asks nothing of the channel."""
        faults = CardFaults()
        self.assertFalse(faults.active)
        self.assertIsNone(faults.channel_faults())
        self.assertEqual(faults.describe(), "none")

    def test_channelFaults(self) -> None:
        """Session faults map onto the channel's: slow is the POST delay."""
        faults = CardFaults(wrong_psk=True, drop_after_scripts=1, slow=2.0, malformed_http=True)
        self.assertEqual(
            faults.channel_faults(),
            ChannelFaults(
                drop_after_scripts=1, post_delay=2.0, malformed_http=True, wrong_psk=True
            ),
        )

    def test_smsOnlyFaultsLeaveTheChannelAlone(self) -> None:
        """Faults that act on SMS do not touch the channel."""
        faults = CardFaults(ignore_push=True, replay=ReplayMode.POR, duplicate_sms=1.0)
        self.assertTrue(faults.active)
        self.assertIsNone(faults.channel_faults())

    def test_describe(self) -> None:
        """describe() lists the settings that differ from none, in key order."""
        faults = CardFaults(slow=1.5, ignore_push=True, replay=ReplayMode.IGNORE)
        self.assertEqual(faults.describe(), "ignore_push=true replay=ignore slow=1.5")

    def test_keys(self) -> None:
        """Every documented fault is a setting."""
        self.assertEqual(
            FAULT_KEYS,
            (
                "ignore_push",
                "no_bearer",
                "lose_por",
                "replay",
                "wrong_psk",
                "drop_after_scripts",
                "slow",
                "malformed_http",
                "duplicate_sms",
            ),
        )


class ValuesTests(SynchronousTestCase):
    """Typed and textual fault values."""

    def test_typed(self) -> None:
        """Typed values are checked and converted."""
        self.assertEqual(
            fault_changes({"replay": "por", "slow": 2, "drop_after_scripts": 0}, "faults"),
            {"replay": ReplayMode.POR, "slow": 2.0, "drop_after_scripts": 0},
        )

    def test_typedRefusals(self) -> None:
        """Wrong types, ranges and unknown keys name the dotted key."""
        for values, fragment in (
            ({"slow": "2"}, "faults.slow = '2'"),
            ({"ignore_push": 1}, "faults.ignore_push"),
            ({"duplicate_sms": 1.5}, "fraction"),
            ({"drop_after_scripts": -1}, "faults.drop_after_scripts"),
            ({"replay": "sometimes"}, "faults.replay"),
            ({"sloww": 1}, "unknown fault"),
        ):
            with self.assertRaises(FleetConfigError) as ctx:
                fault_changes(values, "faults")
            self.assertIn(fragment, str(ctx.exception))

    def test_text(self) -> None:
        """Text values (control port) become typed ones; none clears the drop."""
        self.assertIs(parse_fault_text("ignore_push", "true", "f"), True)
        self.assertIs(parse_fault_text("wrong_psk", "off", "f"), False)
        self.assertEqual(parse_fault_text("slow", "2.5", "f"), 2.5)
        self.assertEqual(parse_fault_text("drop_after_scripts", "3", "f"), 3)
        self.assertIsNone(parse_fault_text("drop_after_scripts", "none", "f"))
        self.assertIs(parse_fault_text("replay", "POR", "f"), ReplayMode.POR)
        self.assertRaises(FleetConfigError, parse_fault_text, "slow", "fast", "f")
        self.assertRaises(FleetConfigError, parse_fault_text, "ignore_push", "perhaps", "f")


class BookTests(SynchronousTestCase):
    """Fleet-wide faults with per-card settings laid over them."""

    def test_overlay(self) -> None:
        """A card's settings override the fleet's key by key; other cards get the fleet's."""
        book = FaultBook(CardFaults(slow=1.0), {ICCID: {"ignore_push": True}})
        self.assertEqual(book.for_card(ICCID), CardFaults(slow=1.0, ignore_push=True))
        self.assertEqual(book.for_card(OTHER), CardFaults(slow=1.0))

    def test_fleetChangeReachesCards(self) -> None:
        """Changing a fleet-wide key changes cards that do not set it themselves."""
        book = FaultBook(cards={ICCID: {"slow": 3.0}})
        book.set_fleet({"slow": 1.0, "wrong_psk": True})
        self.assertEqual(book.for_card(ICCID), CardFaults(slow=3.0, wrong_psk=True))
        self.assertEqual(book.for_card(OTHER), CardFaults(slow=1.0, wrong_psk=True))

    def test_setCardKeepsOtherKeys(self) -> None:
        """set_card adds to a card's settings; clear_card drops them."""
        book = FaultBook()
        book.set_card(ICCID, {"ignore_push": True})
        book.set_card(ICCID, {"slow": 2})
        self.assertEqual(book.for_card(ICCID), CardFaults(ignore_push=True, slow=2.0))
        self.assertEqual(book.overrides(), {ICCID: {"ignore_push": True, "slow": 2.0}})
        self.assertTrue(book.clear_card(ICCID))
        self.assertFalse(book.clear_card(ICCID))
        self.assertEqual(book.for_card(ICCID), CardFaults())

    def test_badChangeChangesNothing(self) -> None:
        """A refused change leaves the book as it was."""
        book = FaultBook()
        self.assertRaises(FleetConfigError, book.set_card, ICCID, {"slow": 1, "bogus": 2})
        self.assertRaises(FleetConfigError, book.set_card, "123", {"slow": 1})
        self.assertRaises(FleetConfigError, book.set_fleet, {"slow": -1})
        self.assertEqual(book.overrides(), {})
        self.assertEqual(book.fleet, CardFaults())

    def test_clear(self) -> None:
        """clear() removes every fault."""
        book = FaultBook(CardFaults(slow=1.0), {ICCID: {"ignore_push": True}})
        book.clear()
        self.assertEqual(book.for_card(ICCID), CardFaults())
        self.assertEqual(book.overrides(), {})


class LiveSmscFaultsTests(SynchronousTestCase):
    """The SMSC's fault plan, consulted per message, with duplicate_sms laid over it."""

    def _config(self, book: FaultBook) -> LiveSmscFaults:
        directory = {"33600000001": ICCID, "33600000002": OTHER}
        return LiveSmscFaults(
            default=FaultPlan(delay=1.0),
            destinations={"33600000002": FaultPlan(loss=0.5)},
            seed=3,
            book=book,
            iccid_for_msisdn=directory.get,
        )

    def test_isTheSmscsConfig(self) -> None:
        """It is a FaultConfig: the SMSC takes it as one."""
        self.assertIsInstance(self._config(FaultBook()), FaultConfig)

    def test_plansUnchangedWithoutDuplicates(self) -> None:
        """Without duplicate_sms anywhere, the configured plans apply as they are."""
        config = self._config(FaultBook())
        self.assertEqual(config.plan_for("33600000001"), FaultPlan(delay=1.0))
        self.assertEqual(config.plan_for("33600000002"), FaultPlan(loss=0.5))

    def test_cardDuplicates(self) -> None:
        """A card's duplicate_sms raises its MSISDN's duplicate fraction only."""
        book = FaultBook()
        config = self._config(book)
        book.set_card(ICCID, {"duplicate_sms": 1.0})
        self.assertEqual(config.plan_for("33600000001"), FaultPlan(delay=1.0, duplicate=1.0))
        self.assertEqual(config.plan_for("33600000002"), FaultPlan(loss=0.5))
        self.assertEqual(config.plan_for("999"), FaultPlan(delay=1.0))

    def test_injectorDuplicates(self) -> None:
        """The SMSC's own injector hands a card with duplicate_sms = 1 every message twice,
        and starts doing so as soon as the book says so."""
        book = FaultBook()
        injector = FaultInjector(self._config(book))
        self.assertEqual(injector.decide("33600000001").copies, 1)
        book.set_card(ICCID, {"duplicate_sms": 1.0})
        self.assertEqual([injector.decide("33600000001").copies for _ in range(5)], [2] * 5)
