"""Settings and helpers shared by the rules that need to know whether it is night."""

from __future__ import annotations

from pydantic import Field

from agent.faults.astro import MAX_OFFSET_MIN, ExpectedLight, expected_light
from agent.faults.rule import RuleContext, RuleSettings
from collectors.reading import Reading
from uplink.contract import EvidenceValue


class LightScheduleSettings(RuleSettings):
    """When a lamp should burn: sunset + sunset_offset_min .. sunrise + sunrise_offset_min."""

    sunset_offset_min: float = Field(
        0.0,
        ge=-MAX_OFFSET_MIN,
        le=MAX_OFFSET_MIN,
        description="Minutes after sunset (negative: before) from which the lamp counts as on",
    )
    sunrise_offset_min: float = Field(
        0.0,
        ge=-MAX_OFFSET_MIN,
        le=MAX_OFFSET_MIN,
        description="Minutes after sunrise (negative: before) until which it counts as on",
    )
    use_photocell: bool = Field(
        False, description="Trust the controller's photocell (daylight) over the sun when read"
    )


def expected(reading: Reading, ctx: RuleContext, s: LightScheduleSettings) -> ExpectedLight:
    loc = ctx.device.location
    return expected_light(
        loc.lat,
        loc.lon,
        ctx.now,
        s.sunset_offset_min,
        s.sunrise_offset_min,
        daylight=reading.values.get("daylight"),
        use_photocell=s.use_photocell,
    )


def light_evidence(light: ExpectedLight) -> dict[str, EvidenceValue]:
    evidence: dict[str, EvidenceValue] = {
        "expected_on": light.on,
        "expected_by": light.source,
        "expected_why": light.reason,
    }
    if light.window.sunset is not None and light.window.sunrise is not None:
        evidence["sunset"] = light.window.sunset.isoformat(timespec="minutes")
        evidence["sunrise"] = light.window.sunrise.isoformat(timespec="minutes")
    return evidence
