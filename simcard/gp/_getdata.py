# -*- test-case-name: tests.unit.simcard.test_processor_getdata -*-
"""GET DATA: the ISD's data objects (GP 2.3.1 11.3, PROTOCOLS.md section 6).

P1P2 is the tag (C{0066} for C{66}, C{9F7F}, C{FF21}); the answer is the
whole TLV.  Objects:

  - C{9F7F} CPLC, the 42-byte card production life cycle data.  A
    simulator has no chip: manufacturer fields are zero, the IC serial
    number and batch identifier come from the ICCID so each card's CPLC is
    unique and stable;
  - C{42} IIN (first 8 ICCID digits, BCD) and C{45} CIN (the ICCID, BCD,
    C{F}-padded), unless STORE DATA personalised other values;
  - C{66} card data: GP card recognition data (OIDs under
    C{1.2.840.114283}: GP 2.3.1, SCP03 with the configured "i");
  - C{E0} key information template: C{C0 04 KID KVN type length} for every
    key the card holds (SCP03, SCP81 PSK, SCP80 key sets);
  - C{0067} card capabilities, C{FF21} extended card resources
    (C{81} applications, C{82} free non-volatile memory, C{83} free RAM),
    C{C1} sequence counter, C{C2} confirmation counter, C{D3} current
    security level;
  - any other tag the ISD stored with STORE DATA (e.g. C{0085}).

Anything else answers C{6A88}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import encode_ber
from simcard.gp._constants import KEY_TYPE_AES, KEY_TYPE_PSK
from simcard.gp._context import IsdState
from simcard.gp._errors import GpError
from simcard.model import CardProfile

__all__ = ["DYNAMIC_TAGS", "get_data", "key_information"]

_GP_OID: Final = bytes.fromhex("2A864886FC6B")
"""C{1.2.840.114283}, GlobalPlatform's OID arc."""

DYNAMIC_TAGS: Final = frozenset({0x9F7F, 0x66, 0xE0, 0x67, 0xFF21, 0xC1, 0xC2, 0xD3})
"""Objects the card computes; STORE DATA may not overwrite them."""

_TLS_PSK_SUITES: Final = bytes.fromhex("00AE008C00AF00A8")
"""PSK-AES128-CBC-SHA256, PSK-AES128-CBC-SHA, PSK-AES256-CBC-SHA384 and
PSK-AES128-GCM-SHA256: the suites bipgw's TLS-PSK side offers."""


