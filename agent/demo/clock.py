"""The demo's clock: it starts at a chosen moment and runs `speed` times faster than real time.

It fits `agent.clock.Clock`: the agent, central and the SIARAN
sandbox share one, so a 30-minute SLA passes in 30 s at speed 60 and every timestamp they write
agrees. Only the parts that are given this clock speed up; network timeouts (SNMP, MQTT,
HTTP) stay in real time.

    clock = ScaledClock(start=datetime(2026, 11, 28, 10, 30, tzinfo=UTC), speed=60)
    await clock.sleep(60)        # one demo minute: one real second
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class ScaledClock:
    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        real: Callable[[], float] = time.monotonic,
        real_start: float | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._real = real
        # another process can make the same clock: time.monotonic is system-wide on Linux
        self.real_start = real() if real_start is None else real_start

    def elapsed(self) -> float:
        """Demo seconds since the start."""
        return (self._real() - self.real_start) * self.speed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())

    def monotonic(self) -> float:
        return self.elapsed()

    def real_seconds(self, demo_seconds: float) -> float:
        return demo_seconds / self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / self.speed)
