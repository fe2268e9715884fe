"""SPI, KIc and KID: the bytes that say how a packet is secured.

The receiver reads these in clear before it can touch anything else, so they
are parsed strictly: a reserved bit that is set means the sender speaks a
dialect we do not, and guessing would mean verifying with the wrong algorithm.
Coding per ETSI TS 102 225 sections 5.1.1-5.1.3 and 3GPP TS 31.115 section 4.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from functools import lru_cache

from attrs import field, frozen
from attrs.validators import instance_of

from bipgw.codec.ota._errors import BadFormat


class ChecksumKind(IntEnum):
    """What protects a packet's integrity (SPI1 b2-b1, SPI2 b4-b3)."""

    NONE = 0
    """No integrity protection."""
    RC = 1
    """Redundancy check: a CRC, keyless (detects corruption, not forgery)."""
    CC = 2
    """Cryptographic checksum: a MAC under the KID key."""
    DS = 3
    """Digital signature (coded, but not supported by this codec)."""


class CounterMode(IntEnum):
    """What the receiver does with CNTR (SPI1 b5-b4).

    Mode C{11} is "one higher", as in TS 102 225 and every implementation
    except pySim, whose name for it ("must be lower") is a misnomer.
    """

    NONE = 0
    """No counter available (the field is still sent and ignored)."""
    PRESENT = 1
    """Counter available, no replay or sequence check."""
    HIGHER = 2
    """Process only if CNTR is above the stored value."""
    ONE_HIGHER = 3
    """Process only if CNTR is exactly the stored value plus one."""


class PorMode(IntEnum):
    """When the receiver answers with a PoR (SPI2 b2-b1; C{11} is reserved)."""

    NONE = 0
    """Never."""
    ALWAYS = 1
    """After every packet."""
    ON_ERROR = 2
    """Only when something failed."""


def _reserved(byte_name: str, bit: str, value: int, offset: int) -> BadFormat:
    return BadFormat(f"reserved bit {bit} is set in 0x{value:02X}", field=byte_name, offset=offset)


@frozen
class Spi:
    """The two Security Parameter Indicator bytes of a command packet.

    SPI1 secures the command, SPI2 says how the PoR comes back and how it is
    secured.  The defaults are "no security, no PoR".
    """

    checksum: ChecksumKind = field(default=ChecksumKind.NONE, validator=instance_of(ChecksumKind))
    ciphered: bool = field(default=False, validator=instance_of(bool))
    counter: CounterMode = field(default=CounterMode.NONE, validator=instance_of(CounterMode))
    por: PorMode = field(default=PorMode.NONE, validator=instance_of(PorMode))
    por_checksum: ChecksumKind = field(
        default=ChecksumKind.NONE, validator=instance_of(ChecksumKind)
    )
    por_ciphered: bool = field(default=False, validator=instance_of(bool))
    por_via_submit: bool = field(default=False, validator=instance_of(bool))
    """C{True}: the PoR travels in an SMS-SUBMIT, not the SMS-DELIVER-REPORT."""

    @classmethod
    def from_bytes(cls, data: bytes, *, offset: int = 0) -> Spi:
        """Parse the two SPI bytes.

        @param offset: where C{data} sits in the packet, for error messages.
        @raise BadFormat: wrong size, or a reserved bit or value is used.
        """
        return _parse_spi(bytes(data), offset)

    @classmethod
    def _parse(cls, data: bytes, offset: int) -> Spi:
        if len(data) != 2:
            raise BadFormat(f"needs 2 bytes, got {len(data)}", field="SPI", offset=offset)
        spi1, spi2 = data[0], data[1]
        for bit in (8, 7, 6):
            if spi1 & (1 << (bit - 1)):
                raise _reserved("SPI1", f"b{bit}", spi1, offset)
        for bit in (8, 7):
            if spi2 & (1 << (bit - 1)):
                raise _reserved("SPI2", f"b{bit}", spi2, offset + 1)
        if spi2 & 0x03 == 0x03:
            raise BadFormat(
                f"PoR mode b2-b1 = 11 is reserved in 0x{spi2:02X}", field="SPI2", offset=offset + 1
            )
        return cls(
            checksum=ChecksumKind(spi1 & 0x03),
            ciphered=bool(spi1 & 0x04),
            counter=CounterMode((spi1 >> 3) & 0x03),
            por=PorMode(spi2 & 0x03),
            por_checksum=ChecksumKind((spi2 >> 2) & 0x03),
            por_ciphered=bool(spi2 & 0x10),
            por_via_submit=bool(spi2 & 0x20),
        )

    def to_bytes(self) -> bytes:
        """The two SPI bytes."""
        spi1 = self.checksum | (0x04 if self.ciphered else 0) | (self.counter << 3)
        spi2 = (
            self.por
            | (self.por_checksum << 2)
            | (0x10 if self.por_ciphered else 0)
            | (0x20 if self.por_via_submit else 0)
        )
        return bytes((spi1, spi2))


