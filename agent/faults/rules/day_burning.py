"""day_burning: a street light burning in daylight, and the energy it wastes meanwhile.

Daylight comes from the sun by default, not the photocell: a photocell stuck on "dark" is the
usual cause of day burning. The grace period is the settings' raise_after_s (the engine's).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings
from agent.faults.rules._common import (
    commanded_on,
    epoch,
    flag,
    fmt,
    fmt_duration,
    from_epoch,
    has_any,
    local_time,
    mem_number,
    number,
    rated_power,
    settings_as,
)
from agent.faults.rules._light import LightScheduleSettings, expected, light_evidence
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue


class DayBurningSettings(LightScheduleSettings):
    sunset_offset_min: float = Field(
        -30.0,
        ge=-180,
        le=180,
        description="Daylight ends this long after (negative: before) sunset",
    )
    sunrise_offset_min: float = Field(
        30.0, ge=-180, le=180, description="Daylight starts this long after sunrise"
    )
    use_photocell: bool = Field(False, description="Trust the photocell's daylight (see module)")
    raise_after: int = Field(1000, ge=1, le=1000, description="Left high: raise_after_s decides")
    raise_after_s: float | None = Field(900.0, gt=0, description="Grace period before raising")
    on_power_share: float = Field(
        0.10, ge=0, le=1, description="Burning above this share of rated W (standby is below)"
    )
    on_power_w: float = Field(3.0, ge=0, description="...and above this many W")
    max_gap_s: float = Field(
        900.0, gt=0, description="Longest gap between readings counted as burning time"
    )
    use_controller_flag: bool = Field(True, description="The controller's day_burner flag counts")


class DayBurning:
    name: ClassVar[str] = "day_burning"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = DayBurningSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_any(
            profile, "active_power", "lamp_on", "day_burner"
        )

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, DayBurningSettings)
        power = number(reading, "active_power")
        rated, _ = rated_power(ctx.device, reading)
        threshold = max(s.on_power_w, s.on_power_share * rated if rated else 0.0)
        burning = power > threshold if power is not None else commanded_on(reading)
        if s.use_controller_flag and flag(reading, "day_burner"):
            burning = True
        if burning is None:
            return None
        light = expected(reading, ctx, s)
        evidence: dict[str, EvidenceValue] = {
            "active_power_w": power,
            "burning_above_w": round(threshold, 2),
            "lamp_on": flag(reading, "lamp_on"),
            "controller_day_burner": flag(reading, "day_burner"),
            **light_evidence(light),
        }
        if light.on or not burning:
            ctx.memory.clear()
            why = "menyala, malam" if light.on and burning else "tidak menyala di siang hari"
            return Observation(False, evidence, f"Lampu {why}")
        now = epoch(ctx.now)
        since = mem_number(ctx.memory, "since")
        since = now if since is None else since
        wasted_wh = mem_number(ctx.memory, "wasted_wh") or 0.0
        last_at, last_w = mem_number(ctx.memory, "last_at"), mem_number(ctx.memory, "last_w")
        watts = power if power is not None else (rated or 0.0)
        if last_at is not None and 0 < now - last_at <= s.max_gap_s:
            mean_w = (watts + last_w) / 2 if last_w is not None else watts
            wasted_wh += mean_w * (now - last_at) / 3600.0
        ctx.memory.update(since=since, wasted_wh=wasted_wh, last_at=now, last_w=watts)
        kwh = wasted_wh / 1000.0
        evidence |= {
            "burning_since": from_epoch(since).isoformat(timespec="seconds"),
            "burning_s": round(now - since),
            "wasted_kwh": round(kwh, 4),
        }
        summary = (
            f"Lampu menyala di siang hari sejak {local_time(from_epoch(since))} "
            f"({fmt_duration(now - since)}, {fmt(watts)} W): energi terbuang {fmt(kwh, 3)} kWh; "
            "periksa fotosel/jadwal"
        )
        return Observation(True, evidence, summary)
