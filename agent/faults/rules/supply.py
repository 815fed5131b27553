"""The lamp's mains supply: supply_voltage (PLN nominal 220 V, ±10 %) and low_power_factor."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import (
    commanded_on,
    fmt,
    has_all,
    number,
    rated_power,
    settings_as,
)
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue


class SupplyVoltageSettings(RuleSettings):
    severity: Severity = "minor"
    clear_after: int = Field(3, ge=1, le=1000)
    min_v: float = Field(198.0, ge=0, description="Lowest acceptable supply (220 V - 10 %)")
    max_v: float = Field(242.0, gt=0, description="Highest acceptable supply (220 V + 10 %)")

    @model_validator(mode="after")
    def _order(self) -> SupplyVoltageSettings:
        if self.min_v >= self.max_v:
            raise ValueError("min_v must be below max_v")
        return self


class SupplyVoltage:
    name: ClassVar[str] = "supply_voltage"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = SupplyVoltageSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(profile, "supply_voltage")

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, SupplyVoltageSettings)
        volts = number(reading, "supply_voltage")
        if volts is None:
            return None
        evidence: dict[str, EvidenceValue] = {
            "supply_voltage_v": volts,
            "min_v": s.min_v,
            "max_v": s.max_v,
        }
        band = f"{fmt(volts)} V (batas {fmt(s.min_v)}-{fmt(s.max_v)} V)"
        if volts < s.min_v:
            return Observation(
                True, evidence, f"Tegangan PLN rendah: {band}: periksa jaringan/panel"
            )
        if volts > s.max_v:
            return Observation(
                True, evidence, f"Tegangan PLN tinggi: {band}: periksa jaringan/panel"
            )
        return Observation(False, evidence, f"Tegangan PLN normal: {band}")


class LowPowerFactorSettings(RuleSettings):
    severity: Severity = "minor"
    raise_after: int = Field(5, ge=1, le=1000)
    clear_after: int = Field(3, ge=1, le=1000)
    min_pf: float = Field(0.5, ge=0, le=1, description="Lowest acceptable power factor")
    min_load_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Judged only above this share of rated W (pf is low at light load)",
    )
    min_power_w: float = Field(5.0, ge=0, description="...and above this many W")


class LowPowerFactor:
    name: ClassVar[str] = "low_power_factor"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = LowPowerFactorSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(profile, "power_factor", "active_power")

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, LowPowerFactorSettings)
        pf, power = number(reading, "power_factor"), number(reading, "active_power")
        rated = rated_power(ctx.device, reading)[0]
        floor = max(s.min_power_w, s.min_load_share * rated if rated else 0.0)
        if pf is None or power is None or commanded_on(reading) is False or power < floor:
            return None  # off or lightly loaded: the power factor means little
        evidence: dict[str, EvidenceValue] = {
            "power_factor": pf,
            "min_pf": s.min_pf,
            "active_power_w": power,
        }
        told = f"faktor daya {fmt(abs(pf), 2)} (batas {fmt(s.min_pf, 2)}) pada {fmt(power)} W"
        if abs(pf) < s.min_pf:
            return Observation(True, evidence, f"Faktor daya rendah: {told}: periksa driver LED")
        return Observation(False, evidence, f"Faktor daya wajar: {told}")
