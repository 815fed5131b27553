"""systemd notifications: READY=1, WATCHDOG=1 only while the poll loop makes progress, STATUS=,
STOPPING=1; received on a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.scheduler import PollJob, Scheduler
from agent.watchdog import MIN_STALL_S, PollProgress, Watchdog, stall_window_s, status_line
from collectors.reading import Reading
from tests.snmp_servers import Snmpsim
from tests.test_deploy import write_gateway
from tests.test_scheduler import PROFILE, FakeCollector, device


class NotifySocket:
    """What systemd listens on: a bound AF_UNIX datagram socket (short path: 108-byte limit)."""

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp")
        self.path = str(Path(self.folder.name) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)

    def take(self) -> list[str]:
        """Every message received so far, one entry per line (a datagram may hold several)."""
        out: list[str] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            out += data.decode().splitlines()

    def close(self) -> None:
        self.sock.close()
        self.folder.cleanup()


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


class Health:
    def __init__(self) -> None:
        self.problem: str | None = None

    def __call__(self) -> str | None:
        return self.problem


async def test_ready_then_watchdog_only_while_healthy_then_stopping(notify: NotifySocket) -> None:
    clock, health, stop = FakeClock(), Health(), asyncio.Event()
    dog = Watchdog(health, clock, lambda: status_line(3, 1, True))
    assert dog.enabled  # WatchdogSec=60: a ping every 15 s
    task = asyncio.create_task(dog.run(stop))
    await clock.advance(0)
    assert notify.take() == [
        "READY=1",
        "WATCHDOG=1",
        "STATUS=3 devices, 1 faults active, uplink connected",
    ]
    await clock.advance(15)
    assert notify.take()[0] == "WATCHDOG=1"

    health.problem = "no poll completed for 130 s"  # the poll loop stalls
    for _ in range(4):
        await clock.advance(15)
        sent = notify.take()
        assert "WATCHDOG=1" not in sent
        assert sent == [
            "STATUS=poll loop stalled (no poll completed for 130 s); "
            "3 devices, 1 faults active, uplink connected"
        ]
    health.problem = None  # progress again before systemd gave up
    await clock.advance(15)
    assert notify.take()[0] == "WATCHDOG=1"

    stop.set()
    await asyncio.wait_for(task, 1)
    assert notify.take() == ["STOPPING=1"]


async def test_stopping_is_sent_when_cancelled(notify: NotifySocket) -> None:
    clock = FakeClock()
    task = asyncio.create_task(Watchdog(Health(), clock).run(asyncio.Event()))
    await clock.advance(0)
    assert notify.take() == ["READY=1", "WATCHDOG=1", "STATUS=running"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert notify.take() == ["STOPPING=1"]


async def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    dog = Watchdog(Health(), FakeClock())
    assert not dog.enabled
    await asyncio.wait_for(dog.run(asyncio.Event()), 1)  # returns at once


async def pings_at(clock: FakeClock, notify: NotifySocket, seconds: int) -> list[int]:
    """The seconds (from start) at which WATCHDOG=1 was sent, watching for `seconds`."""
    stop = asyncio.Event()
    task = asyncio.create_task(Watchdog(Health(), clock).run(stop))
    times = []
    for t in range(seconds + 1):
        await clock.advance(0 if t == 0 else 1)
        times += [t] * notify.take().count("WATCHDOG=1")
    stop.set()
    await asyncio.wait_for(task, 1)
    return times


async def test_ping_interval_follows_watchdog_usec(
    notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")  # WatchdogSec=20
    assert await pings_at(FakeClock(), notify, 20) == [0, 5, 10, 15, 20]
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert await pings_at(FakeClock(), notify, 30) == [0, 15, 30]
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.delenv("WATCHDOG_USEC")  # no WatchdogSec=: a status line every 15 s
    assert await pings_at(FakeClock(), notify, 30) == [0, 15, 30]


async def test_abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"siaran-edge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        clock, stop = FakeClock(), asyncio.Event()
        task = asyncio.create_task(Watchdog(Health(), clock).run(stop))
        await clock.advance(0)
        stop.set()
        await asyncio.wait_for(task, 1)
        assert sock.recv(100) == b"READY=1\n"


async def test_unreachable_systemd_does_not_stop_the_agent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    clock, stop = FakeClock(), asyncio.Event()
    task = asyncio.create_task(Watchdog(Health(), clock).run(stop))
    await clock.advance(60)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 1)


def test_stall_window() -> None:
    clock = FakeClock()
    jobs = [
        PollJob(device(n, interval_s=i), PROFILE, FakeCollector(clock))
        for n, i in (("a", 300.0), ("b", 60.0))
    ]
    assert stall_window_s(jobs) == 120.0  # b: a poll every 60 s, each may take up to 60 s
    fast = [PollJob(device("c", interval_s=5.0), PROFILE, FakeCollector(clock))]
    assert stall_window_s(fast) == MIN_STALL_S


async def test_poll_progress_follows_the_scheduler() -> None:
    clock = FakeClock()
    flowing = asyncio.Event()
    flowing.set()

    async def sink(reading: Reading) -> None:
        await flowing.wait()  # cleared: a sink that hangs, so no poll completes

    jobs = [PollJob(device(n, interval_s=60.0), PROFILE, FakeCollector(clock)) for n in "ab"]
    scheduler = Scheduler(clock, jobs, sink, jitter=0.0)
    health = PollProgress(scheduler, clock)
    assert health.window_s == 120.0
    task = asyncio.create_task(scheduler.run())
    for _ in range(10):
        await clock.advance(30)
        assert health() is None
    flowing.clear()
    await clock.advance(120)  # the last polls completed at t=300, 120 s ago
    assert health() is None
    await clock.advance(30)
    assert health() == "no poll completed for 150 s"
    flowing.set()
    await clock.advance(1)
    assert health() is None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_poll_progress_before_the_first_poll_and_without_devices() -> None:
    clock = FakeClock()

    async def sink(reading: Reading) -> None:
        pass

    assert PollProgress(Scheduler(clock, [], sink), clock)() is None  # nothing to poll
    jobs = [PollJob(device("a"), PROFILE, FakeCollector(clock))]
    assert PollProgress(Scheduler(clock, jobs, sink), clock)() is None  # counted from start


def test_agent_process_notifies_systemd(tmp_path: Path, snmpsim_agent: Snmpsim) -> None:
    """The real `siaran-edge run`: READY=1, WATCHDOG=1 while polling, STOPPING=1 on SIGTERM."""
    config = write_gateway(tmp_path, snmpsim_agent, tmp_path / "state")
    notify = NotifySocket()
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000")
    env.pop("WATCHDOG_PID", None)
    cmd = [sys.executable, "-m", "agent.cli", "--log-format", "json"]
    proc = subprocess.Popen(
        [*cmd, "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent: list[str] = []
        deadline = time.monotonic() + 20
        while sent.count("WATCHDOG=1") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            sent += notify.take()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        sent += notify.take()
    finally:
        proc.kill()
        notify.close()
    assert proc.returncode == 0, err
    assert sent, "nothing on NOTIFY_SOCKET: is Watchdog.run started in Agent.run?"
    assert sent[0] == "READY=1", sent
    assert sent.count("WATCHDOG=1") >= 3, err
    assert "STATUS=1 devices, 0 faults active, no uplink" in sent
    assert sent[-1] == "STOPPING=1"
