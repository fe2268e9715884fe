"""The gateway's campaign service on a Clock: grants and limits, ownership, the
states each action allows, vendor batches, and taking campaigns up again after
a restart (a card left running ends interrupted, the rest run)."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app._campaign_cards import card_variables, check_script, swapped_bcd
from bipgw.app._campaigns import CampaignService
from bipgw.core import (
    CampaignCard,
    CampaignError,
    CampaignRecord,
    CampaignSpec,
    CampaignState,
    CampaignTarget,
    CardOutcome,
    Pace,
    ServiceGrant,
    TenantGrant,
)
from bipgw.store import MemoryCampaignStore, MemoryStore
from tests.unit.store.test_contract import card

ACME = TenantGrant("acme", services=[ServiceGrant("isd", max_sessions=4)], max_sessions=10)
GLOBEX = TenantGrant("globex", services=[ServiceGrant("isd")])
ICCIDS = [f"89882110000000000{n:02d}" for n in range(6)]


class Runner:
    def __init__(self) -> None:
        self.tries: list[tuple[str, Deferred[CardOutcome]]] = []

    def run(self, campaign: CampaignRecord, card: CampaignCard) -> Deferred[CardOutcome]:
        d: Deferred[CardOutcome] = Deferred()
        self.tries.append((card.target, d))
        return d


def spec(**changes: Any) -> CampaignSpec:
    base = CampaignSpec(
        name="t", tenant_id="acme", service="isd", script="80CA9F7F00", pace=Pace(concurrency=2)
    )
    return attrs.evolve(base, **changes)


class CampaignServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.done(self.store.upsert_cards([card(i, batch="B7") for i in ICCIDS[:3]]))
        self.campaigns = MemoryCampaignStore()
        self.runner = Runner()
        self.service = self.make()

    def make(self) -> CampaignService:
        service = CampaignService(self.store, self.campaigns, self.runner, self.clock)
        service.startService()
        self.done(service.when_ready())
        return service

    def done(self, d: Any) -> Any:
        if not isinstance(d, Deferred):
            d = Deferred.fromCoroutine(d)
        return self.successResultOf(d)

    def refused(self, call: Any) -> CampaignError:
        failure = self.failureResultOf(Deferred.fromCoroutine(call), CampaignError)
        assert isinstance(failure.value, CampaignError)
        return failure.value

    def targets(self, n: int = 3) -> list[CampaignTarget]:
        return [CampaignTarget(iccid=i) for i in ICCIDS[:n]]

    def test_grantAndLimits(self) -> None:
        """Only the tenant's services, and at most its (and the service's) sessions."""
        e = self.refused(self.service.create(ACME, spec(service="other"), self.targets()))
        self.assertEqual(e.code, "service-not-allowed")
        e = self.refused(self.service.create(ACME, spec(pace=Pace(concurrency=5)), self.targets()))
        self.assertIn("4 sessions", str(e))
        e = self.refused(self.service.create(ACME, spec(tenant_id="globex"), self.targets()))
        self.assertEqual(e.code, "invalid-campaign")

    def test_scriptCheckedAtCreation(self) -> None:
        e = self.refused(self.service.create(ACME, spec(script="00 A4 ${X}"), self.targets()))
        self.assertIn("X", str(e))
        e = self.refused(self.service.create(ACME, spec(script="include x.apdu"), self.targets()))
        self.assertIn("cannot include", str(e))
        e = self.refused(self.service.create(ACME, spec(script="# nothing"), self.targets()))
        self.assertIn("no command", str(e))

    def test_batch(self) -> None:
        """A vendor batch adds its cards, after the targets given."""
        made = self.done(
            self.service.create(ACME, spec(), [CampaignTarget(msisdn="33600000001")], batch="B7")
        )
        self.assertEqual(made.cards, 4)
        cards = self.done(self.campaigns.list_cards(made.id))
        self.assertEqual([c.target for c in cards], ["33600000001", *ICCIDS[:3]])
        e = self.refused(self.service.create(ACME, spec(), [], batch="nope"))
        self.assertIn("no card", str(e))

    def test_ownership(self) -> None:
        """Another tenant's campaign is unknown to it, whatever it asks."""
        made = self.done(self.service.create(ACME, spec(), self.targets()))
        for call in (
            self.service.status(GLOBEX, made.id),
            self.service.start(GLOBEX, made.id),
            self.service.cancel(GLOBEX, made.id),
            self.service.cards(GLOBEX, made.id, 0, 10),
            self.service.add_targets(GLOBEX, made.id, self.targets(1)),
        ):
            self.assertEqual(self.refused(call).code, "unknown-campaign")
        self.assertEqual(self.done(self.service.list(GLOBEX)), [])

    def test_statesAllowed(self) -> None:
        made = self.done(self.service.create(ACME, spec(), self.targets()))
        self.assertEqual(self.refused(self.service.pause(ACME, made.id)).code, "campaign-state")
        self.assertEqual(self.refused(self.service.resume(ACME, made.id)).code, "campaign-state")
        added = self.done(self.service.add_targets(ACME, made.id, self.targets(1)))
        self.assertEqual(added.cards, 4)
        running = self.done(self.service.start(ACME, made.id))
        self.assertEqual(running.state, CampaignState.RUNNING)
        self.assertEqual(len(self.runner.tries), 1)  # the pace: one token at first
        e = self.refused(self.service.add_targets(ACME, made.id, self.targets(1)))
        self.assertEqual(e.code, "campaign-state")
        self.assertEqual(self.refused(self.service.start(ACME, made.id)).code, "campaign-state")
        self.assertEqual(self.done(self.service.pause(ACME, made.id)).state, CampaignState.PAUSED)
        self.assertEqual(self.done(self.service.start(ACME, made.id)).state, CampaignState.RUNNING)
        cancelled = self.done(self.service.cancel(ACME, made.id))
        self.assertEqual(cancelled.state, CampaignState.CANCELLED)
        self.assertEqual(self.refused(self.service.cancel(ACME, made.id)).code, "campaign-state")
        _, counts, in_flight = self.done(self.service.status(ACME, made.id))
        self.assertEqual((counts["running"], counts["cancelled"], in_flight), (1, 3, 1))

    def test_restartTakesUp(self) -> None:
        """After a restart, a running campaign goes on; its card left running is
        interrupted, not run again; a paused one stays paused."""
        made = self.done(self.service.create(ACME, spec(), self.targets(), start=True))
        other = self.done(self.service.create(ACME, spec(), self.targets(2), start=True))
        self.done(self.service.pause(ACME, other.id))
        self.assertEqual([t for t, _ in self.runner.tries], [ICCIDS[0], ICCIDS[0]])
        self.done(self.service.stopService())
        # A new process over the same database.
        self.runner = Runner()
        self.service = self.make()
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual([t for t, _ in self.runner.tries], [ICCIDS[1], ICCIDS[2]])
        for _, d in self.runner.tries:
            d.callback(CardOutcome(True, rapdus=("9000",), reached=True))
        record, counts, _ = self.done(self.service.status(ACME, made.id))
        self.assertEqual(record.state, CampaignState.COMPLETED)
        self.assertEqual((counts["interrupted"], counts["succeeded"]), (1, 2))
        paused, counts, _ = self.done(self.service.status(ACME, other.id))
        self.assertEqual(
            (paused.state, counts["interrupted"], counts["pending"]), (CampaignState.PAUSED, 1, 1)
        )


