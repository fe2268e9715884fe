# -*- test-case-name: tests.unit.simcard.test_processor_content -*-
"""INSTALL, LOAD and DELETE [card content] (GP 2.3.1 11.5, 11.6, 11.2).

INSTALL data is a sequence of one-byte-length LV fields (GP Tables
11-42..44, PROTOCOLS.md section 6):

  - [for load] (P1 C{02}): ELF AID, SD AID (empty: the ISD), load file
    data block hash (empty, or 20/32/48/64 bytes: SHA-1/SHA-256/384/512),
    load parameters (C{EF {C6 code, C8 data}} memory needs), token;
  - [for install] (C{04}, and C{0C} with [make selectable]): ELF AID,
    module AID, application AID, privileges (1 or 3 bytes), install
    parameters (mandatory, must hold C{C9}), token;
  - [for make selectable] (C{08}): empty, empty, application AID,
    privileges (empty to keep them), parameters, token;
  - [for personalization] (C{20}): empty, empty, application AID, then
    empty fields: the ISD forwards the next STORE DATA commands to that
    application.

P1 b8 ("more INSTALL commands follow") is ignored.  Extradition (C{10})
and registry update (C{40}) are not supported (C{6A86}).  Tokens and DAP
blocks are accepted and not verified (no delegated management here).

LOAD: P2 numbers the blocks from 00, P1 C{80} marks the last one.  The
blocks form C{[E2 DAP block]* C4 <BER length> load file data block}; the
card keeps the block's size and SHA-256, checks the INSTALL hash, and
registers the load file with the modules its CAP Applet component names
(see L{simcard.gp._cap}).  Any refused LOAD ends the load sequence.
"""

from __future__ import annotations

import hashlib
from typing import Final

import attrs

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import TlvError, decode_ber
from simcard.gp._cap import read_cap
from simcard.gp._constants import APP_INSTALLED, APP_SELECTABLE
from simcard.gp._context import OK, OK_00, IsdState, LoadSession, lv_fields
from simcard.gp._entries import Application, LoadFile
from simcard.gp._errors import GpError
from simcard.gp._keys import delete_keys

__all__ = ["delete", "install", "load"]

_HASHES: Final = {20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}


def _aid(value: bytes, what: str) -> bytes:
    if not 5 <= len(value) <= 16:
        raise GpError(0x6A80, f"{what} must be 5..16 bytes, got {len(value)}")
    return value


def _tlvs(value: bytes, what: str) -> dict[int, bytes]:
    try:
        return {t.tag: t.value for t in decode_ber(value)}
    except TlvError as e:
        raise GpError(0x6A80, f"{what}: {e.reason}") from None


def _fields(data: bytes, count: int, what: str) -> list[bytes]:
    fields = lv_fields(data, what)
    if len(fields) != count:
        raise GpError(0x6A80, f"{what} has {len(fields)} fields, expected {count}")
    return fields


def _free_nvm(st: IsdState) -> int:
    return st.config.nvm_total - st.registry.nvm_used


def _for_load(st: IsdState, data: bytes) -> ResponseApdu:
    elf_aid, sd_aid, digest, params, _token = _fields(data, 5, "INSTALL [for load]")
    _aid(elf_aid, "load file AID")
    sd_aid = _aid(sd_aid, "security domain AID") if sd_aid else st.registry.isd.aid
    if digest and len(digest) not in _HASHES:
        raise GpError(0x6A80, f"a {len(digest)}-byte hash matches no algorithm")
    if st.registry.aid_in_use(elf_aid):
        raise GpError(0x6985, f"AID {elf_aid.hex().upper()} already in use")
    sd = st.registry.application(sd_aid)
    if sd is None or not sd.is_security_domain:
        raise GpError(0x6A88, f"no security domain {sd_aid.hex().upper()}")
    if len(st.registry.load_files) >= st.config.max_load_files:
        raise GpError(0x6A84, "no room for another load file")
    if params:
        system = _tlvs(params, "load parameters").get(0xEF, b"")
        needs = _tlvs(system, "system parameters")
        need = sum(int.from_bytes(needs.get(t, b""), "big") for t in (0xC6, 0xC8))
        if need > _free_nvm(st):
            raise GpError(0x6A84, f"load file needs {need} bytes, {_free_nvm(st)} free")
    st.load = LoadSession(elf_aid, sd_aid, digest)
    return OK_00


