"""Secured command packets (the TP-UD after the C{02 70 00} header).

Layout (ETSI TS 102 225 5.1, 3GPP TS 31.115 4, PROTOCOLS.md 1.2)::

    CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3) | CNTR(5) PCNTR(1) RC/CC data padding
                                              |<-- ciphered with KIc if SPI1 b3 -->|

CPL counts every byte after itself, padding included, and is present whether
or not the packet is ciphered (pySim omits it for clear packets; that is a
pySim bug).  The RC/CC covers CPL..PCNTR, the data and the cipher padding,
and is computed before ciphering, so it travels inside the ciphertext.
"""

from __future__ import annotations

import hmac
from typing import NamedTuple

from attrs import field, frozen
from attrs.validators import instance_of

from bipgw.codec.ota._crypto import block_size, checksum, checksum_length, decrypt, encrypt
from bipgw.codec.ota._errors import (
    BadChecksum,
    BadFormat,
    BadLength,
    CipheringError,
    CounterBlocked,
    CounterTooHigh,
    CounterTooLow,
    InsufficientSecurity,
    SecurityError,
)
from bipgw.codec.ota._keys import OtaKeys
from bipgw.codec.ota._spi import ChecksumKind, CounterMode, Kic, Kid, Spi

COUNTER_MAX = (1 << 40) - 1
"""The largest CNTR (5 bytes); a receiver whose stored counter reached it is blocked."""

_CPL_MAX = 0xFFFF
_HEADER = 10  # CPL CHL SPI KIc KID TAR
_MIN_PACKET = _HEADER + 6  # ... CNTR PCNTR
_CHECKSUM_AT = _MIN_PACKET
_COMMAND_UDH = b"\x02\x70\x00"
_CONCATENATION_IEIS = (0x00, 0x08)


def valid_tar(instance: object, attribute: object, value: bytes) -> None:
    """attrs validator: a TAR is 3 bytes."""
    if not isinstance(value, bytes) or len(value) != 3:
        raise BadFormat(f"must be 3 bytes, got {value!r}", field="TAR")


def valid_counter(instance: object, attribute: object, value: int) -> None:
    """attrs validator: CNTR fits 5 bytes."""
    if not isinstance(value, int) or not 0 <= value <= COUNTER_MAX:
        raise BadFormat(f"must be 0..2**40-1, got {value!r}", field="CNTR")


def integrity_length(kind: ChecksumKind, kid: Kid | None, role: str) -> int:
    """How many RC/CC bytes a packet secured with C{kind} under C{kid} carries.

    @param role: C{"SPI1"} or C{"SPI2"}, for the error message.
    @raise SecurityError: DS, or an algorithm the codec cannot apply.
    """
    if kind == ChecksumKind.NONE:
        return 0
    if kind == ChecksumKind.DS:
        raise SecurityError("digital signatures (DS) are not supported", field=role)
    if kid is None:
        raise SecurityError(f"asks for {kind.name} but no KID was given", field=role)
    return checksum_length(kid.algorithm)


@frozen
class CommandPacket:
    """One command packet in clear: what the sender secures and the receiver gets back.

    @ivar counter: CNTR, 0..2**40-1 (sent even when the SPI ignores it).
    @ivar data: the secured data (e.g. a compact or expanded remote command
        script), without any cipher padding.
    """

    spi: Spi = field(validator=instance_of(Spi))
    kic: Kic = field(validator=instance_of(Kic))
    kid: Kid = field(validator=instance_of(Kid))
    tar: bytes = field(validator=valid_tar)
    counter: int = field(default=0, validator=valid_counter)
    data: bytes = field(default=b"", validator=instance_of(bytes))

    def __attrs_post_init__(self) -> None:
        if not self.kid.fits(self.spi.checksum):
            raise BadFormat(
                f"{self.kid.algorithm.value} cannot be coded under SPI1 {self.spi.checksum.name}",
                field="KID",
            )


class CommandHeader(NamedTuple):
    """The clear part of a command packet: enough to find the keys."""

    spi: Spi
    kic: Kic
    kid: Kid
    tar: bytes


