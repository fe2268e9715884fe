# -*- test-case-name: tests.unit.codec.test_scp03_sessions -*-
"""The card side of an SCP03 session.

L{CardSession} is what a Security Domain runs for one key set: answer
INITIALIZE UPDATE, verify EXTERNAL AUTHENTICATE, then check every command
of the session and protect every answer.  It knows nothing of registries
or profiles: the caller picks the key set (by the KVN in P1), supplies the
sequence counter and AID for pseudo-random challenges, and turns the
L{Scp03Error} it raises into the error's C{sw}.

Protocol rules it enforces (Amendment D 5.2, 5.6): any failed step of the
mutual authentication needs a new INITIALIZE UPDATE; a command that fails
its security check is refused and the session aborted; a new INITIALIZE
UPDATE ends the session in progress.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

import attrs

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.scp03._channel import (
    command_mac,
    has_secure_messaging,
    unwrap_command,
    wrap_response,
)
from bipgw.codec.scp03._errors import CryptogramError, Scp03Error, SessionStateError
from bipgw.codec.scp03._keys import (
    SessionKeys,
    StaticKeys,
    card_cryptogram,
    derive_session_keys,
    host_cryptogram,
    pseudo_random_challenge,
)
from bipgw.codec.scp03._messages import (
    ExternalAuthenticate,
    InitializeUpdate,
    InitializeUpdateResponse,
)
from bipgw.codec.scp03._types import ChannelState, ScpParameters, SecurityLevel, check_level

__all__ = ["CardSession"]


@attrs.frozen(repr=False)
class _Pending:
    """INITIALIZE UPDATE answered, EXTERNAL AUTHENTICATE awaited."""

    host_challenge: bytes
    card_challenge: bytes
    keys: SessionKeys


class CardSession:
    """One Security Domain key set's secure channel, on the card.

    @param keys: the static key set chosen for this session.
    @param kvn: its key version, returned in the key information.
    @param parameters: the card's "i" parameter.
    @param diversification_data: the 10 bytes returned first in the
        INITIALIZE UPDATE answer.
    @param random: where random card challenges come from.
    """

    __slots__ = ("_div", "_keys", "_kvn", "_params", "_pending", "_random", "_state")

    def __init__(
        self,
        keys: StaticKeys,
        *,
        kvn: int,
        parameters: ScpParameters,
        diversification_data: bytes = bytes(10),
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._keys = keys
        self._kvn = kvn
        self._params = parameters
        self._div = diversification_data
        self._random = random
        self._pending: _Pending | None = None
        self._state: ChannelState | None = None

    def __repr__(self) -> str:
        return (
            f"<CardSession KVN {self._kvn:02X}, open={self.is_open},"
            f" level {self.security_level.value:02X}>"
        )

    @property
    def kvn(self) -> int:
        """The key version of the session's static keys."""
        return self._kvn

    @property
    def is_open(self) -> bool:
        """Whether EXTERNAL AUTHENTICATE succeeded and no check failed since."""
        return self._state is not None

    @property
    def security_level(self) -> SecurityLevel:
        """The open session's level; C{NONE} otherwise."""
        return self._state.level if self._state is not None else SecurityLevel.NONE

    @property
    def state(self) -> ChannelState | None:
        """The channel state of an open session."""
        return self._state

    def close(self) -> None:
        """End the session (reselection, reset, abort)."""
        self._pending = None
        self._state = None

    def initialize_update(
        self,
        apdu: CommandApdu,
        *,
        sequence_counter: int | None = None,
        aid: bytes | None = None,
        card_challenge: bytes | None = None,
    ) -> ResponseApdu:
        """Answer INITIALIZE UPDATE; any session in progress ends.

        P1 (the key version) is the caller's business: it chose this
        session's key set from it.

        @param sequence_counter: pseudo-random mode: the counter after the
            card incremented it for this command.
        @param aid: pseudo-random mode: the Security Domain's AID.
        @param card_challenge: random mode: the challenge to use; fresh
            random bytes by default.
        @raise Scp03Error: a malformed command (its C{sw} says which), or
            pseudo-random mode without counter and AID.
        """
        self.close()
        size = self._params.size
        command = InitializeUpdate.from_apdu(apdu, size)
        if self._params.pseudo_random:
            if sequence_counter is None or aid is None:
                raise Scp03Error(
                    "pseudo-random mode needs the sequence counter and the AID",
                    field="sequence counter",
                )
            challenge = pseudo_random_challenge(self._keys, sequence_counter, aid, size)
        else:
            sequence_counter = None
            challenge = self._random(size) if card_challenge is None else card_challenge
        keys = derive_session_keys(self._keys, command.host_challenge, challenge)
        answer = InitializeUpdateResponse(
            self._div,
            self._kvn,
            self._params,
            challenge,
            card_cryptogram(keys, command.host_challenge, challenge),
            sequence_counter,
        )
        self._pending = _Pending(command.host_challenge, challenge, keys)
        return ResponseApdu(answer.encode(), 0x9000)

    def external_authenticate(self, apdu: CommandApdu) -> ResponseApdu:
        """Verify EXTERNAL AUTHENTICATE and open the session at its level.

        Whatever the outcome, the INITIALIZE UPDATE it answers is used up.

        @raise SessionStateError: no INITIALIZE UPDATE answered before.
        @raise CryptogramError: the host cryptogram does not verify.
        @raise Scp03Error: no secure messaging in CLA, a wrong C-MAC, a
            malformed command or a level the card does not support.
        """
        pending, self._pending = self._pending, None
        self._state = None
        if pending is None:
            raise SessionStateError("no INITIALIZE UPDATE to complete", field="INS")
        size = self._params.size
        command = ExternalAuthenticate.from_apdu(apdu, size)
        level = check_level(command.level, self._params)
        if not has_secure_messaging(apdu.cla):
            raise Scp03Error(f"CLA {apdu.cla:02X} lacks the C-MAC indication", field="CLA")
        expected = host_cryptogram(pending.keys, pending.host_challenge, pending.card_challenge)
        if not hmac.compare_digest(expected, command.host_cryptogram):
            raise CryptogramError("does not verify", field="host cryptogram", offset=5)
        mac = command_mac(
            pending.keys.s_mac, bytes(16), apdu, command.host_cryptogram, size, apdu.extended
        )
        if not hmac.compare_digest(mac[:size], command.mac):
            raise Scp03Error("does not verify", field="C-MAC", offset=5 + size)
        self._state = ChannelState(pending.keys, level, size, mac)
        return ResponseApdu(b"", 0x9000)

    def unwrap(self, apdu: CommandApdu) -> CommandApdu:
        """Check a command of the open session; return it plain.

        @raise SessionStateError: no session is open.
        @raise Scp03Error: the command fails its check; the session is
            aborted (closed).
        """
        if self._state is None:
            raise SessionStateError("no secure channel session", field="CLA")
        try:
            self._state, plain = unwrap_command(self._state, apdu)
        except Scp03Error:
            self.close()
            raise
        return plain

    def wrap(self, response: ResponseApdu) -> ResponseApdu:
        """Protect the answer to the command last unwrapped; as is without session."""
        if self._state is None:
            return response
        return wrap_response(self._state, response)
