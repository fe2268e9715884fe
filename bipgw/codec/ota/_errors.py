"""The OTA codec's error family.

Every failure a receiver can meet while checking a secured packet is its own
class, because the receiver must answer with a specific PoR status code
(L{PorStatus}) and the sender must be able to tell a replayed counter from a
wrong key.  Each class carries that code as C{por_status}.  Messages name the
field, the offset and the reason, and never contain key bytes or deciphered
data: they end up in operator logs.
"""

from __future__ import annotations

from typing import ClassVar

from bipgw.codec._errors import CodecError
from bipgw.codec.ota._status import PorStatus


class OtaError(CodecError):
    """A secured packet or PoR that cannot be built, parsed or verified.

    @cvar por_status: the PoR status a receiver reports this failure with.
        The base class (and malformed packets, which TS 102 225 gives no code
        of their own) use C{SECURITY_ERROR}, the catch-all real cards send.
    """

    codec: ClassVar[str] = "OTA"
    por_status: ClassVar[PorStatus] = PorStatus.SECURITY_ERROR


class BadFormat(OtaError):  # noqa: N818 - the PoR status names
    """A field holds a value the specifications reserve or forbid."""


class BadLength(BadFormat):
    """A length field (CPL, CHL, RPL, RHL, PCNTR) disagrees with the bytes present."""


class SecurityError(OtaError):
    """Security the codec cannot apply or check: DS, an implicit or proprietary
    algorithm, or a key whose length does not fit the algorithm."""


class BadChecksum(OtaError):  # noqa: N818 - the PoR status names
    """The RC, CC or DS of a packet does not match its contents."""

    por_status: ClassVar[PorStatus] = PorStatus.RC_CC_DS_FAILED


class CounterTooLow(OtaError):  # noqa: N818 - the PoR status names
    """The counter is not above the stored value: a replay or a stale packet."""

    por_status: ClassVar[PorStatus] = PorStatus.COUNTER_LOW


class CounterTooHigh(OtaError):  # noqa: N818 - the PoR status names
    """The counter skips values the SPI's counter mode (or the receiver) refuses."""

    por_status: ClassVar[PorStatus] = PorStatus.COUNTER_HIGH


class CounterBlocked(OtaError):  # noqa: N818 - the PoR status names
    """The stored counter reached 2**40 - 1; the key set can never be used again."""

    por_status: ClassVar[PorStatus] = PorStatus.COUNTER_BLOCKED


class CipheringError(OtaError):
    """The ciphered part has a length or padding that deciphering cannot explain."""

    por_status: ClassVar[PorStatus] = PorStatus.CIPHERING_ERROR


class UnknownTar(OtaError):  # noqa: N818 - the PoR status names
    """No key set or application is registered for the packet's TAR.

    The codec never looks TARs up; a receiver raises this from its own lookup
    after L{parse_command_header<bipgw.codec.ota.parse_command_header>}, so
    one C{except OtaError} maps every failure to its PoR.
    """

    por_status: ClassVar[PorStatus] = PorStatus.TAR_UNKNOWN


class InsufficientSecurity(OtaError):  # noqa: N818 - the PoR status names
    """The packet's security is below what the receiver requires (the MSL), or
    a PoR claims success without the security its SPI asked for."""

    por_status: ClassVar[PorStatus] = PorStatus.INSUFFICIENT_SECURITY
