"""power_deviation: a burning lamp draws far from what its rating gives at the commanded dim
level: a failing LED driver or part of the LEDs dead (too low), a wrong or faulty driver (too high).

Limits are shares of the expected power (rated W x dim %). Street-light CMSs use about 75..130 %
at full output; deep dimming is less exact, so wider shares apply at or below low_dim_pct, linearly
in between, and the band is never narrower than expected ± abs_tolerance_w.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import (
    commanded_on,
    fmt,
    has_all,
    has_any,
    number,
    rated_power,
    settings_as,
)
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue


class PowerDeviationSettings(RuleSettings):
    severity: Severity = "minor"
    raise_after: int = Field(5, ge=1, le=1000, description="Consecutive bad readings")
    clear_after: int = Field(3, ge=1, le=1000)
    full_dim_pct: float = Field(90.0, gt=0, le=100, description="At or above: the full-output band")
    full_low_share: float = Field(0.75, ge=0, le=1, description="Full output: lower limit")
    full_high_share: float = Field(1.30, ge=1, le=10, description="Full output: upper limit")
    low_dim_pct: float = Field(30.0, gt=0, le=100, description="At or below: the low-dim band")
    low_low_share: float = Field(0.50, ge=0, le=1, description="Low dim: lower limit")
    low_high_share: float = Field(2.00, ge=1, le=10, description="Low dim: upper limit")
    abs_tolerance_w: float = Field(3.0, ge=0, description="The band is at least expected ± this W")
    dark_share: float = Field(
        0.10, ge=0, le=1, description="Below this share of expected the lamp is dark (lamp_failure)"
    )

    @model_validator(mode="after")
    def _order(self) -> PowerDeviationSettings:
        if self.low_dim_pct >= self.full_dim_pct:
            raise ValueError("low_dim_pct must be below full_dim_pct")
        return self


def limits(expected_w: float, dim: float, s: PowerDeviationSettings) -> tuple[float, float]:
    """(low, high) W allowed for a lamp expected to draw expected_w at dim %."""
    if dim >= s.full_dim_pct:
        lo, hi = s.full_low_share, s.full_high_share
    elif dim <= s.low_dim_pct:
        lo, hi = s.low_low_share, s.low_high_share
    else:
        t = (dim - s.low_dim_pct) / (s.full_dim_pct - s.low_dim_pct)
        lo = s.low_low_share + t * (s.full_low_share - s.low_low_share)
        hi = s.low_high_share + t * (s.full_high_share - s.low_high_share)
    low = max(min(lo * expected_w, expected_w - s.abs_tolerance_w), 0.0)
    return low, max(hi * expected_w, expected_w + s.abs_tolerance_w)


class PowerDeviation:
    name: ClassVar[str] = "power_deviation"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = PowerDeviationSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return (
            device.kind in self.kinds
            and has_all(profile, "active_power")
            and has_any(profile, "dim_command", "dim_measured")
            and (device.rated_w is not None or has_all(profile, "nominal_power"))
        )

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, PowerDeviationSettings)
        power, rated = number(reading, "active_power"), rated_power(ctx.device, reading)[0]
        dim = number(reading, "dim_command")
        if dim is None:
            dim = number(reading, "dim_measured")
        if power is None or rated is None or dim is None or commanded_on(reading) is False:
            return None
        if dim <= 0:
            return None
        expected_w = rated * min(dim, 100.0) / 100.0
        if power < s.dark_share * expected_w:
            return None  # dark: lamp_failure's verdict, not a deviation
        low, high = limits(expected_w, dim, s)
        evidence: dict[str, EvidenceValue] = {
            "active_power_w": power,
            "expected_w": round(expected_w, 2),
            "low_w": round(low, 2),
            "high_w": round(high, 2),
            "dim_pct": dim,
            "rated_w": rated,
            "share_of_expected": round(power / expected_w, 3),
        }
        told = (
            f"{fmt(power)} W, seharusnya {fmt(expected_w)} W pada redup {fmt(dim, 0)} % "
            f"(batas {fmt(low)}-{fmt(high)} W)"
        )
        if power < low:
            return Observation(
                True, evidence, f"Daya lampu terlalu rendah: {told}: driver LED/LED sebagian rusak"
            )
        if power > high:
            return Observation(
                True, evidence, f"Daya lampu terlalu tinggi: {told}: periksa driver/rating lampu"
            )
        return Observation(False, evidence, f"Daya lampu wajar: {told}")
