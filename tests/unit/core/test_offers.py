"""Card-initiated sessions: a card that connects with no session waiting is offered.

Driven as the SCP81 server drives the engine (L{CardLink}), on a Clock.
"""

from __future__ import annotations

from bipgw.core import (
    CardOffer,
    FailureReason,
    ServiceRules,
    SessionError,
    SessionState,
)
from tests.unit.core import (
    GET_DATA,
    GET_DATA_SCRIPT,
    ICCID,
    MSISDN,
    EngineTestCase,
    answer_post,
    first_post,
)

S = SessionState


class _Base(EngineTestCase):
    services = {
        "svc": ServiceRules(),
        "poll": ServiceRules(card_initiated=True),
        "events": ServiceRules(card_initiated=True, max_concurrent_sessions=1),
    }

    def setUp(self) -> None:
        super().setUp()
        self.offered: list[CardOffer] = []
        self.stop_listening = self.engine.offers.listen(self.offered.append)

    def take_held(self) -> tuple[CardOffer, object]:
        """A card connects on its own and POSTs: its offer and the held POST."""
        link = self.engine.card_arrived(ICCID, "agent-9", disconnect=self.disconnects.append)
        assert link is not None
        held = link.post(first_post("agent-9"))
        self.assertNoResult(held)
        (offer,) = self.offered
        return offer, (link, held)


class OfferTests(_Base):
    def test_offeredAndTaken(self) -> None:
        """The offer names the card (with the MSISDN from the directory), its agent
        id and the services that take such cards; taking it gives a connected
        session whose commands reach the card in the held POST."""
        offer, (link, held) = self.take_held()
        self.assertEqual(
            (offer.iccid, offer.msisdn, offer.agent_id, offer.services),
            (ICCID, MSISDN, "agent-9", ("events", "poll")),
        )
        self.assertEqual(offer.expires_at, self.clock.seconds() + self.policy.offer_timeout)
        self.assertEqual(self.engine.offers.pending(), [offer])
        session = self.engine.take(offer.session_id, "poll")
        self.assertEqual(session.service, "poll")
        self.assertIs(self.successResultOf(session.ready).state, S.CONNECTED)
        result = session.execute([GET_DATA])
        self.assertEqual(self.successResultOf(held).body, GET_DATA_SCRIPT)
        link.post(answer_post(f"/admin/s/{offer.session_id}/1"))
        self.assertEqual(self.successResultOf(result).status_words, (0x6A88,))
        self.assertEqual(self.engine.offers.pending(), [])
        self.assertEqual(self.sender.orders, [])  # no push: the card came by itself
        states = [e.state for e in self.recorder.history(offer.session_id) if e.transition]
        self.assertEqual(
            states, [S.REQUESTED, S.AWAITING_CARD, S.CONNECTED, S.RELAYING, S.CONNECTED]
        )
        closing = session.close()
        link.lost("closed")
        self.successResultOf(closing)

    def test_notTakenGets204(self) -> None:
        """Nobody takes it within offer_timeout: the held POST gets 204 and the
        session closes, its history saying why."""
        offer, (link, held) = self.take_held()
        self.clock.advance(self.policy.offer_timeout)
        self.assertEqual(self.successResultOf(held).status, 204)
        link.lost("closed after 204")
        status = self.engine.status(offer.session_id)
        assert status is not None
        self.assertIs(status.state, S.CLOSED)
        notes = [e.detail for e in self.recorder.history(offer.session_id)]
        self.assertTrue(any("not taken" in n for n in notes), notes)
        error = self.assertRaises(SessionError, self.engine.take, offer.session_id, "poll")
        self.assertIs(error.reason, FailureReason.UNKNOWN_SESSION)

    def test_takeRefusals(self) -> None:
        """A service that does not take card-initiated sessions is refused; the
        offer stays; once taken, a second take is refused."""
        offer, (link, _) = self.take_held()
        error = self.assertRaises(SessionError, self.engine.take, offer.session_id, "svc")
        self.assertIs(error.reason, FailureReason.SERVICE_NOT_ALLOWED)
        self.assertEqual(len(self.engine.offers.pending()), 1)
        self.engine.take(offer.session_id, "events")
        error = self.assertRaises(SessionError, self.engine.take, offer.session_id, "poll")
        self.assertIs(error.reason, FailureReason.UNKNOWN_SESSION)
        link.lost("gone")

    def test_serviceLimitOnTake(self) -> None:
        """Taking it for a service at its max_concurrent_sessions is refused."""
        offer, (link, _) = self.take_held()
        other = self.open("8988211000000000026", "events")
        error = self.assertRaises(SessionError, self.engine.take, offer.session_id, "events")
        self.assertIs(error.reason, FailureReason.LIMIT_REACHED)
        link.lost("gone")
        other.ready.addErrback(lambda _: None)

    def test_cardDropsBeforeTake(self) -> None:
        """The card goes away while on offer: the offer is withdrawn, no timer left."""
        offer, (link, _) = self.take_held()
        link.lost("dropped")
        self.assertEqual(self.engine.offers.pending(), [])
        status = self.engine.status(offer.session_id)
        assert status is not None
        self.assertEqual((status.state, status.reason), (S.FAILED, FailureReason.CARD_DROPPED))

    def test_platformOpenQueuesBehind(self) -> None:
        """A platform's session for the card while it is on offer waits its turn."""
        _, (link, held) = self.take_held()
        queued = self.open(ICCID, "svc")
        self.assertEqual(self.sender.orders, [])
        self.clock.advance(self.policy.offer_timeout)
        self.assertEqual(self.successResultOf(held).status, 204)
        link.lost("closed")
        self.assertEqual(len(self.sender.orders), 1)  # now the card is free: pushed
        self.assertIs(queued.status().state, S.PUSHING)


class NoOfferTests(_Base):
    def test_noListener(self) -> None:
        """With no door listening, a card with no session gets None (204) as before."""
        self.stop_listening()
        self.assertIsNone(self.engine.card_arrived(ICCID, "a"))

    def test_unknownTarget(self) -> None:
        """An ICCID that does not normalise is not held."""
        self.assertIsNone(self.engine.card_arrived("not-an-iccid", "a"))
        self.assertEqual(self.offered, [])


class NoServiceTests(EngineTestCase):
    services = {"svc": ServiceRules()}

    def test_noServiceTakesThem(self) -> None:
        self.engine.offers.listen(lambda offer: None)
        self.assertFalse(self.engine.offers.open)
        self.assertIsNone(self.engine.card_arrived(ICCID, "a"))
        self.assertIsNone(self.engine.status("s1"))
        self.assertEqual(self.open(ICCID, "svc").service, "svc")
