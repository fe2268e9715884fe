"""encode, decode and the stream decoder for SMPP 3.4 PDUs.

Every PDU is a 16-octet header (command_length, command_id, command_status,
sequence_number; big-endian) and a body.  L{decode} takes exactly one PDU;
L{PduDecoder} cuts a TCP byte stream into PDUs with the shared
L{LengthPrefixedSplitter}.  L{response_for_error} turns a decoding error
into the PDU a peer must answer with, so an SMSC never leaves a malformed
request unanswered and never nacks a nack.
"""

from __future__ import annotations

import struct
from operator import lt
from typing import Final, cast

from bipgw.codec._framing import LengthPrefixedSplitter
from bipgw.codec.smpp._base import Pdu
from bipgw.codec.smpp._body import read_mandatory, write_mandatory
from bipgw.codec.smpp._constants import RESPONSE_BIT, CommandId
from bipgw.codec.smpp._errors import SmppError, length_error
from bipgw.codec.smpp._layout import MAX_SHORT_MESSAGE, Layout
from bipgw.codec.smpp._messages import (
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SubmitSm,
    SubmitSmResp,
)
from bipgw.codec.smpp._multi import SubmitMulti, SubmitMultiResp
from bipgw.codec.smpp._session import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Unbind,
    UnbindResp,
)
from bipgw.codec.smpp._status import CommandStatus
from bipgw.codec.smpp._tlv import encode_tlvs, parse_tlvs

#: Size of the PDU header, and so the smallest legal command_length.
HEADER_SIZE: Final = 16

#: Default largest PDU a L{PduDecoder} accepts: a 64 KiB message_payload
#: plus room for the header, the mandatory fields and a full submit_multi
#: destination list.  Anything larger is refused before it is buffered.
DEFAULT_MAX_PDU: Final = 0x10000 + 0x2000

#: Every PDU type, in command_id order of the SMPP 3.4 table.
PDU_TYPES: Final[tuple[type[Pdu], ...]] = (
    GenericNack,
    BindReceiver,
    BindReceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    QuerySm,
    QuerySmResp,
    SubmitSm,
    SubmitSmResp,
    DeliverSm,
    DeliverSmResp,
    Unbind,
    UnbindResp,
    ReplaceSm,
    ReplaceSmResp,
    CancelSm,
    CancelSmResp,
    BindTransceiver,
    BindTransceiverResp,
    Outbind,
    EnquireLink,
    EnquireLinkResp,
    SubmitMulti,
    SubmitMultiResp,
    AlertNotification,
    DataSm,
    DataSmResp,
)

_LAYOUTS: Final[dict[type[Pdu], Layout]] = {cls: Layout(cls) for cls in PDU_TYPES}
_BY_ID: Final[dict[int, Layout]] = {lay.command_id: lay for lay in _LAYOUTS.values()}
_HEADER = struct.Struct(">IIII")
_CMDLEN = CommandStatus.ESME_RINVCMDLEN

#: Requests that have no response PDU (and so are never answered).
_UNANSWERED: Final = frozenset({CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION})


def with_sequence_number(data: bytes, sequence_number: int) -> bytes:
    """The encoded PDU C{data} with its header's sequence_number set.

    For a PDU encoded once and sent several times (a submit_sm sent again
    after a reconnection): only the header's last four octets change.

    @raise SmppError: C{data} is not a whole PDU, or the number is not 32-bit.
    """
    if len(data) < HEADER_SIZE or int.from_bytes(data[:4], "big") != len(data):
        raise SmppError("not one encoded PDU", field="sequence_number")
    if not 0 <= sequence_number <= 0xFFFFFFFF:
        raise SmppError("needs a 32-bit integer", field="sequence_number")
    return data[:12] + sequence_number.to_bytes(4, "big") + data[16:]


def encode(pdu: Pdu) -> bytes:
    """The wire octets of one PDU, header included.

    @raise SmppError: a value that cannot be sent, naming the PDU and the
        field (a string too long or not Latin-1, a short_message over 254
        octets, an integer out of range, an optional parameter of the
        wrong type ...).
    """
    layout = _LAYOUTS.get(type(pdu))
    if layout is None:
        raise SmppError(f"{type(pdu).__name__} is not an SMPP PDU type", field="pdu")
    body = b""
    if not layout.header_only:
        fast = _fast_mandatory(layout, pdu) if layout.fast else None
        if fast is None:
            slow = bytearray()
            write_mandatory(layout, pdu, slow)
            fast = bytes(slow)
        body = fast
        extras = pdu.extra_tlvs  # type: ignore[attr-defined]
        if layout.typed or extras:
            values = layout.get_typed(pdu)
            if extras or values.count(None) != len(values):
                order = pdu.tlv_order  # type: ignore[attr-defined]
                body += encode_tlvs(layout.name, layout.typed, values, extras, order)
    status = pdu.command_status
    seq = pdu.sequence_number
    if not isinstance(status, int) or not 0 <= status <= 0xFFFFFFFF:
        raise SmppError("needs a 32-bit integer", field=f"{layout.name}.command_status")
    if not isinstance(seq, int) or not 0 <= seq <= 0xFFFFFFFF:
        raise SmppError("needs a 32-bit integer", field=f"{layout.name}.sequence_number")
    return _HEADER.pack(HEADER_SIZE + len(body), layout.command_id, status, seq) + body


