# -*- test-case-name: tests.unit.codec.test_scp03_messages -*-
"""The two commands that open an SCP03 session, as values.

INITIALIZE UPDATE (Amendment D 7.1.1) carries the key version and the host
challenge; its answer (Table 7-3) the key diversification data, the key
information (KVN, C{03}, "i"), the card challenge and cryptogram and, in
pseudo-random mode, the sequence counter.  EXTERNAL AUTHENTICATE (7.1.2)
carries the security level in P1 and the host cryptogram followed by the
C-MAC.  Lengths follow the mode: 8-byte challenges, cryptograms and MACs
in S8 mode, 16 in S16 mode.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from bipgw.codec.apdu import CommandApdu
from bipgw.codec.scp03._errors import Scp03Error, Scp03LengthError, Scp03ParameterError
from bipgw.codec.scp03._keys import CHALLENGE_SIZES
from bipgw.codec.scp03._types import ScpParameters

__all__ = [
    "INS_EXTERNAL_AUTHENTICATE",
    "INS_INITIALIZE_UPDATE",
    "SCP03_ID",
    "ExternalAuthenticate",
    "InitializeUpdate",
    "InitializeUpdateResponse",
]

INS_INITIALIZE_UPDATE: Final = 0x50
INS_EXTERNAL_AUTHENTICATE: Final = 0x82
SCP03_ID: Final = 0x03
"""The Secure Channel Protocol identifier in the key information."""

_DIVERSIFICATION_SIZE: Final = 10


def _byte(_: object, attribute: attrs.Attribute[int], value: Any) -> None:
    if type(value) is not int or not 0 <= value <= 0xFF:
        raise Scp03Error(f"must be one byte, got {value!r}", field=attribute.name)


def _challenge(_: object, attribute: attrs.Attribute[bytes], value: Any) -> None:
    if type(value) is not bytes or len(value) not in CHALLENGE_SIZES:
        size = len(value) if isinstance(value, bytes) else type(value).__name__
        raise Scp03LengthError(f"8 or 16 bytes expected, got {size}", field=attribute.name)


@attrs.frozen
class InitializeUpdate:
    """INITIALIZE UPDATE: C{80 50 KVN 00 Lc host-challenge 00}.

    @ivar kvn: the key version to use; C{00} lets the card pick its first
        available key set.
    @ivar host_challenge: 8 bytes (S8 mode) or 16 (S16 mode).
    """

    kvn: int = attrs.field(validator=_byte)
    host_challenge: bytes = attrs.field(validator=_challenge)

    def to_apdu(self) -> CommandApdu:
        """The command, with Le C{00} as Table 7-2 gives it."""
        return CommandApdu(0x80, INS_INITIALIZE_UPDATE, self.kvn, 0x00, self.host_challenge, 256)

    @classmethod
    def from_apdu(cls, apdu: CommandApdu, size: int) -> InitializeUpdate:
        """Read the command as a card in mode C{size} (8 or 16) does.

        Le is not checked: cards accept the command with or without it.

        @raise Scp03ParameterError: not INS C{50}, or P2 (the key
            identifier) other than C{00}.
        @raise Scp03LengthError: a host challenge of another length.
        """
        if apdu.ins != INS_INITIALIZE_UPDATE:
            raise Scp03ParameterError(f"INS {apdu.ins:02X} is not INITIALIZE UPDATE", field="INS")
        if apdu.p2 != 0x00:
            raise Scp03ParameterError(
                f"the key identifier must be 00, got {apdu.p2:02X}", field="P2"
            )
        if len(apdu.data) != size:
            raise Scp03LengthError(
                f"host challenge of {len(apdu.data)} bytes, this card expects {size}",
                field="Lc",
                offset=4,
            )
        return cls(apdu.p1, apdu.data)


def _diversification(_: object, __: object, value: Any) -> None:
    if type(value) is not bytes or len(value) != _DIVERSIFICATION_SIZE:
        raise Scp03Error("must be 10 bytes", field="key diversification data")


def _counter(_: object, __: object, value: Any) -> None:
    if value is not None and (type(value) is not int or not 0 <= value <= 0xFFFFFF):
        raise Scp03Error(f"must fit 3 bytes, got {value!r}", field="sequence counter")


@attrs.frozen
class InitializeUpdateResponse:
    """The data of the card's answer to INITIALIZE UPDATE (Table 7-3).

    @ivar diversification_data: 10 bytes a back end derives card keys from.
    @ivar kvn: the key version the card chose.
    @ivar parameters: the card's "i" parameter.
    @ivar card_challenge: 8 or 16 bytes, as the mode says.
    @ivar card_cryptogram: as long as the card challenge.
    @ivar sequence_counter: present exactly when the card uses
        pseudo-random challenges.
    """

    diversification_data: bytes = attrs.field(validator=_diversification)
    kvn: int = attrs.field(validator=_byte)
    parameters: ScpParameters = attrs.field(validator=attrs.validators.instance_of(ScpParameters))
    card_challenge: bytes = attrs.field(validator=_challenge)
    card_cryptogram: bytes = attrs.field(validator=_challenge)
    sequence_counter: int | None = attrs.field(default=None, validator=_counter)

    def __attrs_post_init__(self) -> None:
        size = self.parameters.size
        if len(self.card_challenge) != size or len(self.card_cryptogram) != size:
            raise Scp03LengthError(
                f"challenge and cryptogram must be {size} bytes in this mode",
                field="card challenge",
            )
        if (self.sequence_counter is not None) != self.parameters.pseudo_random:
            raise Scp03Error(
                "present if and only if the card uses pseudo-random challenges",
                field="sequence counter",
            )

    def encode(self) -> bytes:
        """The response data (without the status word)."""
        out = (
            self.diversification_data
            + bytes((self.kvn, SCP03_ID, self.parameters.value))
            + self.card_challenge
            + self.card_cryptogram
        )
        if self.sequence_counter is not None:
            out += self.sequence_counter.to_bytes(3, "big")
        return out

    @classmethod
    def decode(cls, data: bytes) -> InitializeUpdateResponse:
        """Parse the response data; the "i" byte decides the lengths.

        @raise Scp03Error: another protocol than SCP03, a bad "i", or a
            length that does not match the mode.
        """
        if len(data) < 13:
            raise Scp03LengthError(
                f"{len(data)} bytes; the key information ends at byte 13", field="response"
            )
        if data[11] != SCP03_ID:
            raise Scp03Error(
                f"the card answered for SCP{data[11]:02X}, not SCP03",
                field="key information",
                offset=11,
            )
        parameters = ScpParameters.from_byte(data[12])
        size = parameters.size
        expected = 13 + 2 * size + (3 if parameters.pseudo_random else 0)
        if len(data) != expected:
            raise Scp03LengthError(
                f"{len(data)} bytes, i={data[12]:02X} means {expected}", field="response"
            )
        counter = int.from_bytes(data[13 + 2 * size :], "big") if parameters.pseudo_random else None
        return cls(
            bytes(data[:10]),
            data[10],
            parameters,
            bytes(data[13 : 13 + size]),
            bytes(data[13 + size : 13 + 2 * size]),
            counter,
        )


@attrs.frozen
class ExternalAuthenticate:
    """EXTERNAL AUTHENTICATE as the card reads it: C{84 82 level 00 Lc data}.

    @ivar level: P1, the requested security level (checked against the
        card's parameters by the session, not here).
    @ivar host_cryptogram: the host's proof, as long as the challenges.
    @ivar mac: the command's C-MAC.
    """

    level: int = attrs.field(validator=_byte)
    host_cryptogram: bytes
    mac: bytes

    @classmethod
    def from_apdu(cls, apdu: CommandApdu, size: int) -> ExternalAuthenticate:
        """Split the command of a session in mode C{size} (8 or 16).

        @raise Scp03ParameterError: not INS C{82}, or P2 other than C{00}.
        @raise Scp03LengthError: data other than cryptogram and MAC.
        """
        if apdu.ins != INS_EXTERNAL_AUTHENTICATE:
            raise Scp03ParameterError(
                f"INS {apdu.ins:02X} is not EXTERNAL AUTHENTICATE", field="INS"
            )
        if apdu.p2 != 0x00:
            raise Scp03ParameterError(f"must be 00, got {apdu.p2:02X}", field="P2")
        if len(apdu.data) != 2 * size:
            raise Scp03LengthError(
                f"{len(apdu.data)} bytes; host cryptogram and C-MAC are {2 * size}",
                field="Lc",
                offset=4,
            )
        return cls(apdu.p1, apdu.data[:size], apdu.data[size:])
