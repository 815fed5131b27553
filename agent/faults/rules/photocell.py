"""photocell_fault: the photocell contradicts the sun well away from twilight (daylight in the
middle of the night, or dark at midday): a stuck, dirty or covered sensor, which makes a
photocell-switched lamp burn by day or stay dark at night."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.astro import astro_reason, sun_window
from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import flag, has_all, number, settings_as
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue


class PhotocellSettings(RuleSettings):
    severity: Severity = "minor"
    raise_after: int = Field(1000, ge=1, le=1000, description="Left high: raise_after_s decides")
    raise_after_s: float | None = Field(
        3600.0, gt=0, description="Wrong for this long (a storm can darken midday for a while)"
    )
    margin_min: float = Field(
        60.0, ge=0, le=180, description="Judged only this far from sunrise and sunset"
    )


class PhotocellFault:
    name: ClassVar[str] = "photocell_fault"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = PhotocellSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(profile, "daylight")

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, PhotocellSettings)
        daylight = flag(reading, "daylight")
        if daylight is None:
            return None
        loc, m = ctx.device.location, s.margin_min
        deep_night = sun_window(loc.lat, loc.lon, ctx.now, m, -m)
        deep_day = not sun_window(loc.lat, loc.lon, ctx.now, -m, m).night
        if not deep_night.night and not deep_day:
            return None  # twilight: either answer is fine
        evidence: dict[str, EvidenceValue] = {
            "daylight": daylight,
            "lux": number(reading, "lux"),
            "sun": astro_reason(sun_window(loc.lat, loc.lon, ctx.now)),
        }
        if deep_night.night and daylight:
            return Observation(
                True, evidence, "Fotosel melihat terang di tengah malam: periksa/bersihkan fotosel"
            )
        if deep_day and not daylight:
            return Observation(
                True, evidence, "Fotosel melihat gelap di siang hari: periksa apakah tertutup/rusak"
            )
        return Observation(False, evidence, "Fotosel sesuai posisi matahari")
