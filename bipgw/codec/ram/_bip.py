"""Typed OPEN CHANNEL parameters (ETSI TS 102 223), as PUSH and Amd B carry them.

A card opens its BIP channel with the values the server sends in the TS 102
226 PUSH (P2 C{01}/C{03}) or in the Amd B connection parameters (C{84}):
bearer, buffer size, APN, transport and address.  Each is a small frozen
value that encodes to, and decodes from, its COMPREHENSION-TLV
(PROTOCOLS.md section 5):

  - L{BearerDescription} C{35}: bearer type then raw bearer parameters
    (C{03} default bearer, none; C{02} packet service with the QoS bytes;
    C{0B} E-UTRAN);
  - L{BufferSize} C{39}: two bytes, big-endian;
  - L{NetworkAccessName} C{47}: APN labels, each prefixed by its length
    (C{08 "internet"}), not dotted text;
  - L{TransportLevel} C{3C}: protocol type then port;
  - L{OtherAddress} C{3E}: C{21} + IPv4 or C{57} + IPv6.

L{ConnectionParams} is the set of them as one TLV sequence.  Encoding writes
them without the CR flag (as every public PUSH and Amd B example does), in
the order bearer, buffer size, APN, transport, address, then any other TLVs
kept verbatim; decoding accepts either CR form and any order, and refuses a
known tag that appears twice (two C{3E} would be ambiguous: local address or
destination).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import ClassVar, Final, Protocol, Self, TypeVar

import attrs

from bipgw.codec.ram._common import RamError, from_tlv_error
from bipgw.codec.tlv import CompTlv, TlvError, decode_comprehension

__all__ = [
    "BearerDescription",
    "BearerType",
    "BufferSize",
    "ConnectionParams",
    "NetworkAccessName",
    "OtherAddress",
    "TransportLevel",
    "TransportProtocol",
]

TAG_ALPHA: Final = 0x05
TAG_BEARER: Final = 0x35
TAG_CHANNEL_DATA: Final = 0x36
TAG_BUFFER_SIZE: Final = 0x39
TAG_TRANSPORT: Final = 0x3C
TAG_OTHER_ADDRESS: Final = 0x3E
TAG_NAN: Final = 0x47


class _CatValue(Protocol):
    """A typed OPEN CHANNEL value: it codes its value bytes (L{to_value},
    L{from_value}); the TLV plumbing every such value shares comes with the
    protocol, so each value class declares it explicitly as its base."""

    __slots__ = ()
    tag: ClassVar[int]
    what: ClassVar[str]

    def to_value(self) -> bytes:
        """The value bytes of the TLV."""
        ...

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        """Decode the value bytes of the TLV."""
        ...

    def to_tlv(self, comprehension_required: bool = False) -> CompTlv:
        """This value as a COMPREHENSION-TLV."""
        return CompTlv(self.tag, self.to_value(), comprehension_required)

    def encode(self, comprehension_required: bool = False) -> bytes:
        """This value as COMPREHENSION-TLV bytes (C{B5 01 03} with CR, C{35 01 03} without)."""
        return self.to_tlv(comprehension_required).encode()

    @classmethod
    def from_tlv(cls, tlv: CompTlv) -> Self:
        """Decode from a COMPREHENSION-TLV; the CR flag does not matter.

        @raise RamError: for another tag or a malformed value.
        """
        if tlv.tag != cls.tag:
            raise RamError(f"expected tag {cls.tag:02X}, got {tlv.tag:02X}", field=cls.what)
        return cls.from_value(tlv.value)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode one whole COMPREHENSION-TLV.

        @raise RamError: for malformed bytes, bytes after the TLV, another
            tag or a malformed value.
        """
        try:
            tlvs = decode_comprehension(data)
        except TlvError as e:
            raise from_tlv_error(e, cls.what) from e
        if len(tlvs) != 1:
            raise RamError(f"expected one TLV, found {len(tlvs)}", field=cls.what)
        return cls.from_tlv(tlvs[0])


