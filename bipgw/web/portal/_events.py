# -*- test-case-name: tests.unit.web.portal.test_routes -*-
"""The dashboard's live numbers as Server-Sent Events (C{GET /events}).

One timer for all streams: every C{event_interval} seconds (2 by default)
each open stream gets one C{numbers} event (the JSON of
L{bipgw.web.portal._dashboard.DashboardSampler.numbers}).  At most
C{max_event_clients} streams are served at once (one more gets C{503});
a stream whose login expired or was closed gets an C{expired} event and
ends; a stream whose client stops reading is dropped once
L{MAX_UNSENT} bytes wait for it.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.web.server import Request

from bipgw.web.portal._auth import PortalLogin
from bipgw.web.portal._portal import Portal, RefusedError, secure_headers

__all__ = ["MAX_UNSENT", "EventClients", "add_event_route"]

MAX_UNSENT = 256 * 1024
"""Bytes a stream may have waiting for a client that does not read."""


def _unsent(request: Request) -> int:
    transport = getattr(getattr(request, "channel", None), "transport", None)
    if transport is None:
        return 0
    waiting = getattr(transport, "dataBuffer", b"") or b""
    parts = getattr(transport, "_tempDataLen", 0) or 0
    return len(waiting) + int(parts)


class EventClients:
    """The open streams and their shared timer."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._streams: dict[Request, PortalLogin] = {}
        self._loop = LoopingCall(self.tick)
        self._loop.clock = portal.clock

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, request: Request, login: PortalLogin) -> Deferred[None]:
        """Serve C{request} as a stream until it ends; fires then."""
        if len(self._streams) >= self._portal.settings.max_event_clients:
            raise RefusedError(503, "too many live dashboards open: close one, or reload later")
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        secure_headers(request)
        request.setHeader(b"X-Accel-Buffering", b"no")
        self._streams[request] = login
        done: Deferred[None] = Deferred()

        def ended(_: object) -> None:
            self._streams.pop(request, None)
            if not self._streams and self._loop.running:
                self._loop.stop()
            if not done.called:
                done.callback(None)

        request.notifyFinish().addBoth(ended)
        request.write(b"retry: 5000\n\n")
        self._send(request, "numbers", self._numbers())
        if not self._loop.running:
            self._loop.start(self._portal.settings.event_interval, now=False)
        return done

    def _numbers(self) -> bytes:
        return json.dumps(self._portal.sampler.numbers(), separators=(",", ":")).encode()

    def _send(self, request: Request, event: str, data: bytes) -> None:
        request.write(b"event: " + event.encode() + b"\ndata: " + data + b"\n\n")

    def tick(self) -> None:
        """Send every stream the numbers now (or end it: expired, or not reading)."""
        if not self._streams:
            return
        data = self._numbers()
        for request, login in list(self._streams.items()):
            if not self._portal.logins.alive(login):
                self._send(request, "expired", b"{}")
                self._streams.pop(request, None)
                request.finish()
            elif _unsent(request) > MAX_UNSENT:
                self._streams.pop(request, None)
                transport = getattr(request.channel, "transport", None)
                if transport is not None:
                    transport.abortConnection()
            else:
                self._send(request, "numbers", data)

    def stop(self) -> None:
        """End every stream (the portal stops)."""
        for request in list(self._streams):
            self._streams.pop(request, None)
            request.finish()
        if self._loop.running:
            self._loop.stop()


def add_event_route(app: Klein, portal: Portal) -> EventClients:
    """Add C{GET /events} to C{app}; the streams it serves."""
    clients = portal.events
    if clients is None:  # one set of streams per portal, however many resources serve it
        clients = portal.events = EventClients(portal)

    @app.route("/events", methods=["GET"])
    async def events(request: Request) -> Any:
        login = await portal.require(request)
        await clients.add(request, login)
        return None

    return clients