def _bcd(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def _minimal(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def cplc(iccid: str) -> bytes:
    """The 42-byte CPLC value for a card (GP GPData / GP 2.3.1 H.6)."""
    serial = bytes.fromhex(iccid[-8:])
    batch = bytes.fromhex(iccid[-12:-8])
    fields = [
        b"\x00\x00",  # IC fabricator
        b"\x00\x00",  # IC type
        b"\x00\x00",  # operating system identifier
        b"\x00\x00",  # operating system release date
        b"\x00\x00",  # operating system release level
        b"\x00\x00",  # IC fabrication date
        serial,  # IC serial number (4)
        batch,  # IC batch identifier
        b"\x00\x00",  # IC module fabricator
        b"\x00\x00",  # IC module packaging date
        b"\x00\x00",  # ICC manufacturer
        b"\x00\x00",  # IC embedding date
        b"\x00\x00",  # IC pre-personalizer
        b"\x00\x00",  # IC pre-perso equipment date
        b"\x00\x00\x00\x00",  # IC pre-perso equipment identifier
        b"\x00\x00",  # IC personalizer
        b"\x00\x00",  # IC personalization date
        b"\x00\x00\x00\x00",  # IC personalization equipment identifier
    ]
    return b"".join(fields)


def _oid(suffix: bytes) -> bytes:
    return encode_ber(0x06, _GP_OID + suffix)


def card_data(scp03_i: int) -> bytes:
    """The C{66} card data: C{73} card recognition data (GP 2.3.1 H.2)."""
    body = (
        _oid(b"\x01")
        + encode_ber(0x60, _oid(b"\x02\x02\x03\x01"))
        + encode_ber(0x63, _oid(b"\x03"))
        + encode_ber(0x64, _oid(bytes((0x04, 0x03, scp03_i))))
    )
    return encode_ber(0x66, encode_ber(0x73, body))


def key_information(profile: CardProfile) -> bytes:
    """The C{E0} key information template for the keys in C{profile}."""
    entries = []
    for sk in profile.scp03:
        for kid in (1, 2, 3):
            entries.append(bytes((kid, sk.kvn, KEY_TYPE_AES, len(sk.enc))))
    if profile.psk is not None:
        entries.append(bytes((1, profile.psk.kvn, KEY_TYPE_PSK, len(profile.psk.key))))
    for ks in profile.ota_key_sets:
        key_type = ks.algorithm.gp_key_type
        for kid, key in ((1, ks.kic), (2, ks.kid), (3, ks.kik)):
            if key:
                entries.append(bytes((kid, ks.kvn, key_type, len(key))))
    return encode_ber(0xE0, b"".join(encode_ber(0xC0, e) for e in entries))


def capabilities(scp03_i: int) -> bytes:
    """The C{67} card capability information (GP 2.3.1 H.4)."""
    scp03 = encode_ber(0x80, b"\x03") + encode_ber(0x81, bytes((scp03_i,)))
    scp03 += encode_ber(0x82, b"\x07")  # AES-128, -192 and -256 keys
    scp80 = encode_ber(0x80, b"\x80")
    scp81 = encode_ber(0x80, b"\x81") + encode_ber(0x83, _TLS_PSK_SUITES)
    scp81 += encode_ber(0x84, b"\x40")  # longest PSK, bytes
    body = encode_ber(0xA0, scp03) + encode_ber(0xA0, scp80) + encode_ber(0xA0, scp81)
    body += encode_ber(0x83, b"\x01\x02\x03\x04")  # load file hash: SHA-1, SHA-2
    return encode_ber(0x67, body)


def resources(st: IsdState) -> bytes:
    """The C{FF21} extended card resources information."""
    free = max(0, st.config.nvm_total - st.registry.nvm_used)
    body = encode_ber(0x81, _minimal(len(st.registry.applications)))
    body += encode_ber(0x82, _minimal(free))
    body += encode_ber(0x83, _minimal(st.config.ram_free))
    return encode_ber(0xFF21, body)


_BUILDERS: Final[dict[int, Callable[[IsdState], bytes]]] = {
    0x9F7F: lambda st: encode_ber(0x9F7F, cplc(st.profile.iccid)),
    0x42: lambda st: encode_ber(0x42, bytes.fromhex(st.profile.iccid[:8])),
    0x45: lambda st: encode_ber(0x45, _bcd(st.profile.iccid)),
    0x66: lambda st: card_data(st.config.scp03_i),
    0xE0: lambda st: key_information(st.profile),
    0x67: lambda st: capabilities(st.config.scp03_i),
    0xFF21: resources,
    0xC1: lambda st: encode_ber(0xC1, st.registry.sequence_counter.to_bytes(3, "big")),
    0xC2: lambda st: encode_ber(0xC2, b"\x00\x00"),
    0xD3: lambda st: encode_ber(0xD3, bytes((st.security_level,))),
}


def get_data(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """GET DATA (C{80 CA}/C{00 CA}): one data object of the ISD."""
    if apdu.data:
        raise GpError(0x6700, "GET DATA carries no command data")
    tag = (apdu.p1 << 8) | apdu.p2 if apdu.p1 else apdu.p2
    stored = st.registry.sd_data.get(tag)
    if stored is not None and tag not in DYNAMIC_TAGS:
        return ResponseApdu(encode_ber(tag, stored), 0x9000)
    builder = _BUILDERS.get(tag)
    if builder is None:
        raise GpError(0x6A88, f"no data object {tag:X}")
    return ResponseApdu(builder(st), 0x9000)
