"""controller_alarm: the street-light controller's own failure flags for the LED driver (gear),
the relay and the driver's communication bus (uCIFI 3416/7, /9, /12)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings
from agent.faults.rules._common import flag, fmt, has_any, number, settings_as
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

FLAGS = {
    "gear_failure": "driver LED rusak",
    "relay_failure": "relai rusak",
    "gear_comm_failure": "driver LED tidak berkomunikasi (DALI)",
}


class ControllerAlarmSettings(RuleSettings):
    raise_after: int = Field(2, ge=1, le=1000)


class ControllerAlarm:
    name: ClassVar[str] = "controller_alarm"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight"})
    settings_model: ClassVar[type[RuleSettings]] = ControllerAlarmSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_any(profile, *FLAGS)

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        settings_as(settings, ControllerAlarmSettings)
        flags = {name: flag(reading, name) for name in FLAGS}
        if all(v is None for v in flags.values()):
            return None
        evidence: dict[str, EvidenceValue] = {n: v for n, v in flags.items() if v is not None}
        raised = [n for n, v in flags.items() if v]
        if not raised:
            return Observation(False, evidence, "Pengendali tidak melaporkan kerusakan")
        told = []
        for name in raised:
            code = number(reading, "gear_failure_reason") if name == "gear_failure" else None
            evidence_code = f" (kode {fmt(code, 0)})" if code else ""
            told.append(FLAGS[name] + evidence_code)
            if code is not None:
                evidence["gear_failure_reason"] = code
        return Observation(True, evidence, "Pengendali melaporkan: " + ", ".join(told))
