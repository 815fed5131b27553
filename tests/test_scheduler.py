"""Scheduler: interval, jitter, no drift, no overlap; slow and broken devices stay isolated."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random

from agent.clock import FakeClock
from agent.scheduler import PollJob, Scheduler
from collectors.reading import Reading
from firmware_config.models import Device, Location
from firmware_config.profiles import Profile

PROFILE = Profile(name="t", protocol="snmp", kinds=["hotspot"])


def device(device_id: str, interval_s: float = 60.0) -> Device:
    return Device(
        id=device_id,
        kind="hotspot",
        profile="t",
        address="127.0.0.1:161",
        interval_s=interval_s,
        timeout_s=2.0,
        retries=1,
        location=Location(lat=-6.3, lon=106.7),
    )


class FakeCollector:
    """Records when each device was polled; a device can be made slow (in fake time) or broken."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: dict[str, list[float]] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.slow_s: dict[str, float] = {}
        self.broken: set[str] = set()

    async def poll(self, device: Device, profile: Profile) -> Reading:
        self.calls.setdefault(device.id, []).append(self.clock.monotonic())
        self.in_flight[device.id] = self.in_flight.get(device.id, 0) + 1
        self.max_in_flight[device.id] = max(
            self.max_in_flight.get(device.id, 0), self.in_flight[device.id]
        )
        try:
            if device.id in self.broken:
                raise RuntimeError("bug in collector")
            if device.id in self.slow_s:
                await self.clock.sleep(self.slow_s[device.id])
            return Reading(
                device_id=device.id, at=self.clock.now(), reachable=True, values={"x": 1}
            )
        finally:
            self.in_flight[device.id] -= 1

    async def close(self) -> None:
        pass


async def run_for(clock: FakeClock, scheduler: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    for _ in range(int(seconds)):
        await clock.advance(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_default_jitter_spreads_first_polls_over_the_whole_interval() -> None:
    clock = FakeClock()
    collector = FakeCollector(clock)

    async def sink(r: Reading) -> None:
        pass

    jobs = [PollJob(device(f"d{i}"), PROFILE, collector) for i in range(40)]
    await run_for(clock, Scheduler(clock, jobs, sink, rng=random.Random(3)), 61)
    starts = sorted(calls[0] for calls in collector.calls.values())
    assert len(starts) == 40 and all(0 <= s <= 60.0 for s in starts)
    # spread over the interval, not bunched at its start: every quarter has some first polls
    quarters = {int(s // 15) for s in starts}
    assert quarters == {0, 1, 2, 3}


async def test_polls_at_interval_with_bounded_jitter_and_no_drift() -> None:
    clock = FakeClock()
    collector = FakeCollector(clock)
    got: list[Reading] = []

    async def sink(r: Reading) -> None:
        got.append(r)

    jobs = [PollJob(device(f"d{i}"), PROFILE, collector) for i in range(5)]
    scheduler = Scheduler(clock, jobs, sink, jitter=0.1, rng=random.Random(7))
    await run_for(clock, scheduler, 600)
    starts = [calls[0] for calls in collector.calls.values()]
    assert all(0 <= s <= 6.0 for s in starts)
    assert len(set(starts)) == 5  # jitter spreads the first polls
    for calls in collector.calls.values():
        assert len(calls) == 10
        gaps = [b - a for a, b in itertools.pairwise(calls)]
        assert all(abs(g - 60.0) < 1e-9 for g in gaps)  # no drift
    assert len(got) == 50


async def test_slow_device_skips_slots_without_overlap_and_never_delays_others() -> None:
    clock = FakeClock()
    collector = FakeCollector(clock)
    collector.slow_s["slow"] = 150.0  # each poll spans two and a half intervals

    async def sink(r: Reading) -> None:
        pass

    jobs = [
        PollJob(device("slow"), PROFILE, collector),
        PollJob(device("fast"), PROFILE, collector),
    ]
    scheduler = Scheduler(clock, jobs, sink, jitter=0.0)
    await run_for(clock, scheduler, 600)
    assert collector.max_in_flight["slow"] == 1
    slow = collector.calls["slow"]
    assert [b - a for a, b in itertools.pairwise(slow)] == [180.0, 180.0, 180.0]
    assert scheduler.stats["slow"].missed_slots >= 6
    fast = collector.calls["fast"]
    assert fast == [60.0 * i for i in range(11)]  # 0 s .. 600 s inclusive


async def test_a_broken_collector_is_a_reading_not_a_crash() -> None:
    clock = FakeClock()
    collector = FakeCollector(clock)
    collector.broken.add("bad")
    got: list[Reading] = []

    async def sink(r: Reading) -> None:
        got.append(r)

    jobs = [PollJob(device("bad"), PROFILE, collector), PollJob(device("good"), PROFILE, collector)]
    await run_for(clock, Scheduler(clock, jobs, sink, jitter=0.0), 130)
    bad = [r for r in got if r.device_id == "bad"]
    assert len(bad) == 3 and not bad[0].reachable
    assert bad[0].errors[0].code == "protocol" and "RuntimeError" in bad[0].errors[0].message
    assert len([r for r in got if r.device_id == "good"]) == 3


async def test_a_failing_sink_does_not_stop_polling() -> None:
    clock = FakeClock()
    collector = FakeCollector(clock)

    async def sink(r: Reading) -> None:
        raise ValueError("sink bug")

    scheduler = Scheduler(clock, [PollJob(device("d"), PROFILE, collector)], sink, jitter=0.0)
    await run_for(clock, scheduler, 130)
    assert len(collector.calls["d"]) == 3


class SwallowingCollector(FakeCollector):
    """A poll that swallows the CancelledError, as Python 3.11's asyncio.wait_for (inside
    gufo-snmp) does when its future completes just as the cancel comes."""

    async def poll(self, device: Device, profile: Profile) -> Reading:
        with contextlib.suppress(asyncio.CancelledError):  # the answer came as the cancel did
            await self.clock.sleep(5.0)
        return Reading(device_id=device.id, at=self.clock.now(), reachable=True, values={"x": 1})


async def test_a_cancel_swallowed_by_a_poll_still_stops_the_scheduler() -> None:
    clock = FakeClock()
    got: list[Reading] = []

    async def sink(r: Reading) -> None:
        got.append(r)

    jobs = [PollJob(device("ap-1"), PROFILE, SwallowingCollector(clock))]
    task = asyncio.create_task(Scheduler(clock, jobs, sink, jitter=0.0).run())
    await clock.advance(1.0)  # the first poll is under way
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2.0)  # real time: it must not go on for ever
    assert task in done and task.cancelled()
    assert got == []  # the reading of the cancelled poll is not handed on
