"""Proof of Receipt (PoR): the response packet, as the SMS TP-UD.

Layout (ETSI TS 102 225 5.2, 3GPP TS 31.115 4.2, PROTOCOLS.md 1.7)::

    02 71 00 | RPL(2) RHL(1) TAR(3) | CNTR(5) PCNTR(1) STATUS(1) RC/CC data padding
                                    |<------ ciphered with KIc if SPI2 b5 ------->|

Unlike the command, the PoR's RC/CC input starts with the UDH C{02 71 00}.
The algorithms are the command's (its KIc/KID bytes), the choices are the
command's SPI2.  A card that could not check the command's security answers
in clear (the real trace of a replayed counter: status 06, no CC), so
L{verify_response} accepts an unsecured PoR only when it reports such a
failure, never when it claims success.
"""

from __future__ import annotations

import hmac

from attrs import field, frozen
from attrs.validators import instance_of

from bipgw.codec.ota._command import integrity_length, valid_counter, valid_tar
from bipgw.codec.ota._crypto import block_size, checksum, decrypt, encrypt
from bipgw.codec.ota._errors import (
    BadChecksum,
    BadFormat,
    BadLength,
    CipheringError,
    InsufficientSecurity,
    OtaError,
    SecurityError,
)
from bipgw.codec.ota._keys import OtaKeys
from bipgw.codec.ota._spi import ChecksumKind, Kic, Kid, Spi
from bipgw.codec.ota._status import PorStatus

_UDH = b"\x02\x71\x00"
_HEAD = 9  # UDH RPL RHL TAR
_MIN_UD = _HEAD + 7  # ... CNTR PCNTR STATUS
_RPL_MAX = 0xFFFF

_CLEAR_FAILURES = frozenset(
    {
        PorStatus.RC_CC_DS_FAILED,
        PorStatus.COUNTER_LOW,
        PorStatus.COUNTER_HIGH,
        PorStatus.COUNTER_BLOCKED,
        PorStatus.CIPHERING_ERROR,
        PorStatus.SECURITY_ERROR,
        PorStatus.TAR_UNKNOWN,
        PorStatus.INSUFFICIENT_SECURITY,
    }
)
"""Statuses a card may send without security: it could not (or must not) use the keys."""


def _status(value: int) -> PorStatus:
    try:
        return PorStatus(value)
    except ValueError:
        raise BadFormat(f"unknown status {value!r}", field="status") from None


@frozen
class ResponsePacket:
    """One PoR in clear.

    @ivar counter: the command's CNTR, echoed (0 in a card's clear error PoR).
    @ivar data: the response data (e.g. L{CompactResult} bytes), unpadded;
        empty for a header-only PoR such as status C{0B} ("the response
        follows by SMS-SUBMIT").
    """

    tar: bytes = field(validator=valid_tar)
    counter: int = field(default=0, validator=valid_counter)
    status: PorStatus = field(default=PorStatus.POR_OK, converter=_status)
    data: bytes = field(default=b"", validator=instance_of(bytes))

    @classmethod
    def for_error(cls, tar: bytes, error: OtaError, *, counter: int = 0) -> ResponsePacket:
        """The PoR reporting C{error}, without data.

        Send it with no security (C{Spi()}) when the error is in the
        command's security: the keys or counter cannot be trusted then.
        """
        return cls(tar=tar, counter=counter, status=error.por_status)


@frozen
class OpenedResponse:
    """Everything read from a PoR, for diagnostics and for L{verify_response}.

    @ivar checksum: the RC/CC as received (empty when none).
    @ivar checksum_ok: whether it matched; C{None} when there is none.
    @ivar secured: C{False} when the card answered in clear although SPI2
        asked for security (see the module docstring).
    """

    packet: ResponsePacket
    rpl: int
    rhl: int
    pcntr: int
    checksum: bytes
    checksum_ok: bool | None
    secured: bool


