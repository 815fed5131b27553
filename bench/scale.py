"""Scale: how many devices one gateway polls at a 60 s interval on one core, 10 % of them dead.

    python bench/scale.py [--interval 12] [--rounds 2] [--steps 1:1,2:1,4:1] [--pysnmp] [--quick]

The real agent (agent.runtime.Agent: scheduler, SNMP collector, state store, fault engine,
telemetry, uplink to a local mosquitto) polls simulated pju-generic street lights (27 scalars,
one GET each): the live ones are served by two net-snmp snmpd (values of the sample recording,
many lamps per snmpd), the dead ones are loopback UDP ports that never answer (2 s timeout,
1 retry: the defaults). Time is compressed by load, not by clock: N devices at an interval of
I seconds make N / I polls per second, the load of N x 60 / I devices at 60 s.

Per load step (load 1 = 5,000 devices at 60 s; [poll] jitter as given: 1.0, the default,
spreads the polls of a round over all of the interval, 0.1 starts them within its first 10 %;
SNMPv2c through the collector's default fast path (gufo-snmp), or pysnmp with --pysnmp):
one interval of warm-up, then `--rounds` intervals measured. Measured: the agent's CPU
(time.process_time of this process: the agent runs in it, the servers are child processes),
polls done, CPU per device-poll; the lateness of poll starts (wake-up time minus due time,
recorded by a clock wrapper around the scheduler's clock); the duration of live polls (it
includes any wait for a request slot: where dead devices could delay live ones); how late
each live reading is handed on (its due time to the end of its poll). With jitter 0.1 a
round's polls come as a burst, so durations and lateness scale with the interval: at 60 s
they are 5 times those measured here at 12 s. Devices per core at 60 s = 60 s / CPU per poll.
Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock, SystemClock
from agent.runtime import Agent
from bench.common import (
    black_holes,
    load_average,
    percentile,
    print_table,
    quiet_logs,
    snmpd_agents,
    write_gateway,
    write_results,
)
from collectors.reading import Reading
from firmware_config.loader import load_config
from tests.servers import mosquitto

TARGET_DEVICES = 5000
DEAD_SHARE = 0.10
BROKER = "[broker]\nport = {port}\nkeepalive_s = 30\n"


@dataclass
class LatenessClock:
    """The scheduler's clock, recording how late each due time was met (wake-up - due)."""

    inner: Clock
    lateness: list[float] = field(default_factory=list)
    recording: bool = False
    due: dict[asyncio.Task[Any] | None, float] = field(default_factory=dict)  # per device loop

    def now(self) -> datetime:
        return self.inner.now()

    def monotonic(self) -> float:
        return self.inner.monotonic()

    async def sleep(self, seconds: float) -> None:
        due = self.inner.monotonic() + max(0.0, seconds)
        self.due[asyncio.current_task()] = due
        await self.inner.sleep(seconds)
        if self.recording:
            self.lateness.append(self.inner.monotonic() - due)


@dataclass
class Step:
    load: float
    devices: int
    dead: int
    interval_s: float
    equivalent_devices_at_60s: float
    polls: int = 0
    live_polls: int = 0
    failed_live_polls: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    jitter: float = 1.0
    v2c: str = "fast"
    max_concurrency: int = 32
    lateness_ms: dict[str, float] = field(default_factory=dict)
    live_duration_ms: dict[str, float] = field(default_factory=dict)
    live_done_late_ms: dict[str, float] = field(default_factory=dict)
    missed_slots: int = 0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def cpu_per_poll_ms(self) -> float:
        return 1e3 * self.cpu_s / max(1, self.polls)

    @property
    def utilisation(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def devices_per_core(self) -> float:
        return 60.0 / (self.cpu_per_poll_ms / 1e3) if self.polls else 0.0


def dist_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(1e3 * percentile(values, 50), 2),
        "p99": round(1e3 * percentile(values, 99), 2),
        "max": round(1e3 * max(values), 2),
        "n": len(values),
    }


def p50_p99(d: dict[str, float]) -> str:
    return f"{d.get('p50', 0):.0f} / {d.get('p99', 0):.0f}"


