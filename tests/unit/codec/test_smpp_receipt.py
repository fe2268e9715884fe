"""Tests for SMPP 3.4 Appendix B delivery receipts."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import DeliveryReceipt, MessageState, SmppError

_APPENDIX_B = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2401021530 done date:2401021531 "
    "stat:DELIVRD err:000 text:Hello"
)


class ParseTests(SynchronousTestCase):
    """Receipts as different SMSCs write them."""

    def test_appendixB(self) -> None:
        """The canonical form reads into every field."""
        r = DeliveryReceipt.parse(_APPENDIX_B)
        self.assertEqual(
            r,
            DeliveryReceipt(
                id="0123456789",
                sub=1,
                dlvrd=1,
                submit_date=datetime(2024, 1, 2, 15, 30),
                done_date=datetime(2024, 1, 2, 15, 31),
                stat="DELIVRD",
                err="000",
                text="Hello",
            ),
        )
        self.assertEqual(r.message_state, MessageState.DELIVERED)

    def test_bytes(self) -> None:
        """Receipt octets (short_message) parse the same as text; other octets survive."""
        r = DeliveryReceipt.parse(_APPENDIX_B.encode() + b"\x04\x1f")
        self.assertEqual(r.text, "Hello\x04\x1f")

    def test_latin1BlanksStayInValues(self) -> None:
        """Only ASCII blanks separate fields: octets 0x85 and 0xA0 belong to the value."""
        r = DeliveryReceipt.parse(b"id:a\xa0b\x85c stat:DELIVRD")
        self.assertEqual(r.id, "a\xa0b\x85c")

    def test_caseAndOrder(self) -> None:
        """Keys in any case and order, underscores in the date keys, lower-case states."""
        r = DeliveryReceipt.parse(
            "STAT:undeliv Err:0B1 Submit_Date:2401021530 ID:ab-12 DONE DATE:240102153107 text:x"
        )
        self.assertEqual((r.id, r.stat, r.err), ("ab-12", "UNDELIV", "0B1"))
        self.assertEqual(r.submit_date, datetime(2024, 1, 2, 15, 30))
        self.assertEqual(r.done_date, datetime(2024, 1, 2, 15, 31, 7))
        self.assertIsNone(r.sub)
        self.assertEqual(r.message_state, MessageState.UNDELIVERABLE)

    def test_smpplibSecondsForm(self) -> None:
        """The 12-digit dates and unknown fields of smpplib's second sample are accepted."""
        r = DeliveryReceipt.parse(
            b"id:795920026 sub:001 dlvrd:001 submit date:200319131913 "
            b"done date:200319131913 stat:DELIVRD err:000 text:"
        )
        self.assertEqual(r.submit_date, datetime(2020, 3, 19, 13, 19, 13))
        self.assertEqual(r.text, "")

    def test_textTakesTheRest(self) -> None:
        """Everything after text:, keys included, is message text."""
        r = DeliveryReceipt.parse("id:1 stat:EXPIRED text:stat:DELIVRD id:2")
        self.assertEqual((r.id, r.stat, r.text), ("1", "EXPIRED", "stat:DELIVRD id:2"))

    def test_unknownFieldsSkipped(self) -> None:
        """Vendor fields (and keys glued to other words) are ignored."""
        r = DeliveryReceipt.parse("id:7 mccmnc:23410 stat:ACCEPTD xid:9 err:")
        self.assertEqual((r.id, r.stat, r.err), ("7", "ACCEPTD", ""))

    def test_vendorState(self) -> None:
        """A state word outside SMPP 3.4 is kept; it maps to no MessageState."""
        self.assertIsNone(DeliveryReceipt.parse("id:1 stat:BUFFERD").message_state)


