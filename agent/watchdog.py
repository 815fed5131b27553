"""systemd's service notifications: READY=1 once the agent runs, WATCHDOG=1 only while the poll
loop makes progress, a STATUS= line for `systemctl status`, STOPPING=1 at the end.

With `WatchdogSec=` in the unit, systemd kills and restarts the agent when WATCHDOG=1 stops
coming: a blocked event loop sends nothing, and a stalled poll loop is withheld on purpose.
Outside systemd (NOTIFY_SOCKET unset) all of this is a no-op. The protocol itself comes from
the systemd-watchdog package (it reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence
from functools import partial

import structlog
from systemd_watchdog.systemd_watchdog import WatchDog

from agent.clock import Clock
from agent.scheduler import PollJob, Scheduler

log = structlog.get_logger(__name__)

Health = Callable[[], str | None]  # None while healthy, else a short reason
MIN_STALL_S = 30.0
MAX_TICK_S = 15.0


class _Notifier(WatchDog):
    """The library's WatchDog has no STOPPING=1; it is sent with the library's own sender."""

    def stopping(self) -> None:
        self._send("STOPPING=1\n")


def stall_window_s(jobs: Sequence[PollJob]) -> float:
    """How long a working scheduler may go without completing any poll: a device loop ends a
    poll at least every interval + deadline (a poll never outlives its deadline)."""
    return max(MIN_STALL_S, min(job.interval_s + job.deadline_s for job in jobs))


class PollProgress:
    """Health of the poll loop: some device completed a poll (and handed on its reading)
    within the stall window; always healthy when there is nothing to poll."""

    def __init__(self, scheduler: Scheduler, clock: Clock) -> None:
        self.scheduler, self.clock = scheduler, clock
        self.window_s = stall_window_s(scheduler.jobs) if scheduler.jobs else 0.0
        self._since = clock.monotonic()  # until the first poll ends

    def __call__(self) -> str | None:
        if not self.scheduler.jobs:
            return None
        last = self.scheduler.last_progress
        idle = self.clock.monotonic() - (self._since if last is None else last)
        return None if idle <= self.window_s else f"no poll completed for {idle:.0f} s"


def status_line(devices: int, faults_active: int, uplink_connected: bool | None) -> str:
    """E.g. '12 devices, 2 faults active, uplink connected'; None: no broker configured."""
    uplink = {True: "uplink connected", False: "uplink down", None: "no uplink"}
    return f"{devices} devices, {faults_active} faults active, {uplink[uplink_connected]}"


class Watchdog:
    """`run(stop)` beside the agent's parts: `health` is asked before each WATCHDOG=1, `status`
    gives the STATUS= line; `tick_s` defaults to a quarter of WatchdogSec (at most 15 s)."""

    def __init__(
        self,
        health: Health,
        clock: Clock,
        status: Callable[[], str] | None = None,
        *,
        tick_s: float | None = None,
        notify_socket: str | None = None,
    ) -> None:
        self._health, self._clock, self._status = health, clock, status
        self._address = notify_socket or os.environ.get("NOTIFY_SOCKET")
        self._tick_s = tick_s
        self._send_failed = False
        self._withheld = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    async def run(self, stop: asyncio.Event) -> None:
        """Notify until `stop` is set (or cancellation); returns at once outside systemd."""
        if not self._address:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)  # never stall the event loop on a busy systemd
        notifier = _Notifier(sock=sock, addr=self._address)
        # several pings per watchdog period (systemd asks for at least two)
        tick_s = self._tick_s or min(notifier.timeout / 1e6 / 4, MAX_TICK_S)
        self._send(notifier.ready)
        try:
            while not stop.is_set():
                self._beat(notifier)
                await self._pause(stop, tick_s)
        finally:
            self._send(notifier.stopping)
            sock.close()

    def _beat(self, notifier: _Notifier) -> None:
        """WATCHDOG=1 if healthy (else withheld, logged once per stall), then STATUS=."""
        problem = self._health()
        if problem is None:
            self._send(notifier.notify)
            if self._withheld:
                log.info("watchdog_resumed")
        elif not self._withheld:
            log.error("watchdog_withheld", reason=problem)
        self._withheld = problem is not None
        line = self._status() if self._status is not None else "running"
        if problem is not None:
            line = f"poll loop stalled ({problem}); {line}"
        self._send(partial(notifier.status, line))

    async def _pause(self, stop: asyncio.Event, tick_s: float) -> None:
        """One tick on the (injectable) clock, cut short by `stop`."""
        waits = [
            asyncio.ensure_future(self._clock.sleep(tick_s)),
            asyncio.ensure_future(stop.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    def _send(self, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError as exc:  # systemd gone or busy: say so once, keep running
            if not self._send_failed:
                log.warning("sd_notify_failed", error=str(exc))
            self._send_failed = True
        else:
            self._send_failed = False
