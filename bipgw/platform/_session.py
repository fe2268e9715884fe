# -*- test-case-name: tests.unit.platform.test_channel,tests.unit.platform.test_refusals -*-
"""One platform connection's logic, without the network: the channel.

A L{PlatformChannel} takes decoded frames in (L{PlatformChannel.received})
and hands messages out (the C{send} callable it was given); the Twisted
protocol only moves bytes.  It holds, for its connection:

  - the authentication state: C{hello} first (within C{auth_timeout}),
    looked up in the L{ITenantDirectory}; bad credentials end the connection;
  - its L{bipgw.core.SessionRelay}, the session table: the card sessions
    this connection opened, each answered with C{accepted}, then C{ready}
    or C{failed}; commands relayed to the engine and answered with
    C{result} or C{error}; C{close} answered with C{closed}; a ready session
    that ends on its own is reported with a C{notification}; and the
    limits (sessions per tenant and per service, commands in flight per
    tenant, commands per second per service, counted over all the tenant's
    connections and the HTTP API by the shared L{bipgw.core.Tenancy}), the
    applications a service may address, and the platform's own
    C{timeouts}; C{status} asks for any session the tenant may see (its
    final state after a reconnect or a gateway restart), answered with
    C{state}.  The channel is the relay's L{bipgw.core.RelayHost}: the
    relay answers through L{PlatformChannel.emit};
  - heartbeats: after C{heartbeat_interval} seconds without a frame the
    gateway pings; without any frame C{heartbeat_timeout} later it drops
    the connection.  Time comes from the injected clock only.

A connection that ends, for any reason, closes its card sessions cleanly
(the engine finishes the running command, answers the card C{204}), so a
crashed platform never leaves a card's admin session open.

What all connections of one server share (the engine, the tenant directory,
the usage counts, the rates and the routing of the engine's session events
to the relay that owns the session) is the L{bipgw.core.Tenancy}, shared
with the HTTP API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.platform import (
    CLIENT_MESSAGES,
    DEFAULT_MAX_FRAME,
    MAX_TEXT,
    REQUEST_ID,
    SESSION,
    AuthOk,
    Close,
    Command,
    ErrorCode,
    ErrorMessage,
    FrameError,
    FrameResult,
    Hello,
    Message,
    MessageError,
    Open,
    Ping,
    Pong,
    Status,
    Take,
    UnknownTypeError,
    parse_message,
)
from bipgw.core import RateLimitedLog, SessionError, SessionRelay, Tenancy, TenantGrant
from bipgw.platform._guard import PeerGuard, PeerLimits


def _positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name}: {value!r} is not a positive, finite number")


@attrs.frozen(kw_only=True)
class ChannelSettings:
    """How every connection of a platform server behaves.

    @ivar auth_timeout: seconds a new connection has to authenticate.
    @ivar heartbeat_interval: idle seconds before the gateway pings;
        C{None} disables heartbeats.
    @ivar heartbeat_timeout: seconds a pinged connection has to send any
        frame before it is dropped.
    @ivar max_frame: the largest frame payload accepted (and sent).
    @ivar certificate_auth: accept a C{hello} without token from the CN of
        the TLS client certificate.  Enable it only on a listener that
        verifies client certificates against the tenants' CA.
    @ivar max_send_buffer: bytes the gateway may write to a connection
        whose peer does not read (after the transport's own buffer is
        full) before it aborts the connection.  Before authentication any
        peer that stops reading is aborted at once.
    @ivar stall_timeout: seconds an authenticated peer may go without
        reading what it is sent (while its requests are no longer read
        either) before the connection is aborted.
    @ivar close_timeout: seconds a connection being closed has to take
        what was still sent to it before it is aborted.
    @ivar peer_limits: what one source address may cost before it is
        trusted (L{bipgw.platform.PeerGuard}).
    """

    auth_timeout: float = attrs.field(default=30.0, validator=_positive)
    heartbeat_interval: float | None = attrs.field(default=60.0, validator=_positive)
    heartbeat_timeout: float = attrs.field(default=30.0, validator=_positive)
    max_frame: int = attrs.field(
        default=DEFAULT_MAX_FRAME,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(64)],
    )
    certificate_auth: bool = False
    max_send_buffer: int = attrs.field(
        default=1 << 20,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(1024)],
    )
    stall_timeout: float = attrs.field(default=30.0, validator=_positive)
    close_timeout: float = attrs.field(default=5.0, validator=_positive)
    peer_limits: PeerLimits = attrs.field(
        factory=PeerLimits, validator=attrs.validators.instance_of(PeerLimits)
    )


Send = Callable[[Message], object]
"""Writes one message to the platform."""


def _echo(obj: object, key: str, pattern: Any) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) and pattern.match(value) else None


class PlatformChannel:
    """The logic of one platform connection (see the module docstring).

    @param tenancy: what the server's connections share with the HTTP API.
    @param settings: the server's timeouts and limits.
    @param send: writes a message to the platform.
    @param disconnect: closes the connection (after what was sent).
    @param peer_name: the CN of the peer's verified TLS certificate.
    @param peer: the peer's address, for log lines.
    @param abort: closes the connection at once, dropping what was not
        sent yet (C{disconnect} if not given).
    @param guard: the listener's per-address limits, which count this
        connection's failed authentications under C{host}.
    @param host: the peer's address as L{guard} knows it.
    @param ratelog: where lines an unauthenticated peer can trigger go (the
        server's shared L{RateLimitedLog}).
    """

    _log = Logger()

    def __init__(
        self,
        tenancy: Tenancy,
        settings: ChannelSettings,
        send: Send,
        disconnect: Callable[[str], object],
        peer_name: Callable[[], str | None] = lambda: None,
        peer: str = "?",
        *,
        abort: Callable[[str], object] | None = None,
        guard: PeerGuard | None = None,
        host: str = "?",
        ratelog: RateLimitedLog | None = None,
    ) -> None:
        self._tenants = tenancy.tenants
        self._abort = abort or disconnect
        self._guard = guard
        self._host = host
        # Lines an unauthenticated peer can trigger (failed hellos, drops,
        # ends) are rate-limited, shared by the server's connections.
        self._ratelog = ratelog if ratelog is not None else RateLimitedLog(self._log, tenancy.clock)
        self._send = send
        self._disconnect = disconnect
        self._peer_name = peer_name
        self._peer = peer
        self._settings = settings
        self._clock = tenancy.clock
        self._relay = SessionRelay(tenancy, self)
        self._tenant: TenantGrant | None = None
        self._checking = False
        self._closed = False
        self._cleaned = False
        self._timer: IDelayedCall | None = None
        self._awaiting_pong = False
        self._pings = 0

    @property
    def tenant(self) -> TenantGrant | None:
        """The tenant, once authenticated."""
        return self._tenant

    @property
    def sessions(self) -> list[str]:
        """The ids of this connection's sessions, oldest first."""
        return self._relay.sessions

    # -- inputs from the protocol ---------------------------------------------

    def connected(self) -> None:
        """The connection is up: it has C{auth_timeout} to authenticate."""
        self._timer = self._clock.callLater(self._settings.auth_timeout, self._auth_timed_out)

    def received(self, item: FrameResult) -> None:
        """One frame arrived: a decoded JSON object, or why it was not one."""
        if self._closed:
            return
        self._heard()
        if isinstance(item, FrameError):
            self._reply(ErrorCode.MALFORMED_FRAME, str(item))
            return
        try:
            message = parse_message(item, CLIENT_MESSAGES)
        except MessageError as e:
            code = ErrorCode.UNKNOWN_TYPE if isinstance(e, UnknownTypeError) else None
            self._reply(
                code or ErrorCode.INVALID_MESSAGE,
                str(e),
                _echo(item, "id", REQUEST_ID),
                _echo(item, "session", SESSION),
            )
            return
        self._dispatch(message)

    def stream_broken(self, error: FrameError) -> None:
        """The byte stream cannot be read any more (a length over the limit)."""
        if not self._closed:
            self._reply(ErrorCode.FRAME_TOO_LARGE, str(error))
            self._drop(f"unreadable stream: {error}")

    def aborted(self, why: str) -> None:
        """The protocol is aborting the connection (a limit): send nothing more."""
        if not self._closed:
            self._closed = True
            self._cancel_timer()
            log = (
                self._log.info if self._tenant else partial(self._ratelog.info, "platform-aborted")
            )
            log("aborting platform connection {peer}: {why}", peer=self._peer, why=why)

    def lost(self, reason: str) -> None:
        """The connection ended: close every session it still has, cleanly."""
        if self._cleaned:
            return
        self._cleaned = self._closed = True
        self._cancel_timer()
        log = self._log.info if self._tenant else partial(self._ratelog.info, "platform-ended")
        log(
            "platform connection {peer} ({tenant}) ended: {reason}; closing {n} session(s)",
            peer=self._peer,
            tenant=self._tenant.tenant_id if self._tenant else "not authenticated",
            reason=reason,
            n=len(self._relay.sessions),
        )
        self._relay.close_all()

    # -- dispatch -------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Ping):
            self.emit(Pong(id=message.id))
        elif isinstance(message, Pong):
            pass
        elif isinstance(message, Hello):
            self._hello(message)
        elif self._tenant is None:
            why = "authentication in progress" if self._checking else "send hello first"
            self._reply(
                ErrorCode.NOT_AUTHORIZED, why, getattr(message, "id", None), _session_of(message)
            )
        elif isinstance(message, Open):
            self._relay.open(message, self._tenant)
        elif isinstance(message, Command):
            self._relay.command(message, self._tenant)
        elif isinstance(message, Close):
            self._relay.close(message, self._tenant)
        elif isinstance(message, Status):
            self._relay.status(message, self._tenant)
        elif isinstance(message, Take):
            self._relay.take(message, self._tenant)

    # -- authentication -------------------------------------------------------

    def _hello(self, hello: Hello) -> None:
        if self._tenant is not None or self._checking:
            code = ErrorCode.ALREADY_AUTHENTICATED if self._tenant else ErrorCode.NOT_AUTHORIZED
            self._reply(code, "hello was already sent", hello.id)
            return
        backoff = self._guard.may_authenticate(self._host) if self._guard else 0.0
        if backoff > 0:
            # Not looked up: guessing is throttled per address, not per connection.
            self._auth_failed(hello, f"too many failed attempts: {backoff:.3g} s of back-off left")
            return
        tenants = self._tenants
        if hello.token is not None:
            how, lookup = "token", maybeDeferred(tenants.by_token, hello.token)
        else:
            name = self._peer_name() if self._settings.certificate_auth else None
            if name is None:
                self._auth_failed(hello, "no token and no verified client certificate")
                return
            how, lookup = f"certificate CN {name!r}", maybeDeferred(tenants.by_certificate, name)
        self._checking = True
        lookup.addCallbacks(
            self._authenticated,
            self._directory_failed,
            callbackArgs=(hello, how),
            errbackArgs=(hello,),
        )

    def _authenticated(self, tenant: TenantGrant | None, hello: Hello, how: str) -> None:
        self._checking = False
        if self._closed:
            return
        if not isinstance(tenant, TenantGrant):
            if self._guard is not None:
                self._guard.auth_failed(self._host)
            self._auth_failed(hello, f"unknown {how.split(' ')[0]}")
            return
        if self._guard is not None:
            self._guard.auth_succeeded(self._host)
        self._tenant = tenant
        self._relay.watch_offers(lambda: self._tenant)
        self._cancel_timer()
        interval = self._settings.heartbeat_interval
        self._log.info(
            "platform {peer} authenticated by {how} as tenant {tenant} ({client})",
            peer=self._peer,
            how=how,
            tenant=tenant.tenant_id,
            client=hello.client or "no client name",
        )
        self.emit(AuthOk(tenant=tenant.tenant_id, id=hello.id, heartbeat=interval))
        if interval is not None:
            self._timer = self._clock.callLater(interval, self._tick)

    def _auth_failed(self, hello: Hello, why: str) -> None:
        # The reason stays in the log; the platform only learns that it failed.
        self._ratelog.warn(
            "platform-auth-failed",
            "platform {peer} failed to authenticate: {why}",
            peer=self._peer,
            why=why,
        )
        self._reply(ErrorCode.AUTH_FAILED, "unknown or missing credentials", hello.id)
        self._drop("authentication failed")

    def _directory_failed(self, failure: Failure, hello: Hello) -> None:
        self._checking = False
        self._log.failure("tenant directory failed for {peer}", failure, peer=self._peer)
        if not self._closed:
            self._reply(ErrorCode.UNAVAILABLE, "the tenant directory is unavailable", hello.id)
            self._drop("tenant directory unavailable")

    def _auth_timed_out(self) -> None:
        self._timer = None
        wait = self._settings.auth_timeout
        self._reply(ErrorCode.NOT_AUTHORIZED, f"no successful hello within {wait:g} s")
        # Aborted, not closed: a peer that neither authenticates nor reads
        # must not keep its connection (and its unread replies) by not reading.
        self._drop("authentication timeout", abort=True)

    # -- heartbeats -----------------------------------------------------------

    def _heard(self) -> None:
        interval = self._settings.heartbeat_interval
        if self._tenant is None or interval is None:
            return
        self._awaiting_pong = False
        if self._timer is not None:
            self._timer.reset(interval)

    def _tick(self) -> None:
        self._timer = None
        wait = self._settings.heartbeat_timeout
        if self._awaiting_pong:
            self._drop(f"no frame within {wait:g} s of a ping")
            return
        self._awaiting_pong = True
        self._pings += 1
        self.emit(Ping(id=f"hb-{self._pings}"))
        self._timer = self._clock.callLater(wait, self._tick)

    # -- what the relay needs (bipgw.core.RelayHost) ----------------------------

    def describe(self, failure: Failure) -> tuple[str, str]:
        """See L{bipgw.core.RelayHost.describe}: logs what is not a session failure."""
        error = failure.value
        if isinstance(error, SessionError):
            return error.reason.value, str(error)[:MAX_TEXT]
        self._log.failure(
            "unexpected failure on platform connection {peer}", failure, peer=self._peer
        )
        return ErrorCode.INTERNAL_ERROR, "internal error (logged by the gateway)"

    def emit(self, message: Message) -> None:
        """See L{bipgw.core.RelayHost.emit}: sent unless the connection is closing."""
        if not self._closed:
            self._send(message)

    def _reply(
        self, code: str, text: str, request_id: str | None = None, session: str | None = None
    ) -> None:
        self.emit(ErrorMessage(code=code, message=text[:MAX_TEXT], id=request_id, session=session))

    def _drop(self, why: str, *, abort: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        log = self._log.info if self._tenant else partial(self._ratelog.info, "platform-dropped")
        log("dropping platform connection {peer}: {why}", peer=self._peer, why=why)
        (self._abort if abort else self._disconnect)(why)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _session_of(message: Message) -> str | None:
    return getattr(message, "session", None)
