"""SMPP optional parameters (TLVs): the raw form, the typed values, the rules.

Every PDU body may end in C{tag(2) length(2) value} triples.  The PDU types
expose the common ones as typed attributes (C{message_payload},
C{receipted_message_id} ...) and keep every other one, in order, as a raw
L{Tlv}, so nothing an SMSC sends is lost and a decoded PDU re-encodes to the
same bytes.  The length of every optional parameter SMPP 3.4 defines is
checked here, typed or passed through, because a wrong length is the usual
way a broken peer desynchronises the rest of the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from bipgw.codec.smpp._constants import TlvTag
from bipgw.codec.smpp._errors import SmppError
from bipgw.codec.smpp._status import CommandStatus

_PARLEN = CommandStatus.ESME_RINVPARLEN
_PARVAL = CommandStatus.ESME_RINVOPTPARAMVAL
_STREAM = CommandStatus.ESME_RINVOPTPARSTREAM


@attrs.frozen
class Tlv:
    """One optional parameter, kept as it was on the wire.

    @ivar tag: the 16-bit parameter tag (see L{TlvTag}).
    @ivar value: the value octets, at most 65535.
    """

    tag: int
    value: bytes = b""


@attrs.frozen
class NetworkErrorCode:
    """The network_error_code TLV: which network reported the failure, and its code.

    @ivar network_type: 1 ANSI-136, 2 IS-95, 3 GSM, 4 ANSI-136 cause code,
        5 IS-95 cause code, 6 ANSI-41, 7 SMPP error, 8 message-centre specific.
    @ivar error_code: the 16-bit error code in that network's numbering.
    """

    network_type: int
    error_code: int


@attrs.frozen
class TlvSpec:
    """How one standard optional parameter is coded.

    @ivar kind: C{"u8"}, C{"u16"}, C{"u32"} (big-endian integers),
        C{"cstr"} (NUL-terminated text), C{"octets"}, C{"nec"}
        (L{NetworkErrorCode}) or C{"flag"} (presence only, empty value).
    @ivar min_len: the smallest legal value length in octets.
    @ivar max_len: the largest legal value length in octets (a C{"cstr"}'s
        NUL included).
    """

    name: str
    tag: int
    kind: str
    min_len: int
    max_len: int


_FIXED = {"u8": 1, "u16": 2, "u32": 4, "nec": 3, "flag": 0}


def _spec(tag: TlvTag, kind: str, min_len: int | None = None, max_len: int = 0) -> TlvSpec:
    if kind in _FIXED:
        min_len = max_len = _FIXED[kind]
    elif min_len is None:
        min_len = 1 if kind == "cstr" else 0
    return TlvSpec(tag.name.lower(), int(tag), kind, min_len, max_len)


#: Every optional parameter whose coding SMPP 3.4 fixes, by tag.  The
#: telematics ids are left out on purpose: the 3.4 text is inconsistent
#: about their length, so they pass through unchecked.
SPECS: Final[dict[int, TlvSpec]] = {
    s.tag: s
    for s in (
        _spec(TlvTag.DEST_ADDR_SUBUNIT, "u8"),
        _spec(TlvTag.DEST_NETWORK_TYPE, "u8"),
        _spec(TlvTag.DEST_BEARER_TYPE, "u8"),
        _spec(TlvTag.SOURCE_ADDR_SUBUNIT, "u8"),
        _spec(TlvTag.SOURCE_NETWORK_TYPE, "u8"),
        _spec(TlvTag.SOURCE_BEARER_TYPE, "u8"),
        _spec(TlvTag.QOS_TIME_TO_LIVE, "u32"),
        _spec(TlvTag.PAYLOAD_TYPE, "u8"),
        _spec(TlvTag.ADDITIONAL_STATUS_INFO_TEXT, "cstr", max_len=256),
        _spec(TlvTag.RECEIPTED_MESSAGE_ID, "cstr", max_len=65),
        _spec(TlvTag.MS_MSG_WAIT_FACILITIES, "u8"),
        _spec(TlvTag.PRIVACY_INDICATOR, "u8"),
        _spec(TlvTag.SOURCE_SUBADDRESS, "octets", 2, 23),
        _spec(TlvTag.DEST_SUBADDRESS, "octets", 2, 23),
        _spec(TlvTag.USER_MESSAGE_REFERENCE, "u16"),
        _spec(TlvTag.USER_RESPONSE_CODE, "u8"),
        _spec(TlvTag.SOURCE_PORT, "u16"),
        _spec(TlvTag.DESTINATION_PORT, "u16"),
        _spec(TlvTag.SAR_MSG_REF_NUM, "u16"),
        _spec(TlvTag.LANGUAGE_INDICATOR, "u8"),
        _spec(TlvTag.SAR_TOTAL_SEGMENTS, "u8"),
        _spec(TlvTag.SAR_SEGMENT_SEQNUM, "u8"),
        _spec(TlvTag.SC_INTERFACE_VERSION, "u8"),
        _spec(TlvTag.CALLBACK_NUM_PRES_IND, "u8"),
        _spec(TlvTag.CALLBACK_NUM_ATAG, "octets", 0, 65),
        _spec(TlvTag.NUMBER_OF_MESSAGES, "u8"),
        _spec(TlvTag.CALLBACK_NUM, "octets", 4, 19),
        _spec(TlvTag.DPF_RESULT, "u8"),
        _spec(TlvTag.SET_DPF, "u8"),
        _spec(TlvTag.MS_AVAILABILITY_STATUS, "u8"),
        _spec(TlvTag.NETWORK_ERROR_CODE, "nec"),
        _spec(TlvTag.MESSAGE_PAYLOAD, "octets", 0, 0xFFFF),
        _spec(TlvTag.DELIVERY_FAILURE_REASON, "u8"),
        _spec(TlvTag.MORE_MESSAGES_TO_SEND, "u8"),
        _spec(TlvTag.MESSAGE_STATE, "u8"),
        _spec(TlvTag.USSD_SERVICE_OP, "u8"),
        _spec(TlvTag.DISPLAY_TIME, "u8"),
        _spec(TlvTag.SMS_SIGNAL, "u16"),
        _spec(TlvTag.MS_VALIDITY, "u8"),
        _spec(TlvTag.ALERT_ON_MESSAGE_DELIVERY, "flag"),
        _spec(TlvTag.ITS_REPLY_TYPE, "u8"),
        _spec(TlvTag.ITS_SESSION_INFO, "u16"),
    )
}

#: The same specs, by attribute name (PDU attributes are named after them).
SPECS_BY_NAME: Final[dict[str, TlvSpec]] = {s.name: s for s in SPECS.values()}

_INT_MAX = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF}


def _where(pdu: str, spec: TlvSpec) -> str:
    return f"{pdu}.{spec.name}"


def value_from_wire(pdu: str, spec: TlvSpec, raw: bytes, offset: int | None) -> object:
    """Check C{raw} against C{spec} and return the typed value.

    @param offset: where the TLV starts in the PDU, for the error.
    @raise SmppError: a length outside the spec (C{ESME_RINVPARLEN}) or a
        text value without its single trailing NUL (C{ESME_RINVOPTPARAMVAL}).
    """
    n = len(raw)
    if n < spec.min_len or n > spec.max_len:
        bounds = (
            f"{spec.min_len}" if spec.min_len == spec.max_len else f"{spec.min_len}..{spec.max_len}"
        )
        raise SmppError(
            f"tag 0x{spec.tag:04X} value is {n} octets, must be {bounds}",
            field=_where(pdu, spec),
            offset=offset,
            command_status=_PARLEN,
        )
    kind = spec.kind
    if kind == "u8":
        return raw[0]
    if kind == "u16" or kind == "u32":
        return int.from_bytes(raw, "big")
    if kind == "octets":
        return bytes(raw)
    if kind == "cstr":
        if raw.find(0) != n - 1:
            raise SmppError(
                f"tag 0x{spec.tag:04X} text must end in its only NUL",
                field=_where(pdu, spec),
                offset=offset,
                command_status=_PARVAL,
            )
        return raw[:-1].decode("latin-1")
    if kind == "nec":
        return NetworkErrorCode(raw[0], (raw[1] << 8) | raw[2])
    return True  # flag: presence is the value


def _encode_error(pdu: str, spec: TlvSpec, reason: str) -> SmppError:
    return SmppError(
        f"tag 0x{spec.tag:04X} {reason}", field=_where(pdu, spec), command_status=_PARVAL
    )


def value_to_wire(pdu: str, spec: TlvSpec, value: object) -> bytes:
    """The C{tag length value} octets for a typed value.

    @raise SmppError: the value has the wrong type or does not fit.
    """
    kind = spec.kind
    if kind in _INT_MAX:
        if not isinstance(value, int) or not 0 <= value <= _INT_MAX[kind]:
            raise _encode_error(pdu, spec, f"needs an integer 0..{_INT_MAX[kind]}")
        raw = value.to_bytes(spec.max_len, "big")
    elif kind == "octets":
        if not isinstance(value, bytes):
            raise _encode_error(pdu, spec, "needs bytes")
        raw = value
    elif kind == "cstr":
        if not isinstance(value, str):
            raise _encode_error(pdu, spec, "needs text")
        try:
            raw = value.encode("latin-1") + b"\0"
        except UnicodeEncodeError:
            raise _encode_error(pdu, spec, "text must be Latin-1") from None
        if raw.find(0) != len(raw) - 1:
            raise _encode_error(pdu, spec, "text must not contain NUL")
    elif kind == "nec":
        if (
            not isinstance(value, NetworkErrorCode)
            or not 0 <= value.network_type <= 0xFF
            or not 0 <= value.error_code <= 0xFFFF
        ):
            raise _encode_error(pdu, spec, "needs a NetworkErrorCode (type 0..255, code 0..65535)")
        raw = bytes((value.network_type, value.error_code >> 8, value.error_code & 0xFF))
    else:
        if value is not True:
            raise _encode_error(pdu, spec, "is a flag: True or None")
        raw = b""
    n = len(raw)
    if n < spec.min_len or n > spec.max_len:
        raise SmppError(
            f"tag 0x{spec.tag:04X} value is {n} octets, must be {spec.min_len}..{spec.max_len}",
            field=_where(pdu, spec),
            command_status=_PARLEN,
        )
    return spec.tag.to_bytes(2, "big") + n.to_bytes(2, "big") + raw


def parse_tlvs(
    pdu: str, body: bytes, pos: int, typed: dict[int, TlvSpec]
) -> tuple[dict[str, object], tuple[Tlv, ...], tuple[int, ...]]:
    """Read the optional parameters from C{body[pos:]}.

    @param typed: the PDU's typed parameters, by tag.
    @return: the typed values by attribute name, the other parameters in
        order, and the tags in wire order (so re-encoding keeps the order).
    @raise SmppError: a truncated parameter (C{ESME_RINVOPTPARSTREAM}), a
        typed parameter given twice, or a standard one of the wrong length.
    """
    values: dict[str, object] = {}
    extras: list[Tlv] = []
    order: list[int] = []
    end = len(body)
    while pos < end:
        offset = 16 + pos
        if end - pos < 4:
            raise SmppError(
                f"{end - pos} octets left, a TLV header needs 4",
                field=f"{pdu}.optional_parameters",
                offset=offset,
                command_status=_STREAM,
            )
        tag = (body[pos] << 8) | body[pos + 1]
        length = (body[pos + 2] << 8) | body[pos + 3]
        pos += 4
        if end - pos < length:
            raise SmppError(
                f"tag 0x{tag:04X} announces {length} octets, {end - pos} remain",
                field=f"{pdu}.optional_parameters",
                offset=offset,
                command_status=_STREAM,
            )
        raw = body[pos : pos + length]
        pos += length
        spec = typed.get(tag)
        if spec is not None:
            if spec.name in values:
                raise SmppError(
                    f"tag 0x{tag:04X} appears twice",
                    field=_where(pdu, spec),
                    offset=offset,
                    command_status=_STREAM,
                )
            values[spec.name] = value_from_wire(pdu, spec, raw, offset)
        else:
            known = SPECS.get(tag)
            if known is not None:
                value_from_wire(pdu, known, raw, offset)
            extras.append(Tlv(tag, raw))
        order.append(tag)
    return values, tuple(extras), tuple(order)


def encode_tlvs(
    pdu: str,
    typed: Sequence[TlvSpec],
    values: Sequence[object],
    extras: Sequence[Tlv],
    order: Sequence[int],
) -> bytes:
    """The optional-parameter octets for a PDU.

    Parameters listed in C{order} (a decoded PDU's wire order) come first,
    in that order; then the remaining typed ones in declaration order, then
    the remaining extras in their own order.  So a decoded PDU re-encodes
    byte for byte, and a built one gets a stable layout.

    @raise SmppError: a value that does not fit, an extra whose tag is one
        of this PDU's typed parameters (the two would be ambiguous), or an
        extra for a standard tag with an illegal length.
    """
    chunks: dict[int, bytes] = {}
    for spec, value in zip(typed, values, strict=True):
        if value is not None:
            chunks[spec.tag] = value_to_wire(pdu, spec, value)
    raws: list[tuple[int, bytes]] = []
    if extras:
        typed_tags = {s.tag for s in typed}
        for tlv in extras:
            raws.append((tlv.tag, _extra_to_wire(pdu, tlv, typed_tags)))
    if not order:
        return b"".join(chunks.values()) + b"".join(r for _, r in raws)
    out: list[bytes] = []
    ei = 0
    for tag in order:
        chunk = chunks.pop(tag, None)
        if chunk is not None:
            out.append(chunk)
        elif ei < len(raws) and raws[ei][0] == tag:
            out.append(raws[ei][1])
            ei += 1
    out.extend(chunks.values())
    out.extend(r for _, r in raws[ei:])
    return b"".join(out)


def _extra_to_wire(pdu: str, tlv: Tlv, typed_tags: set[int]) -> bytes:
    field = f"{pdu}.extra_tlvs"
    if not isinstance(tlv, Tlv) or not isinstance(tlv.value, bytes):
        raise SmppError("items must be Tlv(tag, bytes)", field=field, command_status=_PARVAL)
    if not 0 <= tlv.tag <= 0xFFFF or len(tlv.value) > 0xFFFF:
        raise SmppError(
            "tag must be 0..0xFFFF and value at most 65535 octets",
            field=field,
            command_status=_PARLEN,
        )
    if tlv.tag in typed_tags:
        raise SmppError(
            f"tag 0x{tlv.tag:04X} is a typed attribute of {pdu}; set it there",
            field=field,
            command_status=_STREAM,
        )
    known = SPECS.get(tlv.tag)
    if known is not None:
        value_from_wire(pdu, known, tlv.value, None)
    return tlv.tag.to_bytes(2, "big") + len(tlv.value).to_bytes(2, "big") + tlv.value
