"""Message PDUs: submit, deliver, data, query, cancel and replace.

These carry the OTA traffic: a secured command packet goes out in a
C{submit_sm}, the card's PoR and the SMSC's receipts come back in
C{deliver_sm} (SMPP 3.4 sections 4.4-4.10).  The common optional
parameters are typed attributes (C{None} when absent); any other optional
parameter is kept, in order, in C{extra_tlvs}.  C{submit_multi} lives in
L{bipgw.codec.smpp._multi}.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from bipgw.codec.smpp._base import EXTRAS, ORDER, SHORT_MESSAGE, TLV, U8, Pdu, cstr
from bipgw.codec.smpp._constants import CommandId
from bipgw.codec.smpp._receipt import DeliveryReceipt
from bipgw.codec.smpp._tlv import NetworkErrorCode, Tlv

#: esm_class bits 5-2 that mark a deliver_sm as an SMSC delivery receipt.
_RECEIPT_TYPE = 0x04
_TYPE_MASK = 0x3C


@attrs.frozen(slots=False)
class _ShortMessage(Pdu):
    """The mandatory body submit_sm and deliver_sm share (SMPP 3.4 4.4.1, 4.6.1).

    C{short_message} is at most 254 octets; longer content goes in the
    C{message_payload} parameter with C{short_message} left empty.  The codec
    does not police that pairing (a decoded PDU keeps what the peer sent);
    the session layer decides what to answer.
    """

    service_type: str = attrs.field(default="", metadata=cstr(6))
    source_addr_ton: int = attrs.field(default=0, metadata=U8)
    source_addr_npi: int = attrs.field(default=0, metadata=U8)
    source_addr: str = attrs.field(default="", metadata=cstr(21))
    dest_addr_ton: int = attrs.field(default=0, metadata=U8)
    dest_addr_npi: int = attrs.field(default=0, metadata=U8)
    destination_addr: str = attrs.field(default="", metadata=cstr(21))
    esm_class: int = attrs.field(default=0, metadata=U8)
    protocol_id: int = attrs.field(default=0, metadata=U8)
    priority_flag: int = attrs.field(default=0, metadata=U8)
    schedule_delivery_time: str = attrs.field(default="", metadata=cstr(17))
    validity_period: str = attrs.field(default="", metadata=cstr(17))
    registered_delivery: int = attrs.field(default=0, metadata=U8)
    replace_if_present_flag: int = attrs.field(default=0, metadata=U8)
    data_coding: int = attrs.field(default=0, metadata=U8)
    sm_default_msg_id: int = attrs.field(default=0, metadata=U8)
    short_message: bytes = attrs.field(default=b"", metadata=SHORT_MESSAGE)


@attrs.frozen(slots=False)
class SubmitSmResp(Pdu):
    """Answer to L{SubmitSm}: the SMSC's id for the message (for receipts).

    An SMSC may send just the header when command_status is an error; that
    decodes with C{message_id=""} and re-encodes with the (empty) body.
    """

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    message_id: str = attrs.field(default="", metadata=cstr(65))
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class SubmitSm(_ShortMessage):
    """A mobile-terminated message from the ESME (the OTA push)."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM
    user_message_reference: int | None = attrs.field(default=None, metadata=TLV)
    source_port: int | None = attrs.field(default=None, metadata=TLV)
    destination_port: int | None = attrs.field(default=None, metadata=TLV)
    sar_msg_ref_num: int | None = attrs.field(default=None, metadata=TLV)
    sar_total_segments: int | None = attrs.field(default=None, metadata=TLV)
    sar_segment_seqnum: int | None = attrs.field(default=None, metadata=TLV)
    more_messages_to_send: int | None = attrs.field(default=None, metadata=TLV)
    payload_type: int | None = attrs.field(default=None, metadata=TLV)
    message_payload: bytes | None = attrs.field(default=None, metadata=TLV)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)

    def response(self, message_id: str = "", *, command_status: int = 0) -> SubmitSmResp:
        """The answer to this submission, with the same sequence_number."""
        return SubmitSmResp(self.sequence_number, command_status, message_id)