def _por_kid(spi: Spi, kid: Kid | None) -> Kid | None:
    if kid is None or spi.por_checksum not in (ChecksumKind.RC, ChecksumKind.CC):
        return kid
    return kid.for_checksum(spi.por_checksum)


def _por_block(spi: Spi, kic: Kic | None) -> int:
    if not spi.por_ciphered:
        return 0
    if kic is None:
        raise SecurityError("asks for a ciphered PoR but no KIc was given", field="SPI2")
    return block_size(kic.algorithm)


def secure_response(
    resp: ResponsePacket,
    spi: Spi,
    keys: OtaKeys,
    *,
    kic: Kic | None = None,
    kid: Kid | None = None,
) -> bytes:
    """Build the PoR's SMS TP-UD (starting C{02 71 00}) as SPI2 asks.

    @param spi: the command's SPI; only SPI2 (the C{por_*} fields) matters.
    @param kic: the command's KIc, needed when SPI2 asks for ciphering.
    @param kid: the command's KID, needed when SPI2 asks for RC/CC; its
        nibble is read under SPI2's checksum kind.
    @raise SecurityError: see L{secure_command<bipgw.codec.ota.secure_command>}.
    @raise BadLength: the PoR would not fit RPL's two bytes.
    """
    por_kid = _por_kid(spi, kid)
    cs_len = integrity_length(spi.por_checksum, por_kid, "SPI2")
    size = _por_block(spi, kic)
    data = resp.data
    pad = -(7 + cs_len + len(data)) % size if size else 0
    rpl = 11 + cs_len + len(data) + pad
    if rpl > _RPL_MAX:
        raise BadLength(f"{rpl} bytes do not fit a 2-byte RPL", field="RPL", offset=3)
    head = _UDH + bytes((rpl >> 8, rpl & 0xFF, 10 + cs_len)) + resp.tar
    counter = resp.counter.to_bytes(5, "big") + bytes((pad, resp.status))
    tail = data + bytes(pad) if pad else data
    if cs_len:
        assert por_kid is not None
        body = counter + checksum(por_kid.algorithm, keys.kid_key, head + counter + tail) + tail
    else:
        body = counter + tail
    if size:
        assert kic is not None
        body = encrypt(kic.algorithm, keys.kic_key, body)
    return head + body


def decode_response(
    ud: bytes,
    spi: Spi,
    keys: OtaKeys,
    *,
    kic: Kic | None = None,
    kid: Kid | None = None,
) -> OpenedResponse:
    """Open a PoR TP-UD and report whether its RC/CC matched, without judging.

    L{verify_response} is the checking front end; this one serves tools that
    must show a tampered or mis-keyed PoR rather than only refuse it.

    @raise OtaError: malformed lengths, undecipherable content, an unknown
        status byte, or security the codec cannot apply.
    """
    if len(ud) < _MIN_UD:
        raise BadLength(f"{len(ud)} bytes; a PoR has at least {_MIN_UD}", field="RPL", offset=3)
    if ud[:3] != _UDH:
        raise BadFormat(f"a PoR starts 02 71 00, not {ud[:3].hex(' ')}", field="UDH", offset=0)
    rpl = (ud[3] << 8) | ud[4]
    if rpl != len(ud) - 5:
        raise BadLength(f"says {rpl} bytes follow, {len(ud) - 5} do", field="RPL", offset=3)
    rhl = ud[5]
    por_kid = _por_kid(spi, kid)
    expected = integrity_length(spi.por_checksum, por_kid, "SPI2")
    cs_len = rhl - 10
    secured = True
    if cs_len != expected:
        if cs_len != 0:
            raise BadLength(
                f"is {rhl}, SPI2 {spi.por_checksum.name} needs {10 + expected}",
                field="RHL",
                offset=5,
            )
        secured = False
    if 6 + rhl > len(ud):
        raise BadLength(f"{rhl} overruns the {len(ud)}-byte PoR", field="RHL", offset=5)
    body = ud[_HEAD:]
    size = _por_block(spi, kic) if secured else 0
    if size and len(body) % size:
        if expected:
            raise CipheringError(
                f"{len(body)} ciphered bytes is not a whole number of {size}-byte blocks",
                field="CNTR",
                offset=_HEAD,
            )
        # Ciphered without RC/CC: a length no ciphertext can have is a clear PoR.
        secured = False
        size = 0
    if size:
        assert kic is not None
        body = decrypt(kic.algorithm, keys.kic_key, body)
    pcntr = body[5]
    room = len(body) - 7 - cs_len
    if size:
        if pcntr >= size or pcntr > room:
            raise CipheringError(
                f"{pcntr} padding bytes cannot follow {room} bytes of {size}-byte blocks",
                field="PCNTR",
                offset=14,
            )
    elif pcntr:
        raise BadFormat(f"is {pcntr} but the PoR is not ciphered", field="PCNTR", offset=14)
    received = body[7 : 7 + cs_len]
    ok: bool | None = None
    if cs_len:
        assert por_kid is not None
        computed = checksum(
            por_kid.algorithm, keys.kid_key, ud[:_HEAD] + body[:7] + body[7 + cs_len :]
        )
        ok = hmac.compare_digest(received, computed)
    try:
        status = PorStatus(body[6])
    except ValueError:
        error = BadChecksum if ok is False else BadFormat
        raise error(f"unknown status 0x{body[6]:02X}", field="status", offset=15) from None
    packet = ResponsePacket(
        tar=ud[6:9],
        counter=int.from_bytes(body[:5], "big"),
        status=status,
        data=body[7 + cs_len : len(body) - pcntr],
    )
    return OpenedResponse(packet, rpl, rhl, pcntr, received, ok, secured)


