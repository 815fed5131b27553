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


FieldPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")]


class MqttMetric(ValueSpec):
    """A metric taken from a JSON payload; 'field' is a dotted path such as 'power.active'."""

    field: FieldPath


class Write(Strict):
    """Something the gateway may set on a device (e.g. switch the lamp), in the unit's terms.

    SNMP: a SET of `oid` with an INTEGER (raw = value / scale). MQTT: a JSON object with the raw
    value at `field`, published (QoS 1) on `command_topic`, a template with {address} (the
    device's telemetry topic) and {id}, e.g. "{address}/set".
    """

    name: MetricName
    type: Literal["int"] = "int"
    scale: float = Field(1.0, gt=0, description="Raw value times scale gives the value in 'unit'")
    unit: str = ""
    min: float = Field(description="Lowest value allowed, in 'unit'")
    max: float = Field(description="Highest value allowed, in 'unit'")
    description: str = Field("", description="What the values mean")
    oid: Oid | None = Field(None, description="SNMP: object to SET (with its instance)")
    command_topic: str | None = Field(None, min_length=1, description="MQTT: topic template")
    field: FieldPath | None = Field(None, description="MQTT: where the value goes in the JSON")

    @model_validator(mode="after")
    def _range(self) -> Write:
        if self.min > self.max:
            raise ValueError("min is above max")
        if self.command_topic is not None and any(c in self.command_topic for c in "+#"):
            raise ValueError("command_topic cannot hold a wildcard")
        return self

    def raw(self, value: float) -> int:
        """The value to send for `value` (in the unit); ValueError when it is out of range."""
        if not self.min <= value <= self.max:
            raise ValueError(f"{self.name}: {value:g} is outside {self.min:g}..{self.max:g}")
        return round(value / self.scale)


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
    writes: list[Write] = Field(default_factory=list, description="What the gateway may set")

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
        writes = [w.name for w in self.writes]
        if len(set(writes)) != len(writes):
            raise ValueError("write names used twice")
        for w in self.writes:
            snmp_shaped = w.oid is not None and w.command_topic is None and w.field is None
            mqtt_shaped = w.oid is None and w.command_topic is not None and w.field is not None
            if not (snmp_shaped if self.protocol == "snmp" else mqtt_shaped):
                need = "'oid'" if self.protocol == "snmp" else "'command_topic' and 'field'"
                raise ValueError(f"write {w.name}: an {self.protocol} write gives {need} only")
        return self

    def write(self, name: str) -> Write | None:
        return next((w for w in self.writes if w.name == name), None)

    def merged_with(self, base: Profile) -> Profile:
        """This profile with the base's metrics and tables first (own entries override by name)."""
        own = {m.name for m in self.metrics} | {t.name for t in self.tables}
        own |= {f.name for f in self.fields}
        own_writes = {w.name for w in self.writes}
        return self.model_copy(
            update={
                "extends": None,
                "metrics": [m for m in base.metrics if m.name not in own] + self.metrics,
                "tables": [t for t in base.tables if t.name not in own] + self.tables,
                "fields": [f for f in base.fields if f.name not in own] + self.fields,
                "rules": {**base.rules, **self.rules},
                "writes": [w for w in base.writes if w.name not in own_writes] + self.writes,
            }
        )