@attrs.frozen(slots=False)
class DeliverSmResp(Pdu):
    """Answer to L{DeliverSm}; its message_id is unused and normally empty.

    Many ESMEs send it header-only; that decodes with C{message_id=""}.
    """

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    message_id: str = attrs.field(default="", metadata=cstr(65))
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class DeliverSm(_ShortMessage):
    """A mobile-originated message or a delivery receipt from the SMSC.

    The card's PoR arrives this way (esm_class C{40}, protocol_id C{7F});
    so do receipts (esm_class message type C{04}), see L{delivery_receipt}.
    """

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM
    user_message_reference: int | None = attrs.field(default=None, metadata=TLV)
    source_port: int | None = attrs.field(default=None, metadata=TLV)
    destination_port: int | None = attrs.field(default=None, metadata=TLV)
    sar_msg_ref_num: int | None = attrs.field(default=None, metadata=TLV)
    sar_total_segments: int | None = attrs.field(default=None, metadata=TLV)
    sar_segment_seqnum: int | None = attrs.field(default=None, metadata=TLV)
    payload_type: int | None = attrs.field(default=None, metadata=TLV)
    message_payload: bytes | None = attrs.field(default=None, metadata=TLV)
    receipted_message_id: str | None = attrs.field(default=None, metadata=TLV)
    message_state: int | None = attrs.field(default=None, metadata=TLV)
    network_error_code: NetworkErrorCode | None = attrs.field(default=None, metadata=TLV)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)

    @property
    def is_delivery_receipt(self) -> bool:
        """Whether esm_class marks this as an SMSC delivery receipt."""
        return self.esm_class & _TYPE_MASK == _RECEIPT_TYPE

    @property
    def content(self) -> bytes:
        """The message octets, wherever the SMSC put them (payload or short_message)."""
        if self.message_payload is not None:
            return self.message_payload
        return self.short_message

    def delivery_receipt(self) -> DeliveryReceipt:
        """Parse the receipt text this PDU carries.

        @raise SmppError: the text is not an SMPP 3.4 Appendix B receipt.
        """
        return DeliveryReceipt.parse(self.content)

    def response(self, *, command_status: int = 0) -> DeliverSmResp:
        """The answer to this delivery, with the same sequence_number."""
        return DeliverSmResp(self.sequence_number, command_status)


