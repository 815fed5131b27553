"""no_clients: nobody on the hotspot's WiFi during service hours at a site that normally has
users then (a broken SSID, DHCP or captive portal keeps people away without any link going down).

The rule learns the site: for each WIB hour of the day, the mean client count of each of the last
`history_days` days; the baseline is the median of those means (today excluded). It judges only
when the baseline expects at least `min_expected` clients. A site that stays empty for more than
half the history learns that it is empty, and the fault clears by itself.
"""

from __future__ import annotations

import statistics
from datetime import datetime, time, timedelta
from typing import Any, ClassVar

from pydantic import Field

from agent.faults.astro import WIB
from agent.faults.rule import Observation, RuleContext, RuleSettings
from agent.faults.rules._common import as_number, fmt, has_all, rows, settings_as, value_list
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class NoClientsSettings(RuleSettings):
    raise_after: int = Field(1000, ge=1, le=1000, description="Left high: raise_after_s decides")
    raise_after_s: float | None = Field(1800.0, gt=0, description="Empty for this long to raise")
    service_start: str = Field("06:00", pattern=HHMM, description="Service hours start (WIB)")
    service_end: str = Field("22:00", pattern=HHMM, description="Service hours end (WIB)")
    min_expected: float = Field(
        2.0, gt=0, description="Judge only when the site normally has at least this many clients"
    )
    history_days: int = Field(7, ge=1, le=28, description="Days of client counts kept")
    min_history_days: int = Field(3, ge=1, le=28, description="Days needed before judging")


def in_service(at: datetime, start: str, end: str) -> bool:
    now = at.astimezone(WIB).time()
    t0, t1 = time.fromisoformat(start), time.fromisoformat(end)
    return t0 <= now < t1 if t0 <= t1 else (now >= t0 or now < t1)


def learn(memory: dict[str, Any], at: datetime, clients: float, keep_days: int) -> None:
    """Add this count to today's hour, and forget days older than keep_days."""
    local = at.astimezone(WIB)
    day, hour = local.date().isoformat(), f"{local.hour:02d}"
    history = memory.get("history")
    if not isinstance(history, dict):
        history = {}
    oldest = (local.date() - timedelta(days=keep_days)).isoformat()
    history = {d: h for d, h in history.items() if d >= oldest and isinstance(h, dict)}
    slot = history.setdefault(day, {}).get(hour)
    total, n = slot if isinstance(slot, list) and len(slot) == 2 else [0.0, 0]
    history[day][hour] = [float(total) + clients, int(n) + 1]
    memory["history"] = history


def baseline(memory: dict[str, Any], at: datetime) -> tuple[float | None, int]:
    """Median over past days of this hour's mean client count, and how many days had one."""
    local = at.astimezone(WIB)
    today, hour = local.date().isoformat(), f"{local.hour:02d}"
    history = memory.get("history")
    means: list[float] = []
    if isinstance(history, dict):
        for day, hours in history.items():
            slot = hours.get(hour) if isinstance(hours, dict) and day != today else None
            if isinstance(slot, list) and len(slot) == 2 and slot[1]:
                means.append(float(slot[0]) / float(slot[1]))
    return (statistics.median(means) if means else None), len(means)


class NoClients:
    name: ClassVar[str] = "no_clients"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = NoClientsSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(profile, "wireless_aps", "client_count")

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, NoClientsSettings)
        aps = rows(reading, "wireless_aps")
        counts = [as_number(r.get("client_count")) for r in aps.values()]
        known = [c for c in counts if c is not None]
        if not known:
            return None
        clients = sum(known)
        expected, days = baseline(ctx.memory, ctx.now)
        learn(ctx.memory, ctx.now, clients, s.history_days)
        if not in_service(ctx.now, s.service_start, s.service_end):
            return None
        ssids = sorted({str(r["ssid"]) for r in aps.values() if r.get("ssid")})
        evidence: dict[str, EvidenceValue] = {
            "clients": clients,
            "usual_clients": round(expected, 1) if expected is not None else None,
            "history_days": days,
            "ssids": value_list(ssids),
        }
        if clients > 0:
            return Observation(False, evidence, f"{fmt(clients, 0)} klien WiFi terhubung")
        if expected is None or days < s.min_history_days or expected < s.min_expected:
            return None  # a site that is often empty at this hour: nothing to say
        summary = (
            f"Tidak ada klien WiFi (biasanya sekitar {fmt(expected, 0)} pada jam ini): "
            f"SSID {', '.join(ssids) or '?'} mungkin bermasalah; periksa AP/DHCP/portal"
        )
        return Observation(True, evidence, summary)
