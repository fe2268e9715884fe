"""Reading and writing the mandatory part of a PDU body, field by field.

Writing always goes through here, so every value is checked (length, NUL,
range, type) before it reaches the wire.  Reading goes through here only
when the fast regex in L{Layout} did not match: this reader is the
definitive one, and its errors name the PDU, the field, the offset from the
start of the PDU and the status a server should answer with.
"""

from __future__ import annotations

from bipgw.codec.smpp._errors import SmppError
from bipgw.codec.smpp._layout import Field, Layout
from bipgw.codec.smpp._multi import DistributionList, SmeAddress, UnsuccessfulSme
from bipgw.codec.smpp._status import CommandStatus

_HEADER = 16
_CMDLEN = CommandStatus.ESME_RINVCMDLEN
_MSGLEN = CommandStatus.ESME_RINVMSGLEN
_DESTFLAG = CommandStatus.ESME_RINVDESTFLAG
_NUMDESTS = CommandStatus.ESME_RINVNUMDESTS
_DLNAME = CommandStatus.ESME_RINVDLNAME
_DSTADR = CommandStatus.ESME_RINVDSTADR

#: dest_flag values in submit_multi.
_SME = 1
_LIST = 2


def _ends(where: str, pos: int) -> SmppError:
    return SmppError(
        "the PDU ends before this field",
        field=where,
        offset=_HEADER + pos,
        command_status=_CMDLEN,
    )


def _read_cstr(body: bytes, pos: int, size: int, where: str, status: int) -> tuple[str, int]:
    end = body.find(b"\0", pos, pos + size)
    if end < 0:
        if pos >= len(body):
            raise _ends(where, pos)
        if len(body) - pos < size:
            reason = "no NUL terminator before the end of the PDU"
        else:
            reason = f"longer than {size - 1} characters (no NUL within {size} octets)"
        raise SmppError(reason, field=where, offset=_HEADER + pos, command_status=status)
    return body[pos:end].decode("latin-1"), end + 1


def _read_u8(body: bytes, pos: int, where: str) -> int:
    if pos >= len(body):
        raise _ends(where, pos)
    return body[pos]


def _read_dests(
    body: bytes, pos: int, f: Field, where: str
) -> tuple[tuple[SmeAddress | DistributionList, ...], int]:
    count = _read_u8(body, pos, f"{where}.number_of_dests")
    if not 1 <= count <= f.size:
        raise SmppError(
            f"number_of_dests {count} outside 1..{f.size}",
            field=f"{where}.number_of_dests",
            offset=_HEADER + pos,
            command_status=_NUMDESTS,
        )
    pos += 1
    out: list[SmeAddress | DistributionList] = []
    for i in range(count):
        item = f"{where}[{i}]"
        flag = _read_u8(body, pos, f"{item}.dest_flag")
        if flag == _SME:
            ton = _read_u8(body, pos + 1, f"{item}.dest_addr_ton")
            npi = _read_u8(body, pos + 2, f"{item}.dest_addr_npi")
            addr, pos = _read_cstr(body, pos + 3, 21, f"{item}.destination_addr", _DSTADR)
            out.append(SmeAddress(ton, npi, addr))
        elif flag == _LIST:
            name, pos = _read_cstr(body, pos + 1, 21, f"{item}.dl_name", _DLNAME)
            out.append(DistributionList(name))
        else:
            raise SmppError(
                f"dest_flag {flag} is neither 1 (SME) nor 2 (list)",
                field=f"{item}.dest_flag",
                offset=_HEADER + pos,
                command_status=_DESTFLAG,
            )
    return tuple(out), pos


def _read_unsuccess(
    body: bytes, pos: int, f: Field, where: str
) -> tuple[tuple[UnsuccessfulSme, ...], int]:
    count = _read_u8(body, pos, f"{where}.no_unsuccess")
    pos += 1
    out: list[UnsuccessfulSme] = []
    for i in range(count):
        item = f"{where}[{i}]"
        ton = _read_u8(body, pos, f"{item}.dest_addr_ton")
        npi = _read_u8(body, pos + 1, f"{item}.dest_addr_npi")
        addr, pos = _read_cstr(body, pos + 2, 21, f"{item}.destination_addr", _DSTADR)
        if len(body) - pos < 4:
            raise _ends(f"{item}.error_status_code", pos)
        code = int.from_bytes(body[pos : pos + 4], "big")
        out.append(UnsuccessfulSme(ton, npi, addr, code))
        pos += 4
    return tuple(out), pos