def secure_command(packet: CommandPacket, keys: OtaKeys) -> bytes:
    """Build the secured command packet, CPL to the end.

    Pads with zero bytes to the cipher block when ciphering (PCNTR counts
    them; it is 0 otherwise), computes the RC/CC over CPL..PCNTR + data +
    padding, then ciphers CNTR..padding with KIc in CBC (ECB for DES-ECB)
    with IV=0.  Prefix L{command_user_data} to get the SMS TP-UD.

    @raise SecurityError: DS, an implicit/proprietary algorithm, or a key
        whose size does not fit the KIc/KID algorithm.
    @raise BadLength: the packet would not fit CPL's two bytes.
    """
    spi, kic, kid = packet.spi, packet.kic, packet.kid
    cs_len = integrity_length(spi.checksum, kid, "SPI1")
    data = packet.data
    pad = -(6 + cs_len + len(data)) % block_size(kic.algorithm) if spi.ciphered else 0
    cpl = 14 + cs_len + len(data) + pad
    if cpl > _CPL_MAX:
        raise BadLength(f"{cpl} bytes do not fit a 2-byte CPL", field="CPL", offset=0)
    header = bytes(
        (cpl >> 8, cpl & 0xFF, 13 + cs_len, *spi.to_bytes(), kic.to_byte(), kid.to_byte())
    )
    header += packet.tar
    counter = packet.counter.to_bytes(5, "big") + bytes((pad,))
    tail = data + bytes(pad) if pad else data
    if cs_len:
        body = counter + checksum(kid.algorithm, keys.kid_key, header + counter + tail) + tail
    else:
        body = counter + tail
    if spi.ciphered:
        body = encrypt(kic.algorithm, keys.kic_key, body)
    return header + body


def parse_command_header(raw: bytes) -> CommandHeader:
    """Read the clear header of a secured command packet (CPL first).

    A receiver calls this first, to find the key set by TAR/KIc/KID (and
    raise L{UnknownTar<bipgw.codec.ota.UnknownTar>} if there is none),
    then L{verify_command}.  Checks CPL against the bytes present and CHL
    against the SPI, so the lengths are trustworthy before any crypto.

    @raise BadLength: CPL or CHL disagree with the packet.
    @raise BadFormat: reserved SPI/KIc/KID coding.
    """
    if len(raw) < _MIN_PACKET:
        raise BadLength(
            f"{len(raw)} bytes; a command packet has at least {_MIN_PACKET} (CPL..PCNTR)",
            field="CPL",
            offset=0,
        )
    cpl = (raw[0] << 8) | raw[1]
    if cpl != len(raw) - 2:
        raise BadLength(f"says {cpl} bytes follow, {len(raw) - 2} do", field="CPL", offset=0)
    chl = raw[2]
    spi = Spi.from_bytes(raw[3:5], offset=3)
    kic = Kic.from_byte(raw[5], offset=5)
    kid = Kid.from_byte(raw[6], spi.checksum, offset=6)
    try:
        expected: int | None = 13 + integrity_length(spi.checksum, kid, "SPI1")
    except SecurityError:
        expected = None  # DS or implicit: the length is not ours to check
    if expected is not None and chl != expected:
        raise BadLength(
            f"is {chl}, SPI1 {spi.checksum.name} under KID {kid.algorithm.value} needs {expected}",
            field="CHL",
            offset=2,
        )
    if chl < 13 or 3 + chl > len(raw):
        raise BadLength(f"{chl} does not fit a {len(raw)}-byte packet", field="CHL", offset=2)
    return CommandHeader(spi, kic, kid, raw[7:10])


def _check_msl(spi: Spi, msl: int) -> None:
    # TS 102 226 8.2.1.3.2.4: the MSL is coded like SPI1 and each field of
    # the packet's SPI1 must be at least as strong as the MSL's.
    need_checksum = ChecksumKind(msl & 0x03)
    need_counter = CounterMode((msl >> 3) & 0x03)
    if spi.checksum < need_checksum:
        raise InsufficientSecurity(
            f"{spi.checksum.name} is below the minimum {need_checksum.name}", field="SPI1", offset=3
        )
    if msl & 0x04 and not spi.ciphered:
        raise InsufficientSecurity("not ciphered, the minimum asks for it", field="SPI1", offset=3)
    if spi.counter < need_counter:
        raise InsufficientSecurity(
            f"counter mode {spi.counter.name} is below the minimum {need_counter.name}",
            field="SPI1",
            offset=3,
        )


def check_counter(
    mode: CounterMode, counter: int, last_counter: int | None, max_step: int | None = None
) -> None:
    """Apply the SPI's counter rule (TS 102 225 5.1.1) to an authenticated CNTR.

    @param last_counter: the receiver's stored counter, or C{None} to skip
        the check (a decoder that keeps no state).
    @param max_step: the largest jump mode C{HIGHER} accepts, if the
        receiver limits it (TS 102 225 leaves that to the receiver).
    @raise CounterBlocked: the stored counter is at its maximum.
    @raise CounterTooLow: not above the stored counter.
    @raise CounterTooHigh: mode C{ONE_HIGHER} and not exactly one above, or
        a jump beyond C{max_step}.
    """
    if mode < CounterMode.HIGHER or last_counter is None:
        return
    if not 0 <= last_counter <= COUNTER_MAX:
        raise ValueError(f"last_counter {last_counter} is not a 5-byte counter")
    if last_counter >= COUNTER_MAX:
        raise CounterBlocked("the stored counter is at its maximum", field="CNTR", offset=10)
    if counter <= last_counter:
        raise CounterTooLow(
            f"{counter} is not above the stored {last_counter}", field="CNTR", offset=10
        )
    if mode == CounterMode.ONE_HIGHER and counter != last_counter + 1:
        raise CounterTooHigh(
            f"{counter} is not the stored {last_counter} plus one", field="CNTR", offset=10
        )
    if max_step is not None and counter - last_counter > max_step:
        raise CounterTooHigh(
            f"{counter} is more than {max_step} above the stored {last_counter}",
            field="CNTR",
            offset=10,
        )


