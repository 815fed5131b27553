"""The central consumer's configuration (TOML): broker, SIARAN, agencies, SLAs, boundary, and
the InfluxDB that gateways' telemetry goes to (`[influxdb]`, the gateway's own model).

Immutable once loaded (frozen models); run-time state lives in the ledger (state_dir).
Secrets are SecretStr (they print as '**********') and are never logged.
Every setting is described in docs/central.md; a full example: docs/examples/central.toml.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from central.geo import Boundary, load_geojson
from central.siaran_api import Priority
from firmware_config.models import SecretSource
from firmware_config.telemetry_config import InfluxConfig

Category = Literal["streetlight", "wifi"]
Severity = Literal["info", "minor", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "minor", "major", "critical")
GatewayId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
KiB = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Strict):
    ca_file: Path | None = Field(None, description="CA bundle of the broker's certificate")
    cert_file: Path | None = None
    key_file: Path | None = None


class BrokerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    tls: TlsSettings | None = None
    username: str | None = None
    password: SecretSource | None = None
    topic_root: str = Field("siaran/v1", pattern=r"^[^+#]*[^/+#]$")
    client_id: str = Field(
        default_factory=lambda: f"siaran-central-{socket.gethostname()}"[:64],
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Stable and different for each instance (its persistent session)",
    )
    share_group: str = Field(
        "central",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Shared subscription group ($share/GROUP/...); '' = a plain subscription",
    )
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(
        86400, ge=0, description="Messages wait on the broker this long while central is away"
    )
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="Longest reconnect backoff")


class SiaranSettings(_Strict):
    base_url: str = Field(
        "http://127.0.0.1:8700", pattern=r"^https?://", description="Without /api/v1"
    )
    token: SecretSource | None = Field(None, description="Bearer token of the API")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Per HTTP request")
    attempts: int = Field(3, ge=1, le=20, description="Tries per operation before backing off")
    backoff_max_s: float = Field(60.0, gt=0, le=3600, description="Longest outbox backoff")
    poll_interval_s: float = Field(
        2.0, gt=0, le=600, description="How often the outbox looks for work it was not told of"
    )
    reporter_id: str = Field("siaran-edge", min_length=1, max_length=100)
    reporter_name: str = "siaran-edge: sensor PJU dan WiFi publik Kota Tangerang Selatan"


class Assignment(_Strict):
    agency: str | None = Field(None, description="Agency (SKPD) for this kecamatan")
    unit: str | None = Field(None, description="Technical unit (UPT) for this kecamatan")


class CategorySettings(_Strict):
    siaran_category: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    label: str = Field(min_length=1, description="Name of the category for people")
    agency: str = Field(min_length=1, description="Responsible agency (SKPD)")
    unit: str = Field("", description="Technical unit (UPT) unless a kecamatan says otherwise")
    sla_h: float = Field(gt=0, le=24 * 365, description="Hours the agency has to respond")
    kecamatan: dict[str, Assignment] = Field(
        default_factory=dict, description="Per-kecamatan agency/unit (case-insensitive names)"
    )

    def assignment(self, kecamatan: str) -> tuple[str, str]:
        wanted = " ".join(kecamatan.lower().split())
        for name, a in self.kecamatan.items():
            if " ".join(name.lower().split()) == wanted:
                return a.agency or self.agency, a.unit if a.unit is not None else self.unit
        return self.agency, self.unit


_WIL_1 = Assignment(unit="UPT PJU Wilayah I")
_WIL_2 = Assignment(unit="UPT PJU Wilayah II")


def _streetlight() -> CategorySettings:
    return CategorySettings(
        siaran_category="penerangan_jalan_umum",
        label="Penerangan Jalan Umum (PJU)",
        agency="Dinas Perhubungan (Dishub)",
        unit="UPT PJU",
        sla_h=72,
        kecamatan={
            "Serpong": _WIL_1,
            "Serpong Utara": _WIL_1,
            "Setu": _WIL_1,
            "Pondok Aren": _WIL_1,
            "Ciputat": _WIL_2,
            "Ciputat Timur": _WIL_2,
            "Pamulang": _WIL_2,
        },
    )


def _wifi() -> CategorySettings:
    return CategorySettings(
        siaran_category="wifi_publik",
        label="WiFi publik",
        agency="Dinas Komunikasi dan Informatika (Diskominfo)",
        unit="UPT Infrastruktur TIK",
        sla_h=24,
    )


class Categories(_Strict):
    streetlight: CategorySettings = Field(default_factory=_streetlight)
    wifi: CategorySettings = Field(default_factory=_wifi)

    def of(self, category: Category) -> CategorySettings:
        return self.streetlight if category == "streetlight" else self.wifi


def _priorities() -> dict[Severity, Priority]:
    return {"info": "rendah", "minor": "sedang", "major": "tinggi", "critical": "darurat"}


class ReportSettings(_Strict):
    reopen_window_h: float = Field(
        72.0, ge=0, description="A fault raised again this soon after it cleared reopens"
    )
    close_on_clear: bool = Field(
        False, description="Close a report when the sensors see the fault gone (else: verified)"
    )
    min_severity: Severity = Field("minor", description="Faults below it are recorded only")
    replay_settle_s: float = Field(
        120.0,
        ge=0,
        description="A replayed fault is filed this long after it arrives, unless its clear "
        "follows in the same backlog (then nothing is filed)",
    )
    gateway_offline_grace_s: float = Field(
        600.0, ge=0, description="A gateway's Last Will is filed if it is not back by then"
    )
    priority: dict[Severity, Priority] = Field(default_factory=_priorities)

    @model_validator(mode="after")
    def _every_severity(self) -> ReportSettings:
        missing = [s for s in SEVERITIES if s not in self.priority]
        if missing:
            raise ValueError(f"priority: give a priority for {', '.join(missing)}")
        return self


class EscalationSettings(_Strict):
    enabled: bool = True
    check_interval_s: float = Field(300.0, gt=0, le=86400)
    topic: str = Field(
        "siaran/central/escalation",
        pattern=r"^[^+#$][^+#]*$",
        description="Where escalation events are published (QoS 1)",
    )


class SiteLocation(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str = ""
    kelurahan: str = ""
    kecamatan: str = ""


class GatewaySite(_Strict):
    """What central knows of a gateway before it says anything (for its offline report)."""

    name: str = Field("", description="e.g. 'Panel PJU Jl. Siliwangi'")
    category: Category = "streetlight"
    location: SiteLocation | None = None


class BoundarySettings(_Strict):
    name: str = "Kota Tangerang Selatan"
    points: list[tuple[float, float]] | None = Field(
        None, min_length=3, description="The outline as [lat, lon] pairs (default: rough Tangsel)"
    )
    geojson_file: Path | None = Field(None, description="Or: a GeoJSON (Multi)Polygon")

    @model_validator(mode="after")
    def _one_source(self) -> BoundarySettings:
        if self.points is not None and self.geojson_file is not None:
            raise ValueError("give either 'points' or 'geojson_file', not both")
        return self

    def build(self) -> Boundary:
        if self.geojson_file is not None:
            return load_geojson(self.geojson_file, self.name)
        if self.points is not None:
            return Boundary.of_points(self.name, self.points)
        return Boundary.default()


class CentralConfig(_Strict):
    state_dir: Path = Field(
        Path("/var/lib/siaran-central"), description="The ledger (central.db) lives here"
    )
    ledger_file: str = Field("central.db", pattern=r"^[A-Za-z0-9._-]+$")
    ledger_sync: Literal["full", "normal"] = Field(
        "full", description="SQLite synchronous mode of ledger commits ('full' = fsync each)"
    )
    max_payload_bytes: int = Field(
        64 * KiB, ge=1024, le=16 * 1024 * KiB, description="Larger messages are rejected"
    )
    stats_interval_s: float = Field(300.0, gt=0, description="Counters are logged this often")
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    siaran: SiaranSettings = Field(default_factory=SiaranSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    categories: Categories = Field(default_factory=Categories)
    gateways: dict[GatewayId, GatewaySite] = Field(default_factory=dict)
    boundary: BoundarySettings = Field(default_factory=BoundarySettings)
    influxdb: InfluxConfig | None = Field(
        None,
        description="Telemetry batches from the gateways are written here; none = central "
        "neither subscribes to nor writes telemetry",
    )

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / self.ledger_file


class CentralConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _resolve(base: Path, path: Path | None) -> Path | None:
    return path if path is None or path.is_absolute() else base / path


def _resolved_secret(base: Path, s: SecretSource | None) -> SecretSource | None:
    if s is None or s.file is None:
        return s
    return s.model_copy(update={"file": _resolve(base, s.file)})


def _resolved_influx(base: Path, influx: InfluxConfig | None) -> InfluxConfig | None:
    if influx is None:
        return None
    token = influx.token
    if token is not None and token.file is not None:
        token = token.model_copy(update={"file": _resolve(base, token.file)})
    return influx.model_copy(update={"token": token, "ca_file": _resolve(base, influx.ca_file)})


def with_paths_from(config: CentralConfig, base: Path) -> CentralConfig:
    """Relative paths of the file are relative to its folder."""
    b, s = config.broker, config.siaran
    tls = b.tls
    if tls is not None:
        tls = tls.model_copy(
            update={
                f: _resolve(base, getattr(tls, f)) for f in ("ca_file", "cert_file", "key_file")
            }
        )
    bound = config.boundary.model_copy(
        update={"geojson_file": _resolve(base, config.boundary.geojson_file)}
    )
    return config.model_copy(
        update={
            "state_dir": _resolve(base, config.state_dir) or config.state_dir,
            "broker": b.model_copy(
                update={"tls": tls, "password": _resolved_secret(base, b.password)}
            ),
            "siaran": s.model_copy(update={"token": _resolved_secret(base, s.token)}),
            "boundary": bound,
            "influxdb": _resolved_influx(base, config.influxdb),
        }
    )


def load_config(path: Path) -> CentralConfig:
    """Read and check a config file; CentralConfigError lists every problem at once."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CentralConfigError([f"cannot read {path}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise CentralConfigError([f"not valid TOML: {exc}"]) from None
    try:
        config = with_paths_from(CentralConfig.model_validate(raw), path.parent)
    except ValidationError as exc:
        raise CentralConfigError(
            [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
        ) from None
    problems = []
    try:
        boundary = config.boundary.build()
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        problems.append(f"boundary: {exc}")
    else:
        for gw, site in config.gateways.items():
            loc = site.location
            if loc is not None and not boundary.contains(loc.lat, loc.lon):
                problems.append(f"gateways.{gw}.location: outside {boundary.name}")
    if problems:
        raise CentralConfigError(problems)
    return config
