# -*- test-case-name: tests.unit.simcard.test_processor_status -*-
"""GET STATUS and SET STATUS: reading and moving registry life cycles.

GET STATUS (GP 2.3.1 11.4): P1 selects the subset - C{80} the ISD, C{40}
applications and SSDs, C{20} load files, C{10} load files with their
modules; P2 b2 selects the TLV format (C{02}/C{03}) over the deprecated
legacy one (C{00}/C{01}), P2 b1 asks for the next occurrence.  The data is
the search criteria: C{4F} (an AID prefix, empty for all) is mandatory;
C{9F70} (a life cycle to match) and C{5C} (the tags to return, TLV format
only) may follow.  An answer longer than L{GpConfig.max_response} ends
with C{6310}; the next page comes with P2 b1 set.

TLV entries follow GP Table 11-36's tag order:
C{E3 {4F AID, 9F70 life cycle, C5 privileges, C4 ELF AID, CE version,
84 module AID..., CC associated SD AID}}.

SET STATUS (GP 2.3.1 11.10): P1 C{80} the card (ISD) life cycle, C{40} one
application or SSD, C{60} a Security Domain with its associated
applications; P2 the new state (for applications: C{80}-C{FF} lock,
C{00} unlock, C{0F} personalize an SSD).
"""

from __future__ import annotations

import attrs

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import TlvError, decode_ber, encode_ber
from simcard.gp._constants import APP_LOCKED_BIT, APP_PERSONALIZED, APP_SELECTABLE
from simcard.gp._context import OK, IsdState, StatusPaging
from simcard.gp._entries import Application, LoadFile
from simcard.gp._errors import GpError

__all__ = ["get_status", "set_status"]

_SW_MORE = 0x6310
_SUBSETS = (0x80, 0x40, 0x20, 0x10)


