# -*- test-case-name: tests.unit.codec.test_scp03_sessions -*-
"""The off-card (host) side of an SCP03 session.

The gateway, or a test playing a card-management platform, drives a card's
Security Domain with L{HostSession}: build INITIALIZE UPDATE, check the
card's cryptogram and build EXTERNAL AUTHENTICATE from its answer, confirm
the card accepted it, then L{HostSession.wrap} each command and
L{HostSession.unwrap} each answer.  It works on bytes, as scripts and
traces carry APDUs.  Any failed check closes the session: GP requires a
new INITIALIZE UPDATE after one.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from enum import Enum

from bipgw.codec.apdu import ApduError, CommandApdu, ResponseApdu, describe_sw
from bipgw.codec.scp03._channel import command_mac, unwrap_response, wrap_command
from bipgw.codec.scp03._errors import (
    CryptogramError,
    Scp03Error,
    Scp03LengthError,
    SessionStateError,
)
from bipgw.codec.scp03._keys import (
    StaticKeys,
    card_cryptogram,
    derive_session_keys,
    host_cryptogram,
    pseudo_random_challenge,
)
from bipgw.codec.scp03._messages import (
    INS_EXTERNAL_AUTHENTICATE,
    InitializeUpdate,
    InitializeUpdateResponse,
)
from bipgw.codec.scp03._types import ChannelState, SecurityLevel, check_level

__all__ = ["HostSession"]


class _Phase(Enum):
    IDLE = "idle"
    INITIALIZING = "initializing"
    AUTHENTICATING = "authenticating"
    OPEN = "open"


def _response(raw: bytes | ResponseApdu) -> ResponseApdu:
    if isinstance(raw, ResponseApdu):
        return raw
    try:
        return ResponseApdu.decode(bytes(raw))
    except ApduError as e:
        raise Scp03Error(e.reason, field="R-APDU") from None


def _command(raw: bytes | CommandApdu) -> CommandApdu:
    if isinstance(raw, CommandApdu):
        return raw
    try:
        return CommandApdu.decode(bytes(raw))
    except ApduError as e:
        raise Scp03Error(e.reason, field=e.field or "C-APDU", offset=e.offset) from None


class HostSession:
    """One secure channel session, seen from the host.

    @param keys: the static key set of the Security Domain.
    @param kvn: the key version to ask for; C{0} lets the card choose (its
        answer says which it took).
    @param s16: S16 mode (16-byte challenges and MACs); the card's "i" must
        agree.
    @param aid: the Security Domain's AID.  When given and the card uses
        pseudo-random challenges, the challenge is checked too.
    @param random: where host challenges come from (tests inject a fixed one).
    """

    __slots__ = (
        "_aid",
        "_card",
        "_challenge",
        "_keys",
        "_kvn",
        "_phase",
        "_random",
        "_size",
        "_state",
    )

    def __init__(
        self,
        keys: StaticKeys,
        *,
        kvn: int = 0,
        s16: bool = False,
        aid: bytes | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not 0 <= kvn <= 0xFF:
            raise Scp03Error(f"must be one byte, got {kvn}", field="kvn")
        self._keys = keys
        self._kvn = kvn
        self._size = 16 if s16 else 8
        self._aid = aid
        self._random = random
        self._phase = _Phase.IDLE
        self._challenge = b""
        self._card: InitializeUpdateResponse | None = None
        self._state: ChannelState | None = None

    def __repr__(self) -> str:
        return f"<HostSession {self._phase.value}, level {self.security_level.value:02X}>"

    @property
    def is_open(self) -> bool:
        """Whether the card confirmed EXTERNAL AUTHENTICATE (wrap/unwrap apply)."""
        return self._phase is _Phase.OPEN

    @property
    def security_level(self) -> SecurityLevel:
        """The open session's level; C{NONE} otherwise."""
        if self._phase is _Phase.OPEN and self._state is not None:
            return self._state.level
        return SecurityLevel.NONE

    @property
    def card(self) -> InitializeUpdateResponse | None:
        """What the card answered to INITIALIZE UPDATE (key version, "i",
        diversification data, sequence counter), once checked."""
        return self._card

    @property
    def state(self) -> ChannelState | None:
        """The channel state of an open session."""
        return self._state if self._phase is _Phase.OPEN else None

    def close(self) -> None:
        """Forget the session; the next step must be L{initialize_update}."""
        self._phase = _Phase.IDLE
        self._state = None

    def _fail(self, error: Scp03Error) -> Scp03Error:
        self.close()
        return error

    def initialize_update(self, host_challenge: bytes | None = None) -> bytes:
        """Start a session: the INITIALIZE UPDATE command.

        @param host_challenge: the challenge to send; a fresh random one
            by default.
        """
        self.close()
        if host_challenge is None:
            host_challenge = self._random(self._size)
        if len(host_challenge) != self._size:
            raise Scp03LengthError(
                f"{len(host_challenge)} bytes, this session's mode needs {self._size}",
                field="host challenge",
            )
        self._challenge = bytes(host_challenge)
        self._card = None
        self._phase = _Phase.INITIALIZING
        return InitializeUpdate(self._kvn, self._challenge).to_apdu().encode()

    def external_authenticate(
        self, response: bytes | ResponseApdu, level: int = SecurityLevel.C_MAC
    ) -> bytes:
        """Check the card's answer to INITIALIZE UPDATE; build EXTERNAL AUTHENTICATE.

        @param response: the whole R-APDU (data and status word).
        @param level: the security level to ask for (Table 7-6).
        @raise SessionStateError: no INITIALIZE UPDATE is pending.
        @raise CryptogramError: the card cryptogram (or the pseudo-random
            challenge) does not verify: wrong keys, or not the card.
        @raise Scp03Error: the card refused, or answered for another key
            version, protocol or mode; a level the card does not support.
        """
        if self._phase is not _Phase.INITIALIZING:
            raise self._fail(SessionStateError("no INITIALIZE UPDATE pending", field="phase"))
        try:
            return self._authenticate(_response(response), level)
        except Scp03Error as e:
            raise self._fail(e) from None

    def _authenticate(self, answer: ResponseApdu, level: int) -> bytes:
        if answer.sw != 0x9000:
            raise Scp03Error(
                f"INITIALIZE UPDATE refused with {answer.sw:04X}: {describe_sw(answer.sw)}",
                field="SW",
            )
        card = InitializeUpdateResponse.decode(answer.data)
        if card.parameters.size != self._size:
            raise Scp03Error(
                f"the card runs S{card.parameters.size} mode, this session S{self._size}",
                field="i",
                offset=12,
            )
        if self._kvn and card.kvn != self._kvn:
            raise Scp03Error(
                f"asked for key version {self._kvn:02X}, the card used {card.kvn:02X}",
                field="key information",
                offset=10,
            )
        if card.sequence_counter is not None and self._aid is not None:
            expected = pseudo_random_challenge(
                self._keys, card.sequence_counter, self._aid, self._size
            )
            if not hmac.compare_digest(expected, card.card_challenge):
                raise CryptogramError(
                    "not the pseudo-random challenge for this counter and AID",
                    field="card challenge",
                    offset=13,
                )
        security = check_level(int(level), card.parameters)
        keys = derive_session_keys(self._keys, self._challenge, card.card_challenge)
        expected = card_cryptogram(keys, self._challenge, card.card_challenge)
        if not hmac.compare_digest(expected, card.card_cryptogram):
            raise CryptogramError(
                "does not verify: other keys, or not the card",
                field="card cryptogram",
                offset=13 + self._size,
            )
        proof = host_cryptogram(keys, self._challenge, card.card_challenge)
        unmacced = CommandApdu(0x84, INS_EXTERNAL_AUTHENTICATE, security.value, 0x00, proof)
        mac = command_mac(keys.s_mac, bytes(16), unmacced, proof, self._size, False)
        command = CommandApdu(
            0x84, INS_EXTERNAL_AUTHENTICATE, security.value, 0x00, proof + mac[: self._size]
        )
        self._card = card
        self._state = ChannelState(keys, security, self._size, mac)
        self._phase = _Phase.AUTHENTICATING
        return command.encode()

    def confirm(self, response: bytes | ResponseApdu) -> None:
        """Take the card's answer to EXTERNAL AUTHENTICATE: C{9000} opens the session.

        @raise SessionStateError: no EXTERNAL AUTHENTICATE is pending.
        @raise Scp03Error: the card refused (C{6300}: it did not accept the
            host cryptogram); the session is closed.
        """
        if self._phase is not _Phase.AUTHENTICATING:
            raise self._fail(SessionStateError("no EXTERNAL AUTHENTICATE pending", field="phase"))
        answer = _response(response)
        if answer.sw != 0x9000:
            raise self._fail(
                Scp03Error(
                    f"EXTERNAL AUTHENTICATE refused with {answer.sw:04X}: {describe_sw(answer.sw)}",
                    field="SW",
                )
            )
        self._phase = _Phase.OPEN

    def _open_state(self) -> ChannelState:
        if self._phase is not _Phase.OPEN or self._state is None:
            raise SessionStateError("the session is not open", field="phase")
        return self._state

    def wrap(self, command: bytes | CommandApdu) -> bytes:
        """Protect a plain command for the card.

        @raise SessionStateError: the session is not open.
        @raise Scp03Error: not an APDU, or one that cannot be protected.
        """
        state = self._open_state()
        self._state, wrapped = wrap_command(state, _command(command))
        return wrapped.encode()

    def unwrap(self, response: bytes | ResponseApdu) -> bytes:
        """Check and open the card's answer to the last wrapped command.

        @return: the plain R-APDU (data and status word).
        @raise SessionStateError: the session is not open.
        @raise Scp03Error: a missing or wrong R-MAC, or bad encryption; the
            session is closed.
        """
        state = self._open_state()
        try:
            return unwrap_response(state, _response(response)).encode()
        except Scp03Error as e:
            raise self._fail(e) from None
