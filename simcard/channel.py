# -*- test-case-name: tests.unit.simcard.test_channel -*-
"""The card's BIP channel for SCP81: TCP out, TLS-PSK, and the admin agent inside.

After a push, a real card asks its handset to OPEN CHANNEL (TCP client) to
the admin server and runs TLS-PSK and HTTP over SEND/RECEIVE DATA
(PROTOCOLS.md 3.1).  The simulated card skips the handset: it connects with
a Twisted client endpoint, wraps it with TLS-PSK (L{bipgw.tls}, through
L{wrapClientTLS}), and drives an L{AdminAgent} with the bytes that come
back.  The protocol here only forwards events; what to send is the agent's
decision, and when to retry or give up is L{AdminChannel}'s, with every
timer on the injected clock.

Failures end the returned Deferred with an L{AdminSessionError} whose
C{kind} says what broke: the server could not be reached (after the
trigger's retries), the TLS handshake failed (wrong PSK...), the HTTP
exchange went wrong, the connection broke mid-session (after the retries,
each re-sending the last POST with C{X-Admin-Resume: true}), or the
overall timeout passed.

L{ChannelFaults} lets the fleet make a card misbehave on purpose, so the
gateway's handling of broken sessions can be exercised end to end.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from attrs import field, frozen
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from bipgw.tls import DEFAULT_CIPHERS, PskClientOptions, TlsConfigError
from simcard._endpoints import EndpointFactory, tcp_endpoints
from simcard.agent import AdminAgent, AgentState, ApduExecutor, StepKind
from simcard.model import PskCredential
from simcard.session_request import AdminSessionRequest

__all__ = [
    "AdminChannel",
    "AdminSessionError",
    "AdminSessionResult",
    "ChannelFaults",
    "EndpointFactory",
    "FailureKind",
    "open_admin_channel",
    "tcp_endpoints",
]

MALFORMED_REQUEST = b"GARBAGE /admin SIMCARD/0.0\r\nNot-A-Header\r\n\r\n"
"""What a card with the malformed-HTTP fault sends instead of its first POST."""


def _non_negative(_: object, attribute: Any, value: Any) -> None:
    if type(value) not in (int, float) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative number, not {value!r}")


def _optional_count(_: object, attribute: Any, value: Any) -> None:
    if value is not None and (type(value) is not int or value < 0):
        raise ValueError(f"{attribute.name} must be a non-negative int or None, not {value!r}")


@frozen
class ChannelFaults:
    """Ways a simulated card can misbehave during its admin session.

    @ivar drop_after_scripts: after running this many command scripts,
        drop the connection (no TLS close) instead of POSTing the result,
        once; the card then retries per the trigger's policy, re-sending
        the POST with C{X-Admin-Resume: true}.  C{0} drops right after the
        server's first answer.
    @ivar post_delay: seconds to wait before each POST (a slow card).
    @ivar malformed_http: send garbage instead of the first POST.
    @ivar wrong_psk: present the right identity with a wrong key.
    """

    drop_after_scripts: int | None = field(default=None, validator=_optional_count)
    post_delay: float = field(default=0.0, validator=_non_negative)
    malformed_http: bool = False
    wrong_psk: bool = False


@frozen
class AdminSessionResult:
    """How a completed admin session went.

    @ivar scripts: command scripts the card ran.
    @ivar commands: C-APDUs the card ran.
    @ivar attempts: connections made or tried (1 without retries).
    @ivar resumed: whether a POST was re-sent with C{X-Admin-Resume}.
    """

    scripts: int
    commands: int
    attempts: int
    resumed: bool


class FailureKind(enum.Enum):
    """What made an admin session fail."""

    UNREACHABLE = "unreachable"
    """No connection could be made, retries included."""
    TLS = "tls"
    """The TLS-PSK handshake failed (wrong key, no common suite...)."""
    HTTP = "http"
    """The server's HTTP was malformed or said something unexpected."""
    LOST = "lost"
    """The connection broke mid-session, retries included."""
    TIMEOUT = "timeout"
    """The session did not end within the overall timeout."""
    CONFIG = "config"
    """The card cannot even try (no usable PSK for the trigger...)."""


class AdminSessionError(Exception):
    """An admin session that did not complete.

    @ivar reason: what happened, for logs and for the fleet's report.
    @ivar kind: the L{FailureKind}.
    @ivar attempts: connections made or tried.
    """

    def __init__(self, reason: str, kind: FailureKind, attempts: int) -> None:
        super().__init__(f"{kind.value}: {reason}")
        self.reason = reason
        self.kind = kind
        self.attempts = attempts


