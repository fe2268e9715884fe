"""Time fields: TP-SCTS and the three formats of TP-VP.

TP-SCTS and the absolute validity period share one 7-octet coding
(3GPP TS 23.040 sections 9.2.3.11 and 9.2.3.12.2): year, month, day, hour,
minute, second and time zone, each two BCD digits with the nibbles swapped.
The time zone counts quarter hours; bit 3 of its octet (the first semi-octet)
is the sign.  The relative format (9.2.3.12.1) is one octet on a piecewise
scale; the enhanced format (9.2.3.12.3) is kept as its raw 7 octets.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Final, TypeAlias

from attrs import field, frozen

from bipgw.codec.sms._error import SmsError

__all__ = ["EnhancedValidity", "RelativeValidity", "ServiceCentreTimestamp", "ValidityPeriod"]

_MINUTE: Final = datetime.timedelta(minutes=1)


def _two_digits(name: str) -> Callable[[object, object, int], None]:
    def check(_: object, __: object, value: int) -> None:
        if not 0 <= value <= 99:
            raise SmsError(f"{name} {value} is not two decimal digits", field="TP-SCTS")

    return check


def _check_tz(_: object, __: object, value: int) -> None:
    if not -79 <= value <= 79:
        raise SmsError(f"time zone {value} quarter hours outside -79..79", field="TP-SCTS")


def _swapped(value: int) -> int:
    return (value % 10) << 4 | (value // 10)


@frozen
class ServiceCentreTimestamp:
    """A TP-SCTS (or absolute TP-VP) exactly as coded.

    The fields are kept as the digits on the wire, not as a C{datetime},
    because senders (test SMSCs, simulators) do put impossible dates such as
    all zeros there, and those must still decode and re-encode unchanged;
    L{to_datetime} is where calendar validity is checked.

    @ivar year: two-digit year, 0..99 (see L{to_datetime} for the century).
    @ivar tz_quarters: offset from UTC in quarter hours, -79..79.
    """

    year: int = field(validator=_two_digits("year"))
    month: int = field(validator=_two_digits("month"))
    day: int = field(validator=_two_digits("day"))
    hour: int = field(validator=_two_digits("hour"))
    minute: int = field(validator=_two_digits("minute"))
    second: int = field(validator=_two_digits("second"))
    tz_quarters: int = field(default=0, validator=_check_tz)

    def encode(self) -> bytes:
        """The 7 octets of the field."""
        tz = abs(self.tz_quarters)
        tz_octet = _swapped(tz) | (0x08 if self.tz_quarters < 0 else 0)
        digits = (self.year, self.month, self.day, self.hour, self.minute, self.second)
        return bytes(_swapped(v) for v in digits) + bytes([tz_octet])

    @classmethod
    def decode(
        cls, data: bytes, offset: int = 0, *, field_name: str = "TP-SCTS"
    ) -> ServiceCentreTimestamp:
        """Decode the 7 octets at C{offset}.

        A time zone of "minus zero" decodes as zero.

        @raise SmsError: when fewer than 7 octets remain or a semi-octet is
            not a decimal digit (the offset names the octet).
        """
        if len(data) - offset < 7:
            raise SmsError(
                f"needs 7 octets, only {max(0, len(data) - offset)} left",
                field=field_name,
                offset=offset,
            )
        values: list[int] = []
        for i in range(7):
            octet = data[offset + i]
            # The time zone's first semi-octet lends its bit 3 to the sign.
            low, high = octet & (0x07 if i == 6 else 0x0F), octet >> 4
            if low > 9 or high > 9:
                raise SmsError(
                    f"octet {octet:02x} is not two swapped BCD digits",
                    field=field_name,
                    offset=offset + i,
                )
            values.append(low * 10 + high)
        year, month, day, hour, minute, second, tz = values
        if data[offset + 6] & 0x08:
            tz = -tz
        return cls(year, month, day, hour, minute, second, tz)

    def to_datetime(self) -> datetime.datetime:
        """This timestamp as an aware C{datetime}.

        The two-digit year is read with the POSIX rule (69..99 -> 1969..1999,
        00..68 -> 2000..2068) since TS 23.040 names no century.

        @raise SmsError: when the digits are not a real date and time.
        """
        century = 1900 if self.year >= 69 else 2000
        tz = datetime.timezone(self.tz_quarters * datetime.timedelta(minutes=15))
        try:
            return datetime.datetime(
                century + self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
                tzinfo=tz,
            )
        except ValueError as e:
            raise SmsError(f"not a valid date and time: {e}", field="TP-SCTS") from None

    @classmethod
    def from_datetime(cls, when: datetime.datetime) -> ServiceCentreTimestamp:
        """Code an aware C{datetime} (seconds precision, years 1969..2068).

        @raise SmsError: for a naive datetime, a year outside the two-digit
            window, or an offset that is not whole quarter hours.
        """
        offset = when.utcoffset()
        if offset is None:
            raise SmsError("a naive datetime has no time zone to code", field="TP-SCTS")
        quarters, rest = divmod(offset, datetime.timedelta(minutes=15))
        if rest:
            raise SmsError(f"offset {offset} is not whole quarter hours", field="TP-SCTS")
        if not 1969 <= when.year <= 2068:
            raise SmsError(f"year {when.year} outside 1969..2068", field="TP-SCTS")
        return cls(
            when.year % 100,
            when.month,
            when.day,
            when.hour,
            when.minute,
            when.second,
            quarters,
        )


def _relative_duration(value: int) -> datetime.timedelta:
    if value <= 143:
        return (value + 1) * 5 * _MINUTE
    if value <= 167:
        return datetime.timedelta(hours=12) + (value - 143) * 30 * _MINUTE
    if value <= 196:
        return datetime.timedelta(days=value - 166)
    return datetime.timedelta(weeks=value - 192)


def _check_relative(_: object, __: object, value: int) -> None:
    if not 0 <= value <= 255:
        raise SmsError(f"{value} is not an octet value", field="TP-VP")


@frozen
class RelativeValidity:
    """The relative TP-VP: one octet on the TS 23.040 piecewise scale.

    0..143: 5-minute steps up to 12 hours; 144..167: 30-minute steps up to
    24 hours; 168..196: days up to 30; 197..255: weeks up to 63.
    """

    value: int = field(validator=_check_relative)

    def to_timedelta(self) -> datetime.timedelta:
        """How long the SMSC keeps the message."""
        return _relative_duration(self.value)

    @classmethod
    def from_timedelta(cls, period: datetime.timedelta) -> RelativeValidity:
        """The shortest coded period at least as long as C{period}.

        @raise SmsError: when C{period} exceeds 63 weeks.
        """
        for value in range(256):
            if _relative_duration(value) >= period:
                return cls(value)
        raise SmsError(f"{period} exceeds the longest relative period (63 weeks)", field="TP-VP")


def _check_enhanced(_: object, __: object, value: bytes) -> None:
    if len(value) != 7:
        raise SmsError(f"enhanced format needs 7 octets, not {len(value)}", field="TP-VP")


@frozen
class EnhancedValidity:
    """The enhanced TP-VP, kept as its 7 raw octets (rarely used; not interpreted)."""

    raw: bytes = field(converter=bytes, validator=_check_enhanced)


#: The TP-VP of an SMS-SUBMIT; C{None} means TP-VPF "not present".
ValidityPeriod: TypeAlias = RelativeValidity | ServiceCentreTimestamp | EnhancedValidity | None
