"""Bytes the outbox writes to disk per hour, online and offline, in accelerated time.

    python bench/outbox_disk.py [--devices 500] [--hours 1] [--speed 600]

A gateway with N devices polled every 60 s (one telemetry batch per cycle) and a few faults an
hour, run through the real Uplink and Outbox (SQLite on the disk under --dir) with a fake link:
- online:          the link is up and acknowledges at once;
- offline:         the broker is away for the whole period (everything goes to the store);
- replay:          the broker comes back and the offline backlog is sent (deletions);
- write-all:       online, but with the memory bound at 0: every batch written then deleted,
                   as peers do (the baseline the design avoids).
Measured from /proc/self/io: `write_bytes` (bytes this process caused to be sent to the storage
layer, i.e. the SD card) and `wchar` (bytes passed to write() calls). Prints a table, writes
bench/results/outbox_disk.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_config.models import BrokerConfig
from firmware_config.uplink_config import OutboxConfig
from uplink.contract import DeviceSamples, FaultDraft, TelemetryDraft
from uplink.mqtt_link import Link, LinkError, LinkOptions, MessageHandler
from uplink.publisher import GatewayInfo, Uplink

RESULTS = Path(__file__).resolve().parent / "results" / "outbox_disk.json"
T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)


class AcceleratedClock:
    """Simulated time running `speed` times faster than real time."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._real0 = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self.speed

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class InstantLink:
    """A broker that is either away (connect fails) or acknowledges every publish at once."""

    def __init__(self, up: Callable[[], bool]) -> None:
        self._up = up
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def connect(self) -> None:
        if not self._up():
            raise LinkError("broker away")

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self._closed.done():
            fut.set_exception(LinkError("closed"))
        else:
            fut.set_result(0)
        return fut

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]:
        return [1 for _ in topics]

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def disconnect(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


async def poll(cond: Callable[[], bool]) -> None:
    while True:
        if cond():
            return
        await asyncio.sleep(0.001)


def drained(uplink: Uplink) -> bool:
    s = uplink.stats()
    return s.connected and s.faults_pending == 0 and s.telemetry_pending == 0


def io_counters() -> dict[str, int]:
    out = {}
    with open("/proc/self/io") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key.strip()] = int(value)
    return out


def batch(devices: int, cycle: int, at: datetime) -> TelemetryDraft:
    return TelemetryDraft(
        samples=[
            DeviceSamples(
                device_id=f"pju-{d:04d}",
                at=at,
                values={
                    "power_w": 70.0 + (d + cycle) % 7,
                    "voltage_v": 221.5,
                    "current_a": 0.32,
                    "lamp_on": True,
                    "dim_pct": 100,
                    "temp_c": 41.5,
                },
            )
            for d in range(devices)
        ]
    )


def fault(i: int, at: datetime) -> FaultDraft:
    return FaultDraft(
        device_id=f"pju-{i:04d}",
        device_kind="streetlight",
        fault_type="lamp_out",
        state="raised",
        severity="major",
        first_seen=at,
        observed_at=at,
        clock_synced=True,
        circuit="PNL-07/A",
        evidence={"power_w": 0.0, "lamp_on": True},
    )


@dataclass
class Result:
    scenario: str
    simulated_hours: float
    telemetry_batches: int
    faults: int
    payload_bytes: int
    write_bytes: int
    wchar: int
    db_file_bytes: int
    wal_file_bytes: int
    real_seconds: float

    @property
    def per_hour(self) -> float:
        return self.write_bytes / self.simulated_hours


