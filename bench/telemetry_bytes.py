"""Uplink bytes per device per day: report by exception against sending every reading.

    python bench/telemetry_bytes.py [--lamps 25] [--hotspots 4] [--seed 1]

One simulated day (00:00 to 24:00 WIB), every device polled every 60 s, in simulated time:
- street light: agent.demo.lamp.LampController through the pju-generic profile; on from 18:00 to
  06:00; supply voltage drifting over the day (±4 V) with noise (sd 0.5 V), lamp power with noise
  (sd 0.3 %), air temperature 26..33 °C, photocell lux following the sun with noise;
- hotspot: the recorded MikroTik hAP ac lite (agent/demo/recordings/routeros.snmprec) through
  the mikrotik-routeros profile, with clients following the hour of day (0..25 per AP, a random
  walk), traffic growing with the clients, CPU load and temperature with noise.
Readings go through the real filter (agent.telemetry.Telemetry, default [telemetry] settings);
batches are encoded exactly as the outbox publishes them (uplink.contract.encode).
Baseline "every reading": the same metrics, all of them at every poll, one batch per poll cycle.

Bytes per publish = MQTT payload + an estimate of what carrying it costs (OVERHEAD below): the
MQTT 5 PUBLISH header with the topic, the broker's PUBACK, TLS record overhead both ways and
four TCP/IPv4 segments (PUBLISH, PUBACK and their ACKs, 52 B each with timestamps). Keep-alive
pings and the retained status are per gateway and the same with or without telemetry: left out.
Writes bench/results/telemetry_bytes.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import FakeClock
from agent.demo.lamp import LampController
from agent.demo.readings import reading_from_records
from agent.demo.snmprec import Record, read_snmprec
from agent.telemetry import Telemetry, worth_a_batch
from collectors.reading import Reading
from firmware_config.loader import load_profiles
from firmware_config.models import Device, Location
from firmware_config.profiles import Profile
from firmware_config.telemetry_config import TelemetryConfig
from uplink.contract import DeviceSamples, TelemetryBatch, Topics, encode

RESULTS = Path(__file__).resolve().parent / "results" / "telemetry_bytes.json"
RECORDING = Path(__file__).resolve().parent.parent / "agent/demo/recordings/routeros.snmprec"
DAY0 = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # 00:00 WIB (UTC+7)
POLL_S = 60
GATEWAY = "gw-pamulang-01"
TARGET_LAMP_BYTES = 30_000

TOPIC = Topics("siaran/v1", GATEWAY).telemetry
MQTT_PUBLISH = 1 + 2 + 2 + len(TOPIC) + 2 + 1  # fixed header, topic, packet id, properties
MQTT_PUBACK = 4
TLS_RECORDS = 2 * 29  # AES-GCM record: 5 header + 8 nonce + 16 tag, each direction
TCP_IP = 4 * 52  # PUBLISH, PUBACK and their ACKs: IPv4 20 + TCP 20 + timestamps 12
OVERHEAD = MQTT_PUBLISH + MQTT_PUBACK + TLS_RECORDS + TCP_IP


def hour_wib(t: float) -> float:
    return (t / 3600.0) % 24


class LampSim:
    def __init__(self, device: Device, profile: Profile, rng: random.Random, clock: FakeClock):
        self.device, self.profile, self.rng = device, profile, rng
        self.lamp = LampController(rated_w=device.rated_w or 60, clock=clock.monotonic)
        self.lamp.energy_wh = rng.uniform(50_000, 400_000)
        self.lamp.lamp_hours = rng.randint(2_000, 20_000)
        self.lamp.switch_count = rng.randint(300, 3000)
        self.phase = rng.uniform(0, 2 * math.pi)

    def reading(self, t: float, at: datetime) -> Reading:
        h, r, lamp = hour_wib(t), self.rng, self.lamp
        night = h >= 18 or h < 6
        sun = max(0.0, math.sin(math.pi * (h - 6) / 12))
        lamp.update(
            lamp_on=night,
            daylight=not night,
            lux=max(0.0, 60_000 * sun * r.uniform(0.9, 1.1)) + r.choice((1, 2, 2, 3)),
            supply_voltage=220
            + 4 * math.sin(2 * math.pi * t / 86400 + self.phase)
            + r.gauss(0, 0.5),
            health=1.0 + r.gauss(0, 0.003),
            ambient_c=29.5 - 3.5 * math.cos(2 * math.pi * (h - 14) / 24),
        )
        return reading_from_records(lamp.records(), self.device.id, self.profile, at)


class HotspotSim:
    def __init__(self, device: Device, profile: Profile, rng: random.Random, base: list[Record]):
        self.device, self.profile, self.rng = device, profile, rng
        self.base = reading_from_records(base, device.id, profile, DAY0)
        self.clients = {row: 0 for row in self.base.tables.get("wireless_aps", {})}
        self.octets = {
            row: (float(c.get("if_in_octets") or 0), float(c.get("if_out_octets") or 0))
            for row, c in self.base.tables.get("interfaces", {}).items()
        }

    def reading(self, t: float, at: datetime) -> Reading:
        h, r = hour_wib(t), self.rng
        want = 25 * max(0.0, math.sin(math.pi * (h - 7) / 15)) if 7 <= h <= 22 else 0.0
        for row, n in self.clients.items():
            step = 1 if n < want else -1 if n > want else 0
            self.clients[row] = max(0, n + (step if r.random() < 0.3 else r.choice((-1, 0, 1))))
        users = sum(self.clients.values())
        tables = {
            k: {row: dict(cells) for row, cells in v.items()} for k, v in self.base.tables.items()
        }
        for row, cells in tables.get("wireless_aps", {}).items():
            cells["client_count"] = self.clients[row]
            cells["auth_client_count"] = self.clients[row]
        for row, (i, o) in self.octets.items():
            if i > 0:  # interfaces that carry traffic
                i += users * r.uniform(20_000, 60_000) * POLL_S / 8 + r.uniform(0, 2000)
                o += users * r.uniform(2_000, 8_000) * POLL_S / 8 + r.uniform(0, 500)
                self.octets[row] = (i, o)
            tables["interfaces"][row].update(if_in_octets=int(i), if_out_octets=int(o))
        for cells in tables.get("processors", {}).values():
            cells["cpu_load"] = min(100, max(1, int(5 + users * 0.3 + r.gauss(0, 3))))
        values = dict(self.base.values)
        values.update(
            uptime=round((values.get("uptime") or 0) + t, 2),  # type: ignore[operator]
            host_uptime=round((values.get("host_uptime") or 0) + t, 2),  # type: ignore[operator]
            board_temperature=round(38 + users * 0.2 + r.gauss(0, 0.3), 1),
            psu_voltage=round(24.1 + r.gauss(0, 0.05), 1),
            dhcp_leases=users + r.randint(0, 2),
        )
        return Reading(
            device_id=self.device.id, at=at, reachable=True, values=values, tables=tables
        )


@dataclass
class Result:
    scenario: str
    devices: int
    mode: str
    flush_interval_s: int
    publishes_per_day: int
    samples_per_day: int
    values_per_day: int
    payload_bytes_per_device: int
    wire_bytes_per_device: int  # payload + per-publish overhead, per device
    zlib_payload_bytes_per_device: int  # what zlib (level 6) would make of each payload


def lamps(n: int) -> list[Device]:
    return [
        Device(
            id=f"pju-{i + 1:04d}",
            kind="streetlight",
            profile="pju-generic",
            address=f"10.7.0.{i + 10}:161",
            location=Location(
                lat=-6.3431, lon=106.7372, kelurahan="Pamulang Barat", kecamatan="Pamulang"
            ),
            pole_id=f"PML-{i + 1:03d}",
            circuit="PNL-07/A",
            rated_w=60,
        )
        for i in range(n)
    ]


def hotspots(n: int) -> list[Device]:
    return [
        Device(
            id=f"wifi-{i + 1:02d}",
            kind="hotspot",
            profile="mikrotik-routeros",
            address=f"10.8.0.{i + 10}:161",
            location=Location(
                lat=-6.29, lon=106.71, kelurahan="Lengkong Gudang", kecamatan="Serpong"
            ),
            uplink_if="pppoe-out1",
        )
        for i in range(n)
    ]


def simulate(
    devices: list[Device],
    make: Callable[[Device], object],
    config: TelemetryConfig,
    clock: FakeClock,
) -> tuple[list[tuple[float, DeviceSamples]], list[tuple[float, DeviceSamples]]]:
    """One day of polls: (time, sample) of RBE and of every reading."""
    profiles = load_profiles()
    pairs = [(d, profiles[d.profile]) for d in devices]
    rbe = Telemetry(config, pairs, clock)
    sims = {d.id: make(d) for d in devices}
    out_rbe: list[tuple[float, DeviceSamples]] = []
    out_all: list[tuple[float, DeviceSamples]] = []
    for step in range(86400 // POLL_S):
        t = float(step * POLL_S)
        clock._t = t  # the lamp's counters integrate over this clock
        at = DAY0 + timedelta(seconds=t)
        for d in devices:
            reading = sims[d.id].reading(t, at)  # type: ignore[attr-defined]
            sample = rbe.decide(reading)
            if sample is not None:
                out_rbe.append((t, sample))
            every = {k: v for k, (_, _, v) in rbe.candidates(reading).items()}
            out_all.append((t, DeviceSamples(device_id=d.id, at=at, values=every)))
    return out_rbe, out_all


def measure(
    name: str,
    devices: int,
    mode: str,
    samples: list[tuple[float, DeviceSamples]],
    flush_s: int,
    config: TelemetryConfig | None = None,
) -> Result:
    """Batches as the agent makes them: at each flush (every flush_s), what waits is sent if
    worth it by `config`'s min_batch_bytes / max_wait_s (agent.telemetry.worth_a_batch);
    config None: every flush sends what it has."""
    groups: list[list[DeviceSamples]] = []
    waiting: list[DeviceSamples] = []
    since = 0.0
    rule = None if config is None else config.model_copy(update={"flush_interval_s": flush_s})
    queue = sorted(samples, key=lambda ts: ts[0])
    i = 0
    for check in range(flush_s, 86400 + flush_s, flush_s):
        while i < len(queue) and queue[i][0] < check:
            if not waiting:
                since = queue[i][0]
            waiting.append(queue[i][1])
            i += 1
        last = check >= 86400
        if waiting and (last or rule is None or worth_a_batch(waiting, check - since, rule)):
            groups.append(waiting)
            waiting = []
    payload = zipped = 0
    for group in groups:
        wire = encode(TelemetryBatch(samples=group, gateway_id=GATEWAY, replayed=False))
        payload += len(wire)
        zipped += len(zlib.compress(wire, 6))
    n = len(groups)
    return Result(
        scenario=name,
        devices=devices,
        mode=mode,
        flush_interval_s=flush_s,
        publishes_per_day=n,
        samples_per_day=len(samples),
        values_per_day=sum(len(s.values) for _, s in samples),
        payload_bytes_per_device=round(payload / devices),
        wire_bytes_per_device=round((payload + n * OVERHEAD) / devices),
        zlib_payload_bytes_per_device=round(zipped / devices),
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--lamps", type=int, default=25, help="street lights on a panel gateway")
    p.add_argument("--hotspots", type=int, default=4, help="hotspots on a site gateway")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    config = TelemetryConfig()
    profiles = load_profiles()
    base = read_snmprec(RECORDING)
    real0 = time.monotonic()
    results: list[Result] = []
    for kind, counts in (("street light", (1, args.lamps)), ("hotspot", (1, args.hotspots))):
        for n in counts:
            rng = random.Random(args.seed)
            clock = FakeClock(DAY0)
            devs = lamps(n) if kind == "street light" else hotspots(n)
            make = partial(_sim, profiles=profiles, rng=rng, clock=clock, base=base)
            rbe, every = simulate(devs, make, config, clock)
            name = f"{kind} x{n}"
            results.append(measure(name, n, "every reading", every, POLL_S))
            for flush in sorted({60, 300, 900, 3600, int(config.flush_interval_s)}):
                results.append(measure(name, n, "every flush", rbe, flush))
                results.append(measure(name, n, "report by exception", rbe, flush, config))
    real = time.monotonic() - real0
    print(
        f"report by exception: batches of at least {config.min_batch_bytes} B or"
        f" {config.max_wait_s:g} s old (the defaults); every flush: whatever waits"
    )
    head = (
        f"{'gateway':16} {'mode':20} {'flush':>5} {'pub/d':>6} {'values/d':>9}"
        f" {'payload/dev':>11} {'wire/dev':>10} {'(zlib)':>8}"
    )
    print(
        f"one simulated day, polls every {POLL_S} s; bytes per device per day;"
        f" per-publish overhead {OVERHEAD} B (see docstring)"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.scenario:16} {r.mode:20} {r.flush_interval_s:5d} {r.publishes_per_day:6d}"
            f" {r.values_per_day // r.devices:9d} {_kb(r.payload_bytes_per_device):>11}"
            f" {_kb(r.wire_bytes_per_device):>10} {_kb(r.zlib_payload_bytes_per_device):>8}"
        )
    default_flush = int(config.flush_interval_s)
    for n in (args.lamps, 1):
        r = next(
            r
            for r in results
            if r.scenario == f"street light x{n}"
            and r.mode == "report by exception"
            and r.flush_interval_s == default_flush
        )
        verdict = "OK" if r.wire_bytes_per_device <= TARGET_LAMP_BYTES else "OVER"
        print(
            f"street light on a gateway of {n}, default settings: {_kb(r.wire_bytes_per_device)}"
            f" per day ({verdict}: target {TARGET_LAMP_BYTES / 1000:.0f} KB)"
        )
    print(f"real time {real:.1f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "command": "python bench/telemetry_bytes.py " + " ".join(argv),
                "poll_interval_s": POLL_S,
                "overhead_bytes_per_publish": OVERHEAD,
                "telemetry_config": config.model_dump(mode="json"),
                "target_bytes_per_street_light_per_day": TARGET_LAMP_BYTES,
                "python": platform.python_version(),
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written: {RESULTS}")
    return 0


def _sim(
    d: Device,
    profiles: dict[str, Profile],
    rng: random.Random,
    clock: FakeClock,
    base: list[Record],
) -> LampSim | HotspotSim:
    if d.kind == "streetlight":
        return LampSim(d, profiles[d.profile], rng, clock)
    return HotspotSim(d, profiles[d.profile], rng, base)


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
