"""Hotspot load (HOST-RESOURCES-MIB): cpu_high (mean hrProcessorLoad) and memory_high (the RAM
row of hrStorageTable) above a share for a while (raise_after_s)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import as_number, fmt, fmt_duration, has_all, rows, settings_as
from collectors.reading import Reading, Value
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

HR_STORAGE = "1.3.6.1.2.1.25.2.1."
RAM, OTHER = HR_STORAGE + "2", HR_STORAGE + "1"
RAM_NAMES = {"memory", "ram", "main memory", "physical memory", "real memory"}
# net-snmp on Linux counts buffers and page cache as used RAM and lists them apart
RECLAIMABLE_NAMES = {"memory buffers", "cached memory"}


class LoadSettings(RuleSettings):
    severity: Severity = "minor"
    raise_after: int = Field(1000, ge=1, le=1000, description="Left high: raise_after_s decides")
    raise_after_s: float | None = Field(600.0, gt=0, description="High for this long to raise")
    clear_after: int = Field(3, ge=1, le=1000)
    max_pct: float = Field(90.0, gt=0, le=100, description="Above this share (%) is high")


def _raise_note(s: LoadSettings) -> str:
    return f" selama {fmt_duration(s.raise_after_s)}" if s.raise_after_s else ""


class CpuHigh:
    name: ClassVar[str] = "cpu_high"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = LoadSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(profile, "processors", "cpu_load")

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, LoadSettings)
        loads = [
            v
            for r in rows(reading, "processors").values()
            if (v := as_number(r.get("cpu_load"))) is not None
        ]
        if not loads:
            return None
        mean = sum(loads) / len(loads)
        evidence: dict[str, EvidenceValue] = {
            "cpu_load_pct": round(mean, 1),
            "processors": len(loads),
            "max_pct": s.max_pct,
        }
        told = f"CPU {fmt(mean)} % (batas {fmt(s.max_pct)} %)"
        if mean > s.max_pct:
            return Observation(
                True, evidence, f"Beban {told}{_raise_note(s)}: periksa trafik/proses"
            )
        return Observation(False, evidence, f"Beban {told}")


def ram_usage(table: dict[str, dict[str, Value]]) -> tuple[float, float, str] | None:
    """(used, size) in allocation units of the RAM row, less buffers/cache, and its description."""
    ram: dict[str, Value] | None = None
    reclaimable = 0.0
    for row in table.values():
        kind = str(row.get("storage_type") or "").lstrip(".")
        descr = str(row.get("storage_descr") or "").strip().casefold()
        if ram is None and (kind == RAM or descr in RAM_NAMES):
            ram = row
        elif descr in RECLAIMABLE_NAMES and kind in (OTHER, ""):
            reclaimable += as_number(row.get("storage_used")) or 0.0
    if ram is None:
        return None
    used, size = as_number(ram.get("storage_used")), as_number(ram.get("storage_size"))
    if used is None or size is None or size <= 0:
        return None
    return max(used - reclaimable, 0.0), size, str(ram.get("storage_descr") or "RAM")


class MemoryHigh:
    name: ClassVar[str] = "memory_high"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = LoadSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(
            profile, "storage", "storage_used", "storage_size"
        )

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, LoadSettings)
        found = ram_usage(rows(reading, "storage"))
        if found is None:
            return None
        used, size, descr = found
        pct = 100.0 * used / size
        evidence: dict[str, EvidenceValue] = {
            "memory_used_pct": round(pct, 1),
            "storage_descr": descr,
            "used_units": used,
            "size_units": size,
            "max_pct": s.max_pct,
        }
        told = f"memori {fmt(pct)} % terpakai (batas {fmt(s.max_pct)} %)"
        if pct > s.max_pct:
            summary = f"Memori hampir penuh: {told}{_raise_note(s)}: periksa proses/restart AP"
            return Observation(True, evidence, summary)
        return Observation(False, evidence, f"Memori wajar: {told}")
