"""Recent readings of each device, in memory, for the small charts of the device page.

A ReadingSink: the view adapter adds `record` to the agent's sinks. Only a few numbers per
reading are kept (keyvalues.chart_numbers), `points` per device, so 500 devices cost little.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from agent.web.keyvalues import chart_numbers
from collectors.reading import Reading
from firmware_config.models import Device


@dataclass(frozen=True)
class HistoryPoint:
    at: datetime
    reachable: bool
    values: dict[str, float] = field(default_factory=dict)


class ReadingHistory:
    def __init__(self, devices: dict[str, Device], points: int = 120) -> None:
        self._devices = devices
        self._points = points
        self._series: dict[str, deque[HistoryPoint]] = {}

    async def record(self, reading: Reading) -> None:
        device = self._devices.get(reading.device_id)
        if device is None:
            return
        series = self._series.setdefault(reading.device_id, deque(maxlen=self._points))
        series.append(HistoryPoint(reading.at, reading.reachable, chart_numbers(device, reading)))

    def of(self, device_id: str) -> list[HistoryPoint]:
        return list(self._series.get(device_id, ()))
