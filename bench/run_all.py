"""Run every benchmark, one after the other, each in its own process; then a summary table.

    python -m bench [--quick] [--only poll_cost,scale,...]
    python bench/run_all.py [--quick] [--only ...]

Each benchmark is also a script of its own (python bench/NAME.py --help). They print their
tables and write bench/results/NAME.json; this writes bench/results/summary.json. None of this
is part of the test suite. Needs: snmpd, mosquitto, prometheus-snmp-exporter (Debian), and
optionally ezsnmp (pip). The whole run takes about 9 minutes, --quick about 5.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

# name -> arguments for a full run, for a quick one
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "poll_cost": ([], ["--quick"]),
    "scale": ([], ["--quick"]),
    "engine_cost": ([], ["--quick"]),
    "fault_latency": ([], ["--quick"]),
    "backlog": ([], ["--quick"]),
    "footprint": ([], ["--quick"]),
    "outbox_disk": ([], ["--hours", "0.5"]),
    "disk_day": ([], ["--quick"]),
    "telemetry_bytes": ([], []),
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _poll_cost(d: dict[str, Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for case, label in (("scalars", "10 scalars"), ("ifwalk", "ifTable walk")):
        r = d["results"][case]["ratio_agent_to_exporter"]
        out.append(
            [
                f"poll cost, {label}: agent / snmp_exporter CPU",
                f"{r['median']:.1f}x ({r['min']:.1f}-{r['max']:.1f})",
                f"<= {d['target_ratio']}x",
                r["median"] <= d["target_ratio"],
            ]
        )
    return out


def _scale(d: dict[str, Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    target = d["target_devices_per_core"]
    for s in d["steps"]:
        late = s.get("live_done_late_ms", s["live_duration_ms"])
        out.append(
            [
                f"scale: {s['equivalent_devices_at_60s']:,.0f} devices @60 s,"
                f" jitter {s.get('jitter', 0.1):g}, CPU {100 * s['utilisation']:.0f} %",
                f"{s['devices_per_core_at_60s']:,}/core;"
                f" p99 late {s['lateness_ms'].get('p99', 0):.0f}/{late.get('p99', 0):.0f} ms",
                f">= {target:,}/core",
                s["devices_per_core_at_60s"] >= target,
            ]
        )
    return out


def _engine_cost(d: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            f"fault engine CPU per reading, {r['lamps']} lamps (10 % down)",
            f"{r['median_ms']:.2f} ms",
            "",
            None,
        ]
        for r in d["results"]
    ]


def _fault_latency(d: dict[str, Any]) -> list[list[Any]]:
    s = d["summary"]
    return [
        [
            "fault -> SIARAN report, p50 / p95",
            f"{s.get('p50_s', 0):.2f} / {s.get('p95_s', 0):.2f} s",
            f"p95 <= {d['target_p95_s']:g} s (debounce {d['configured_debounce_s']:g} s + 2)",
            s.get("p95_s", 1e9) <= d["target_p95_s"]
            and not d["missing"]
            and not d.get("other_reports"),
        ]
    ]


def _backlog(d: dict[str, Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for broker, r in d["drain_rate"].items():
        out.append(
            [
                f"backlog drain, {broker}",
                f"{r['median']:,.0f}/s ({r['min']:,.0f}-{r['max']:,.0f}), lost {d['lost']}",
                f">= {d['target_rate']:,.0f}/s, none lost",
                r["median"] >= d["target_rate"] and d["lost"] == 0,
            ]
        )
    return out


def _footprint(d: dict[str, Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for m in d["memory"]:  # the target is for a gateway's install (no test tools)
        target = m["devices"] == 1000 and str(m["install"]).startswith("gateway")
        out.append(
            [
                f"peak RSS, {m['devices']} devices, {m['install']}",
                f"{m['peak_rss_mb']:.0f} MB",
                f"<= {d['target_rss_mb_at_1000']:g} MB" if target else "",
                m["peak_rss_mb"] <= d["target_rss_mb_at_1000"] if target else None,
            ]
        )
    disk = d["disk_online"]
    out.append(
        [
            f"disk writes, whole agent polling, {disk['devices']} healthy devices",
            f"{disk['mb_per_day_at_60s']:.1f} MB/day",
            "(a whole day: disk_day)",
            None,
        ]
    )
    return out


def _disk_day(d: dict[str, Any]) -> list[list[Any]]:
    target = d["target_mb_per_day_500"]
    return [
        [
            f"disk writes a day, {r['devices']} devices, {round(r['faults_per_hour'] * 24)} faults",
            f"{r['mb_per_day']:.1f} MB/day",
            f"<= {target:g} MB/day",
            r["mb_per_day"] <= target if r["devices"] == 500 else None,
        ]
        for r in d["results"]
    ]


def _outbox_disk(d: dict[str, Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for r in d["results"]:
        if r["write_bytes_per_hour"] is None:
            continue
        out.append(
            [
                f"disk writes, outbox only, {r['scenario']}, {d['devices']} devices",
                f"{r['write_bytes_per_hour'] * 24 / 1e6:.1f} MB/day",
                "",
                None,
            ]
        )
    return out


def _telemetry_bytes(d: dict[str, Any]) -> list[list[Any]]:
    target = d["target_bytes_per_street_light_per_day"]
    flush = d["telemetry_config"]["flush_interval_s"]
    out: list[list[Any]] = []
    for r in d["results"]:
        if r["mode"] == "report by exception" and r["flush_interval_s"] == flush:
            if not r["scenario"].startswith("street light"):
                continue
            wire = r["wire_bytes_per_device"]
            out.append(
                [
                    f"uplink bytes per device per day, {r['scenario']}",
                    f"{wire / 1000:.1f} KB",
                    f"<= {target / 1000:g} KB",
                    wire <= target,
                ]
            )
    return out


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[list[Any]]]] = {
    "poll_cost": _poll_cost,
    "scale": _scale,
    "engine_cost": _engine_cost,
    "fault_latency": _fault_latency,
    "backlog": _backlog,
    "footprint": _footprint,
    "outbox_disk": _outbox_disk,
    "disk_day": _disk_day,
    "telemetry_bytes": _telemetry_bytes,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="shorter runs (fewer rounds/trials)")
    p.add_argument("--only", default="", help="comma-separated names: " + ",".join(BENCHMARKS))
    p.add_argument(
        "--summary", action="store_true", help="run nothing: summarise bench/results/ as it is"
    )
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    times = {}
    for name in [] if args.summary else names:
        extra = BENCHMARKS[name][1 if args.quick else 0]
        cmd = [sys.executable, str(HERE / f"{name}.py"), *extra]
        print(f"\n=== {name}: {' '.join(['python', f'bench/{name}.py', *extra])}", flush=True)
        started = time.monotonic()
        code = subprocess.run(cmd, cwd=ROOT).returncode
        times[name] = round(time.monotonic() - started, 1)
        if code:
            failed.append(name)
            print(f"=== {name} FAILED (exit {code})", flush=True)
    rows: list[list[Any]] = []
    for name in names:
        data = _load(name)
        if data is None or name in failed:
            rows.append([f"{name}: no result", "", "", False])
            continue
        try:
            rows += SUMMARIES[name](data)
        except (KeyError, TypeError, ValueError) as exc:
            rows.append([f"{name}: unreadable result ({exc!r})", "", "", False])
    print("\nSummary (details: each table above, bench/results/*.json, docs/performance.md)")
    width = max(len(str(r[0])) for r in rows)
    for what, measured, target, ok in rows:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"  {what:{width}}  {measured:>28}  {target:>34}  {verdict}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(
        json.dumps(
            {
                "quick": args.quick,
                "seconds": times,
                "failed": failed,
                "rows": [
                    {"what": r[0], "measured": r[1], "target": r[2], "ok": r[3]} for r in rows
                ],
            },
            indent=2,
        )
        + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
