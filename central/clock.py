"""Time as an object (the protocol of agent.clock, copied so central needs nothing of the
gateway side but the contract). Tests pass agent.clock.FakeClock, which fits it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def sleep_unless(clock: Clock, seconds: float, stop: asyncio.Event) -> bool:
    """Sleep on the clock; True when stop was set meanwhile (returns at once then)."""
    if stop.is_set():
        return True
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return stop.is_set()


async def pause(seconds: float, *events: asyncio.Event) -> None:
    """Wait (real time) until one of the events is set or the time is up."""
    if any(e.is_set() for e in events):
        return
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
