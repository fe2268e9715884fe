# -*- test-case-name: tests.unit.core.test_engine_relay -*-
"""Between a platform's C-APDUs and the card's Amendment B HTTP exchange.

A platform command becomes one TS 102 226 expanded command script in the
body of a C{200} answering the card's held POST; the card's next POST
carries the response script, which becomes the command's
L{ScriptResult} or L{CommandError}.  These functions hold that translation
so that the session machine deals only in states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred

from bipgw.codec.admin_http import (
    GP_COMMAND,
    AdminRequest,
    AdminResponse,
    ScriptStatus,
    script_response,
)
from bipgw.codec.apdu import ApduError, decode_command
from bipgw.codec.ram import CommandScript, RamError, ResponseScript
from bipgw.core._access import ISD_AIDS
from bipgw.core._types import CommandError, FailureReason, ScriptResult, SessionError, SessionId

END: Final = AdminResponse(status=204)
"""Ends the card's admin session (GP Amd B: 204 No Content)."""

BAD: Final = AdminResponse(status=400, keep_alive=False)
"""Refuses a POST that breaks the protocol; the server closes after it."""


@attrs.define(eq=False)
class Command:
    """A platform's command script: queued, with the card, or done.

    @ivar commands: the C-APDUs, checked.
    @ivar script: their expanded command script (C{AE}/C{AA}).
    @ivar result: fires with the L{ScriptResult} or fails.
    @ivar number: the script number once sent (the C{<n>} of the Next-URI).
    @ivar sent_at: clock time it was handed to the card.
    @ivar target: the AID of the application the card delivers the script
        to (C{X-Admin-Targeted-Application}); C{None}: the security domain
        that runs the admin session.
    """

    commands: tuple[bytes, ...]
    script: bytes
    result: Deferred[ScriptResult]
    number: int = 0
    sent_at: float = 0.0
    target: bytes | None = None


def build_command(
    commands: Sequence[bytes], definite: bool, target: bytes | None = None
) -> Command:
    """Check the platform's C-APDUs and encode them as one expanded script.

    A malformed APDU is refused here, naming its position, rather than by
    the card after a round trip over the air.

    @param definite: C{AA} with a definite length instead of the default
        indefinite C{AE 80 .. 00 00}.
    @param target: the AID (5-16 bytes) the card delivers the script to
        (GP Amd B C{X-Admin-Targeted-Application}); C{None} or one of the
        ISD's AIDs: the security domain running the session (no header).
    @raise SessionError: with L{FailureReason.INVALID_COMMAND}.
    """
    if target is not None and not (isinstance(target, bytes) and 5 <= len(target) <= 16):
        raise SessionError(
            FailureReason.INVALID_COMMAND, "a target application is an AID of 5 to 16 bytes"
        )
    if isinstance(commands, bytes | bytearray | str) or not commands:
        raise SessionError(FailureReason.INVALID_COMMAND, "a script needs at least one C-APDU")
    apdus = tuple(commands)
    for i, capdu in enumerate(apdus):
        if not isinstance(capdu, bytes):
            raise SessionError(
                FailureReason.INVALID_COMMAND, f"C-APDU {i} is {type(capdu).__name__}, not bytes"
            )
        try:
            decode_command(capdu)
        except ApduError as e:
            raise SessionError(FailureReason.INVALID_COMMAND, f"C-APDU {i}: {e}") from None
    try:
        script = CommandScript(apdus, definite).encode()
    except RamError as e:
        raise SessionError(FailureReason.INVALID_COMMAND, str(e)) from None
    return Command(apdus, script, Deferred(), target=None if target in ISD_AIDS else target)


def command_response(command: Command, next_uri: str) -> AdminResponse:
    """The C{200} that hands C{command} to the card, answered at C{next_uri}."""
    return script_response(next_uri, command.script, GP_COMMAND, command.target)


def same_target(target: str, expected: str) -> bool:
    """Whether the card POSTed to the Next-URI it was given.

    Cards echo it verbatim; some prefix scheme and host (the absolute form
    of RFC 9112 section 3.2.2), which names the same resource.
    """
    if target == expected:
        return True
    parts = urlsplit(target)
    if not (parts.scheme and parts.netloc):
        return False
    return parts.path + (f"?{parts.query}" if parts.query else "") == expected


def read_answer(
    session_id: SessionId, command: Command, request: AdminRequest, now: float
) -> ScriptResult | CommandError:
    """Turn the card's response POST into the command's result or failure.

    A script status other than C{ok} fails the command naming the status
    (Amd B: no response script comes with it); so does a response script
    that does not decode, one with the C{90} bad-format TLV (the card could
    not parse our script) and one with more R-APDUs than we sent C-APDUs.
    A missing X-Admin-Script-Status is read as C{ok} when a script follows.
    """
    number = command.number
    status = request.script_status
    if status is not None and status != ScriptStatus.OK:
        return CommandError(
            FailureReason.SCRIPT_STATUS,
            f"script {number}: the card reported X-Admin-Script-Status: {status}",
            session_id,
            script=number,
            script_status=str(status),
        )
    try:
        answer = ResponseScript.decode(request.body)
    except RamError as e:
        return CommandError(
            FailureReason.BAD_RESPONSE, f"script {number}: {e}", session_id, script=number
        )
    if answer.bad_format is not None:
        return CommandError(
            FailureReason.SCRIPT_REJECTED,
            f"script {number}: bad format, {answer.bad_format.name.lower().replace('_', ' ')}",
            session_id,
            script=number,
        )
    if len(answer.responses) > len(command.commands):
        return CommandError(
            FailureReason.BAD_RESPONSE,
            f"script {number}: {len(answer.responses)} R-APDUs for {len(command.commands)} C-APDUs",
            session_id,
            script=number,
        )
    executed = len(answer.responses) if answer.executed is None else answer.executed
    return ScriptResult(
        session_id=session_id,
        script=number,
        commands=command.commands,
        responses=answer.responses,
        executed=executed,
        sent_at=command.sent_at,
        answered_at=now,
    )
