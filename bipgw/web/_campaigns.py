# -*- test-case-name: tests.unit.web.test_campaigns -*-
"""C{/v1/campaigns}: a tenant's campaigns over the HTTP API.

The API reads and checks each request's JSON (every field named when it is
wrong, unknown fields refused), then calls the gateway's campaigns
(L{ICampaigns}, the C{campaigns} service of L{bipgw.app}) with the tenant
the bearer token authenticated: a tenant sees and acts on its own
campaigns only.

  - C{POST /v1/campaigns}: create (C{201}), optionally started at once;
  - C{GET /v1/campaigns}: the tenant's campaigns;
  - C{GET /v1/campaigns/{id}}: one, with its cards counted per state;
  - C{POST /v1/campaigns/{id}/targets}: add cards before it starts (large
    target lists are sent in several requests, each under C{max_body});
  - C{POST /v1/campaigns/{id}/start|pause|resume|cancel};
  - C{GET /v1/campaigns/{id}/cards?offset=N&limit=M}: the cards' states and
    results (R-APDUs, failure reasons), in target order;
  - C{GET /v1/campaigns/{id}/events}: Server-Sent Events, C{card} (a try
    started or ended) and C{campaign} (its state changed); the stream ends
    after the campaign's last event (completed or cancelled).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from bipgw.core import (
    CampaignCard,
    CampaignError,
    CampaignEvent,
    CampaignRecord,
    CampaignSpec,
    CampaignTarget,
    Pace,
    RetryPolicy,
    TenantGrant,
)
from bipgw.web._events import _Stream
from bipgw.web._json import ApiError, Reply

__all__ = ["CampaignApi", "CampaignStreams", "ICampaigns", "campaign_json", "card_json"]

_CREATE: Final = frozenset(
    {
        "name",
        "service",
        "script",
        "targets",
        "batch",
        "idempotent",
        "pace",
        "retry",
        "windows",
        "start",
    }
)
_PACE: Final = frozenset({"rate", "concurrency", "burst"})
_RETRY: Final = frozenset({"attempts", "backoff", "factor", "max_backoff", "give_up"})
_TARGET: Final = frozenset({"iccid", "msisdn", "variables"})
MAX_PAGE: Final = 1000


class ICampaigns(Protocol):
    """What the API asks of the gateway's campaigns (L{bipgw.app.CampaignService})."""

    async def create(
        self,
        tenant: TenantGrant,
        spec: CampaignSpec,
        targets: list[CampaignTarget],
        *,
        batch: str | None = None,
        start: bool = False,
    ) -> CampaignRecord: ...

    async def add_targets(
        self, tenant: TenantGrant, campaign_id: str, targets: list[CampaignTarget]
    ) -> CampaignRecord: ...

    async def start(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord: ...

    async def pause(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord: ...

    async def resume(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord: ...

    async def cancel(self, tenant: TenantGrant, campaign_id: str) -> CampaignRecord: ...

    async def status(
        self, tenant: TenantGrant, campaign_id: str
    ) -> tuple[CampaignRecord, dict[str, int], int]: ...

    async def cards(
        self, tenant: TenantGrant, campaign_id: str, offset: int, limit: int
    ) -> list[CampaignCard]: ...

    async def list(self, tenant: TenantGrant) -> list[CampaignRecord]: ...

    def subscribe(self, listener: Callable[[CampaignEvent], object]) -> Callable[[], None]: ...


def _invalid(field: str, why: str) -> ApiError:
    return ApiError("invalid-campaign", f"{field}: {why}")


def _only(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _invalid(where, "must be an object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _invalid(where, f"unknown field(s) {', '.join(map(repr, unknown))}")
    nulls = sorted(k for k, v in obj.items() if v is None)
    if nulls:
        prefix = "" if where == "body" else f"{where}."
        raise _invalid(f"{prefix}{nulls[0]}", "may not be null (leave it out)")
    return obj


def _text(obj: dict[str, Any], key: str, where: str, *, most: int, required: bool = True) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise _invalid(f"{where}{key}", "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{where}{key}", "must be a non-empty string")
    if len(value) > most:
        raise _invalid(f"{where}{key}", f"is longer than {most} characters")
    return value


def _bool(obj: dict[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise _invalid(key, "must be true or false")
    return value


_WHOLE: Final = frozenset({"concurrency", "burst", "attempts"})


def _number(obj: dict[str, Any], key: str, where: str) -> Any:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f"{where}{key}", "must be a number")
    if key in _WHOLE:
        if isinstance(value, float) and not value.is_integer():
            raise _invalid(f"{where}{key}", "must be a whole number")
        return int(value)
    return value


def parse_targets(value: Any, where: str = "targets") -> list[CampaignTarget]:
    """A JSON target list: ICCID strings, or objects C{{iccid|msisdn, variables}}."""
    if not isinstance(value, list):
        raise _invalid(where, "must be a list")
    if not value:
        raise _invalid(where, "give at least one card (or leave it out, with a batch)")
    targets = []
    for n, item in enumerate(value):
        here = f"{where}[{n}]"
        if isinstance(item, str):
            targets.append(CampaignTarget(iccid=item))
            continue
        item = _only(item, _TARGET, here)
        variables = item.get("variables", {})
        if not isinstance(variables, dict):
            raise _invalid(f"{here}.variables", "must be an object of NAME: hex")
        iccid, msisdn = item.get("iccid"), item.get("msisdn")
        for key, v in (("iccid", iccid), ("msisdn", msisdn)):
            if v is not None and not isinstance(v, str):
                raise _invalid(f"{here}.{key}", "must be a string")
        targets.append(CampaignTarget(iccid=iccid, msisdn=msisdn, variables=variables))
    return targets


def parse_create(
    body: dict[str, Any], tenant_id: str
) -> tuple[CampaignSpec, list[CampaignTarget], str | None, bool]:
    """The campaign a C{POST /v1/campaigns} body defines.

    @raise ApiError: C{invalid-campaign}, naming the field.
    """
    _only(body, _CREATE, "body")
    name = _text(body, "name", "", most=255)
    service = _text(body, "service", "", most=64)
    script = _text(body, "script", "", most=1 << 20)
    batch = _text(body, "batch", "", most=64, required=False)
    if "targets" not in body and batch is None:
        raise _invalid("targets", "give targets, a batch, or both")
    targets = parse_targets(body["targets"]) if "targets" in body else []
    try:
        pace_in = _only(body.get("pace", {}), _PACE, "pace")
        pace = Pace(**{k: _number(pace_in, k, "pace.") for k in pace_in})
        retry_in = _only(body.get("retry", {}), _RETRY, "retry")
        retry_args: dict[str, Any] = {
            k: _number(retry_in, k, "retry.") for k in retry_in if k != "give_up"
        }
        if "give_up" in retry_in:
            give_up = retry_in["give_up"]
            if not isinstance(give_up, list) or not all(isinstance(g, str) for g in give_up):
                raise _invalid("retry.give_up", "must be a list of failure reason codes")
            retry_args["give_up"] = frozenset(give_up)
        retry = RetryPolicy(**retry_args)
        windows = body.get("windows", [])
        if not isinstance(windows, list) or not all(isinstance(w, str) for w in windows):
            raise _invalid("windows", 'must be a list of "HH:MM-HH:MM" (UTC)')
        spec = CampaignSpec(
            name=name,
            tenant_id=tenant_id,
            service=service,
            script=script,
            idempotent=_bool(body, "idempotent"),
            pace=pace,
            retry=retry,
            windows=tuple(windows),
        )
    except CampaignError as e:
        raise ApiError("invalid-campaign", str(e)) from None
    return spec, targets, batch, _bool(body, "start")


def campaign_json(
    record: CampaignRecord, counts: dict[str, int] | None = None, in_flight: int | None = None
) -> dict[str, Any]:
    """A campaign as the API shows it."""
    spec = record.spec
    out: dict[str, Any] = {
        "campaign": record.id,
        "name": spec.name,
        "service": spec.service,
        "state": record.state.value,
        "cards": record.cards,
        **spec.policy_json(),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    if counts is not None:
        out["counts"] = counts
    if in_flight is not None:
        out["in_flight"] = in_flight
    return out


def card_json(card: CampaignCard) -> dict[str, Any]:
    """A campaign card as the API shows it."""
    out: dict[str, Any] = {
        "index": card.index,
        "iccid": card.iccid,
        "msisdn": card.msisdn,
        "state": card.state.value,
        "attempts": card.attempts,
        "reason": card.reason,
        "detail": card.detail,
        "rapdus": list(card.rapdus),
        "session": card.session,
        "updated_at": card.updated_at,
    }
    return {k: v for k, v in out.items() if v is not None}


def _refused(e: CampaignError) -> ApiError:
    return ApiError(e.code, str(e))


class CampaignApi:
    """Answers the campaign requests once routed (module docstring)."""

    def __init__(self, campaigns: ICampaigns, streams: CampaignStreams) -> None:
        self.campaigns = campaigns
        self.streams = streams

    async def create(self, tenant: TenantGrant, body: dict[str, Any]) -> Reply:
        spec, targets, batch, start = parse_create(body, tenant.tenant_id)
        try:
            record = await self.campaigns.create(tenant, spec, targets, batch=batch, start=start)
        except CampaignError as e:
            raise _refused(e) from None
        return Reply(201, campaign_json(record), (("Location", f"/v1/campaigns/{record.id}"),))

    async def add_targets(
        self, tenant: TenantGrant, campaign_id: str, body: dict[str, Any]
    ) -> Reply:
        _only(body, frozenset({"targets"}), "body")
        if "targets" not in body:
            raise _invalid("targets", "is required")
        targets = parse_targets(body["targets"])
        try:
            record = await self.campaigns.add_targets(tenant, campaign_id, targets)
        except CampaignError as e:
            raise _refused(e) from None
        return Reply(200, campaign_json(record))

    async def act(self, tenant: TenantGrant, campaign_id: str, action: str) -> Reply:
        do = {
            "start": self.campaigns.start,
            "pause": self.campaigns.pause,
            "resume": self.campaigns.resume,
            "cancel": self.campaigns.cancel,
        }[action]
        try:
            record = await do(tenant, campaign_id)
        except CampaignError as e:
            raise _refused(e) from None
        return Reply(200, campaign_json(record))

    async def status(self, tenant: TenantGrant, campaign_id: str) -> Reply:
        try:
            record, counts, in_flight = await self.campaigns.status(tenant, campaign_id)
        except CampaignError as e:
            raise _refused(e) from None
        return Reply(200, campaign_json(record, counts, in_flight))

    async def list(self, tenant: TenantGrant) -> Reply:
        found = await self.campaigns.list(tenant)
        return Reply(200, {"campaigns": [campaign_json(r) for r in found]})

    async def cards(
        self, tenant: TenantGrant, campaign_id: str, offset: str | None, limit: str | None
    ) -> Reply:
        first = _whole(offset, "offset", 0)
        most = _whole(limit, "limit", 100)
        if not 1 <= most <= MAX_PAGE:
            raise ApiError("invalid-campaign", f"limit: from 1 to {MAX_PAGE}")
        try:
            cards = await self.campaigns.cards(tenant, campaign_id, first, most)
        except CampaignError as e:
            raise _refused(e) from None
        out: dict[str, Any] = {"cards": [card_json(c) for c in cards]}
        if len(cards) == most:
            out["next_offset"] = cards[-1].index + 1
        return Reply(200, out)

    async def events(self, tenant: TenantGrant, campaign_id: str, request: Request) -> None:
        try:
            record, _, _ = await self.campaigns.status(tenant, campaign_id)
        except CampaignError as e:
            raise _refused(e) from None
        self.streams.start(request, campaign_id)
        if record.state.terminal:  # nothing more will happen: say how it ended
            self.streams.deliver(CampaignEvent(campaign_id, record.state))


def _whole(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or len(value) > 9:
        raise ApiError("invalid-campaign", f"{name}: a whole number >= 0, not {value[:20]!r}")
    return int(value)


def event_frame(event: CampaignEvent) -> bytes:
    """One campaign event as an SSE frame (C{event: card} or C{event: campaign})."""
    if event.card is not None:
        data = {"campaign": event.campaign_id, "campaign_state": event.state.value}
        data.update(card_json(event.card))
        kind = "card"
    else:
        data = {"campaign": event.campaign_id, "state": event.state.value}
        kind = "campaign"
    text = json.dumps(data, separators=(",", ":"))
    return f"event: {kind}\ndata: {text}\n\n".encode()


class CampaignStreams:
    """The open campaign event streams, fed from one subscription to the campaigns.

    Each stream carries one campaign's events (its owner was checked when it
    opened); a client that does not read is cut off past C{buffer} bytes,
    as for the session events (L{bipgw.web._events}).
    """

    def __init__(
        self,
        subscribe: Callable[[Callable[[CampaignEvent], object]], Callable[[], None]],
        clock: IReactorTime,
        keepalive: float,
        buffer: int,
    ) -> None:
        self._subscribe = subscribe
        self._clock = clock
        self._keepalive = keepalive
        self._buffer = buffer
        self._streams: list[tuple[str, _Stream]] = []
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def count(self) -> int:
        return len(self._streams)

    def start(self, request: Request, campaign_id: str) -> None:
        request.setResponseCode(200)
        request.setHeader("Content-Type", "text/event-stream; charset=utf-8")
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("X-Accel-Buffering", "no")
        stream = _Stream(request, "", campaign_id, self._buffer)
        request.registerProducer(stream, True)
        self._streams.append((campaign_id, stream))
        if self._unsubscribe is None:
            self._unsubscribe = self._subscribe(self._event)
        request.write(b"retry: 5000\n: events of the campaign follow\n\n")
        stream.timer = self._clock.callLater(self._keepalive, self._ping, stream)
        request.notifyFinish().addBoth(lambda _: self._drop(stream))

    def stop(self) -> None:
        for _, stream in list(self._streams):
            self._drop(stream)
            if not stream.dropped:
                stream.request.unregisterProducer()
                stream.request.finish()

    def deliver(self, event: CampaignEvent) -> None:
        """Send C{event} to its campaign's streams; after a campaign's last
        event (completed or cancelled) its streams end."""
        self._event(event)

    def _event(self, event: CampaignEvent) -> None:
        frame = None
        last = event.card is None and event.state.terminal
        for campaign_id, stream in list(self._streams):
            if campaign_id != event.campaign_id:
                continue
            frame = frame or event_frame(event)
            stream.send(frame)
            if last:
                self._drop(stream)
                if not stream.dropped:
                    stream.request.unregisterProducer()
                    stream.request.finish()
            elif stream.timer is not None and stream.timer.active():
                stream.timer.reset(self._keepalive)

    def _ping(self, stream: _Stream) -> None:
        stream.timer = self._clock.callLater(self._keepalive, self._ping, stream)
        stream.send(b": keepalive\n\n")

    def _drop(self, stream: _Stream) -> None:
        kept = [(c, s) for c, s in self._streams if s is not stream]
        if len(kept) == len(self._streams):
            return
        self._streams = kept
        if stream.timer is not None and stream.timer.active():
            stream.timer.cancel()
        stream.timer = None
        if not self._streams and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
