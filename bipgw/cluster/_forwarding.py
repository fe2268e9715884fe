# -*- test-case-name: tests.integration.test_cluster_forwarding -*-
"""A door's request for a session another node holds: forwarded to it over Redis.

Any node answers the HTTP API and the platform channel for any session
(docs/cluster.md, "Any node drives any session").  A door whose relay does
not hold the session asks L{SessionForwarding} (the core's
L{bipgw.core.IRemoteSessions}): it reads the session's owner in the
registry (C{bipgw:session:ID}) and publishes the request, with the asking
tenant's grant, on the owner's channel C{bipgw:fwd:OWNER}.  The owner runs
it with L{bipgw.core.OwnedSessions} (the session must be that tenant's;
its grant, its limits and what the command reaches are checked there) and
publishes the answer on the asker's channel.  When a session ends, the
owner tells every node that drove it (C{end}), and those nodes' doors send
their platforms its C{notification}.

Bounded: at most L{MAX_PENDING} requests wait for answers; each waits
L{FORWARD_TIMEOUT} seconds at most (plus a command's C{ready_wait});
an owner that is not listening fails the request at once, and one found
dead (no heartbeat for L{bipgw.cluster.NODE_TIMEOUT} s, checked every
L{CHECK_EVERY} s while requests wait or sessions are watched) fails them
at once too, and ends its watched sessions with C{node-lost}.  Every
failure is answered C{unavailable}, naming the owner.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.cluster._nodes import NODE_TIMEOUT, NODES
from bipgw.cluster._redis import ClusterRedis
from bipgw.cluster._registry import FLUSH_EVERY, session_key
from bipgw.codec.platform import (
    SERVER_MESSAGES,
    Close,
    Command,
    ErrorMessage,
    Message,
    MessageError,
    Notification,
    Status,
    parse_message,
)
from bipgw.core import (
    FailureReason,
    Forwarded,
    OwnedSessions,
    RateLimitedLog,
    RemoteUnavailableError,
    SessionEngine,
    SessionEvent,
    TenantGrant,
    grant_from_json,
    grant_to_json,
    notification_for,
)

__all__ = ["CHECK_EVERY", "FORWARD_TIMEOUT", "MAX_PENDING", "SessionForwarding"]

FORWARD_TIMEOUT: Final = 300.0
"""Seconds a forwarded request waits for its owner's answer (plus its C{ready_wait})."""
MAX_PENDING: Final = 10_000
"""Forwarded requests one node may have waiting for answers."""
MAX_WATCHERS: Final = 64
"""Nodes told of one session's end."""
CHECK_EVERY: Final = 2.0
"""Seconds between two checks that the nodes asked are alive."""

_REQUESTS: Final = (Command, Close, Status)
_TERMINAL: Final = frozenset({"closed", "failed"})

# ARGV: node timeout (ms), then node names; returns the names of the dead ones.
_DEAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 2, #ARGV do
  local beat = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not beat or tonumber(beat) < now - tonumber(ARGV[1]) then
    table.insert(out, ARGV[i])
  end
end
return out
"""


class _NotListeningError(RemoteUnavailableError):
    """No node listens on the owner's channel (it died, or is restarting)."""


def _channel(node: str) -> str:
    return f"fwd:{node}"


