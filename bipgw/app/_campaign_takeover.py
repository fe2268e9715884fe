# -*- test-case-name: tests.unit.app.test_campaign_leases -*-
"""Campaigns over several processes: which one runs a campaign, and taking one over.

L{CampaignTakeover} is the part of L{bipgw.app.CampaignService} that deals
with the campaign leases (L{ICampaignLeases}): a campaign found C{running}
or C{paused} is run here only once its lease is taken (L{_adopt}: its cards
left C{running} are recovered first, as after a restart); in a cluster the
service looks every L{WATCH_EVERY} seconds for campaigns no node holds (a
dead node's, whose leases expired) and takes them over, and follows the
state changes other nodes wrote for the campaigns it runs; a command asked
of a node that does not run the campaign is written in the database
(L{_elsewhere}), where the node running it finds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.app._campaign_leases import ICampaignLeases
from bipgw.core import CampaignRecord, CampaignRun, CampaignState
from bipgw.store import MemoryCampaignStore, SqlCampaignStore

__all__ = ["WATCH_EVERY", "CampaignTakeover"]

WATCH_EVERY: Final = 3.0
"""Seconds between two looks (in a cluster) for campaigns to take over and
for state changes other nodes wrote for this node's campaigns."""
_QUIET: Final = WATCH_EVERY
"""A campaign whose state this node changed this recently is not changed
after what the database says (the database may not show the change yet)."""


class CampaignTakeover:
    """The lease side of L{bipgw.app.CampaignService} (module docstring)."""

    _log = Logger()
    records: SqlCampaignStore | MemoryCampaignStore
    _clock: IReactorTime
    _leases: ICampaignLeases
    _runs: dict[str, CampaignRun]
    _changed_at: dict[str, float]
    _stopping: bool
    #: The scheduler of a campaign in this process (made if needed).
    _run_for: Callable[[CampaignRecord], CampaignRun]

    async def _adopt(self, record: CampaignRecord, *, start: bool = True) -> CampaignRun | None:
        """Run a campaign found C{running} or C{paused} that this process
        does not run, if it gets its lease: its cards left C{running} are
        recovered first (and, unless C{start} is false, a running one goes
        on).  C{None} if another process holds it."""
        run = self._runs.get(record.id)
        if run is not None:
            return run
        if not await self._leases.acquire(record.id):
            return None
        if self._leases.shared:  # it may have changed while another node held it
            record = await self.records.get_campaign(record.id) or record
        if record.state.terminal or record.id in self._runs:
            if record.state.terminal:
                self._leases.release(record.id)
            return self._runs.get(record.id)
        if self._stopping:  # the gateway began stopping while the lease was taken
            self._leases.release(record.id)
            return None
        run = self._run_for(record)
        await run.recover()
        if start and record.state is CampaignState.RUNNING and not self._stopping:
            self._log.info("campaign {id} ({name}): resuming", id=record.id, name=record.spec.name)
            await run.start()
        return run

    def _lease_lost(self, campaign_id: str) -> None:
        run = self._runs.pop(campaign_id, None)
        if run is not None:
            run.stop()

    def _look(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self._follow_others())
        d.addErrback(
            lambda f: self._log.warn(
                "looking for campaigns to take over failed: {why}", why=f.getErrorMessage()
            )
        )
        return d

    async def _follow_others(self) -> None:
        """One look (a cluster): take over the campaigns no node runs, and
        follow the state changes other nodes wrote for this node's."""
        found = await self.records.list_campaigns(
            states=[CampaignState.RUNNING, CampaignState.PAUSED]
        )
        listed = {record.id: record.state for record in found}
        mine = dict(self._runs)  # a lost lease's campaign is no longer there
        for cid, run in list(mine.items()):
            if cid not in listed and not run.state.terminal:
                record = await self.records.get_campaign(cid)
                if record is not None and record.state is CampaignState.CANCELLED:
                    listed[cid] = CampaignState.CANCELLED
        now = self._clock.seconds()  # after the reads: a change of ours since is quiet
        for record in found:
            if self._stopping:
                return
            if record.id not in self._runs:
                await self._adopt(record)
        for cid, run in mine.items():
            want = listed.get(cid)
            if self._stopping or want is None or want is run.state:
                continue
            if now - self._changed_at.get(cid, -math.inf) < _QUIET:
                continue
            self._log.info("campaign {id}: {state} on another node", id=cid, state=want.value)
            if want is CampaignState.CANCELLED:
                await run.cancel()
            elif want is CampaignState.PAUSED:
                await run.pause()
            elif want is CampaignState.RUNNING:
                await run.start()

    async def _local_run(self, record: CampaignRecord) -> CampaignRun | None:
        """This process's scheduler for a campaign, taking its lease (a
        running or paused one no node runs is recovered first, not
        started); C{None} when another node runs it."""
        run = self._runs.get(record.id)
        if run is not None:
            return run
        if record.state in (CampaignState.RUNNING, CampaignState.PAUSED):
            return await self._adopt(record, start=False)
        if not await self._leases.acquire(record.id):
            return None
        return self._run_for(record)

    async def _elsewhere(self, record: CampaignRecord, state: CampaignState) -> CampaignRecord:
        """A campaign another node runs: the new state is written in the
        database, where that node finds it within L{WATCH_EVERY} seconds."""
        now = self._clock.seconds()
        await self.records.set_state(record.id, state, now)
        if state is CampaignState.CANCELLED:
            await self.records.cancel_pending(record.id, now)
        return attrs.evolve(record, state=state, updated_at=now)

    async def _settled(self, run: CampaignRun) -> CampaignRecord:
        """After a command on a campaign this process runs: in a cluster, its
        state is written again even if the command changed nothing here (a
        resume of a campaign another node just paused in the database would
        otherwise be undone at the next look)."""
        if self._leases.shared:
            now = self._clock.seconds()
            self._changed_at[run.campaign.id] = now
            await self.records.set_state(run.campaign.id, run.state, now)
        return run.campaign
