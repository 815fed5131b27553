"""Small helpers shared by the rules: typed access to readings, profiles and memory, and
Indonesian number, duration and time formatting for the summaries."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from agent.faults.astro import WIB
from agent.faults.rule import RuleSettings
from collectors.reading import Reading, Value
from firmware_config.models import Device
from firmware_config.profiles import Profile

S = TypeVar("S", bound=RuleSettings)

COUNTER32 = 2**32


def settings_as(settings: RuleSettings, model: type[S]) -> S:
    """The rule's own settings model (the engine may hand a plain RuleSettings)."""
    if isinstance(settings, model):
        return settings
    return model.model_validate(settings.model_dump(exclude_unset=True))


def profile_names(profile: Profile) -> frozenset[str]:
    """Every metric, field, table and column name a profile reads."""
    names = {m.name for m in profile.metrics} | {f.name for f in profile.fields}
    names |= {t.name for t in profile.tables}
    names |= {c.name for t in profile.tables for c in t.columns}
    return frozenset(names)


def has_all(profile: Profile, *names: str) -> bool:
    return set(names) <= profile_names(profile)


def has_any(profile: Profile, *names: str) -> bool:
    return bool(set(names) & profile_names(profile))


def as_number(value: Value) -> float | None:
    """A finite number (bools are not numbers here), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def number(reading: Reading, name: str) -> float | None:
    return as_number(reading.values.get(name))


def flag(reading: Reading, name: str) -> bool | None:
    value = reading.values.get(name)
    return value if isinstance(value, bool) else None


def rows(reading: Reading, table: str) -> dict[str, dict[str, Value]]:
    return reading.tables.get(table, {})


def rated_power(device: Device, reading: Reading) -> tuple[float | None, str]:
    """The lamp's wattage at 100 %: the inventory's rated_w, else the controller's nominal_power."""
    if device.rated_w is not None:
        return device.rated_w, "inventory"
    nominal = number(reading, "nominal_power")
    if nominal is not None and nominal > 0:
        return nominal, "controller"
    return None, ""


def commanded_on(reading: Reading) -> bool | None:
    """Whether the controller drives the lamp (lamp_on, dim_command); None when neither is read."""
    on, dim = flag(reading, "lamp_on"), number(reading, "dim_command")
    if on is False or (dim is not None and dim <= 0):
        return False
    if on is True or (dim is not None and dim > 0):
        return True
    return None


def counter_delta(previous: float, current: float, bits: int = 32) -> float | None:
    """Increase of a counter; a wrap of a `bits` counter is undone, a reset gives None."""
    if current >= previous:
        return current - previous
    span = float(2**bits)
    wrapped = current + span - previous
    if previous <= span and wrapped < span / 4:
        return wrapped
    return None


def epoch(at: datetime) -> float:
    return at.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def recent(events: Any, now_s: float, window_s: float) -> list[list[float]]:
    """Memory events [[t, n], ...] no older than the window (malformed entries dropped)."""
    kept: list[list[float]] = []
    if isinstance(events, list):
        for event in events:
            if (
                isinstance(event, list)
                and len(event) == 2
                and all(isinstance(x, int | float) for x in event)
                and now_s - window_s < event[0] <= now_s
            ):
                kept.append([float(event[0]), float(event[1])])
    return kept


def mem_number(memory: dict[str, Any], key: str) -> float | None:
    value = memory.get(key)
    return as_number(value) if isinstance(value, int | float) else None


# --- Indonesian text -----------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    """60.4 -> '60,4'; 60.0 -> '60'; 1234.5 -> '1.234,5' (Indonesian separators)."""
    text = f"{value:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(",", "_").replace(".", ",").replace("_", ".")


def fmt_duration(seconds: float) -> str:
    """'45 detik', '12 menit', '2 jam 5 menit', '3 hari 4 jam'."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} detik"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} menit"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} jam {minutes} menit" if minutes else f"{hours} jam"
    days, hours = divmod(hours, 24)
    return f"{days} hari {hours} jam" if hours else f"{days} hari"


def local_time(at: datetime) -> str:
    """'17:54 WIB'."""
    return f"{at.astimezone(WIB):%H:%M} WIB"


def value_list(items: Iterable[Value]) -> list[Value]:
    """A list fit for evidence (list is invariant: list[str] is no list[Value])."""
    return list(items)


def names_list(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit})" if len(names) > limit else "")