@lru_cache(maxsize=512)
def _parse_spi(data: bytes, offset: int) -> Spi:
    # Senders use a handful of SPIs; parsing each once keeps verification cheap.
    return Spi._parse(data, offset)


def _check_index(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 15:
        raise BadFormat(f"key index must be 0..15, got {value!r}", field="key_index")


class KicAlgorithm(IntEnum):
    """The ciphering algorithm in the low nibble of KIc (TS 102 225 5.1.2).

    The value is the nibble itself: b2-b1 = family (00 implicit, 01 DES,
    10 AES, 11 proprietary), b4-b3 = the variant within DES.
    """

    IMPLICIT = 0x0
    """Agreed out of band; the codec cannot apply it."""
    DES_CBC = 0x1
    """Single DES, CBC (8-byte key)."""
    TDES_2KEY = 0x5
    """Triple DES outer-CBC, two keys (16-byte key K1||K2)."""
    TDES_3KEY = 0x9
    """Triple DES outer-CBC, three keys (24-byte key)."""
    DES_ECB = 0xD
    """Single DES, ECB (8-byte key)."""
    AES_CBC = 0x2
    """AES, CBC (16-, 24- or 32-byte key)."""
    PROPRIETARY = 0x3
    """Card-vendor specific; the codec cannot apply it."""


_KIC_BY_NIBBLE = {a.value: a for a in KicAlgorithm}


@frozen
class Kic:
    """The KIc byte: which key (index / KVN) and algorithm cipher the packet."""

    key_index: int = field(validator=_check_index)
    algorithm: KicAlgorithm = field(validator=instance_of(KicAlgorithm))

    @classmethod
    def from_byte(cls, value: int, *, offset: int = 0) -> Kic:
        """Parse a KIc byte.

        @raise BadFormat: b4-b3 are set where the family reserves them.
        """
        return _parse_kic(value, offset)

    @classmethod
    def _parse(cls, value: int, offset: int) -> Kic:
        nibble = value & 0x0F
        algorithm = _KIC_BY_NIBBLE.get(nibble)
        if algorithm is None:
            raise BadFormat(
                f"reserved bits b4-b3 = {(nibble >> 2):02b} for algorithm family"
                f" b2-b1 = {(nibble & 3):02b} in 0x{value:02X}",
                field="KIc",
                offset=offset,
            )
        return cls(key_index=value >> 4, algorithm=algorithm)

    def to_byte(self) -> int:
        """The KIc byte."""
        return (self.key_index << 4) | self.algorithm


@lru_cache(maxsize=512)
def _parse_kic(value: int, offset: int) -> Kic:
    return Kic._parse(value, offset)


class KidAlgorithm(Enum):
    """The integrity algorithm in the low nibble of KID.

    The same nibble means different things under RC and under CC (C{1} is
    CRC16 or DES), so the members are names and L{Kid.from_byte} takes the
    checksum kind that decides the table.
    """

    IMPLICIT = "implicit"
    """Agreed out of band; the codec cannot apply it."""
    DES_CBC = "DES-CBC-MAC"
    """CC: single-DES CBC-MAC (8-byte key)."""
    TDES_2KEY = "3DES-2key-CBC-MAC"
    """CC: full 3DES CBC-MAC, two keys (16-byte key)."""
    TDES_3KEY = "3DES-3key-CBC-MAC"
    """CC: full 3DES CBC-MAC, three keys (24-byte key)."""
    AES_CMAC = "AES-CMAC"
    """CC: AES-CMAC (NIST SP 800-38B) truncated to 8 bytes."""
    CRC16 = "CRC16"
    """RC: CRC-16 of ISO/IEC 13239 (2 bytes)."""
    CRC32 = "CRC32"
    """RC: CRC-32 of ISO/IEC 13239 (4 bytes)."""
    PROPRIETARY = "proprietary"
    """Card-vendor specific; the codec cannot apply it."""


_KID_CC = {
    0x0: KidAlgorithm.IMPLICIT,
    0x1: KidAlgorithm.DES_CBC,
    0x5: KidAlgorithm.TDES_2KEY,
    0x9: KidAlgorithm.TDES_3KEY,
    0x2: KidAlgorithm.AES_CMAC,
    0x3: KidAlgorithm.PROPRIETARY,
}
_KID_RC = {
    0x0: KidAlgorithm.IMPLICIT,
    0x1: KidAlgorithm.CRC16,
    0x5: KidAlgorithm.CRC32,
    0x3: KidAlgorithm.PROPRIETARY,
}
_KID_NIBBLE = {**{a: n for n, a in _KID_CC.items()}, **{a: n for n, a in _KID_RC.items()}}
RC_ALGORITHMS = frozenset(_KID_RC.values())
"""KID algorithms that can go with RC."""
CC_ALGORITHMS = frozenset(_KID_CC.values())
"""KID algorithms that can go with CC (and with no checksum or DS, where KID is unused)."""


@frozen
class Kid:
    """The KID byte: which key (index / KVN) and algorithm protect integrity."""

    key_index: int = field(validator=_check_index)
    algorithm: KidAlgorithm = field(validator=instance_of(KidAlgorithm))

    @classmethod
    def from_byte(cls, value: int, checksum: ChecksumKind, *, offset: int = 0) -> Kid:
        """Parse a KID byte under the table that C{checksum} selects.

        With no checksum or with DS the KID is not used for RC/CC; it is read
        with the CC table so that it still round-trips.

        @raise BadFormat: the nibble is reserved in that table.
        """
        return _parse_kid(value, checksum, offset)

    @classmethod
    def _parse(cls, value: int, checksum: ChecksumKind, offset: int) -> Kid:
        nibble = value & 0x0F
        table = _KID_RC if checksum == ChecksumKind.RC else _KID_CC
        algorithm = table.get(nibble)
        if algorithm is None:
            kind = "RC" if checksum == ChecksumKind.RC else "CC"
            raise BadFormat(
                f"reserved bits b4-b3 = {(nibble >> 2):02b} for algorithm family"
                f" b2-b1 = {(nibble & 3):02b} under {kind} in 0x{value:02X}",
                field="KID",
                offset=offset,
            )
        return cls(key_index=value >> 4, algorithm=algorithm)

    def to_byte(self) -> int:
        """The KID byte."""
        return (self.key_index << 4) | _KID_NIBBLE[self.algorithm]

    def for_checksum(self, checksum: ChecksumKind) -> Kid:
        """The same byte read under another checksum kind.

        A PoR may use RC where the command used CC (SPI2 differs from SPI1);
        the KID byte is shared, its meaning is not.

        @raise BadFormat: the nibble is reserved under C{checksum}.
        """
        return Kid.from_byte(self.to_byte(), checksum)

    def fits(self, checksum: ChecksumKind) -> bool:
        """Whether this algorithm can be coded in a packet using C{checksum}."""
        if checksum == ChecksumKind.RC:
            return self.algorithm in RC_ALGORITHMS
        return self.algorithm in CC_ALGORITHMS


@lru_cache(maxsize=1024)
def _parse_kid(value: int, checksum: ChecksumKind, offset: int) -> Kid:
    return Kid._parse(value, checksum, offset)
