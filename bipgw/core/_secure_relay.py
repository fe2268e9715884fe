# -*- test-case-name: tests.unit.core.test_secured,tests.integration.test_secured_relay_card -*-
"""Platform APDUs through the card's ISD secure channel (SCP03): the runner.

"Keys never leave the gateway": the platform of a service that asks for
the ISD's secure channel sends plain C-APDUs; L{SecuredRelay} opens an
SCP03 session with the card inside the admin session, with the card's keys
from an L{IScp03KeySource}, wraps every command and checks every answer.
The platform never sees a key, a cryptogram or a MAC.

Opening costs one round trip: the first card script is C{SELECT ISD,
INITIALIZE UPDATE}; once the card cryptogram verifies, EXTERNAL
AUTHENTICATE heads the script of the first wrapped commands.  Wrapping
them before the card accepted it is safe: a card that refuses it (C{6300},
a warning, does not stop a script) has no session and refuses every
protected command after it (C{6982}, which does), and no answer is
trusted before the refusal is seen.  The channel is a chain (C-MAC
chaining, a command counter for the ICV) and a card stops a script at its
first error, so the relay keeps the state after each wrapped command (the
codec's pure L{wrap_command}/L{unwrap_response}) and goes on from the last
command the card ran.

The rule for what is wrapped and when the channel is re-opened:

  1. Commands are wrapped while the ISD is selected.  A SELECT (ISO class,
     INS C{A4}) is sent as it is: the card takes it before any channel,
     and it ends the ISD's session (GP ends a session when its application
     is deselected; the simulated card ends it on any SELECT).  After a
     SELECT of another application, commands pass as they are, in that
     script and later ones, until the ISD is selected again.  What was
     selected is read from the FCI (tag C{84}) when the answer has one,
     else from the AID asked for (none, or the ISD's, is the ISD); a
     refused SELECT is taken to leave the selection as it was.
  2. The next command for the ISD after the session ended re-opens it,
     splitting the platform's script if needed; the platform gets one
     result for its script.
  3. A card without a session answers a protected command C{6982} (some
     C{6985}).  A wrapped command answered so in a script that did not
     itself open the channel means the session was lost since (a SELECT or
     reset the relay did not see, a card abort): the relay re-opens and
     sends that command and the rest again.  Both words are ISO 7816-4
     checking errors, refusals before processing, so nothing ran twice;
     the same word in the re-opening script is the command's own answer.
  4. Any other failure closes the channel and the next command re-opens
     it; but a failed opening (a step refused, a card cryptogram that does
     not verify) is not retried in the admin session: keys and card will
     not change, and cards count failed authentications.

Failures reach the platform as L{SecureChannelError}, a L{CommandError}
(the admin session goes on) naming the step.  Messages and logs carry
status words and the codec's reasons, never keys or cryptograms.  Every
command of the session must go through its one relay, or the chain breaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs
from twisted.internet.defer import Deferred, DeferredLock, fail
from twisted.logger import Logger

from bipgw.codec.apdu import ApduError, CommandApdu, ResponseApdu
from bipgw.codec.scp03 import (
    INS_EXTERNAL_AUTHENTICATE,
    INS_INITIALIZE_UPDATE,
    ChannelState,
    CryptogramError,
    Scp03Error,
    SecurityLevel,
    has_secure_messaging,
    unwrap_response,
    wrap_command,
)
from bipgw.codec.tlv import TlvError, decode_ber, find
from bipgw.core._scp03 import (
    DEFAULT_LEVEL,
    GP_ISD_AID,
    HostSessionFactory,
    Scp03Step,
    ScriptRunner,
    SecureChannelError,
)
from bipgw.core._types import FailureReason, ScriptResult, SessionError

__all__ = ["SecuredRelay"]

_LOST: Final = frozenset({0x6982, 0x6985})
"""Status words with which a card refuses a protected command outside a session."""
_INS_SELECT: Final = 0xA4
_SM_OVERHEAD: Final = 32
"""At most 16 bytes of padding and a 16-byte MAC are added to a command's data."""
_MAX_DATA: Final = 65535 - _SM_OVERHEAD


def _sw(rapdu: bytes) -> int:
    return (rapdu[-2] << 8) | rapdu[-1]


def _accepted(sw: int) -> bool:
    """A selection took place: normal end or warning (C{6283}: card locked)."""
    return sw == 0x9000 or sw >> 8 in (0x62, 0x63)


def _is_select(apdu: CommandApdu) -> bool:
    return apdu.ins == _INS_SELECT and apdu.cla & 0x80 == 0


