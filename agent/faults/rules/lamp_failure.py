"""lamp_failure: a street light that should burn (night, or the photocell sees dark) is dark:
switched off, drawing next to no power while commanded on, or flagged by its controller."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.rule import LAMP_FAILURE, Observation, RuleContext, RuleSettings
from agent.faults.rules._common import (
    commanded_on,
    flag,
    fmt,
    has_any,
    number,
    rated_power,
    settings_as,
)
from agent.faults.rules._light import LightScheduleSettings, expected, light_evidence
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue


class LampFailureSettings(LightScheduleSettings):
    sunset_offset_min: float = Field(
        30.0, ge=-180, le=180, description="Judge from this long after sunset (lamps warm up)"
    )
    sunrise_offset_min: float = Field(
        -30.0, ge=-180, le=180, description="Judge until this long after (negative: before) sunrise"
    )
    use_photocell: bool = Field(True, description="Use the photocell's dark/daylight when read")
    min_power_share: float = Field(
        0.10, ge=0, le=1, description="Dark below this share of rated W at the commanded dim"
    )
    min_power_w: float = Field(3.0, ge=0, description="Dark below at least this many W")
    use_controller_flag: bool = Field(True, description="The controller's lamp_failure flag counts")


class LampFailure:
    name: ClassVar[str] = LAMP_FAILURE
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = LampFailureSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_any(
            profile, "active_power", "lamp_on", "lamp_failure"
        )

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, LampFailureSettings)
        light = expected(reading, ctx, s)
        if not light.on:
            return None  # daytime: a dark lamp is right, a burning one is day_burning's
        on, dim = commanded_on(reading), number(reading, "dim_command")
        power = number(reading, "active_power")
        failed = flag(reading, "lamp_failure") if s.use_controller_flag else None
        if on is None and power is None and failed is None:
            return None
        rated, rated_from = rated_power(ctx.device, reading)
        share = (dim if dim is not None and dim > 0 else 100.0) / 100.0
        floor = max(s.min_power_w, s.min_power_share * rated * share if rated else 0.0)
        evidence: dict[str, EvidenceValue] = {
            "lamp_on": flag(reading, "lamp_on"),
            "dim_command": reading.values.get("dim_command"),
            "active_power_w": power,
            "rated_w": rated,
            "rated_from": rated_from or None,
            "dark_below_w": round(floor, 2),
            "controller_lamp_failure": failed,
            **light_evidence(light),
        }
        of_rated = f" dari {fmt(rated)} W" if rated else ""
        if on is False:
            why = f"Lampu padam: seharusnya menyala ({light.reason}), pengendali mematikannya"
            return Observation(True, evidence, why + ": periksa jadwal/relai")
        if power is not None and power < floor:
            cmd = f" pada redup {fmt(dim, 0)} %" if dim is not None else ""
            why = f"Lampu mati: seharusnya menyala ({light.reason}), daya {fmt(power)} W{of_rated}"
            return Observation(True, evidence, f"{why}{cmd}: periksa lampu/driver")
        if failed:
            why = f"Pengendali melaporkan lampu gagal ({light.reason})"
            return Observation(True, evidence, why + ": periksa lampu/driver")
        watts = f", daya {fmt(power)} W{of_rated}" if power is not None else ""
        return Observation(False, evidence, f"Lampu menyala{watts}")
