# -*- test-case-name: tests.integration.test_cluster_campaigns -*-
"""Campaign leases in Redis: one node runs each campaign; a dead node's are taken over.

Campaign C{ID}'s lease is the key C{bipgw:campaign:ID}, holding the name of
the node running the campaign, with an expiry (L{LEASE_TTL}).  It is taken
with the card locks' Lua scripts (set if absent, or renewed if this node
holds it already; released only by its holder), and the node renews every
lease it holds every L{RENEW_EVERY} seconds, with its heartbeat's cadence.
A node killed with C{kill -9} stops renewing: its leases expire within
L{LEASE_TTL} seconds of its last renewal, and the first live node that
looks (L{bipgw.app.CampaignService}, every few seconds) takes the campaign
over: the cards the dead node left C{running} end as C{interrupted} (or run
again, for an idempotent script), the others run on the new node.

The campaign events of a node's campaigns are published on the channel
C{bipgw:campaigns} so that a platform following a campaign on any node
(C{GET /v1/campaigns/ID/events}) hears them (L{CampaignEventBus}).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.cluster._locks import _ACQUIRE, _RELEASE, _RENEW
from bipgw.cluster._redis import PREFIX, ClusterRedis
from bipgw.cluster._renewal import Renewal
from bipgw.core import CampaignCard, CampaignEvent, CampaignState, CardState

__all__ = [
    "EVENTS_CHANNEL",
    "LEASE_TTL",
    "RENEW_EVERY",
    "CampaignEventBus",
    "RedisCampaignLeases",
    "decode_event",
    "encode_event",
]

LEASE_TTL: Final = 10.0
"""Seconds a campaign lease lives unless its node renews it."""
RENEW_EVERY: Final = 3.0
"""Seconds between two renewals of a node's leases."""
EVENTS_CHANNEL: Final = "campaigns"
"""The channel (under the prefix) campaign events go out on."""


def lease_key(campaign_id: str) -> str:
    """The Redis key of a campaign's lease."""
    return f"{PREFIX}campaign:{campaign_id}"


class RedisCampaignLeases:
    """An L{bipgw.app.ICampaignLeases} shared by the nodes through Redis.

    @param redis: the node's Redis connections.
    @param node: this node's name (what its leases hold).
    @param clock: times the renewals.
    """

    shared = True
    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        clock: IReactorTime,
        *,
        ttl: float = LEASE_TTL,
        renew_every: float = RENEW_EVERY,
    ) -> None:
        self._ttl = int(ttl * 1000)
        self._redis = redis
        self.node = node
        self._on_lost: Callable[[str], object] = lambda _: None
        self.renewal: Renewal[None] = Renewal(
            clock, self._renew, every=renew_every, ttl=ttl, what="campaign leases"
        )
        self.renewal.on_lost = self._lost

    @property
    def held(self) -> frozenset[str]:
        """The campaigns this node holds."""
        return frozenset(self.renewal.held)

    def acquire(self, campaign_id: str) -> Deferred[bool]:
        d = self._redis.script(_ACQUIRE, [lease_key(campaign_id)], [self.node, self._ttl])

        def taken(result: Any) -> bool:
            if int(result) == 1:
                self.renewal.add(campaign_id, None)
                return True
            return False

        return d.addCallback(taken)

    def release(self, campaign_id: str) -> None:
        self.renewal.discard(campaign_id)
        d = self._redis.script(_RELEASE, [lease_key(campaign_id)], [self.node])
        d.addErrback(
            lambda f: self._log.warn(
                "campaign {id}'s lease not released ({why}); it expires by itself",
                id=campaign_id,
                why=f.getErrorMessage(),
            )
        )

    def renew(self) -> Deferred[None]:
        """Renew every lease held; those lost are forgotten and reported."""
        return self.renewal.renew()

    def _renew(self, held: list[tuple[str, None]]) -> Deferred[Iterable[str] | None]:
        ids = [campaign_id for campaign_id, _ in held]
        d = self._redis.script(_RENEW, [lease_key(c) for c in ids], [self.node, self._ttl])
        return d.addCallback(lambda lost: [ids[int(i) - 1] for i in lost or ()])

    def _lost(self, campaign_id: str, _: None) -> None:
        self._log.warn(
            "campaign {id}'s lease was lost (expired): this node stops running it",
            id=campaign_id,
        )
        self._on_lost(campaign_id)

    def start(self, on_lost: Callable[[str], object]) -> None:
        self._on_lost = on_lost
        self.renewal.start()

    def stop(self) -> None:
        # Not released: the tries under way are written after the campaign
        # service stops; another node takes the campaigns over once the
        # leases expire, and this node, restarted under its name, at once.
        self.renewal.stop()


