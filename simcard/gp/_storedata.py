# -*- test-case-name: tests.unit.simcard.test_processor_storedata -*-
"""STORE DATA (GP 2.3.1 11.11): personalization data, for the ISD or an application.

P1: b8 last block; b7-b6 encryption (C{00} none, C{20} application
dependent, C{60} encrypted); b5-b4 structure (C{00} none, C{08} DGI,
C{10} BER-TLV).  P2 numbers the blocks from 00.

After INSTALL [for personalization] the ISD forwards each STORE DATA to
that application's applet unchanged (GP's C{Application.processData}); the
last block ends the personalization.

Otherwise the data is the ISD's own: the blocks are collected until the
last one, then parsed as DGIs (C{DGI(2) length(1, or FF + 2) value}) or
BER-TLV objects and stored in the registry's L{sd_data}/L{sd_dgi}.
GET DATA reads stored BER-TLV objects back; this is how a platform writes
the C{85}/C{A5} admin-session default parameters ("STORE DATA 80 E2 90 00",
PROTOCOLS.md 3.5 and 7 item 13, UNVERIFIED on real cards).  Encrypted data
(C{60}) would need a session DEK this card does not define: C{6A80}.
Objects the card computes itself (L{DYNAMIC_TAGS}) cannot be stored.
"""

from __future__ import annotations

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import TlvError, decode_ber
from simcard.gp._applet import AppletContext
from simcard.gp._context import OK, IsdState, StoreSession
from simcard.gp._errors import GpError
from simcard.gp._getdata import DYNAMIC_TAGS

__all__ = ["store_data"]

_LAST = 0x80
_ENCRYPTION = 0x60
_STRUCTURE = 0x18
_DGI = 0x08
_BER = 0x10


def _dgis(data: bytes) -> dict[int, bytes]:
    found, pos = {}, 0
    while pos < len(data):
        if pos + 3 > len(data):
            raise GpError(0x6A80, f"DGI header truncated at offset {pos}")
        dgi = int.from_bytes(data[pos : pos + 2], "big")
        size, pos = data[pos + 2], pos + 3
        if size == 0xFF:
            if pos + 2 > len(data):
                raise GpError(0x6A80, "DGI length truncated")
            size, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        value = data[pos : pos + size]
        if len(value) != size:
            raise GpError(0x6A80, f"DGI {dgi:04X} needs {size} bytes")
        found[dgi] = value
        pos += size
    return found


def _store_isd(st: IsdState, p1: int, data: bytes) -> None:
    if p1 & _ENCRYPTION == _ENCRYPTION:
        raise GpError(0x6A80, "encrypted STORE DATA is not supported by this ISD")
    structure = p1 & _STRUCTURE
    registry = st.registry
    if structure == _DGI:
        new_dgi = {**registry.sd_dgi, **_dgis(data)}
        new_tlv = registry.sd_data
    elif structure == _BER:
        try:
            items = decode_ber(data)
        except TlvError as e:
            raise GpError(0x6A80, f"STORE DATA: {e.reason}") from None
        for item in items:
            if item.tag in DYNAMIC_TAGS:
                raise GpError(0x6A80, f"data object {item.tag:X} is computed by the card")
        new_tlv = {**registry.sd_data, **{i.tag: i.value for i in items}}
        new_dgi = registry.sd_dgi
    else:
        raise GpError(0x6A80, "the ISD stores DGI or BER-TLV structured data only")
    size = sum(len(v) for v in new_tlv.values()) + sum(len(v) for v in new_dgi.values())
    if size > st.config.max_sd_data:
        raise GpError(0x6A84, f"{size} bytes of ISD data, at most {st.config.max_sd_data}")
    registry.sd_data = new_tlv
    registry.sd_dgi = new_dgi
    registry.changed = True


def store_data(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """STORE DATA (C{80 E2}) for the personalization target or the ISD."""
    st.require_management()
    session = st.store or StoreSession()
    st.store = None
    if apdu.p2 != session.next_block & 0xFF:
        raise GpError(0x6A86, f"STORE DATA block {apdu.p2:02X}, expected {session.next_block:02X}")
    last = bool(apdu.p1 & _LAST)
    if st.perso is not None:
        target = st.perso
        applet = st.applets.get(target)
        if applet is None:  # pragma: no cover - INSTALL [for personalization] checked it
            st.perso = None
            raise GpError(0x6985, "personalization target has no applet")
        ctx = AppletContext(
            st.registry,
            target,
            st.profile,
            security_level=st.security_level,
            via_security_domain=True,
        )
        st.registry.changed = True
        answer = applet.process(apdu, ctx)
        if last:
            st.perso = None
        else:
            session.next_block += 1
            st.store = session
        return answer
    if apdu.p1 & _STRUCTURE == _STRUCTURE:
        raise GpError(0x6A86, "STORE DATA structure 11 is reserved")
    session.buffer += apdu.data
    if len(session.buffer) > st.config.max_sd_data:
        raise GpError(0x6A84, "STORE DATA larger than the ISD keeps")
    if last:
        _store_isd(st, apdu.p1, bytes(session.buffer))
        return OK
    session.next_block += 1
    st.store = session
    return OK
