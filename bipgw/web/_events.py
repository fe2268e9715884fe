# -*- test-case-name: tests.unit.web.test_events -*-
"""C{GET /v1/events}: the engine's session events as a Server-Sent Events stream.

A platform that does not want to poll C{GET /v1/sessions/{id}} keeps one
stream open and sees every transition of its sessions (C{awaiting-card},
C{connected}, C{failed} with the reason ...) as it happens.  A stream
carries only the events of the sessions its tenant opened through the API
(optionally one session); the engine is subscribed to only while some
stream is open.  An idle stream gets a comment line every C{keepalive}
seconds so that proxies do not close it.

The engine announces a session's first events while C{open} is still
running, before the API knows the session's id, so L{EventStreams.opening}
holds events of sessions without an owner until the open says whose they are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from bipgw.core import SessionEngine, SessionEvent


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
    data = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.session_id}:{event.seq}\nevent: session\ndata: {data}\n\n".encode()


@attrs.define(eq=False)
class _Stream:
    request: Request
    tenant_id: str
    session: str | None
    timer: IDelayedCall | None = None


class EventStreams:
    """The open event streams, fed from one engine subscription.

    @param owner_of: the tenant that owns a session id, if any.
    """

    _log = Logger()

    def __init__(
        self,
        engine: SessionEngine,
        clock: IReactorTime,
        owner_of: Callable[[str], str | None],
        keepalive: float,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._owner_of = owner_of
        self._keepalive = keepalive
        self._streams: list[_Stream] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._held: list[SessionEvent] | None = None

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
        stream = _Stream(request, tenant_id, session)
        self._streams.append(stream)
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._event)
        request.write(b"retry: 5000\n: events of your sessions follow\n\n")
        stream.timer = self._clock.callLater(self._keepalive, self._ping, stream)
        request.notifyFinish().addBoth(self._gone, stream)

    def stop(self) -> None:
        """End every stream (the API is stopping)."""
        for stream in list(self._streams):
            self._drop(stream)
            stream.request.finish()

    @contextlib.contextmanager
    def opening(self) -> Iterator[Callable[[str], None]]:
        """Hold owner-less events during an open; the yielded callable names the new session."""
        held: list[SessionEvent] = []
        self._held = held

        def adopt(session: str) -> None:
            for event in [e for e in held if str(e.session_id) == session]:
                self._deliver(event, session)

        try:
            yield adopt
        finally:
            self._held = None

    def _event(self, event: SessionEvent) -> None:
        session = str(event.session_id)
        if self._owner_of(session) is None:
            if self._held is not None:
                self._held.append(event)
            return
        self._deliver(event, session)

    def _deliver(self, event: SessionEvent, session: str) -> None:
        owner = self._owner_of(session)
        frame = None
        for stream in list(self._streams):
            if stream.tenant_id != owner or stream.session not in (None, session):
                continue
            frame = frame or sse_frame(event)
            stream.request.write(frame)
            if stream.timer is not None and stream.timer.active():
                stream.timer.reset(self._keepalive)

    def _ping(self, stream: _Stream) -> None:
        stream.timer = self._clock.callLater(self._keepalive, self._ping, stream)
        stream.request.write(b": keepalive\n\n")

    def _gone(self, _: object, stream: _Stream) -> None:
        self._drop(stream)

    def _drop(self, stream: _Stream) -> None:
        if stream not in self._streams:
            return
        self._streams.remove(stream)
        if stream.timer is not None and stream.timer.active():
            stream.timer.cancel()
        stream.timer = None
        if not self._streams and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
