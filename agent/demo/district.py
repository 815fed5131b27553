"""The demo's simulated district: circuits of street-light poles, MQTT lamps and hotspots, and
the generated gateway and central configs that watch it.

Circuits are panels on real streets of Tangerang Selatan, each a line of poles 30 m apart; every
pole is a `LampController` answering SNMP (pju-generic). The MQTT lamps are newer controllers on
the first circuit that publish JSON (pju-mqtt-json). The hotspots are recordings of real access
points (agent/demo/recordings, SOURCES.md), served by the SnmpSimulator, whose uplink interface
can be taken down.

Every duration in the generated configs is in demo time: the agent and central run on the demo's
`ScaledClock`, so at speed 60 a poll interval of 120 s is 2 s of real time.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.demo.lamp import LampController

RECORDINGS = Path(__file__).parent / "recordings"
GATEWAY_ID = "gw-demo-tangsel"
TOPIC_ROOT = "siaran/v1"
ESCALATION_TOPIC = "siaran/central/escalation"
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
WEB_USER = "teknisi"

# demo-time settings (seconds unless named otherwise); see docs/demo.md
POLL_S = 120.0
MQTT_PERIOD_S = 15.0  # the MQTT lamps publish this often (the profile expects 60 s)
HOLD_S = 240.0  # circuit_outage / gateway_network_down window: lamps wait this long to group
DAY_BURNING_AFTER_S = 240.0
UNREACHABLE_AFTER_S = 200.0
SLA_H = 0.4  # 24 demo minutes: a report unanswered that long is red-flagged
ESCALATION_CHECK_S = 60.0


@dataclass(frozen=True)
class Street:
    name: str
    kelurahan: str
    kecamatan: str
    lat: float
    lon: float
    dlat: float  # from one pole to the next (~30 m)
    dlon: float


STREETS = (
    Street("Jl. Siliwangi", "Pamulang Barat", "Pamulang", -6.3431, 106.7372, -0.00027, 0.00003),
    Street("Jl. Raya Puspiptek", "Setu", "Setu", -6.3470, 106.6760, 0.00003, 0.00027),
    Street("Jl. Ciater Raya", "Ciater", "Serpong", -6.3190, 106.6900, -0.00020, 0.00018),
    Street("Jl. Ir. H. Juanda", "Cempaka Putih", "Ciputat Timur", -6.3040, 106.7600, 0.00025, 0.0),
    Street("Jl. Jombang Raya", "Jombang", "Ciputat", -6.2900, 106.7100, 0.0, 0.00027),
    Street("Jl. Pondok Aren", "Pondok Aren", "Pondok Aren", -6.2700, 106.7250, 0.00019, 0.00019),
)
CIRCUIT_CODES = ("SLW", "PSP", "CTR", "JUA", "JMB", "PDA")


@dataclass(frozen=True)
class Site:
    name: str
    kelurahan: str
    kecamatan: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Recording:
    file: str
    profile: str
    model: str
    uplink_if: str | None  # the WAN interface's ifName/ifDescr
    uplink_index: int | None  # its ifIndex in the recording


RECORDED_APS = (
    Recording("routeros.snmprec", "mikrotik-routeros", "MikroTik hAP ac lite", "WAN", 3),
    Recording("openwrt.snmprec", "snmp-host", "Linksys WRT1200AC (OpenWrt)", "wan", 7),
    Recording("airos_airos8.snmprec", "snmp-host", "Ubiquiti LiteBeam 5AC (airOS 8)", "eth0", 2),
    Recording("unifi.snmprec", "snmp-host", "Ubiquiti UniFi AP", None, None),
)
AP_SITES = (
    Site("Taman Kota 1 BSD", "Lengkong Gudang", "Serpong", -6.2886, 106.7158),
    Site("Situ Gintung", "Cireundeu", "Ciputat Timur", -6.3045, 106.7630),
    Site("Alun-alun Pamulang", "Pamulang Barat", "Pamulang", -6.3410, 106.7390),
    Site("Pasar Ciputat", "Ciputat", "Ciputat", -6.3095, 106.7483),
    Site("Taman Jajan BSD", "Rawa Buntu", "Serpong", -6.3020, 106.6800),
    Site("Puspemkot Tangsel", "Ciater", "Serpong", -6.3150, 106.6950),
)


@dataclass
class Pole:
    device_id: str
    pole_id: str
    circuit: str
    street: Street
    number: int
    lat: float
    lon: float
    rated_w: float
    lamp: LampController
    topic: str | None = None  # MQTT lamps: the topic it publishes to
    photocell_delay_s: float = 0.0  # after sunset/before sunrise: photocells differ a little
    relay_stuck: bool = False  # the scenario's day burner: on whatever the photocell says
    powered: bool = True  # its circuit has power

    @property
    def mqtt(self) -> bool:
        return self.topic is not None


@dataclass
class Hotspot:
    device_id: str
    site: Site
    recording: Recording


@dataclass
class Circuit:
    name: str
    street: Street
    poles: list[Pole] = field(default_factory=list)


@dataclass
class District:
    circuits: list[Circuit]
    hotspots: list[Hotspot]

    @property
    def poles(self) -> list[Pole]:
        return [p for c in self.circuits for p in c.poles]

    @property
    def device_count(self) -> int:
        return len(self.poles) + len(self.hotspots)

    def pole(self, device_id: str) -> Pole:
        return next(p for p in self.poles if p.device_id == device_id)


def build_district(
    circuits: int,
    poles_per_circuit: int,
    hotspots: int,
    mqtt_lamps: int,
    monotonic: Any,
    seed: int = 7,
) -> District:
    """The district; `monotonic` is the demo clock's (lamp counters and uptime follow it)."""
    rng = random.Random(seed)
    made: list[Circuit] = []
    for c in range(circuits):
        street, code = STREETS[c % len(STREETS)], CIRCUIT_CODES[c % len(CIRCUIT_CODES)]
        shift = (c // len(STREETS)) * 0.004  # a second panel on the same street: further on
        letter = chr(ord("a") + c)
        circuit = Circuit(f"PNL-{code}-{letter.upper()}", street)
        count = poles_per_circuit + (mqtt_lamps if c == 0 else 0)
        for n in range(1, count + 1):
            over_mqtt = c == 0 and n > poles_per_circuit
            device_id = (
                f"pju-{letter}-m{n - poles_per_circuit:02d}"
                if over_mqtt
                else (f"pju-{letter}-{n:03d}")
            )
            rated = rng.choice((60.0, 60.0, 90.0, 120.0))
            lamp = LampController(
                rated_w=rated,
                sys_name=device_id,
                clock=monotonic,
                lamp_on=False,
                daylight=True,
                lux=12000.0,
                ambient_c=31.0,
            )
            pole = Pole(
                device_id=device_id,
                pole_id=f"{code}-{n:03d}",
                circuit=circuit.name,
                street=street,
                number=n,
                lat=round(street.lat + shift + n * street.dlat, 6),
                lon=round(street.lon + n * street.dlon, 6),
                rated_w=rated,
                lamp=lamp,
                topic=f"pju-lan/{device_id}/state" if over_mqtt else None,
                photocell_delay_s=rng.uniform(0.0, 90.0),
            )
            circuit.poles.append(pole)
        made.append(circuit)
    aps = [
        Hotspot(
            f"ap-{_slug(AP_SITES[k % len(AP_SITES)].name)}"
            + (f"-{k // len(AP_SITES) + 1}" if k >= len(AP_SITES) else ""),
            AP_SITES[k % len(AP_SITES)],
            RECORDED_APS[k % len(RECORDED_APS)],
        )
        for k in range(hotspots)
    ]
    return District(made, aps)


def _slug(name: str) -> str:
    return "-".join(name.lower().replace(".", "").split())


# --- configs ------------------------------------------------------------------------------------
def _toml(value: Any) -> str:
    """A TOML scalar (json's string escapes are TOML's basic-string escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def inventory_toml(district: District, snmp_port: int) -> str:
    out: list[str] = []
    for p in district.poles:
        s = p.street
        lines = [
            "[[device]]",
            f"id = {_toml(p.device_id)}",
            'kind = "streetlight"',
        ]
        if p.topic is not None:
            lines += ['profile = "pju-mqtt-json"', f"address = {_toml(p.topic)}"]
        else:
            lines += [
                'profile = "pju-generic"',
                f'address = "127.0.0.1:{snmp_port}"',
                f'snmp = {{ version = "2c", community = {_toml(p.device_id)} }}',
            ]
        lines += [
            f"pole_id = {_toml(p.pole_id)}",
            f"circuit = {_toml(p.circuit)}",
            f"rated_w = {p.rated_w:g}",
            f"location = {{ lat = {p.lat}, lon = {p.lon}, "
            f"address = {_toml(f'{s.name} (tiang {p.number})')}, "
            f"kelurahan = {_toml(s.kelurahan)}, kecamatan = {_toml(s.kecamatan)} }}",
        ]
        out.append("\n".join(lines))
    for h in district.hotspots:
        site = h.site
        lines = [
            "[[device]]",
            f"id = {_toml(h.device_id)}",
            'kind = "hotspot"',
            f"profile = {_toml(h.recording.profile)}",
            f'address = "127.0.0.1:{snmp_port}"',
            f'snmp = {{ version = "2c", community = {_toml(h.device_id)} }}',
        ]
        if h.recording.uplink_if is not None:
            lines.append(f"uplink_if = {_toml(h.recording.uplink_if)}")
        lines.append(
            f"location = {{ lat = {site.lat}, lon = {site.lon}, address = {_toml(site.name)}, "
            f"kelurahan = {_toml(site.kelurahan)}, kecamatan = {_toml(site.kecamatan)} }}"
        )
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


HOME = (
    'lat = -6.3431, lon = 106.7372, address = "Jl. Siliwangi", kelurahan = "Pamulang Barat", '
    'kecamatan = "Pamulang"'
)

GATEWAY_TOML = """\
# Generated by `siaran-edge demo`: a gateway watching the simulated district. Durations are in
# demo time (the demo's clock runs {speed:g}x); rule settings are tuned so each scripted step
# raises its event within a few demo minutes (docs/demo.md).
state_dir = "state"
inventory = ["devices.toml"]

[gateway]
id = "{gateway_id}"
site = "Demo: panel PJU Jl. Siliwangi (simulated district)"
location = {{ {home} }}

[broker]
host = "{broker_host}"
port = {broker_port}
keepalive_s = 30
topic_root = "{topic_root}"

[device_broker]
host = "{broker_host}"
port = {broker_port}
keepalive_s = 30
client_id = "{gateway_id}-devices"

[poll]
interval_s = {poll_s:g}
timeout_s = 1.0                # real seconds (network timeouts do not speed up)
retries = 0
jitter = 0.5

[outbox]
fault_sync = "normal"
status_interval_s = 600

[telemetry]
flush_interval_s = 600

[rules.lamp_failure]
raise_after = 2
clear_after = 2

[rules.day_burning]
sunset_offset_min = 0          # the sun is up until sunset (default: 30 min before)
raise_after_s = {day_burning_s:g}

[rules.unreachable]
raise_after_s = {unreachable_s:g}        # two missed polls (MQTT lamps: their silence, once)
icmp = false                   # every simulated device is 127.0.0.1, which always answers ping

[rules.uplink_down]
raise_after = 2
clear_after = 2

[rules.circuit_outage]
window_s = {hold_s:g}

[rules.gateway_network_down]
window_s = {hold_s:g}

[web]
listen = "127.0.0.1"
port = {web_port}
session_ttl_s = 604800

[[web.users]]
name = "{web_user}"
display_name = "Teknisi demo"
password_hash = "{password_hash}"
"""

CENTRAL_TOML = """\
# Generated by `siaran-edge demo`: the central consumer of the demo (durations in demo time).
state_dir = "central"
ledger_sync = "normal"
stats_interval_s = 3600

[broker]
host = "{broker_host}"
port = {broker_port}
topic_root = "{topic_root}"
client_id = "siaran-central-demo"
share_group = "central"

[siaran]
base_url = "{siaran_url}"
token = {{ value = "{token}" }}
poll_interval_s = 30

[escalation]
check_interval_s = {escalation_s:g}
topic = "{escalation_topic}"

[categories.streetlight]
siaran_category = "penerangan_jalan_umum"
label = "Penerangan Jalan Umum (PJU)"
agency = "Dinas Perhubungan (Dishub)"
unit = "UPT PJU"
sla_h = {sla_h:g}

[categories.streetlight.kecamatan]
"Serpong" = {{ unit = "UPT PJU Wilayah I" }}
"Serpong Utara" = {{ unit = "UPT PJU Wilayah I" }}
"Setu" = {{ unit = "UPT PJU Wilayah I" }}
"Pondok Aren" = {{ unit = "UPT PJU Wilayah I" }}
"Ciputat" = {{ unit = "UPT PJU Wilayah II" }}
"Ciputat Timur" = {{ unit = "UPT PJU Wilayah II" }}
"Pamulang" = {{ unit = "UPT PJU Wilayah II" }}

[categories.wifi]
siaran_category = "wifi_publik"
label = "WiFi publik"
agency = "Dinas Komunikasi dan Informatika (Diskominfo)"
unit = "UPT Infrastruktur TIK"
sla_h = {sla_h:g}

[gateways.{gateway_id}]
name = "Demo: panel PJU Jl. Siliwangi"
category = "streetlight"
location = {{ {home} }}
"""


@dataclass(frozen=True)
class Ports:
    snmp: int
    broker_host: str
    broker: int
    web: int
    sandbox: int


def write_configs(
    folder: Path,
    district: District,
    ports: Ports,
    password_hash: str,
    token: str,
    speed: float,
) -> tuple[Path, Path]:
    """gateway.toml (+ devices.toml) and central.toml in `folder`; returns their paths."""
    (folder / "devices.toml").write_text(inventory_toml(district, ports.snmp), encoding="utf-8")
    gateway = folder / "gateway.toml"
    gateway.write_text(
        GATEWAY_TOML.format(
            speed=speed,
            gateway_id=GATEWAY_ID,
            home=HOME,
            broker_host=ports.broker_host,
            broker_port=ports.broker,
            topic_root=TOPIC_ROOT,
            poll_s=POLL_S,
            day_burning_s=DAY_BURNING_AFTER_S,
            unreachable_s=UNREACHABLE_AFTER_S,
            hold_s=HOLD_S,
            web_port=ports.web,
            web_user=WEB_USER,
            password_hash=password_hash,
        ),
        encoding="utf-8",
    )
    central = folder / "central.toml"
    central.write_text(
        CENTRAL_TOML.format(
            broker_host=ports.broker_host,
            broker_port=ports.broker,
            topic_root=TOPIC_ROOT,
            siaran_url=f"http://127.0.0.1:{ports.sandbox}",
            token=token,
            escalation_s=ESCALATION_CHECK_S,
            escalation_topic=ESCALATION_TOPIC,
            sla_h=SLA_H,
            gateway_id=GATEWAY_ID,
            home=HOME,
        ),
        encoding="utf-8",
    )
    return gateway, central


def mqtt_payload(pole: Pole, at: datetime) -> bytes:
    """The JSON a pju-mqtt-json controller publishes (docs/profiles/samples)."""
    lamp = pole.lamp
    lamp.tick()
    body = {
        "device": pole.device_id,
        "ts": at.isoformat(timespec="seconds"),
        "firmware": "PJU-NODE fw 2.3.1 (siaran-sim)",
        "uptime": int(lamp.uptime_s),
        "temperature": round(lamp.temperature, 1),
        "lamp": {
            "on": lamp.lamp_on,
            "dim": lamp.dim,
            "dim_measured": lamp.dim_measured,
            "nominal_w": round(lamp.rated_w),
            "hours": int(lamp.lamp_hours),
            "switches": lamp.switch_count,
        },
        "power": {
            "voltage": round(lamp.supply_voltage, 1),
            "current": round(lamp.supply_current, 3),
            "frequency": round(lamp.supply_frequency, 2),
            "active": round(lamp.active_power, 1),
            "pf": lamp.pf,
        },
        "energy": {"wh": int(lamp.energy_wh)},
        "light": {"daylight": lamp.daylight, "lux": round(lamp.lux)},
        "faults": {
            "lamp": lamp.lamp_failure,
            "gear": lamp.gear_failure,
            "relay": lamp.relay_failure,
            "day_burner": lamp.day_burner,
            "cycling": lamp.cycling_failure,
            "gear_comm": lamp.gear_comm_failure,
            "thermal_derating": lamp.thermal_derating,
            "thermal_shutdown": lamp.thermal_shutdown,
        },
    }
    return json.dumps(body).encode()
