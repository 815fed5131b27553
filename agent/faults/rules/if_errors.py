"""interface_errors: interfaces receiving or sending errored packets at a high rate, from the
ifInErrors/ifOutErrors counters between two readings (Counter32 wraps undone, resets skipped)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import (
    as_number,
    counter_delta,
    epoch,
    fmt,
    has_all,
    mem_number,
    names_list,
    rows,
    settings_as,
    value_list,
)
from agent.faults.rules.interfaces import if_label
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

COLUMNS = ("if_in_errors", "if_out_errors")


class InterfaceErrorsSettings(RuleSettings):
    severity: Severity = "minor"
    clear_after: int = Field(3, ge=1, le=1000)
    max_per_min: float = Field(
        10.0, gt=0, description="Errored packets per minute (in + out) above which it is bad"
    )
    min_interval_s: float = Field(
        20.0, gt=0, description="Readings closer than this are not compared (too noisy)"
    )
    max_interval_s: float = Field(
        3600.0, gt=0, description="Readings further apart than this are not compared"
    )


class InterfaceErrors:
    name: ClassVar[str] = "interface_errors"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = InterfaceErrorsSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(profile, "interfaces", *COLUMNS)

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, InterfaceErrorsSettings)
        table = rows(reading, "interfaces")
        now = epoch(ctx.now)
        current: dict[str, list[float | None]] = {
            i: [as_number(r.get(c)) for c in COLUMNS] for i, r in table.items()
        }
        if not any(v is not None for pair in current.values() for v in pair):
            return None
        last_at = mem_number(ctx.memory, "at")
        if last_at is not None and 0 < now - last_at < s.min_interval_s:
            return None  # keep the older counters: a longer span gives a steadier rate
        previous: Any = ctx.memory.get("counters")
        ctx.memory.update(at=now, counters=current)
        if last_at is None or not isinstance(previous, dict) or now - last_at > s.max_interval_s:
            return None
        minutes = (now - last_at) / 60.0
        rates: dict[str, float] = {}
        for index, pair in current.items():
            before = previous.get(index)
            if not isinstance(before, list) or len(before) != len(COLUMNS):
                continue
            deltas = [
                counter_delta(float(b), a)
                for b, a in zip(before, pair, strict=True)
                if isinstance(b, int | float) and a is not None
            ]
            if deltas and all(d is not None for d in deltas):
                rates[if_label(index, table[index])] = sum(d or 0.0 for d in deltas) / minutes
        if not rates:
            return None
        bad = {name: r for name, r in rates.items() if r > s.max_per_min}
        worst = max(rates.values())
        evidence: dict[str, EvidenceValue] = {
            "max_per_min": s.max_per_min,
            "interval_s": round(now - last_at, 1),
            "worst_per_min": round(worst, 2),
            "bad_interfaces": value_list(f"{n}: {fmt(r)}/menit" for n, r in sorted(bad.items())),
        }
        if bad:
            told = names_list([f"{n} {fmt(r)}/menit" for n, r in sorted(bad.items())])
            summary = (
                f"Galat antarmuka tinggi: {told} (batas {fmt(s.max_per_min)}/menit): "
                "periksa kabel/konektor/interferensi"
            )
            return Observation(True, evidence, summary)
        return Observation(False, evidence, f"Galat antarmuka wajar (tertinggi {fmt(worst)}/menit)")