class SessionForwarding:
    """The core's L{bipgw.core.IRemoteSessions} over Redis (module docstring).

    @param redis: this node's Redis connections.
    @param node: this node's name.
    @param owned: runs the requests for this node's sessions.
    @param engine: this node's engine (its sessions' ends are told to the
        nodes that drove them).
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        owned: OwnedSessions,
        engine: SessionEngine,
        clock: IReactorTime,
        *,
        timeout: float = FORWARD_TIMEOUT,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._redis = redis
        self.node = node
        self._owned = owned
        self._engine = engine
        self._clock = clock
        self._timeout = timeout
        self._max_pending = max_pending
        self._ids = (f"{n:x}" for n in itertools.count(1))
        self._pending: dict[str, tuple[str, Deferred[Message | None]]] = {}
        self._listeners: dict[str, list[Callable[[Notification], object]]] = {}
        self._watched_on: dict[str, str] = {}  # watched session -> the node holding it
        self._seen: OrderedDict[str, str] = OrderedDict()  # session -> its node, lately
        self._watchers: dict[str, set[str]] = {}  # this node's session -> nodes
        self._unsubscribe: Callable[[], None] | None = None
        self._checking = LoopingCall(self.check_nodes)
        self._checking.clock = clock
        self._ratelog = RateLimitedLog(self._log, clock)
        self.forwarded = 0
        self.served = 0

    def start(self) -> None:
        """Serve the other nodes' requests, and receive their answers."""
        self._redis.subscribe(_channel(self.node), self._message)
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._event)

    def stop(self) -> None:
        """Fail what waits (this node is leaving), stop serving."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._checking.running:
            self._checking.stop()
        for rid in list(self._pending):
            self._fail(rid, "this node is stopping")

    @property
    def pending(self) -> int:
        """Forwarded requests waiting for their answers."""
        return len(self._pending)

    # -- asking (bipgw.core.IRemoteSessions) -----------------------------------

    def forward(
        self, tenant: TenantGrant, request: Forwarded, ready_wait: float = 0.0
    ) -> Deferred[Message | None]:
        """See L{bipgw.core.IRemoteSessions.forward}.

        A command for a session this node forwarded to lately goes to the same
        node without reading the registry again; if that node no longer listens
        (it died, its session was taken over) or no longer holds the session,
        the registry is read (now, or for the next request).
        """
        sid = request.session
        node = self._seen.get(sid) if isinstance(request, Command) else None
        if node is None or node == self.node:
            return self._owner(sid).addCallback(self._forward_to, tenant, request, ready_wait)

        def again(failure: Failure) -> Deferred[Message | None]:
            failure.trap(_NotListeningError)
            self._seen.pop(sid, None)
            return self._owner(sid).addCallback(self._forward_to, tenant, request, ready_wait)

        def checked(answer: Message | None) -> Message | None:
            if isinstance(answer, ErrorMessage) and answer.code == "unknown-session":
                self._seen.pop(sid, None)
            return answer

        d = self._forward_to((node, ""), tenant, request, ready_wait)
        return d.addErrback(again).addCallback(checked)

    def _owner(self, session: str, again: bool = True) -> Deferred[tuple[str, str] | None]:
        """The session's C{(node, state)} in the registry; looked for twice, since
        a session opened a moment ago is written there within FLUSH_EVERY."""

        def read(values: Any) -> Any:
            items = [v.decode() if isinstance(v, bytes) else str(v) for v in values or ()]
            entry = dict(zip(items[::2], items[1::2], strict=False))
            if "node" in entry:
                return entry["node"], entry.get("state", "")
            if not again:
                return None
            wait = deferLater(self._clock, FLUSH_EVERY * 5, lambda: None)
            return wait.addCallback(lambda _: self._owner(session, again=False))

        d = self._redis.call("HGETALL", session_key(session))
        d.addCallbacks(read, self._redis_failed)
        return d

    def _redis_failed(self, failure: Failure) -> None:
        why = failure.getErrorMessage() or type(failure.value).__name__
        raise RemoteUnavailableError(f"the cluster's session registry cannot be read ({why})")

    def _forward_to(
        self,
        owner: tuple[str, str] | None,
        tenant: TenantGrant,
        request: Forwarded,
        ready_wait: float,
    ) -> Deferred[Message | None]:
        if owner is None:
            return succeed(None)
        node, state = owner
        if isinstance(request, Status) and node == self.node:
            return succeed(None)  # the engine (or the recorded history) answers
        if node == self.node:
            return self._owned.handle(tenant, request, ready_wait).addCallback(_maybe)
        if len(self._pending) >= self._max_pending:
            raise RemoteUnavailableError(
                f"{len(self._pending)} requests already wait for other nodes (the limit)"
            )
        rid = next(self._ids)
        answer: Deferred[Message | None] = Deferred()
        self._pending[rid] = (node, answer)
        self.forwarded += 1
        self._seen[request.session] = node
        self._seen.move_to_end(request.session)
        while len(self._seen) > self._max_pending:
            self._seen.popitem(last=False)
        timer = self._clock.callLater(
            self._timeout + ready_wait,
            self._fail,
            rid,
            f"node {node}, which holds the session, did not answer within"
            f" {self._timeout + ready_wait:g} s",
        )

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            self._pending.pop(rid, None)
            return result

        answer.addBoth(done)
        message = {
            "op": "req",
            "id": rid,
            "from": self.node,
            "grant": grant_to_json(tenant),
            "request": request.to_json(),
            "wait": ready_wait,
        }

        def sent(receivers: Any) -> None:
            if int(receivers) == 0:
                if isinstance(request, Status):
                    self._settle(rid, None)  # the recorded history answers
                elif state in _TERMINAL:
                    self._settle(rid, _ended(request, state))
                else:
                    why = f"node {node}, which holds the session, is not reachable"
                    self._fail(rid, why, _NotListeningError)

        def not_sent(failure: Failure) -> None:
            why = failure.getErrorMessage() or type(failure.value).__name__
            self._fail(rid, f"the request could not be sent to node {node} ({why})")

        self._redis.publish(_channel(node), json.dumps(message)).addCallbacks(sent, not_sent)
        if not self._checking.running:
            self._checking.start(CHECK_EVERY, now=False)
        return answer

    def _settle(self, rid: str, message: Message | None) -> None:
        pending = self._pending.get(rid)
        if pending is not None and not pending[1].called:
            pending[1].callback(message)

    def _fail(
        self, rid: str, why: str, kind: type[RemoteUnavailableError] = RemoteUnavailableError
    ) -> None:
        pending = self._pending.get(rid)
        if pending is not None and not pending[1].called:
            pending[1].errback(kind(why))

    def watch(self, session: str, listener: Callable[[Notification], object]) -> Callable[[], None]:
        """See L{bipgw.core.IRemoteSessions.watch}."""
        listeners = self._listeners.setdefault(session, [])
        listeners.append(listener)
        node = self._seen.get(session)
        if node is not None:
            self._watched_on[session] = node
        if not self._checking.running:
            self._checking.start(CHECK_EVERY, now=False)

        def stop() -> None:
            if listener in listeners:
                listeners.remove(listener)
            if not listeners and self._listeners.get(session) is listeners:
                del self._listeners[session]
                self._watched_on.pop(session, None)

        return stop

    def _ended_there(self, note: Notification) -> None:
        self._watched_on.pop(note.session, None)
        for listener in self._listeners.pop(note.session, []):
            try:
                listener(note)
            except Exception:
                self._log.failure("a session's end listener failed")

    # -- the nodes asked: alive? -------------------------------------------------

    def check_nodes(self) -> Deferred[Any]:
        """Fail the requests waiting for dead nodes, and end their watched
        sessions with C{node-lost}; stop checking once nothing waits."""
        nodes = {node for node, _ in self._pending.values()}
        nodes.update(self._watched_on[s] for s in self._listeners if s in self._watched_on)
        if not nodes:
            if self._checking.running:
                self._checking.stop()
            return succeed(None)
        d = self._redis.script(_DEAD, [NODES], [int(NODE_TIMEOUT * 1000), *sorted(nodes)])
        d.addCallback(self._dead)
        d.addErrback(lambda f: None)  # Redis down: the requests' own timeouts apply
        return d

    def _dead(self, raw: Any) -> None:
        for value in raw or ():
            dead = value.decode() if isinstance(value, bytes) else str(value)
            self.node_lost(dead)

    def node_lost(self, node: str) -> None:
        """Node C{node} died: what waits for it fails now, its sessions end."""
        why = f"node {node}, which held the session, was lost"
        for session, on in list(self._seen.items()):
            if on == node:
                del self._seen[session]
        for session, on in list(self._watched_on.items()):
            if on == node:
                self._ended_there(
                    Notification(
                        session=session,
                        event="ended",
                        reason=FailureReason.NODE_LOST.value,
                        message=why,
                    )
                )
        for rid, (asked, _) in list(self._pending.items()):
            if asked == node:
                self._fail(rid, why)

    # -- answering -----------------------------------------------------------------

    def _message(self, text: str) -> None:
        try:
            message = json.loads(text)
            op = message["op"]
        except (ValueError, KeyError, TypeError):
            self._ratelog.warn("forward-malformed", "malformed forwarded message dropped")
            return
        try:
            if op == "ans":
                self._answer(message)
            elif op == "req":
                self._serve(message)
            elif op == "end":
                self._ended_there(Notification.from_json(message["note"]))
        except (ValueError, KeyError, TypeError, MessageError) as e:
            self._ratelog.warn(
                "forward-malformed", "malformed forwarded {op} dropped: {e}", op=op, e=e
            )

    def _answer(self, message: dict[str, Any]) -> None:
        rid = str(message["id"])
        if rid not in self._pending:
            return  # timed out meanwhile
        raw = message["answer"]
        self._settle(rid, None if raw is None else parse_message(raw, SERVER_MESSAGES))

    def _serve(self, message: dict[str, Any]) -> None:
        rid, origin = str(message["id"]), str(message["from"])
        grant = grant_from_json(message["grant"])
        request = parse_message(message["request"], _REQUESTS)
        assert isinstance(request, Command | Close | Status)
        wait = float(message.get("wait") or 0.0)
        wait = min(max(wait, 0.0), self._timeout)
        self.served += 1
        if isinstance(request, Command) and self._owned.holds(request.session):
            watchers = self._watchers.setdefault(request.session, set())
            if len(watchers) < MAX_WATCHERS:
                watchers.add(origin)

        def reply(answer: Message) -> None:
            self._tell(origin, {"op": "ans", "id": rid, "answer": answer.to_json()})

        def failed(failure: Failure) -> None:
            self._log.failure("a forwarded request failed", failure)
            reply(
                ErrorMessage(
                    code="internal-error",
                    message="internal error (logged by the node holding the session)",
                    id=request.id,
                    session=request.session,
                )
            )

        self._owned.handle(grant, request, wait).addCallbacks(reply, failed)

    def _event(self, event: SessionEvent) -> None:
        if not event.state.terminal:
            return
        watchers = self._watchers.pop(str(event.session_id), None)
        if watchers:
            note = notification_for(event).to_json()
            for node in watchers:
                self._tell(node, {"op": "end", "note": note})

    def _tell(self, node: str, message: dict[str, Any]) -> None:
        self._redis.publish(_channel(node), json.dumps(message)).addErrback(
            lambda f: self._ratelog.warn(
                "forward-not-sent",
                "forwarded {op} to node {node} not sent: {why}",
                op=message.get("op"),
                node=node,
                why=f.getErrorMessage() or type(f.value).__name__,
            )
        )


def _ended(request: Forwarded, state: str) -> ErrorMessage:
    return ErrorMessage(
        code=FailureReason.SESSION_ENDED.value,
        message=f"the session has ended: {state}",
        id=request.id,
        session=request.session,
    )


def _maybe(message: Message) -> Message | None:
    return message
