"""Tests for the SMPP codec's refusals: every malformed PDU and unsendable value is named."""

from __future__ import annotations

import pickle
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import (
    PDU_TYPES,
    BindTransmitter,
    CommandId,
    CommandStatus,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    GenericNack,
    NetworkErrorCode,
    ReplaceSm,
    SmeAddress,
    SmppError,
    SubmitMulti,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    TlvTag,
    decode,
    encode,
    response_for_error,
)
from bipgw.codec.smpp._codec import _LAYOUTS

_S = CommandStatus


def _pdu(cid: int, body: bytes, seq: int = 5, status: int = 0) -> bytes:
    """A PDU built by hand, so tests do not depend on encode()."""
    header = (16 + len(body)).to_bytes(4, "big") + cid.to_bytes(4, "big")
    return header + status.to_bytes(4, "big") + seq.to_bytes(4, "big") + body


#: submit_sm mandatory part: empty service_type, 1/1 "12" -> 1/1 "23", no message.
_SUBMIT = b"\x00\x01\x0112\x00\x01\x0123\x00\x40\x7f\x00\x00\x00\x00\x00\xf6\x00\x00"


class DecodeErrorTests(SynchronousTestCase):
    """Malformed PDUs are refused with the field, offset and status to answer with."""

    def _error(self, raw: bytes) -> SmppError:
        with self.assertRaises(SmppError) as ctx:
            decode(raw)
        return ctx.exception

    def test_tooShort(self) -> None:
        """Fewer than 16 octets: RINVCMDLEN, answered with generic_nack sequence 0."""
        e = self._error(b"\x00\x00\x00\x10\x00")
        self.assertEqual((e.field, e.command_status), ("command_length", _S.ESME_RINVCMDLEN))
        self.assertEqual(response_for_error(e), GenericNack(0, _S.ESME_RINVCMDLEN))

    def test_lengthMismatch(self) -> None:
        """command_length not matching the data: RINVCMDLEN with the sequence read."""
        raw = _pdu(CommandId.ENQUIRE_LINK, b"", seq=42)
        e = self._error(raw + b"\x00")
        self.assertEqual((e.command_status, e.sequence_number), (_S.ESME_RINVCMDLEN, 42))
        self.assertTrue(e.needs_generic_nack)
        self.assertEqual(response_for_error(e), GenericNack(42, _S.ESME_RINVCMDLEN))

    def test_unknownCommandId(self) -> None:
        """An unknown command_id: RINVCMDID, answered with generic_nack."""
        e = self._error(_pdu(0x00000099, b"", seq=7))
        self.assertEqual((e.field, e.offset), ("command_id", 4))
        self.assertEqual((e.command_status, e.command_id), (_S.ESME_RINVCMDID, 0x99))
        self.assertIn("0x00000099", str(e))
        self.assertEqual(response_for_error(e), GenericNack(7, _S.ESME_RINVCMDID))

    def test_bodyOnHeaderOnlyPdu(self) -> None:
        """enquire_link with a body is a length error."""
        e = self._error(_pdu(CommandId.ENQUIRE_LINK, b"\x00"))
        self.assertEqual(e.command_status, _S.ESME_RINVCMDLEN)
        self.assertIn("enquire_link", str(e))

    def test_addressTooLong(self) -> None:
        """A source_addr without NUL in 21 octets names the field; submit_sm_resp answers it."""
        body = b"\x00\x01\x01" + b"1" * 30 + b"\x00" + _SUBMIT[8:]
        e = self._error(_pdu(CommandId.SUBMIT_SM, body, seq=9))
        self.assertEqual((e.field, e.offset), ("submit_sm.source_addr", 19))
        self.assertEqual(e.command_status, _S.ESME_RINVSRCADR)
        self.assertIn("longer than 20", str(e))
        self.assertEqual(response_for_error(e), SubmitSmResp(9, _S.ESME_RINVSRCADR))

    def test_truncatedBody(self) -> None:
        """A body that stops before a field: RINVCMDLEN naming the missing field."""
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT[:8], seq=4))
        self.assertEqual((e.field, e.offset), ("submit_sm.destination_addr", 24))
        self.assertEqual(e.command_status, _S.ESME_RINVCMDLEN)
        self.assertIn("ends before", e.reason)
        # A command_length too small for the body is a length error: generic_nack.
        self.assertEqual(response_for_error(e), GenericNack(4, _S.ESME_RINVCMDLEN))

    def test_smLengthOver254(self) -> None:
        """sm_length 255 is refused, naming short_message (RINVMSGLEN)."""
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT[:-1] + b"\xff" + bytes(255)))
        self.assertEqual(e.field, "submit_sm.short_message")
        self.assertEqual(e.command_status, _S.ESME_RINVMSGLEN)
        self.assertIn("254", e.reason)

    def test_smLengthBeyondBody(self) -> None:
        """sm_length larger than what follows is refused (RINVMSGLEN)."""
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT[:-1] + b"\x05abc"))
        self.assertEqual(
            (e.field, e.command_status), ("submit_sm.short_message", _S.ESME_RINVMSGLEN)
        )

    def test_truncatedTlv(self) -> None:
        """A TLV announcing more than remains: RINVOPTPARSTREAM naming the tag."""
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT + b"\x04\x24\x00\x10abc"))
        self.assertEqual(e.command_status, _S.ESME_RINVOPTPARSTREAM)
        self.assertIn("0x0424", str(e))
        self.assertEqual(e.offset, 16 + len(_SUBMIT))
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT + b"\x04\x24\x00"))
        self.assertEqual(e.command_status, _S.ESME_RINVOPTPARSTREAM)

    def test_typedTlvBadLength(self) -> None:
        """A typed TLV of the wrong length: RINVPARLEN, the TLV named."""
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT + b"\x02\x0c\x00\x01\x05"))
        self.assertEqual(e.field, "submit_sm.sar_msg_ref_num")
        self.assertEqual(e.command_status, _S.ESME_RINVPARLEN)
        self.assertIn("0x020C", str(e))

    def test_passThroughTlvBadLength(self) -> None:
        """A standard TLV kept untyped is still length-checked."""
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT + b"\x00\x0e\x00\x02\x01\x01"))
        self.assertEqual(e.field, "submit_sm.source_network_type")
        self.assertEqual(e.command_status, _S.ESME_RINVPARLEN)

    def test_textTlvWithoutNul(self) -> None:
        """receipted_message_id must end in its only NUL (RINVOPTPARAMVAL)."""
        e = self._error(_pdu(CommandId.DELIVER_SM, _SUBMIT + b"\x00\x1e\x00\x03abc"))
        self.assertEqual(e.field, "deliver_sm.receipted_message_id")
        self.assertEqual(e.command_status, _S.ESME_RINVOPTPARAMVAL)

    def test_duplicateTypedTlv(self) -> None:
        """The same typed TLV twice is refused rather than one silently winning."""
        tlv = b"\x02\x0a\x00\x02\x00\x01"
        e = self._error(_pdu(CommandId.SUBMIT_SM, _SUBMIT + tlv + tlv))
        self.assertIn("twice", e.reason)
        self.assertEqual(e.field, "submit_sm.source_port")

    def test_submitMultiDestFlag(self) -> None:
        """A dest_flag other than 1 or 2 names the destination (RINVDESTFLAG)."""
        body = b"\x00\x01\x0112\x00" + b"\x01\x03"
        e = self._error(_pdu(CommandId.SUBMIT_MULTI, body))
        self.assertEqual(e.field, "submit_multi.destinations[0].dest_flag")
        self.assertEqual(e.command_status, _S.ESME_RINVDESTFLAG)

    def test_submitMultiNoDestinations(self) -> None:
        """number_of_dests 0 is refused (RINVNUMDESTS)."""
        e = self._error(_pdu(CommandId.SUBMIT_MULTI, b"\x00\x01\x0112\x00\x00"))
        self.assertEqual(e.command_status, _S.ESME_RINVNUMDESTS)

    def test_brokenResponsesAreNotAnswered(self) -> None:
        """A malformed response, generic_nack, outbind or alert gets no answer (no nack loops)."""
        for cid, body in [
            (CommandId.SUBMIT_SM_RESP, b"abc"),
            (CommandId.GENERIC_NACK, b"\x00"),
            (CommandId.OUTBIND, b"abc"),
            (CommandId.ALERT_NOTIFICATION, b"\x00"),
        ]:
            with self.assertRaises(SmppError) as ctx:
                decode(_pdu(cid, body))
            self.assertIsNone(response_for_error(ctx.exception), cid)

    def test_everyStringLimit(self) -> None:
        """Every C-octet string field takes its limit on both sides, and one more is refused."""
        checked = 0
        for cls in PDU_TYPES:
            layout = _LAYOUTS[cls]
            base: dict[str, Any] = {}
            if cls is SubmitMulti:
                base["destinations"] = (DistributionList(""),)
            for f in layout.fields:
                if f.kind != "c":
                    continue
                longest: dict[str, Any] = {f.name: "x" * (f.size - 1)}
                pdu = cls(1, **base, **longest)
                raw = encode(pdu)
                self.assertEqual(decode(raw), pdu)
                at = raw.index(b"x")
                longer = raw[:at] + b"x" + raw[at:]
                longer = len(longer).to_bytes(4, "big") + longer[4:]
                with self.assertRaises(SmppError) as ctx:
                    decode(longer)
                self.assertEqual(ctx.exception.field, f"{layout.name}.{f.name}")
                self.assertEqual(ctx.exception.offset, at)
                with self.assertRaises(SmppError) as ctx:
                    too_long: dict[str, Any] = {f.name: "x" * f.size}
                    encode(attrs.evolve(pdu, **too_long))
                self.assertEqual(ctx.exception.field, f"{layout.name}.{f.name}")
                checked += 1
        self.assertEqual(checked, 52)

    def test_everyShortMessageLimit(self) -> None:
        """Every short_message takes 254 octets; 255 is refused both ways."""
        for cls in (SubmitSm, DeliverSm, ReplaceSm, SubmitMulti):
            base: dict[str, Any] = {}
            if cls is SubmitMulti:
                base["destinations"] = (DistributionList(""),)
            pdu = cls(1, **base, short_message=b"\xaa" * 254)
            raw = encode(pdu)
            self.assertEqual(decode(raw), pdu)
            at = raw.index(b"\xfe\xaa")
            longer = raw[:at] + b"\xff\xaa" + raw[at + 1 :]
            longer = len(longer).to_bytes(4, "big") + longer[4:]
            with self.assertRaises(SmppError) as ctx:
                decode(longer)
            self.assertEqual(ctx.exception.field, f"{pdu.command_name}.short_message")
            self.assertRaises(SmppError, encode, attrs.evolve(pdu, short_message=bytes(255)))

    def test_headerOnlyErrorResponse(self) -> None:
        """An error submit_sm_resp without body (as SMPP 3.4 allows) decodes."""
        pdu = decode(_pdu(CommandId.SUBMIT_SM_RESP, b"", seq=3, status=_S.ESME_RTHROTTLED))
        self.assertEqual(pdu, SubmitSmResp(3, _S.ESME_RTHROTTLED))
        self.assertEqual(decode(_pdu(CommandId.DELIVER_SM_RESP, b"")), DeliverSmResp(5))

    def test_errorPickles(self) -> None:
        """SmppError keeps its answer details across pickling."""
        e = SmppError("x", field="f", offset=3, command_status=4, command_id=5, sequence_number=6)
        back = pickle.loads(pickle.dumps(e))
        self.assertEqual(
            (
                back.reason,
                back.field,
                back.offset,
                back.command_status,
                back.command_id,
                back.sequence_number,
            ),
            ("x", "f", 3, 4, 5, 6),
        )
        self.assertEqual(str(back), "SMPP: field 'f' at offset 3: x")