async def run_step(
    work: Path,
    load: float,
    interval_s: float,
    rounds: int,
    live: list[str],
    dead: list[str],
    jitter: float,
    pysnmp: bool = False,
    max_concurrency: int = 32,
) -> Step:
    devices = round(TARGET_DEVICES * load * interval_s / 60.0)
    addresses = [
        dead[i % len(dead)] if i % 10 == 5 else live[i % len(live)] for i in range(devices)
    ]
    n_dead = sum(1 for a in addresses if a in dead)
    folder = work / f"load-{load:g}-{time.monotonic_ns()}"
    (folder / "broker").mkdir(parents=True)
    with mosquitto(folder / "broker") as broker:
        config = write_gateway(
            folder,
            addresses,
            interval_s=interval_s,
            jitter=jitter,
            max_concurrency=max_concurrency,
            extra=BROKER.format(port=broker.port),
        )
        agent = Agent(load_config(config))
        agent.snmp.v2c_fast = agent.snmp.v2c_fast and not pysnmp
        clock = LatenessClock(SystemClock())
        agent.scheduler.clock = clock
        dead_ids = {f"pju-{i:05d}" for i, a in enumerate(addresses) if a in dead}
        live_durations: list[float] = []
        done_late: list[float] = []
        counts = {"polls": 0, "live": 0, "failed_live": 0}

        async def count(reading: Reading) -> None:
            if not clock.recording:
                return
            counts["polls"] += 1
            if reading.device_id not in dead_ids:
                counts["live"] += 1
                live_durations.append(reading.duration_s)
                due = clock.due.get(asyncio.current_task())  # the device loop hands it on
                if due is not None:
                    done_late.append(clock.monotonic() - due)
                if not reading.ok:
                    counts["failed_live"] += 1

        agent.sinks.append(count)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(interval_s * 1.2)  # warm-up: first round, sessions, jitter
        gc.collect()
        missed0 = sum(s.missed_slots for s in agent.scheduler.stats.values())
        clock.recording = True
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(interval_s * rounds)
        cpu1, wall1 = time.process_time(), time.monotonic()
        clock.recording = False
        missed = sum(s.missed_slots for s in agent.scheduler.stats.values()) - missed0
        stop.set()
        await asyncio.wait_for(task, 60)
    return Step(
        load=load,
        devices=devices,
        dead=n_dead,
        interval_s=interval_s,
        equivalent_devices_at_60s=devices * 60.0 / interval_s,
        polls=counts["polls"],
        live_polls=counts["live"],
        failed_live_polls=counts["failed_live"],
        cpu_s=cpu1 - cpu0,
        wall_s=wall1 - wall0,
        jitter=jitter,
        v2c="fast" if agent.snmp.v2c_fast else "pysnmp",
        max_concurrency=max_concurrency,
        lateness_ms=dist_ms(clock.lateness),
        live_duration_ms=dist_ms(live_durations),
        live_done_late_ms=dist_ms(done_late),
        missed_slots=missed,
        load_average=load_average(),
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quiet_logs()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    steps: list[Step] = []
    try:
        with snmpd_agents(work, 2, pju=True) as agents, black_holes(8) as dead:
            live = [a.address for a in agents]
            for load, jitter in args.steps:
                for _ in range(args.repeat):
                    steps.append(
                        await run_step(
                            work,
                            load,
                            args.interval,
                            args.rounds,
                            live,
                            dead,
                            jitter,
                            args.pysnmp,
                            args.max_concurrency,
                        )
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for s in steps:
        rows.append(
            [
                f"{s.equivalent_devices_at_60s:,.0f} @60s ({s.devices} @{s.interval_s:g}s)",
                f"{s.jitter:g}",
                s.v2c,
                f"{s.dead}",
                f"{s.polls}",
                f"{100 * s.utilisation:.0f} %",
                f"{s.cpu_per_poll_ms:.2f}",
                f"{s.devices_per_core:,.0f}",
                p50_p99(s.lateness_ms),
                p50_p99(s.live_duration_ms),
                p50_p99(s.live_done_late_ms),
                f"{s.failed_live_polls}",
                f"{s.missed_slots}",
            ]
        )
    print_table(
        f"Polling pju-generic lamps, 10 % dead, measured over {args.rounds} intervals per step",
        [
            "load",
            "jitter",
            "v2c",
            "dead",
            "polls",
            "CPU",
            "CPU ms/poll",
            "devices/core @60s",
            "start late p50/p99 ms",
            "live poll p50/p99 ms",
            "reading late p50/p99 ms",
            "live failed",
            "missed",
        ],
        rows,
    )
    per_poll = [s.cpu_per_poll_ms for s in steps]
    print(
        f"target: {TARGET_DEVICES:,} devices per core at 60 s;"
        f" CPU per poll {min(per_poll):.2f}-{max(per_poll):.2f} ms over {len(steps)} steps"
    )
    data = {
        "target_devices_per_core": TARGET_DEVICES,
        "dead_share": DEAD_SHARE,
        "rounds": args.rounds,
        "profile": "pju-generic (27 scalars, one GET)",
        "steps": [
            {
                **s.__dict__,
                "cpu_per_poll_ms": round(s.cpu_per_poll_ms, 3),
                "utilisation": round(s.utilisation, 3),
                "devices_per_core_at_60s": round(s.devices_per_core),
            }
            for s in steps
        ],
    }
    write_results("scale", args.argv, data)
    return data


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--interval", type=float, default=12.0, help="poll interval (s) used")
    p.add_argument("--rounds", type=int, default=2, help="intervals measured per step")
    p.add_argument(
        "--steps",
        type=lambda s: [tuple(float(v) for v in x.split(":")) for x in s.split(",")],
        default=[(1.0, 1.0), (2.0, 1.0), (4.0, 1.0)],
        help="LOAD:JITTER,... (load 1 = 5,000 devices at 60 s; jitter: [poll] jitter, the"
        " share of the interval over which a round's polls start; 1.0 is the default)",
    )
    p.add_argument("--pysnmp", action="store_true", help="SNMPv2c through pysnmp, not gufo-snmp")
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=32,
        help="[poll] max_concurrency (32, the default): request slots, and as many for silent"
        " devices; 10 %% dead devices with 2 s x 2 tries need N x 0.1 x 4 s / interval of them",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per load step")
    p.add_argument("--quick", action="store_true", help="one step (load 1), 2 intervals")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = [(1.0, 1.0)], 2
    args.argv = argv
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
