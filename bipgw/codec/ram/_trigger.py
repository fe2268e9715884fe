"""GlobalPlatform Amd B administration session triggering parameters (C{81}).

With C{trigger = "amdb"} the gateway sends this tree instead of a PUSH: it
tells the card's security domain where to open its SCP81 session, with which
PSK, how often to retry and what to POST.  The layout (PROTOCOLS.md 3.5):

    81 L  administration session triggering parameters
      83 L  admin session parameters
        84 L  connection parameters: OPEN CHANNEL COMPREHENSION-TLVs
        85 L  security parameters: LV(PSK identity) 02 KVN KID
        A5 L  extended security parameters (content UNVERIFIED, kept raw)
        86 L  retry policy: counter(2) 25 03 HH MM SS [more, kept raw]
        89 L  HTTP POST parameters: 8A host, 8B agent id, 8C URI
      B3 L  DNS resolution parameters (kept raw)

Every part is optional (a card takes what is missing from the defaults
stored in its security domain).  Encoding writes the parts in the order
above; decoding accepts any order and refuses an unknown tag or a tag that
appears twice, so that nothing a card would act on is silently dropped.

The retry timer uses the TS 102 223 8.38 timer value coding: three bytes
HH MM SS, each two BCD digits with the nibbles swapped (the units digit in
the high nibble), as Denom writes it and the public vectors show: 3 seconds
is C{00 00 30}.  UNVERIFIED: njiwa writes plain binary bytes instead, and
no captured card trace settles which one cards use; L{encode_timer} and
L{decode_timer} are the single place to change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final, Self

import attrs

from bipgw.codec.ram._bip import ConnectionParams
from bipgw.codec.ram._common import RamError, from_tlv_error
from bipgw.codec.tlv import (
    MAX_SIZE,
    BerSpan,
    TlvError,
    encode_ber,
    encode_comprehension,
    hex_tag,
    scan_ber,
)

__all__ = [
    "AdminSessionTrigger",
    "HttpPostParams",
    "RetryPolicy",
    "SecurityParams",
    "decode_timer",
    "encode_timer",
]

TAG_TRIGGER: Final = 0x81
TAG_SESSION: Final = 0x83
TAG_CONNECTION: Final = 0x84
TAG_SECURITY: Final = 0x85
TAG_EXTENDED_SECURITY: Final = 0xA5
TAG_RETRY: Final = 0x86
TAG_HTTP: Final = 0x89
TAG_HOST: Final = 0x8A
TAG_AGENT: Final = 0x8B
TAG_URI: Final = 0x8C
TAG_DNS: Final = 0xB3
TAG_TIMER: Final = 0x25

MAX_TIMER: Final = timedelta(hours=99, minutes=59, seconds=59)
"""The longest delay the three BCD bytes can hold."""


def _bcd_swapped(value: int) -> int:
    return (value % 10) << 4 | value // 10


def encode_timer(delay: timedelta) -> bytes:
    """Code a delay as the TS 102 223 timer value C{HH MM SS} (swapped BCD).

    @raise RamError: for a negative delay, a fraction of a second, or more
        than 99:59:59.
    """
    if not isinstance(delay, timedelta) or delay < timedelta(0) or delay > MAX_TIMER:
        raise RamError(f"timer {delay!r} outside 0..99:59:59", field="retry delay")
    seconds, rest = divmod(delay, timedelta(seconds=1))
    if rest:
        raise RamError(f"timer {delay} is not a whole number of seconds", field="retry delay")
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return bytes((_bcd_swapped(hours), _bcd_swapped(minutes), _bcd_swapped(seconds)))


def decode_timer(value: bytes) -> timedelta:
    """Decode a TS 102 223 timer value (three swapped-BCD bytes C{HH MM SS}).

    @raise RamError: for a length other than 3, a nibble above 9, or minutes
        or seconds above 59.
    """
    if len(value) != 3:
        raise RamError(f"a timer value is 3 bytes, not {len(value)}", field="retry delay")
    digits = []
    for index, byte in enumerate(value):
        units, tens = byte >> 4, byte & 0x0F
        if units > 9 or tens > 9:
            raise RamError(f"byte {byte:02X} is not BCD", field="retry delay", offset=index)
        digits.append(tens * 10 + units)
    hours, minutes, seconds = digits
    if minutes > 59 or seconds > 59:
        raise RamError(
            f"{hours:02}:{minutes:02}:{seconds:02} is not a time of day", field="retry delay"
        )
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _check_byte(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise RamError(f"{value!r} is not a byte value", field=attribute.name)


def _check_psk_identity(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or not 1 <= len(value) <= 255:
        raise RamError("the PSK identity is 1..255 bytes", field="psk_identity")


@attrs.frozen
class SecurityParams:
    """Security parameters C{85}: which TLS-PSK key the card must use.

    C{85 08 04 DEADBEEF 02 00 40} is PSK identity C{DEADBEEF}, KVN C{00},
    KID C{40}.  The PSK identity is an identifier, not key material.
    """

    psk_identity: bytes = attrs.field(validator=_check_psk_identity)
    kvn: int = attrs.field(validator=_check_byte)
    kid: int = attrs.field(validator=_check_byte)

    def to_value(self) -> bytes:
        """The value of the C{85} TLV."""
        return bytes((len(self.psk_identity),)) + self.psk_identity + bytes((2, self.kvn, self.kid))

    def encode(self) -> bytes:
        """The C{85} TLV."""
        return encode_ber(TAG_SECURITY, self.to_value())

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        """Decode the value of a C{85} TLV.

        @raise RamError: unless it is exactly LV(identity) C{02} KVN KID.
        """
        size = value[0] if value else 0
        if size == 0 or len(value) != size + 4 or value[size + 1] != 2:
            raise RamError(
                "expected LV(PSK identity) 02 KVN KID", field="security parameters", offset=0
            )
        return cls(value[1 : size + 1], value[size + 2], value[size + 3])

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode a whole C{85} TLV."""
        return cls.from_value(_single(data, TAG_SECURITY, "security parameters"))


