"""SMSC delivery receipts: the text of SMPP 3.4 Appendix B.

The gateway learns whether a push SMS reached the card from a deliver_sm
whose text reads::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:EEE text:...

Appendix B calls the format vendor-specific and SMSCs differ: upper or lower
case keys, fields in another order or missing, seconds in the dates, extra
fields.  L{DeliveryReceipt.parse} accepts all of that, and refuses, naming
the field, only what cannot be read; L{DeliveryReceipt.format} writes the
Appendix B form, which is what our simulated SMSC sends.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

import attrs

from bipgw.codec.smpp._constants import MessageState
from bipgw.codec.smpp._errors import SmppError

#: The longest receipt text accepted (the message_payload limit).
MAX_RECEIPT: Final = 0xFFFF

_STAT_TO_STATE: Final[dict[str, MessageState]] = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
}
_STATE_TO_STAT: Final[dict[MessageState, str]] = {v: k for k, v in _STAT_TO_STATE.items()}

_KEY = re.compile(
    r"(?:^|(?<=\s))(id|sub|dlvrd|submit[ _]date|done[ _]date|stat|err|text):",
    re.IGNORECASE | re.ASCII,
)
# ASCII classes: fields are separated by ASCII blanks only, so octets such as
# 0x85 or 0xA0 (Unicode spaces once read as Latin-1) stay inside a value.
_TOKEN = re.compile(r"\S*", re.ASCII)
_COUNT = re.compile(r"\d{1,3}", re.ASCII)
_DATE = re.compile(r"\d{10}(?:\d{2})?", re.ASCII)
_STAT = re.compile(r"[A-Za-z_]{1,16}")
_ID = re.compile(r"\S{1,64}", re.ASCII)
_ERR = re.compile(r"\S{0,16}", re.ASCII)


def _fail(name: str, reason: str, offset: int | None = None) -> SmppError:
    return SmppError(reason, field=f"receipt.{name}", offset=offset)


def _parse_date(name: str, token: str, offset: int) -> datetime:
    if _DATE.fullmatch(token) is None:
        raise _fail(name, "must be YYMMDDhhmm or YYMMDDhhmmss", offset)
    try:
        return datetime(
            2000 + int(token[0:2]),
            int(token[2:4]),
            int(token[4:6]),
            int(token[6:8]),
            int(token[8:10]),
            int(token[10:12] or 0),
        )
    except ValueError:
        raise _fail(name, "is not a calendar date and time", offset) from None


def _format_date(name: str, value: datetime) -> str:
    if not 2000 <= value.year <= 2099:
        raise _fail(name, "year must be 2000..2099 (two digits on the wire)")
    pattern = "%y%m%d%H%M%S" if value.second else "%y%m%d%H%M"
    return value.strftime(pattern)


@attrs.frozen(kw_only=True)
class DeliveryReceipt:
    """One delivery receipt; absent optional fields are C{None}.  Build it with keywords.

    @ivar id: the message_id the SMSC gave in submit_sm_resp.
    @ivar sub: messages originally submitted (0-999).
    @ivar dlvrd: messages delivered (0-999).
    @ivar submit_date: when the message was submitted (minute precision,
        seconds when the SMSC sends them).
    @ivar done_date: when it reached its final state.
    @ivar stat: the final state word, upper case (C{DELIVRD}, C{UNDELIV} ...);
        see L{message_state}.
    @ivar err: the network or SMSC error code as sent (SMSC-specific, so text).
    @ivar text: the first characters of the message, as sent.
    """

    id: str
    sub: int | None = None
    dlvrd: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    stat: str
    err: str | None = None
    text: str | None = None

    @property
    def message_state(self) -> MessageState | None:
        """The L{MessageState} that C{stat} names, or C{None} for a vendor word."""
        return _STAT_TO_STATE.get(self.stat)

    @staticmethod
    def stat_for(state: MessageState) -> str:
        """The receipt word for a message state (C{DELIVERED} is C{"DELIVRD"})."""
        return _STATE_TO_STAT[state]

    @classmethod
    def parse(cls, text: bytes | str) -> DeliveryReceipt:
        """Read a receipt from a deliver_sm's short_message or message_payload.

        Keys match in any case and order; unknown fields are skipped;
        C{text:} takes the rest of the receipt.  Bytes are read as Latin-1 so
        every octet survives.

        @raise SmppError: C{id} or C{stat} missing, a field given twice, or a
            value that cannot be read (the field and offset are named).
        """
        if isinstance(text, bytes | bytearray | memoryview):
            text = bytes(text).decode("latin-1")
        if len(text) > MAX_RECEIPT:
            raise _fail("text", f"receipt of {len(text)} characters exceeds {MAX_RECEIPT}")
        found: dict[str, tuple[str, int]] = {}
        for m in _KEY.finditer(text):
            key = m.group(1).lower().replace("_", " ")
            if key in found:
                raise _fail(key.replace(" ", "_"), "appears twice", m.start())
            if key == "text":
                found[key] = (text[m.end() :], m.end())
                break
            token = _TOKEN.match(text, m.end())
            assert token is not None  # \S* always matches
            found[key] = (token.group(), m.end())
        return cls._from_fields(found)

    @classmethod
    def _from_fields(cls, found: dict[str, tuple[str, int]]) -> DeliveryReceipt:
        if "id" not in found:
            raise _fail("id", "missing")
        if "stat" not in found:
            raise _fail("stat", "missing")
        msg_id, at = found["id"]
        if _ID.fullmatch(msg_id) is None:
            raise _fail("id", "must be 1..64 non-blank characters", at)
        stat, at = found["stat"]
        if _STAT.fullmatch(stat) is None:
            raise _fail("stat", "must be a word of 1..16 letters", at)
        counts: dict[str, int | None] = {}
        for name in ("sub", "dlvrd"):
            counts[name] = None
            if name in found:
                token, at = found[name]
                if _COUNT.fullmatch(token) is None:
                    raise _fail(name, "must be 1..3 digits", at)
                counts[name] = int(token)
        dates: dict[str, datetime | None] = {}
        for key in ("submit date", "done date"):
            dates[key] = None
            if key in found:
                token, at = found[key]
                dates[key] = _parse_date(key.replace(" ", "_"), token, at)
        err = None
        if "err" in found:
            err, at = found["err"]
            if _ERR.fullmatch(err) is None:
                raise _fail("err", "must be at most 16 characters", at)
        return cls(
            id=msg_id,
            sub=counts["sub"],
            dlvrd=counts["dlvrd"],
            submit_date=dates["submit date"],
            done_date=dates["done date"],
            stat=stat.upper(),
            err=err,
            text=found["text"][0] if "text" in found else None,
        )

    def format(self) -> str:
        """The Appendix B text, C{id:... sub:001 dlvrd:001 submit date:... stat:... text:...}.

        Absent fields are left out; dates carry seconds only when non-zero.

        @raise SmppError: a value that the format cannot carry (blank in the
            id, a count above 999, a year outside 2000-2099 ...).
        """
        if _ID.fullmatch(self.id) is None:
            raise _fail("id", "must be 1..64 non-blank characters")
        if _STAT.fullmatch(self.stat) is None:
            raise _fail("stat", "must be a word of 1..16 letters")
        parts = [f"id:{self.id}"]
        for name, count in (("sub", self.sub), ("dlvrd", self.dlvrd)):
            if count is not None:
                if not 0 <= count <= 999:
                    raise _fail(name, "must be 0..999")
                parts.append(f"{name}:{count:03d}")
        if self.submit_date is not None:
            parts.append("submit date:" + _format_date("submit_date", self.submit_date))
        if self.done_date is not None:
            parts.append("done date:" + _format_date("done_date", self.done_date))
        parts.append(f"stat:{self.stat}")
        if self.err is not None:
            if _ERR.fullmatch(self.err) is None:
                raise _fail("err", "must be at most 16 non-blank characters")
            parts.append(f"err:{self.err}")
        if self.text is not None:
            parts.append(f"text:{self.text}")
        return " ".join(parts)

    def to_bytes(self) -> bytes:
        """L{format} as octets for short_message (Latin-1, one octet per character).

        @raise SmppError: as L{format}, or text outside Latin-1.
        """
        try:
            return self.format().encode("latin-1")
        except UnicodeEncodeError:
            raise _fail("text", "must be Latin-1 to travel in a PDU") from None
