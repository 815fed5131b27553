"""The astronomical clock at Tangerang Selatan (6.29°S, 106.71°E, WIB): sunrise/sunset from astral,
lamp-window boundaries to the minute, the UTC/WIB date boundary, offsets and the photocell."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from astral import Observer, sun

from agent.faults.astro import (
    WIB,
    expected_lamp_on,
    expected_light,
    sun_times,
    sun_window,
)
from tests.rule_helpers import wib

LAT, LON = -6.29, 106.71
ONE_MIN = timedelta(minutes=1)


def test_tangsel_sun_times_late_november() -> None:
    rise, set_ = sun_times(LAT, LON, date(2026, 11, 28))
    assert rise.tzinfo == WIB and set_.tzinfo == WIB
    assert (rise.date(), set_.date()) == (date(2026, 11, 28), date(2026, 11, 28))
    # near the equator: sunrise about 05:27 WIB, sunset about 17:54 WIB at the end of November
    assert wib(2026, 11, 28, 5, 20) <= rise < wib(2026, 11, 28, 5, 35)
    assert wib(2026, 11, 28, 17, 50) <= set_ < wib(2026, 11, 28, 18, 0)
    observer = Observer(latitude=LAT, longitude=LON)
    assert set_ == sun.sunset(observer, date(2026, 11, 28), tzinfo=WIB)


def test_june_sunrise_is_later() -> None:
    rise, set_ = sun_times(LAT, LON, date(2026, 6, 21))
    assert wib(2026, 6, 21, 5, 55) <= rise < wib(2026, 6, 21, 6, 10)
    assert wib(2026, 6, 21, 17, 40) <= set_ < wib(2026, 6, 21, 17, 55)


def test_sunset_boundary_to_the_minute() -> None:
    sunset = sun_times(LAT, LON, date(2026, 11, 28))[1]
    assert not expected_lamp_on(LAT, LON, sunset - ONE_MIN)
    assert expected_lamp_on(LAT, LON, sunset + ONE_MIN)
    assert expected_lamp_on(LAT, LON, sunset)  # from sunset on


def test_sunrise_boundary_to_the_minute() -> None:
    sunrise = sun_times(LAT, LON, date(2026, 11, 29))[0]
    assert expected_lamp_on(LAT, LON, sunrise - ONE_MIN)
    assert not expected_lamp_on(LAT, LON, sunrise + ONE_MIN)


@pytest.mark.parametrize(("on_after", "off_after"), [(30.0, -30.0), (-15.0, 20.0)])
def test_offsets_move_the_boundaries(on_after: float, off_after: float) -> None:
    sunset = sun_times(LAT, LON, date(2026, 11, 28))[1] + timedelta(minutes=on_after)
    sunrise = sun_times(LAT, LON, date(2026, 11, 29))[0] + timedelta(minutes=off_after)
    assert not expected_lamp_on(LAT, LON, sunset - ONE_MIN, on_after, off_after)
    assert expected_lamp_on(LAT, LON, sunset + ONE_MIN, on_after, off_after)
    assert expected_lamp_on(LAT, LON, sunrise - ONE_MIN, on_after, off_after)
    assert not expected_lamp_on(LAT, LON, sunrise + ONE_MIN, on_after, off_after)


@pytest.mark.parametrize(
    ("utc", "night"),
    [
        (datetime(2026, 11, 28, 5, 0, tzinfo=UTC), False),  # 12:00 WIB
        (datetime(2026, 11, 28, 11, 0, tzinfo=UTC), True),  # 18:00 WIB, after sunset
        (datetime(2026, 11, 28, 16, 59, tzinfo=UTC), True),  # 23:59 WIB
        (datetime(2026, 11, 28, 17, 0, tzinfo=UTC), True),  # 00:00 WIB on the 29th
        (datetime(2026, 11, 28, 22, 0, tzinfo=UTC), True),  # 05:00 WIB: UTC date is still the 28th
        (datetime(2026, 11, 28, 22, 40, tzinfo=UTC), False),  # 05:40 WIB, after sunrise
        (datetime(2026, 11, 27, 23, 0, tzinfo=UTC), False),  # 06:00 WIB on the 28th
    ],
)
def test_utc_and_wib_dates(utc: datetime, night: bool) -> None:
    assert expected_lamp_on(LAT, LON, utc) is night


def test_window_names_the_night_across_midnight() -> None:
    w = sun_window(LAT, LON, wib(2026, 11, 29, 2, 0))
    assert w.night and w.sunset is not None and w.sunrise is not None
    assert w.sunset.date() == date(2026, 11, 28) and w.sunrise.date() == date(2026, 11, 29)
    day = sun_window(LAT, LON, wib(2026, 11, 29, 12, 0))
    assert not day.night and day.sunrise is not None and day.sunset is not None
    assert day.sunrise.date() == day.sunset.date() == date(2026, 11, 29)
    # 06:30 WIB is still the 28th in UTC: the events are the local day's all the same
    early = sun_window(LAT, LON, wib(2026, 11, 29, 6, 30))
    assert not early.night and early.sunrise is not None
    assert early.sunrise.date() == date(2026, 11, 29)


def test_polar_day_and_night_fall_back_to_elevation() -> None:
    assert not sun_window(78.2, 15.6, datetime(2026, 6, 21, 0, 0, tzinfo=UTC)).night
    polar_night = sun_window(78.2, 15.6, datetime(2026, 12, 21, 12, 0, tzinfo=UTC))
    assert polar_night.night and polar_night.sunset is None


def test_offsets_are_bounded() -> None:
    with pytest.raises(ValueError, match="offsets"):
        expected_lamp_on(LAT, LON, wib(2026, 11, 28, 12), 240.0, 0.0)


def test_photocell_preferred_when_allowed_and_read() -> None:
    noon = wib(2026, 11, 28, 12, 0)
    dark = expected_light(LAT, LON, noon, 0, 0, daylight=False, use_photocell=True)
    assert (dark.on, dark.source, dark.reason) == (True, "photocell", "fotosel: gelap")
    astro = expected_light(LAT, LON, noon, 0, 0, daylight=False, use_photocell=False)
    assert (astro.on, astro.source) == (False, "astro")
    assert astro.reason.startswith("siang (matahari terbit 05:27 WIB")
    missing = expected_light(LAT, LON, noon, 0, 0, daylight=None, use_photocell=True)
    assert (missing.on, missing.source) == (False, "astro")
    night = expected_light(LAT, LON, wib(2026, 11, 28, 21), 0, 0)
    assert night.on and night.reason == "malam (matahari terbenam 17:54 WIB, terbit 05:27 WIB)"
