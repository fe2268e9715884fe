# -*- test-case-name: tests.unit.app.test_campaign_leases -*-
"""Which gateway runs a campaign: a lease per campaign.

A campaign's scheduler (L{bipgw.core.CampaignRun}) runs in one process at a
time: the one holding the campaign's lease.  One gateway alone holds every
lease (L{LocalCampaignLeases}).  In a cluster the leases are in Redis
(L{bipgw.cluster._campaign_lease.RedisCampaignLeases}): a node renews the
leases it holds every few seconds, so a node that dies lets its campaigns
go within the lease's lifetime, and a live node takes them over
(L{bipgw.app.CampaignService} looks for campaigns without a holder every
few seconds).

A node that finds one of its leases lost (expired while it could not reach
Redis, and maybe taken by another node) is told through C{on_lost}, and
stops starting that campaign's cards.

The campaigns' events go between the nodes too (L{ICampaignEventBus}), so
a platform following a campaign hears it on whichever node it asks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred, succeed

from bipgw.core import CampaignEvent

__all__ = ["ICampaignEventBus", "ICampaignLeases", "LocalCampaignLeases"]


class ICampaignLeases(Protocol):
    """The campaign leases of one process."""

    #: C{True} when other processes may hold leases (a cluster): the campaign
    #: service then looks for campaigns to take over, and follows the state
    #: changes another node writes for the campaigns it runs.
    shared: bool

    def acquire(self, campaign_id: str) -> Deferred[bool]:
        """Take (or keep) the campaign's lease: C{True} if this process holds
        it now, C{False} if another one does."""

    def release(self, campaign_id: str) -> None:
        """Let the campaign go (it ended here)."""

    def start(self, on_lost: Callable[[str], object]) -> None:
        """Keep the held leases alive; C{on_lost(campaign_id)} when one is lost."""

    def stop(self) -> None:
        """Stop keeping them alive (they expire by themselves)."""


class LocalCampaignLeases:
    """One gateway alone: it holds every campaign's lease."""

    shared = False

    def acquire(self, campaign_id: str) -> Deferred[bool]:
        return succeed(True)

    def release(self, campaign_id: str) -> None:
        pass

    def start(self, on_lost: Callable[[str], object]) -> None:
        pass

    def stop(self) -> None:
        pass


class ICampaignEventBus(Protocol):
    """Campaign events between the processes of a cluster: a platform
    following a campaign on one node hears the node that runs it
    (L{bipgw.cluster._campaign_lease.CampaignEventBus})."""

    def start(self, deliver: Callable[[CampaignEvent], object]) -> None:
        """From now on, hand the other processes' events to C{deliver}."""

    def stop(self) -> None:
        """Hand over nothing more."""

    def publish(self, event: CampaignEvent) -> None:
        """Send an event of a campaign this process runs to the others."""
