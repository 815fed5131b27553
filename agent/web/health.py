"""The gateway's own health for the overview: uptime, CPU, memory, disk, temperature, clock.

Every value comes from /proc or /sys (psutil): cheap reads, cached for a couple of seconds so
a page reload storm costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
CACHE_S = 2.0


@dataclass(frozen=True)
class GatewayHealth:
    uptime_s: float  # since the board booted
    agent_uptime_s: float  # since this agent process started
    cpu_percent: float
    memory_percent: float
    disk_percent: float | None  # of the state directory's file system
    temperature_c: float | None  # None when the board reports none
    clock_synced: bool


def board_temperature() -> float | None:
    """The SoC temperature: psutil's sensors, else the first thermal zone, else None."""
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is not None:
        try:
            found = sensors()
        except (OSError, RuntimeError):
            found = {}
        for entries in found.values():
            for entry in entries:
                if entry.current:
                    return float(entry.current)
    try:
        return int(THERMAL_ZONE.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


class HealthProbe:
    def __init__(self, state_dir: Path, clock_synced: Callable[[], bool]) -> None:
        self._state_dir = state_dir
        self._synced = clock_synced
        self._process = psutil.Process()
        self._cached: tuple[float, GatewayHealth] | None = None
        psutil.cpu_percent(interval=None)  # primes the counter: the next call has a baseline

    def read(self) -> GatewayHealth:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < CACHE_S:
            return self._cached[1]
        try:
            disk: float | None = psutil.disk_usage(str(self._state_dir)).percent
        except OSError:
            disk = None
        wall = time.time()
        health = GatewayHealth(
            uptime_s=max(wall - psutil.boot_time(), 0.0),
            agent_uptime_s=max(wall - self._process.create_time(), 0.0),
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_percent=psutil.virtual_memory().percent,
            disk_percent=disk,
            temperature_c=board_temperature(),
            clock_synced=self._synced(),
        )
        self._cached = (now, health)
        return health