@implementer(IHandshakeListener)
class _ChannelProtocol(Protocol):
    """Forwards one connection's events to its L{AdminChannel}; nothing else."""

    transport: Any

    def __init__(self, channel: AdminChannel) -> None:
        self.channel = channel
        self.handshaken = False

    def connectionMade(self) -> None:
        self.channel._connection_made(self)

    def handshakeCompleted(self) -> None:
        self.handshaken = True

    def dataReceived(self, data: bytes) -> None:
        self.channel._data_received(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.channel._connection_lost(self, reason)


class _ChannelFactory(Factory):
    # One factory per session: Twisted's "Starting/Stopping factory" lines
    # would be two log lines per card session.
    noisy = False

    def __init__(self, channel: AdminChannel) -> None:
        self.channel = channel

    def buildProtocol(self, addr: object) -> _ChannelProtocol:
        protocol = _ChannelProtocol(self.channel)
        protocol.factory = self
        return protocol


class AdminChannel:
    """One card's admin session over TCP and TLS-PSK, retries included.

    Use L{open_admin_channel}; this class is the state it keeps.

    @param clock: schedules retries, the slow-card delay and the timeout;
        also the TLS layer's clock.
    @param endpoints: makes the TCP endpoint to the trigger's address.
    @param request: the session to open.
    @param psk: the card's SCP81 credential.
    @param executor: runs the scripts' C-APDUs.
    @param faults: misbehaviour to simulate, if any.
    @param timeout: seconds for the whole session, retries included.
    @param chunked: POST response scripts chunked (the live card's way).
    @param ciphers: the TLS-PSK suites offered, in order.
    @param allow_weak: permit NULL/3DES suites (some real cards offer them).
    """

    log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        endpoints: EndpointFactory,
        request: AdminSessionRequest,
        psk: PskCredential,
        executor: ApduExecutor,
        *,
        faults: ChannelFaults | None = None,
        timeout: float = 300.0,
        chunked: bool = True,
        ciphers: str = DEFAULT_CIPHERS,
        allow_weak: bool = False,
    ) -> None:
        # Typed Any: without the mypy-zope plugin, interface methods cannot be called.
        self._clock: Any = clock
        self._endpoints = endpoints
        self._request = request
        self._psk = psk
        self._faults = faults or ChannelFaults()
        self._timeout = timeout
        self._ciphers = ciphers
        self._allow_weak = allow_weak
        self._agent = AdminAgent(request, executor, chunked=chunked)
        self._result: Deferred[AdminSessionResult] = Deferred(self._cancel)
        self._options: PskClientOptions | None = None
        self._protocol: _ChannelProtocol | None = None
        self._connecting: Deferred[Any] | None = None
        self._timer: IDelayedCall | None = None
        self._retry: IDelayedCall | None = None
        self._pending_write: IDelayedCall | None = None
        self._ending: AdminSessionError | None = None
        self._closing = False
        self._done = False
        self._attempts = 0
        self._resumed = False
        self._dropped = False

    @property
    def agent(self) -> AdminAgent:
        """The agent running the POST loop (for inspection)."""
        return self._agent

    def start(self) -> Deferred[AdminSessionResult]:
        """Connect and run the session; fires with the result or an L{AdminSessionError}."""
        request, psk = self._request, self._psk
        self._timer = self._clock.callLater(self._timeout, self._timed_out)
        if request.psk_kvn and request.psk_kvn != psk.kvn:
            self._finish(
                AdminSessionError(
                    f"the trigger asks for PSK key version {request.psk_kvn:02X},"
                    f" the card holds {psk.kvn:02X}",
                    FailureKind.CONFIG,
                    0,
                )
            )
            return self._result
        key = bytes(b ^ 0x5A for b in psk.key) if self._faults.wrong_psk else psk.key
        try:
            self._options = PskClientOptions(
                request.psk_identity or psk.identity,
                key,
                ciphers=self._ciphers,
                allow_weak=self._allow_weak,
            )
        except TlsConfigError as e:
            self._finish(AdminSessionError(str(e), FailureKind.CONFIG, 0))
            return self._result
        self._connect()
        return self._result

    # -- connecting and retrying ------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        self._attempts += 1
        request = self._request
        assert self._options is not None
        self.log.debug(
            "card {agent} connecting to {address}:{port} (attempt {attempt})",
            agent=request.agent_id,
            address=request.address,
            port=request.port,
            attempt=self._attempts,
        )
        try:
            plain = self._endpoints(request.address, request.port)
            endpoint: Any = wrapClientTLS(self._options, plain, clock=self._clock)
            connecting: Deferred[Any] = endpoint.connect(_ChannelFactory(self))
        except Exception:
            self._connect_failed(Failure())
            return
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, protocol: object) -> None:
        self._connecting = None

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self._done:
            return
        request = self._request
        self._retry_or_fail(
            FailureKind.UNREACHABLE,
            f"cannot connect to {request.address}:{request.port}: {failure.getErrorMessage()}",
        )

    def _retry_or_fail(self, kind: FailureKind, reason: str) -> None:
        delay = self._request.retry.next_retry_delay(self._attempts)
        if delay is None:
            tried = "attempt" if self._attempts == 1 else "attempts"
            self._finish(
                AdminSessionError(f"{reason} ({self._attempts} {tried})", kind, self._attempts)
            )
            return
        self.log.info(
            "card {agent}: {reason}; retrying in {delay} s",
            agent=self._request.agent_id,
            reason=reason,
            delay=delay,
        )
        self._retry = self._clock.callLater(delay, self._connect)

    # -- one connection ---------------------------------------------------

    def _connection_made(self, protocol: _ChannelProtocol) -> None:
        self._protocol = protocol
        if self._agent.state is AgentState.READY:
            first = self._agent.first_request()
            self._post(MALFORMED_REQUEST if self._faults.malformed_http else first)
        else:
            self._resumed = True
            self._post(self._agent.resume_request())

    def _post(self, data: bytes) -> None:
        if self._faults.post_delay:
            self._pending_write = self._clock.callLater(self._faults.post_delay, self._write, data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        self._pending_write = None
        if self._protocol is not None and not self._closing:
            self._protocol.transport.write(data)

    def _data_received(self, protocol: _ChannelProtocol, data: bytes) -> None:
        if protocol is not self._protocol or self._closing:
            return
        step = self._agent.receive(data)
        if step.kind is StepKind.SEND:
            drop_after = self._faults.drop_after_scripts
            if drop_after is not None and not self._dropped and self._agent.scripts >= drop_after:
                self._dropped = True
                self.log.info("card {agent}: dropping the channel (fault)", agent=self._agent_id)
                # Under the TLS layer: a card losing coverage sends no close_notify,
                # and Twisted's TLS abortConnection() would send one.
                getattr(protocol.transport, "transport", protocol.transport).abortConnection()
                return
            self._post(step.data)
        elif step.kind is StepKind.DONE:
            self._close(None)
        elif step.kind is StepKind.FAILED:
            self._close(AdminSessionError(step.reason, FailureKind.HTTP, self._attempts))

    def _close(self, ending: AdminSessionError | None) -> None:
        """End the session on this connection: TLS close_notify, then TCP close."""
        self._ending = ending
        self._closing = True
        if self._protocol is not None:
            self._protocol.transport.loseConnection()

    def _connection_lost(self, protocol: _ChannelProtocol, reason: Failure) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        if self._pending_write is not None:
            self._pending_write.cancel()
            self._pending_write = None
        if self._done:
            return
        if self._closing:
            self._closing = False
            self._finish(self._ending)
        elif not protocol.handshaken and reason.check(SSL.Error):
            self._finish(
                AdminSessionError(
                    f"TLS handshake failed: {reason.getErrorMessage()}",
                    FailureKind.TLS,
                    self._attempts,
                )
            )
        else:
            self._retry_or_fail(
                FailureKind.LOST, f"connection lost mid-session: {reason.getErrorMessage()}"
            )

    # -- ending -----------------------------------------------------------

    @property
    def _agent_id(self) -> str:
        return self._request.agent_id

    def _timed_out(self) -> None:
        self._timer = None
        error = AdminSessionError(
            f"the session did not end within {self._timeout:g} s",
            FailureKind.TIMEOUT,
            self._attempts,
        )
        protocol = self._protocol
        if protocol is not None:
            self._close(error)
            protocol.transport.abortConnection()
        else:
            self._finish(error)
            if self._connecting is not None:
                self._connecting.cancel()

    def _stop_timers(self) -> None:
        for call in (self._timer, self._retry, self._pending_write):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._retry = self._pending_write = None

    def _finish(self, error: AdminSessionError | None) -> None:
        if self._done:
            return
        self._done = True
        self._stop_timers()
        agent = self._agent
        if error is not None:
            self.log.info(
                "card {agent}: admin session failed: {error}", agent=self._agent_id, error=error
            )
            self._result.errback(error)
            return
        self.log.debug(
            "card {agent}: admin session done, {scripts} script(s)",
            agent=self._agent_id,
            scripts=agent.scripts,
        )
        self._result.callback(
            AdminSessionResult(agent.scripts, agent.commands, self._attempts, self._resumed)
        )

    def _cancel(self, result: Deferred[AdminSessionResult]) -> None:
        """The caller gave up: stop every timer and connection (the Deferred fails)."""
        self._done = True
        self._stop_timers()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.transport.abortConnection()


def open_admin_channel(
    clock: IReactorTime,
    endpoints: EndpointFactory | None,
    request: AdminSessionRequest,
    psk: PskCredential,
    executor: ApduExecutor,
    *,
    faults: ChannelFaults | None = None,
    timeout: float = 300.0,
    chunked: bool = True,
    ciphers: str = DEFAULT_CIPHERS,
    allow_weak: bool = False,
) -> Deferred[AdminSessionResult]:
    """Open the admin session C{request} asks for and run it to its end.

    @param clock: the reactor (or a test clock): every timer runs on it.
    @param endpoints: the TCP endpoints to use; C{None} means the real
        network through C{clock}, which must then be a reactor.
    @return: fires with an L{AdminSessionResult}, or fails with an
        L{AdminSessionError}.  Cancelling it aborts the session.

    See L{AdminChannel} for the other parameters.
    """
    channel = AdminChannel(
        clock,
        endpoints if endpoints is not None else tcp_endpoints(clock),
        request,
        psk,
        executor,
        faults=faults,
        timeout=timeout,
        chunked=chunked,
        ciphers=ciphers,
        allow_weak=allow_weak,
    )
    return channel.start()