def _for_install(st: IsdState, data: bytes, selectable: bool) -> ResponseApdu:
    elf_aid, module_aid, app_aid, privileges, params, _token = _fields(
        data, 6, "INSTALL [for install]"
    )
    _aid(elf_aid, "load file AID")
    _aid(module_aid, "module AID")
    _aid(app_aid, "application AID")
    if len(privileges) not in (1, 3):
        raise GpError(0x6A80, "privileges must be 1 or 3 bytes")
    if 0xC9 not in _tlvs(params, "install parameters"):
        raise GpError(0x6A80, "install parameters must contain C9")
    if len(st.registry.applications) >= st.config.max_applications:
        raise GpError(0x6A84, "no room for another application")
    app = Application(
        app_aid,
        elf_aid,
        module_aid,
        st.registry.isd.aid,
        APP_SELECTABLE if selectable else APP_INSTALLED,
        privileges.ljust(3, b"\x00"),
        params,
    )
    st.registry.add_application(app)
    factory = st.factories.get(module_aid)
    if factory is not None:
        try:
            st.applets[app_aid] = factory(app, None)
        except Exception:
            st.registry.delete(app_aid, related=False)
            raise
    return OK_00


def _make_selectable(st: IsdState, data: bytes) -> ResponseApdu:
    elf_aid, module_aid, app_aid, privileges, params, _token = _fields(
        data, 6, "INSTALL [for make selectable]"
    )
    if elf_aid or module_aid:
        raise GpError(0x6A80, "INSTALL [for make selectable] names no load file or module")
    if privileges and len(privileges) not in (1, 3):
        raise GpError(0x6A80, "privileges must be 1 or 3 bytes")
    _tlvs(params, "install parameters")
    app = st.registry.application(app_aid)
    if app is None or app is st.registry.isd:
        raise GpError(0x6A88, f"no application {app_aid.hex().upper()}")
    if app.life_cycle != APP_INSTALLED:
        raise GpError(0x6985, f"life cycle {app.life_cycle:02X} is not INSTALLED")
    new = attrs.evolve(app, life_cycle=APP_SELECTABLE)
    if privileges:
        new = attrs.evolve(new, privileges=privileges.ljust(3, b"\x00"))
    st.registry.replace_application(new)
    return OK_00


def _for_personalization(st: IsdState, data: bytes) -> ResponseApdu:
    fields = lv_fields(data, "INSTALL [for personalization]")
    if len(fields) < 3 or fields[0] or fields[1] or any(fields[3:]):
        raise GpError(0x6A80, "INSTALL [for personalization] is 00 00 LV(AID) 00 00 00")
    app = st.registry.application(fields[2])
    if app is None or app is st.registry.isd:
        raise GpError(0x6A88, f"no application {fields[2].hex().upper()}")
    if app.is_locked or fields[2] not in st.applets:
        raise GpError(0x6985, "that application cannot be personalized now")
    st.perso = fields[2]
    st.store = None
    return OK_00


