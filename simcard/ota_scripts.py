# -*- test-case-name: tests.unit.simcard.test_ota_receiver -*-
"""What a card runs from a verified SMS-PP command packet: scripts and triggers.

The OTA receiver (L{simcard.ota_receiver}) checks a packet's security;
L{ScriptRunner} runs its secured data, which is one of:

  - the GP Amd B triggering parameters C{81 ...}: an admin session request;
  - a TS 102 226 expanded script (it starts with the template tag C{AA} or
    C{AE}: RAM over SMS): its C-APDUs run in order until one fails, and the
    PoR data is a response template with every executed command's R-APDU
    (L{bipgw.codec.ram.RemoteResult}); a template the card cannot parse
    runs nothing and answers "bad format";
  - a compact script (anything else): the same run, and the PoR data is
    the count, the last SW and the last data.

A PUSH C{80 EC 01 01}/C{03} among the commands is the security domain's
own: it yields an L{AdminSessionRequest} instead of reaching the executor.
Pure: the card (an L{ApduExecutor}) runs the rest.
"""

from __future__ import annotations

from typing import ClassVar, Final

from twisted.logger import Logger

from bipgw.codec.ota import CompactResult
from bipgw.codec.ram import (
    AdminSessionTrigger,
    CommandScript,
    PushBipOpening,
    PushTcpConnection,
    RamError,
    RemoteFormat,
    RemoteResult,
    decode_push,
    split_compact,
)
from simcard.agent import ApduExecutor, script_continues
from simcard.model import AdminDefaults
from simcard.session_request import AdminSessionRequest

__all__ = ["ScriptRunner"]

_SW_OK: Final = b"\x90\x00"
_SW_INCORRECT_DATA: Final = b"\x6a\x80"
_SW_NOT_SUPPORTED: Final = b"\x6a\x81"
_SW_WRONG_LENGTH: Final = 0x6700
_TRIGGER_TAG: Final = 0x81
_EXPANDED_TAGS: Final = (0xAA, 0xAE)
_BAD_FORMAT_UNKNOWN_TAG: Final = 0x01
_BAD_FORMAT_WRONG_LENGTH: Final = 0x02
_PUSH_HEADER: Final = b"\x80\xec"


class ScriptRunner:
    """Runs the secured data of a card's verified packets (module docstring).

    @param executor: runs the C-APDUs (the card).
    @param admin: the card's personalised admin session defaults.
    @param agent_id: the C{X-Admin-From} value by default.
    """

    log: ClassVar[Logger] = Logger()

    def __init__(self, executor: ApduExecutor, admin: AdminDefaults, agent_id: str) -> None:
        self._executor = executor
        self._admin = admin
        self._agent_id = agent_id

    def run(
        self, data: bytes
    ) -> tuple[CompactResult | None, AdminSessionRequest | None, str, bytes]:
        """Run a packet's secured data.

        @return: the compact result (if a compact script ran), the admin
            session asked for (a PUSH or trigger), why a script stopped, and
            the PoR's response data.
        """
        if data[:1] == bytes((_TRIGGER_TAG,)):
            try:
                trigger = AdminSessionTrigger.decode(data)
                triggered = AdminSessionRequest.from_trigger(trigger, self._admin, self._agent_id)
            except (RamError, ValueError) as e:
                refused = CompactResult(0, int.from_bytes(_SW_INCORRECT_DATA, "big"))
                return refused, None, f"bad triggering parameters: {e}", refused.to_bytes()
            return None, triggered, "", b""
        if data[:1] and data[0] in _EXPANDED_TAGS:
            return self._expanded(data)
        try:
            commands = split_compact(data)
        except RamError as e:
            result = CompactResult(0, _SW_WRONG_LENGTH)
            return result, None, f"bad compact script: {e}", result.to_bytes()
        rapdus, request, reason = self._run(commands)
        rapdu = rapdus[-1] if rapdus else _SW_OK
        result = CompactResult(len(rapdus), int.from_bytes(rapdu[-2:], "big"), rapdu[:-2])
        return result, request, reason, result.to_bytes()

    def _expanded(
        self, data: bytes
    ) -> tuple[CompactResult | None, AdminSessionRequest | None, str, bytes]:
        """Run an expanded script (TS 102 226 5.2); the PoR data is the response template."""
        try:
            commands = CommandScript.decode(data).commands
        except RamError as e:
            code = _BAD_FORMAT_UNKNOWN_TAG if "tag" in str(e) else _BAD_FORMAT_WRONG_LENGTH
            rejected = RemoteResult(RemoteFormat.EXPANDED, 0, (), rejected=code)
            return None, None, f"bad expanded script: {e}", rejected.encode()
        rapdus, request, reason = self._run(commands)
        result = RemoteResult.for_commands(RemoteFormat.EXPANDED, rapdus)
        return None, request, reason, result.encode()

    def _run(
        self, commands: tuple[bytes, ...]
    ) -> tuple[list[bytes], AdminSessionRequest | None, str]:
        """Run C{commands} until one fails: their R-APDUs, the session asked for, why it stopped."""
        request: AdminSessionRequest | None = None
        rapdus: list[bytes] = []
        for index, capdu in enumerate(commands):
            if capdu[:2] == _PUSH_HEADER:
                rapdu, pushed = self._push(capdu)
                request = pushed or request
            else:
                rapdu = self._transmit(capdu)
            rapdus.append(rapdu)
            sw = int.from_bytes(rapdu[-2:], "big")
            if not script_continues(sw):
                reason = f"script stopped at command {index + 1} of {len(commands)}: SW {sw:04X}"
                return rapdus, request, reason
        return rapdus, request, ""

    def _transmit(self, capdu: bytes) -> bytes:
        try:
            rapdu = self._executor.transmit(capdu)
        except Exception:
            self.log.failure("APDU executor raised; answering 6F00")
            return b"\x6f\x00"
        return rapdu if isinstance(rapdu, bytes) and len(rapdu) >= 2 else b"\x6f\x00"

    def _push(self, capdu: bytes) -> tuple[bytes, AdminSessionRequest | None]:
        """The security domain's answer to a PUSH, and the session it asks for."""
        try:
            push = decode_push(capdu)
        except RamError:
            return _SW_INCORRECT_DATA, None
        if not isinstance(push, PushBipOpening | PushTcpConnection):
            return _SW_NOT_SUPPORTED, None  # CAT_TP and identification: no such stack here
        try:
            request = AdminSessionRequest.from_push(push, self._admin, self._agent_id)
        except ValueError:
            return _SW_INCORRECT_DATA, None
        return _SW_OK, request
