# -*- test-case-name: tests.unit.app.test_campaigns -*-
"""The gateway's campaigns: created, run and watched inside the gateway process.

L{CampaignService} is the C{campaigns} part of the service tree.  It keeps
one L{bipgw.core.CampaignRun} (the pure scheduler) per campaign that is
running or paused, over the campaign store (L{bipgw.store.SqlCampaignStore},
beside the application database) and an L{EngineCardRunner}; the HTTP API
(C{/v1/campaigns}, L{bipgw.web}), and through it the SDK and C{bipgw
campaign}, call it with the tenant the request authenticated as.

When the gateway starts, every campaign found C{running} or C{paused} is
taken up again: the cards a dead gateway left C{running} end as
C{interrupted} (or, with an idempotent script, run again; see
C{docs/campaigns.md}), and the running ones go on where they stopped.

A campaign runs in one process at a time: the one holding its lease
(L{ICampaignLeases}; one gateway alone holds them all).  In a cluster,
every node looks every L{WATCH_EVERY} seconds for campaigns C{running} or
C{paused} that no node holds (their node died: its leases expired) and
takes them over as after a restart; and a pause, resume or cancel asked of
a node that does not run the campaign is written in the database, where
the node running it finds it at its next look.

A tenant sees and acts on its own campaigns only; a campaign may use only
the tenant's services, at most the tenant's (and the service's)
C{max_sessions} at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from bipgw.app._campaign_cards import check_script
from bipgw.app._campaign_leases import ICampaignEventBus, ICampaignLeases, LocalCampaignLeases
from bipgw.app._campaign_takeover import WATCH_EVERY, CampaignTakeover
from bipgw.core import (
    CampaignCard,
    CampaignError,
    CampaignEvent,
    CampaignRecord,
    CampaignRun,
    CampaignSpec,
    CampaignState,
    CampaignTarget,
    CardState,
    ICardRunner,
    RateLimitedLog,
    TenantGrant,
    check_variables,
    normalise_iccid,
    normalise_msisdn,
)
from bipgw.store import IStore, MemoryCampaignStore, SqlCampaignStore

__all__ = ["MAX_CARDS", "WATCH_EVERY", "CampaignService"]

MAX_CARDS: Final = 1_000_000
"""The most cards one campaign may target."""

Listener = Callable[[CampaignEvent], object]


def _cards(
    campaign_id: str, targets: Sequence[CampaignTarget], first: int, now: float
) -> list[CampaignCard]:
    cards = []
    for n, target in enumerate(targets):
        where = f"targets[{first + n}]"
        if (target.iccid is None) == (target.msisdn is None):
            raise CampaignError(f"{where}: give an iccid or an msisdn (one of them)")
        try:
            iccid = None if target.iccid is None else normalise_iccid(target.iccid)
            msisdn = None if target.msisdn is None else normalise_msisdn(target.msisdn)
        except ValueError as e:
            raise CampaignError(f"{where}: {e}") from None
        cards.append(
            CampaignCard(
                campaign_id=campaign_id,
                index=first + n,
                iccid=iccid,
                msisdn=msisdn,
                variables=check_variables(target.variables, where),
                updated_at=now,
            )
        )
    return cards


class CampaignService(CampaignTakeover, Service):
    """The campaigns of the gateway (module docstring).

    @param store: the application database (cards of a vendor batch are
        read from it).
    @param campaigns: the campaign store beside it.
    @param runner: tries one card.
    @param clock: the campaigns' time.
    @param new_id: makes campaign ids.
    @param leases: which campaigns this process runs (default: all of them).
    @param bus: the other processes' campaign events, and this one's to them.
    """

    name = "campaigns"
    _log = Logger()

    def __init__(
        self,
        store: IStore,
        campaigns: SqlCampaignStore | MemoryCampaignStore,
        runner: ICardRunner,
        clock: IReactorTime,
        *,
        new_id: Callable[[], str] = lambda: "c-" + secrets.token_urlsafe(12),
        leases: ICampaignLeases | None = None,
        bus: ICampaignEventBus | None = None,
    ) -> None:
        self._store = store
        self.records = campaigns
        self._runner = runner
        self._clock = clock
        self._new_id = new_id
        self._runs: dict[str, CampaignRun] = {}
        self._listeners: list[Listener] = []
        self._outcome: Failure | bool | None = None
        self._waiting: list[Deferred[None]] = []
        self._stopping = False
        self._ratelog = RateLimitedLog(Logger(namespace="bipgw.campaigns"), clock)
        self._leases: ICampaignLeases = leases or LocalCampaignLeases()
        self._bus = bus
        self._changed_at: dict[str, float] = {}
        self._watch = LoopingCall(self._look)
        self._watch.clock = clock

    # -- life ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._outcome = None
        self._leases.start(self._lease_lost)
        if self._bus is not None:
            self._bus.start(self._deliver)
        Deferred.fromCoroutine(self._take_up()).addBoth(self._taken_up)

    def _taken_up(self, outcome: Failure | None) -> None:
        self._outcome = outcome if isinstance(outcome, Failure) else True
        if self._leases.shared and not self._stopping and not self._watch.running:
            self._watch.start(WATCH_EVERY, now=False)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(None)

    def when_ready(self) -> Deferred[None]:
        """Fires once the campaigns left running or paused are taken up
        again (fails if the store could not be read)."""
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        if self._outcome is True:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    async def _take_up(self) -> None:
        found = await self.records.list_campaigns(
            states=[CampaignState.RUNNING, CampaignState.PAUSED]
        )
        for record in found:
            await self._adopt(record)

    def stopService(self) -> Deferred[None]:
        """Start no new card; the tries under way end with the engine's
        sessions (C{shutdown}) and are written before the store closes."""
        super().stopService()
        self._stopping = True
        if self._watch.running:
            self._watch.stop()
        self._leases.stop()
        if self._bus is not None:
            self._bus.stop()
        for run in self._runs.values():
            run.stop()
        self._ratelog.flush()
        return succeed(None)

    def flushed(self) -> Deferred[Any]:
        """Fires once every card outcome handed to the store is written."""
        return DeferredList([run.flushed() for run in self._runs.values()], consumeErrors=True)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every campaign's events; returns the unsubscribe call."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _deliver(self, event: CampaignEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self._log.failure("a campaign event listener failed")

    def _event(self, event: CampaignEvent) -> None:
        """An event of a campaign this process runs."""
        self._deliver(event)
        if self._bus is not None:
            self._bus.publish(event)
        if event.card is None:
            self._changed_at[event.campaign_id] = self._clock.seconds()
        if event.card is None and event.state.terminal:
            run = self._runs.get(event.campaign_id)
            if run is not None:
                run.when_done().addCallback(lambda _: self._ended(event.campaign_id))

    def _ended(self, campaign_id: str) -> None:
        self._runs.pop(campaign_id, None)
        self._changed_at.pop(campaign_id, None)
        self._leases.release(campaign_id)

    def _run_for(self, record: CampaignRecord) -> CampaignRun:
        run = self._runs.get(record.id)
        if run is None:
            run = CampaignRun(self._clock, self.records, self._runner, record, self._event)
            if self._stopping:  # made while the gateway stops: it starts nothing
                run.stop()
            self._runs[record.id] = run
        return run

    def run(self, campaign_id: str) -> CampaignRun | None:
        """The scheduler of a campaign running or paused in this process."""
        return self._runs.get(campaign_id)

    # -- what a tenant does ------------------------------------------------------------

    async def create(
        self,
        tenant: TenantGrant,
        spec: CampaignSpec,
        targets: Sequence[CampaignTarget] = (),
        *,
        batch: str | None = None,
        start: bool = False,
    ) -> CampaignRecord:
        """Define a campaign for C{tenant} (and start it if asked).

        @param targets: the cards, by ICCID or MSISDN, with their variables.
        @param batch: also every card of this vendor batch (by ICCID).
        @raise CampaignError: anything wrong, named (C{code} says how the
            API answers).
        """
        self._check_grant(tenant, spec)
        now = self._clock.seconds()
        campaign_id = self._new_id()
        cards = _cards(campaign_id, targets, 0, now)
        if batch is not None:
            cards += await self._batch(campaign_id, batch, len(cards), now)
        if len(cards) > MAX_CARDS:
            raise CampaignError(f"targets: more than {MAX_CARDS} cards")
        if not cards and batch is not None:
            raise CampaignError(f"batch {batch!r} has no card")
        check_script(spec.script, cards)
        record = CampaignRecord(campaign_id, spec, CampaignState.CREATED, now, now, len(cards))
        await self.records.create_campaign(record, cards)
        # A tenant may create campaigns at will: logged at a bounded rate.
        self._ratelog.emit(
            "campaign-created",
            LogLevel.info,
            "campaign {id} ({name}) created by tenant {tenant}: {n} cards, service {service}",
            id=campaign_id,
            name=spec.name,
            tenant=tenant.tenant_id,
            n=len(cards),
            service=spec.service,
        )
        if start:
            return await self.start(tenant, campaign_id)
        return record

    def _check_grant(self, tenant: TenantGrant, spec: CampaignSpec) -> None:
        if spec.tenant_id != tenant.tenant_id:
            raise CampaignError("a campaign is created for the tenant that asks")
        service = tenant.services.get(spec.service)
        if service is None:
            raise CampaignError(
                f"tenant {tenant.tenant_id} has no service {spec.service!r}",
                code="service-not-allowed",
            )
        most = min(tenant.max_sessions, service.max_sessions or tenant.max_sessions)
        if spec.pace.concurrency > most:
            raise CampaignError(
                f"pace.concurrency {spec.pace.concurrency} is more than the {most} sessions"
                f" tenant {tenant.tenant_id} may have open for service {spec.service}"
            )

    async def _batch(
        self, campaign_id: str, batch: str, first: int, now: float
    ) -> list[CampaignCard]:
        cards: list[CampaignCard] = []
        after: str | None = None
        while True:
            page = await self._store.list_cards(after=after, limit=1000, batch=batch)
            for card in page:
                cards.append(
                    CampaignCard(
                        campaign_id=campaign_id,
                        index=first + len(cards),
                        iccid=card.iccid,
                        updated_at=now,
                    )
                )
            if len(page) < 1000 or len(cards) > MAX_CARDS:
                return cards
            after = page[-1].iccid

    async def _own(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord:
        record = await self.records.get_campaign(campaign_id)
        if record is None or record.spec.tenant_id != tenant.tenant_id:
            raise CampaignError(
                f"no campaign {campaign_id} for this tenant", code="unknown-campaign"
            )
        run = self._runs.get(campaign_id)
        return run.campaign if run is not None else record

    async def add_targets(
        self, tenant: TenantGrant, campaign_id: str, targets: Sequence[CampaignTarget]
    ) -> CampaignRecord:
        """Append cards to a campaign not started yet."""
        record = await self._own(tenant, campaign_id)
        if record.state is not CampaignState.CREATED:
            raise CampaignError(
                f"campaign {campaign_id} is {record.state.value}: cards are added before it starts",
                code="campaign-state",
            )
        if record.cards + len(targets) > MAX_CARDS:
            raise CampaignError(f"targets: more than {MAX_CARDS} cards")
        cards = _cards(campaign_id, targets, record.cards, self._clock.seconds())
        check_script(record.spec.script, cards)
        total = await self.records.add_cards(campaign_id, cards)
        return attrs.evolve(record, cards=total)

    async def start(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord:
        """Start a created campaign (or resume a paused one)."""
        record = await self._own(tenant, campaign_id)
        if record.state is CampaignState.PAUSED:
            return await self.resume(tenant, campaign_id)
        if record.state is not CampaignState.CREATED:
            raise CampaignError(
                f"campaign {campaign_id} is {record.state.value}, not created",
                code="campaign-state",
            )
        self._check_grant(tenant, record.spec)
        if self._stopping:
            raise CampaignError("the gateway is stopping", code="unavailable")
        run = await self._local_run(record)
        if run is None:
            raise CampaignError(
                f"campaign {campaign_id} is being started on another node", code="campaign-state"
            )
        await run.start()
        return run.campaign

    async def pause(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord:
        """No new card starts; those running finish."""
        record = await self._own(tenant, campaign_id)
        if record.state not in (CampaignState.RUNNING, CampaignState.PAUSED):
            raise CampaignError(
                f"campaign {campaign_id} is {record.state.value}: only a running one pauses",
                code="campaign-state",
            )
        run = await self._local_run(record)
        if run is None:
            return await self._elsewhere(record, CampaignState.PAUSED)
        await run.pause()
        return await self._settled(run)

    async def resume(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord:
        """Start new cards again."""
        record = await self._own(tenant, campaign_id)
        if record.state not in (CampaignState.PAUSED, CampaignState.RUNNING):
            raise CampaignError(
                f"campaign {campaign_id} is {record.state.value}: only a paused one resumes",
                code="campaign-state",
            )
        run = await self._local_run(record)
        if run is None:
            return await self._elsewhere(record, CampaignState.RUNNING)
        await run.resume()
        return await self._settled(run)

    async def cancel(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord:
        """Stop for good: cards not started end as C{cancelled}."""
        record = await self._own(tenant, campaign_id)
        if record.state.terminal:
            raise CampaignError(
                f"campaign {campaign_id} is already {record.state.value}", code="campaign-state"
            )
        run = await self._local_run(record)
        if run is None:
            return await self._elsewhere(record, CampaignState.CANCELLED)
        await run.cancel()
        return await self._settled(run)

    async def status(
        self, tenant: TenantGrant, campaign_id: str
    ) -> tuple[CampaignRecord, dict[str, int], int]:
        """The campaign, its cards per state, and the tries under way here."""
        record = await self._own(tenant, campaign_id)
        counts = await self.records.card_counts(campaign_id)
        run = self._runs.get(campaign_id)
        full = {state.value: counts.get(state.value, 0) for state in CardState}
        return record, full, run.in_flight if run is not None else 0

    async def cards(
        self, tenant: TenantGrant, campaign_id: str, offset: int, limit: int
    ) -> list[CampaignCard]:
        """A page of the campaign's cards, in target order."""
        await self._own(tenant, campaign_id)
        return await self.records.list_cards(campaign_id, offset=offset, limit=limit)

    async def list(self, tenant: TenantGrant) -> list[CampaignRecord]:
        """The tenant's campaigns, oldest first."""
        found = await self.records.list_campaigns(tenant_id=tenant.tenant_id)
        return [self._runs[r.id].campaign if r.id in self._runs else r for r in found]
