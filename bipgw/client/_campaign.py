# -*- test-case-name: tests.unit.client.test_campaign -*-
"""The SDK's campaigns: one script on many cards, run by the gateway.

A platform defines a campaign (a script, the cards, a pace, a retry policy,
time windows) with L{CampaignClient.campaign}; the gateway runs it, keeps
every card's state and result, and goes on after a restart.  The platform
watches it (L{CampaignClient.status}, L{CampaignClient.events},
L{CampaignClient.wait}), steers it (start, pause, resume, cancel) and reads
the per-card results (L{CampaignClient.all_cards}, L{write_csv},
L{write_json}).  It talks to the gateway's HTTP API (C{/v1/campaigns},
C{docs/http-api.md}) with the tenant's bearer token, over treq.

Every call returns a C{Deferred}; a refusal fails with L{CampaignApiError}
carrying the API's C{code} and message.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, Final

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from bipgw.errors import BipGwError

__all__ = [
    "CARD_COLUMNS",
    "TERMINAL_STATES",
    "CampaignApiError",
    "CampaignClient",
    "campaign_client",
    "read_targets",
    "write_csv",
    "write_json",
]

TERMINAL_STATES: Final = frozenset({"completed", "cancelled"})
"""The states a campaign does not leave."""
CARD_COLUMNS: Final = (
    "index",
    "iccid",
    "msisdn",
    "state",
    "attempts",
    "reason",
    "detail",
    "session",
    "rapdus",
    "updated_at",
)
"""The columns of L{write_csv}, in order (C{rapdus} space-separated hex)."""
_CHUNK: Final = 48_000
"""Target list bytes per request (under the API's default 64 KiB body limit)."""


class CampaignApiError(BipGwError):
    """The gateway refused a campaign request.

    @ivar code: the API's error code (C{invalid-campaign}, C{unknown-campaign} ...).
    @ivar status: the HTTP status.
    """

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def read_targets(lines: Iterable[str], where: str = "targets") -> list[dict[str, Any]]:
    """A target file: one ICCID a line, or CSV with a header.

    The CSV form names an C{ICCID} or C{MSISDN} column; every other column
    is a script variable of that card (hex).  Blank lines and lines
    starting with C{#} are skipped.

    @raise ValueError: a line that cannot be read, naming its number.
    """
    rows = [(n, line.strip()) for n, line in enumerate(lines, 1)]
    rows = [(n, line) for n, line in rows if line and not line.startswith("#")]
    if not rows:
        return []
    first = rows[0][1]
    if "," not in first and first.replace(" ", "").isdigit():
        targets = []
        for n, line in rows:
            if not line.isdigit():
                raise ValueError(f"{where}:{n}: {line[:40]!r} is not an ICCID")
            targets.append({"iccid": line})
        return targets
    header = [h.strip() for h in next(csv.reader([first]))]
    upper = [h.upper() for h in header]
    if "ICCID" not in upper and "MSISDN" not in upper:
        raise ValueError(f"{where}:{rows[0][0]}: the header names no ICCID or MSISDN column")
    targets = []
    for n, line in rows[1:]:
        values = [v.strip() for v in next(csv.reader([line]))]
        if len(values) != len(header):
            raise ValueError(f"{where}:{n}: {len(values)} fields, the header has {len(header)}")
        target: dict[str, Any] = {}
        variables = {}
        for name, key, value in zip(header, upper, values, strict=True):
            if key in ("ICCID", "MSISDN") and value:
                target.setdefault(key.lower(), value)
            elif key not in ("ICCID", "MSISDN"):
                variables[name] = value
        if "iccid" in target and "msisdn" in target:
            del target["msisdn"]
        if not target:
            raise ValueError(f"{where}:{n}: no ICCID or MSISDN")
        if variables:
            target["variables"] = variables
        targets.append(target)
    return targets


def _chunks(targets: Sequence[Any]) -> list[list[Any]]:
    chunks: list[list[Any]] = [[]]
    size = 0
    for target in targets:
        length = len(json.dumps(target)) + 1
        if chunks[-1] and size + length > _CHUNK:
            chunks.append([])
            size = 0
        chunks[-1].append(target)
        size += length
    return chunks


class CampaignClient:
    """A tenant's campaigns on one gateway's HTTP API.

    @param base_url: the API's base (C{https://gw.example:8443}).
    @param token: the tenant's API token.
    @param http: the treq client to use (by default one over an C{Agent}
        of C{reactor}, with a persistent connection pool).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        reactor: Any = None,
        http: HTTPClient | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._base = base_url.rstrip("/")
        self._headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }
        self._reactor = reactor
        if http is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            http = HTTPClient(Agent(reactor, pool=pool))
            self._pool: HTTPConnectionPool | None = pool
        else:
            self._pool = None
        self._http = http

    def close(self) -> Deferred[None]:
        """Close the connections the client keeps open."""
        if self._pool is None:
            return Deferred.fromCoroutine(_nothing())
        return self._pool.closeCachedConnections()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        response = await self._http.request(
            method, self._base + path, headers=self._headers, data=data
        )
        content = await treq.content(response)
        try:
            answer = json.loads(content) if content else {}
        except ValueError:
            answer = {}
        if response.code >= 300:
            raise CampaignApiError(
                str(answer.get("code", "http-error")),
                str(answer.get("message", content[:200].decode("utf-8", "replace"))),
                response.code,
            )
        return answer

    def campaign(
        self,
        *,
        name: str,
        service: str,
        script: str,
        targets: Sequence[str | Mapping[str, Any]] = (),
        batch: str | None = None,
        idempotent: bool = False,
        rate: float | None = None,
        concurrency: int | None = None,
        burst: int | None = None,
        attempts: int | None = None,
        backoff: float | None = None,
        factor: float | None = None,
        max_backoff: float | None = None,
        give_up: Iterable[str] | None = None,
        windows: Iterable[str] = (),
        start: bool = False,
    ) -> Deferred[dict[str, Any]]:
        """Define a campaign (and start it if C{start}); fires with it (C{campaign} is its id).

        @param script: the text of an APDU script (C{docs/apdu-scripts.md};
            per-card variables C{${ICCID}}, C{${MSISDN}} and the target
            columns; no C{include}).
        @param targets: ICCIDs, or C{{"iccid"|"msisdn": ..., "variables": {...}}}
            (L{read_targets} reads a file into this form).  A long list is
            sent in several requests.
        @param batch: also every card of this vendor batch.
        @param windows: C{"HH:MM-HH:MM"} UTC times when new cards may start.
        """
        pace = {
            k: v
            for k, v in (("rate", rate), ("concurrency", concurrency), ("burst", burst))
            if v is not None
        }
        retry: dict[str, Any] = {
            k: v
            for k, v in (
                ("attempts", attempts),
                ("backoff", backoff),
                ("factor", factor),
                ("max_backoff", max_backoff),
            )
            if v is not None
        }
        if give_up is not None:
            retry["give_up"] = sorted(give_up)
        chunks = _chunks(list(targets))
        body: dict[str, Any] = {
            "name": name,
            "service": service,
            "script": script,
            "targets": chunks[0],
            "idempotent": idempotent,
            "windows": list(windows),
            "start": start and len(chunks) == 1,
        }
        if batch is not None:
            body["batch"] = batch
        if pace:
            body["pace"] = pace
        if retry:
            body["retry"] = retry

        async def create() -> dict[str, Any]:
            made: dict[str, Any] = await self._call("POST", "/v1/campaigns", body)
            for chunk in chunks[1:]:
                made = await self._call(
                    "POST", f"/v1/campaigns/{made['campaign']}/targets", {"targets": chunk}
                )
            if start and len(chunks) > 1:
                made = await self._call("POST", f"/v1/campaigns/{made['campaign']}/start")
            return made

        return Deferred.fromCoroutine(create())

    def status(self, campaign_id: str) -> Deferred[dict[str, Any]]:
        """The campaign, with C{counts} (cards per state) and C{in_flight}."""
        return Deferred.fromCoroutine(self._call("GET", f"/v1/campaigns/{campaign_id}"))

    def campaigns(self) -> Deferred[list[dict[str, Any]]]:
        """The tenant's campaigns."""

        async def listing() -> list[dict[str, Any]]:
            found = await self._call("GET", "/v1/campaigns")
            return list(found["campaigns"])

        return Deferred.fromCoroutine(listing())

    def _act(self, campaign_id: str, action: str) -> Deferred[dict[str, Any]]:
        return Deferred.fromCoroutine(self._call("POST", f"/v1/campaigns/{campaign_id}/{action}"))

    def start(self, campaign_id: str) -> Deferred[dict[str, Any]]:
        """Start a created campaign (or resume a paused one)."""
        return self._act(campaign_id, "start")

    def pause(self, campaign_id: str) -> Deferred[dict[str, Any]]:
        """Start no new card; those running finish."""
        return self._act(campaign_id, "pause")

    def resume(self, campaign_id: str) -> Deferred[dict[str, Any]]:
        """Start new cards again."""
        return self._act(campaign_id, "resume")

    def cancel(self, campaign_id: str) -> Deferred[dict[str, Any]]:
        """Stop for good; cards not started end as C{cancelled}."""
        return self._act(campaign_id, "cancel")

    def cards(
        self, campaign_id: str, offset: int = 0, limit: int = 1000
    ) -> Deferred[dict[str, Any]]:
        """A page of cards: C{{cards: [...], next_offset?}}."""
        path = f"/v1/campaigns/{campaign_id}/cards?offset={int(offset)}&limit={int(limit)}"
        return Deferred.fromCoroutine(self._call("GET", path))

    def all_cards(self, campaign_id: str) -> Deferred[list[dict[str, Any]]]:
        """Every card with its state and result, in target order."""

        async def pages() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            offset: int | None = 0
            while offset is not None:
                page = await self.cards(campaign_id, offset)
                found.extend(page["cards"])
                offset = page.get("next_offset")
            return found

        return Deferred.fromCoroutine(pages())

    def wait(
        self,
        campaign_id: str,
        *,
        every: float = 1.0,
        progress: Callable[[dict[str, Any]], object] | None = None,
    ) -> Deferred[dict[str, Any]]:
        """Poll until the campaign is completed or cancelled; fires with its last status.

        @param progress: called with each status polled.
        """
        from twisted.internet.task import deferLater

        async def polling() -> dict[str, Any]:
            while True:
                status = await self.status(campaign_id)
                if progress is not None:
                    progress(status)
                if status["state"] in TERMINAL_STATES:
                    return status
                await deferLater(self._reactor, every, lambda: None)

        return Deferred.fromCoroutine(polling())

    def events(
        self, campaign_id: str, on_event: Callable[[str, dict[str, Any]], object]
    ) -> Deferred[None]:
        """Follow the campaign's Server-Sent Events: C{on_event(kind, data)} for
        each (C{card} or C{campaign}); fires when the stream ends, which the
        gateway does once the campaign is completed or cancelled (cancel the
        Deferred to stop earlier)."""
        buffer = bytearray()

        def collect(data: bytes) -> None:
            buffer.extend(data)
            while b"\n\n" in buffer:
                end = buffer.index(b"\n\n")
                frame = bytes(buffer[:end]).decode("utf-8", "replace")
                del buffer[: end + 2]
                kind, payload = "message", ""
                for line in frame.split("\n"):
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        payload += line[5:].strip()
                if payload:
                    on_event(kind, json.loads(payload))

        reading: list[_EventReader] = []

        async def follow() -> None:
            headers: dict[bytes | str, bytes | str] = dict(self._headers)
            headers["Accept"] = "text/event-stream"
            headers["Connection"] = "close"  # a stream's connection is never reused
            response = await self._http.get(
                f"{self._base}/v1/campaigns/{campaign_id}/events", headers=headers, unbuffered=True
            )
            if response.code >= 300:
                content = await treq.content(response)
                answer = json.loads(content) if content else {}
                raise CampaignApiError(
                    answer.get("code", "http-error"), answer.get("message", ""), response.code
                )
            reader = _EventReader(collect)
            reading.append(reader)
            response.deliverBody(reader)
            if stopped:
                reader.abort()
            await reader.done

        stopped: list[bool] = []

        def stop(_: Deferred[None]) -> None:
            stopped.append(True)
            for reader in reading:
                reader.abort()

        followed: Deferred[None] = Deferred(stop)
        Deferred.fromCoroutine(follow()).chainDeferred(followed)
        return followed


class _EventReader(Protocol):
    """Reads an event stream's body into C{collect}; C{abort} drops the connection."""

    def __init__(self, collect: Callable[[bytes], None]) -> None:
        self._collect = collect
        self.done: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self._collect(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


async def _nothing() -> None:
    return None


def campaign_client(base_url: str, token: str, *, reactor: Any = None) -> CampaignClient:
    """A L{CampaignClient} for the HTTP API at C{base_url}, as tenant C{token}."""
    return CampaignClient(base_url, token, reactor=reactor)


def write_json(cards: Sequence[Mapping[str, Any]], out: IO[str]) -> None:
    """The cards' results as one JSON array."""
    json.dump(list(cards), out, indent=1)
    out.write("\n")


def write_csv(cards: Sequence[Mapping[str, Any]], out: IO[str]) -> None:
    """The cards' results as CSV with the header L{CARD_COLUMNS}."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CARD_COLUMNS)
    for card in cards:
        row = []
        for column in CARD_COLUMNS:
            value = card.get(column)
            if column == "rapdus":
                value = " ".join(value or [])
            row.append("" if value is None else value)
        writer.writerow(row)