def _byte(value: int, what: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise RamError(f"{value!r} is not a byte value", field=what)


class BearerType(enum.IntEnum):
    """Bearer types of the bearer description (TS 102 223 8.52) used with BIP here."""

    PACKET_SERVICE = 0x02
    """GPRS / UTRAN / E-UTRAN packet service; parameters are the QoS bytes and PDP type."""
    DEFAULT = 0x03
    """The terminal's default bearer for the requested transport; no parameters."""
    E_UTRAN = 0x0B
    """E-UTRAN / mapped UTRAN packet service with extended parameters."""


def _check_bearer(instance: BearerDescription, attribute: object, value: object) -> None:
    _byte(instance.bearer_type, "bearer description")
    if type(instance.parameters) is not bytes:
        raise RamError("bearer parameters must be bytes", field="bearer description")
    if instance.bearer_type == BearerType.DEFAULT and instance.parameters:
        raise RamError("the default bearer (03) takes no parameters", field="bearer description")


@attrs.frozen
class BearerDescription(_CatValue):
    """Bearer description C{35}: which bearer the terminal should use.

    @ivar bearer_type: a L{BearerType} or another TS 102 223 bearer code.
    @ivar parameters: the bearer parameters, raw (for C{02}: precedence,
        delay, reliability, peak, mean, PDP type).
    """

    tag: ClassVar[int] = TAG_BEARER
    what: ClassVar[str] = "bearer description"
    bearer_type: int
    parameters: bytes = attrs.field(default=b"", validator=_check_bearer)

    @classmethod
    def default(cls) -> BearerDescription:
        """C{35 01 03}: let the terminal pick its default bearer (the usual choice)."""
        return cls(BearerType.DEFAULT)

    def to_value(self) -> bytes:
        return bytes((self.bearer_type,)) + self.parameters

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if not value:
            raise RamError("empty bearer description", field=cls.what)
        kind = value[0]
        return cls(BearerType(kind) if kind in BearerType._value2member_map_ else kind, value[1:])


def _check_u16(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise RamError(f"{value!r} is outside 0..65535", field=attribute.name)


@attrs.frozen
class BufferSize(_CatValue):
    """Buffer size C{39}: the channel buffer the card asks the terminal for."""

    tag: ClassVar[int] = TAG_BUFFER_SIZE
    what: ClassVar[str] = "buffer size"
    size: int = attrs.field(validator=_check_u16)

    def to_value(self) -> bytes:
        return self.size.to_bytes(2, "big")

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if len(value) != 2:
            raise RamError(f"buffer size is 2 bytes, not {len(value)}", field=cls.what)
        return cls(int.from_bytes(value, "big"))


class TransportProtocol(enum.IntEnum):
    """UICC/terminal interface transport protocol types (TS 102 223 8.59)."""

    UDP_CLIENT_REMOTE = 0x01
    TCP_CLIENT_REMOTE = 0x02
    TCP_SERVER = 0x03
    UDP_CLIENT_LOCAL = 0x04
    TCP_CLIENT_LOCAL = 0x05
    DIRECT = 0x06


def _to_protocol(value: int) -> TransportProtocol:
    try:
        return TransportProtocol(value)
    except ValueError:
        raise RamError(
            f"unknown transport protocol type {value!r}", field="transport level"
        ) from None


@attrs.frozen
class TransportLevel(_CatValue):
    """UICC/terminal interface transport level C{3C}: protocol and port.

    SCP81 uses L{TransportProtocol.TCP_CLIENT_REMOTE}: the card connects out
    to the admin server's port.
    """

    tag: ClassVar[int] = TAG_TRANSPORT
    what: ClassVar[str] = "transport level"
    protocol: TransportProtocol = attrs.field(converter=_to_protocol)
    port: int = attrs.field(validator=_check_u16)

    def to_value(self) -> bytes:
        return bytes((self.protocol, self.port >> 8, self.port & 0xFF))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if len(value) != 3:
            raise RamError(f"transport level is 3 bytes, not {len(value)}", field=cls.what)
        return cls(_to_protocol(value[0]), int.from_bytes(value[1:], "big"))


_ADDRESS_TYPES: Final = {4: 0x21, 6: 0x57}


def _check_address(
    instance: object,
    attribute: attrs.Attribute[ipaddress.IPv4Address | ipaddress.IPv6Address],
    value: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise RamError(f"{value!r} is not an IPv4Address or IPv6Address", field="other address")


@attrs.frozen
class OtherAddress(_CatValue):
    """Other address C{3E}: the IP address the card connects to.

    Build it with L{ipaddress.ip_address}; the type byte (C{21} IPv4, C{57}
    IPv6) follows from the address.
    """

    tag: ClassVar[int] = TAG_OTHER_ADDRESS
    what: ClassVar[str] = "other address"
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = attrs.field(validator=_check_address)

    def to_value(self) -> bytes:
        return bytes((_ADDRESS_TYPES[self.address.version],)) + self.address.packed

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if len(value) == 5 and value[0] == 0x21:
            return cls(ipaddress.IPv4Address(value[1:]))
        if len(value) == 17 and value[0] == 0x57:
            return cls(ipaddress.IPv6Address(value[1:]))
        kind = f"{value[0]:02X}" if value else "missing"
        raise RamError(
            f"expected 21 + 4-byte IPv4 or 57 + 16-byte IPv6 address, got type {kind} "
            f"and {max(len(value) - 1, 0)} address bytes",
            field=cls.what,
        )


_LABEL: Final = re.compile(r"[A-Za-z0-9_-]{1,63}")
MAX_NAN: Final = 100
"""Largest encoded APN (TS 23.003 9.1: at most 100 octets)."""


def _check_name(instance: object, attribute: attrs.Attribute[str], name: str) -> None:
    if not isinstance(name, str):
        raise RamError(f"{name!r} is not text", field="network access name")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise RamError(
                f"label {label!r} of {name!r} is not 1..63 letters, digits, '-' or '_'",
                field="network access name",
            )
    if len(name) + 1 > MAX_NAN:
        raise RamError(
            f"{name!r} encodes to more than {MAX_NAN} bytes", field="network access name"
        )


@attrs.frozen
class NetworkAccessName(_CatValue):
    """Network access name (APN) C{47}, held as dotted text.

    @ivar name: e.g. C{"internet.operator.com"}; encoded as length-prefixed
        labels (C{08 internet 08 operator 03 com}).
    """

    tag: ClassVar[int] = TAG_NAN
    what: ClassVar[str] = "network access name"
    name: str = attrs.field(validator=_check_name)

    @property
    def labels(self) -> tuple[str, ...]:
        """The APN's labels, in order."""
        return tuple(self.name.split("."))

    def to_value(self) -> bytes:
        return b"".join(bytes((len(label),)) + label.encode("ascii") for label in self.labels)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        labels = []
        pos = 0
        while pos < len(value):
            size = value[pos]
            label = value[pos + 1 : pos + 1 + size]
            if size == 0 or len(label) != size:
                raise RamError(
                    f"APN label at byte {pos} announces {size} bytes, {len(label)} present",
                    field=cls.what,
                )
            try:
                labels.append(label.decode("ascii"))
            except UnicodeDecodeError:
                raise RamError(f"APN label at byte {pos} is not ASCII", field=cls.what) from None
            pos += 1 + size
        if not labels:
            raise RamError("empty network access name", field=cls.what)
        return cls(".".join(labels))


_TYPES: Final[dict[int, type[_CatValue]]] = {
    TAG_BEARER: BearerDescription,
    TAG_BUFFER_SIZE: BufferSize,
    TAG_NAN: NetworkAccessName,
    TAG_TRANSPORT: TransportLevel,
    TAG_OTHER_ADDRESS: OtherAddress,
}


def _check_extra(
    instance: object, attribute: attrs.Attribute[tuple[CompTlv, ...]], extra: tuple[CompTlv, ...]
) -> None:
    if not isinstance(extra, tuple) or not all(isinstance(t, CompTlv) for t in extra):
        raise RamError("extra must be a tuple of CompTlv", field="extra")
    for tlv in extra:
        if tlv.tag in _TYPES:
            raise RamError(
                f"tag {tlv.tag:02X} has its own field; it cannot be an extra TLV", field="extra"
            )


@attrs.frozen
class ConnectionParams:
    """The OPEN CHANNEL parameters of a PUSH or an Amd B C{84}, all optional.

    The card completes missing ones from its own defaults (TS 102 226 9.2.1:
    "the objects provided in the PUSH command take precedence").

    @ivar extra: any other COMPREHENSION-TLVs (login/password text strings
        C{0D}, ...), kept and re-encoded verbatim after the known ones.
    """

    bearer: BearerDescription | None = None
    buffer_size: BufferSize | None = None
    nan: NetworkAccessName | None = None
    transport: TransportLevel | None = None
    address: OtherAddress | None = None
    extra: tuple[CompTlv, ...] = attrs.field(default=(), validator=_check_extra)

    def encode(self) -> bytes:
        """The parameters as a COMPREHENSION-TLV sequence (no CR flags)."""
        known = (self.bearer, self.buffer_size, self.nan, self.transport, self.address)
        return b"".join(v.encode() for v in known if v is not None) + b"".join(
            t.encode() for t in self.extra
        )

    @classmethod
    def decode(cls, data: bytes, *, what: str = "connection parameters") -> ConnectionParams:
        """Decode a COMPREHENSION-TLV sequence.

        @param what: how errors name the structure (C{"PUSH data"}, ...).
        @raise RamError: for malformed TLVs or values, or a known tag twice.
        """
        try:
            tlvs = decode_comprehension(data)
        except TlvError as e:
            raise from_tlv_error(e, what) from e
        return cls.from_tlvs(tlvs, what=what)

    @classmethod
    def from_tlvs(
        cls, tlvs: list[CompTlv], *, what: str = "connection parameters"
    ) -> ConnectionParams:
        """Sort already decoded TLVs into the typed fields and L{extra}."""
        found: dict[int, _CatValue] = {}
        extra = []
        for tlv in tlvs:
            kind = _TYPES.get(tlv.tag)
            if kind is None:
                extra.append(tlv)
                continue
            if tlv.tag in found:
                raise RamError(f"tag {tlv.tag:02X} appears twice", field=what)
            try:
                found[tlv.tag] = kind.from_tlv(tlv)
            except RamError as e:
                raise RamError(e.reason, field=f"{what}: {e.field}") from e
        return cls(
            bearer=_get(found, TAG_BEARER, BearerDescription),
            buffer_size=_get(found, TAG_BUFFER_SIZE, BufferSize),
            nan=_get(found, TAG_NAN, NetworkAccessName),
            transport=_get(found, TAG_TRANSPORT, TransportLevel),
            address=_get(found, TAG_OTHER_ADDRESS, OtherAddress),
            extra=tuple(extra),
        )


_V = TypeVar("_V", bound=_CatValue)


def _get(found: dict[int, _CatValue], tag: int, kind: type[_V]) -> _V | None:
    value = found.get(tag)
    return value if isinstance(value, kind) else None
