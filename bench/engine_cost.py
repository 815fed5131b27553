"""Fault engine cost: CPU per reading judged (rules, debounce, correlation, reporting).

    python bench/engine_cost.py [--lamps 1000 2000 5000] [--rounds 6] [--engine FILE]

The fault engine (agent.faults.engine.FaultEngine with every shipped rule and the agent's
clock-sync check) judges simulated poll rounds of N pju-generic street lights (circuits of 10,
night time, simulated clock advancing 60 s a round): 90 % healthy readings (a burning lamp,
agent.demo.lamp.LampController) and 10 % unreachable (one lamp of each circuit), the scale
benchmark's mix. CPU = time.process_time() per reading, over the rounds after the first
(when the unreachable faults are pending, then raised). --engine loads the engine from
another file (e.g. `git show HEAD~1:agent/faults/engine.py > /tmp/engine_before.py`) to
compare versions. Writes bench/results/engine_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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
from agent.clock_sync import clock_synchronised
from agent.demo.lamp import LampController
from agent.demo.readings import reading_from_records
from agent.faults.rules import RULES
from bench.common import print_table, quiet_logs, write_gateway, write_results
from collectors.reading import Reading, ReadingError
from firmware_config.loader import load_config
from uplink.contract import FaultDraft

NIGHT = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)  # 21:00 WIB


def engine_class(path: str | None) -> Any:
    if path is None:
        from agent.faults.engine import FaultEngine

        return FaultEngine
    spec = importlib.util.spec_from_file_location("engine_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.FaultEngine


async def measure(lamps: int, rounds: int, engine_path: str | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        config = load_config(write_gateway(work, ["127.0.0.1:161"] * lamps))
        clock = FakeClock(NIGHT)
        events: list[FaultDraft] = []

        async def emit(draft: FaultDraft) -> None:
            events.append(draft)

        engine = engine_class(engine_path)(
            config, RULES, clock, emit, clock_synced=clock_synchronised
        )
        await engine.open()
        profile = config.profiles["pju-generic"]
        lamp = LampController(rated_w=60, clock=clock.monotonic)  # uptime follows the clock
        ids = [d.id for d in config.devices]
        per_round = []
        for r in range(rounds + 1):
            records = lamp.records()
            readings = []
            for n, device_id in enumerate(ids):
                if n % 10 == 5:
                    readings.append(
                        Reading(
                            device_id=device_id,
                            at=clock.now(),
                            reachable=False,
                            errors=[ReadingError(code="timeout", message="no answer")],
                        )
                    )
                else:
                    readings.append(reading_from_records(records, device_id, profile, clock.now()))
            start = time.process_time()
            for reading in readings:
                await engine.on_reading(reading)
            await engine.tick()
            if r:  # the first round sets everything up
                per_round.append((time.process_time() - start) / len(readings))
            await clock.advance(60.0)
        await engine.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "lamps": lamps,
        "rounds": rounds,
        "cpu_ms_per_reading": [round(v * 1e3, 4) for v in per_round],
        "median_ms": round(sorted(per_round)[len(per_round) // 2] * 1e3, 4),
        "events": len(events),
        "event_types": dict(Counter(f"{e.fault_type} {e.state}" for e in events)),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quiet_logs()
    results = [await measure(n, args.rounds, args.engine) for n in args.lamps]
    print_table(
        f"Fault engine CPU per reading (10 % unreachable), engine: {args.engine or 'this tree'}",
        ["lamps", "ms per reading (median)", "per round", "events"],
        [
            [r["lamps"], r["median_ms"], " ".join(map(str, r["cpu_ms_per_reading"])), r["events"]]
            for r in results
        ],
    )
    data = {"engine": args.engine or "agent/faults/engine.py", "results": results}
    write_results("engine_cost" if args.engine is None else "engine_cost_other", args.argv, data)
    return data


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--lamps", type=int, nargs="+", default=[1000, 2000, 5000])
    p.add_argument("--rounds", type=int, default=6, help="rounds measured (60 s apart)")
    p.add_argument("--engine", default=None, help="load FaultEngine from this file instead")
    p.add_argument("--quick", action="store_true", help="1,000 and 2,000 lamps")
    args = p.parse_args(argv)
    if args.quick:
        args.lamps = [1000, 2000]
    args.argv = argv
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
