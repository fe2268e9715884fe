# -*- test-case-name: tests.unit.client.test_channel,tests.unit.client.test_tls -*-
"""The Python SDK for business platforms: the platform channel, as calls.

L{bipgw.client.connect} opens the channel (over TLS in production) and
authenticates; the L{PlatformClient} it gives opens L{CardSession}s, and each session sends
C-APDUs and closes.  Every call returns a L{Deferred}, so the SDK works the
same from callbacks and from C{async def} code (through
L{Deferred.fromCoroutine}); clients and sessions are async context managers
that disconnect and close.  C{docs/platform-channel.md} has a full example.

This module is the connection: frames in and out, the requests waiting for
answers, the sessions being opened, and what the gateway sends dispatched
to them.  The session handle, which only sends requests through its client,
is L{bipgw.client._session}.

Failures arrive as L{PlatformError} (with the gateway's C{code}), as
L{SessionFailedError} when a session could not be opened, and as
L{ChannelClosedError} when the connection ends with requests outstanding.
The SDK answers the gateway's heartbeat pings by itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.client._errors import ChannelClosedError, PlatformError, SessionFailedError
from bipgw.client._session import CardSession, as_bytes
from bipgw.codec.platform import (
    DEFAULT_MAX_FRAME,
    SERVER_MESSAGES,
    Accepted,
    AuthOk,
    Closed,
    ErrorMessage,
    Failed,
    FrameDecoder,
    FrameError,
    Hello,
    Message,
    MessageError,
    Notification,
    Offer,
    Open,
    Ping,
    Pong,
    Ready,
    Result,
    State,
    Status,
    Take,
    Timeouts,
    encode_frame,
    parse_message,
)


@attrs.define(eq=False)
class _Opening:
    request_id: str
    service: str
    deferred: Deferred[CardSession]
    session: CardSession | None = None
    cancelled: bool = False


class PlatformClient:
    """An authenticated connection to the gateway's platform channel.

    Built by L{connect}.  Any number of sessions may be open at once.

    @ivar tenant: the tenant the gateway authenticated.
    @ivar heartbeat: the gateway's heartbeat interval in seconds, if any.
    """

    _log = Logger()

    def __init__(self, reactor: Any, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._reactor = reactor
        self._max_frame = max_frame
        self._protocol = _ClientProtocol(self, max_frame)
        self.tenant: str | None = None
        self.heartbeat: float | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, Deferred[Any]] = {}
        self._openings: dict[str, _Opening] = {}  # by request id, until accepted
        self._starting: dict[str, _Opening] = {}  # by session id, until ready or failed
        self._sessions: dict[str, CardSession] = {}
        self._pings: dict[str, float] = {}
        self._gone: Failure | None = None
        self._disconnected: list[Deferred[None]] = []
        self._offer_listeners: list[Callable[[Offer], object]] = []

    @property
    def sessions(self) -> list[CardSession]:
        """The sessions open (or opening) now."""
        return list(self._sessions.values())

    def open_session(
        self,
        *,
        service: str,
        iccid: str | None = None,
        msisdn: str | None = None,
        application: bytes | str | None = None,
        timeouts: Timeouts | None = None,
        target: bytes | str | None = None,
    ) -> Deferred[CardSession]:
        """Open a session with the card named by C{iccid} or C{msisdn}.

        @param application: the TAR or AID the session addresses (bytes or hex).
        @param target: the AID (bytes or hex) of the application the card
            runs the session's scripts in (GP Amd B
            C{X-Admin-Targeted-Application}), unless a command names its own.
        @param timeouts: the gateway closes the session if the card is not
            ready, or a command not answered, in time.
        @return: fires with the L{CardSession} once the card is connected;
            fails with L{SessionFailedError} (the reason) or L{PlatformError}
            (refused).  Cancelling it closes the session.
        """
        rid = self._next_id()
        try:
            app = None if application is None else as_bytes(application, "application")
            aid = None if target is None else as_bytes(target, "target")
            request = Open(
                id=rid,
                service=service,
                iccid=iccid,
                msisdn=msisdn,
                application=app,
                timeouts=timeouts,
                target=aid,
            )
        except (MessageError, ValueError) as e:
            return fail(e)
        return self._opening(rid, service, request)

    def _opening(self, rid: str, service: str, request: Open | Take) -> Deferred[CardSession]:
        """Send C{request} (an L{Open} or a L{Take}); fires when its session is ready."""
        opening = _Opening(rid, service, Deferred(lambda _: self._cancel_open(opening)))
        self._openings[rid] = opening
        refused = self._send(request)
        if refused is not None:
            del self._openings[rid]
            return fail(refused)
        return opening.deferred

    def on_offer(self, listener: Callable[[Offer], object]) -> Callable[[], None]:
        """Call C{listener} with every L{Offer}: a card that opened its admin
        session on its own, which one of this tenant's services may take
        (L{take_session}) before C{offer.expires_in_ms}.

        @return: the function that stops it.
        """
        self._offer_listeners.append(listener)

        def stop() -> None:
            if listener in self._offer_listeners:
                self._offer_listeners.remove(listener)

        return stop

    def take_session(
        self,
        session_id: str,
        *,
        service: str,
        timeouts: Timeouts | None = None,
        target: bytes | str | None = None,
    ) -> Deferred[CardSession]:
        """Take the card-initiated session an L{Offer} named, for C{service}.

        @return: fires with the L{CardSession} (its card is connected); fails
            with L{PlatformError} (C{unknown-session}: taken by another
            platform, expired; C{service-not-allowed}; C{limit-reached}).
        """
        rid = self._next_id()
        try:
            aid = None if target is None else as_bytes(target, "target")
            request = Take(
                id=rid, session=session_id, service=service, timeouts=timeouts, target=aid
            )
        except (MessageError, ValueError) as e:
            return fail(e)
        return self._opening(rid, service, request)

    def attach(self, session_id: str, *, service: str = "") -> CardSession:
        """A handle on session C{session_id}, opened elsewhere: by this tenant on
        another connection, through the HTTP API, or on another node of a
        cluster (docs/cluster.md), whichever node this connection reached.

        Its commands and close go to the gateway as for a session this
        connection opened; the gateway answers C{unknown-session} if the
        session is not this tenant's (or, on one node alone, not this
        connection's).  Its end reaches L{CardSession.when_ended} once a
        command of it was answered.

        @param service: the service it was opened for, if known (kept on the
            handle only).
        """
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = CardSession(self._command, session_id, service)
        return session

    def status(self, session_id: str) -> Deferred[State]:
        """What became of session C{session_id}: any session this tenant may see,
        also one opened on an earlier connection or before a gateway restart.

        Fires with the gateway's L{State} (C{state.ended}, C{state.reason}
        C{gateway-restart} ...), in full for a session this tenant opened
        since the gateway started, else its outcome only; fails with
        L{PlatformError} C{unknown-session} for one it may not see.
        """
        return self._command(lambda rid: Status(id=rid, session=session_id))

    def ping(self) -> Deferred[float]:
        """Round trip to the gateway; fires with the seconds it took."""
        rid = self._next_id()
        self._pings[rid] = self._reactor.seconds()
        return self._request(Ping(id=rid))

    def disconnect(self) -> Deferred[None]:
        """Close the connection; the gateway closes its sessions cleanly."""
        done = self.when_disconnected()
        transport = self._protocol.transport
        if transport is not None and self._gone is None:
            transport.loseConnection()
        return done

    def when_disconnected(self) -> Deferred[None]:
        """Fires once the connection has ended."""
        if self._gone is not None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._disconnected.append(waiter)
        return waiter

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    # -- requests -------------------------------------------------------------

    def _next_id(self) -> str:
        return f"c{next(self._ids)}"

    def _send(self, message: Message) -> BaseException | None:
        if self._gone is not None:
            return ChannelClosedError(self._gone.getErrorMessage())
        try:
            frame = encode_frame(message.to_json(), max_frame=self._max_frame)
        except FrameError as e:
            return e
        transport = self._protocol.transport
        assert transport is not None
        transport.write(frame)
        return None

    def _request(self, message: Message) -> Deferred[Any]:
        rid = getattr(message, "id", None)
        assert isinstance(rid, str)
        refused = self._send(message)
        if refused is not None:
            self._pings.pop(rid, None)
            return fail(refused)
        waiter: Deferred[Any] = Deferred(lambda _: self._forget_request(rid))
        self._pending[rid] = waiter
        return waiter

    def _forget_request(self, request_id: str) -> None:
        """A caller cancelled its request: its answer, if it comes, is dropped."""
        self._pending.pop(request_id, None)
        self._pings.pop(request_id, None)

    def _command(self, build: Callable[[str], Message]) -> Deferred[Any]:
        """Build a request with a fresh id and send it (the sessions' L{RequestSender})."""
        try:
            message = build(self._next_id())
        except (MessageError, ValueError) as e:
            return fail(e)
        return self._request(message)

    def _hello(self, token: str | None, client_name: str | None) -> Deferred[PlatformClient]:
        return self._request(Hello(id=self._next_id(), token=token, client=client_name))

    def _cancel_open(self, opening: _Opening) -> None:
        opening.cancelled = True
        if opening.session is not None:
            opening.session.close().addErrback(lambda _: None)

    # -- what the gateway sends -------------------------------------------------

    def _received(self, message: Message) -> None:
        if isinstance(message, Ping):
            self._send(Pong(id=message.id))
            return
        handler = getattr(self, f"_on_{message.TYPE}")
        handler(message)

    def _on_auth_ok(self, message: AuthOk) -> None:
        self.tenant, self.heartbeat = message.tenant, message.heartbeat
        self._answer(message.id, self)

    def _on_accepted(self, message: Accepted) -> None:
        opening = self._openings.get(message.id)
        if opening is None:
            self._log.warn("accepted for unknown request {id}", id=message.id)
            return
        del self._openings[message.id]
        session = CardSession(self._command, message.session, opening.service)
        opening.session = session
        self._sessions[message.session] = session
        self._starting[message.session] = opening
        if opening.cancelled:
            session.close().addErrback(lambda _: None)

    def _on_ready(self, message: Ready) -> None:
        opening = self._starting.pop(message.session, None)
        session = self._sessions.get(message.session)
        if session is None:
            return
        session.iccid, session.msisdn = message.iccid, message.msisdn
        if opening is not None and not opening.cancelled:
            opening.deferred.callback(session)

    def _on_failed(self, message: Failed) -> None:
        opening = self._starting.pop(message.session, None)
        session = self._sessions.pop(message.session, None)
        if session is not None:
            note = Notification(
                session=message.session,
                event="ended",
                reason=message.reason,
                message=message.message,
            )
            session._end(note)
        if opening is not None and not opening.cancelled:
            opening.deferred.errback(
                SessionFailedError(message.reason, message.message, message.session)
            )

    def _on_offer(self, message: Offer) -> None:
        for listener in list(self._offer_listeners):
            try:
                listener(message)
            except Exception:
                self._log.failure("offer listener {l!r} failed", l=listener)

    def _on_result(self, message: Result) -> None:
        self._answer(message.id, message)

    def _on_state(self, message: State) -> None:
        self._answer(message.id, message)

    def _on_closed(self, message: Closed) -> None:
        self._forget_session(message.session, message)
        self._answer(message.id, message)

    def _on_notification(self, message: Notification) -> None:
        self._forget_session(message.session, message)

    def _on_pong(self, message: Pong) -> None:
        sent = self._pings.pop(message.id or "", None)
        if sent is not None:
            self._answer(message.id, self._reactor.seconds() - sent)

    def _on_error(self, message: ErrorMessage) -> None:
        error = PlatformError(message.code, message.message, message.session)
        opening = self._openings.pop(message.id or "", None)
        if opening is not None:
            if not opening.cancelled:
                opening.deferred.errback(error)
            return
        waiter = self._pending.pop(message.id or "", None)
        if waiter is None:
            self._log.warn("the gateway reported {error}", error=error)
            return
        self._pings.pop(message.id or "", None)
        waiter.errback(error)

    def _answer(self, request_id: str | None, value: object) -> None:
        waiter = self._pending.pop(request_id or "", None)
        if waiter is None:
            self._log.warn("answer to unknown request {id}", id=request_id)
            return
        waiter.callback(value)

    def _forget_session(self, session_id: str, how: Closed | Notification) -> None:
        self._starting.pop(session_id, None)
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session._end(how)

    def _lost(self, reason: Failure) -> None:
        self._gone = reason
        error = Failure(ChannelClosedError(reason.getErrorMessage()))
        pending, self._pending = self._pending, {}
        openings = [*self._openings.values(), *self._starting.values()]
        self._openings, self._starting = {}, {}
        sessions, self._sessions = self._sessions, {}
        for waiter in pending.values():
            waiter.errback(error)
        for opening in openings:
            if not opening.cancelled and not opening.deferred.called:
                opening.deferred.errback(error)
        for session in sessions.values():
            session._end(error)
        waiters, self._disconnected = self._disconnected, []
        for done in waiters:
            done.callback(None)


class _ClientProtocol(Protocol):
    """Frames in and out for a L{PlatformClient}."""

    _log = Logger()

    def __init__(self, client: PlatformClient, max_frame: int) -> None:
        self._client = client
        self._decoder = FrameDecoder(max_frame)

    def dataReceived(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError as e:
            self._log.error("unreadable stream from the gateway: {error}", error=e)
            if self.transport is not None:
                self.transport.loseConnection()
            return
        for frame in frames:
            try:
                if isinstance(frame, FrameError):
                    raise frame
                message = parse_message(frame, SERVER_MESSAGES)
            except MessageError as e:
                self._log.warn("ignored a bad frame from the gateway: {error}", error=e)
                continue
            self._client._received(message)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._client._lost(reason)


__all__ = ["PlatformClient"]
