"""over_temperature: a street-light controller's LED driver (gear_temperature, and its own
thermal derating/shutdown flags) or a hotspot's board (board_temperature) running too hot."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import flag, fmt, has_any, number, settings_as
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

METRIC = {"streetlight": "gear_temperature", "hotspot": "board_temperature"}
FLAGS = ("thermal_derating", "thermal_shutdown")


class OverTemperatureSettings(RuleSettings):
    severity: Severity = "minor"
    clear_after: int = Field(3, ge=1, le=1000)
    gear_max_c: float = Field(75.0, description="Street light: highest LED driver temperature")
    board_max_c: float = Field(70.0, description="Hotspot: highest board temperature")
    use_controller_flags: bool = Field(
        True, description="Street light: the driver's thermal derating/shutdown flags count"
    )


class OverTemperature:
    name: ClassVar[str] = "over_temperature"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight", "hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = OverTemperatureSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        if device.kind == "streetlight":
            return has_any(profile, METRIC["streetlight"], *FLAGS)
        return device.kind == "hotspot" and has_any(profile, METRIC["hotspot"])

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, OverTemperatureSettings)
        lamp = ctx.device.kind == "streetlight"
        metric = METRIC[ctx.device.kind]
        celsius = number(reading, metric)
        limit = s.gear_max_c if lamp else s.board_max_c
        flags = {f: flag(reading, f) for f in FLAGS} if lamp and s.use_controller_flags else {}
        raised = [f for f, v in flags.items() if v]
        if celsius is None and all(v is None for v in flags.values()):
            return None
        evidence: dict[str, EvidenceValue] = {f"{metric}_c": celsius, "max_c": limit}
        evidence |= {f: v for f, v in flags.items() if v is not None}
        part = "driver LED" if lamp else "papan perangkat"
        told = (
            f"suhu {part} {fmt(celsius)} °C (batas {fmt(limit)} °C)" if celsius is not None else ""
        )
        if celsius is not None and celsius > limit:
            return Observation(True, evidence, f"Terlalu panas: {told}: periksa ventilasi/beban")
        if raised:
            names = {"thermal_derating": "menurunkan daya", "thermal_shutdown": "mati karena panas"}
            what = " dan ".join(names[f] for f in raised)
            severity: Severity | None = "major" if "thermal_shutdown" in raised else None
            summary = f"Driver LED {what}" + (f" ({told})" if told else "")
            return Observation(True, evidence, summary, severity=severity)
        return Observation(False, evidence, f"Suhu wajar: {told}" if told else "Suhu wajar")