def decode(data: bytes) -> Pdu:
    """Decode exactly one PDU.

    @raise SmppError: with C{command_status} set to what a server should
        answer: C{ESME_RINVCMDLEN} when command_length is not the length of
        C{data}, C{ESME_RINVCMDID} for an unknown command_id, a
        field-specific status for a malformed body.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise SmppError(
            f"{len(data)} octets cannot hold the {HEADER_SIZE}-octet header",
            field="command_length",
            offset=0,
            command_status=_CMDLEN,
        )
    length, command_id, status, seq = _HEADER.unpack_from(data)
    if length != len(data):
        raise SmppError(
            f"command_length {length} but the PDU has {len(data)} octets",
            field="command_length",
            offset=0,
            command_status=_CMDLEN,
            command_id=command_id,
            sequence_number=seq,
        )
    return _decode_frame(data, command_id, status, seq)


def _decode_frame(data: bytes, command_id: int, status: int, seq: int) -> Pdu:
    layout = _BY_ID.get(command_id)
    if layout is None:
        raise SmppError(
            f"unknown command_id 0x{command_id:08X}",
            field="command_id",
            offset=4,
            command_status=CommandStatus.ESME_RINVCMDID,
            command_id=command_id,
            sequence_number=seq,
        )
    if layout.header_only:
        if len(data) != HEADER_SIZE:
            raise SmppError(
                f"{layout.name} has no body, got {len(data) - HEADER_SIZE} octets",
                field="command_length",
                offset=0,
                command_status=_CMDLEN,
                command_id=command_id,
                sequence_number=seq,
            )
        return layout.cls(seq, status)
    body = data[HEADER_SIZE:]
    if not body and layout.is_response:
        # SMPP 3.4 lets an error response omit its body; many peers omit it
        # even on success (deliver_sm_resp).  The fields take their defaults.
        return layout.cls(seq, status)
    try:
        return _decode_body(layout, body, status, seq)
    except SmppError as e:
        e.command_id = command_id
        e.sequence_number = seq
        raise


def _fast_mandatory(layout: Layout, pdu: Pdu) -> bytes | None:
    """The mandatory fields in one template fill, or C{None} to take the slow path.

    C-level calls do the checks: C{str.join} refuses a non-string,
    C{bytes()} an octet that is not an integer 0..255, C{encode} a
    non-Latin-1 character; then string lengths and NULs are checked.  Any
    doubt returns C{None}, and L{write_mandatory} either writes the same
    octets or names the bad field.
    """
    values = layout.get_mandatory(pdu)
    sm: object = b""
    if layout.has_sm:
        sm = values[-1]
        values = values[:-1]
    strs = cast("tuple[str, ...]", layout.pick_strs(values))
    try:
        joined = "".join(strs)
        bytes(layout.pick_ints(values))  # type: ignore[arg-type]
        raw = (layout.template % values).encode("latin-1")
    except (TypeError, ValueError, OverflowError):
        return None
    if "\0" in joined or not all(map(lt, map(len, strs), layout.limits)):
        return None
    if not layout.has_sm:
        return raw
    if type(sm) is bytes and len(sm) <= MAX_SHORT_MESSAGE:
        return raw + bytes((len(sm),)) + sm
    return None


def _fast_read(layout: Layout, body: bytes) -> tuple[tuple[object, ...], int] | None:
    """The mandatory values and where the TLVs start, or C{None} to take the slow path."""
    m = layout.regex.match(body.decode("latin-1"))  # type: ignore[union-attr]
    if m is None:
        return None
    groups = m.groups()
    octets = cast("tuple[str, ...]", layout.pick_ints(groups))
    values = layout.interleave(layout.pick_strs(groups) + tuple(map(ord, octets)))
    pos = m.end()
    if not layout.has_sm:
        return values, pos
    if pos >= len(body):
        return None
    start = pos + 1
    end = start + body[pos]
    if end - start > MAX_SHORT_MESSAGE or end > len(body):
        return None
    return (*values, body[start:end]), end


def _decode_body(layout: Layout, body: bytes, status: int, seq: int) -> Pdu:
    fast = _fast_read(layout, body) if layout.fast else None
    if fast is None:
        slow, pos = read_mandatory(layout, body)
        values: tuple[object, ...] = tuple(slow)
    else:
        values, pos = fast
    if pos == len(body):
        return layout.cls(seq, status, *values)
    typed, extras, order = parse_tlvs(layout.name, body, pos, layout.typed_by_tag)
    typed["extra_tlvs"] = extras
    typed["tlv_order"] = order
    return layout.cls(seq, status, *values, **typed)


def response_for_error(error: SmppError) -> Pdu | None:
    """The PDU to answer a PDU that failed to decode, or C{None} if none is due.

    A broken header gets C{generic_nack}; a known request with a broken body
    gets its own response with the error's status (the peer can then match
    it to the request); responses, C{generic_nack}, outbind and
    alert_notification are never answered, so two peers cannot nack each
    other forever.
    """
    seq = error.sequence_number if error.sequence_number is not None else 0
    cid = error.command_id
    layout = _BY_ID.get(cid) if cid is not None else None
    if layout is not None and (layout.is_response or cid in _UNANSWERED):
        return None
    if layout is None or error.needs_generic_nack:
        return GenericNack(seq, error.command_status)
    return _BY_ID[layout.command_id | RESPONSE_BIT].cls(seq, error.command_status)


class PduDecoder:
    """Turn an SMPP byte stream, read in arbitrary pieces, into PDUs.

    A command_length below 16 or above C{max_pdu} breaks the stream for
    good (there is no way to find the next PDU).  PDUs completed before it
    are still handed over; the error is raised by the next call and by every
    call after that.  L{feed} also gives up at the first malformed PDU; use
    L{feed_results} to answer malformed but well-framed PDUs and carry on,
    as an SMSC must.

    @param max_pdu: the largest PDU accepted, checked from the length
        prefix before the body is buffered.
    """

    __slots__ = ("_broken", "_fed", "_previous", "_splitter")

    def __init__(self, max_pdu: int = DEFAULT_MAX_PDU) -> None:
        if max_pdu < HEADER_SIZE:
            raise ValueError(f"max_pdu must be at least {HEADER_SIZE}")
        self._splitter = LengthPrefixedSplitter(
            prefix_size=4,
            counts_prefix=True,
            min_frame=HEADER_SIZE,
            max_frame=max_pdu,
            error=length_error,
            field="command_length",
        )
        self._fed = 0
        # The previous chunk and its stream offset: a bad length found at the
        # end of one call is raised by the next, and its header is in here.
        self._previous: tuple[int, bytes] = (0, b"")
        self._broken: SmppError | None = None

    @property
    def buffered(self) -> int:
        """How many octets wait for the rest of a PDU."""
        return self._splitter.buffered

    def feed(self, data: bytes) -> list[Pdu]:
        """Add C{data}; return every PDU now complete, in order.

        @raise SmppError: on a bad command_length (see the class docstring),
            or on the first PDU that does not decode.  The decoder then stays
            broken: a session that gets garbage is torn down, and PDUs
            decoded in the same call before the malformed one are not
            returned.
        """
        if self._broken is not None:
            raise self._broken
        pdus: list[Pdu] = []
        for item in self.feed_results(data):
            if isinstance(item, SmppError):
                self._broken = item
                raise item
            pdus.append(item)
        return pdus

    def feed_results(self, data: bytes) -> list[Pdu | SmppError]:
        """Add C{data}; return, in stream order, a PDU or the error of each complete frame.

        A malformed frame does not stop decoding: its L{SmppError} takes its
        place in the list (with the command_id and sequence_number to answer,
        see L{response_for_error}) and the next frame is decoded as usual.

        @raise SmppError: only for a bad command_length, which breaks the
            stream for good; when its header was read whole, the error
            carries its command_id and sequence_number.
        """
        base = self._fed
        self._fed += len(data)
        try:
            frames = self._splitter.feed(data)
        except SmppError as e:
            self._annotate(e, ((base, data), self._previous))
            raise
        finally:
            self._previous = (base, data)
        results: list[Pdu | SmppError] = []
        for frame in frames:
            _, command_id, status, seq = _HEADER.unpack_from(frame)
            try:
                results.append(_decode_frame(frame, command_id, status, seq))
            except SmppError as e:
                results.append(e)
        return results

    @staticmethod
    def _annotate(error: SmppError, chunks: tuple[tuple[int, bytes], ...]) -> None:
        if error.command_id is not None or error.offset is None:
            return
        for base, data in chunks:
            start = error.offset - base
            if start >= 0 and start + HEADER_SIZE <= len(data):
                _, error.command_id, _, error.sequence_number = _HEADER.unpack_from(data, start)
                return