def _check_counter(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise RamError(f"retry counter {value!r} outside 0..65535", field="counter")


def _check_delay(instance: object, attribute: attrs.Attribute[timedelta], value: timedelta) -> None:
    encode_timer(value)


def _check_raw(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes:
        raise RamError("must be bytes", field=attribute.name)


@attrs.frozen
class RetryPolicy:
    """Retry policy C{86}: how often, and how long apart, the card retries.

    @ivar counter: the retry counter (2 bytes).
    @ivar delay: the retry waiting delay (see L{encode_timer}).
    @ivar report: whatever follows the timer TLV, raw (njiwa sends a
        retry-failure-report C{87 00}; that tag is UNVERIFIED).
    """

    counter: int = attrs.field(validator=_check_counter)
    delay: timedelta = attrs.field(validator=_check_delay)
    report: bytes = attrs.field(default=b"", validator=_check_raw)

    def to_value(self) -> bytes:
        """The value of the C{86} TLV."""
        return (
            self.counter.to_bytes(2, "big")
            + encode_comprehension(TAG_TIMER, encode_timer(self.delay))
            + self.report
        )

    def encode(self) -> bytes:
        """The C{86} TLV."""
        return encode_ber(TAG_RETRY, self.to_value())

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        """Decode the value of a C{86} TLV (the timer tag may carry CR: C{A5};
        it is re-encoded without).

        @raise RamError: without a counter and a following timer value TLV.
        """
        what = "retry policy"
        if len(value) < 2:
            raise RamError("the 2-byte retry counter is missing", field=what, offset=0)
        if len(value) < 7 or value[2] not in (TAG_TIMER, TAG_TIMER | 0x80) or value[3] != 3:
            raise RamError(
                "the counter must be followed by the timer value TLV 25 03 HH MM SS",
                field=what,
                offset=2,
            )
        try:
            delay = decode_timer(value[4:7])
        except RamError as e:
            raise RamError(e.reason, field=what, offset=4 + (e.offset or 0)) from e
        return cls(int.from_bytes(value[:2], "big"), delay, value[7:])

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode a whole C{86} TLV."""
        return cls.from_value(_single(data, TAG_RETRY, "retry policy"))


def _check_text(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name != "uri":
        return
    if not isinstance(value, str) or not value or not value.isascii() or len(value) > 0xFFFF:
        raise RamError(f"{value!r} is not non-empty ASCII text", field=attribute.name)
    if not value.isprintable():
        raise RamError(f"{value!r} holds control characters", field=attribute.name)


@attrs.frozen
class HttpPostParams:
    """HTTP POST parameters C{89}: where and as whom the card POSTs.

    @ivar uri: the administration URI C{8C} of the first POST.
    @ivar host: the C{Host} header value C{8A}.
    @ivar agent_id: the C{X-Admin-From} value C{8B}.
    """

    uri: str = attrs.field(validator=_check_text)
    host: str | None = attrs.field(default=None, validator=_check_text)
    agent_id: str | None = attrs.field(default=None, validator=_check_text)

    def to_value(self) -> bytes:
        """The value of the C{89} TLV: C{8A}, C{8B}, C{8C} in that order."""
        parts = []
        if self.host is not None:
            parts.append(encode_ber(TAG_HOST, self.host.encode("ascii")))
        if self.agent_id is not None:
            parts.append(encode_ber(TAG_AGENT, self.agent_id.encode("ascii")))
        parts.append(encode_ber(TAG_URI, self.uri.encode("ascii")))
        return b"".join(parts)

    def encode(self) -> bytes:
        """The C{89} TLV."""
        return encode_ber(TAG_HTTP, self.to_value())

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        """Decode the value of a C{89} TLV.

        @raise RamError: for an unknown or repeated tag, non-ASCII text, or
            a missing URI.
        """
        what = "HTTP POST parameters"
        found = _children(value, 0, len(value), what, {TAG_HOST, TAG_AGENT, TAG_URI})
        texts: dict[int, str] = {}
        for tag, (start, end) in found.items():
            raw = value[start:end]
            if not raw.isascii():
                raise RamError(f"tag {tag:02X} is not ASCII", field=what, offset=start)
            texts[tag] = raw.decode("ascii")
        if TAG_URI not in texts:
            raise RamError("the administration URI (8C) is missing", field=what)
        try:
            return cls(texts[TAG_URI], texts.get(TAG_HOST), texts.get(TAG_AGENT))
        except RamError as e:
            raise RamError(e.reason, field=f"{what}: {e.field}") from e

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode a whole C{89} TLV."""
        return cls.from_value(_single(data, TAG_HTTP, "HTTP POST parameters"))


def _single(data: bytes, tag: int, what: str) -> bytes:
    """The value of the one TLV C{data} must be, with tag C{tag}."""
    data = bytes(data)
    found = _children(data, 0, len(data), what, {tag})
    if tag not in found:
        raise RamError(f"expected one TLV with tag {tag:02X}", field=what, offset=0)
    start, end = found[tag]
    return data[start:end]


def _children(
    data: bytes, start: int, end: int, what: str, allowed: set[int]
) -> dict[int, tuple[int, int]]:
    """Scan C{data[start:end]} for TLVs with tags in C{allowed}, each at most once.

    @return: C{tag -> (value_start, value_end)}, offsets into C{data}.
    """
    try:
        spans: list[BerSpan] = scan_ber(data, start, end, max_depth=0)[0]
    except TlvError as e:
        raise from_tlv_error(e, what) from e
    found: dict[int, tuple[int, int]] = {}
    for tag, where, value_start, value_end, _ in spans:
        if tag not in allowed:
            raise RamError(f"unexpected tag {hex_tag(tag)}", field=what, offset=where)
        if tag in found:
            raise RamError(f"tag {hex_tag(tag)} appears twice", field=what, offset=where)
        found[tag] = (value_start, value_end)
    return found


def _check_optional(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    kinds = {
        "connection": ConnectionParams,
        "security": SecurityParams,
        "retry": RetryPolicy,
        "http": HttpPostParams,
        "extended_security": bytes,
        "dns": bytes,
    }
    if value is not None and not isinstance(value, kinds[attribute.name]):
        raise RamError(f"must be {kinds[attribute.name].__name__} or None", field=attribute.name)


@attrs.frozen
class AdminSessionTrigger:
    """The Amd B administration session triggering parameters, C{81}.

    @ivar connection: C{84}, how to open the channel (address, port, APN ...).
    @ivar security: C{85}, the PSK identity and key to use.
    @ivar extended_security: raw value of C{A5}.
    @ivar retry: C{86}, the retry policy.
    @ivar http: C{89}, host, agent id and URI of the first POST.
    @ivar dns: raw value of the DNS resolution parameters C{B3}.
    """

    connection: ConnectionParams | None = attrs.field(default=None, validator=_check_optional)
    security: SecurityParams | None = attrs.field(default=None, validator=_check_optional)
    extended_security: bytes | None = attrs.field(default=None, validator=_check_optional)
    retry: RetryPolicy | None = attrs.field(default=None, validator=_check_optional)
    http: HttpPostParams | None = attrs.field(default=None, validator=_check_optional)
    dns: bytes | None = attrs.field(default=None, validator=_check_optional)

    def encode(self) -> bytes:
        """The C{81} TLV, as the GP API or an SCP80 packet carries it."""
        parts = []
        if self.connection is not None:
            parts.append(encode_ber(TAG_CONNECTION, self.connection.encode()))
        if self.security is not None:
            parts.append(self.security.encode())
        if self.extended_security is not None:
            parts.append(encode_ber(TAG_EXTENDED_SECURITY, self.extended_security))
        if self.retry is not None:
            parts.append(self.retry.encode())
        if self.http is not None:
            parts.append(self.http.encode())
        session = encode_ber(TAG_SESSION, b"".join(parts))
        dns = b"" if self.dns is None else encode_ber(TAG_DNS, self.dns)
        return encode_ber(TAG_TRIGGER, session + dns)

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = MAX_SIZE) -> Self:
        """Decode a C{81} TLV.

        @raise RamError: for malformed TLVs, unknown or repeated tags, a
            missing C{83}, or a malformed part (the field names the part).
        """
        data = bytes(data)
        if len(data) > max_size:
            raise RamError(f"{len(data)} bytes exceed the {max_size}-byte limit", offset=0)
        value = _children(data, 0, len(data), "triggering parameters", {TAG_TRIGGER})
        if TAG_TRIGGER not in value:
            raise RamError("expected tag 81", field="triggering parameters", offset=0)
        top = _children(data, *value[TAG_TRIGGER], "triggering parameters", {TAG_SESSION, TAG_DNS})
        if TAG_SESSION not in top:
            raise RamError(
                "the admin session parameters (83) are missing", field="triggering parameters"
            )
        parts = _children(
            data,
            *top[TAG_SESSION],
            "admin session parameters",
            {TAG_CONNECTION, TAG_SECURITY, TAG_EXTENDED_SECURITY, TAG_RETRY, TAG_HTTP},
        )

        def raw(spans: dict[int, tuple[int, int]], tag: int) -> bytes | None:
            span = spans.get(tag)
            return None if span is None else data[span[0] : span[1]]

        connection = security = retry = http = None
        tag = TAG_CONNECTION
        try:
            value_of = raw(parts, TAG_CONNECTION)
            if value_of is not None:
                connection = ConnectionParams.decode(value_of)
            tag = TAG_SECURITY
            value_of = raw(parts, TAG_SECURITY)
            if value_of is not None:
                security = SecurityParams.from_value(value_of)
            tag = TAG_RETRY
            value_of = raw(parts, TAG_RETRY)
            if value_of is not None:
                retry = RetryPolicy.from_value(value_of)
            tag = TAG_HTTP
            value_of = raw(parts, TAG_HTTP)
            if value_of is not None:
                http = HttpPostParams.from_value(value_of)
        except RamError as e:
            # Offsets inside a part count from its value; make them count
            # from the start of the caller's bytes.
            offset = None if e.offset is None else e.offset + parts[tag][0]
            raise RamError(e.reason, field=e.field, offset=offset) from e
        return cls(
            connection=connection,
            security=security,
            extended_security=raw(parts, TAG_EXTENDED_SECURITY),
            retry=retry,
            http=http,
            dns=raw(top, TAG_DNS),
        )
