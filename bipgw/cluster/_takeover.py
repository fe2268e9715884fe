# -*- test-case-name: tests.unit.cluster.test_takeover,tests.integration.test_cluster_takeover -*-
"""A dead node's sessions: the queued ones taken over, the others ended C{node-lost}.

The node that wins a dead node (L{bipgw.cluster.NodeReaper}: one Lua script,
one winner) gets the ids of the sessions the dead node owned and had not
ended, and decides for each, from the registry (C{bipgw:session:ID}: its
state, card, service and the context of its open: tenant, application,
target) and the shared database (its row):

  - a session that had reached its card (C{connected} in either) cannot be
    moved: its card's TLS connection ended with the node.  It ends with
    C{node-lost};
  - a session still queued (not pushed yet, or pushed and waiting for its
    card) is I{taken over}: re-opened here under its own id
    (L{bipgw.core.reopen}), for the same card, service and tenant; it
    counts again in the tenant's cluster-wide limits, and is pushed again
    with a new OTA counter (allocated in the shared database, as every
    push's is), naming this node's admin address;
  - a queued session that cannot be taken over (no tenant kept: the
    gateway opened it itself; the tenant's grant changed; its limits are
    full; this node has no HTTP API to drive it through) ends with
    C{node-lost}, saying why.

Every outcome is published on the channel C{bipgw:cluster}
(L{ClusterEvents}) with the session's tenant: every live node tells that
tenant's event streams (C{GET /v1/events}) and its platform connections,
whatever node they are on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.cluster._recovery import end_sessions
from bipgw.cluster._redis import ClusterRedis
from bipgw.cluster._registry import KEEP_ENDED, decode_timeouts, session_key
from bipgw.core import FailureReason, Handover, ISharedLimits, SessionError, TenantGrant
from bipgw.store import IStore, SessionRecord

__all__ = ["CHANNEL", "ClusterEvent", "ClusterEvents", "SessionTakeover"]

CHANNEL: Final = "cluster"
"""The pub/sub channel (under the prefix) of the cluster's session events."""

NODE_LOST: Final = "node-lost"
TAKEN_OVER: Final = "taken-over"

_FIELDS: Final = ("state", "iccid", "service", "tenant", "app", "target", "timeouts")

# Per session: its registry fields, in _FIELDS' order ('' when absent).
_READ: Final = """
local out = {}
for _, key in ipairs(KEYS) do
  local values = redis.call('HMGET', key, unpack(ARGV))
  for i = 1, #ARGV do table.insert(out, values[i] or '') end
end
return out
"""

