"""submit_multi: one message to several SMEs or distribution lists (SMPP 3.4 4.5).

A campaign can reach up to 254 cards with one PDU; the response lists the
destinations the SMSC refused, each with its own error status.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from bipgw.codec.smpp._base import EXTRAS, KEY, ORDER, SHORT_MESSAGE, TLV, U8, Pdu, cstr
from bipgw.codec.smpp._constants import CommandId
from bipgw.codec.smpp._tlv import Tlv

#: The most destinations one submit_multi may carry.
MAX_DESTINATIONS: Final = 254


@attrs.frozen
class SmeAddress:
    """A destination SME (dest_flag 1): TON, NPI and an address of up to 20 characters."""

    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str


@attrs.frozen
class DistributionList:
    """A destination distribution list held by the SMSC (dest_flag 2), by name."""

    dl_name: str


@attrs.frozen
class UnsuccessfulSme:
    """A destination the SMSC refused, and why (an L{CommandStatus} value)."""

    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    error_status_code: int


@attrs.frozen(slots=False)
class SubmitMultiResp(Pdu):
    """Answer to L{SubmitMulti}: the message id and the refused destinations."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI_RESP
    message_id: str = attrs.field(default="", metadata=cstr(65))
    unsuccess_smes: tuple[UnsuccessfulSme, ...] = attrs.field(
        default=(), metadata={KEY: ("unsuccess", 255)}
    )
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class SubmitMulti(Pdu):
    """One message for up to 254 destinations (SME addresses or distribution lists)."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI
    service_type: str = attrs.field(default="", metadata=cstr(6))
    source_addr_ton: int = attrs.field(default=0, metadata=U8)
    source_addr_npi: int = attrs.field(default=0, metadata=U8)
    source_addr: str = attrs.field(default="", metadata=cstr(21))
    destinations: tuple[SmeAddress | DistributionList, ...] = attrs.field(
        default=(), metadata={KEY: ("dests", MAX_DESTINATIONS)}
    )
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
    user_message_reference: int | None = attrs.field(default=None, metadata=TLV)
    source_port: int | None = attrs.field(default=None, metadata=TLV)
    destination_port: int | None = attrs.field(default=None, metadata=TLV)
    sar_msg_ref_num: int | None = attrs.field(default=None, metadata=TLV)
    sar_total_segments: int | None = attrs.field(default=None, metadata=TLV)
    sar_segment_seqnum: int | None = attrs.field(default=None, metadata=TLV)
    payload_type: int | None = attrs.field(default=None, metadata=TLV)
    message_payload: bytes | None = attrs.field(default=None, metadata=TLV)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)

    def response(
        self,
        message_id: str = "",
        *,
        command_status: int = 0,
        unsuccess_smes: tuple[UnsuccessfulSme, ...] = (),
    ) -> SubmitMultiResp:
        """The answer to this submission, with the same sequence_number."""
        return SubmitMultiResp(self.sequence_number, command_status, message_id, unsuccess_smes)