def _tag_list(value: bytes) -> set[int]:
    """The tags of a C{5C} tag list (BER tags written one after another)."""
    tags, pos = set(), 0
    while pos < len(value):
        tag = value[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            while True:
                if pos >= len(value):
                    raise GpError(0x6A80, "tag list ends inside a tag")
                tag = (tag << 8) | value[pos]
                pos += 1
                if not value[pos - 1] & 0x80:
                    break
        tags.add(tag)
    return tags


def _criteria(data: bytes, tlv: bool) -> tuple[bytes, int | None, set[int] | None]:
    try:
        items = decode_ber(data)
    except TlvError as e:
        raise GpError(0x6A80, f"search criteria: {e.reason}") from None
    if not items or items[0].tag != 0x4F:
        raise GpError(0x6A80, "search criteria must start with 4F")
    prefix, life_cycle, wanted = items[0].value, None, None
    for item in items[1:]:
        if item.tag == 0x9F70 and len(item.value) == 1 and life_cycle is None:
            life_cycle = item.value[0]
        elif item.tag == 0x5C and tlv and wanted is None:
            wanted = _tag_list(item.value)
        else:
            raise GpError(0x6A80, f"unsupported search criterion {item.tag:X}")
    if len(prefix) > 16:
        raise GpError(0x6A80, "AID in search criteria longer than 16 bytes")
    return prefix, life_cycle, wanted


def _tlv_entry(parts: list[tuple[int, bytes]], wanted: set[int] | None) -> bytes:
    body = b"".join(encode_ber(t, v) for t, v in parts if wanted is None or t in wanted)
    return encode_ber(0xE3, body)


def _app_parts(app: Application, isd: bool) -> list[tuple[int, bytes]]:
    parts = [(0x4F, app.aid), (0x9F70, bytes((app.life_cycle,))), (0xC5, app.privileges)]
    if not isd:
        parts.append((0xC4, app.elf_aid))
        parts.append((0xCC, app.sd_aid))
    return parts


def _elf_parts(elf: LoadFile, modules: bool) -> list[tuple[int, bytes]]:
    parts = [(0x4F, elf.aid), (0x9F70, bytes((elf.life_cycle,)))]
    if elf.version:
        parts.append((0xCE, elf.version))
    if modules:
        parts.extend((0x84, m) for m in elf.modules)
    parts.append((0xCC, elf.sd_aid))
    return parts


def _legacy(
    aid: bytes, life_cycle: int, privilege: int, modules: tuple[bytes, ...] | None
) -> bytes:
    out = bytes((len(aid),)) + aid + bytes((life_cycle, privilege))
    if modules is not None:
        out += bytes((len(modules),)) + b"".join(bytes((len(m),)) + m for m in modules)
    return out


def _entries(
    st: IsdState, p1: int, tlv: bool, prefix: bytes, life_cycle: int | None, wanted: set[int] | None
) -> list[bytes]:
    registry = st.registry
    out: list[bytes] = []
    if p1 in (0x80, 0x40):
        apps = [registry.isd] if p1 == 0x80 else list(registry.applications)
        for app in apps:
            if not app.aid.startswith(prefix):
                continue
            if life_cycle is not None and app.life_cycle != life_cycle:
                continue
            if tlv:
                out.append(_tlv_entry(_app_parts(app, p1 == 0x80), wanted))
            else:
                out.append(_legacy(app.aid, app.life_cycle, app.privileges[0], None))
        return out
    modules = p1 == 0x10
    for elf in registry.load_files:
        if not elf.aid.startswith(prefix):
            continue
        if life_cycle is not None and elf.life_cycle != life_cycle:
            continue
        if tlv:
            out.append(_tlv_entry(_elf_parts(elf, modules), wanted))
        else:
            out.append(_legacy(elf.aid, elf.life_cycle, 0, elf.modules if modules else None))
    return out


def _page(st: IsdState, paging: StatusPaging) -> ResponseApdu:
    budget = st.config.max_response
    taken, size = 0, 0
    remaining = paging.remaining
    while taken < len(remaining) and (taken == 0 or size + len(remaining[taken]) <= budget):
        size += len(remaining[taken])
        taken += 1
    data = b"".join(remaining[:taken])
    del remaining[:taken]
    if remaining:
        st.paging = paging
        return ResponseApdu(data, _SW_MORE)
    st.paging = None
    return ResponseApdu(data, 0x9000)


def get_status(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """GET STATUS (C{80 F2}): list part of the registry, paged."""
    p1, p2 = apdu.p1, apdu.p2
    if p1 not in _SUBSETS or p2 > 0x03:
        raise GpError(0x6A86, f"GET STATUS P1 {p1:02X} P2 {p2:02X}")
    tlv = bool(p2 & 0x02)
    if p2 & 0x01:
        paging = st.paging
        if paging is None or paging.p1 != p1 or paging.tlv != tlv:
            st.paging = None
            raise GpError(0x6A88, "no GET STATUS in progress for this P1/format")
        return _page(st, paging)
    st.paging = None
    prefix, life_cycle, wanted = _criteria(apdu.data, tlv)
    found = _entries(st, p1, tlv, prefix, life_cycle, wanted)
    if not found:
        raise GpError(0x6A88, "no registry entry matches")
    return _page(st, StatusPaging(p1, tlv, found))


def _target(st: IsdState, data: bytes) -> Application:
    app = st.registry.application(data)
    if app is None or app is st.registry.isd:
        raise GpError(0x6A88, f"no application or SSD {data.hex().upper()}")
    return app


def _app_state(app: Application, p2: int) -> int:
    if p2 & APP_LOCKED_BIT:
        if app.is_locked:
            raise GpError(0x6985, "already locked")
        return app.life_cycle | APP_LOCKED_BIT
    if p2 == 0x00:
        if not app.is_locked:
            raise GpError(0x6985, "not locked")
        return app.life_cycle & ~APP_LOCKED_BIT
    if p2 & APP_SELECTABLE != APP_SELECTABLE:
        raise GpError(0x6A86, f"{p2:02X} is not a life cycle state")
    # Only a Security Domain may be moved forward by its ISD (SELECTABLE ->
    # PERSONALIZED); applications make their own specific transitions.
    if (
        app.is_security_domain
        and not app.is_locked
        and (app.life_cycle, p2) == (APP_SELECTABLE, APP_PERSONALIZED)
    ):
        return p2
    raise GpError(0x6985, f"{app.life_cycle:02X} cannot become {p2:02X} by SET STATUS")


def set_status(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """SET STATUS (C{80 F0}): lock, unlock, personalize, or change the card life cycle."""
    st.require_management()
    p1, p2, registry = apdu.p1, apdu.p2, st.registry
    if p1 == 0x80:
        if apdu.data not in (b"", registry.isd.aid):
            raise GpError(0x6A80, "SET STATUS of the card carries no AID but the ISD's")
        registry.set_card_life_cycle(p2)
        return OK
    if p1 == 0x40:
        app = _target(st, apdu.data)
        registry.replace_application(attrs.evolve(app, life_cycle=_app_state(app, p2)))
        return OK
    if p1 == 0x60:
        sd = _target(st, apdu.data)
        if not sd.is_security_domain:
            raise GpError(0x6A80, f"{apdu.data.hex().upper()} is not a Security Domain")
        if p2 & APP_LOCKED_BIT == 0 and p2 != 0x00:
            raise GpError(0x6A86, "a Security Domain and its applications can only be locked")
        group = [sd, *(a for a in registry.applications if a.sd_aid == sd.aid)]
        lock = bool(p2 & APP_LOCKED_BIT)
        for app in group:
            if app.is_locked != lock:
                new = app.life_cycle | APP_LOCKED_BIT if lock else app.life_cycle & ~APP_LOCKED_BIT
                registry.replace_application(attrs.evolve(app, life_cycle=new))
        return OK
    raise GpError(0x6A86, f"SET STATUS P1 {p1:02X}")