_FAILED: Final = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'state', 'failed')
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return 1
"""

_MOVED: Final = frozenset({"connected", "relaying", "closing", "closed", "failed"})
"""Row states of a session that is past the point where it can run again."""


@attrs.frozen
class ClusterEvent:
    """What became of a dead node's session, as every node hears it.

    @ivar kind: C{node-lost} (it ended) or C{taken-over} (it runs on C{owner}).
    @ivar session: its id.
    @ivar tenant: the tenant that opened it (C{""}: the gateway did).
    @ivar lost: the dead node.
    @ivar owner: the node that took it over (C{""} when it ended).
    @ivar detail: in words, for the platform.
    @ivar at: when (the deciding node's clock).
    """

    kind: str
    session: str
    tenant: str
    lost: str
    owner: str = ""
    detail: str = ""
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ClusterEvent | None:
        """The event C{text} carries; C{None} for anything else (logged by the caller)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("kind") not in (NODE_LOST, TAKEN_OVER):
                return None
            return cls(
                kind=data["kind"],
                session=str(data["session"]),
                tenant=str(data.get("tenant", "")),
                lost=str(data.get("lost", "")),
                owner=str(data.get("owner", "")),
                detail=str(data.get("detail", ""))[:1000],
                at=float(data.get("at", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            return None


Listener = Callable[[ClusterEvent], object]


class ClusterEvents:
    """The channel C{bipgw:cluster}: what became of dead nodes' sessions.

    @param redis: the node's Redis connections.
    """

    _log = Logger()

    def __init__(self, redis: ClusterRedis) -> None:
        self._redis = redis
        self._listeners: list[Listener] = []
        self.received = 0

    def start(self) -> None:
        """Hear the cluster's events from now on (and after a reconnection)."""
        self._redis.subscribe(CHANNEL, self._message)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call C{listener} with every event heard; returns a function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def publish(self, event: ClusterEvent) -> Deferred[Any]:
        """Tell every node (this one too) of C{event}; never fails (logged)."""
        d = self._redis.publish(CHANNEL, event.to_json())
        return d.addErrback(
            lambda f: self._log.warn(
                "cluster event for session {session} not published: {why}",
                session=event.session,
                why=f.getErrorMessage(),
            )
        )

    def _message(self, text: str) -> None:
        event = ClusterEvent.from_json(text)
        if event is None:
            self._log.warn("unreadable message on the cluster channel ignored")
            return
        self.received += 1
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self._log.failure("cluster event listener {l!r} failed", listener=listener)


Adopter = Callable[[Handover, TenantGrant, "str | None"], object]
"""Re-opens a handover here and relays it (the HTTP API's L{bipgw.web.HttpApi.adopt});
raises L{SessionError} when it cannot."""


@attrs.define
class _Found:
    session_id: str
    fields: dict[str, str]
    row: SessionRecord | None = None
    seq: int = 0


class SessionTakeover:
    """Decides, and does, what becomes of a dead node's sessions (module docstring).

    @param redis: this node's Redis connections.
    @param node: this node's name.
    @param store: the shared database.
    @param clock: the reactor.
    @param events: where the outcomes are published.
    @ivar adopter: re-opens a session here and relays it; C{None} (no HTTP
        API on this node): nothing is taken over.
    @ivar tenants: finds a tenant's grant by id; C{None}: nothing is taken over.
    @ivar limits: the cluster-wide tenant limits a taken-over session counts in.
    @ivar taken: the ids of the sessions this node took over.
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        store: IStore,
        clock: IReactorTime,
        events: ClusterEvents | None = None,
    ) -> None:
        self._redis = redis
        self.node = node
        self._store = store
        self._clock = clock
        self.events = events
        self.adopter: Adopter | None = None
        self.tenants: Callable[[str], Deferred[TenantGrant | None]] | None = None
        self.limits: ISharedLimits | None = None
        self.taken: list[str] = []

    def handle(self, dead: str, ids: list[str]) -> Deferred[int]:
        """Take over or end the sessions C{ids} of node C{dead}; fires with
        how many ended C{node-lost}."""
        if not ids:
            return succeed(0)
        d = self._redis.script(_READ, [session_key(i) for i in ids], list(_FIELDS))

        def read(raw: Any) -> list[_Found]:
            values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw or ()]
            n = len(_FIELDS)
            return [
                _Found(sid, dict(zip(_FIELDS, values[i * n : (i + 1) * n], strict=True)))
                for i, sid in enumerate(ids)
            ]

        def unread(failure: Failure) -> list[_Found]:
            self._log.warn(
                "the registry of node {dead}'s sessions cannot be read ({why}): they end",
                dead=dead,
                why=failure.getErrorMessage(),
            )
            return [_Found(sid, {}) for sid in ids]

        d.addCallbacks(read, unread)
        d.addCallback(self._rows)
        return d.addCallback(self._decide, dead)

    def _rows(self, found: list[_Found]) -> Deferred[list[_Found]]:
        def one(item: _Found) -> Deferred[None]:
            def got(row: SessionRecord | None) -> Deferred[None] | None:
                item.row = row
                if row is None or row.ended_at is not None:
                    return None
                # Its events here go on from the last its history recorded.
                events = self._store.session_events(item.session_id)
                return events.addCallbacks(numbered, lambda _: None)

            def numbered(events: list[Any]) -> None:
                item.seq = max((int(e.seq) for e in events), default=0)

            return self._store.get_session(item.session_id).addCallbacks(got, lambda _: None)

        done: Deferred[Any] = DeferredList([one(f) for f in found], consumeErrors=True)
        return done.addCallback(lambda _: found)

    def _decide(self, found: list[_Found], dead: str) -> Deferred[int]:
        work: list[Deferred[Any]] = []
        lost: list[tuple[_Found, str]] = []
        for item in found:
            if item.row is not None and item.row.ended_at is not None:
                continue  # it ended before the node died
            why = self._why_not(item)
            if why is None:
                work.append(self._take(item, dead))
            else:
                lost.append((item, why))
        work.append(self._lose(lost, dead))
        done: Deferred[Any] = DeferredList(work, consumeErrors=True)

        def counted(results: list[tuple[bool, Any]]) -> int:
            total = 0
            for ok, value in results:
                if not ok:
                    self._log.failure("taking over node {dead}'s sessions", value, dead=dead)
                elif isinstance(value, int):
                    total += value
            return total

        return done.addCallback(counted)

    def _why_not(self, item: _Found) -> str | None:
        """Why C{item} cannot be taken over; C{None} if it can."""
        state = item.fields.get("state", "")
        row = item.row
        if state != "requested" or (row is not None and row.state in _MOVED):
            return "the session had reached its card, whose connection ended with the node"
        if not item.fields.get("tenant"):
            return "no tenant opened it (the gateway did), so no platform would drive it"
        if self.adopter is None or self.tenants is None:
            return f"node {self.node} has no HTTP API to drive it through"
        if row is None:
            return "its row is not in the shared database"
        return None

    def _handover(self, item: _Found, dead: str) -> Handover:
        fields, row = item.fields, item.row
        assert row is not None
        return Handover(
            session_id=item.session_id,
            service=fields.get("service") or row.service,
            tenant_id=fields["tenant"],
            iccid=row.iccid or fields.get("iccid") or None,
            msisdn=None if row.iccid else row.msisdn,
            application=_unhex(fields.get("app", "")),
            target=_unhex(fields.get("target", "")),
            node=dead,
            timeouts=decode_timeouts(fields.get("timeouts", "")),
            waited=max(0.0, self._clock.seconds() - row.opened_at),
            seq=item.seq,
        )

    def _take(self, item: _Found, dead: str) -> Deferred[int]:
        handover = self._handover(item, dead)
        assert self.tenants is not None
        d = self.tenants(handover.tenant_id)

        def grant(tenant: TenantGrant | None) -> Deferred[Any]:
            service = None if tenant is None else tenant.services.get(handover.service)
            if self.limits is None or tenant is None or service is None:
                return succeed((tenant, None, None))
            reserved = self.limits.reserve(tenant, service)
            return reserved.addCallback(lambda out: (tenant, *out))

        def reserved(outcome: tuple[TenantGrant | None, str | None, str | None]) -> Any:
            tenant, token, refused = outcome
            if refused is not None:
                return self._lose([(item, f"taking it over: {refused}")], dead)
            assert self.adopter is not None
            try:
                self.adopter(handover, tenant, token)  # type: ignore[arg-type]
            except Exception as e:
                if token is not None and self.limits is not None:
                    self.limits.release(token)
                if isinstance(e, SessionError):
                    why = e.detail or e.reason.value
                else:
                    self._log.failure("taking over session {s} failed", s=item.session_id)
                    why = f"this node failed to re-open it ({type(e).__name__})"
                return self._lose([(item, f"taking it over: {why}")], dead)
            self.taken.append(item.session_id)
            self._log.info(
                "session {session} of lost node {dead} taken over by node {node}",
                session=item.session_id,
                dead=dead,
                node=self.node,
            )
            self._publish(
                ClusterEvent(
                    TAKEN_OVER,
                    item.session_id,
                    handover.tenant_id,
                    dead,
                    self.node,
                    f"node {dead} was lost; the session runs on node {self.node}",
                    self._clock.seconds(),
                )
            )
            return 0

        def failed(failure: Failure) -> Deferred[int]:
            why = failure.getErrorMessage() or type(failure.value).__name__
            return self._lose([(item, f"taking it over failed: {why}")], dead)

        return d.addCallback(grant).addCallback(reserved).addErrback(failed)

    def _lose(self, lost: list[tuple[_Found, str]], dead: str) -> Deferred[int]:
        """End C{lost} with C{node-lost}, each with its own detail."""
        if not lost:
            return succeed(0)
        now = self._clock.seconds()
        work = []
        for item, why in lost:
            detail = (
                f"node {dead} stopped answering (no heartbeat): {why}; ended by node {self.node}"
            )
            work.append(
                end_sessions(self._store, [item.session_id], FailureReason.NODE_LOST, detail, now)
            )
            self._publish(
                ClusterEvent(
                    NODE_LOST, item.session_id, item.fields.get("tenant", ""), dead, "", detail, now
                )
            )
        done: Deferred[Any] = DeferredList(work, consumeErrors=True)

        def ended(results: list[tuple[bool, Any]]) -> Deferred[int]:
            count = sum(v for ok, v in results if ok and isinstance(v, int))
            keys = [session_key(item.session_id) for item, _ in lost]
            d = self._redis.script(_FAILED, keys, [KEEP_ENDED])
            d.addErrback(
                lambda f: self._log.warn("registry not marked: {w}", w=f.getErrorMessage())
            )
            return d.addCallback(lambda _: count)

        return done.addCallback(ended)

    def _publish(self, event: ClusterEvent) -> None:
        if self.events is not None:
            self.events.publish(event)


def _unhex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text) if text else None
    except ValueError:
        return None