def read_mandatory(layout: Layout, body: bytes) -> tuple[list[object], int]:
    """Read the mandatory fields; return their values and where the TLVs start.

    @raise SmppError: naming the first field that cannot be read.
    """
    pos = 0
    values: list[object] = []
    for f in layout.fields:
        where = f"{layout.name}.{f.name}"
        kind = f.kind
        value: object
        if kind == "c":
            value, pos = _read_cstr(body, pos, f.size, where, f.status)
        elif kind == "u8":
            value = _read_u8(body, pos, where)
            pos += 1
        elif kind == "sm":
            n = _read_u8(body, pos, f"{layout.name}.sm_length")
            if n > f.size:
                raise SmppError(
                    f"sm_length {n} exceeds the {f.size}-octet limit",
                    field=where,
                    offset=_HEADER + pos,
                    command_status=_MSGLEN,
                )
            pos += 1
            if len(body) - pos < n:
                raise SmppError(
                    f"sm_length {n} but only {len(body) - pos} octets remain",
                    field=where,
                    offset=_HEADER + pos,
                    command_status=_MSGLEN,
                )
            value = body[pos : pos + n]
            pos += n
        elif kind == "dests":
            value, pos = _read_dests(body, pos, f, where)
        else:
            value, pos = _read_unsuccess(body, pos, f, where)
        values.append(value)
    return values, pos


def _bad(where: str, reason: str, status: int) -> SmppError:
    return SmppError(reason, field=where, command_status=status)


def _write_cstr(out: bytearray, value: object, size: int, where: str, status: int) -> None:
    if not isinstance(value, str):
        raise _bad(where, "needs text (str)", status)
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise _bad(where, "text must be Latin-1 (one octet per character)", status) from None
    if len(raw) >= size:
        raise _bad(where, f"{len(raw)} characters exceed the limit of {size - 1}", status)
    if 0 in raw:
        raise _bad(where, "text must not contain NUL", status)
    out += raw
    out.append(0)


def _write_u8(out: bytearray, value: object, where: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise _bad(where, "needs an integer 0..255", CommandStatus.ESME_RSYSERR)
    out.append(value)


def _write_dests(out: bytearray, value: object, f: Field, where: str) -> None:
    if not isinstance(value, tuple | list) or not 1 <= len(value) <= f.size:
        raise _bad(where, f"needs 1..{f.size} destinations", _NUMDESTS)
    out.append(len(value))
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if isinstance(item, SmeAddress):
            out.append(_SME)
            _write_u8(out, item.dest_addr_ton, f"{at}.dest_addr_ton")
            _write_u8(out, item.dest_addr_npi, f"{at}.dest_addr_npi")
            _write_cstr(out, item.destination_addr, 21, f"{at}.destination_addr", _DSTADR)
        elif isinstance(item, DistributionList):
            out.append(_LIST)
            _write_cstr(out, item.dl_name, 21, f"{at}.dl_name", _DLNAME)
        else:
            raise _bad(at, "needs an SmeAddress or a DistributionList", _DESTFLAG)


def _write_unsuccess(out: bytearray, value: object, f: Field, where: str) -> None:
    if not isinstance(value, tuple | list) or len(value) > f.size:
        raise _bad(where, f"needs at most {f.size} entries", CommandStatus.ESME_RSYSERR)
    out.append(len(value))
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, UnsuccessfulSme):
            raise _bad(at, "needs an UnsuccessfulSme", CommandStatus.ESME_RSYSERR)
        _write_u8(out, item.dest_addr_ton, f"{at}.dest_addr_ton")
        _write_u8(out, item.dest_addr_npi, f"{at}.dest_addr_npi")
        _write_cstr(out, item.destination_addr, 21, f"{at}.destination_addr", _DSTADR)
        code = item.error_status_code
        if not isinstance(code, int) or not 0 <= code <= 0xFFFFFFFF:
            raise _bad(f"{at}.error_status_code", "needs a 32-bit status", _DSTADR)
        out += code.to_bytes(4, "big")


def write_mandatory(layout: Layout, pdu: object, out: bytearray) -> None:
    """Append the mandatory fields of C{pdu} to C{out}, checking each value.

    @raise SmppError: naming the first field whose value cannot be sent.
    """
    name = layout.name
    for f, value in zip(layout.fields, layout.get_mandatory(pdu), strict=True):
        kind = f.kind
        if kind == "c":
            # Inlined common case of _write_cstr (the hot path).
            if type(value) is str:
                try:
                    raw = value.encode("latin-1")
                except UnicodeEncodeError:
                    raw = b"\0"
                if len(raw) < f.size and 0 not in raw:
                    out += raw
                    out.append(0)
                    continue
            _write_cstr(out, value, f.size, f"{name}.{f.name}", f.status)
        elif kind == "u8":
            if type(value) is int and 0 <= value <= 0xFF:
                out.append(value)
            else:
                _write_u8(out, value, f"{name}.{f.name}")
        elif kind == "sm":
            if not isinstance(value, bytes) or len(value) > f.size:
                raise _bad(
                    f"{name}.{f.name}",
                    f"needs bytes of at most {f.size} octets (use message_payload for more)",
                    _MSGLEN,
                )
            out.append(len(value))
            out += value
        elif kind == "dests":
            _write_dests(out, value, f, f"{name}.{f.name}")
        else:
            _write_unsuccess(out, value, f, f"{name}.{f.name}")