class VariableTests(SynchronousTestCase):
    def test_swappedBcd(self) -> None:
        self.assertEqual(swapped_bcd("8988211000000000011").hex().upper(), "988812010000000010F1")
        self.assertEqual(swapped_bcd("33600000001").hex().upper(), "3306000000F1")

    def test_cardVariables(self) -> None:
        got = card_variables({"ICCID": "01", "K": "0A"}, "8988211000000000011", "+33600000001")
        self.assertEqual(
            got, {"ICCID": b"\x01", "K": b"\x0a", "MSISDN": swapped_bcd("33600000001")}
        )

    def test_checkScriptWithoutCards(self) -> None:
        check_script("00 A4 04 00 (${ICCID}) 00", [])

    def test_parseSharedWhenReferencedValuesAreEqual(self) -> None:
        """Cards whose referenced variables are equal share one parse (their
        other variables may differ); a card with other values gets its own;
        an error is raised for every card that has it."""
        from bipgw.app._campaign_cards import compile_script
        from bipgw.client import ScriptError

        text = "set X = 01\n80 CA 00 42 00 => 9000 data: 42 04 ${IIN}\n00 B0 00 00 ${X[0:1]} 00\n"
        first = compile_script(text, "c", {"IIN": b"\x89\x88\x21\x10", "ICCID": b"\x01"})
        second = compile_script(text, "c", {"IIN": b"\x89\x88\x21\x10", "ICCID": b"\x02"})
        self.assertIs(second.commands, first.commands)
        self.assertEqual(second.variables["ICCID"], b"\x02")
        other = compile_script(text, "c", {"IIN": b"\x89\x88\x21\x11", "ICCID": b"\x02"})
        self.assertIsNot(other.commands, first.commands)
        self.assertEqual(other.commands[0].apdu, first.commands[0].apdu)
        self.assertNotEqual(other.commands[0].data, first.commands[0].data)
        for _ in range(2):
            with self.assertRaises(ScriptError):
                compile_script(text, "c", {"ICCID": b"\x01"})