def install(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """INSTALL (C{80 E6}); see the module docstring for the variants."""
    st.require_management()
    if apdu.p2 != 0x00:
        raise GpError(0x6A86, "INSTALL P2 must be 00")
    kind = apdu.p1 & 0x7F
    if kind != 0x02:
        st.load = None
    if kind == 0x02:
        return _for_load(st, apdu.data)
    if kind in (0x04, 0x0C):
        return _for_install(st, apdu.data, kind == 0x0C)
    if kind == 0x08:
        return _make_selectable(st, apdu.data)
    if kind == 0x20:
        return _for_personalization(st, apdu.data)
    raise GpError(0x6A86, f"INSTALL P1 {apdu.p1:02X} not supported")


def _finish_load(st: IsdState, session: LoadSession) -> ResponseApdu:
    blob = bytes(session.buffer)
    try:
        items = decode_ber(blob, max_size=st.config.max_load_file_size + 1024)
    except TlvError as e:
        raise GpError(0x6A80, f"load file: {e.reason}") from None
    if not items or items[-1].tag != 0xC4 or any(t.tag != 0xE2 for t in items[:-1]):
        raise GpError(0x6A80, "load data must be [E2 DAP blocks] then C4")
    block = items[-1].value
    if len(block) > st.config.max_load_file_size:
        raise GpError(0x6A84, f"load file of {len(block)} bytes, larger than the card accepts")
    if session.hash:
        digest = hashlib.new(_HASHES[len(session.hash)], block).digest()
        if digest != session.hash:
            raise GpError(0x6A80, "load file data block hash does not match")
    if len(block) > _free_nvm(st):
        raise GpError(0x6A84, f"load file of {len(block)} bytes, {_free_nvm(st)} free")
    cap = read_cap(block)
    if cap.package_aid is not None and cap.package_aid != session.elf_aid:
        raise GpError(0x6A80, "the CAP package AID differs from the INSTALL [for load] AID")
    st.registry.add_load_file(
        LoadFile(
            session.elf_aid,
            session.sd_aid,
            cap.modules,
            cap.version,
            len(block),
            hashlib.sha256(block).digest(),
        )
    )
    return OK_00


def load(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """LOAD (C{80 E8}): one block of the load file announced by INSTALL [for load]."""
    session, st.load = st.load, None
    st.require_management()
    if session is None:
        raise GpError(0x6985, "no INSTALL [for load] before LOAD")
    if apdu.p1 not in (0x00, 0x80):
        raise GpError(0x6A86, f"LOAD P1 {apdu.p1:02X}")
    if apdu.p2 != session.next_block & 0xFF:
        raise GpError(0x6A86, f"LOAD block {apdu.p2:02X}, expected {session.next_block:02X}")
    if not apdu.data:
        raise GpError(0x6700, "LOAD without data")
    session.buffer += apdu.data
    if len(session.buffer) > st.config.max_load_file_size + 1024:
        raise GpError(0x6A84, "load file larger than the card accepts")
    if apdu.p1 == 0x80:
        return _finish_load(st, session)
    session.next_block += 1
    st.load = session
    return OK


def delete(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """DELETE (C{80 E4}): card content by C{4F AID}, or keys by C{D0}/C{D2}."""
    st.require_management()
    if apdu.p1 & 0x7F or apdu.p2 not in (0x00, 0x80):
        raise GpError(0x6A86, f"DELETE P1 {apdu.p1:02X} P2 {apdu.p2:02X}")
    try:
        items = decode_ber(apdu.data)
    except TlvError as e:
        raise GpError(0x6A80, f"DELETE data: {e.reason}") from None
    by_tag: dict[int, list[bytes]] = {}
    for item in items:
        if item.tag not in (0x4F, 0xD0, 0xD2, 0xB6, 0x9E):
            raise GpError(0x6A80, f"DELETE data tag {item.tag:X}")
        by_tag.setdefault(item.tag, []).append(item.value)
    aids = by_tag.get(0x4F, [])
    keys = [tag for tag in (0xD0, 0xD2) if tag in by_tag]
    if any(len(v) > 1 for v in by_tag.values()) or bool(aids) == bool(keys):
        raise GpError(0x6A80, "DELETE names one AID, or a key by D0/D2")
    if keys:
        kid = items[[i.tag for i in items].index(0xD0)] if 0xD0 in by_tag else None
        kvn = items[[i.tag for i in items].index(0xD2)] if 0xD2 in by_tag else None
        return delete_keys(st, kid, kvn)
    aid = aids[0]
    if not 5 <= len(aid) <= 16:
        raise GpError(0x6A80, "AID must be 5..16 bytes")
    for app in st.registry.delete(aid, related=apdu.p2 == 0x80):
        st.applets.pop(app.aid, None)
        if st.perso == app.aid:
            st.perso = None
    return OK_00
