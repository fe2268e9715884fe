"""Response status codes of a Proof of Receipt (PoR)."""

from __future__ import annotations

from enum import IntEnum


class PorStatus(IntEnum):
    """The Response Status Code of a PoR (ETSI TS 102 225 Table 5, 3GPP TS 31.115 section 7).

    An C{IntEnum} so the value is the wire byte, and a PoR from a card that
    never heard of our names still maps one-to-one.  Every receiver-side
    L{bipgw.codec.ota.OtaError} names the code its failure is reported with.
    """

    POR_OK = 0x00
    """Command packet verified and processed."""

    RC_CC_DS_FAILED = 0x01
    """The redundancy check, cryptographic checksum or signature did not match."""

    COUNTER_LOW = 0x02
    """The counter is not above the stored value (a replay or an old packet)."""

    COUNTER_HIGH = 0x03
    """The counter is further above the stored value than the receiver accepts."""

    COUNTER_BLOCKED = 0x04
    """The stored counter reached its maximum: no packet can ever be accepted."""

    CIPHERING_ERROR = 0x05
    """The secured part could not be deciphered."""

    SECURITY_ERROR = 0x06
    """An unidentified security error (also what real cards answer to most failures)."""

    INSUFFICIENT_MEMORY = 0x07
    """The card has no room to process the command."""

    MORE_TIME = 0x08
    """The card needs more time to process the command."""

    TAR_UNKNOWN = 0x09
    """No application is registered under the packet's TAR."""

    INSUFFICIENT_SECURITY = 0x0A
    """The SPI is below the target application's minimum security level (MSL)."""

    RESPONSE_BY_SMS_SUBMIT = 0x0B
    """The real PoR follows in an SMS-SUBMIT (TS 31.115); this one is header only."""

    RESPONSE_BY_USSD = 0x0C
    """The real PoR follows over USSD (TS 31.115)."""
