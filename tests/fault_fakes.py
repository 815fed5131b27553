"""Fakes for the fault engine's tests: small rules, a config on disk, a harness with a fake clock.

The real rules live in agent/faults/rules/; these only have to satisfy the Rule protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from agent.clock import FakeClock
from agent.faults.engine import FaultEngine
from agent.faults.rule import (
    LAMP_FAILURE,
    UNREACHABLE,
    Observation,
    Rule,
    RuleContext,
    RuleSettings,
)
from collectors.reading import Reading, ReadingError
from firmware_config.loader import LoadedConfig, load_config
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import FaultDraft

POLL_S = 60.0


class FakeUnreachable:
    name: ClassVar[str] = UNREACHABLE
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight", "hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = RuleSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return True

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation:
        if reading.reachable:
            return Observation(bad=False)
        return Observation(
            bad=True,
            evidence={"error": reading.errors[0].code if reading.errors else "unknown"},
            summary=f"{ctx.device.id} tidak menjawab",
        )


class LampSettings(RuleSettings):
    min_w: float = Field(5.0, ge=0, description="Below this the lamp is dark")


class FakeLampFailure:
    """Dark when active_power < min_w; cannot tell without the value."""

    name: ClassVar[str] = LAMP_FAILURE
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = LampSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return True

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        assert isinstance(settings, LampSettings)
        watts = reading.values.get("active_power")
        if not isinstance(watts, float):
            return None
        return Observation(
            bad=watts < settings.min_w,
            evidence={"active_power": watts},
            summary=f"Lampu tiang {ctx.device.pole_id} mati",
        )


class FakeUplinkDown:
    """A hotspot's uplink is down when uplink_up is False; counts its verdicts in its memory."""

    name: ClassVar[str] = "uplink_down"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = RuleSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return True

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        up = reading.values.get("uplink_up")
        if not isinstance(up, bool):
            return None
        seen = ctx.memory["seen"] = int(ctx.memory.get("seen", 0)) + 1
        severity = reading.values.get("severity")
        return Observation(
            bad=not up,
            evidence={"uplink_up": up, "seen": seen},
            summary=f"Uplink hotspot {ctx.device.id} putus",
            severity="critical" if severity == "critical" else None,
        )


FAKE_RULES: dict[str, Rule] = {
    r.name: r for r in (FakeUnreachable(), FakeLampFailure(), FakeUplinkDown())
}


def write_config(
    folder: Path,
    circuits: Mapping[str, int] | None = None,
    hotspots: int = 0,
    rules: str = "",
) -> Path:
    """A gateway config with `n` lamps per circuit (lamp-A-1 ...) and hotspots (ap-1 ...)."""
    lines = [
        'state_dir = "state"',
        "[gateway]",
        'id = "gw-uji"',
        'site = "Panel PJU uji"',
        "location = { lat = -6.3431, lon = 106.7372 }",
        "[poll]",
        f"interval_s = {POLL_S}",
        "[snmp_credentials.c]",
        'community = "public"',
    ]
    n = 0
    for circuit, count in (circuits or {}).items():
        for i in range(1, count + 1):
            n += 1
            lines += [
                "[[device]]",
                f'id = "lamp-{circuit}-{i}"',
                'kind = "streetlight"',
                'profile = "pju-generic"',
                f'address = "10.0.0.{n}:161"',
                'credentials = "c"',
                f"location = {{ lat = -6.34{n:02d}, lon = 106.73, address = 'Jl. Uji {n}' }}",
                f'pole_id = "P-{circuit}-{i}"',
                f'circuit = "{circuit}"',
                "rated_w = 60",
            ]
    for i in range(1, hotspots + 1):
        lines += [
            "[[device]]",
            f'id = "ap-{i}"',
            'kind = "hotspot"',
            'profile = "snmp-host"',
            f'address = "10.0.1.{i}:161"',
            'credentials = "c"',
            f"location = {{ lat = -6.35, lon = 106.7{i} }}",
        ]
    path = folder / "gateway.toml"
    path.write_text("\n".join(lines) + "\n" + rules)
    return path


def load(folder: Path, **kwargs: object) -> LoadedConfig:
    return load_config(write_config(folder, **kwargs))  # type: ignore[arg-type]


class Harness:
    """An engine on a fake clock whose emitted drafts are collected in `events`."""

    def __init__(
        self,
        config: LoadedConfig,
        clock: FakeClock | None = None,
        rules: Mapping[str, Rule] = FAKE_RULES,
    ) -> None:
        self.config = config
        self.clock = clock or FakeClock()
        self.rules = rules
        self.events: list[FaultDraft] = []
        self.failing = False
        self.engine = FaultEngine(config, rules, self.clock, self.emit)

    async def emit(self, draft: FaultDraft) -> None:
        if self.failing:
            raise RuntimeError("outbox full")
        self.events.append(draft)

    async def open(self) -> Harness:
        await self.engine.open()
        return self

    async def restart(self) -> None:
        """A new engine on the same state directory (events collected so far are kept)."""
        await self.engine.close()
        self.engine = FaultEngine(self.config, self.rules, self.clock, self.emit)
        await self.engine.open()

    def lamp(self, device_id: str, on: bool = True) -> Reading:
        watts = 60.0 if on else 0.0
        return Reading(
            device_id=device_id, at=self.clock.now(), reachable=True,
            values={"active_power": watts},
        )  # fmt: skip

    def hotspot(self, device_id: str, up: bool = True, severity: str | None = None) -> Reading:
        return Reading(
            device_id=device_id, at=self.clock.now(), reachable=True,
            values={"uplink_up": up, "severity": severity},
        )  # fmt: skip

    def dead(self, device_id: str, **values: bool) -> Reading:
        """No answer (values: what a careless collector might still have filled in)."""
        return Reading(
            device_id=device_id, at=self.clock.now(), reachable=False, values=dict(values),
            errors=[ReadingError(code="timeout", message="no answer")],
        )  # fmt: skip

    async def poll(self, *readings: Reading, step_s: float = POLL_S) -> None:
        """One poll round: feed the readings, tick, then let `step_s` pass."""
        for r in readings:
            await self.engine.on_reading(r)
        await self.engine.tick()
        await self.clock.advance(step_s)

    async def idle(self, seconds: float, step_s: float = 5.0) -> None:
        """Let time pass with ticks only (no readings)."""
        end = self.clock.now() + timedelta(seconds=seconds)
        while self.clock.now() < end:
            await self.clock.advance(step_s)
            await self.engine.tick()

    def take(self) -> list[tuple[str, str, str]]:
        """(device_id, fault_type, state) of the events so far, then forget them."""
        out: list[tuple[str, str, str]] = [
            (e.device_id, e.fault_type, e.state) for e in self.events
        ]
        self.events.clear()
        return out
