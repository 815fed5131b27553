"""Pydantic models of the gateway configuration and its device inventory.

Configuration is immutable once loaded (frozen models); run-time state lives elsewhere.
Secrets are SecretStr so that they print as '**********'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from firmware_config.uplink_config import OutboxConfig
from firmware_config.web_config import WebConfig

DeviceKind = Literal["streetlight", "hotspot"]

# An id must be usable as one MQTT topic level and in file names: no '/', '+', '#'.
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(Strict):
    lat: float = Field(ge=-90, le=90, description="Latitude, decimal degrees (south is negative)")
    lon: float = Field(ge=-180, le=180, description="Longitude, decimal degrees")
    address: str = Field("", description="Street address, e.g. 'Jl. Pahlawan Seribu 12'")
    kelurahan: str = ""
    kecamatan: str = ""


class SecretSource(Strict):
    """A secret given inline, in a file (first line), or in an environment variable."""

    value: SecretStr | None = None
    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        given = [x for x in (self.value, self.file, self.env) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'value', 'file' or 'env'")
        return self

    def resolve(self) -> SecretStr:
        """Read the secret; raises ValueError naming the file or variable (never the value)."""
        if self.value is not None:
            return self.value
        if self.file is not None:
            try:
                return SecretStr(self.file.read_text(encoding="utf-8").splitlines()[0].strip())
            except (OSError, IndexError) as exc:
                raise ValueError(f"cannot read secret file {self.file}: {exc}") from None
        assert self.env is not None
        found = os.environ.get(self.env)
        if found is None:
            raise ValueError(f"environment variable {self.env} is not set")
        return SecretStr(found)


class TlsConfig(Strict):
    ca_file: Path | None = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS)")
    key_file: Path | None = Field(None, description="Client private key (mutual TLS)")

    @model_validator(mode="after")
    def _cert_with_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BrokerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    tls: TlsConfig | None = None
    username: str | None = None
    password: SecretSource | None = None
    topic_root: str = Field("siaran/v1", pattern=r"^[^+#]+[^/+#]$")
    keepalive_s: int = Field(30, ge=5, le=3600)
    client_id: str | None = Field(None, description="Defaults to the gateway id")


class PollDefaults(Strict):
    interval_s: float = Field(60.0, gt=0, le=86400)
    timeout_s: float = Field(2.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=10)
    jitter: float = Field(
        1.0, ge=0, le=1, description="Share of the interval over which first polls are spread"
    )
    max_concurrency: int = Field(32, ge=1, le=1024, description="SNMP requests in flight at once")


AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES192", "AES256"]


class SnmpV2c(Strict):
    version: Literal["2c"] = "2c"
    community: SecretStr


class SnmpV3(Strict):
    version: Literal["3"] = "3"
    user: str = Field(min_length=1)
    auth_protocol: AuthProtocol | None = None
    auth_key: SecretStr | None = None
    priv_protocol: PrivProtocol | None = None
    priv_key: SecretStr | None = None
    context: str = ""

    @model_validator(mode="after")
    def _levels(self) -> SnmpV3:
        if (self.auth_protocol is None) != (self.auth_key is None):
            raise ValueError("auth_protocol and auth_key go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            raise ValueError("priv_protocol and priv_key go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("privacy (priv_protocol) needs authentication (auth_protocol)")
        for key in (self.auth_key, self.priv_key):
            if key is not None and len(key.get_secret_value()) < 8:
                raise ValueError("SNMPv3 keys must be at least 8 characters (RFC 3414)")
        return self

    @property
    def level(self) -> str:
        if self.priv_protocol:
            return "authPriv"
        return "authNoPriv" if self.auth_protocol else "noAuthNoPriv"


def _snmp_version(value: Any) -> str:
    """The union's tag: 'version', which defaults to '2c' when left out."""
    found = value.get("version", "2c") if isinstance(value, dict) else value.version
    return str(found)


