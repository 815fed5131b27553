"""The few values a technician looks at first, taken from a reading: lamp on/off, power,
voltage for street lights; clients and the uplink interface for hotspots."""

from __future__ import annotations

from dataclasses import dataclass

from agent.faults.rules.interfaces import OPER, find_interface
from collectors.reading import Reading, Value
from firmware_config.models import Device

# Numbers drawn as charts on a device page, by device kind ("poll_s": the poll's duration).
CHART_METRICS: dict[str, tuple[str, ...]] = {
    "streetlight": ("active_power", "supply_voltage", "gear_temperature", "poll_s"),
    "hotspot": ("clients", "board_temperature", "poll_s"),
}


@dataclass(frozen=True)
class KeyValues:
    lamp_on: bool | None = None
    active_power_w: float | None = None
    supply_voltage_v: float | None = None
    dim_percent: float | None = None
    clients: int | None = None
    uplink_if: str | None = None
    uplink_status: str | None = None  # IF-MIB ifOperStatus name: up, down, ...


def _number(value: Value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _flag(value: Value) -> bool | None:
    return value if isinstance(value, bool) else None


def client_count(reading: Reading) -> int | None:
    """Clients of every AP interface together, or the rows of the registration table."""
    aps = reading.tables.get("wireless_aps", {})
    counts = [_number(row.get("client_count")) for row in aps.values()]
    known = [c for c in counts if c is not None]
    if known:
        return int(sum(known))
    clients = reading.tables.get("wireless_clients")
    return len(clients) if clients is not None else None


def key_values(device: Device, reading: Reading | None) -> KeyValues:
    if reading is None or not reading.reachable:
        return KeyValues(uplink_if=device.uplink_if)
    v = reading.values
    if device.kind == "streetlight":
        return KeyValues(
            lamp_on=_flag(v.get("lamp_on")),
            active_power_w=_number(v.get("active_power")),
            supply_voltage_v=_number(v.get("supply_voltage")),
            dim_percent=_number(v.get("dim_command")),
        )
    status = None
    if device.uplink_if is not None:
        found = find_interface(reading.tables.get("interfaces", {}), device.uplink_if)
        if found is not None:
            oper = _number(found[1].get("if_oper_status"))
            status = OPER.get(int(oper), str(int(oper))) if oper is not None else None
        else:
            status = "not_found"
    return KeyValues(
        clients=client_count(reading), uplink_if=device.uplink_if, uplink_status=status
    )


def chart_numbers(device: Device, reading: Reading) -> dict[str, float]:
    """The numbers of one reading worth keeping for the device page's charts."""
    out: dict[str, float] = {"poll_s": round(reading.duration_s, 4)}
    if not reading.reachable:
        return out
    for name in CHART_METRICS.get(device.kind, ()):
        if name == "clients":
            clients = client_count(reading)
            if clients is not None:
                out[name] = float(clients)
        elif name != "poll_s":
            number = _number(reading.values.get(name))
            if number is not None:
                out[name] = number
    return out
