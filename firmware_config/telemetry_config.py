"""Settings of telemetry: report by exception (`[telemetry]`) and InfluxDB writes (`[influxdb]`).

What each setting does: docs/configuration.md; the wire encoding: docs/contract.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

if TYPE_CHECKING:
    from firmware_config.models import SecretSource

MiB = 1024 * 1024

ColumnName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricTelemetry(_Strict):
    """Per-metric override (`[telemetry.metrics.NAME]`); NAME is a metric or a table column."""

    send: bool = Field(True, description="False: never send this metric")
    deadband_abs: float | None = Field(None, ge=0, description="Absolute deadband, in its unit")
    deadband_pct: float | None = Field(None, ge=0, le=1000, description="Percent of last sent")
    heartbeat_s: float | None = Field(None, gt=0, le=7 * 86400, description="Resend after this")


# Noisy metrics of the shipped profiles, so that noise is not sent as news; `[telemetry.metrics]`
# entries replace these by name.
BUILTIN_METRICS: dict[str, MetricTelemetry] = {
    "lux": MetricTelemetry(deadband_pct=50, deadband_abs=10),
    "gear_temperature": MetricTelemetry(deadband_abs=1.0),
    "board_temperature": MetricTelemetry(deadband_abs=1.0),
    "cpu_load": MetricTelemetry(deadband_abs=10),
    "client_count": MetricTelemetry(deadband_abs=2),
    "dhcp_leases": MetricTelemetry(deadband_abs=2, deadband_pct=10),
}


def _default_tables() -> dict[str, list[str]]:
    return {
        "interfaces": ["if_oper_status", "if_in_octets", "if_out_octets"],
        "wireless_aps": ["client_count"],
        "processors": ["cpu_load"],
    }


class TelemetryConfig(_Strict):
    enabled: bool = Field(True, description="Report telemetry at all")
    over_mqtt: bool = Field(
        True, description="Send telemetry batches to the central broker (central writes InfluxDB)"
    )
    flush_interval_s: float = Field(
        300.0,
        ge=1,
        le=3600,
        description="The changes collected are looked at this often and sent as one batch (one "
        "publish) if they are worth it (min_batch_bytes) or have waited long enough (max_wait_s)",
    )
    min_batch_bytes: int = Field(
        1024,
        ge=0,
        le=1024 * 1024,
        description="Fewer bytes of samples than this wait for a later flush (a publish costs "
        "about 300 B of MQTT, TLS and TCP on top of its payload); 0: send at every flush",
    )
    max_wait_s: float = Field(
        3600.0,
        ge=1,
        le=86400,
        description="...but none waits longer than this",
    )
    max_batch_bytes: int = Field(
        48 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="A flush bigger than this is sent as several batches (central refuses "
        "messages over its max_payload_bytes, 64 KiB by default)",
    )
    heartbeat_s: float = Field(
        3600.0, gt=0, le=7 * 86400, description="Numbers and counters are resent after this"
    )
    state_heartbeat_s: float = Field(
        21600.0,
        gt=0,
        le=7 * 86400,
        description="Booleans and text (sent on every change) are resent after this",
    )
    deadband_pct: float = Field(
        1.0, ge=0, le=1000, description="A number is sent when it moved more than this % ..."
    )
    deadband_abs: float = Field(0.0, ge=0, description="... or more than this (the larger wins)")
    meta_interval_s: float = Field(
        21600.0,
        gt=0,
        le=7 * 86400,
        description="Each device's tags (kind, profile, circuit, area) are repeated this often",
    )
    metrics: dict[str, MetricTelemetry] = Field(
        default_factory=dict,
        description="Overrides by metric or column name (over the built-in BUILTIN_METRICS)",
    )
    tables: dict[str, list[ColumnName]] = Field(
        default_factory=_default_tables, description="Table columns sent, by table name"
    )


class RateSpec(_Strict):
    """A rate field derived from a counter when points are written (`[influxdb.rates]`)."""

    field: ColumnName = Field(description="Name of the derived field, e.g. if_in_bps")
    factor: float = Field(1.0, gt=0, description="Per-second increase times this (octets: 8)")


def _default_rates() -> dict[str, RateSpec]:
    return {
        "if_in_octets": RateSpec(field="if_in_bps", factor=8.0),
        "if_out_octets": RateSpec(field="if_out_bps", factor=8.0),
    }


class InfluxConfig(_Strict):
    """An InfluxDB v2 write API (`/api/v2/write`): the gateway's direct path or central's."""

    url: str = Field(pattern=r"^https?://[^\s/]+", description="e.g. https://influx.example:8086")
    org: str = Field("", description="Organisation (name or id)")
    bucket: str = Field(min_length=1)
    token: SecretSource | None = Field(None, description="API token; never logged")
    ca_file: Path | None = Field(None, description="CA bundle for https (else the system CAs)")
    gzip: bool = Field(True, description="Compress write requests")
    batch_size: int = Field(5000, ge=1, le=100_000, description="Points per write request")
    flush_interval_s: float = Field(
        10.0, gt=0, le=3600, description="Central: buffered points are written at least this often"
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Per write request")
    backoff_max_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between retries")
    max_buffer_points: int = Field(
        200_000, ge=1000, description="Central: points held in memory while InfluxDB is away"
    )
    max_disk_bytes: int = Field(
        64 * MiB,
        ge=64 * 1024,
        description="Gateway: telemetry kept on disk (influx-outbox.db) while InfluxDB is away",
    )
    rates: dict[str, RateSpec] = Field(
        default_factory=_default_rates, description="Counters that also get a rate field"
    )

    @model_validator(mode="after")
    def _distinct_rate_fields(self) -> InfluxConfig:
        names = [r.field for r in self.rates.values()]
        if len(set(names)) != len(names):
            raise ValueError("two rates write the same field")
        return self


# models.py imports this module (for GatewayConfig) after defining SecretSource, so the import
# is here, at the end, where it works whichever of the two modules is imported first.
from firmware_config.models import SecretSource  # noqa: E402

InfluxConfig.model_rebuild()
