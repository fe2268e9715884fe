# -*- test-case-name: tests.unit.web.test_events -*-
"""C{GET /v1/events}: the engine's session events as a Server-Sent Events stream.

A platform that does not want to poll C{GET /v1/sessions/{id}} keeps one
stream open and sees every transition of its sessions (C{awaiting-card},
C{connected}, C{failed} with the reason ...) as it happens.  A stream
carries only the events of the sessions its tenant opened through the API
(optionally one session); the engine is subscribed to only while some
stream is open.  An idle stream gets a comment line every C{keepalive}
seconds so that proxies do not close it.  A client that does not read
cannot grow the gateway's memory: each stream is its request's producer,
paused when the connection's buffer is full, and queues at most
C{buffer} bytes of frames while paused; past that the connection is
aborted (the client reconnects and reads the status of its sessions).

In a cluster (docs/cluster.md), an L{IEventFeed} numbers a tenant's events
once for every node (L{bipgw.cluster.ClusterEventFeed}: a log per tenant):
this node's events go to the log, and every stream reads the log, so its
events (this node's and the others') come in one order with ids that only
grow (the SSE C{id:}), and a client that reconnects with the last id it
read (C{Last-Event-ID}) gets the events after it, none missed, none twice.
Alone, a node numbers the events per session (C{id: SESSION:SEQ}) and
replays nothing.

The engine announces a session's first events while C{open} is still
running, before the API knows the session's id, so L{EventStreams.opening}
holds events of sessions without an owner until the open says whose they are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Iterator
from typing import Any, Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from bipgw.core import CardOffer, SessionEngine, SessionEvent


def event_json(event: SessionEvent) -> dict[str, Any]:
    """One engine event as the stream's C{data}."""
    out: dict[str, Any] = {
        "session": str(event.session_id),
        "seq": event.seq,
        "at": event.at,
        "state": event.state.value,
        "previous": event.previous.value if event.previous else None,
        "reason": event.reason.value if event.reason else None,
        "detail": event.detail or None,
        "transition": event.transition,
    }
    return {k: v for k, v in out.items() if v is not None}


def sse_frame(event: SessionEvent) -> bytes:
    """The SSE frame of one event: C{id}, C{event: session} and the JSON C{data}."""
    return json_frame(event_json(event))


def json_frame(event: dict[str, Any], event_id: str | None = None) -> bytes:
    """The SSE frame of one event as L{event_json} wrote it; its C{id:} is
    C{event_id} (a cluster's), else C{SESSION:SEQ}."""
    data = json.dumps(event, separators=(",", ":"))
    ident = event_id if event_id is not None else f"{event['session']}:{event['seq']}"
    return f"id: {ident}\nevent: session\ndata: {data}\n\n".encode()


class IEventFeed(Protocol):
    """A tenant's session events over every node of a cluster, in one
    numbered order (L{bipgw.cluster.ClusterEventFeed})."""

    def follow(
        self, tenant_id: str, after: str | None, deliver: Callable[[str, dict[str, Any]], object]
    ) -> Callable[[], None]:
        """Call C{deliver} with the id and the data (L{event_json}) of every
        event of a session C{tenant_id} opened through the HTTP API of any
        node, in order, from after the id C{after} (C{None}: from now), until
        the returned function is called.

        @raise ValueError: C{after} is not an event id.
        """

    def wants(self, tenant_id: str) -> bool:
        """Whether some node has (or had lately) a stream for C{tenant_id}
        (only then are its events turned into JSON and published)."""

    def publish(self, tenant_id: str, event: dict[str, Any]) -> None:
        """An event (L{event_json}) of a session C{tenant_id} opened here, for
        every node's streams (this node's too)."""