# Values of the wrong type, typed Any so the checks below reach encode().
_NOT_TEXT: Any = 12
_NOT_BYTES: Any = "text"
_NOT_DESTINATIONS: Any = ("x",)


class EncodeErrorTests(SynchronousTestCase):
    """Values that cannot go on the wire are refused, naming the field, never the value."""

    def _error(self, pdu: Any) -> SmppError:
        with self.assertRaises(SmppError) as ctx:
            encode(pdu)
        return ctx.exception

    def test_shortMessageOver254(self) -> None:
        """255 octets of short_message are refused; 254 are fine."""
        e = self._error(SubmitSm(1, short_message=bytes(255)))
        self.assertEqual(e.field, "submit_sm.short_message")
        self.assertEqual(len(encode(SubmitSm(1, short_message=bytes(254)))), 16 + 17 + 254)

    def test_stringLimits(self) -> None:
        """A C-octet string one character over its limit is refused, naming it."""
        self.assertEqual(
            self._error(BindTransmitter(1, system_id="x" * 16)).field, "bind_transmitter.system_id"
        )
        self.assertEqual(
            self._error(SubmitSm(1, destination_addr="1" * 21)).field, "submit_sm.destination_addr"
        )
        self.assertEqual(self._error(DataSm(1, source_addr="1" * 65)).field, "data_sm.source_addr")
        encode(DataSm(1, source_addr="1" * 64))
        encode(BindTransmitter(1, system_id="x" * 15))

    def test_passwordNeverInMessage(self) -> None:
        """A refused password is not echoed in the error."""
        e = self._error(BindTransmitter(1, password="topsecret1"))
        self.assertEqual(e.field, "bind_transmitter.password")
        self.assertNotIn("topsecret1", str(e))

    def test_badText(self) -> None:
        """Non-Latin-1 text, an embedded NUL or a non-string is refused."""
        self.assertIn("Latin-1", self._error(SubmitSm(1, source_addr="\u20ac")).reason)
        self.assertIn("NUL", self._error(SubmitSm(1, source_addr="a\0b")).reason)
        self.assertEqual(
            self._error(SubmitSm(1, source_addr=_NOT_TEXT)).field, "submit_sm.source_addr"
        )

    def test_badIntegers(self) -> None:
        """Octets outside 0..255 and header fields outside 32 bits are refused."""
        self.assertEqual(self._error(SubmitSm(1, esm_class=256)).field, "submit_sm.esm_class")
        self.assertEqual(self._error(SubmitSm(1, esm_class=-1)).field, "submit_sm.esm_class")
        self.assertEqual(self._error(EnquireLink(-1)).field, "enquire_link.sequence_number")
        self.assertEqual(self._error(EnquireLink(1, 1 << 32)).field, "enquire_link.command_status")

    def test_badTypedTlv(self) -> None:
        """Typed TLV values of the wrong type or range are refused, naming the TLV."""
        self.assertEqual(
            self._error(SubmitSm(1, sar_total_segments=256)).field, "submit_sm.sar_total_segments"
        )
        self.assertEqual(
            self._error(SubmitSm(1, message_payload=_NOT_BYTES)).field, "submit_sm.message_payload"
        )
        self.assertEqual(
            self._error(SubmitSm(1, message_payload=bytes(65536))).field,
            "submit_sm.message_payload",
        )
        self.assertEqual(
            self._error(DeliverSm(1, receipted_message_id="x" * 65)).field,
            "deliver_sm.receipted_message_id",
        )
        self.assertEqual(
            self._error(DeliverSm(1, network_error_code=NetworkErrorCode(3, 1 << 16))).field,
            "deliver_sm.network_error_code",
        )

    def test_badExtraTlvs(self) -> None:
        """An extra TLV shadowing a typed one, or of illegal length, is refused."""
        e = self._error(SubmitSm(1, extra_tlvs=(Tlv(TlvTag.MESSAGE_PAYLOAD, b"x"),)))
        self.assertEqual(e.field, "submit_sm.extra_tlvs")
        e = self._error(SubmitSm(1, extra_tlvs=(Tlv(TlvTag.SOURCE_NETWORK_TYPE, b"xx"),)))
        self.assertEqual(e.field, "submit_sm.source_network_type")
        self.assertEqual(
            self._error(SubmitSm(1, extra_tlvs=(Tlv(0x10000, b""),))).field, "submit_sm.extra_tlvs"
        )

    def test_submitMultiLimits(self) -> None:
        """submit_multi needs 1..254 destinations of the two known kinds."""
        self.assertEqual(self._error(SubmitMulti(1)).field, "submit_multi.destinations")
        many = tuple(DistributionList("l") for _ in range(255))
        self.assertEqual(
            self._error(SubmitMulti(1, destinations=many)).field, "submit_multi.destinations"
        )
        self.assertEqual(
            self._error(SubmitMulti(1, destinations=_NOT_DESTINATIONS)).field,
            "submit_multi.destinations[0]",
        )
        ok = SubmitMulti(1, destinations=(SmeAddress(1, 1, "447700"), DistributionList("fleet")))
        self.assertEqual(decode(encode(ok)), ok)

    def test_notAPdu(self) -> None:
        """Only the codec's PDU types encode."""
        self.assertEqual(self._error(object()).field, "pdu")
