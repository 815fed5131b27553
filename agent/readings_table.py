"""The table `siaran-edge run --once` prints: one block per device, the quickest wiring check."""

from __future__ import annotations

from collectors.reading import Reading, Value
from firmware_config.models import Device
from firmware_config.profiles import Profile


def format_value(value: Value, unit: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()


def readings_table(
    readings: list[Reading], devices: dict[str, Device], profiles: dict[str, Profile]
) -> str:
    header = f"{'DEVICE':<20} {'KIND':<11} {'PROFILE':<18} {'STATE':<11} {'MS':>6}"
    lines = [header, "-" * len(header)]
    for reading in sorted(readings, key=lambda r: r.device_id):
        device = devices[reading.device_id]
        profile = profiles[device.profile]
        state = "ok" if reading.ok else ("errors" if reading.reachable else "UNREACHABLE")
        lines.append(
            f"{device.id:<20} {device.kind:<11} {profile.name:<18} {state:<11} "
            f"{reading.duration_s * 1000:>6.0f}"
        )
        units = {m.name: m.unit for m in (*profile.metrics, *profile.fields)}
        values = [f"{k}={format_value(v, units.get(k, ''))}" for k, v in reading.values.items()]
        lines += _wrap(values, indent="    ")
        for name, rows in reading.tables.items():
            columns = sorted({c for row in rows.values() for c in row})
            listed = ", ".join(columns)
            listed = listed if len(listed) < 60 else listed[:57] + "..."
            lines.append(f"    table {name}: {len(rows)} rows ({listed})")
        lines += [f"    ! {e.code}: {e.message}" for e in reading.errors]
    return "\n".join(lines)


def _wrap(items: list[str], indent: str, width: int = 100) -> list[str]:
    lines: list[str] = []
    current = indent
    for item in items:
        if len(current) + len(item) + 2 > width and current.strip():
            lines.append(current.rstrip())
            current = indent
        current += item + "  "
    if current.strip():
        lines.append(current.rstrip())
    return lines
