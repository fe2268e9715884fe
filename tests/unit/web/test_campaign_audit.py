"""A tenant's campaign actions through the HTTP API are in the audit log: who,
from where, which campaign and what it is now; never its script; a refused
action writes nothing."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from bipgw.app._campaigns import CampaignService
from bipgw.core import CampaignCard, CampaignRecord, CardOutcome
from bipgw.store import AuditRecord, MemoryCampaignStore, MemoryStore
from bipgw.web._campaigns import CampaignApi, CampaignStreams
from tests.unit.store.test_contract import card
from tests.unit.web import WebTestCase

ICCIDS = [f"89882110000000000{n:02d}" for n in range(3)]


class _Runner:
    """Cards that never answer: the campaign stays running while it is audited."""

    def run(self, campaign: CampaignRecord, card: CampaignCard) -> Deferred[CardOutcome]:
        return Deferred()


class CampaignAuditTests(WebTestCase):
    def setUp(self) -> None:
        super().setUp()
        store = MemoryStore()
        self.successResultOf(store.upsert_cards([card(i) for i in ICCIDS]))
        service = CampaignService(store, MemoryCampaignStore(), _Runner(), self.clock)
        service.startService()
        self.addCleanup(service.stopService)
        streams = CampaignStreams(service.subscribe, self.clock, 15.0, 65536)
        self.api.campaigns = CampaignApi(service, streams)
        self.written: list[AuditRecord] = []

        def audit(record: AuditRecord) -> Any:
            self.written.append(record)
            return succeed(len(self.written))

        self.api.audit = audit  # type: ignore[assignment]

    def test_actionsAudited(self) -> None:
        body = {
            "name": "rollout",
            "service": "demo",
            "script": "80CA9F7F00",
            "targets": [{"iccid": i} for i in ICCIDS[:2]],
            "pace": {"concurrency": 2},
        }
        created = self.call("POST", "/v1/campaigns", body)
        self.assertEqual(created.status, 201, created.body)
        cid = created.body["campaign"]
        more = self.call(
            "POST", f"/v1/campaigns/{cid}/targets", {"targets": [{"iccid": ICCIDS[2]}]}
        )
        self.assertEqual(more.status, 200, more.body)
        for action in ("start", "pause", "resume", "cancel"):
            answer = self.call("POST", f"/v1/campaigns/{cid}/{action}")
            self.assertEqual(answer.status, 200, (action, answer.body))
        self.assertEqual(
            [(r.actor, r.action, r.target) for r in self.written],
            [
                ("tenant:acme", f"campaign.{a}", f"campaign:{cid}")
                for a in ("create", "add-targets", "start", "pause", "resume", "cancel")
            ],
        )
        self.assertIn("'rollout', service 'demo', 2 cards, now created", self.written[0].detail)
        self.assertIn("3 cards", self.written[1].detail)
        self.assertTrue(all(r.origin for r in self.written))
        self.assertNotIn("80CA9F7F00", repr(self.written).upper())
        # Refused (already cancelled; another tenant's): nothing more is written.
        self.assertEqual(self.call("POST", f"/v1/campaigns/{cid}/start").status, 409)
        from tests.unit.web import OTHER_TOKEN

        other = self.call("POST", f"/v1/campaigns/{cid}/pause", token=OTHER_TOKEN)
        self.assertEqual(other.status, 404, other.body)
        self.assertEqual(len(self.written), 6)
