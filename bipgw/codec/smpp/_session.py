"""Session-management PDUs: binds, outbind, unbind, enquire_link, generic_nack, alerts.

These open, keep alive and close an SMPP session (SMPP 3.4 sections 4.1,
4.2, 4.3, 4.11, 4.12).  Each request has a C{response()} method that builds
its answer with the same sequence_number, so a session cannot pair a
response with the wrong request by hand.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from bipgw.codec.smpp._base import EXTRAS, ORDER, TLV, U8, Pdu, cstr
from bipgw.codec.smpp._constants import SMPP_VERSION_34, CommandId
from bipgw.codec.smpp._tlv import Tlv


@attrs.frozen(slots=False)
class GenericNack(Pdu):
    """The answer to a PDU whose header could not be used (no body).

    C{command_status} says why: C{ESME_RINVCMDLEN}, C{ESME_RINVCMDID}, or
    C{ESME_RTHROTTLED} from some SMSCs.
    """

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


@attrs.frozen(slots=False)
class _Bind(Pdu):
    """The body every bind request shares (SMPP 3.4 section 4.1.1).

    The password is left out of the repr, so logging a bind never leaks it.
    """

    system_id: str = attrs.field(default="", metadata=cstr(16))
    password: str = attrs.field(default="", repr=False, metadata=cstr(9))
    system_type: str = attrs.field(default="", metadata=cstr(13))
    interface_version: int = attrs.field(default=SMPP_VERSION_34, metadata=U8)
    addr_ton: int = attrs.field(default=0, metadata=U8)
    addr_npi: int = attrs.field(default=0, metadata=U8)
    address_range: str = attrs.field(default="", metadata=cstr(41))
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class _BindResp(Pdu):
    """The body every bind response shares: the SMSC's identity and version."""

    system_id: str = attrs.field(default="", metadata=cstr(16))
    sc_interface_version: int | None = attrs.field(default=None, metadata=TLV)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class BindTransmitterResp(_BindResp):
    """Answer to L{BindTransmitter}."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP


@attrs.frozen(slots=False)
class BindReceiverResp(_BindResp):
    """Answer to L{BindReceiver}."""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP


@attrs.frozen(slots=False)
class BindTransceiverResp(_BindResp):
    """Answer to L{BindTransceiver}."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP


@attrs.frozen(slots=False)
class BindTransmitter(_Bind):
    """Bind to submit messages only (the gateway's push path)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER

    def response(
        self,
        system_id: str = "",
        *,
        command_status: int = 0,
        sc_interface_version: int | None = None,
    ) -> BindTransmitterResp:
        """The answer to this bind, with the same sequence_number."""
        return BindTransmitterResp(
            self.sequence_number,
            command_status,
            system_id,
            sc_interface_version=sc_interface_version,
        )


@attrs.frozen(slots=False)
class BindReceiver(_Bind):
    """Bind to receive messages only (PoRs and receipts)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER

    def response(
        self,
        system_id: str = "",
        *,
        command_status: int = 0,
        sc_interface_version: int | None = None,
    ) -> BindReceiverResp:
        """The answer to this bind, with the same sequence_number."""
        return BindReceiverResp(
            self.sequence_number,
            command_status,
            system_id,
            sc_interface_version=sc_interface_version,
        )


@attrs.frozen(slots=False)
class BindTransceiver(_Bind):
    """Bind to submit and receive over one connection."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER

    def response(
        self,
        system_id: str = "",
        *,
        command_status: int = 0,
        sc_interface_version: int | None = None,
    ) -> BindTransceiverResp:
        """The answer to this bind, with the same sequence_number."""
        return BindTransceiverResp(
            self.sequence_number,
            command_status,
            system_id,
            sc_interface_version=sc_interface_version,
        )


@attrs.frozen(slots=False)
class Outbind(Pdu):
    """An SMSC asking the ESME to bind as receiver (no response PDU)."""

    command_id: ClassVar[CommandId] = CommandId.OUTBIND
    system_id: str = attrs.field(default="", metadata=cstr(16))
    password: str = attrs.field(default="", repr=False, metadata=cstr(9))
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)


@attrs.frozen(slots=False)
class UnbindResp(Pdu):
    """Answer to L{Unbind}; after it the TCP connection is closed."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@attrs.frozen(slots=False)
class Unbind(Pdu):
    """End the session (no body)."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND

    def response(self, *, command_status: int = 0) -> UnbindResp:
        """The answer to this unbind, with the same sequence_number."""
        return UnbindResp(self.sequence_number, command_status)


@attrs.frozen(slots=False)
class EnquireLinkResp(Pdu):
    """Answer to L{EnquireLink}."""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@attrs.frozen(slots=False)
class EnquireLink(Pdu):
    """Keep-alive probe either side sends on an idle link (no body)."""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK

    def response(self, *, command_status: int = 0) -> EnquireLinkResp:
        """The answer to this probe, with the same sequence_number."""
        return EnquireLinkResp(self.sequence_number, command_status)


@attrs.frozen(slots=False)
class AlertNotification(Pdu):
    """The SMSC telling an ESME that a mobile became reachable (no response PDU).

    Addresses here are up to 64 characters, unlike submit_sm's 20.
    """

    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = attrs.field(default=0, metadata=U8)
    source_addr_npi: int = attrs.field(default=0, metadata=U8)
    source_addr: str = attrs.field(default="", metadata=cstr(65))
    esme_addr_ton: int = attrs.field(default=0, metadata=U8)
    esme_addr_npi: int = attrs.field(default=0, metadata=U8)
    esme_addr: str = attrs.field(default="", metadata=cstr(65))
    ms_availability_status: int | None = attrs.field(default=None, metadata=TLV)
    extra_tlvs: tuple[Tlv, ...] = attrs.field(default=(), metadata=EXTRAS)
    tlv_order: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False, metadata=ORDER)
