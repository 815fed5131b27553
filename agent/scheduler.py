"""Poll each device at its interval: jittered start, no drift, no overlapping polls of one device.

Each device has its own task, so a slow or dead device never delays the others; a poll that
overruns its slot makes the scheduler skip the missed slots (counted) instead of piling up.

Jitter: a device's first poll starts at a random point within `jitter` x its interval. The
default, 1.0, spreads the polls evenly over the whole interval, so the CPU works them off as
they come; with a small jitter (0.1) each round's polls arrive as a burst and the last readings
of a burst are late by the time it takes to work it off (23-26 s at p99 for 2,500 devices at
60 s, against under a second spread; docs/performance.md, "Scale").
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from agent.clock import Clock
from collectors.base import PolledCollector
from collectors.reading import Reading, ReadingError
from firmware_config.models import Device
from firmware_config.profiles import Profile

log = structlog.get_logger(__name__)

ReadingSink = Callable[[Reading], Awaitable[None]]


@dataclass(frozen=True)
class PollJob:
    device: Device
    profile: Profile
    collector: PolledCollector

    @property
    def interval_s(self) -> float:
        assert self.device.interval_s is not None, "loader fills interval_s"
        return self.device.interval_s

    @property
    def deadline_s(self) -> float:
        """A safety net above the collector's own timeouts: a poll never hangs a device's loop."""
        tries = (self.device.retries or 0) + 1
        return max(self.interval_s, (self.device.timeout_s or 2.0) * tries * 4)


@dataclass
class DeviceStats:
    polls: int = 0
    failures: int = 0
    missed_slots: int = 0
    last_duration_s: float = 0.0
    max_lateness_s: float = 0.0


@dataclass
class Scheduler:
    clock: Clock
    jobs: list[PollJob]
    sink: ReadingSink
    jitter: float = 1.0  # share of the interval over which first polls are spread
    rng: random.Random = field(default_factory=random.Random)
    stats: dict[str, DeviceStats] = field(default_factory=dict)
    # when a poll last completed (reading handed on) or run() began; read by the watchdog
    last_progress: float | None = None

    async def run(self) -> None:
        """Poll until cancelled."""
        self.last_progress = self.clock.monotonic()
        async with asyncio.TaskGroup() as group:
            for job in self.jobs:
                group.create_task(self._device_loop(job), name=f"poll:{job.device.id}")

    async def _device_loop(self, job: PollJob) -> None:
        stats = self.stats.setdefault(job.device.id, DeviceStats())
        interval = job.interval_s
        start = self.clock.monotonic() + self.rng.uniform(0, self.jitter * interval)
        slot = 0
        while True:
            due = start + slot * interval
            await self.clock.sleep(due - self.clock.monotonic())
            stats.max_lateness_s = max(stats.max_lateness_s, self.clock.monotonic() - due)
            reading = await poll_guarded(job, self.clock)
            if _cancel_swallowed():
                raise asyncio.CancelledError  # the loop must end, or the agent cannot stop
            stats.polls += 1
            stats.failures += 0 if reading.ok else 1
            stats.last_duration_s = reading.duration_s
            try:
                await self.sink(reading)
            except Exception:  # a sink's bug must not stop polling this device
                log.exception("reading_sink_failed", device=job.device.id)
            self.last_progress = self.clock.monotonic()
            slot += 1
            behind = math.floor((self.clock.monotonic() - start) / interval) + 1 - slot
            if behind > 0:
                stats.missed_slots += behind
                slot += behind


def _cancel_swallowed() -> bool:
    """This task was cancelled, yet the poll returned: a library swallowed the CancelledError.
    Python 3.11's asyncio.wait_for does when its future completes as the cancel comes (fixed in
    3.12); gufo-snmp waits with it on every request."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def poll_guarded(job: PollJob, clock: Clock) -> Reading:
    """One poll that always returns a Reading, whatever the collector does."""
    started = clock.monotonic()
    at = clock.now()
    try:
        async with asyncio.timeout(job.deadline_s):
            return await job.collector.poll(job.device, job.profile)
    except TimeoutError:
        error = ReadingError(code="timeout", message=f"poll took over {job.deadline_s:.0f} s")
    except Exception as exc:  # a collector bug must not kill the loop; it is reported as data
        log.exception("collector_failed", device=job.device.id)
        error = ReadingError(code="protocol", message=f"collector error: {type(exc).__name__}")
    return Reading(
        device_id=job.device.id,
        at=at,
        reachable=False,
        errors=[error],
        duration_s=clock.monotonic() - started,
    )