async def scenario(
    name: str,
    state: Path,
    *,
    devices: int,
    hours: float,
    speed: float,
    faults_per_hour: int,
    broker_up: bool,
    memory_bytes: int,
) -> Result:
    clock = AcceleratedClock(speed)
    up_flag = {"up": broker_up}
    uplink = Uplink(
        "gw-bench",
        BrokerConfig(),
        OutboxConfig(telemetry_memory_bytes=memory_bytes),
        state,
        lambda: GatewayInfo("bench", "bench", devices, True),
        clock=clock,
        link_factory=lambda o, h: _link(o, h, lambda: up_flag["up"]),
        backoff_min_s=1.0,
        backoff_max_s=60.0,
    )
    await uplink.open()
    runner = asyncio.create_task(uplink.run())
    if broker_up:
        await poll(lambda: uplink.stats().connected)
    cycles = round(hours * 60)
    n_faults = round(hours * faults_per_hour)
    fault_every = max(1, cycles // max(1, n_faults))
    payload = 0
    made_faults = 0
    before = io_counters()
    real0 = time.monotonic()
    for cycle in range(cycles):
        await clock.sleep(cycle * 60.0 - clock.monotonic())
        d = batch(devices, cycle, clock.now())
        await uplink.submit_telemetry(d)
        payload += len(d.model_dump_json())
        if made_faults < n_faults and cycle % fault_every == fault_every // 2:
            await uplink.submit_fault(fault(made_faults, clock.now()))
            made_faults += 1
    await clock.sleep(hours * 3600 - clock.monotonic())
    if broker_up:  # online: let the last publications be acknowledged
        await poll(lambda: drained(uplink))
    after = io_counters()
    real = time.monotonic() - real0
    db = state / "outbox.db"
    wal = Path(str(db) + "-wal")
    sizes = (db.stat().st_size, wal.stat().st_size if wal.exists() else 0)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await uplink.close()
    return Result(
        name,
        hours,
        cycles,
        made_faults,
        payload,
        after["write_bytes"] - before["write_bytes"],
        after["wchar"] - before["wchar"],
        sizes[0],
        sizes[1],
        round(real, 2),
    )


def _link(options: LinkOptions, handler: MessageHandler, up: Callable[[], bool]) -> Link:
    return InstantLink(up)


async def replay(state: Path, speed: float) -> Result:
    """The broker is back after the offline hour: measure what sending the backlog writes."""
    clock = AcceleratedClock(speed)
    uplink = Uplink(
        "gw-bench",
        BrokerConfig(),
        OutboxConfig(),
        state,
        lambda: GatewayInfo("bench", "bench", 0, True),
        clock=clock,
        link_factory=lambda o, h: _link(o, h, lambda: True),
    )
    before = io_counters()
    real0 = time.monotonic()
    await uplink.open()
    pending = uplink.stats()
    runner = asyncio.create_task(uplink.run())
    await poll(lambda: drained(uplink))
    after = io_counters()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await uplink.close()
    db = state / "outbox.db"
    return Result(
        "replay (backlog sent)",
        0.0,
        pending.telemetry_pending,
        pending.faults_pending,
        pending.bytes_on_disk,
        after["write_bytes"] - before["write_bytes"],
        after["wchar"] - before["wchar"],
        db.stat().st_size,
        0,
        round(time.monotonic() - real0, 2),
    )


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if str(path).startswith(parts[1]) and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    return kind


async def main(args: argparse.Namespace) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    base = Path(tempfile.mkdtemp(prefix="outbox-bench-", dir=args.dir))

    def run(name: str, folder: str, broker_up: bool, memory_bytes: int) -> Awaitable[Result]:
        return scenario(
            name,
            base / folder,
            devices=args.devices,
            hours=args.hours,
            speed=args.speed,
            faults_per_hour=args.faults_per_hour,
            broker_up=broker_up,
            memory_bytes=memory_bytes,
        )

    memory = OutboxConfig().telemetry_memory_bytes
    try:
        results = [
            await run("online", "online", True, memory),
            await run("offline", "offline", False, memory),
            await replay(base / "offline", args.speed),
            await run("write-all baseline (online)", "writeall", True, 0),
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"{args.devices} devices, one telemetry batch per 60 s, {args.faults_per_hour} faults/h;"
        f" {args.hours} simulated hour(s) at x{args.speed:g}; SQLite {sqlite3.sqlite_version}"
        f" on {fs_type(Path(args.dir or tempfile.gettempdir()))}"
    )
    head = (
        f"{'scenario':30} {'batches':>7} {'faults':>6} {'payload MB':>10}"
        f" {'disk MB/h':>10} {'write() MB':>10} {'real s':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        per_h = f"{r.per_hour / 1e6:10.2f}" if r.simulated_hours else f"{'(once)':>10}"
        print(
            f"{r.scenario:30} {r.telemetry_batches:7d} {r.faults:6d} {r.payload_bytes / 1e6:10.2f}"
            f" {per_h} {r.wchar / 1e6:10.2f} {r.real_seconds:6.1f}"
        )
    replayed = next(r for r in results if r.scenario.startswith("replay"))
    print(f"replay wrote {replayed.write_bytes / 1e6:.2f} MB to disk (deletions, checkpoints)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "command": "python bench/outbox_disk.py " + " ".join(sys.argv[1:]),
                "devices": args.devices,
                "telemetry_interval_s": 60,
                "faults_per_hour": args.faults_per_hour,
                "simulated_hours": args.hours,
                "speed": args.speed,
                "sqlite": sqlite3.sqlite_version,
                "python": platform.python_version(),
                "filesystem": fs_type(Path(args.dir or tempfile.gettempdir())),
                "results": [
                    {
                        **asdict(r),
                        "write_bytes_per_hour": round(r.per_hour) if r.simulated_hours else None,
                    }
                    for r in results
                ],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written: {RESULTS}")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--speed", type=float, default=600.0, help="simulated seconds per second")
    p.add_argument("--faults-per-hour", type=int, default=4)
    p.add_argument("--dir", default=None, help="where the SQLite files go (a real disk)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