def verify_response(
    ud: bytes,
    spi: Spi,
    keys: OtaKeys,
    *,
    kic: Kic | None = None,
    kid: Kid | None = None,
) -> ResponsePacket:
    """Open and check a PoR TP-UD secured per the command's SPI2.

    A clear PoR is accepted, when SPI2 asked for security, only if its status
    is a security failure (01-06, 09, 0A): the card could not use the keys.

    @raise BadChecksum: the RC/CC does not match.
    @raise InsufficientSecurity: a clear PoR claims anything but such a failure.
    @raise OtaError: see L{decode_response}.
    """
    opened = decode_response(ud, spi, keys, kic=kic, kid=kid)
    if opened.checksum_ok is False:
        raise BadChecksum("does not match", field=spi.por_checksum.name, offset=_HEAD + 7)
    if not opened.secured and opened.packet.status not in _CLEAR_FAILURES:
        raise InsufficientSecurity(
            f"a clear PoR with status {opened.packet.status.name} where SPI2 asks for security",
            field="RHL",
            offset=5,
        )
    return opened.packet


@frozen
class CompactResult:
    """Response data of a compact remote command script (TS 102 226 5.1.2).

    The card runs the C-APDUs in order and stops at the first failure, so
    the PoR says how many ran, the last status word, and the last response
    data (e.g. C{02 9000 <GET RESPONSE data>}).
    """

    executed: int = field(validator=instance_of(int))
    last_sw: int = field(validator=instance_of(int))
    last_data: bytes = field(default=b"", validator=instance_of(bytes))

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.executed <= 0xFF:
            raise BadFormat(f"must be 0..255, got {self.executed}", field="executed")
        if not 0 <= self.last_sw <= 0xFFFF:
            raise BadFormat(f"must be 0..0xFFFF, got {self.last_sw}", field="last SW")

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactResult:
        """Parse PoR response data.

        @raise BadLength: fewer than the 3 bytes of count and status word.
        """
        if len(data) < 3:
            raise BadLength(f"{len(data)} bytes; needs count and SW (3)", field="response data")
        return cls(data[0], (data[1] << 8) | data[2], data[3:])

    def to_bytes(self) -> bytes:
        """The PoR response data."""
        return bytes((self.executed, self.last_sw >> 8, self.last_sw & 0xFF)) + self.last_data
