"""cycling: a lamp switching off and on again and again (a failing lamp, driver or photocell).

Switch-offs are counted from the controller's switch_count (it sees every one, even between
polls) or, without it, from lamp_on going from true to false between readings.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import (
    counter_delta,
    epoch,
    flag,
    fmt_duration,
    has_any,
    mem_number,
    number,
    recent,
    settings_as,
)
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue


class CyclingSettings(RuleSettings):
    severity: Severity = "minor"
    raise_after: int = Field(1, ge=1, le=1000, description="The window already debounces")
    clear_after: int = Field(2, ge=1, le=1000)
    max_switches: int = Field(4, ge=2, le=1000, description="Switch-offs within the window")
    window_s: float = Field(3600.0, gt=0, le=7 * 86400, description="Counting window")
    use_controller_flag: bool = Field(
        True, description="The controller's cycling_failure flag counts"
    )


class Cycling:
    name: ClassVar[str] = "cycling"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = CyclingSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_any(
            profile, "switch_count", "lamp_on", "cycling_failure"
        )

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, CyclingSettings)
        now = epoch(ctx.now)
        count, on = number(reading, "switch_count"), flag(reading, "lamp_on")
        events = recent(ctx.memory.get("events"), now, s.window_s)
        switches, source = 0.0, "switch_count"
        if count is not None:
            previous = mem_number(ctx.memory, "count")
            if previous is not None:
                switches = counter_delta(previous, count) or 0.0  # None: counter reset
            ctx.memory["count"] = count
        elif on is not None:
            source = "lamp_on"
            switches = 1.0 if ctx.memory.get("on") is True and on is False else 0.0
        else:
            source = ""
        if on is not None:
            ctx.memory["on"] = on
        if switches > 0:
            events.append([now, switches])
        ctx.memory["events"] = events
        controller = flag(reading, "cycling_failure") if s.use_controller_flag else None
        if not source and controller is None:
            return None
        total = int(sum(n for _, n in events))
        evidence: dict[str, EvidenceValue] = {
            "switch_offs_in_window": total,
            "window_s": s.window_s,
            "max_switches": s.max_switches,
            "counted_from": source or None,
            "switch_count": count,
            "controller_cycling_failure": controller,
        }
        window = fmt_duration(s.window_s)
        if total >= s.max_switches:
            summary = f"Lampu berkedip/hidup-mati {total} kali dalam {window}: periksa lampu/driver"
            return Observation(True, evidence, summary)
        if controller:
            return Observation(True, evidence, "Pengendali melaporkan lampu hidup-mati berulang")
        return Observation(False, evidence, f"Lampu hidup-mati {total} kali dalam {window}")
