"""Telemetry samples -> InfluxDB line protocol: one conversion for the gateway and for central.

- measurement: the device kind (`streetlight`, `hotspot`);
- tags: `gateway`, `device`, `profile`, and `circuit`, `kelurahan`, `kecamatan` when known
  (an empty tag is left out); a table cell `TABLE.ROW.COLUMN` goes to a point of its own with
  the extra tags `table` and `row`;
- fields: numbers as floats (one type per field whatever the profile: InfluxDB refuses a field
  that changes type), booleans as 0.0/1.0 (so mean() is a share of time, sum() a count), text as
  string fields (InfluxDB keeps them; VictoriaMetrics stores 0), null left out;
- rates: a counter named in `[influxdb.rates]` also gets a derived field (per-second increase
  times `factor`, e.g. octets -> bit/s) from the previous value of the same series; none after a
  decrease (reset, wrap) or for the first value seen;
- time: the reading's, in milliseconds (written with precision `ms`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from firmware_config.telemetry_config import RateSpec
from uplink.contract import DeviceMeta, DeviceSamples, Value

PRECISION = "ms"  # influxdb_client.WritePrecision.MS

SeriesKey = tuple[str, str, str, str, str]  # gateway, device, table, row, counter


def unix_ms(sample: DeviceSamples) -> int:
    return round(sample.at.timestamp() * 1000)


def tags_of(gateway_id: str, device_id: str, meta: DeviceMeta) -> dict[str, str]:
    tags = {
        "gateway": gateway_id,
        "device": device_id,
        "profile": meta.profile,
        "circuit": meta.circuit or "",
        "kelurahan": meta.kelurahan,
        "kecamatan": meta.kecamatan,
    }
    return {k: v for k, v in tags.items() if v}


def field_value(value: Value) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return value


class RateTracker:
    """The last value and time of each counter series that has a rate."""

    def __init__(self, rates: Mapping[str, RateSpec], max_series: int = 200_000) -> None:
        self.rates = dict(rates)
        self._last: dict[SeriesKey, tuple[int, float]] = {}
        self._max = max_series

    def rate(self, key: SeriesKey, t_ms: int, value: float) -> tuple[str, float] | None:
        spec = self.rates.get(key[4])
        if spec is None:
            return None
        before = self._last.get(key)
        if before is not None and t_ms <= before[0]:
            return None  # an older or repeated sample (replay, duplicate): keep the newer mark
        if len(self._last) >= self._max and key not in self._last:
            self._last.clear()  # a bound on memory: rates restart, nothing else is lost
        self._last[key] = (t_ms, value)
        if before is None or value < before[1]:
            return None
        per_s = (value - before[1]) * 1000.0 / (t_ms - before[0])
        return spec.field, per_s * spec.factor


def sample_lines(
    gateway_id: str, sample: DeviceSamples, meta: DeviceMeta, rates: RateTracker
) -> list[str]:
    """The line-protocol lines of one sample (one point for scalars, one per table row)."""
    t_ms = unix_ms(sample)
    tags = tags_of(gateway_id, sample.device_id, meta)
    scalars: dict[str, float | str] = {}
    rows: dict[tuple[str, str], dict[str, float | str]] = {}
    for name, raw in sample.values.items():
        value = field_value(raw)
        if value is None:
            continue
        table, row, column = split_name(name)
        fields = scalars if table == "" else rows.setdefault((table, row), {})
        fields[column] = value
        if isinstance(value, float):
            derived = rates.rate((gateway_id, sample.device_id, table, row, column), t_ms, value)
            if derived is not None:
                fields[derived[0]] = derived[1]
    lines = [_line(meta.kind, tags, scalars, t_ms)] if scalars else []
    for (table, row), fields in rows.items():
        lines.append(_line(meta.kind, {**tags, "table": table, "row": row}, fields, t_ms))
    return [line for line in lines if line]


def split_name(name: str) -> tuple[str, str, str]:
    """`active_power` -> ('', '', 'active_power'); `interfaces.3.if_in_octets` -> (table, row,
    column). A row index may itself contain dots (a MAC address as six numbers)."""
    if "." not in name:
        return "", "", name
    table, _, rest = name.partition(".")
    row, _, column = rest.rpartition(".")
    if not row:
        return "", "", name
    return table, row, column


def _line(measurement: str, tags: dict[str, str], fields: dict[str, float | str], t: int) -> str:
    head = _escape(measurement, ", ")
    for k, v in sorted(tags.items()):
        head += f",{_escape(k, ',= ')}={_escape(v, ',= ')}"
    body = ",".join(f"{_escape(k, ',= ')}={_field(v)}" for k, v in fields.items() if _ok(v))
    return f"{head} {body} {t}" if body else ""


def _escape(text: str, chars: str) -> str:
    text = text.replace("\\", "\\\\").replace("\n", " ")
    for ch in chars:
        text = text.replace(ch, "\\" + ch)
    return text


def _field(value: float | str) -> str:
    if isinstance(value, float):
        return repr(value)
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{text}"'


def _ok(value: float | str) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
