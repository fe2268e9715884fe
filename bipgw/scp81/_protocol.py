# -*- test-case-name: tests.unit.scp81.test_protocol,tests.unit.scp81.test_protocol_tls -*-
"""The SCP81 admin server's connection protocol: GP Amendment B HTTP over TLS-PSK.

One L{AdminProtocol} serves one card's TLS connection.  It stays thin: it
feeds decrypted bytes to L{bipgw.codec.admin_http.RequestParser}, checks
the two things that are the connection's business (the HTTP itself and the
X-Admin-Protocol header), finds the card's session once (PSK identity →
ICCID → L{bipgw.core.SessionEngine.card_arrived}) and then hands every
request to the session's L{bipgw.core.CardLink}, writing back whatever it
answers.  Decisions about sessions are the engine's.

Rules, all per connection, so one card never affects another:
  - requests are served one at a time, in order (a pipelining client
    waits; Amd B cards never pipeline; more than L{MAX_PIPELINED} waiting
    requests are refused, so the queue is bounded);
  - malformed HTTP is answered with the parser's status (400, 413, 501,
    505 ...) and the connection is closed, with a log line naming the
    problem; so is (with 400) an X-Admin-Protocol other than
    C{globalplatform-remote-admin/1.x}, or its absence from the first
    request.  A card refused this way ends its session at once, with a
    reason saying it connected and was refused (L{ICardGateway.card_refused}),
    instead of leaving it to wait for a card that will not come back.
    Later requests without the header are accepted: the one public trace
    of a live card lists it on the first POST only, and refusing a working
    card over a repeated header would help nobody;
  - no session waiting for the card: C{204} and close (GP Amd B's "nothing
    to do"), logged;
  - every line a peer can trigger (refusals, unknown cards, cards with no
    session, timeouts) goes through the factory's shared
    L{bipgw.core.RateLimitedLog}: a flood of connections costs a bounded
    number of lines per minute;
  - after a C{204}, or any response or request with C{Connection: close},
    the connection is closed (TLS close_notify, then TCP);
  - the one timer: a connection that has not completed a request within
    C{request_timeout} of opening (TLS handshake included) is dropped, so
    idle sockets cannot pile up.  Everything after the first request is
    timed by the session.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IAddress, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from bipgw.codec.admin_http import (
    DEFAULT_MAX_BODY,
    AdminHttpError,
    AdminRequest,
    AdminResponse,
    RequestParser,
    encode_response,
)
from bipgw.core import RateLimitedLog
from bipgw.tls import psk_identity

__all__ = ["AdminFactory", "AdminProtocol", "AdminStats", "ICardGateway", "ICardLink"]

_AMD_B: Final = re.compile(r"globalplatform-remote-admin/1\.[0-9]+\Z", re.IGNORECASE)
_END: Final = AdminResponse(status=204)

MAX_PIPELINED: Final = 8
"""Requests a connection may have waiting behind the one being served; a card
that sends more is refused (Amd B cards never pipeline, so this only bounds
the memory a hostile peer can take)."""


class ICardLink(Protocol):
    """The session side of one card connection (L{bipgw.core.CardLink})."""

    def post(self, request: AdminRequest) -> Deferred[AdminResponse]: ...
    def lost(self, reason: str | Failure) -> None: ...


class ICardGateway(Protocol):
    """Where connections find their session (L{bipgw.core.SessionEngine})."""

    def card_arrived(
        self, iccid: str, agent_id: str, *, disconnect: Callable[[str], object] | None = None
    ) -> ICardLink | None: ...
    def card_refused(self, iccid: str, why: str) -> None: ...


@attrs.define
class AdminStats:
    """What the admin server's connections did, for metrics and the portal.

    TLS handshake outcomes are counted by L{bipgw.tls.PskServerStats}.

    @ivar connections: connections accepted.
    @ivar refused: connections closed at once because C{max_connections}
        were already open.
    @ivar requests: requests read.
    @ivar bad_requests: requests refused for malformed HTTP or a wrong
        X-Admin-Protocol (answered 4xx/5xx, connection closed).
    @ivar no_session: first POSTs answered C{204} because no session was
        waiting for the card.
    @ivar unknown_card: connections whose PSK identity maps to no ICCID.
    @ivar timeouts: connections dropped for sending no request in time.
    """

    connections: int = 0
    refused: int = 0
    requests: int = 0
    bad_requests: int = 0
    no_session: int = 0
    unknown_card: int = 0
    timeouts: int = 0


class AdminFactory(Factory["AdminProtocol"]):
    """Builds L{AdminProtocol}s and keeps track of the open ones.

    @param gateway: finds the session of a card that connects.
    @param identity_to_iccid: the card (ICCID) a PSK identity belongs to, or
        C{None}; synchronous, like the PSK key lookup.
    @param clock: times the wait for a connection's first request.
    @param request_timeout: seconds a new connection has to complete its
        TLS handshake and first request.
    @param max_connections: connections served at once; more are closed.
    @param max_body: the request body limit handed to the parser.
    @param identify: the PSK identity a connection authenticated (a test
        without TLS passes its own).
    """

    _log = Logger()

    def __init__(
        self,
        gateway: ICardGateway,
        identity_to_iccid: Callable[[bytes], str | None],
        *,
        clock: IReactorTime,
        request_timeout: float = 30.0,
        max_connections: int = 1000,
        max_body: int = DEFAULT_MAX_BODY,
        identify: Callable[[object], bytes | None] = psk_identity,
    ) -> None:
        self.gateway = gateway
        self.identity_to_iccid = identity_to_iccid
        self.clock: Any = cast(Any, clock)
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.max_body = max_body
        self.identify = identify
        self.stats = AdminStats()
        self.ratelog = RateLimitedLog(
            Logger(namespace="bipgw.scp81._protocol.AdminProtocol"), self.clock
        )
        self.connections: set[AdminProtocol] = set()
        self._drain_waiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: IAddress | None) -> AdminProtocol:
        """A protocol for one new connection."""
        protocol = AdminProtocol()
        protocol.factory = self
        return protocol

    def drained(self) -> Deferred[None]:
        """Fire once no connection is open (at once if none is)."""
        if not self.connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drain_waiters.append(waiter)
        return waiter

    def abort_all(self, why: str) -> None:
        """Drop every open connection now (the end of a stop's grace period)."""
        for protocol in list(self.connections):
            protocol.abort(why)

    def _register(self, protocol: AdminProtocol) -> bool:
        if len(self.connections) >= self.max_connections:
            self.stats.refused += 1
            return False
        self.stats.connections += 1
        self.connections.add(protocol)
        return True

    def _unregister(self, protocol: AdminProtocol) -> None:
        self.connections.discard(protocol)
        if not self.connections:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                waiter.callback(None)


@implementer(IHandshakeListener)
class AdminProtocol(TwistedProtocol):
    """One card's admin connection (see the module docstring for the rules)."""

    _log = Logger()
    factory: AdminFactory
    transport: Any

    def __init__(self) -> None:
        self._parser: RequestParser | None = None
        # A list, not a deque: at most MAX_PIPELINED + 1 requests, and an
        # empty list is 56 bytes where a deque is 760 (held sessions count).
        self._pending: list[AdminRequest] = []
        self._busy = False
        self._closing = False
        self._gone = False
        self._registered = False
        self._identified = False
        self._iccid: str | None = None
        self._identity: bytes | None = None
        self._link: ICardLink | None = None
        self._timer: Any = None
        self._peer: object = "unknown peer"

    # -- Twisted's interfaces ----------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self._parser = RequestParser(max_body=factory.max_body)
        try:
            # Kept as the address: only log lines format it, and most
            # connections write none.
            self._peer = self.transport.getPeer()
        except Exception:
            pass
        if not factory._register(self):
            factory.ratelog.warn(
                "scp81-too-many-connections",
                "admin connection from {peer} refused: {limit} connections already open",
                peer=self._peer,
                limit=factory.max_connections,
            )
            self._closing = True
            self.transport.abortConnection()
            return
        self._registered = True
        self._timer = factory.clock.callLater(factory.request_timeout, self._timed_out)

    def handshakeCompleted(self) -> None:
        """TLS is up: find out which card this is while the identity is fresh."""
        self._identify()

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._parser is None:
            return
        try:
            requests = self._parser.feed(data)
        except AdminHttpError as e:
            self._refuse(e.status, str(e))
            return
        self._pending.extend(requests)
        if len(self._pending) > MAX_PIPELINED:
            self._pending.clear()
            self._refuse(400, f"more than {MAX_PIPELINED} pipelined requests")
            return
        self._next()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self._cancel_timer()
        if self._registered:
            self.factory._unregister(self)
        if self._link is not None:
            self._link.lost(reason)

    # -- for the factory and the session -------------------------------------

    def abort(self, why: str) -> None:
        """Drop the connection at once (no TLS close_notify)."""
        if self._gone:
            return
        self.factory.ratelog.info(
            "scp81-dropped",
            "dropping admin connection of card {iccid} ({peer}): {why}",
            iccid=self._iccid,
            peer=self._peer,
            why=why,
        )
        self._closing = True
        self.transport.abortConnection()

    def _disconnect(self, why: str) -> None:
        """The session ended with no POST to answer: close the connection."""
        if self._gone or self._closing:
            return
        self._log.info(
            "closing admin connection of card {iccid} ({peer}): {why}",
            iccid=self._iccid,
            peer=self._peer,
            why=why,
        )
        self._closing = True
        self.transport.loseConnection()

    # -- requests --------------------------------------------------------------

    def _identify(self) -> None:
        if self._identified:
            return
        self._identified = True
        self._identity = identity = self.factory.identify(self.transport)
        if identity is None:
            return
        try:
            self._iccid = self.factory.identity_to_iccid(identity)
        except Exception:
            self._log.failure("resolving PSK identity {identity!r} failed", identity=identity)

    def _next(self) -> None:
        while not self._busy and self._pending and not self._closing:
            self._handle(self._pending.pop(0))

    def _handle(self, request: AdminRequest) -> None:
        self._cancel_timer()
        stats = self.factory.stats
        stats.requests += 1
        protocol = request.admin_protocol
        required = self._link is None
        if (protocol is None and required) or (protocol is not None and not _AMD_B.match(protocol)):
            self._refuse(
                400,
                f"X-Admin-Protocol {protocol!r} is not globalplatform-remote-admin/1.x"
                f" (request {request.method} {request.target!r})",
            )
            return
        if self._link is None:
            self._identify()
            iccid = self._iccid
            if iccid is None:
                stats.unknown_card += 1
                self.factory.ratelog.warn(
                    "scp81-unknown-card",
                    "admin POST from {peer} with PSK identity {identity!r}, which names no card;"
                    " answered 204",
                    peer=self._peer,
                    identity=self._identity,
                )
                self._write(_END, close=True)
                return
            agent_id = request.admin_from or iccid
            link = self.factory.gateway.card_arrived(iccid, agent_id, disconnect=self._disconnect)
            if link is None:
                # Any card may connect at will: the line is rate-limited (the
                # engine logs nothing), and counted in stats.no_session.
                stats.no_session += 1
                self.factory.ratelog.info(
                    "scp81-no-session",
                    "no admin session pending for card {iccid} (agent {agent_id}, {peer});"
                    " answered 204",
                    iccid=iccid,
                    agent_id=agent_id,
                    peer=self._peer,
                )
                self._write(_END, close=True)
                return
            self._link = link
        self._busy = True
        try:
            answer = self._link.post(request)
        except Exception:
            answer = fail(Failure())
        answer.addCallbacks(self._answered, self._failed, callbackArgs=(request,))

    def _answered(self, response: AdminResponse, request: AdminRequest) -> None:
        self._busy = False
        if self._gone or self._closing:
            return
        close = response.status == 204 or not response.keep_alive or not request.keep_alive
        self._write(response, close=close)
        self._next()

    def _failed(self, failure: Failure) -> None:
        self._busy = False
        self._log.failure(
            "the session of card {iccid} failed to answer a POST", failure, iccid=self._iccid
        )
        if not (self._gone or self._closing):
            self._write(AdminResponse(status=500, keep_alive=False), close=True)

    def _refuse(self, status: int, problem: str) -> None:
        self.factory.stats.bad_requests += 1
        self.factory.ratelog.warn(
            "scp81-bad-request",
            "bad admin request from {peer} (card {iccid}): {problem}; answered {status}, closing",
            peer=self._peer,
            iccid=self._iccid,
            problem=problem,
            status=status,
        )
        self._write(AdminResponse(status=status, keep_alive=False), close=True)
        why = f"the card connected and was refused: {problem} (answered {status})"
        link, self._link = self._link, None
        if link is None:
            self._identify()
        if link is not None:
            link.lost(why)
        elif self._iccid is not None:
            try:
                self.factory.gateway.card_refused(self._iccid, why)
            except Exception:
                self._log.failure(
                    "ending the session of refused card {iccid} failed", iccid=self._iccid
                )

    def _write(self, response: AdminResponse, *, close: bool) -> None:
        self.transport.write(encode_response(response))
        if close:
            self._closing = True
            self._cancel_timer()
            self.transport.loseConnection()

    def _timed_out(self) -> None:
        self._timer = None
        self.factory.stats.timeouts += 1
        self.abort(f"no request within {self.factory.request_timeout:g} s")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
