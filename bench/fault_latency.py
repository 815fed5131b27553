"""Fault latency: from the moment a simulated lamp fails to its SIARAN report in the sandbox.

    python bench/fault_latency.py [--trials 20] [--quick]

Everything real, on loopback: the street lights are agent.demo.snmp_sim.SnmpSimulator lamps
(pju-generic over SNMP v2c) in this process; the agent is `siaran-edge run` in a child process;
its events go through a mosquitto to the central consumer (central.service.Central) and the
SIARAN sandbox (central.sandbox), both in this process. Gateway settings (debounce as short as
a test; production uses 60 s polls and a 300 s correlation window, the same sum applies):

    [poll] interval_s = 1, timeout_s = 0.5, retries = 0
    [rules.lamp_failure] raise_after = 3
    [rules.circuit_outage] window_s = 2     (a lamp's fault is held this long: circuits of 4)

so the configured debounce is raise_after x interval + window_s = 5 s; the target is a p95
within debounce + 2 s. 21 lamps on 7 circuits of 3 (the circuit_outage minimum, so a lamp's
fault is held window_s). Each trial fails one lamp (each lamp once; trial k fails a lamp of
circuit k mod 7, at a random phase of the poll interval), waits for the report whose title
names the lamp (the sandbox's API is polled every 50 ms; latency = the report's created_at -
the failure), then repairs it. Trials are staggered (one starts every --every seconds), so at
most one lamp of a circuit is down at a time and no circuit outage forms; any other report
(an unexpected fault) is counted. Writes bench/results/fault_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.demo.lamp import LampController
from agent.demo.snmp_sim import SnmpSimulator
from bench.common import ROOT, percentile, print_table, quiet_logs, write_results
from tests.central_helpers import Api, central_config, running, sandbox
from tests.servers import mosquitto, stop

INTERVAL_S = 1.0
RAISE_AFTER = 3
WINDOW_S = 2.0
DEBOUNCE_S = RAISE_AFTER * INTERVAL_S + WINDOW_S
TARGET_S = DEBOUNCE_S + 2.0
LAMPS_PER_CIRCUIT = 3  # the circuit_outage minimum: a lamp's fault is held window_s
CIRCUITS = 7  # 21 lamps polled every second; trial k fails lamp k // 7 of circuit k % 7

GATEWAY = f"""\
state_dir = "{{state}}"
[gateway]
id = "gw-latency"
site = "Bench panel"
location = {{{{ lat = -6.3431, lon = 106.7372, kecamatan = "Pamulang" }}}}
[broker]
port = {{port}}
keepalive_s = 10
[poll]
interval_s = {INTERVAL_S}
timeout_s = 0.5
retries = 0
jitter = 0.5
[rules.lamp_failure]
raise_after = {RAISE_AFTER}
clear_after = 2
[rules.circuit_outage]
window_s = {WINDOW_S}
[rules.unreachable]
icmp = false
"""

LAMP = """
[[device]]
id = "{id}"
kind = "streetlight"
profile = "pju-generic"
address = "127.0.0.1:{port}"
snmp = {{ community = "{id}" }}
pole_id = "P-{n}"
circuit = "PNL-{circuit}"
rated_w = 60
location = {{ lat = {lat:.6f}, lon = 106.7372, kecamatan = "Pamulang" }}
"""


async def trial(
    sim: SnmpSimulator,
    lamp_id: str,
    seen: dict[str, datetime],
    failed: dict[str, datetime],
    arrived: asyncio.Event,
    limit_s: float,
) -> dict[str, Any]:
    await asyncio.sleep(random.uniform(0, INTERVAL_S))  # a random phase of the poll cycle
    failed[lamp_id] = failed_at = datetime.now(UTC)
    sim.lamp(lamp_id).fail_lamp()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(arrived.wait(), limit_s)
    sim.lamp(lamp_id).repair()
    if lamp_id not in seen:
        return {"lamp": lamp_id, "latency_s": None}
    return {"lamp": lamp_id, "latency_s": (seen[lamp_id] - failed_at).total_seconds()}


async def watch(
    api: Api,
    arrived: dict[str, asyncio.Event],
    seen: dict[str, datetime],
    failed: dict[str, datetime],
    done: asyncio.Event,
) -> None:
    """Poll the sandbox: the first report whose title names a failed lamp, filed after it
    failed, with its created_at."""
    while not done.is_set():
        for report in await api.reports():
            for lamp, event in arrived.items():
                if lamp in seen or lamp not in failed or lamp not in report.title:
                    continue
                if report.created_at >= failed[lamp]:
                    seen[lamp] = report.created_at
                    event.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.05)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quiet_logs()
    random.seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    lamp_ids = [f"pju-{n:04d}" for n in range(CIRCUITS * LAMPS_PER_CIRCUIT)]
    if args.trials > len(lamp_ids):
        raise SystemExit(f"at most {len(lamp_ids)} trials (one per lamp)")
    seen: dict[str, datetime] = {}
    failed: dict[str, datetime] = {}
    unexpected: list[str] = []
    results: list[dict[str, Any]] = []
    try:
        (work / "broker").mkdir()
        with mosquitto(work / "broker") as broker:
            async with SnmpSimulator() as sim, sandbox(work / "box") as box:
                for lamp_id in lamp_ids:
                    sim.add_lamp(lamp_id, LampController(rated_w=60, sys_name=lamp_id))
                config = work / "gateway.toml"
                config.write_text(
                    GATEWAY.format(state=work / "state", port=broker.port)
                    + "".join(
                        LAMP.format(
                            id=lamp_id,
                            port=sim.port,
                            n=n,
                            circuit=n // LAMPS_PER_CIRCUIT,
                            lat=-6.3431 - n * 0.0001,
                        )
                        for n, lamp_id in enumerate(lamp_ids)
                    )
                )
                agent = subprocess.Popen(  # noqa: ASYNC220 (started once, before measuring)
                    [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                    cwd=ROOT,
                    env=dict(os.environ, PYTHONPATH=str(ROOT)),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                api = Api(box.url)
                central_cfg = central_config(work / "central", broker.port, box.url)
                try:
                    async with running(central_cfg):
                        await asyncio.sleep(RAISE_AFTER * INTERVAL_S + 3)  # healthy rounds first
                        if await api.count():
                            raise RuntimeError("reports before any lamp failed")
                        done = asyncio.Event()
                        arrived = {lamp: asyncio.Event() for lamp in lamp_ids}
                        watcher = asyncio.create_task(watch(api, arrived, seen, failed, done))
                        tasks = []
                        for k in range(args.trials):
                            circuit, nth = k % CIRCUITS, k // CIRCUITS
                            lamp = lamp_ids[circuit * LAMPS_PER_CIRCUIT + nth]
                            tasks.append(
                                asyncio.create_task(
                                    trial(sim, lamp, seen, failed, arrived[lamp], args.limit)
                                )
                            )
                            await asyncio.sleep(args.every)
                        results = list(await asyncio.gather(*tasks))
                        done.set()
                        await watcher
                        unexpected = [
                            r.title
                            for r in await api.reports()
                            if not any(lamp in r.title for lamp in seen)
                        ]
                finally:
                    stop(agent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latencies = [r["latency_s"] for r in results if r["latency_s"] is not None]
    missing = [r["lamp"] for r in results if r["latency_s"] is None]
    summary: dict[str, Any] = {
        "trials": len(results),
        "reported": len(latencies),
        "other_reports": len(unexpected),
    }
    if latencies:
        summary.update(
            p50_s=round(percentile(latencies, 50), 3),
            p95_s=round(percentile(latencies, 95), 3),
            min_s=round(min(latencies), 3),
            max_s=round(max(latencies), 3),
        )
    print_table(
        f"Lamp failure -> SIARAN report, {len(results)} trials",
        [
            "",
            "p50 s",
            "p95 s",
            "min s",
            "max s",
            "debounce s",
            "target p95 s",
            "missing",
            "other reports",
        ],
        [
            [
                "measured",
                summary.get("p50_s", "-"),
                summary.get("p95_s", "-"),
                summary.get("min_s", "-"),
                summary.get("max_s", "-"),
                f"{DEBOUNCE_S:g}",
                f"<= {TARGET_S:g}",
                len(missing),
                len(unexpected),
            ]
        ],
    )
    over50 = summary.get("p50_s", 0) - DEBOUNCE_S
    over95 = summary.get("p95_s", 0) - DEBOUNCE_S
    print(
        f"debounce = raise_after {RAISE_AFTER} x interval {INTERVAL_S:g} s"
        f" + circuit window {WINDOW_S:g} s; beyond the debounce: p50 {over50:+.2f} s,"
        f" p95 {over95:+.2f} s"
    )
    data = {
        "interval_s": INTERVAL_S,
        "raise_after": RAISE_AFTER,
        "circuit_window_s": WINDOW_S,
        "configured_debounce_s": DEBOUNCE_S,
        "target_p95_s": TARGET_S,
        "summary": summary,
        "missing": missing,
        "other_reports": unexpected,
        "trials": results,
    }
    write_results("fault_latency", args.argv, data)
    return data


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--every", type=float, default=2.5, help="seconds between trial starts")
    p.add_argument("--limit", type=float, default=30.0, help="give up on a trial after (s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="8 trials")
    args = p.parse_args(argv)
    if args.quick:
        args.trials = 8
    args.argv = argv
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
