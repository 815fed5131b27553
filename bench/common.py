"""What the benchmarks share: SNMP agents to poll, gateway configs, CPU and memory readings,
statistics, the table printer and the JSON results in bench/results/.

Every server a benchmark starts (snmpd, mosquitto, the exporter) listens on a free loopback
port and is stopped when the benchmark ends; nothing here is used by the test suite.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import free_port  # noqa: E402
from tests.snmp_servers import Snmpd  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PJU_SAMPLE = ROOT / "docs" / "profiles" / "samples" / "pju-generic.snmprec"
CLK_TCK = os.sysconf("SC_CLK_TCK")
COMMUNITY = "siaran-ro"

# snmprec type tag -> snmpd.conf `override` type (net-snmp has no counter64 override: the
# profile reads it as a counter either way)
_OVERRIDE_TYPES = {
    "2": "integer",
    "4": "octet_str",
    "6": "object_id",
    "65": "counter",
    "66": "unsigned",
    "67": "timeticks",
    "70": "counter",
}


def quiet_logs() -> None:
    """The agent logs every device state change: keep the benchmark's output to its table."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    logging.disable(logging.CRITICAL)


# -- SNMP agents --------------------------------------------------------------------------------


# a healthy lamp by day: switched off, drawing nothing, the photocell sees daylight (the sample
# recording is a lamp burning at night)
DAY_VALUES = {
    "1.3.6.1.4.1.32473.1.1.1": "2",  # lamp_on: false
    "1.3.6.1.4.1.32473.1.2.1": "1",  # daylight: true
    "1.3.6.1.4.1.32473.1.3.1": "24000",  # lux
    "1.3.6.1.4.1.32473.3416.2.1": "0",  # dim_command
    "1.3.6.1.4.1.32473.3416.3.1": "0",  # dim_measured
    "1.3.6.1.4.1.32473.3418.2.1": "12",  # supply_current, mA (the controller itself)
    "1.3.6.1.4.1.32473.3418.4.1": "0",  # active_power
    "1.3.6.1.4.1.32473.3418.5.1": "0",  # power_factor
}


def is_day_wib(at: datetime | None = None) -> bool:
    """06:00-18:00 in Tangerang Selatan (UTC+7): lamps are expected off."""
    hour = ((at or datetime.now(UTC)).hour + 7) % 24
    return 6 <= hour < 18


def pju_overrides(sample: Path = PJU_SAMPLE, day: bool | None = None) -> list[str]:
    """snmpd.conf lines that make snmpd answer the pju-generic objects of the sample recording,
    as a healthy lamp at this time of day (by day: off, see DAY_VALUES)."""
    day = is_day_wib() if day is None else day
    lines = []
    for raw in sample.read_text().splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        oid, tag, value = raw.split("|", 2)
        if day:
            value = DAY_VALUES.get(oid, value)
        kind = _OVERRIDE_TYPES[tag]
        shown = f'"{value}"' if kind == "octet_str" else value
        lines.append(f"override {oid} {kind} {shown}")
    return lines


def start_snmpd(workdir: Path, pju: bool = False) -> Snmpd:
    """net-snmp snmpd on a free loopback port (community COMMUNITY, no v3 users); with pju=True
    it also answers the pju-generic street-light objects (values of the sample recording)."""
    extra = ["dontLogTCPWrappersConnects yes"] + (pju_overrides() if pju else [])
    agent = Snmpd(workdir, community=COMMUNITY, v3_users=(), extra_conf=extra)
    agent.start()
    return agent


@contextmanager
def snmpd_agents(workdir: Path, count: int, pju: bool = False) -> Iterator[list[Snmpd]]:
    with ExitStack() as stack:
        agents = []
        for i in range(count):
            agent = start_snmpd(workdir / f"snmpd-{i}", pju)
            stack.callback(agent.stop)
            agents.append(agent)
        yield agents


@contextmanager
def black_holes(count: int) -> Iterator[list[str]]:
    """Loopback UDP ports that receive and never answer (a dead device: no ICMP, no reply)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        yield [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()


# -- gateway configs ----------------------------------------------------------------------------

GATEWAY_HEAD = """\
state_dir = "{state_dir}"
inventory = ["devices.toml"]

[gateway]
id = "gw-bench"
site = "Bench panel"
location = {{ lat = -6.3431, lon = 106.7372, kelurahan = "Pamulang Barat", kecamatan = "Pamulang" }}

[poll]
interval_s = {interval_s}
timeout_s = {timeout_s}
retries = {retries}
jitter = {jitter}
max_concurrency = {max_concurrency}

[rules.unreachable]
icmp = false
"""

LAMP = """\
[[device]]
id = "{id}"
kind = "streetlight"
profile = "pju-generic"
address = "{address}"
snmp = {{ community = "{community}" }}
pole_id = "P-{n}"
circuit = "{circuit}"
rated_w = 60
location = {{ lat = {lat:.6f}, lon = 106.7372, kecamatan = "Pamulang" }}
"""


def write_gateway(
    folder: Path,
    addresses: Sequence[str],
    *,
    interval_s: float = 60.0,
    timeout_s: float = 2.0,
    retries: int = 1,
    jitter: float = 0.1,
    max_concurrency: int = 32,
    lamps_per_circuit: int = 10,
    extra: str = "",
    community: str = COMMUNITY,
) -> Path:
    """A gateway config with one pju-generic street light per address (addresses may repeat:
    many simulated lamps can share one snmpd)."""
    folder.mkdir(parents=True, exist_ok=True)
    head = GATEWAY_HEAD.format(
        state_dir=folder / "state",
        interval_s=interval_s,
        timeout_s=timeout_s,
        retries=retries,
        jitter=jitter,
        max_concurrency=max_concurrency,
    )
    (folder / "gateway.toml").write_text(head + extra)
    lamps = [
        LAMP.format(
            id=f"pju-{n:05d}",
            n=n,
            address=address,
            community=community,
            circuit=f"PNL-{n // lamps_per_circuit:04d}",
            lat=-6.3431 - n * 0.00002,
        )
        for n, address in enumerate(addresses)
    ]
    (folder / "devices.toml").write_text("\n".join(lamps))
    return folder / "gateway.toml"


# -- measuring ----------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_io(pid: int | str = "self") -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key.strip()] = int(value)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least 1
    return ordered[int(rank) - 1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (the machine is shared: report all three)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def fmt_spread(s: dict[str, float], digits: int = 2, scale: float = 1.0) -> str:
    m, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
    return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
    }


# -- output -------------------------------------------------------------------------------------


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def write_results(name: str, argv: Sequence[str], data: dict[str, Any]) -> Path:
    """bench/results/NAME.json: the command (python bench/NAME.py ARGV), machine and data."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "command": " ".join(["python", f"bench/{name}.py", *argv]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"written: {path.relative_to(ROOT)}")
    return path


def run_quiet(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(cmd), check=True, capture_output=True, **kwargs)


__all__ = [
    "COMMUNITY",
    "ROOT",
    "Snmpd",
    "black_holes",
    "fmt_spread",
    "free_port",
    "load_average",
    "machine",
    "percentile",
    "print_table",
    "proc_cpu_s",
    "proc_io",
    "quiet_logs",
    "snmpd_agents",
    "spread",
    "start_snmpd",
    "write_gateway",
    "write_results",
]