def verify_command(
    raw: bytes,
    keys: OtaKeys,
    *,
    last_counter: int | None,
    msl: int | None = None,
    max_counter_step: int | None = None,
) -> CommandPacket:
    """Check and open a secured command packet (CPL first), as a card does.

    Order: lengths and coding (L{parse_command_header}), the minimum
    security level, deciphering, PCNTR, the RC/CC (compared in constant
    time), and last the counter rule, which is only meaningful once the
    counter is authenticated.  On success the caller stores the returned
    counter.

    @param last_counter: the stored counter for this key set / TAR, or
        C{None} to skip the counter rule (decoding tools only).
    @param msl: the target's minimum security level, coded like SPI1.
    @param max_counter_step: see L{check_counter}.
    @raise OtaError: the subclass gives the PoR status to answer with.
    """
    spi, kic, kid, tar = parse_command_header(raw)
    if msl is not None:
        _check_msl(spi, msl)
    cs_len = integrity_length(spi.checksum, kid, "SPI1")
    body = raw[_HEADER:]
    size = block_size(kic.algorithm) if spi.ciphered else 0
    if size:
        if len(body) % size:
            raise CipheringError(
                f"{len(body)} ciphered bytes is not a whole number of {size}-byte blocks",
                field="CNTR",
                offset=_HEADER,
            )
        body = decrypt(kic.algorithm, keys.kic_key, body)
    pcntr = body[5]
    room = len(body) - 6 - cs_len
    if size:
        if pcntr >= size or pcntr > room:
            raise CipheringError(
                f"{pcntr} padding bytes cannot follow {room} bytes of {size}-byte blocks",
                field="PCNTR",
                offset=15,
            )
    elif pcntr:
        raise BadFormat(f"is {pcntr} but the packet is not ciphered", field="PCNTR", offset=15)
    if cs_len:
        received = body[6 : 6 + cs_len]
        expected = checksum(
            kid.algorithm, keys.kid_key, raw[:_HEADER] + body[:6] + body[6 + cs_len :]
        )
        if not hmac.compare_digest(received, expected):
            raise BadChecksum(
                f"{kid.algorithm.value} does not match",
                field=spi.checksum.name,
                offset=_CHECKSUM_AT,
            )
    counter = int.from_bytes(body[:5], "big")
    check_counter(spi.counter, counter, last_counter, max_counter_step)
    return CommandPacket(spi, kic, kid, tar, counter, body[6 + cs_len : len(body) - pcntr])


def command_user_data(packet: bytes) -> bytes:
    """The SMS TP-UD for a secured packet: UDH C{02 70 00} (IEI 70, the CPI) then the packet."""
    return _COMMAND_UDH + packet


def strip_command_udh(ud: bytes) -> bytes:
    """The secured packet inside an SMS TP-UD whose UDH carries IEI C{70}.

    Other information elements are skipped; a concatenation element (IEI
    C{00}/C{08}) is refused, because one part of a concatenated packet
    cannot be verified: reassemble first.

    @raise BadFormat: no UDH, a malformed UDH, or no Command Packet Identifier.
    """
    if not ud:
        raise BadLength("empty user data", field="UDHL", offset=0)
    end = 1 + ud[0]
    if end > len(ud):
        raise BadLength(f"{ud[0]} exceeds the {len(ud) - 1} bytes present", field="UDHL", offset=0)
    pos = 1
    cpi = False
    while pos < end:
        if pos + 2 > end:
            raise BadLength("truncated information element", field="UDH", offset=pos)
        iei, length = ud[pos], ud[pos + 1]
        if pos + 2 + length > end:
            raise BadLength(f"IEI {iei:02X} length {length} overruns", field="UDH", offset=pos)
        if iei in _CONCATENATION_IEIS:
            raise BadFormat(
                "part of a concatenated message: reassemble before verifying",
                field="UDH",
                offset=pos,
            )
        if iei == 0x70:
            if length:
                raise BadFormat(
                    f"IEI 70 must be empty, has {length} bytes", field="UDH", offset=pos
                )
            cpi = True
        pos += 2 + length
    if not cpi:
        raise BadFormat("no Command Packet Identifier (IEI 70)", field="UDH", offset=1)
    return ud[end:]
