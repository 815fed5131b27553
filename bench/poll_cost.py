"""Poll cost: the agent's CPU per device-poll against Prometheus' snmp_exporter and ezsnmp.

    python bench/poll_cost.py [--polls 300] [--rounds 5] [--quick]

One net-snmp snmpd on a free loopback port; the same OID set read three ways, in the same run,
sequentially (one request stream at a time):
- scalars: 10 scalar objects (SNMPv2-MIB system group, ifNumber, HOST-RESOURCES-MIB hrSystem),
  one GET;
- ifwalk:  the IF-MIB ifTable, all 22 columns of its 4 rows here (GETBULK walk);
by
- the agent: collectors.snmp.SnmpCollector.poll(), the whole poll including value conversion
  and the Reading; CPU = time.process_time() around N polls; twice: "agent" with its default
  v2c path (gufo-snmp, collectors/snmp_fast.py) and "agent (pysnmp)" with v2c_fast=False;
- Debian's prometheus-snmp-exporter (Go, gosnmp) with a hand-written snmp.yml module for the
  same OIDs, scraped N times over HTTP; CPU = utime + stime of the exporter process
  (/proc/PID/stat) across the N scrapes (the scraper's own CPU is not counted);
- ezsnmp (Python binding of the net-snmp C library), when it is installed: get() and
  bulk_walk(); CPU = time.process_time();
- bench/v2c_prototype.py: the same poll (same requests, same Reading) with a hand-written
  v2c BER codec instead of pysnmp/pyasn1, to show what pysnmp costs (not used by the agent).
Each round measures all of them; rounds are repeated and reported as median (min-max), because
this machine is shared. The ratio is agent CPU / exporter CPU per poll. Writes
bench/results/poll_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import v2c_prototype
from bench.common import (
    COMMUNITY,
    fmt_spread,
    free_port,
    print_table,
    proc_cpu_s,
    quiet_logs,
    spread,
    start_snmpd,
    write_results,
)
from collectors.snmp import SnmpCollector
from firmware_config.models import Device
from firmware_config.profiles import Profile
from tests.servers import stop, wait_tcp

TARGET_RATIO = 1.6

# name, OID (with instance), profile type, exporter type
SCALARS = [
    ("sys_descr", "1.3.6.1.2.1.1.1.0", "str", "DisplayString"),
    ("sys_uptime", "1.3.6.1.2.1.1.3.0", "timeticks", "gauge"),
    ("sys_contact", "1.3.6.1.2.1.1.4.0", "str", "DisplayString"),
    ("sys_name", "1.3.6.1.2.1.1.5.0", "str", "DisplayString"),
    ("sys_location", "1.3.6.1.2.1.1.6.0", "str", "DisplayString"),
    ("sys_or_last_change", "1.3.6.1.2.1.1.8.0", "timeticks", "gauge"),
    ("if_number", "1.3.6.1.2.1.2.1.0", "int", "gauge"),
    ("hr_system_uptime", "1.3.6.1.2.1.25.1.1.0", "timeticks", "gauge"),
    ("hr_system_num_users", "1.3.6.1.2.1.25.1.5.0", "int", "gauge"),
    ("hr_system_processes", "1.3.6.1.2.1.25.1.6.0", "int", "gauge"),
]
IF_TABLE = "1.3.6.1.2.1.2.2"
# ifTable column number, name, profile type, exporter type
IF_COLUMNS = [
    (1, "if_index", "int", "gauge"),
    (2, "if_descr", "str", "DisplayString"),
    (3, "if_type", "int", "gauge"),
    (4, "if_mtu", "int", "gauge"),
    (5, "if_speed", "int", "gauge"),
    (6, "if_phys_address", "str", "PhysAddress48"),
    (7, "if_admin_status", "int", "gauge"),
    (8, "if_oper_status", "int", "gauge"),
    (9, "if_last_change", "timeticks", "gauge"),
    (10, "if_in_octets", "counter", "counter"),
    (11, "if_in_ucast_pkts", "counter", "counter"),
    (12, "if_in_nucast_pkts", "counter", "counter"),
    (13, "if_in_discards", "counter", "counter"),
    (14, "if_in_errors", "counter", "counter"),
    (15, "if_in_unknown_protos", "counter", "counter"),
    (16, "if_out_octets", "counter", "counter"),
    (17, "if_out_ucast_pkts", "counter", "counter"),
    (18, "if_out_nucast_pkts", "counter", "counter"),
    (19, "if_out_discards", "counter", "counter"),
    (20, "if_out_errors", "counter", "counter"),
    (21, "if_out_qlen", "int", "gauge"),
    (22, "if_specific", "str", "OctetString"),
]
CASES = ("scalars", "ifwalk")


def profile(case: str) -> Profile:
    raw: dict[str, Any] = {"name": f"bench-{case}", "protocol": "snmp", "kinds": ["hotspot"]}
    if case == "scalars":
        raw["metrics"] = [{"name": n, "oid": oid, "type": t} for n, oid, t, _ in SCALARS]
    else:
        columns = [{"name": n, "oid": f"{IF_TABLE}.1.{c}", "type": t} for c, n, t, _ in IF_COLUMNS]
        raw["tables"] = [{"name": "if_table", "columns": columns, "max_rows": 1024}]
    return Profile.model_validate(raw)


def exporter_config(community: str) -> str:
    """snmp.yml in the format of snmp_exporter 0.21 (Debian 12): modules at the top level."""
    out: list[str] = []
    for case in CASES:
        out.append(f"{case}:")
        if case == "scalars":
            out.append("  get:")
            out += [f"  - {oid}" for _, oid, _, _ in SCALARS]
            out.append("  metrics:")
            for name, oid, _, kind in SCALARS:
                out += [
                    f"  - name: {name}",
                    f"    oid: {oid.removesuffix('.0')}",
                    f"    type: {kind}",
                    f"    help: {name}",
                ]
        else:
            out += ["  walk:", f"  - {IF_TABLE}", "  metrics:"]
            for column, name, _, kind in IF_COLUMNS:
                out += [
                    f"  - name: {name}",
                    f"    oid: {IF_TABLE}.1.{column}",
                    f"    type: {kind}",
                    f"    help: {name}",
                    "    indexes:",
                    "    - labelname: ifIndex",
                    "      type: gauge",
                ]
        out += [
            "  version: 2",
            "  max_repetitions: 25",
            "  retries: 1",
            "  timeout: 2s",
            "  auth:",
            f"    community: {community}",
        ]
    return "\n".join(out) + "\n"


class Exporter:
    def __init__(self, workdir: Path, community: str) -> None:
        exe = shutil.which("prometheus-snmp-exporter")
        if exe is None:
            raise FileNotFoundError("prometheus-snmp-exporter is not installed")
        conf = workdir / "snmp.yml"
        conf.write_text(exporter_config(community))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                exe,
                f"--config.file={conf}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_tcp(self.port)
        version = subprocess.run([exe, "--version"], capture_output=True, text=True)
        self.version = (version.stdout + version.stderr).split("\n")[0].strip()

    def scrape(self, target: str, module: str) -> str:
        url = f"http://127.0.0.1:{self.port}/snmp?target={target}&module={module}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())

    def cpu_per_scrape(self, target: str, module: str, n: int) -> float:
        before = proc_cpu_s(self.proc.pid)
        for _ in range(n):
            self.scrape(target, module)
        return (proc_cpu_s(self.proc.pid) - before) / n

    def stop(self) -> None:
        stop(self.proc)


def check_exporter(exporter: Exporter, target: str) -> None:
    text = exporter.scrape(target, "scalars")
    missing = [n for n, *_ in SCALARS if f"\n{n}" not in "\n" + text]
    rows = text.count("if_in_octets{")
    text = exporter.scrape(target, "ifwalk")
    rows = text.count("if_in_octets{")
    if missing or rows < 1:
        raise RuntimeError(f"exporter output incomplete: missing {missing}, {rows} rows")


async def proto_cpu_per_poll(
    client: v2c_prototype.Client, addr: tuple[str, int], prof: Profile, n: int
) -> float:
    start = time.process_time()
    for _ in range(n):
        await v2c_prototype.poll(client, addr, COMMUNITY.encode(), "bench-host", prof)
    return (time.process_time() - start) / n


async def agent_cpu_per_poll(
    collector: SnmpCollector, device: Device, prof: Profile, n: int
) -> float:
    start = time.process_time()
    for _ in range(n):
        await collector.poll(device, prof)
    return (time.process_time() - start) / n


async def check_agent(collector: SnmpCollector, device: Device) -> tuple[int, int]:
    scalars = await collector.poll(device, profile("scalars"))
    walk = await collector.poll(device, profile("ifwalk"))
    if not scalars.ok or len(scalars.values) != len(SCALARS):
        raise RuntimeError(f"agent scalars poll failed: {scalars.errors}")
    if not walk.ok or not walk.tables.get("if_table"):
        raise RuntimeError(f"agent walk failed: {walk.errors}")
    cells = sum(len(row) for row in walk.tables["if_table"].values())
    return len(walk.tables["if_table"]), cells


def ezsnmp_poller(host: str, port: int) -> dict[str, Callable[[], object]] | None:
    try:
        from ezsnmp import Session  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    session = Session(
        hostname=host,
        port_number=port,
        version="2c",
        community=COMMUNITY,
        print_oids_numerically=True,
        set_max_repeaters_to_num=25,
        timeout=2,
        retries=1,
    )
    oids = [oid for _, oid, _, _ in SCALARS]
    return {
        "scalars": lambda: session.get(oids),
        "ifwalk": lambda: session.bulk_walk([IF_TABLE]),
    }


def ez_cpu_per_poll(fn: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quiet_logs()
    work = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    agent = start_snmpd(work / "snmpd")
    exporter: Exporter | None = None
    collector = SnmpCollector(now=lambda: datetime.now(UTC))
    slow = SnmpCollector(now=lambda: datetime.now(UTC), v2c_fast=False)
    if not collector.v2c_fast:
        raise RuntimeError("gufo-snmp is not installed: the agent's v2c fast path is off")
    try:
        exporter = Exporter(work, COMMUNITY)
        target = agent.address
        check_exporter(exporter, target)
        device = Device.model_validate(
            {
                "id": "bench-host",
                "kind": "hotspot",
                "profile": "bench",
                "address": target,
                "snmp": {"community": COMMUNITY},
                "location": {"lat": -6.34, "lon": 106.73},
                "timeout_s": 2.0,
                "retries": 1,
            }
        )
        rows, cells = await check_agent(collector, device)
        if await check_agent(slow, device) != (rows, cells):
            raise RuntimeError("the pysnmp path does not read the same table")
        ez = ezsnmp_poller("127.0.0.1", agent.port)
        proto = await v2c_prototype.Client.open()
        addr = ("127.0.0.1", agent.port)
        check = await v2c_prototype.poll(proto, addr, COMMUNITY.encode(), "x", profile("ifwalk"))
        if sum(len(r) for r in check.tables["if_table"].values()) != cells:
            raise RuntimeError("the v2c prototype does not read the same table")
        samples: dict[str, dict[str, list[float]]] = {
            case: {"agent": [], "pysnmp": [], "exporter": [], "ezsnmp": [], "prototype": []}
            for case in CASES
        }
        profiles = {case: profile(case) for case in CASES}
        for case in CASES:  # warm-up: caches, JIT-less Go GC settling, session set-up
            await agent_cpu_per_poll(collector, device, profiles[case], 20)
            await agent_cpu_per_poll(slow, device, profiles[case], 20)
            exporter.cpu_per_scrape(target, case, 20)
        for r in range(args.rounds):
            for case in CASES:
                order = ["agent", "pysnmp", "exporter", "ezsnmp", "prototype"]
                order = order[r % 5 :] + order[: r % 5]  # rotate: no one always goes first
                for who in order:
                    if who == "agent":
                        value = await agent_cpu_per_poll(
                            collector, device, profiles[case], args.polls
                        )
                    elif who == "pysnmp":
                        value = await agent_cpu_per_poll(slow, device, profiles[case], args.polls)
                    elif who == "exporter":
                        value = exporter.cpu_per_scrape(target, case, args.polls)
                    elif who == "prototype":
                        value = await proto_cpu_per_poll(proto, addr, profiles[case], args.polls)
                    elif ez is not None:
                        value = ez_cpu_per_poll(ez[case], args.polls)
                    else:
                        continue
                    samples[case][who].append(value)
        version = exporter.version
        proto.close()
    finally:
        await collector.close()
        await slow.close()
        if exporter is not None:
            exporter.stop()
        agent.stop()
        shutil.rmtree(work, ignore_errors=True)

    table = []
    results: dict[str, Any] = {}
    for case in CASES:
        s = samples[case]
        ratios = [a / e for a, e in zip(s["agent"], s["exporter"], strict=True)]
        row: dict[str, Any] = {
            "agent_cpu_ms": spread([v * 1e3 for v in s["agent"]]),
            "exporter_cpu_ms": spread([v * 1e3 for v in s["exporter"]]),
            "ratio_agent_to_exporter": spread(ratios),
            "pysnmp_cpu_ms": spread([v * 1e3 for v in s["pysnmp"]]),
            "ratio_pysnmp_to_exporter": spread(
                [a / e for a, e in zip(s["pysnmp"], s["exporter"], strict=True)]
            ),
        }
        row["prototype_cpu_ms"] = spread([v * 1e3 for v in s["prototype"]])
        row["ratio_prototype_to_exporter"] = spread(
            [p / e for p, e in zip(s["prototype"], s["exporter"], strict=True)]
        )
        if s["ezsnmp"]:
            row["ezsnmp_cpu_ms"] = spread([v * 1e3 for v in s["ezsnmp"]])
            row["ratio_agent_to_ezsnmp"] = spread(
                [a / z for a, z in zip(s["agent"], s["ezsnmp"], strict=True)]
            )
        results[case] = row
        table.append(
            [
                "10 scalars (GET)" if case == "scalars" else f"ifTable walk ({rows}x22)",
                fmt_spread(row["agent_cpu_ms"]),
                fmt_spread(row["exporter_cpu_ms"]),
                fmt_spread(row["ezsnmp_cpu_ms"]) if s["ezsnmp"] else "n/a",
                fmt_spread(row["ratio_agent_to_exporter"]),
                f"<= {TARGET_RATIO}",
                fmt_spread(row["pysnmp_cpu_ms"]),
                fmt_spread(row["ratio_pysnmp_to_exporter"]),
                fmt_spread(row["prototype_cpu_ms"]),
                fmt_spread(row["ratio_prototype_to_exporter"]),
            ]
        )
    print_table(
        f"CPU per device-poll, ms: median (min-max) of {args.rounds} rounds x {args.polls} polls",
        [
            "OID set",
            "agent",
            "snmp_exporter",
            "ezsnmp",
            "agent/exporter",
            "target",
            "agent (pysnmp)",
            "pysnmp/exporter",
            "v2c prototype",
            "prototype/exporter",
        ],
        table,
    )
    print(f"exporter: {version}; ifTable: {rows} rows, {cells} cells per walk")
    data = {
        "polls_per_round": args.polls,
        "rounds": args.rounds,
        "exporter_version": version,
        "ezsnmp": ez is not None,
        "if_table_rows": rows,
        "target_ratio": TARGET_RATIO,
        "results": results,
        "samples_ms": {
            case: {k: [round(v * 1e3, 4) for v in vs] for k, vs in who.items()}
            for case, who in samples.items()
        },
    }
    write_results("poll_cost", args.argv, data)
    return data


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--polls", type=int, default=300, help="polls per measurement")
    p.add_argument("--rounds", type=int, default=5, help="repeated measurements")
    p.add_argument("--quick", action="store_true", help="100 polls x 3 rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.polls, args.rounds = 100, 3
    args.argv = argv
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
