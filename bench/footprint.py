"""Footprint: peak RSS of the agent with 100 and 1,000 devices; bytes it writes to disk a day.

    python bench/footprint.py [--quick] [--only-memory]

Each measurement runs the real agent, `siaran-edge run --config ...` (python -m agent.cli), as a
child process against pju-generic street lights served by net-snmp snmpd (many lamps per
snmpd), with a local mosquitto as the city's broker:
- memory: 100 and 1,000 devices (10 % of them dead: loopback ports that never answer), polled
  for a few rounds; peak RSS = the child's ru_maxrss (os.wait4) after SIGTERM;
- disk, online: 500 healthy devices at a 10 s interval; write_bytes of the child
  (/proc/PID/io: bytes sent to the block layer, i.e. the SD card) over 5 poll rounds after a
  warm-up, as bytes per poll round, times 1,440 rounds a day (a 60 s interval). All of the
  agent's files are in it: the state store (latest reading of each device), the fault journal,
  the outbox, the action store. Logs go to stdout (journald on a gateway): not counted.
The outbox alone, offline and online in accelerated time, is bench/outbox_disk.py; the uplink
bytes are bench/telemetry_bytes.py (run_all.py runs both). Writes bench/results/footprint.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    black_holes,
    print_table,
    proc_io,
    snmpd_agents,
    write_gateway,
    write_results,
)
from tests.servers import mosquitto

TARGET_RSS_MB = 80.0
TARGET_DISK_MB_DAY = 10.0
BROKER = "[broker]\nport = {port}\nkeepalive_s = 30\n"


# Installed here for the tests or by other tools, not by `pip install siaran-edge`: pysnmp
# imports pysmi (and its parser, about 11 MB) when it finds it, structlog imports rich.
NOT_ON_A_GATEWAY = ("pysmi", "rich")
BOOT = (
    "import sys; sys.modules.update(dict.fromkeys({names!r}));"
    " from agent.cli import main; sys.exit(main(sys.argv[1:]))"
)


def start_agent(config: Path, gateway_install: bool = True) -> subprocess.Popen[bytes]:
    """The agent as `siaran-edge run`; gateway_install: as if the packages NOT_ON_A_GATEWAY
    were not installed (they then fail to import, as on a gateway)."""
    if gateway_install:
        cmd = [sys.executable, "-c", BOOT.format(names=NOT_ON_A_GATEWAY)]
    else:
        cmd = [sys.executable, "-m", "agent.cli"]
    return subprocess.Popen(
        [*cmd, "run", "--config", str(config)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def end_agent(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM, wait; the exit code and the child's peak RSS in MB (ru_maxrss is in KiB)."""
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss / 1024
        time.sleep(0.05)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def readings_stored(state_dir: Path) -> int:
    db = state_dir / "state.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM latest_reading").fetchone()[0])


def memory(
    work: Path,
    devices: int,
    interval_s: float,
    rounds: int,
    live: list[str],
    dead: list[str],
    gateway_install: bool = True,
) -> dict[str, Any]:
    addresses = [
        dead[i % len(dead)] if i % 10 == 5 else live[i % len(live)] for i in range(devices)
    ]
    folder = work / f"rss-{devices}-{int(gateway_install)}"
    (folder / "broker").mkdir(parents=True)
    with mosquitto(folder / "broker") as broker:
        config = write_gateway(
            folder, addresses, interval_s=interval_s, extra=BROKER.format(port=broker.port)
        )
        proc = start_agent(config, gateway_install)
        time.sleep(interval_s * rounds + 3)
        with open(f"/proc/{proc.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        rss_now = int(status["VmRSS"].split()[0]) / 1024
        code, peak = end_agent(proc)
    return {
        "devices": devices,
        "install": "gateway (no pysmi, rich)" if gateway_install else "as installed here",
        "dead": sum(1 for a in addresses if a in dead),
        "interval_s": interval_s,
        "rounds": rounds,
        "rss_before_stop_mb": round(rss_now, 1),
        "peak_rss_mb": round(max(peak, rss_now), 1),
        "exit_code": code,
        "devices_with_a_stored_reading": readings_stored(folder / "state"),
    }


def disk(
    work: Path, devices: int, interval_s: float, rounds: int, live: list[str]
) -> dict[str, Any]:
    addresses = [live[i % len(live)] for i in range(devices)]
    folder = work / f"disk-{devices}"
    (folder / "broker").mkdir(parents=True)
    with mosquitto(folder / "broker") as broker:
        config = write_gateway(
            folder, addresses, interval_s=interval_s, extra=BROKER.format(port=broker.port)
        )
        proc = start_agent(config)
        time.sleep(interval_s * 2 + 1)  # warm-up: first rounds, files created, first faults
        before = proc_io(proc.pid)
        t0 = time.monotonic()
        time.sleep(interval_s * rounds)
        after = proc_io(proc.pid)
        elapsed = time.monotonic() - t0
        code, _ = end_agent(proc)
    written = after["write_bytes"] - before["write_bytes"]
    per_round = written * interval_s / elapsed / 1.0
    per_day = per_round * 1440
    return {
        "devices": devices,
        "interval_s": interval_s,
        "measured_s": round(elapsed, 1),
        "write_bytes": written,
        "wchar": after["wchar"] - before["wchar"],
        "bytes_per_poll_round": round(per_round),
        "bytes_per_day_at_60s": round(per_day),
        "mb_per_day_at_60s": round(per_day / 1e6, 2),
        "exit_code": code,
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    try:
        with snmpd_agents(work, 2, pju=True) as agents, black_holes(8) as dead:
            live = [a.address for a in agents]
            rss = [
                memory(work, n, interval, args.rounds, live, dead, gateway)
                for n, interval, gateway in (
                    (100, 5.0, True),
                    (1000, 12.0, True),
                    (1000, 12.0, False),
                )
            ]
            written = None if args.only_memory else disk(work, 500, 10.0, args.disk_rounds, live)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(
        "Peak RSS of the agent (siaran-edge run), 10 % of the devices dead",
        ["devices", "install", "poll interval s", "rounds", "peak RSS MB", "stored", "target"],
        [
            [
                r["devices"],
                r["install"],
                f"{r['interval_s']:g}",
                r["rounds"],
                r["peak_rss_mb"],
                r["devices_with_a_stored_reading"],
                f"<= {TARGET_RSS_MB:g} MB at 1,000" if r["devices"] == 1000 else "",
            ]
            for r in rss
        ],
    )
    if written is None:  # --only-memory: print, do not overwrite the results file
        return {"memory": rss}
    print_table(
        "Bytes the agent writes to disk, online, 500 healthy devices",
        ["", "bytes per poll round", "MB/day at 60 s", "target"],
        [
            [
                f"{written['devices']} devices",
                written["bytes_per_poll_round"],
                written["mb_per_day_at_60s"],
                f"<= {TARGET_DISK_MB_DAY:g} MB/day",
            ]
        ],
    )
    data = {
        "target_rss_mb_at_1000": TARGET_RSS_MB,
        "target_disk_mb_per_day_500_online": TARGET_DISK_MB_DAY,
        "memory": rss,
        "disk_online": written,
    }
    write_results("footprint", args.argv, data)
    return data


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=2, help="poll rounds before the RSS is read")
    p.add_argument("--disk-rounds", type=int, default=5, help="poll rounds measured for disk")
    p.add_argument("--quick", action="store_true", help="1 round for RSS, 3 for disk")
    p.add_argument(
        "--only-memory", action="store_true", help="the RSS part only (no results file written)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.disk_rounds = 1, 3
    args.argv = argv
    return args


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
