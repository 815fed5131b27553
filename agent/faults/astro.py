"""When a street light should burn: an astronomical clock (astral) or the lamp's photocell.

The lamp is expected on from sunset + sunset_offset until the next sunrise + sunrise_offset.
Sunrise and sunset are taken for *local* dates (WIB by default): asked for a UTC date, astral
gives Tangerang Selatan's sunrise of the next local morning (22:27 UTC), which mixes up nights.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Literal

from astral import Observer, sun

WIB = timezone(timedelta(hours=7), "WIB")  # Indonesia has no daylight saving time
MAX_OFFSET_MIN = 180.0  # offsets beyond 3 h would let nights overlap


@dataclass(frozen=True)
class SunWindow:
    """Whether `at` is inside the lamp's on-window, and the sun events around it.

    night: sunset is the one that began this night, sunrise the one that ends it.
    day: sunrise is this morning's, sunset this evening's. Both None near the poles.
    """

    night: bool
    sunrise: datetime | None
    sunset: datetime | None


@lru_cache(maxsize=8192)
def sun_times(lat: float, lon: float, day: date, tz: tzinfo = WIB) -> tuple[datetime, datetime]:
    """(sunrise, sunset) of one local date; raises ValueError where the sun does not rise/set."""
    observer = Observer(latitude=lat, longitude=lon)
    return sun.sunrise(observer, day, tzinfo=tz), sun.sunset(observer, day, tzinfo=tz)


def sun_window(
    lat: float,
    lon: float,
    at: datetime,
    sunset_offset_min: float = 0.0,
    sunrise_offset_min: float = 0.0,
    tz: tzinfo = WIB,
) -> SunWindow:
    """The lamp window around `at` (timezone-aware): on from sunset + offset to sunrise + offset."""
    if abs(sunset_offset_min) > MAX_OFFSET_MIN or abs(sunrise_offset_min) > MAX_OFFSET_MIN:
        raise ValueError(f"sun offsets are limited to ±{MAX_OFFSET_MIN:g} min")
    lat, lon = round(lat, 4), round(lon, 4)  # ~10 m: keeps the cache small
    on_delay = timedelta(minutes=sunset_offset_min)
    off_delay = timedelta(minutes=sunrise_offset_min)
    today = at.astimezone(tz).date()
    try:
        # last night (began yesterday evening) and tonight (begins this evening)
        for evening in (today - timedelta(days=1), today):
            sunset = sun_times(lat, lon, evening, tz)[1]
            sunrise = sun_times(lat, lon, evening + timedelta(days=1), tz)[0]
            if sunset + on_delay <= at < sunrise + off_delay:
                return SunWindow(True, sunrise, sunset)
        sunrise, sunset = sun_times(lat, lon, today, tz)
        return SunWindow(False, sunrise, sunset)
    except ValueError:  # polar day or night: no events, go by the sun's elevation alone
        elevation = sun.elevation(Observer(latitude=lat, longitude=lon), at)
        return SunWindow(elevation < -0.833, None, None)


def expected_lamp_on(
    lat: float,
    lon: float,
    at: datetime,
    sunset_offset_min: float = 0.0,
    sunrise_offset_min: float = 0.0,
    tz: tzinfo = WIB,
) -> bool:
    """Whether a lamp at (lat, lon) should burn at `at` by the astronomical clock."""
    return sun_window(lat, lon, at, sunset_offset_min, sunrise_offset_min, tz).night


@dataclass(frozen=True)
class ExpectedLight:
    on: bool
    source: Literal["photocell", "astro"]
    reason: str  # Indonesian, for a summary: "malam (matahari terbenam 17:54 WIB)"
    window: SunWindow


def expected_light(
    lat: float,
    lon: float,
    at: datetime,
    sunset_offset_min: float,
    sunrise_offset_min: float,
    daylight: object = None,
    use_photocell: bool = False,
    tz: tzinfo = WIB,
) -> ExpectedLight:
    """The expected lamp state: the photocell's when allowed and it gave a reading (`daylight`
    is the profile's bool metric, None when absent), else the astronomical clock's."""
    window = sun_window(lat, lon, at, sunset_offset_min, sunrise_offset_min, tz)
    if use_photocell and isinstance(daylight, bool):
        reason = "fotosel: terang" if daylight else "fotosel: gelap"
        return ExpectedLight(not daylight, "photocell", reason, window)
    return ExpectedLight(window.night, "astro", astro_reason(window, tz), window)


def astro_reason(window: SunWindow, tz: tzinfo = WIB) -> str:
    if window.sunrise is None or window.sunset is None:
        return "malam (posisi matahari)" if window.night else "siang (posisi matahari)"
    rise, set_ = clock_text(window.sunrise, tz), clock_text(window.sunset, tz)
    if window.night:
        return f"malam (matahari terbenam {set_}, terbit {rise})"
    return f"siang (matahari terbit {rise}, terbenam {set_})"


def clock_text(at: datetime, tz: tzinfo = WIB) -> str:
    """'17:54 WIB' (the zone's name, or UTC+7 style when it has none)."""
    local = at.astimezone(tz)
    return f"{local:%H:%M} {local.tzname() or ''}".rstrip()
