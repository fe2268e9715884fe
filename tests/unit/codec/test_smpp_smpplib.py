"""Cross-implementation tests: our SMPP codec against python-smpplib.

smpplib (an independent SMPP 3.4 implementation, installed for tests) parses
what we encode and we decode what it generates, for every PDU type both
support, with Hypothesis-generated field values; our re-encoding of its
PDUs is byte-identical.  submit_multi, cancel_sm, replace_sm and outbind
have no smpplib counterpart and are covered by the vectors and properties.

smpplib quirks the strategies respect (they are smpplib's, not SMPP's):
  - it truncates C-octet strings at its own limits, which are 21 for the
    data_sm and alert_notification addresses where SMPP 3.4 allows 65;
  - it always sends interface_version 0x34 in binds;
  - it omits empty optional parameters and encodes text ones as UTF-8;
  - it types data_sm_resp's delivery_failure_reason and network_error_code
    as text, so those two cannot be compared;
  - query_sm needs a message_id, and submit_sm refuses short_message and
    message_payload together.
"""

from __future__ import annotations

from typing import Any

import attrs
import smpplib.command
import smpplib.command_codes
import smpplib.consts
import smpplib.smpp
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MessageState,
    NetworkErrorCode,
    Pdu,
    QuerySm,
    QuerySmResp,
    SubmitSm,
    SubmitSmResp,
    TlvTag,
    Unbind,
    UnbindResp,
    decode,
    encode,
)
from bipgw.codec.smpp._base import KEY
from bipgw.codec.smpp._tlv import SPECS_BY_NAME
from tests import vectors
from tests.unit.codec.test_smpp_strategies import pdus, text, tlv_value, u8, u32

#: The PDU types smpplib implements (smpplib.command.factory).
SHARED: tuple[type[Pdu], ...] = (
    GenericNack,
    BindTransmitter,
    BindTransmitterResp,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    SubmitSm,
    SubmitSmResp,
    DeliverSm,
    DeliverSmResp,
    DataSm,
    DataSmResp,
    QuerySm,
    QuerySmResp,
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    AlertNotification,
)

#: Fields smpplib cannot carry faithfully (see the module docstring).
_SKIP: dict[type[Pdu], set[str]] = {DataSmResp: {"delivery_failure_reason", "network_error_code"}}

#: smpplib's own C-octet string limits where they are below SMPP 3.4's.
_SMPPLIB_LIMITS = {
    (DataSm, "source_addr"): 21,
    (DataSm, "destination_addr"): 21,
    (AlertNotification, "source_addr"): 21,
    (AlertNotification, "esme_addr"): 21,
}


def _ascii(limit: int) -> st.SearchStrategy[str]:
    """Non-empty printable ASCII shorter than C{limit} (smpplib sends TLV text as UTF-8)."""
    return st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=limit - 1
    )


def _parse(raw: bytes) -> Any:
    """smpplib's reading of C{raw} (sequence=0 only stops it allocating one)."""
    return smpplib.smpp.parse_pdu(raw, sequence=0)


def _theirs(command: Any, name: str) -> object:
    """A field as smpplib parsed it; it leaves a trailing empty short_message as None."""
    value = getattr(command, name)
    if name == "short_message" and value is None:
        return b""
    return value


def _wire(value: object) -> object:
    """Our field value as smpplib holds it after parsing."""
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, NetworkErrorCode):
        return bytes((value.network_type,)) + value.error_code.to_bytes(2, "big")
    return value


def _comparable(cls: type[Pdu]) -> list[attrs.Attribute[Any]]:
    skip = _SKIP.get(cls, set())
    return [
        f
        for f in attrs.fields(cls)[2:]
        if f.metadata[KEY][0] in ("c", "u8", "sm", "tlv") and f.name not in skip
    ]


def _for_smpplib(pdu: Pdu) -> Pdu:
    """Drop what smpplib cannot parse: pass-through TLVs and its mistyped fields."""
    names = attrs.fields_dict(type(pdu))
    changes: dict[str, Any] = {n: None for n in _SKIP.get(type(pdu), ())}
    if "extra_tlvs" in names:
        changes["extra_tlvs"] = ()
    return attrs.evolve(pdu, **changes)


@st.composite
def _smpplib_fields(draw: st.DrawFn, cls: type[Pdu]) -> dict[str, object]:
    """Field values smpplib can generate faithfully, keyed by SMPP name."""
    fields: dict[str, object] = {}
    skip = _SKIP.get(cls, set())
    for f in _comparable(cls):
        kind, size = f.metadata[KEY]
        if kind == "c":
            limit = _SMPPLIB_LIMITS.get((cls, f.name), size)
            fields[f.name] = draw(text(limit))
        elif kind == "u8":
            fields[f.name] = draw(u8)
        elif kind == "sm":
            fields[f.name] = draw(st.binary(max_size=size))
        elif f.name not in skip:
            spec = SPECS_BY_NAME[f.name]
            value: object
            if spec.kind == "cstr":
                value = draw(st.none() | _ascii(spec.max_len))
            elif spec.kind == "octets":
                value = draw(st.none() | st.binary(min_size=1, max_size=300))
            else:
                value = draw(st.none() | tlv_value(spec))
            if value is not None:
                fields[f.name] = value
    if "interface_version" in fields:
        fields["interface_version"] = 0x34
    if "message_payload" in fields and fields.get("short_message"):
        del fields["message_payload"]
    if cls is QuerySm and not fields["message_id"]:
        fields["message_id"] = "1"
    return fields


