"""Tests for TP-SCTS and the TP-VP formats."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.sms import EnhancedValidity, RelativeValidity, ServiceCentreTimestamp, SmsError


def timestamps() -> st.SearchStrategy[ServiceCentreTimestamp]:
    """Any codable timestamp, calendar-valid or not."""
    two = st.integers(min_value=0, max_value=99)
    return st.builds(
        ServiceCentreTimestamp,
        two,
        two,
        two,
        two,
        two,
        two,
        st.integers(min_value=-79, max_value=79),
    )


def _hours(h: float) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(hours=h))


class TimestampVectorTests(SynchronousTestCase):
    """Published timestamps decode to the right instant."""

    def test_otaFramingVector(self) -> None:
        """22 70 52 00 00 00 00 (the SMS-PP framing vector) is 2022-07-25 00:00:00 UTC."""
        raw = bytes.fromhex("22705200000000")
        scts = ServiceCentreTimestamp.decode(raw)
        self.assertEqual(scts, ServiceCentreTimestamp(22, 7, 25, 0, 0, 0, 0))
        self.assertEqual(scts.to_datetime(), datetime.datetime(2022, 7, 25, tzinfo=datetime.UTC))
        self.assertEqual(scts.encode(), raw)

    def test_positiveZone(self) -> None:
        """99 20 21 50 75 03 21 is 1999-02-12 05:57:30 GMT+3 (12 quarter hours)."""
        raw = bytes.fromhex("99202150750321")
        scts = ServiceCentreTimestamp.decode(raw)
        self.assertEqual(scts.tz_quarters, 12)
        self.assertEqual(
            scts.to_datetime(), datetime.datetime(1999, 2, 12, 5, 57, 30, tzinfo=_hours(3))
        )
        self.assertEqual(scts.encode(), raw)

    def test_negativeZone(self) -> None:
        """Bit 3 of the zone octet is the sign: 29 is minus 12 quarter hours."""
        scts = ServiceCentreTimestamp.decode(bytes.fromhex("42101231000029"))
        self.assertEqual(scts.tz_quarters, -12)
        self.assertEqual(scts.to_datetime().utcoffset(), datetime.timedelta(hours=-3))
        self.assertEqual(ServiceCentreTimestamp(24, 1, 21, 13, 0, 0, -12).encode()[-1], 0x29)

    def test_minusZeroIsZero(self) -> None:
        """A zone octet of 08 (negative zero) decodes as zero."""
        self.assertEqual(
            ServiceCentreTimestamp.decode(bytes.fromhex("20806291731408")).tz_quarters, 0
        )

    def test_allZerosDecodeButAreNoDate(self) -> None:
        """All-zero timestamps (test SMSCs send them) decode; only to_datetime refuses them."""
        scts = ServiceCentreTimestamp.decode(bytes(7))
        self.assertEqual(scts.encode(), bytes(7))
        self.assertRaises(SmsError, scts.to_datetime)


class TimestampErrorTests(SynchronousTestCase):
    """Bad timestamps raise SmsError with the field and offset."""

    def test_notBcd(self) -> None:
        """A semi-octet above 9 is refused at its octet."""
        with self.assertRaises(SmsError) as ctx:
            ServiceCentreTimestamp.decode(bytes.fromhex("0022705a00000000"), 1)
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("TP-SCTS", 3))

    def test_truncated(self) -> None:
        """Fewer than 7 octets is refused."""
        self.assertRaises(SmsError, ServiceCentreTimestamp.decode, bytes(6))

    def test_fromDatetimeLimits(self) -> None:
        """Naive datetimes, odd offsets and years outside the window are refused."""
        self.assertRaises(
            SmsError, ServiceCentreTimestamp.from_datetime, datetime.datetime(2024, 1, 1)
        )
        odd = datetime.datetime(
            2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(minutes=10))
        )
        self.assertRaises(SmsError, ServiceCentreTimestamp.from_datetime, odd)
        far = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
        self.assertRaises(SmsError, ServiceCentreTimestamp.from_datetime, far)
        self.assertRaises(SmsError, ServiceCentreTimestamp, 100, 1, 1, 0, 0, 0)
        self.assertRaises(SmsError, ServiceCentreTimestamp, 1, 1, 1, 0, 0, 0, 80)


class RelativeValidityTests(SynchronousTestCase):
    """The relative TP-VP follows the TS 23.040 piecewise scale."""

    def test_scaleBoundaries(self) -> None:
        """Each segment of the scale starts and ends where TS 23.040 says."""
        minutes = datetime.timedelta(minutes=1)
        expected = {
            0: 5 * minutes,
            143: 12 * 60 * minutes,
            144: 12 * 60 * minutes + 30 * minutes,
            167: 24 * 60 * minutes,
            168: datetime.timedelta(days=2),
            170: datetime.timedelta(days=4),
            196: datetime.timedelta(days=30),
            197: datetime.timedelta(weeks=5),
            255: datetime.timedelta(weeks=63),
        }
        for value, period in expected.items():
            self.assertEqual(RelativeValidity(value).to_timedelta(), period, value)

    def test_fromTimedeltaRoundsUp(self) -> None:
        """A period maps to the shortest coded period at least as long."""
        self.assertEqual(RelativeValidity.from_timedelta(datetime.timedelta(days=1)).value, 167)
        self.assertEqual(RelativeValidity.from_timedelta(datetime.timedelta(hours=13)).value, 145)
        self.assertEqual(RelativeValidity.from_timedelta(datetime.timedelta(0)).value, 0)
        self.assertRaises(SmsError, RelativeValidity.from_timedelta, datetime.timedelta(weeks=64))

    def test_badValues(self) -> None:
        """Values outside an octet and enhanced periods not 7 octets are refused."""
        self.assertRaises(SmsError, RelativeValidity, 256)
        self.assertRaises(SmsError, EnhancedValidity, b"\x01")


class TimePropertyTests(SynchronousTestCase):
    """Round trips for timestamps and periods."""

    @given(timestamps())
    def test_timestampRoundTrip(self, scts: ServiceCentreTimestamp) -> None:
        """Any codable timestamp survives encode/decode."""
        self.assertEqual(ServiceCentreTimestamp.decode(scts.encode()), scts)

    @given(
        st.datetimes(
            min_value=datetime.datetime(1969, 1, 2),
            max_value=datetime.datetime(2068, 12, 30),
        ),
        st.integers(min_value=-48, max_value=56),
    )
    def test_datetimeRoundTrip(self, when: datetime.datetime, quarters: int) -> None:
        """An aware datetime (whole seconds) survives from_datetime/to_datetime."""
        zone = datetime.timezone(quarters * datetime.timedelta(minutes=15))
        aware = when.replace(microsecond=0, tzinfo=zone)
        scts = ServiceCentreTimestamp.from_datetime(aware)
        self.assertEqual(scts.to_datetime(), aware)
        self.assertEqual(scts.to_datetime().utcoffset(), aware.utcoffset())

    @given(st.timedeltas(min_value=datetime.timedelta(0), max_value=datetime.timedelta(weeks=63)))
    def test_relativeIsTightest(self, period: datetime.timedelta) -> None:
        """from_timedelta covers the period, and one step less would not."""
        value = RelativeValidity.from_timedelta(period).value
        self.assertGreaterEqual(RelativeValidity(value).to_timedelta(), period)
        if value:
            self.assertLess(RelativeValidity(value - 1).to_timedelta(), period)

    @given(st.binary(min_size=7, max_size=7))
    def test_randomBytesOnlySmsError(self, data: bytes) -> None:
        """Arbitrary octets give a timestamp or SmsError."""
        try:
            ServiceCentreTimestamp.decode(data)
        except SmsError:
            pass
