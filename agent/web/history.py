"""Recent readings of each device, in memory, for the small charts of the device page.

A ReadingSink: the view adapter adds `record` to the agent's sinks. Only a few numbers per
reading are kept (keyvalues.chart_numbers), `points` per device, in a compact form (about
210 B a point instead of 440 B as HistoryPoint: 1,000 devices x 120 points are 25 MB).
"""

from __future__ import annotations

from array import array
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


@dataclass(frozen=True, slots=True)
class _Stored:
    """A HistoryPoint as kept: its names one shared tuple, its numbers a flat array."""

    at: datetime
    reachable: bool
    names: tuple[str, ...]
    numbers: array[float]

    def point(self) -> HistoryPoint:
        return HistoryPoint(
            self.at, self.reachable, dict(zip(self.names, self.numbers, strict=True))
        )


class ReadingHistory:
    def __init__(self, devices: dict[str, Device], points: int = 120) -> None:
        self._devices = devices
        self._points = points
        self._series: dict[str, deque[_Stored]] = {}
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per set of names

    async def record(self, reading: Reading) -> None:
        device = self._devices.get(reading.device_id)
        if device is None:
            return
        series = self._series.setdefault(reading.device_id, deque(maxlen=self._points))
        numbers = chart_numbers(device, reading)
        names = self._names.setdefault(tuple(numbers), tuple(numbers))
        series.append(_Stored(reading.at, reading.reachable, names, array("d", numbers.values())))

    def of(self, device_id: str) -> list[HistoryPoint]:
        return [stored.point() for stored in self._series.get(device_id, ())]