@attrs.frozen(slots=False)
class DataSmResp(Pdu):
    """Answer to L{DataSm}, with the failure details SMPP 3.4 allows here."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP
    message_id: str = attrs.field(default="", metadata=cstr(65))
    delivery_failure_reason: int | None = attrs.field(default=None, metadata=TLV)
    network_error_code: NetworkErrorCode | None = attrs.field(default=None, metadata=TLV)
    additional_status_info_text: str | None = attrs.field(default=None, metadata=TLV)
    dpf_result: int | None = attrs.field(default=None, metadata=TLV)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class DataSm(Pdu):
    """A message in either direction without short_message (content in message_payload).

    Addresses are up to 64 characters here, unlike submit_sm's 20.
    """

    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    service_type: str = attrs.field(default="", metadata=cstr(6))
    source_addr_ton: int = attrs.field(default=0, metadata=U8)
    source_addr_npi: int = attrs.field(default=0, metadata=U8)
    source_addr: str = attrs.field(default="", metadata=cstr(65))
    dest_addr_ton: int = attrs.field(default=0, metadata=U8)
    dest_addr_npi: int = attrs.field(default=0, metadata=U8)
    destination_addr: str = attrs.field(default="", metadata=cstr(65))
    esm_class: int = attrs.field(default=0, metadata=U8)
    registered_delivery: int = attrs.field(default=0, metadata=U8)
    data_coding: int = attrs.field(default=0, metadata=U8)
    source_port: int | None = attrs.field(default=None, metadata=TLV)
    destination_port: int | None = attrs.field(default=None, metadata=TLV)
    sar_msg_ref_num: int | None = attrs.field(default=None, metadata=TLV)
    sar_total_segments: int | None = attrs.field(default=None, metadata=TLV)
    sar_segment_seqnum: int | None = attrs.field(default=None, metadata=TLV)
    more_messages_to_send: int | None = attrs.field(default=None, metadata=TLV)
    payload_type: int | None = attrs.field(default=None, metadata=TLV)
    message_payload: bytes | None = attrs.field(default=None, metadata=TLV)
    receipted_message_id: str | None = attrs.field(default=None, metadata=TLV)
    message_state: int | None = attrs.field(default=None, metadata=TLV)
    network_error_code: NetworkErrorCode | None = attrs.field(default=None, metadata=TLV)
    user_message_reference: int | None = attrs.field(default=None, metadata=TLV)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)

    def response(
        self,
        message_id: str = "",
        *,
        command_status: int = 0,
        delivery_failure_reason: int | None = None,
        network_error_code: NetworkErrorCode | None = None,
        additional_status_info_text: str | None = None,
        dpf_result: int | None = None,
    ) -> DataSmResp:
        """The answer to this message, with the same sequence_number."""
        return DataSmResp(
            self.sequence_number,
            command_status,
            message_id,
            delivery_failure_reason=delivery_failure_reason,
            network_error_code=network_error_code,
            additional_status_info_text=additional_status_info_text,
            dpf_result=dpf_result,
        )


@attrs.frozen(slots=False)
class QuerySmResp(Pdu):
    """Answer to L{QuerySm}: the message's state and, if final, when it got there.

    @ivar final_date: SMPP absolute time (16 characters) or empty.
    @ivar message_state: a L{MessageState} value.
    @ivar error_code: the network error code, if any.
    """

    command_id: ClassVar[CommandId] = CommandId.QUERY_SM_RESP
    message_id: str = attrs.field(default="", metadata=cstr(65))
    final_date: str = attrs.field(default="", metadata=cstr(17))
    message_state: int = attrs.field(default=0, metadata=U8)
    error_code: int = attrs.field(default=0, metadata=U8)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class QuerySm(Pdu):
    """Ask the SMSC for the state of a message it accepted earlier.

    The source address must repeat the one given at submission.
    """

    command_id: ClassVar[CommandId] = CommandId.QUERY_SM
    message_id: str = attrs.field(default="", metadata=cstr(65))
    source_addr_ton: int = attrs.field(default=0, metadata=U8)
    source_addr_npi: int = attrs.field(default=0, metadata=U8)
    source_addr: str = attrs.field(default="", metadata=cstr(21))
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)

    def response(
        self,
        message_state: int,
        *,
        final_date: str = "",
        error_code: int = 0,
        command_status: int = 0,
    ) -> QuerySmResp:
        """The answer to this query (same sequence_number and message_id)."""
        return QuerySmResp(
            self.sequence_number,
            command_status,
            self.message_id,
            final_date,
            message_state,
            error_code,
        )


@attrs.frozen(slots=False)
class CancelSmResp(Pdu):
    """Answer to L{CancelSm} (no body)."""

    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM_RESP


@attrs.frozen(slots=False)
class CancelSm(Pdu):
    """Cancel a message still waiting in the SMSC (by id, or by service type and addresses)."""

    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM
    service_type: str = attrs.field(default="", metadata=cstr(6))
    message_id: str = attrs.field(default="", metadata=cstr(65))
    source_addr_ton: int = attrs.field(default=0, metadata=U8)
    source_addr_npi: int = attrs.field(default=0, metadata=U8)
    source_addr: str = attrs.field(default="", metadata=cstr(21))
    dest_addr_ton: int = attrs.field(default=0, metadata=U8)
    dest_addr_npi: int = attrs.field(default=0, metadata=U8)
    destination_addr: str = attrs.field(default="", metadata=cstr(21))
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)

    def response(self, *, command_status: int = 0) -> CancelSmResp:
        """The answer to this cancellation, with the same sequence_number."""
        return CancelSmResp(self.sequence_number, command_status)


@attrs.frozen(slots=False)
class ReplaceSmResp(Pdu):
    """Answer to L{ReplaceSm} (no body)."""

    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM_RESP


@attrs.frozen(slots=False)
class ReplaceSm(Pdu):
    """Replace the content of a message still waiting in the SMSC."""

    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM
    message_id: str = attrs.field(default="", metadata=cstr(65))
    source_addr_ton: int = attrs.field(default=0, metadata=U8)
    source_addr_npi: int = attrs.field(default=0, metadata=U8)
    source_addr: str = attrs.field(default="", metadata=cstr(21))
    schedule_delivery_time: str = attrs.field(default="", metadata=cstr(17))
    validity_period: str = attrs.field(default="", metadata=cstr(17))
    registered_delivery: int = attrs.field(default=0, metadata=U8)
    sm_default_msg_id: int = attrs.field(default=0, metadata=U8)
    short_message: bytes = attrs.field(default=b"", metadata=SHORT_MESSAGE)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)

    def response(self, *, command_status: int = 0) -> ReplaceSmResp:
        """The answer to this replacement, with the same sequence_number."""
        return ReplaceSmResp(self.sequence_number, command_status)
