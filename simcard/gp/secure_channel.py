# -*- test-case-name: tests.unit.simcard.test_secure_channel -*-
"""The ISD's SCP03 secure channel: the card side of GP Amendment D.

L{Scp03SecureChannel} implements the processor's L{SecureChannel} hook
(L{simcard.gp._applet}) with the shared codec's L{CardSession}, so the
simulated card and the gateway run the same protocol code from both ends
and the codec's public vectors cover the card too.  Plug it in with
C{SimCard(profile, secure_channel_factory=Scp03SecureChannel)}.

What it adds to the codec is the card around it:

  - INITIALIZE UPDATE P1 picks the key set from the card's I{current}
    profile (PUT KEY may have replaced it): C{00} is the first available
    set, an unknown version answers C{6A88} (Amendment D 7.1.1.3);
  - the card's "i" parameter is C{GpConfig.scp03_i} (C{70} by default:
    S8 mode, pseudo-random challenges, R-MAC and R-ENCRYPTION); in
    pseudo-random mode each valid INITIALIZE UPDATE increments the card's
    sequence counter (persisted with the registry, GET DATA C{C1}) and
    the challenge is derived from it and the ISD's AID; at the counter's
    maximum the command answers C{6985};
  - the key diversification data is the ICCID in BCD, C{F}-padded to 10
    bytes (the CIN of GET DATA C{45}): the value a back end diversifies
    this card's keys from;
  - status words: C{6700} wrong challenge length, C{6A86} bad P2 or an
    unsupported level, C{6985} EXTERNAL AUTHENTICATE without INITIALIZE
    UPDATE, C{6300} host cryptogram wrong (Amendment D Table 7-7),
    C{6982} a wrong or missing MAC or bad padding.  A command of an open
    session that fails its check is refused with C{6982} and the session
    is closed (5.6); so is the authentication in progress after any
    failed step (5.2).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final

from twisted.logger import Logger

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.scp03 import (
    CardSession,
    InitializeUpdate,
    Scp03Error,
    ScpParameters,
    StaticKeys,
)
from simcard.gp._errors import SecureChannelError

if TYPE_CHECKING:
    from simcard.card import SimCard

__all__ = ["Scp03SecureChannel", "diversification_data"]

_SW_NOT_FOUND: Final = 0x6A88
_SW_CONDITIONS: Final = 0x6985


def diversification_data(iccid: str) -> bytes:
    """The 10 bytes of key diversification data for a card: its ICCID in
    BCD, C{F}-padded to 20 digits."""
    return bytes.fromhex(iccid.ljust(20, "F")[:20])


class Scp03SecureChannel:
    """The ISD's SCP03 channel of one card (a L{simcard.gp.SecureChannel}).

    @param card: the card; keys, sequence counter, ISD AID and "i" are read
        from it at each INITIALIZE UPDATE.
    @param random: where random card challenges come from, when "i" asks
        for random rather than pseudo-random ones.
    """

    log: ClassVar[Logger] = Logger()

    __slots__ = ("_card", "_random", "_session")

    def __init__(self, card: SimCard, *, random: Callable[[int], bytes] = os.urandom) -> None:
        self._card = card
        self._random = random
        self._session: CardSession | None = None

    def __repr__(self) -> str:
        return f"<Scp03SecureChannel {self._card.iccid} {self._session!r}>"

    @property
    def is_active(self) -> bool:
        """Whether a session is authenticated (unwrap/wrap apply)."""
        return self._session is not None and self._session.is_open

    @property
    def security_level(self) -> int:
        """The session's security level (GET DATA C{D3}); 0 without session."""
        return int(self._session.security_level) if self._session is not None else 0

    @property
    def key_version(self) -> int | None:
        """The KVN of the open session's static keys, else C{None}."""
        return self._session.kvn if self.is_active and self._session is not None else None

    def _parameters(self) -> ScpParameters:
        return ScpParameters.from_byte(self._card.processor.config.scp03_i)

    def initialize_update(self, apdu: CommandApdu) -> ResponseApdu:
        """Start a session with the key set P1 names (C{00}: the first)."""
        self.reset()
        card = self._card
        parameters = self._parameters()
        try:
            InitializeUpdate.from_apdu(apdu, parameters.size)
        except Scp03Error as e:
            return ResponseApdu(b"", e.sw)
        keys = card.profile.scp03_key_set(apdu.p1)
        if keys is None:
            return ResponseApdu(b"", _SW_NOT_FOUND)
        session = CardSession(
            StaticKeys(keys.enc, keys.mac, keys.dek),
            kvn=keys.kvn,
            parameters=parameters,
            diversification_data=diversification_data(card.iccid),
            random=self._random,
        )
        counter = card.registry.next_sequence_counter() if parameters.pseudo_random else None
        answer = session.initialize_update(
            apdu, sequence_counter=counter, aid=card.registry.isd.aid
        )
        self._session = session
        return answer

    def external_authenticate(self, apdu: CommandApdu) -> ResponseApdu:
        """Complete the session INITIALIZE UPDATE started (C{6985} if none)."""
        session = self._session
        if session is None:
            return ResponseApdu(b"", _SW_CONDITIONS)
        try:
            return session.external_authenticate(apdu)
        except Scp03Error as e:
            self._session = None
            self.log.info(
                "card {iccid}: SCP03 authentication refused ({sw:04X}): {reason}",
                iccid=self._card.iccid,
                sw=e.sw,
                reason=e.reason,
            )
            return ResponseApdu(b"", e.sw)

    def unwrap(self, apdu: CommandApdu) -> CommandApdu:
        """Check (and decrypt) a command of the session.

        @raise SecureChannelError: C{6982}; the session is closed.
        """
        session = self._session
        if session is None or not session.is_open:
            raise SecureChannelError(0x6982, "no secure channel session")
        try:
            return session.unwrap(apdu)
        except Scp03Error as e:
            self._session = None
            self.log.info(
                "card {iccid}: SCP03 session aborted: {reason}",
                iccid=self._card.iccid,
                reason=str(e),
            )
            raise SecureChannelError(e.sw, e.reason) from None

    def wrap(self, response: ResponseApdu) -> ResponseApdu:
        """Protect an answer as the session's level asks."""
        session = self._session
        if session is None or not session.is_open:
            return response
        return session.wrap(response)

    def reset(self) -> None:
        """End the session (selection, card reset, new INITIALIZE UPDATE)."""
        self._session = None
