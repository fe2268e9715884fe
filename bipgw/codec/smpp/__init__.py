"""SMPP 3.4 PDUs: frozen values, encode/decode, a stream decoder, receipts.

The gateway pushes OTA SMS to an SMSC with C{submit_sm} and reads PoRs and
delivery receipts from C{deliver_sm}; the simulated SMSC speaks the other
side.  Both use this sans-IO codec::

    pdu = SubmitSm(seqs.allocate(), destination_addr="4412345", esm_class=0x40,
                   protocol_id=0x7F, data_coding=0xF6, short_message=packet)
    transport.write(encode(pdu))
    ...
    for pdu in decoder.feed(data):
        ...

Everything SMPP 3.4 defines is here, including submit_multi, cancel_sm,
replace_sm and alert_notification.  Unknown optional parameters are kept,
in order, so a decoded PDU re-encodes byte for byte (the one exception: a
response received without its body, which SMPP 3.4 allows on errors, is
re-encoded with the empty body).
"""

from bipgw.codec.smpp._base import Pdu
from bipgw.codec.smpp._codec import (
    DEFAULT_MAX_PDU,
    HEADER_SIZE,
    PDU_TYPES,
    PduDecoder,
    decode,
    encode,
    response_for_error,
    with_sequence_number,
)
from bipgw.codec.smpp._constants import (
    RESPONSE_BIT,
    SMPP_VERSION_34,
    CommandId,
    MessageState,
    TlvTag,
)
from bipgw.codec.smpp._errors import SmppError
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
from bipgw.codec.smpp._multi import (
    MAX_DESTINATIONS,
    DistributionList,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    UnsuccessfulSme,
)
from bipgw.codec.smpp._receipt import DeliveryReceipt
from bipgw.codec.smpp._sequence import MAX_SEQUENCE, MIN_SEQUENCE, SequenceNumbers
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
from bipgw.codec.smpp._status import CommandStatus, describe_status
from bipgw.codec.smpp._tlv import NetworkErrorCode, Tlv

__all__ = [
    "DEFAULT_MAX_PDU",
    "HEADER_SIZE",
    "MAX_DESTINATIONS",
    "MAX_SEQUENCE",
    "MIN_SEQUENCE",
    "PDU_TYPES",
    "RESPONSE_BIT",
    "SMPP_VERSION_34",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "CommandId",
    "CommandStatus",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DeliveryReceipt",
    "DistributionList",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "MessageState",
    "NetworkErrorCode",
    "Outbind",
    "Pdu",
    "PduDecoder",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SequenceNumbers",
    "SmeAddress",
    "SmppError",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Tlv",
    "TlvTag",
    "Unbind",
    "UnbindResp",
    "UnsuccessfulSme",
    "decode",
    "describe_status",
    "encode",
    "response_for_error",
    "with_sequence_number",
]