@implementer(IPushProducer)
@attrs.define(eq=False)
class _Stream:
    """One open stream, the producer of its request: paused while the client
    does not read, its frames queue here, up to C{limit} bytes."""

    request: Request
    tenant_id: str
    session: str | None
    limit: int
    timer: IDelayedCall | None = None
    paused: bool = False
    queued: list[bytes] = attrs.Factory(list)
    size: int = 0
    dropped: bool = False
    unfollow: Callable[[], None] | None = None

    def send(self, frame: bytes) -> None:
        """Write C{frame}, or queue it while paused; drop the stream past the limit."""
        if self.dropped:
            return
        if not self.paused:
            self.request.write(frame)
            return
        self.queued.append(frame)
        self.size += len(frame)
        if self.size > self.limit:
            self.drop()

    def drop(self) -> None:
        """Abort the connection: the client has not read C{limit} bytes of events."""
        self.dropped = True
        self.queued.clear()
        self.size = 0
        channel = getattr(self.request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.queued and not self.paused and not self.dropped:
            frame = self.queued.pop(0)
            self.size -= len(frame)
            self.request.write(frame)  # may pause us again

    def stopProducing(self) -> None:
        self.dropped = True
        self.queued.clear()
        self.size = 0


class EventStreams:
    """The open event streams, fed from one engine subscription.

    @param owner_of: the tenant that owns a session id, if any.
    @param feed: the other nodes' events, in a cluster; then the engine is
        followed as long as the streams serve (this node's events go to the
        other nodes' streams).
    """

    _log = Logger()

    def __init__(
        self,
        engine: SessionEngine,
        clock: IReactorTime,
        owner_of: Callable[[str], str | None],
        keepalive: float,
        buffer: int = 262144,
        feed: IEventFeed | None = None,
    ) -> None:
        self._engine = engine
        self._feed = feed
        self._clock = clock
        self._owner_of = owner_of
        self._keepalive = keepalive
        self._buffer = buffer
        self._streams: list[_Stream] = []
        self._unsubscribe: Callable[[], None] | None = None
        # One list per open under way (an open waits for its session's row
        # to be committed, so several can overlap).
        self._held: list[list[SessionEvent]] = []
        if feed is not None:
            self._unsubscribe = engine.subscribe(self._event)

    @property
    def count(self) -> int:
        """Streams open now."""
        return len(self._streams)

    def start(self, request: Request, tenant_id: str, session: str | None) -> None:
        """Turn C{request} into a stream of C{tenant_id}'s events (of C{session} only, if given)."""
        request.setResponseCode(200)
        request.setHeader("Content-Type", "text/event-stream; charset=utf-8")
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("X-Accel-Buffering", "no")
        stream = _Stream(request, tenant_id, session, self._buffer)
        request.registerProducer(stream, True)
        self._streams.append(stream)
        if self._feed is not None:
            raw = request.getHeader("last-event-id")
            after = raw.strip()[:64] if raw else None
            try:
                stream.unfollow = self._feed.follow(
                    tenant_id, after, lambda i, e: self._logged(stream, i, e)
                )
            except ValueError:  # not one of the cluster's ids: from now on
                stream.unfollow = self._feed.follow(
                    tenant_id, None, lambda i, e: self._logged(stream, i, e)
                )
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._event)
        request.write(b"retry: 5000\n: events of your sessions follow\n\n")
        stream.timer = self._clock.callLater(self._keepalive, self._ping, stream)
        request.notifyFinish().addBoth(self._gone, stream)

    def stop(self) -> None:
        """End every stream (the API is stopping)."""
        for stream in list(self._streams):
            self._drop(stream)
            if not stream.dropped:
                stream.request.unregisterProducer()
                stream.request.finish()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @contextlib.contextmanager
    def opening(self) -> Iterator[Callable[[str], None]]:
        """Hold owner-less events during an open; the yielded callable names the new session.

        The open may span reactor turns (it waits for the session's row to
        be committed); every open under way holds its own list.
        """
        held: list[SessionEvent] = []
        self._held.append(held)

        def adopt(session: str) -> None:
            for event in [e for e in held if str(e.session_id) == session]:
                self._deliver(event, session)

        try:
            yield adopt
        finally:
            self._held = [h for h in self._held if h is not held]

    def _event(self, event: SessionEvent) -> None:
        session = str(event.session_id)
        if self._owner_of(session) is None:
            for held in self._held:
                held.append(event)
            return
        self._deliver(event, session)

    def _deliver(self, event: SessionEvent, session: str) -> None:
        owner = self._owner_of(session)
        feed = self._feed
        if feed is not None:
            # Every stream reads it from the tenant's log, in the cluster's order.
            if owner is not None and feed.wants(owner):
                feed.publish(owner, event_json(event))
            return
        frame = None
        for stream in list(self._streams):
            if stream.tenant_id != owner or stream.session not in (None, session):
                continue
            frame = frame or sse_frame(event)
            stream.send(frame)
            if stream.timer is not None and stream.timer.active():
                stream.timer.reset(self._keepalive)

    def _logged(self, stream: _Stream, event_id: str, event: dict[str, Any]) -> None:
        """An event of C{stream}'s tenant's log (any node's), numbered C{event_id}."""
        if stream.session not in (None, event.get("session")):
            return
        stream.send(json_frame(event, event_id))
        if stream.timer is not None and stream.timer.active():
            stream.timer.reset(self._keepalive)

    def elsewhere(self, tenant_id: str, session: str, data: dict[str, Any]) -> int:
        """Tell C{tenant_id}'s streams (all, or those of C{session}) an event of
        one of its sessions this node does not run: a session of a cluster
        node that was lost (C{docs/cluster.md}), as an C{event: session}
        frame whose C{data} is C{data}.

        @return: how many streams were sent it.
        """
        body = json.dumps({"session": session, **data}, separators=(",", ":"))
        frame = f"event: session\ndata: {body}\n\n".encode()
        sent = 0
        for stream in list(self._streams):
            if stream.tenant_id == tenant_id and stream.session in (None, session):
                stream.send(frame)
                sent += 1
        return sent

    def offer(self, offer: CardOffer, tenants: Collection[str]) -> None:
        """Tell the tenants' streams (those not narrowed to one session) of
        a card-initiated session they may take: an C{event: offer} frame."""
        data = {
            "session": str(offer.session_id),
            "iccid": offer.iccid,
            "agent": offer.agent_id,
            "services": list(offer.services),
            "expires_at": offer.expires_at,
        }
        if offer.msisdn:
            data["msisdn"] = offer.msisdn
        body = json.dumps(data, separators=(",", ":"))
        frame = f"event: offer\ndata: {body}\n\n".encode()
        for stream in list(self._streams):
            if stream.tenant_id in tenants and stream.session is None:
                stream.send(frame)

    def _ping(self, stream: _Stream) -> None:
        stream.timer = self._clock.callLater(self._keepalive, self._ping, stream)
        stream.send(b": keepalive\n\n")

    def _gone(self, _: object, stream: _Stream) -> None:
        self._drop(stream)

    def _drop(self, stream: _Stream) -> None:
        if stream not in self._streams:
            return
        self._streams.remove(stream)
        if stream.timer is not None and stream.timer.active():
            stream.timer.cancel()
        stream.timer = None
        if stream.unfollow is not None:
            stream.unfollow()
            stream.unfollow = None
        if not self._streams and self._unsubscribe is not None and self._feed is None:
            self._unsubscribe()
            self._unsubscribe = None