SnmpCredentials = Annotated[
    Annotated[SnmpV2c, Tag("2c")] | Annotated[SnmpV3, Tag("3")], Discriminator(_snmp_version)
]


class Device(Strict):
    id: Identifier
    kind: DeviceKind
    profile: str = Field(min_length=1)
    address: str = Field(
        min_length=1, description="host:port for SNMP devices; the MQTT topic for MQTT devices"
    )
    credentials: str | None = Field(
        None, description="Name of an [snmp_credentials.NAME] set in the gateway config"
    )
    snmp: SnmpCredentials | None = Field(None, description="Inline SNMP credentials")
    interval_s: float | None = Field(None, gt=0, le=86400)
    timeout_s: float | None = Field(None, gt=0, le=60)
    retries: int | None = Field(None, ge=0, le=10)
    location: Location
    pole_id: str | None = None
    circuit: str | None = Field(None, description="Circuit or panel the lamp hangs on")
    rated_w: float | None = Field(None, gt=0, le=5000, description="Lamp rating at 100% (W)")
    uplink_if: str | None = Field(None, description="Hotspot: name of the WAN/uplink interface")

    @model_validator(mode="after")
    def _kind_fields(self) -> Device:
        if self.kind == "streetlight":
            missing = [f for f in ("pole_id", "circuit", "rated_w") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a streetlight needs {', '.join(missing)}")
        if self.credentials is not None and self.snmp is not None:
            raise ValueError("give either 'credentials' (a named set) or inline 'snmp', not both")
        return self

    def host_port(self) -> tuple[str, int]:
        """Split an SNMP address ('host', 'host:port', '[v6]:port'); port 161 when none is given."""
        addr = self.address
        if addr.startswith("["):
            host, _, rest = addr[1:].partition("]")
            return host, int(rest[1:]) if rest.startswith(":") else 161
        host, sep, port = addr.rpartition(":")
        return (host, int(port)) if sep else (addr, 161)


class InventoryFile(Strict):
    """A TOML inventory file: a list of [[device]] tables."""

    device: list[Device] = Field(default_factory=list)


class GatewayIdentity(Strict):
    id: Identifier
    site: str = Field(
        min_length=1, description="Human name of the site, e.g. 'Panel PJU Jl. Siliwangi'"
    )
    location: Location


# Here, not at the top: telemetry_config needs SecretSource (defined above).
from firmware_config.telemetry_config import InfluxConfig, TelemetryConfig  # noqa: E402


class GatewayConfig(Strict):
    gateway: GatewayIdentity
    broker: BrokerConfig | None = Field(None, description="Central MQTT broker; none = run offline")
    device_broker: BrokerConfig | None = Field(
        None, description="Local MQTT broker where MQTT controllers publish their JSON telemetry"
    )
    state_dir: Path = Field(Path("/var/lib/siaran-edge"), description="SQLite state and outbox")
    poll: PollDefaults = Field(default_factory=PollDefaults)
    inventory: list[Path] = Field(
        default_factory=list, description="Inventory files (.toml or .csv), relative to this file"
    )
    profile_dirs: list[Path] = Field(
        default_factory=list, description="Folders of your own profile files (*.toml)"
    )
    snmp_credentials: dict[str, SnmpCredentials] = Field(default_factory=dict)
    device: list[Device] = Field(default_factory=list, description="Devices listed inline")
    rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="[rules.NAME] settings of the fault rules (checked by the fault engine)",
    )
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    influxdb: InfluxConfig | None = Field(None, description="Direct InfluxDB writes; none = off")
    web: WebConfig | None = Field(None, description="Technician status page; none = no page")

    @field_validator("inventory")
    @classmethod
    def _known_suffix(cls, paths: list[Path]) -> list[Path]:
        for p in paths:
            if p.suffix.lower() not in (".toml", ".csv"):
                raise ValueError(f"{p}: an inventory file ends in .toml or .csv")
        return paths
