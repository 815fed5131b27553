"""Device profiles: which metrics a controller model/firmware exposes and how to read them.

Profiles are TOML data files. The shipped ones live in `firmware_config/profiles/`; a user adds
their own in a folder named by `profile_dirs` in the gateway config, without touching code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from firmware_config.models import DeviceKind

# bool: an INTEGER compared with true_values (SNMPv2-TC TruthValue is 1 = true, 2 = false).
# counter: a monotonically increasing count (Counter32/64), rates derived downstream.
# timeticks: hundredths of a second, converted to seconds.
MetricType = Literal["int", "float", "bool", "str", "counter", "timeticks"]

Oid = Annotated[str, StringConstraints(pattern=r"^1(\.\d+)+$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSpec(Strict):
    """How a raw value becomes a metric: type, scale and unit."""

    name: MetricName
    type: MetricType = "float"
    scale: float = Field(1.0, description="Raw value times scale gives the value in 'unit'")
    unit: str = ""
    description: str = ""
    true_values: list[int] = Field(default_factory=lambda: [1], description="For type bool")


class SnmpMetric(ValueSpec):
    """A scalar object read with GET (full OID including the instance, e.g. '.0')."""

    oid: Oid


class SnmpColumn(ValueSpec):
    """A column of a table, walked with GETBULK; rows are keyed by the index suffix."""

    oid: Oid


class SnmpTable(Strict):
    name: MetricName
    description: str = ""
    columns: list[SnmpColumn] = Field(min_length=1)
    max_rows: int = Field(256, ge=1, le=100_000, description="Stop walking after this many rows")


class MqttMetric(ValueSpec):
    """A metric taken from a JSON payload; 'field' is a dotted path such as 'power.active'."""

    field: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")]


class Profile(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    description: str = ""
    protocol: Literal["snmp", "mqtt"]
    kinds: list[DeviceKind] = Field(min_length=1, description="Device kinds it may describe")
    extends: str | None = Field(None, description="Profile whose metrics and tables this adds to")
    metrics: list[SnmpMetric] = Field(default_factory=list)
    tables: list[SnmpTable] = Field(default_factory=list)
    fields: list[MqttMetric] = Field(default_factory=list)
    rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="[rules.NAME] defaults for devices of this profile"
    )
    expected_period_s: float | None = Field(
        None, gt=0, description="MQTT: how often the device publishes (silence detection)"
    )

    @model_validator(mode="after")
    def _shape(self) -> Profile:
        if self.protocol == "snmp" and self.fields:
            raise ValueError("an snmp profile lists 'metrics' and 'tables', not 'fields'")
        if self.protocol == "mqtt" and (self.metrics or self.tables):
            raise ValueError("an mqtt profile lists 'fields', not 'metrics' or 'tables'")
        names = [m.name for m in self.metrics] + [t.name for t in self.tables]
        names += [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric or table names used twice: {', '.join(dupes)}")
        return self

    def merged_with(self, base: Profile) -> Profile:
        """This profile with the base's metrics and tables first (own entries override by name)."""
        own = {m.name for m in self.metrics} | {t.name for t in self.tables}
        own |= {f.name for f in self.fields}
        return self.model_copy(
            update={
                "extends": None,
                "metrics": [m for m in base.metrics if m.name not in own] + self.metrics,
                "tables": [t for t in base.tables if t.name not in own] + self.tables,
                "fields": [f for f in base.fields if f.name not in own] + self.fields,
                "rules": {**base.rules, **self.rules},
            }
        )