def _smpplib_make(cls: type[Pdu], seq: int, status: int, fields: dict[str, object]) -> Any:
    """An smpplib command of the same type with the same values."""
    kwargs = {k: _wire(v) if isinstance(v, NetworkErrorCode) else v for k, v in fields.items()}
    command = smpplib.smpp.make_pdu(
        cls.command_id.name.lower(), sequence=seq, status=status, **kwargs
    )
    command.sequence = seq
    return command


class OursToSmpplibTests(SynchronousTestCase):
    """smpplib reads what we encode, field for field."""

    def _check(self, pdu: Pdu) -> None:
        pdu = _for_smpplib(pdu)
        theirs = _parse(encode(pdu))
        self.assertEqual(theirs.command, pdu.command_name)
        self.assertEqual(
            (theirs.sequence, theirs.status), (pdu.sequence_number, pdu.command_status)
        )
        for f in _comparable(type(pdu)):
            self.assertEqual(_theirs(theirs, f.name), _wire(getattr(pdu, f.name)), f.name)

    @settings(max_examples=40)
    @given(st.data())
    def test_everySharedType(self, data: st.DataObject) -> None:
        """For one generated PDU of each of the 20 shared types, smpplib sees the same values.

        Each example covers every shared type: 40 examples are 800 PDUs.
        """
        for cls in SHARED:
            self._check(data.draw(pdus[cls], label=cls.__name__))

    def test_vectors(self) -> None:
        """smpplib reads every public vector as we do."""
        for v in vectors.section("smpp34"):
            ours = decode(bytes.fromhex(v["pdu"]))
            theirs = _parse(bytes.fromhex(v["pdu"]))
            self.assertEqual(theirs.command, ours.command_name)
            for f in _comparable(type(ours)):
                self.assertEqual(_theirs(theirs, f.name), _wire(getattr(ours, f.name)), f.name)
        receipt = _parse(bytes.fromhex(vectors.section("smpp34")[-1]["pdu"]))
        self.assertEqual(receipt.source_network_type, 1)
        self.assertEqual(receipt.more_messages_to_send, 1)


class SmpplibToOursTests(SynchronousTestCase):
    """We decode what smpplib generates, to the same values and the same octets."""

    @settings(max_examples=40)
    @given(st.data())
    def test_everySharedType(self, data: st.DataObject) -> None:
        """For one generated value set of each shared type, our decoding matches smpplib's input.

        Each example covers every shared type: 40 examples are 800 PDUs.
        """
        for cls in SHARED:
            seq = data.draw(st.integers(min_value=1, max_value=0x7FFFFFFF), label="seq")
            status = data.draw(u32 if cls.command_id & 0x80000000 else st.just(0), label="status")
            fields = data.draw(_smpplib_fields(cls), label=cls.__name__)
            raw = _smpplib_make(cls, seq, status, fields).generate()
            ours = decode(raw)
            self.assertEqual(ours, cls(seq, status, **fields))
            self.assertEqual(encode(ours), raw)

    def test_receiptFromSmpplib(self) -> None:
        """An smpplib-built delivery receipt decodes with its typed TLVs and parses."""
        text = (
            b"id:1 sub:001 dlvrd:001 submit date:2401021530 done date:2401021531 "
            b"stat:DELIVRD err:000 text:"
        )
        raw = _smpplib_make(
            DeliverSm,
            3,
            0,
            {
                "esm_class": 0x04,
                "short_message": text,
                "receipted_message_id": "1",
                "message_state": MessageState.DELIVERED,
                "network_error_code": NetworkErrorCode(3, 0),
            },
        ).generate()
        pdu = decode(raw)
        assert isinstance(pdu, DeliverSm)
        self.assertTrue(pdu.is_delivery_receipt)
        self.assertEqual(pdu.delivery_receipt().message_state, pdu.message_state)
        self.assertEqual(pdu.network_error_code, NetworkErrorCode(3, 0))


class NumberingTests(SynchronousTestCase):
    """Our tables agree with smpplib's, name for name."""

    def test_commandIds(self) -> None:
        """Every smpplib command code has the same value here."""
        for name, code in smpplib.command_codes.commands.items():
            self.assertEqual(CommandId[name.upper()], code, name)
        self.assertEqual(len(CommandId), len(smpplib.command_codes.commands))

    def test_statuses(self) -> None:
        """Every smpplib SMPP_ESME_* status exists here with the same value, and vice versa."""
        theirs = {
            name[len("SMPP_") :]: value
            for name, value in vars(smpplib.consts).items()
            if name.startswith("SMPP_ESME_")
        }
        self.assertEqual(theirs, {s.name: s.value for s in CommandStatus})

    def test_tlvTags(self) -> None:
        """Every smpplib optional parameter has the same tag here."""
        for name, tag in smpplib.consts.OPTIONAL_PARAMS.items():
            self.assertEqual(TlvTag[name.upper()], tag, name)

    def test_messageStates(self) -> None:
        """MessageState matches smpplib's SMPP_MESSAGE_STATE_* values."""
        for state in MessageState:
            self.assertEqual(getattr(smpplib.consts, f"SMPP_MESSAGE_STATE_{state.name}"), state)
