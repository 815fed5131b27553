"""rebooted and reboot_loop (many reboots within a window), from the device's uptime.

A reboot: uptime went backwards since the last reading, or is shorter than the time since that
reading (it restarted in between, even if uptime has grown past the old value). Hotspots are
judged on hrSystemUptime (the host) when read, else sysUpTime (the agent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import (
    epoch,
    fmt_duration,
    has_any,
    local_time,
    mem_number,
    number,
    recent,
    settings_as,
)
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

TIMETICKS_WRAP_S = 2**32 / 100  # sysUpTime wraps after 497 days: not a reboot
SLACK_S = 30.0  # plus 1 % of the time between readings: clocks, poll duration


@dataclass(frozen=True)
class Uptime:
    metric: str
    seconds: float
    previous: float | None
    rebooted: bool


def check_uptime(reading: Reading, ctx: RuleContext) -> Uptime | None:
    """Compare the reading's uptime with the one in memory, and remember it."""
    names = ("host_uptime", "uptime") if ctx.device.kind == "hotspot" else ("uptime",)
    found = [(n, v) for n in names if (v := number(reading, n)) is not None]
    if not found:
        return None
    metric, seconds = found[0]
    memory: dict[str, Any] = ctx.memory
    now = epoch(ctx.now)
    previous = mem_number(memory, "uptime") if memory.get("metric") == metric else None
    last_at = mem_number(memory, "at")
    memory.update(metric=metric, uptime=seconds, at=now)
    if previous is None or last_at is None:
        return Uptime(metric, seconds, previous, False)
    elapsed = now - last_at
    slack = SLACK_S + 0.01 * max(elapsed, 0.0)  # device and gateway clocks differ a little
    wrap_error = abs(previous + elapsed - TIMETICKS_WRAP_S - seconds)
    if previous > TIMETICKS_WRAP_S * 0.9 and wrap_error < slack:
        return Uptime(metric, seconds, previous, False)
    backwards = seconds < previous - 1.0
    booted_since_last = elapsed > 0 and seconds + slack < elapsed  # even if uptime grew meanwhile
    return Uptime(metric, seconds, previous, backwards or booted_since_last)


def _uptime_evidence(up: Uptime, ctx: RuleContext) -> dict[str, EvidenceValue]:
    booted = ctx.now - timedelta(seconds=up.seconds)
    return {
        "uptime_metric": up.metric,
        "uptime_s": up.seconds,
        "previous_uptime_s": up.previous,
        "booted_at": booted.isoformat(timespec="seconds"),
    }


def _what(ctx: RuleContext) -> str:
    return "Pengendali lampu" if ctx.device.kind == "streetlight" else "Perangkat"


class RebootedSettings(RuleSettings):
    severity: Severity = "minor"
    raise_after: int = Field(1, ge=1, le=1000, description="One restart is one event")
    clear_after: int = Field(1, ge=1, le=1000, description="Cleared by the next reading")


class Rebooted:
    name: ClassVar[str] = "rebooted"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight", "hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = RebootedSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_any(profile, "uptime", "host_uptime")

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        up = check_uptime(reading, ctx)
        if up is None:
            return None
        evidence = _uptime_evidence(up, ctx)
        if not up.rebooted:
            return Observation(False, evidence, f"Uptime {fmt_duration(up.seconds)}")
        booted = ctx.now - timedelta(seconds=up.seconds)
        before = fmt_duration(up.previous or 0.0)
        summary = (
            f"{_what(ctx)} restart sekitar {local_time(booted)} "
            f"(uptime kini {fmt_duration(up.seconds)}, sebelumnya {before})"
        )
        return Observation(True, evidence, summary)


class RebootLoopSettings(RuleSettings):
    raise_after: int = Field(1, ge=1, le=1000, description="The window already debounces")
    clear_after: int = Field(1, ge=1, le=1000)
    max_reboots: int = Field(3, ge=2, le=100, description="Restarts within the window")
    window_s: float = Field(3600.0, gt=0, le=7 * 86400, description="Counting window")


class RebootLoop:
    name: ClassVar[str] = "reboot_loop"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight", "hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = RebootLoopSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_any(profile, "uptime", "host_uptime")

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, RebootLoopSettings)
        up = check_uptime(reading, ctx)
        now = epoch(ctx.now)
        reboots = recent(ctx.memory.get("reboots"), now, s.window_s)
        if up is not None and up.rebooted:
            reboots.append([now - min(up.seconds, s.window_s), 1.0])
            reboots = recent(reboots, now, s.window_s)
        ctx.memory["reboots"] = reboots
        if up is None:
            return None
        count = len(reboots)
        evidence = _uptime_evidence(up, ctx) | {
            "reboots_in_window": count,
            "window_s": s.window_s,
            "max_reboots": s.max_reboots,
        }
        window = fmt_duration(s.window_s)
        if count >= s.max_reboots:
            summary = (
                f"{_what(ctx)} restart berulang: {count} kali dalam {window}: "
                "periksa catu daya/adaptor dan firmware"
            )
            return Observation(True, evidence, summary)
        return Observation(False, evidence, f"Restart {count} kali dalam {window}")
