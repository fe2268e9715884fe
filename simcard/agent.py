# -*- test-case-name: tests.unit.simcard.test_agent -*-
"""The card's SCP81 admin agent: the GlobalPlatform Amendment B POST loop, without I/O.

Over its TLS-PSK channel the card POSTs to the trigger URI, the server
answers C{200} with an expanded command script, the card runs it and POSTs
the response script to the C{X-Admin-Next-URI}, and so on until a C{204}
(PROTOCOLS.md 3.3, 3.4).  L{AdminAgent} is that loop as a pure state
machine, bytes in and the next request (or "done", or "failed: why") out,
so the channel (L{simcard.channel}) stays a thin shell and every exchange,
the public live trace included, is testable with plain bytes.

Where and as whom to POST comes from the trigger
(L{AdminSessionRequest<simcard.session_request.AdminSessionRequest>}).
Also here: the contract APDUs run through (L{ApduExecutor}), and the
TS 102 226 rule that stops a script (L{script_continues}), which the OTA
receiver's compact scripts follow too.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Final, Protocol

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
from bipgw.codec.ram import CommandScript, RamError, ResponseScript
from simcard.session_request import AdminSessionRequest

__all__ = [
    "GP_ISD_AID",
    "AdminAgent",
    "AgentState",
    "AgentStep",
    "ApduExecutor",
    "StepKind",
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
