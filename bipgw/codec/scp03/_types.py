# -*- test-case-name: tests.unit.codec.test_scp03_messages -*-
"""SCP03's small values: the "i" parameter, security levels, channel state.

The "i" parameter (Amendment D Table 5-1) is what a card announces about
its implementation in the key information of INITIALIZE UPDATE (and in
its card recognition data): S8 or S16 mode, random or pseudo-random card
challenge, R-MAC and R-ENCRYPTION support.  The security level (Table 7-6)
is what the host asks for in EXTERNAL AUTHENTICATE.  L{ChannelState} is
the whole state of an open channel as one frozen value: each command
produces the next state, so host and card code is a sequence of pure
steps and a failed check leaves the previous state untouched.
"""

from __future__ import annotations

from enum import IntFlag
from typing import Final

import attrs

from bipgw.codec.scp03._crypto import BLOCK
from bipgw.codec.scp03._errors import Scp03Error, Scp03ParameterError
from bipgw.codec.scp03._keys import SessionKeys

__all__ = [
    "VALID_LEVELS",
    "ChannelState",
    "ScpParameters",
    "SecurityLevel",
    "check_level",
]

_S16: Final = 0x01
_PSEUDO_RANDOM: Final = 0x10
_R_MAC: Final = 0x20
_R_ENC: Final = 0x40
_RFU: Final = 0x8E


class SecurityLevel(IntFlag):
    """The bits of the security level (EXTERNAL AUTHENTICATE P1, GET DATA C{D3})."""

    NONE = 0x00
    C_MAC = 0x01
    C_DECRYPTION = 0x02
    R_MAC = 0x10
    R_ENCRYPTION = 0x20


VALID_LEVELS: Final = frozenset({0x00, 0x01, 0x03, 0x11, 0x13, 0x33})
"""The levels Table 7-6 defines: none, C-MAC, + C-DECRYPTION, + R-MAC, + R-ENC."""


@attrs.frozen
class ScpParameters:
    """The SCP03 "i" parameter, one byte (Amendment D Table 5-1).

    @ivar s16: S16 mode (16-byte challenges, cryptograms and MACs) instead of
        the S8 legacy mode.
    @ivar pseudo_random: the card challenge is derived from a sequence
        counter (and INITIALIZE UPDATE returns that counter).
    @ivar r_mac: the card can protect responses with an R-MAC.
    @ivar r_encryption: the card can also encrypt response data (needs
        L{r_mac}).
    """

    s16: bool = False
    pseudo_random: bool = False
    r_mac: bool = False
    r_encryption: bool = attrs.field(default=False)

    @r_encryption.validator
    def _needs_r_mac(self, _: object, value: bool) -> None:
        if value and not self.r_mac:
            raise Scp03Error("R-ENCRYPTION support needs R-MAC support", field="i")

    @property
    def value(self) -> int:
        """The parameter as its byte."""
        return (
            (_S16 if self.s16 else 0)
            | (_PSEUDO_RANDOM if self.pseudo_random else 0)
            | (_R_MAC if self.r_mac else 0)
            | (_R_ENC if self.r_encryption else 0)
        )

    @property
    def size(self) -> int:
        """Bytes of a challenge, cryptogram or MAC: 8 (S8) or 16 (S16)."""
        return 16 if self.s16 else 8

    @classmethod
    def from_byte(cls, value: int) -> ScpParameters:
        """Read the byte.

        @raise Scp03Error: RFU or reserved bits set, or R-ENCRYPTION without
            R-MAC (the one combination the table leaves undefined).
        """
        if not 0 <= value <= 0xFF:
            raise Scp03Error(f"must be one byte, got {value}", field="i")
        if value & _RFU:
            raise Scp03Error(f"{value:02X} sets RFU or reserved bits", field="i")
        return cls(
            bool(value & _S16),
            bool(value & _PSEUDO_RANDOM),
            bool(value & _R_MAC),
            bool(value & _R_ENC),
        )


def check_level(level: int, parameters: ScpParameters) -> SecurityLevel:
    """The security level C{level}, if the card's C{parameters} allow it.

    @raise Scp03ParameterError: a level Table 7-6 does not define, or one
        asking for R-MAC / R-ENCRYPTION the card does not support.
    """
    if level not in VALID_LEVELS:
        raise Scp03ParameterError(f"security level {level:02X} is not defined", field="P1")
    found = SecurityLevel(level)
    if SecurityLevel.R_MAC in found and not parameters.r_mac:
        raise Scp03ParameterError(
            f"security level {level:02X} needs R-MAC, not supported (i={parameters.value:02X})",
            field="P1",
        )
    if SecurityLevel.R_ENCRYPTION in found and not parameters.r_encryption:
        raise Scp03ParameterError(
            f"security level {level:02X} needs R-ENCRYPTION, not supported"
            f" (i={parameters.value:02X})",
            field="P1",
        )
    return found


def _check_chaining(_: object, __: object, value: bytes) -> None:
    if type(value) is not bytes or len(value) != BLOCK:
        raise Scp03Error("the MAC chaining value is 16 bytes", field="chaining")


def _check_counter(_: object, __: object, value: int) -> None:
    if type(value) is not int or not 0 <= value < 1 << 120:
        raise Scp03Error(f"out of range: {value!r}", field="encryption counter")


@attrs.frozen(repr=False)
class ChannelState:
    """An open secure channel, after EXTERNAL AUTHENTICATE.

    @ivar keys: the session keys.
    @ivar level: the session's security level.
    @ivar mac_size: bytes of each C-MAC and R-MAC: 8 (S8) or 16 (S16).
    @ivar chaining: the MAC chaining value, the full C-MAC of the last
        command (of EXTERNAL AUTHENTICATE at first).
    @ivar counter: the encryption counter of the last command; the first
        command after EXTERNAL AUTHENTICATE uses 1.  It counts every
        command, with or without data (6.2.6).
    """

    keys: SessionKeys
    level: SecurityLevel
    mac_size: int = attrs.field(validator=attrs.validators.in_((8, 16)))
    chaining: bytes = attrs.field(validator=_check_chaining)
    counter: int = attrs.field(default=0, validator=_check_counter)

    def __repr__(self) -> str:
        # The chaining value is public (it is a MAC sent in clear); the keys
        # show only their lengths through SessionKeys' own repr.
        return (
            f"ChannelState(level={self.level.value:02X}, mac_size={self.mac_size},"
            f" counter={self.counter}, keys={self.keys!r})"
        )
