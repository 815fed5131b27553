"""Bytes the gateway's stores write to disk in one simulated day, online (SD-card wear).

    python bench/disk_day.py [--devices 500] [--hours 24] [--faults-per-hour 1]

The agent's three stores with their real SQLite files, on a fake clock so that a day takes a
minute or two: the state store (state.db, latest reading of each device), the fault engine with
every shipped rule (faults.db: fault state, event journal, rule memory) and the uplink's outbox
(outbox.db) behind a link that acknowledges every publish at once. N pju-generic street lights
in circuits of 10, lit from dusk to dawn in Tangerang Selatan, report every --interval-s (300 s
by default; the stores write on changes and on timers, so the poll interval matters little).
Run twice: quiet (no fault), and with --faults-per-hour lamps (one per circuit, taking turns)
silent for 30 minutes each hour: raised, then cleared; in both, --flapping lamps (a lossy link)
report an error at every other poll.
Measured: the bytes this process's threads pass to write() and pwrite() (/proc/self/io `wchar`;
nothing else is written to), during the day (after the first round, which writes every device
once) and at shutdown. In a real day those writes are minutes apart and each reaches the card;
the kernel's `write_bytes` counts a page rewritten within its writeback delay once, which in a
day compressed into a minute undercounts and varies from run to run. Not counted: SQLite's
shared-memory index (`-shm`, written back by the kernel now and then), the file system's own
journal, the SD card's erase-block amplification; the poll path, telemetry (in memory while
online), logs (journald). bench/footprint.py runs the whole agent.
Writes bench/results/disk_day.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import FakeClock
from agent.demo.lamp import LampController
from agent.demo.readings import reading_from_records
from agent.faults.engine import FaultEngine
from agent.faults.rules import RULES
from agent.state_store import StateStore
from bench.common import print_table, proc_io, quiet_logs, write_gateway, write_results
from bench.outbox_disk import InstantLink, drained, poll
from collectors.reading import Reading, ReadingError
from firmware_config.loader import load_config
from firmware_config.models import BrokerConfig
from firmware_config.uplink_config import OutboxConfig
from uplink.contract import FaultDraft
from uplink.publisher import GatewayInfo, Uplink

TARGET_MB_DAY = 10.0
START = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)  # 07:00 WIB
NIGHT_UTC = (11.0, 22.3)  # lamps lit 18:00-05:18 WIB, 11:00-22:18 UTC (sunset 17:54 WIB)
DOWN_S = 1800.0  # how long a failing lamp stays silent


def lit(at: datetime) -> bool:
    hour = at.hour + at.minute / 60
    return NIGHT_UTC[0] <= hour < NIGHT_UTC[1]


def dead(device_id: str, at: datetime) -> Reading:
    error = ReadingError(code="timeout", message="no answer")
    return Reading(device_id=device_id, at=at, reachable=False, errors=[error])


async def day(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    addresses = ["127.0.0.1:161"] * args.devices
    config = load_config(write_gateway(work, addresses, interval_s=args.interval_s))
    clock = FakeClock(START)
    state_dir = config.gateway.state_dir
    uplink = Uplink(
        "gw-bench",
        BrokerConfig(),
        OutboxConfig(),
        state_dir,
        lambda: GatewayInfo("bench", "bench", args.devices, True),
        clock=clock,
        link_factory=lambda options, handler: InstantLink(lambda: True),
    )
    await uplink.open()
    runner = asyncio.create_task(uplink.run())
    events: list[FaultDraft] = []

    async def emit(draft: FaultDraft) -> None:
        events.append(draft)
        await uplink.submit_fault(draft)

    engine = FaultEngine(config, RULES, clock, emit)
    await engine.open()
    store = StateStore(state_dir / "state.db", clock=clock)
    flusher = asyncio.create_task(store.run())
    await poll(lambda: uplink.stats().connected)

    profile = config.profiles["pju-generic"]
    lamp = LampController(rated_w=60, clock=clock.monotonic)
    ids = [d.id for d in config.devices]
    flapping = set(ids[5 :: max(1, len(ids) // max(1, args.flapping))][: args.flapping])
    rounds = round(args.hours * 3600 / args.interval_s)
    down: dict[str, float] = {}  # device -> silent until (monotonic)
    turn, before, real0 = 0, proc_io(), time.monotonic()
    for n in range(rounds + 1):
        now = clock.now()
        if n == 1:  # round 0 writes every device for the first time: a start, not a day
            await poll(lambda: drained(uplink))
            before, real0 = proc_io(), time.monotonic()
        if n % round(3600 / args.interval_s) == 1:  # the next failing lamps, one per circuit
            for _ in range(args.faults_per_hour):
                device = ids[(turn * 10 + turn // (len(ids) // 10)) % len(ids)]
                down[device] = clock.monotonic() + DOWN_S
                turn += 1
        on = lit(now)
        lamp.update(lamp_on=on, daylight=not on, lux=2.0 if on else 20000.0)
        records = lamp.records()
        for device_id in ids:
            if down.get(device_id, 0.0) > clock.monotonic():
                reading = dead(device_id, now)
            else:
                reading = reading_from_records(records, device_id, profile, now)
                if device_id in flapping and n % 2:  # a lossy link: every other poll an error
                    error = ReadingError(code="wrong_type", message="garbled", metric="lux")
                    reading = reading.model_copy(update={"errors": [error]})
            await store.record(reading)
            await engine.on_reading(reading)
        await engine.tick()
        await poll(lambda: drained(uplink))
        await clock.advance(args.interval_s)
    await poll(lambda: drained(uplink))
    await store.flush()  # waits for a flush under way (its lock), e.g. the daily refresh
    during = proc_io()["wchar"] - before["wchar"]
    real = time.monotonic() - real0

    before_close = proc_io()
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    store.close()
    await engine.close()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await uplink.close()
    at_close = proc_io()["wchar"] - before_close["wchar"]
    files = {
        p.name: p.stat().st_size for p in sorted(state_dir.iterdir()) if p.name.endswith(".db")
    }
    per_day = during * 24 / args.hours
    return {
        "devices": args.devices,
        "simulated_hours": args.hours,
        "interval_s": args.interval_s,
        "faults_per_hour": args.faults_per_hour,
        "flapping_devices": args.flapping,
        "events": len(events),
        "event_types": dict(Counter(f"{e.fault_type} {e.state}" for e in events)),
        "bytes_written": during,
        "mb_per_day": round(per_day / 1e6, 2),
        "bytes_written_at_shutdown": at_close,
        "file_sizes_at_end": files,
        "real_seconds": round(real, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quiet_logs()
    results = []
    for faults in sorted({0, args.faults_per_hour}):
        work = Path(tempfile.mkdtemp(prefix="bench-disk-day-", dir=args.dir))
        try:
            results.append(
                await day(argparse.Namespace(**{**vars(args), "faults_per_hour": faults}), work)
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    quiet = results[0]
    for r in results:
        extra = (r["bytes_written"] - quiet["bytes_written"]) * 24 / args.hours
        r["bytes_per_event_more_than_quiet"] = round(extra / r["events"]) if r["events"] else None
    print_table(
        "Bytes the gateway's stores write to disk in a simulated day, online",
        ["devices", "faults a day", "fault events", "MB per day", "per event", "at shutdown"],
        [
            [
                r["devices"],
                round(r["faults_per_hour"] * 24),
                r["events"],
                f"{r['mb_per_day']:.2f}",
                f"{r['bytes_per_event_more_than_quiet'] / 1e3:.0f} KB"
                if r["bytes_per_event_more_than_quiet"]
                else "",
                f"{r['bytes_written_at_shutdown'] / 1e6:.2f} MB",
            ]
            for r in results
        ],
    )
    print(
        f"target <= {TARGET_MB_DAY:g} MB/day for 500 devices; events: {results[-1]['event_types']}"
    )
    data = {"target_mb_per_day_500": TARGET_MB_DAY, "results": results}
    write_results("disk_day", args.argv, data)
    return data


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    p.add_argument("--interval-s", type=float, default=300.0, help="simulated poll interval")
    p.add_argument("--faults-per-hour", type=int, default=1)
    p.add_argument(
        "--flapping", type=int, default=5, help="lamps whose every other reading has an error"
    )
    p.add_argument("--dir", default=None, help="where the state files go (a real disk)")
    p.add_argument("--quick", action="store_true", help="6 simulated hours")
    args = p.parse_args(argv)
    if args.quick:
        args.hours = 6.0
    args.argv = argv
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