def encode_event(event: CampaignEvent, node: str) -> str:
    """A campaign event as a message on the channel (a card's variables are
    left out: a platform's events never carry them)."""
    out: dict[str, Any] = {"node": node, "campaign": event.campaign_id, "state": event.state.value}
    card = event.card
    if card is not None:
        out["card"] = {
            "index": card.index,
            "iccid": card.iccid,
            "msisdn": card.msisdn,
            "state": card.state.value,
            "attempts": card.attempts,
            "next_at": card.next_at,
            "reason": card.reason,
            "detail": card.detail,
            "rapdus": list(card.rapdus),
            "session": card.session,
            "updated_at": card.updated_at,
        }
    return json.dumps(out, separators=(",", ":"))


def decode_event(message: str) -> tuple[str, CampaignEvent]:
    """The node that sent a message of the channel, and its event.

    @raise ValueError: not such a message.
    """
    try:
        m = json.loads(message)
        campaign_id = str(m["campaign"])
        card = None
        if "card" in m:
            c = m["card"]
            card = CampaignCard(
                campaign_id=campaign_id,
                index=int(c["index"]),
                iccid=c["iccid"],
                msisdn=c["msisdn"],
                state=CardState(c["state"]),
                attempts=int(c["attempts"]),
                next_at=float(c["next_at"]),
                reason=c["reason"],
                detail=c["detail"],
                rapdus=tuple(str(r) for r in c["rapdus"]),
                session=c["session"],
                updated_at=float(c["updated_at"]),
            )
        return str(m["node"]), CampaignEvent(campaign_id, CampaignState(m["state"]), card)
    except (KeyError, TypeError, ValueError) as e:  # CampaignError is a ValueError
        raise ValueError(f"not a campaign event: {e}") from None


class CampaignEventBus:
    """Campaign events between the nodes, on the channel C{bipgw:campaigns}.

    A node publishes the events of the campaigns it runs (L{publish}); every
    node hands the events of the others to C{deliver} (its own come back
    too, and are dropped).

    @param redis: the node's Redis connections.
    @param node: this node's name.
    """

    _log = Logger()

    def __init__(self, redis: ClusterRedis, node: str) -> None:
        self._redis = redis
        self.node = node
        self._deliver: Callable[[CampaignEvent], object] | None = None

    def start(self, deliver: Callable[[CampaignEvent], object]) -> None:
        self._deliver = deliver
        self._redis.subscribe(EVENTS_CHANNEL, self._received)

    def stop(self) -> None:
        self._deliver = None

    def publish(self, event: CampaignEvent) -> None:
        d = self._redis.publish(EVENTS_CHANNEL, encode_event(event, self.node))
        d.addErrback(
            lambda f: self._log.debug("a campaign event not sent: {why}", why=f.getErrorMessage())
        )

    def _received(self, message: str) -> None:
        if self._deliver is None:
            return
        try:
            node, event = decode_event(message)
        except ValueError as e:
            self._log.warn("a campaign event ignored: {why}", why=str(e)[:200])
            return
        if node != self.node:
            self._deliver(event)