class ParseErrorTests(SynchronousTestCase):
    """Unreadable receipts are refused with the field named."""

    def _error(self, text: str) -> SmppError:
        with self.assertRaises(SmppError) as ctx:
            DeliveryReceipt.parse(text)
        return ctx.exception

    def test_missing(self) -> None:
        """id and stat are required."""
        self.assertEqual(self._error("sub:001 stat:DELIVRD").field, "receipt.id")
        self.assertEqual(self._error("id:1 sub:001").field, "receipt.stat")
        self.assertEqual(self._error("hello world").field, "receipt.id")

    def test_badDate(self) -> None:
        """A date that is not YYMMDDhhmm[ss], or not on the calendar, names the field and offset."""
        e = self._error("id:1 stat:DELIVRD submit date:24010215")
        self.assertEqual((e.field, e.offset), ("receipt.submit_date", 30))
        e = self._error("id:1 stat:DELIVRD done date:2413011530")
        self.assertEqual(e.field, "receipt.done_date")
        self.assertIn("calendar", e.reason)

    def test_badCount(self) -> None:
        """sub and dlvrd are one to three digits."""
        self.assertEqual(self._error("id:1 stat:DELIVRD sub:1000").field, "receipt.sub")
        self.assertEqual(self._error("id:1 stat:DELIVRD dlvrd:x").field, "receipt.dlvrd")

    def test_duplicate(self) -> None:
        """A key given twice is refused rather than guessed."""
        self.assertEqual(self._error("id:1 stat:DELIVRD ID:2").field, "receipt.id")

    def test_badWords(self) -> None:
        """An empty id, a stat with digits, an over-long err are refused."""
        self.assertEqual(self._error("id: stat:DELIVRD").field, "receipt.id")
        self.assertEqual(self._error("id:1 stat:DELIVRD2").field, "receipt.stat")
        self.assertEqual(self._error("id:1 stat:X err:" + "9" * 17).field, "receipt.err")

    def test_tooLong(self) -> None:
        """A receipt beyond 65535 characters is refused before parsing."""
        self.assertEqual(self._error("id:1 stat:X text:" + "a" * 0xFFFF).field, "receipt.text")


class FormatTests(SynchronousTestCase):
    """Receipts written in the Appendix B form."""

    def test_appendixB(self) -> None:
        """All fields give the canonical line."""
        self.assertEqual(DeliveryReceipt.parse(_APPENDIX_B).format(), _APPENDIX_B)

    def test_absentFieldsOmitted(self) -> None:
        """Only the fields present are written; seconds only when non-zero."""
        r = DeliveryReceipt(id="9", stat="REJECTD", done_date=datetime(2030, 5, 6, 7, 8, 9))
        self.assertEqual(r.format(), "id:9 done date:300506070809 stat:REJECTD")
        self.assertEqual(r.to_bytes(), b"id:9 done date:300506070809 stat:REJECTD")

    def test_statFor(self) -> None:
        """Every MessageState has its receipt word, and the words map back."""
        for state in MessageState:
            word = DeliveryReceipt.stat_for(state)
            self.assertEqual(len(word), 7)
            self.assertEqual(DeliveryReceipt(id="1", stat=word).message_state, state)
        self.assertEqual(DeliveryReceipt.stat_for(MessageState.UNDELIVERABLE), "UNDELIV")

    def test_refusals(self) -> None:
        """Values the format cannot carry are refused, naming the field."""
        cases = [
            (DeliveryReceipt(id="a b", stat="DELIVRD"), "receipt.id"),
            (DeliveryReceipt(id="1", stat="DELIV RD"), "receipt.stat"),
            (DeliveryReceipt(id="1", stat="DELIVRD", sub=1000), "receipt.sub"),
            (DeliveryReceipt(id="1", stat="DELIVRD", dlvrd=-1), "receipt.dlvrd"),
            (
                DeliveryReceipt(id="1", stat="X", submit_date=datetime(1999, 1, 1)),
                "receipt.submit_date",
            ),
            (DeliveryReceipt(id="1", stat="X", err="0 0"), "receipt.err"),
        ]
        for receipt, field in cases:
            with self.assertRaises(SmppError) as ctx:
                receipt.format()
            self.assertEqual(ctx.exception.field, field)
        with self.assertRaises(SmppError) as ctx:
            DeliveryReceipt(id="1", stat="X", text="\u20ac").to_bytes()
        self.assertEqual(ctx.exception.field, "receipt.text")


_word = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1, max_size=64)
_date = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(microsecond=0))
_receipts = st.builds(
    DeliveryReceipt,
    id=_word,
    sub=st.none() | st.integers(min_value=0, max_value=999),
    dlvrd=st.none() | st.integers(min_value=0, max_value=999),
    submit_date=st.none() | _date,
    done_date=st.none() | _date,
    stat=st.sampled_from(["DELIVRD", "UNDELIV", "ENROUTE", "BUFFERD"]),
    err=st.none() | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16),
    text=st.none() | st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=40),
)


class RoundTripTests(SynchronousTestCase):
    """format and parse are inverse."""

    @given(_receipts)
    def test_roundTrip(self, receipt: DeliveryReceipt) -> None:
        """parse(format(r)) == r, as text and as octets."""
        self.assertEqual(DeliveryReceipt.parse(receipt.format()), receipt)
        self.assertEqual(DeliveryReceipt.parse(receipt.to_bytes()), receipt)

    @given(st.binary(max_size=200))
    def test_randomBytes(self, raw: bytes) -> None:
        """Arbitrary octets parse or raise SmppError, nothing else."""
        try:
            DeliveryReceipt.parse(raw)
        except SmppError:
            pass
