"""TS 102 226 section 9 PUSH: the C-APDU that makes a card call the server.

The gateway wakes a card by sending, inside an SCP80 secured SMS to an SD or
RFM TAR, the command C{80 EC 01 P2 Lc data} (PROTOCOLS.md 2.4):

  - P2 C{01} L{PushBipOpening}: open a BIP channel with the OPEN CHANNEL
    COMPREHENSION-TLVs in the data (alpha C{05}, bearer C{35}, buffer size
    C{39}, APN C{47}, transport C{3C}, address C{3E}, others kept raw);
  - P2 C{02} L{PushCatTpLink}: establish a CAT_TP link: transport level
    C{3C 03 00 port} (protocol byte C{00}, as njiwa and the third-party tool
    tests send it), optional buffer size and identification C{36};
  - P2 C{03} L{PushTcpConnection}: open a TCP connection, same TLVs as P2
    C{01} (UNVERIFIED: only one secondary source);
  - P2 C{04} L{PushIdentification}: send an identification packet C{36}
    (UNVERIFIED, same source; the ICCID is used when absent).

Encoding writes the TLVs without CR flags in a fixed order (alpha first, as
OPEN CHANNEL has it, then the L{ConnectionParams} order) and a short case 3
APDU (case 1, 4 bytes, when there is no data).  Decoding checks CLA C{80},
INS C{EC}, P1 C{01} (C{80}, "application specific", is not coded here), P2,
and that Lc matches the data exactly (no Le), naming the byte at fault.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Final, Protocol, Self

import attrs

from bipgw.codec.ram._bip import (
    TAG_ALPHA,
    TAG_BEARER,
    TAG_BUFFER_SIZE,
    TAG_CHANNEL_DATA,
    TAG_NAN,
    TAG_OTHER_ADDRESS,
    TAG_TRANSPORT,
    BearerDescription,
    BufferSize,
    ConnectionParams,
    NetworkAccessName,
    OtherAddress,
    TransportLevel,
)
from bipgw.codec.ram._common import RamError, from_tlv_error
from bipgw.codec.tlv import CompTlv, TlvError, decode_comprehension, encode_comprehension

__all__ = [
    "PushBipOpening",
    "PushCatTpLink",
    "PushCommand",
    "PushIdentification",
    "PushRequest",
    "PushTcpConnection",
    "decode_push",
]

_CLA: Final = 0x80
_INS: Final = 0xEC
_P1: Final = 0x01


class PushRequest(enum.IntEnum):
    """P2 of the PUSH command: what the card is asked to do."""

    BIP_CHANNEL = 0x01
    CAT_TP_LINK = 0x02
    TCP_CONNECTION = 0x03
    IDENTIFICATION = 0x04


def _apdu(p2: int, data: bytes) -> bytes:
    if len(data) > 255:
        raise RamError(f"{len(data)} bytes of PUSH data exceed a short APDU's 255", field="Lc")
    header = bytes((_CLA, _INS, _P1, p2))
    return header + bytes((len(data),)) + data if data else header


def _data(capdu: bytes) -> tuple[int, bytes]:
    """Check the header of a PUSH C-APDU; return P2 and the data."""
    capdu = bytes(capdu)
    if len(capdu) < 4:
        raise RamError(f"{len(capdu)} bytes, a PUSH APDU needs at least 4", field="header")
    for offset, (name, expected) in enumerate((("CLA", _CLA), ("INS", _INS), ("P1", _P1))):
        if capdu[offset] != expected:
            raise RamError(
                f"{name} is {capdu[offset]:02X}, a PUSH has {expected:02X}",
                field=name,
                offset=offset,
            )
    p2 = capdu[3]
    if p2 not in PushRequest._value2member_map_:
        raise RamError(f"P2 {p2:02X} is not a PUSH request (01..04)", field="P2", offset=3)
    if len(capdu) == 4 or (len(capdu) == 5 and capdu[4] == 0):
        return p2, b""
    lc = capdu[4]
    if lc == 0 or len(capdu) != 5 + lc:
        raise RamError(f"Lc {lc:02X} but {len(capdu) - 5} data bytes follow", field="Lc", offset=4)
    return p2, capdu[5:]


def _tlvs(data: bytes) -> list[CompTlv]:
    try:
        return decode_comprehension(data)
    except TlvError as e:
        raise from_tlv_error(e, "PUSH data", base=5) from e


class _Push(Protocol):
    """A PUSH variant: it codes its command data (L{data}, L{from_data}); the
    APDU header handling every variant shares comes with the protocol, so
    each variant declares it explicitly as its base."""

    __slots__ = ()
    request: ClassVar[PushRequest]

    def data(self) -> bytes:
        """The command data (TLVs) of the APDU."""
        ...

    @classmethod
    def from_data(cls, data: bytes) -> Self:
        """Decode the command data (TLVs) of the APDU."""
        ...

    def encode(self) -> bytes:
        """The PUSH C-APDU, ready to be put in a compact script."""
        return _apdu(self.request, self.data())

    @classmethod
    def decode(cls, capdu: bytes) -> Self:
        """Decode a PUSH C-APDU of this kind.

        @raise RamError: for a bad header, another P2 or malformed data.
        """
        p2, data = _data(capdu)
        if p2 != cls.request:
            raise RamError(
                f"P2 {p2:02X} is not {cls.request:02X} ({cls.request.name})", field="P2", offset=3
            )
        return cls.from_data(data)


def _check_bytes(instance: object, attribute: attrs.Attribute[bytes | None], value: object) -> None:
    if value is not None and (type(value) is not bytes or len(value) > 255):
        raise RamError("must be at most 255 bytes, or None", field=attribute.name)


def _check_extra(
    instance: object, attribute: attrs.Attribute[tuple[CompTlv, ...]], extra: object
) -> None:
    if not isinstance(extra, tuple) or not all(isinstance(t, CompTlv) for t in extra):
        raise RamError("extra must be a tuple of CompTlv", field="extra")
    owned = _OWN_TAGS.get(type(instance), frozenset())
    for tlv in extra:
        if tlv.tag in owned:
            raise RamError(
                f"tag {tlv.tag:02X} has its own field; it cannot be an extra TLV", field="extra"
            )


def _connection_fields(
    params: ConnectionParams,
) -> tuple[
    BearerDescription | None,
    BufferSize | None,
    NetworkAccessName | None,
    TransportLevel | None,
    OtherAddress | None,
]:
    return params.bearer, params.buffer_size, params.nan, params.transport, params.address


@attrs.frozen
class _ConnectionPush(_Push):
    """The two PUSH variants that carry OPEN CHANNEL parameters (P2 C{01} and C{03}).

    @ivar alpha: raw alpha identifier C{05} (SIM alphabet or UCS2 coded).
    @ivar extra: other OPEN CHANNEL TLVs (login/password C{0D} ...), verbatim.
    """

    bearer: BearerDescription | None = None
    buffer_size: BufferSize | None = None
    nan: NetworkAccessName | None = None
    transport: TransportLevel | None = None
    address: OtherAddress | None = None
    alpha: bytes | None = attrs.field(default=None, validator=_check_bytes)
    extra: tuple[CompTlv, ...] = attrs.field(default=(), validator=_check_extra)

    def data(self) -> bytes:
        alpha = b"" if self.alpha is None else encode_comprehension(TAG_ALPHA, self.alpha)
        return alpha + ConnectionParams(*_connection_fields_of(self), self.extra).encode()

    @classmethod
    def from_data(cls, data: bytes) -> Self:
        alpha, params = _split_alpha(_tlvs(data))
        return cls(*_connection_fields(params), alpha, params.extra)


@attrs.frozen
class PushBipOpening(_ConnectionPush):
    """PUSH P2 C{01}: "request for BIP channel opening".

    pySim's C{80EC01010E 350103 390203E8 3E052101020304} is
    C{PushBipOpening(bearer=BearerDescription.default(),
    buffer_size=BufferSize(1000), address=OtherAddress(ip_address("1.2.3.4")))}.
    """

    request: ClassVar[PushRequest] = PushRequest.BIP_CHANNEL


@attrs.frozen
class PushTcpConnection(_ConnectionPush):
    """PUSH P2 C{03}: "request for TCP connection" (data fields UNVERIFIED).

    Same parameters as L{PushBipOpening}, typically C{35 01 03},
    C{3C 03 02 port}, C{3E 05 21 ipv4} and an APN.
    """

    request: ClassVar[PushRequest] = PushRequest.TCP_CONNECTION


def _connection_fields_of(
    push: _ConnectionPush,
) -> tuple[
    BearerDescription | None,
    BufferSize | None,
    NetworkAccessName | None,
    TransportLevel | None,
    OtherAddress | None,
]:
    return push.bearer, push.buffer_size, push.nan, push.transport, push.address


def _split_alpha(tlvs: list[CompTlv]) -> tuple[bytes | None, ConnectionParams]:
    alphas = [t for t in tlvs if t.tag == TAG_ALPHA]
    if len(alphas) > 1:
        raise RamError("tag 05 (alpha identifier) appears twice", field="PUSH data")
    rest = [t for t in tlvs if t.tag != TAG_ALPHA]
    return (alphas[0].value if alphas else None), ConnectionParams.from_tlvs(rest, what="PUSH data")


def _check_port(instance: object, attribute: attrs.Attribute[int], port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise RamError(f"port {port!r} outside 0..65535", field="port")


@attrs.frozen
class PushCatTpLink(_Push):
    """PUSH P2 C{02}: "request for CAT_TP link establishment".

    C{PushCatTpLink(0x1F90).encode()} is C{80EC0102053C03001F90}.

    @ivar port: the CAT_TP port, in C{3C 03 00 port}.
    @ivar identification: the identification data C{36} the card echoes
        when it connects, so the server can tell cards apart.
    """

    request: ClassVar[PushRequest] = PushRequest.CAT_TP_LINK
    port: int = attrs.field(validator=_check_port)
    buffer_size: BufferSize | None = None
    identification: bytes | None = attrs.field(default=None, validator=_check_bytes)
    extra: tuple[CompTlv, ...] = attrs.field(default=(), validator=_check_extra)

    def data(self) -> bytes:
        parts = [encode_comprehension(TAG_TRANSPORT, bytes((0, self.port >> 8, self.port & 0xFF)))]
        if self.buffer_size is not None:
            parts.append(self.buffer_size.encode())
        if self.identification is not None:
            parts.append(encode_comprehension(TAG_CHANNEL_DATA, self.identification))
        parts.extend(t.encode() for t in self.extra)
        return b"".join(parts)

    @classmethod
    def from_data(cls, data: bytes) -> Self:
        port: int | None = None
        buffer_size: BufferSize | None = None
        identification: bytes | None = None
        extra = []
        for tlv in _tlvs(data):
            if tlv.tag == TAG_TRANSPORT:
                if port is not None:
                    raise RamError("tag 3C appears twice", field="PUSH data")
                if len(tlv.value) != 3 or tlv.value[0] != 0:
                    raise RamError(
                        "a CAT_TP transport level is 00 and a 2-byte port",
                        field="PUSH data: transport level",
                    )
                port = int.from_bytes(tlv.value[1:], "big")
            elif tlv.tag == TAG_BUFFER_SIZE:
                if buffer_size is not None:
                    raise RamError("tag 39 appears twice", field="PUSH data")
                buffer_size = BufferSize.from_tlv(tlv)
            elif tlv.tag == TAG_CHANNEL_DATA:
                if identification is not None:
                    raise RamError("tag 36 appears twice", field="PUSH data")
                identification = tlv.value
            else:
                extra.append(tlv)
        if port is None:
            raise RamError("the CAT_TP port (tag 3C) is missing", field="PUSH data")
        return cls(port, buffer_size, identification, tuple(extra))


@attrs.frozen
class PushIdentification(_Push):
    """PUSH P2 C{04}: "request for identification packet" (data UNVERIFIED).

    @ivar identification: the C{36} identification data; absent, the card
        identifies itself by its ICCID.
    """

    request: ClassVar[PushRequest] = PushRequest.IDENTIFICATION
    identification: bytes | None = attrs.field(default=None, validator=_check_bytes)

    def data(self) -> bytes:
        if self.identification is None:
            return b""
        return encode_comprehension(TAG_CHANNEL_DATA, self.identification)

    @classmethod
    def from_data(cls, data: bytes) -> Self:
        tlvs = _tlvs(data)
        if not tlvs:
            return cls()
        if len(tlvs) != 1 or tlvs[0].tag != TAG_CHANNEL_DATA:
            raise RamError(
                "identification data is at most one tag 36 TLV", field="PUSH data", offset=5
            )
        return cls(tlvs[0].value)


_CHANNEL_TAGS: Final = frozenset(
    (TAG_ALPHA, TAG_BEARER, TAG_BUFFER_SIZE, TAG_NAN, TAG_TRANSPORT, TAG_OTHER_ADDRESS)
)
_OWN_TAGS: Final[dict[type, frozenset[int]]] = {
    PushBipOpening: _CHANNEL_TAGS,
    PushTcpConnection: _CHANNEL_TAGS,
    PushCatTpLink: frozenset((TAG_TRANSPORT, TAG_BUFFER_SIZE, TAG_CHANNEL_DATA)),
}

PushCommand = PushBipOpening | PushCatTpLink | PushTcpConnection | PushIdentification
"""Any PUSH command L{decode_push} returns."""

_KINDS: Final[dict[int, type[PushCommand]]] = {
    PushRequest.BIP_CHANNEL: PushBipOpening,
    PushRequest.CAT_TP_LINK: PushCatTpLink,
    PushRequest.TCP_CONNECTION: PushTcpConnection,
    PushRequest.IDENTIFICATION: PushIdentification,
}


def decode_push(capdu: bytes) -> PushCommand:
    """Decode any PUSH C-APDU, choosing the type by P2.

    @raise RamError: for a bad header (naming CLA/INS/P1/P2/Lc) or bad data.
    """
    p2, data = _data(capdu)
    return _KINDS[p2].from_data(data)