def _fci_aid(data: bytes) -> bytes | None:
    """The DF name (tag C{84}) of a SELECT's FCI, if it has one."""
    try:
        found = find(decode_ber(data), 0x84) if data[:1] == b"\x6f" else None
    except TlvError:
        return None
    return None if found is None else found.value


@attrs.frozen
class _Sent:
    """One platform command as sent in a card script.

    @ivar index: its position in the platform's script.
    @ivar wire: the bytes sent.
    @ivar state: the channel state after it, when wrapped; C{None} when sent as is.
    @ivar select: for a SELECT by name, the AID it asks for.
    """

    index: int
    wire: bytes = attrs.field(repr=False)
    state: ChannelState | None = attrs.field(default=None, repr=False)
    select: bytes | None = attrs.field(default=None, repr=False)
    is_select: bool = False


@attrs.define
class _Progress:
    """The answers gathered for one platform script, across card scripts."""

    answers: list[bytes] = attrs.Factory(list)
    first: ScriptResult | None = None
    last: ScriptResult | None = None

    def took(self, result: ScriptResult) -> None:
        self.first = self.first or result
        self.last = result


class SecuredRelay:
    """Runs a platform's plain C-APDUs through the card's ISD secure channel.

    @param session: the admin session (L{bipgw.core.Session}).
    @param new_host: makes the host side of each new SCP03 session; see
        L{host_session_factory}.
    @param level: the security level to open with (Amendment D Table 7-6):
        L{DEFAULT_LEVEL} (C{13}), C{03} (no R-MAC, for cards without it), C{33}
        (answers encrypted too); C{01}/C{11} (MAC only) are accepted.
    @param isd_aid: the ISD's AID, selected before INITIALIZE UPDATE.
    @raise ValueError: a level that is not defined or protects no command.
    """

    _log = Logger()

    def __init__(
        self,
        session: ScriptRunner,
        new_host: HostSessionFactory,
        *,
        level: int = DEFAULT_LEVEL,
        isd_aid: bytes = GP_ISD_AID,
    ) -> None:
        if level not in (0x01, 0x03, 0x11, 0x13, 0x33):
            raise ValueError(
                f"security level {level:#04x} is not one of 01, 03, 11, 13, 33"
                " (a level without C-MAC protects no command)"
            )
        if not 5 <= len(isd_aid) <= 16:
            raise ValueError(f"an AID is 5 to 16 bytes, got {len(isd_aid)}")
        self._session = session
        self._new_host = new_host
        self._level = SecurityLevel(level)
        self._isd_aid = bytes(isd_aid)
        self._select_isd = CommandApdu(0x00, _INS_SELECT, 0x04, 0x00, self._isd_aid, 256).encode()
        self._lock = DeferredLock()
        self._state: ChannelState | None = None
        self._kvn: int | None = None
        self._isd_selected = True
        self._broken: tuple[Scp03Step, str, int, int | None] | None = None

    def __repr__(self) -> str:
        shown = "open" if self.is_open else "closed"
        return f"<SecuredRelay {self._session.id} {shown}, level {self._level.value:02X}>"

    @property
    def is_open(self) -> bool:
        """Whether a session with the card is open (the next ISD command uses it)."""
        return self._state is not None

    @property
    def security_level(self) -> SecurityLevel:
        """The level sessions are opened with."""
        return self._level

    @property
    def key_version(self) -> int | None:
        """The key version the card used for the open session, if one is open."""
        return self._kvn if self.is_open else None

    @property
    def commands_protected(self) -> int:
        """Commands wrapped in the open session: its encryption counter (0 if none)."""
        return 0 if self._state is None else self._state.counter

    def execute(
        self, commands: Sequence[bytes], *, definite: bool = False
    ) -> Deferred[ScriptResult]:
        """Run the plain C{commands} through the channel; fire with the plain answers.

        The result is the platform's view: its C-APDUs and the opened
        R-APDUs, shorter when the card stopped at an error; its C{script}
        is the last card script that carried them.  Calls are run one after
        the other, in order.

        @return: fails with L{SecureChannelError} when the channel cannot be
            opened or an answer does not verify, with L{SessionError}
            (C{INVALID_COMMAND}) for commands the relay will not send, or as
            L{bipgw.core.Session.execute} fails.
        """
        try:
            plain = self._check(commands)
        except SessionError as e:
            return fail(e)
        return self._lock.run(
            lambda: Deferred.fromCoroutine(self._run(tuple(commands), plain, definite))
        )

    # -- internals --------------------------------------------------------

    def _check(self, commands: Sequence[bytes]) -> list[CommandApdu]:
        def refuse(detail: str) -> SessionError:
            return SessionError(FailureReason.INVALID_COMMAND, detail, self._session.id)

        if isinstance(commands, bytes | bytearray | str) or not commands:
            raise refuse("a script needs at least one C-APDU")
        plain: list[CommandApdu] = []
        for i, raw in enumerate(commands):
            if not isinstance(raw, bytes):
                raise refuse(f"C-APDU {i} is {type(raw).__name__}, not bytes")
            try:
                apdu = CommandApdu.decode(raw)
            except ApduError as e:
                raise refuse(f"C-APDU {i}: {e}") from None
            if _is_select(apdu):
                plain.append(apdu)
                continue
            if has_secure_messaging(apdu.cla):
                raise refuse(
                    f"C-APDU {i}: CLA {apdu.cla:02X} announces secure messaging;"
                    " send plain commands, the gateway protects them"
                )
            if apdu.cla & 0x80 and apdu.ins in (INS_INITIALIZE_UPDATE, INS_EXTERNAL_AUTHENTICATE):
                raise refuse(f"C-APDU {i}: the gateway runs the secure channel's authentication")
            if len(apdu.data) > _MAX_DATA:
                raise refuse(
                    f"C-APDU {i}: {len(apdu.data)} data bytes leave no room for secure"
                    f" messaging (at most {_MAX_DATA})"
                )
            plain.append(apdu)
        return plain

    async def _run(
        self, commands: tuple[bytes, ...], plain: list[CommandApdu], definite: bool
    ) -> ScriptResult:
        progress = _Progress()
        i = 0
        while i < len(plain):
            prefix: list[bytes] = []
            if self._isd_selected and not _is_select(plain[i]) and self._state is None:
                prefix.append(await self._open(definite, progress))
            sent = self._plan(commands, plain, i)
            try:
                result = await self._session.execute(
                    [*prefix, *(s.wire for s in sent)], definite=definite
                )
            except BaseException:
                # The card may have run any part of it: start afresh.
                self._close()
                raise
            progress.took(result)
            resume = self._take(result, prefix, sent, progress)
            if resume is None:
                break
            i = resume
        last, first = progress.last, progress.first
        assert last is not None and first is not None
        return ScriptResult(
            session_id=last.session_id,
            script=last.script,
            commands=commands,
            responses=tuple(progress.answers),
            executed=len(progress.answers),
            sent_at=first.sent_at,
            answered_at=last.answered_at,
        )

    async def _open(self, definite: bool, progress: _Progress) -> bytes:
        """Run C{SELECT ISD, INITIALIZE UPDATE}; return EXTERNAL AUTHENTICATE."""
        if self._broken is not None:
            step, detail, script, sw = self._broken
            raise self._failure(
                step, f"{detail} (in script {script}; not retried)", script=script, sw=sw
            )
        try:
            made = self._new_host()
            host = await made if isinstance(made, Deferred) else made
        except Exception as e:
            self._log.warn(
                "session {session_id}: no SCP03 keys: {error}",
                session_id=self._session.id,
                error=str(e),
            )
            raise self._failure(Scp03Step.KEYS, f"no usable SCP03 keys ({e})") from None
        result = await self._session.execute(
            [self._select_isd, host.initialize_update()], definite=definite
        )
        progress.took(result)
        script = result.script
        responses = result.responses
        selected = _sw(responses[0]) if responses else 0x6F00
        if not _accepted(selected):
            raise self._broke(Scp03Step.SELECT_ISD, f"the card answered {selected:04X}", script)
        self._isd_selected = True
        if len(responses) < 2:
            raise self._broke(Scp03Step.INITIALIZE_UPDATE, "not run by the card", script)
        try:
            authenticate = host.external_authenticate(responses[1], self._level)
        except CryptogramError as e:
            raise self._broke(Scp03Step.CARD_CRYPTOGRAM, str(e), script) from None
        except Scp03Error as e:
            sw = _sw(responses[1])
            raise self._broke(Scp03Step.INITIALIZE_UPDATE, str(e), script, sw) from None
        # Optimistic: the wrapped commands follow EXTERNAL AUTHENTICATE in
        # one script, and a card that refuses it refuses them too (no
        # session); its real answer is checked in _take before any other.
        host.confirm(ResponseApdu(b"", 0x9000))
        card = host.card
        assert card is not None and host.state is not None
        self._state = host.state
        self._kvn = card.kvn
        self._log.info(
            "session {session_id}: SCP03 channel authenticated, key version {kvn:02X},"
            " level {security_level:02X}",
            session_id=self._session.id,
            kvn=card.kvn,
            security_level=self._level.value,
        )
        return authenticate

    def _plan(
        self, commands: tuple[bytes, ...], plain: list[CommandApdu], start: int
    ) -> list[_Sent]:
        """Wrap (or not) the platform's commands from C{start} for one card script.

        Stops after a SELECT that may have selected the ISD: what follows
        may need the channel opened again, and only the card's answer says.
        """
        state = self._state
        isd = self._isd_selected
        sent: list[_Sent] = []
        for j in range(start, len(plain)):
            apdu = plain[j]
            if _is_select(apdu):
                aid = apdu.data if apdu.p1 == 0x04 else None
                sent.append(_Sent(j, commands[j], select=aid, is_select=True))
                if aid is None or self._isd_aid.startswith(aid):
                    # It may (re)select the ISD: its answer tells, and the
                    # channel must then be opened again before what follows.
                    break
                isd, state = False, None
            elif not isd:
                sent.append(_Sent(j, commands[j]))
            else:
                assert state is not None  # opened by _run; _check ruled out wrap errors
                state, wrapped = wrap_command(state, apdu)
                sent.append(_Sent(j, wrapped.encode(), state))
        return sent

    def _take(
        self, result: ScriptResult, prefix: list[bytes], sent: list[_Sent], progress: _Progress
    ) -> int | None:
        """Open the card's answers; the platform command to go on from, if any."""
        responses = result.responses
        opened = bool(prefix)
        if opened:
            sw = _sw(responses[0]) if responses else 0x6F00
            if sw != 0x9000:
                raise self._broke(
                    Scp03Step.EXTERNAL_AUTHENTICATE,
                    f"the card answered {sw:04X}",
                    result.script,
                    sw,
                )
        answers = responses[len(prefix) :]
        for item, raw in zip(sent, answers, strict=False):
            sw = _sw(raw)
            if item.state is None:
                progress.answers.append(raw)
                if item.is_select:
                    self._selected(item, raw)
                continue
            if sw in _LOST and not opened:
                self._log.info(
                    "session {session_id}: the card answered {sw:04X} to a protected command;"
                    " re-opening the secure channel",
                    session_id=self._session.id,
                    sw=sw,
                )
                self._close()
                return item.index
            try:
                answer = unwrap_response(item.state, ResponseApdu.decode(raw))
            except (Scp03Error, ApduError) as e:
                self._close()
                self._log.warn(
                    "session {session_id}: answer to C-APDU {index} of script {script}"
                    " does not verify: {error}",
                    session_id=self._session.id,
                    index=item.index,
                    script=result.script,
                    error=str(e),
                )
                raise self._failure(
                    Scp03Step.RESPONSE,
                    f"the answer to C-APDU {item.index} does not verify ({e})",
                    script=result.script,
                    sw=sw,
                    command=item.index,
                ) from None
            progress.answers.append(answer.encode())
            self._state = item.state
            if sw in _LOST:
                self._close()
        # Fewer answers than commands: the card stopped at an error.
        return sent[-1].index + 1 if len(answers) == len(sent) else None

    def _selected(self, item: _Sent, raw: bytes) -> None:
        """The platform's SELECT was answered: the session is over either way."""
        self._close()
        if item.select is None or not _accepted(_sw(raw)):
            return
        named = _fci_aid(raw[:-2])
        aid = named if named is not None else item.select
        self._isd_selected = aid == self._isd_aid or (named is None and aid == b"")

    def _close(self) -> None:
        self._state = None
        self._kvn = None

    def _failure(
        self,
        step: Scp03Step,
        detail: str,
        *,
        script: int = 0,
        sw: int | None = None,
        command: int | None = None,
    ) -> SecureChannelError:
        return SecureChannelError(
            step, detail, self._session.id, script=script, sw=sw, command=command
        )

    def _broke(
        self, step: Scp03Step, detail: str, script: int, sw: int | None = None
    ) -> SecureChannelError:
        """A failed opening: logged, and remembered so it is not retried."""
        self._close()
        self._broken = (step, detail, script, sw)
        self._log.warn(
            "session {session_id}: SCP03 channel not opened, {step} failed: {detail}",
            session_id=self._session.id,
            step=step.value,
            detail=detail,
        )
        return self._failure(step, detail, script=script, sw=sw)
