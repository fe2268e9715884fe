# -*- test-case-name: tests.unit.simcard.test_agent -*-
"""The card's SCP81 admin agent: the GlobalPlatform Amendment B POST loop, without I/O.

Over its TLS-PSK channel the card POSTs to the trigger URI, the server
answers C{200} with an expanded command script, the card runs it and POSTs
the response script to the C{X-Admin-Next-URI}, and so on until a C{204}
(PROTOCOLS.md 3.3, 3.4).  L{AdminAgent} is that loop as a pure state
machine, bytes in and the next request (or "done", or "failed: why") out,
so the channel (L{simcard.channel}) stays a thin shell and every exchange,
the public live trace included, is testable with plain bytes.

Also here: what a trigger asks for (L{AdminSessionRequest}, with its
L{SessionRetryPolicy}), the contract APDUs run through (L{ApduExecutor}),
and the TS 102 226 rule that stops a script (L{script_continues}), which
the OTA receiver's compact scripts follow too.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Final, Protocol

import attrs
from attrs import field, frozen
from twisted.logger import Logger

from bipgw.codec.admin_http import (
    DEFAULT_MAX_BODY,
    ETSI_COMMAND,
    ETSI_RESPONSE,
    GP_RESPONSE,
    AdminHttpError,
    AdminRequest,
    AdminResponse,
    ResponseParser,
    ScriptStatus,
    encode_request,
)
from bipgw.codec.ram import (
    AdminSessionTrigger,
    BearerDescription,
    CommandScript,
    ConnectionParams,
    PushBipOpening,
    PushTcpConnection,
    RamError,
    ResponseScript,
    TransportProtocol,
)
from bipgw.codec.ram import RetryPolicy as TriggerRetryPolicy
from simcard.model import AdminDefaults

__all__ = [
    "GP_ISD_AID",
    "AdminAgent",
    "AdminSessionRequest",
    "AgentState",
    "AgentStep",
    "ApduExecutor",
    "SessionRetryPolicy",
    "StepKind",
    "TriggerKind",
    "script_continues",
]

GP_ISD_AID: Final = bytes.fromhex("A000000151000000")
"""The GlobalPlatform ISD AID the agent re-selects after a targeted script."""

_SW_TECHNICAL_PROBLEM: Final = 0x6F00
_SW_TRUNCATED: Final = 0x62F1
_CONTINUE_SW1: Final = frozenset({0x61, 0x62, 0x63, 0x91, 0x9F})


class ApduExecutor(Protocol):
    """Whatever runs one APDU on the card (C{simcard.card.SimCard} in the fleet).

    The contract of docs/architecture.md: one C-APDU in, the R-APDU bytes
    (data then SW1 SW2) out, and never an exception for a bad APDU.
    """

    def transmit(self, capdu: bytes) -> bytes:
        """Run C{capdu}; return the R-APDU."""


def script_continues(sw: int) -> bool:
    """Whether a remote script goes on after a command answered C{sw}.

    TS 102 226 stops a script (compact or expanded) at the first command
    that fails; normal endings (C{9000}, C{61XX}, C{9FXX}, C{91XX}) and
    warnings (C{62XX}, C{63XX}, e.g. GlobalPlatform's C{6310} "more data")
    are not failures, except C{62F1}, which in the expanded format means
    "response data truncated, processing stopped" (PROTOCOLS.md 2.2).
    """
    return sw == 0x9000 or (sw >> 8 in _CONTINUE_SW1 and sw != _SW_TRUNCATED)


def _check_non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if type(value) not in (int, float) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative number, not {value!r}")


@frozen
class SessionRetryPolicy:
    """How often, and how long apart, a card retries an admin session (Amd B C{86}).

    The trigger's retry policy gives a retry counter and a waiting delay:
    after a failed attempt the card waits C{delay} seconds and tries again,
    at most C{retries} times, then reports the failure (PROTOCOLS.md 3.5;
    the details are UNVERIFIED, this is the plain reading).  A PUSH carries
    no policy, so the default is "no retry".

    @ivar retries: how many retries follow the first attempt.
    @ivar delay: seconds to wait before each retry.
    """

    retries: int = field(default=0, validator=_check_non_negative)
    delay: float = field(default=0.0, validator=_check_non_negative)

    @classmethod
    def from_trigger(cls, policy: TriggerRetryPolicy) -> SessionRetryPolicy:
        """The schedule a decoded Amd B retry policy (C{86}) asks for."""
        return cls(policy.counter, policy.delay.total_seconds())

    def next_retry_delay(self, attempt: int) -> float | None:
        """The wait before the next try, after C{attempt} failed attempts; C{None} to give up.

        @param attempt: how many attempts have failed so far (1 after the first).
        """
        if attempt < 1:
            raise ValueError(f"attempt counts failed attempts from 1, not {attempt}")
        return float(self.delay) if attempt <= self.retries else None


class TriggerKind(enum.Enum):
    """What asked the card to open its admin session."""

    PUSH = "push"
    """The TS 102 226 PUSH C{80 EC 01 01/03} in a compact script."""
    AMDB = "amdb"
    """The GP Amd B administration session triggering parameters C{81}."""


def _check_text(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable():
        raise ValueError(f"{attribute.name} must be non-empty printable ASCII, not {value!r}")


def _int_in(low: int, high: int, *, optional: bool = False) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"{attribute.name} must be an int in {low}..{high}, not {value!r}")

    return check


@frozen(kw_only=True)
class AdminSessionRequest:
    """Everything a card needs to open one admin session, as its trigger said.

    Built by the OTA receiver from a PUSH or an Amd B trigger, with what
    the trigger leaves out taken from the card's personalised
    L{AdminDefaults<simcard.model.AdminDefaults>}.

    @ivar address: where to connect: the IP address from the trigger (text),
        or the default admin host name.
    @ivar port: the TCP port to connect to.
    @ivar host: the HTTP C{Host} header value.
    @ivar uri: the target of the first POST.
    @ivar agent_id: the C{X-Admin-From} value.
    @ivar bearer: the bearer description the trigger asked for, if any.
    @ivar buffer_size: the channel buffer size asked for, if any.
    @ivar apn: the network access name asked for, if any.
    @ivar psk_identity: the PSK identity the trigger names (C{85}); C{None}
        means the card's own.
    @ivar psk_kvn: the key version of the PSK the trigger names, if any.
    @ivar psk_kid: the key identifier of that PSK, if any.
    @ivar retry: the retry schedule (none for a PUSH).
    @ivar trigger: what asked for the session.
    """

    address: str = field(validator=_check_text)
    port: int = field(validator=_int_in(1, 0xFFFF))
    host: str = field(validator=_check_text)
    uri: str = field(validator=_check_text)
    agent_id: str = field(validator=_check_text)
    bearer: BearerDescription | None = None
    buffer_size: int | None = field(default=None, validator=_int_in(0, 0xFFFF, optional=True))
    apn: str | None = None
    psk_identity: bytes | None = None
    psk_kvn: int | None = field(default=None, validator=_int_in(0, 0xFF, optional=True))
    psk_kid: int | None = field(default=None, validator=_int_in(0, 0xFF, optional=True))
    retry: SessionRetryPolicy = field(factory=SessionRetryPolicy)
    trigger: TriggerKind = TriggerKind.PUSH

    @classmethod
    def from_push(
        cls, push: PushBipOpening | PushTcpConnection, defaults: AdminDefaults, agent_id: str
    ) -> AdminSessionRequest:
        """The session a TS 102 226 PUSH (P2 C{01}/C{03}) asks for.

        What the PUSH leaves out comes from the card's C{defaults}
        (TS 102 226 9.2.1: the PUSH's objects take precedence).

        @raise ValueError: a transport other than TCP client (remote), or
            port 0: the simulated BIP stack has nothing else.
        """
        params = ConnectionParams(
            push.bearer, push.buffer_size, push.nan, push.transport, push.address
        )
        return cls._merge(params, defaults, agent_id, TriggerKind.PUSH)

    @classmethod
    def from_trigger(
        cls, trigger: AdminSessionTrigger, defaults: AdminDefaults, agent_id: str
    ) -> AdminSessionRequest:
        """The session GP Amd B triggering parameters (C{81}) ask for, over C{defaults}.

        @raise ValueError: as L{from_push}.
        """
        http, security = trigger.http, trigger.security
        return cls._merge(
            trigger.connection or ConnectionParams(),
            defaults,
            agent_id,
            TriggerKind.AMDB,
            host=http.host if http is not None else None,
            uri=http.uri if http is not None else None,
            agent_id_override=http.agent_id if http is not None else None,
            psk_identity=security.psk_identity if security is not None else None,
            psk_kvn=security.kvn if security is not None else None,
            psk_kid=security.kid if security is not None else None,
            retry=SessionRetryPolicy.from_trigger(trigger.retry) if trigger.retry else None,
        )

    @classmethod
    def _merge(
        cls,
        params: ConnectionParams,
        defaults: AdminDefaults,
        agent_id: str,
        kind: TriggerKind,
        *,
        host: str | None = None,
        uri: str | None = None,
        agent_id_override: str | None = None,
        psk_identity: bytes | None = None,
        psk_kvn: int | None = None,
        psk_kid: int | None = None,
        retry: SessionRetryPolicy | None = None,
    ) -> AdminSessionRequest:
        transport, address = params.transport, params.address
        if transport is not None and transport.protocol is not TransportProtocol.TCP_CLIENT_REMOTE:
            raise ValueError(f"transport {transport.protocol.name} is not supported")
        return cls(
            address=str(address.address) if address is not None else defaults.host,
            port=transport.port if transport is not None else defaults.port,
            host=host or defaults.host,
            uri=uri or defaults.uri,
            agent_id=agent_id_override or agent_id,
            bearer=params.bearer,
            buffer_size=params.buffer_size.size if params.buffer_size is not None else None,
            apn=params.nan.name if params.nan is not None else None,
            psk_identity=psk_identity,
            psk_kvn=psk_kvn,
            psk_kid=psk_kid,
            retry=retry or SessionRetryPolicy(),
            trigger=kind,
        )


class StepKind(enum.Enum):
    """What the channel must do after feeding the agent."""

    SEND = "send"
    """Write L{AgentStep.data} (the next POST) to the server."""
    WAIT = "wait"
    """Nothing yet: the server's response is not complete."""
    DONE = "done"
    """The session ended normally: close the channel (TLS close_notify)."""
    FAILED = "failed"
    """The session cannot go on (L{AgentStep.reason} says why): close the channel."""


def _size_only(data: bytes) -> str:
    # A POST carries card data; logs get sizes.
    return f"<{len(data)} bytes>"


@frozen
class AgentStep:
    """The agent's answer to one input.

    @ivar kind: what to do.
    @ivar data: the bytes to send, for L{StepKind.SEND}.
    @ivar reason: why the session failed, for L{StepKind.FAILED}.
    """

    kind: StepKind
    data: bytes = field(default=b"", repr=_size_only)
    reason: str = ""


class AgentState(enum.Enum):
    """Where the agent is in the POST loop."""

    READY = "ready"
    """No request sent yet."""
    WAITING = "waiting"
    """A POST is out; the server's response is awaited."""
    DONE = "done"
    """The server ended the session."""
    FAILED = "failed"
    """The session broke; see L{AdminAgent.failure}."""


class AdminAgent:
    """One admin session's POST loop (GP Amd B), as a state machine.

    Feed it what the server sends (L{receive}); it answers with the next
    request to send, "wait", "done" or "failed".  Scripts run through the
    injected L{ApduExecutor}, in order, stopping at the first failing status
    word (L{script_continues}); the response script takes the command
    script's form (C{AF} for C{AE}, C{AB} with the executed count for
    C{AA}).  Command scripts for another application
    (C{X-Admin-Targeted-Application}) run after a SELECT of that AID; when
    the SELECT fails the POST says C{unknown-application}, and when the
    script cannot be parsed it says C{script-format-error}, both without a
    body (PROTOCOLS.md 3.3).

    @param request: where and as whom to POST.
    @param executor: runs the C-APDUs.
    @param chunked: send response scripts with C{Transfer-Encoding:
        chunked}, as the real card of the live trace does; C{False} sends
        C{Content-Length}.
    @param isd_aid: the AID selected again after a targeted script.
    @param max_body: the largest command script accepted from the server.

    @ivar scripts: command scripts run so far.
    @ivar commands: C-APDUs run so far (across scripts).
    @ivar failure: why the session failed, once it has.
    """

    log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        request: AdminSessionRequest,
        executor: ApduExecutor,
        *,
        chunked: bool = True,
        isd_aid: bytes = GP_ISD_AID,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._request = request
        self._executor = executor
        self._chunked = chunked
        self._isd_aid = isd_aid
        self._max_body = max_body
        self._parser = ResponseParser(max_body=max_body)
        self._state = AgentState.READY
        self._last: AdminRequest | None = None
        self._away = False
        self.scripts = 0
        self.commands = 0
        self.failure: str | None = None

    @property
    def state(self) -> AgentState:
        """Where the loop is."""
        return self._state

    @property
    def finished(self) -> bool:
        """Whether the session is over, normally or not."""
        return self._state in (AgentState.DONE, AgentState.FAILED)

    def first_request(self) -> bytes:
        """The session's first POST: to the trigger URI, no body (PROTOCOLS.md 3.3).

        @raise RuntimeError: the session has already started.
        """
        if self._state is not AgentState.READY:
            raise RuntimeError(f"first_request() in state {self._state.value}")
        request = self._request
        self._last = AdminRequest(
            target=request.uri, host=request.host, admin_from=request.agent_id
        )
        self._state = AgentState.WAITING
        return encode_request(self._last)

    def resume_request(self) -> bytes:
        """The last POST again, with C{X-Admin-Resume: true}, for a new connection.

        A card whose channel broke while a POST was unanswered re-sends it
        after reconnecting (GP SE-RAM; observed live).  Whatever part of a
        response had arrived on the old connection is dropped.

        @raise RuntimeError: no POST is awaiting an answer.
        """
        if self._state is not AgentState.WAITING or self._last is None:
            raise RuntimeError(f"resume_request() in state {self._state.value}")
        self._parser = ResponseParser(max_body=self._max_body)
        self._last = attrs.evolve(self._last, resume=True)
        return self._encode(self._last)

    def receive(self, data: bytes) -> AgentStep:
        """Take bytes from the server; say what to do next."""
        if self._state is not AgentState.WAITING:
            if self.finished:
                return AgentStep(
                    StepKind.FAILED if self._state is AgentState.FAILED else StepKind.DONE,
                    reason=self.failure or "",
                )
            return self._fail(f"{len(data)} bytes from the server before the first POST")
        try:
            responses = [r for r in self._parser.feed(data) if r.status >= 200]
        except AdminHttpError as e:
            return self._fail(f"bad HTTP from the server: {e}")
        if not responses:
            return AgentStep(StepKind.WAIT)
        if len(responses) > 1:
            return self._fail(f"the server sent {len(responses)} responses to one POST")
        return self._answer(responses[0])

    def _fail(self, reason: str) -> AgentStep:
        self._state = AgentState.FAILED
        self.failure = reason
        return AgentStep(StepKind.FAILED, reason=reason)

    def _done(self) -> AgentStep:
        self._state = AgentState.DONE
        return AgentStep(StepKind.DONE)

    def _answer(self, response: AdminResponse) -> AgentStep:
        if response.status == 204:
            return self._done()
        if response.status != 200:
            return self._fail(f"the server answered {response.status} {response.reason}".strip())
        if not response.body and response.next_uri is None:
            return self._done()
        status, body = self._run(response)
        if response.next_uri is None:
            # GP SE-RAM: a 200 without Next-URI is run but not reported.
            return self._done()
        command_type = response.content_type
        etsi = command_type is not None and command_type.media_type == ETSI_COMMAND.media_type
        self._last = AdminRequest(
            target=response.next_uri,
            host=self._request.host,
            admin_from=self._request.agent_id,
            script_status=status,
            content_type=(ETSI_RESPONSE if etsi else GP_RESPONSE) if body else None,
            body=body,
        )
        return AgentStep(StepKind.SEND, self._encode(self._last))

    def _encode(self, request: AdminRequest) -> bytes:
        return encode_request(request, chunked=self._chunked and bool(request.body))

    def _run(self, response: AdminResponse) -> tuple[ScriptStatus, bytes]:
        """Run the command script of C{response}; return the status and response script."""
        target = response.targeted_application
        if target is not None:
            if not self._select(target):
                return ScriptStatus.UNKNOWN_APPLICATION, b""
            self._away = target != self._isd_aid
        elif self._away:
            self._select(self._isd_aid)
            self._away = False
        try:
            script = CommandScript.decode(response.body, max_size=self._max_body)
        except RamError as e:
            self.log.info("command script refused: {error}", error=str(e))
            return ScriptStatus.SCRIPT_FORMAT_ERROR, b""
        responses: list[bytes] = []
        for capdu in script.commands:
            rapdu = self._transmit(capdu)
            responses.append(rapdu)
            if not script_continues(int.from_bytes(rapdu[-2:], "big")):
                break
        self.scripts += 1
        self.commands += len(responses)
        result = ResponseScript(
            tuple(responses), len(responses) if script.definite else None, script.definite
        )
        return ScriptStatus.OK, result.encode()

    def _select(self, aid: bytes) -> bool:
        capdu = bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00"
        rapdu = self._transmit(capdu)
        return script_continues(int.from_bytes(rapdu[-2:], "big"))

    def _transmit(self, capdu: bytes) -> bytes:
        """Run one C-APDU; an executor that breaks its contract answers C{6F00}."""
        try:
            rapdu = self._executor.transmit(capdu)
        except Exception:
            self.log.failure("APDU executor raised; answering 6F00")
            rapdu = b""
        if not isinstance(rapdu, bytes) or len(rapdu) < 2:
            return _SW_TECHNICAL_PROBLEM.to_bytes(2, "big")
        return rapdu
