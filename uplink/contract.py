"""The MQTT contract between a gateway and the central consumer: topics and payloads.

Both sides import this module, so it imports nothing of the project (only pydantic).
Human description: docs/contract.md. JSON Schemas: docs/schemas/ (`python -m uplink.schemas`).

Topic tree, under a configurable root (default ``siaran/v1``), one branch per gateway::

    {root}/{gateway_id}/status             gateway -> central  QoS 1, retained  GatewayStatus
    {root}/{gateway_id}/fault              gateway -> central  QoS 1            FaultEvent
    {root}/{gateway_id}/telemetry          gateway -> central  QoS 1            TelemetryBatch
    {root}/{gateway_id}/action             gateway -> central  QoS 1            OperatorAction
    {root}/{gateway_id}/ack                central -> gateway  QoS 1, retained  Ack
    {root}/{gateway_id}/cmd/{name}         central -> gateway  QoS 1            Command
    {root}/{gateway_id}/cmd-result/{name}  gateway -> central  QoS 1            CommandResult
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

SCHEMA_VERSION = 1

QOS_STATUS = 1
QOS_FAULT = 1
QOS_TELEMETRY = 1
QOS_ACK = 1
QOS_COMMAND = 1
QOS_ACTION = 1

# One MQTT topic level: no '/', '+', '#'. Same rule as the gateway config's identifiers.
GatewayId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
CommandName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]

Value = bool | int | float | str | None
EvidenceValue = Value | list[Value]
DeviceKind = Literal["streetlight", "hotspot", "gateway", "circuit"]
FaultState = Literal["raised", "updated", "cleared"]
Severity = Literal["info", "minor", "major", "critical"]
ActionKind = Literal["acknowledge", "maintenance", "maintenance_end", "lamp_test"]


class _Wire(BaseModel):
    # The schemas describe what is on the wire, where every field is present.
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


class Location(_Wire):
    """Where a device or gateway stands (a copy of the gateway config's, so this stays alone)."""

    lat: float = Field(ge=-90, le=90, description="Latitude, decimal degrees (south is negative)")
    lon: float = Field(ge=-180, le=180, description="Longitude, decimal degrees")
    address: str = ""
    kelurahan: str = ""
    kecamatan: str = ""


class FaultDraft(_Wire):
    """A fault as the gateway's rules decide it; the outbox turns it into a FaultEvent."""

    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Unique id: consumers drop duplicates by it"
    )
    device_id: str = Field(min_length=1, max_length=64)
    device_kind: DeviceKind
    fault_type: str = Field(
        min_length=1, max_length=64, description="e.g. lamp_out, uplink_down, power_loss"
    )
    state: FaultState
    severity: Severity
    first_seen: AwareDatetime = Field(description="When the condition was first seen")
    observed_at: AwareDatetime = Field(description="When this state was observed")
    clock_synced: bool = Field(description="Whether the gateway clock was NTP-synchronised")
    location: Location | None = None
    circuit: str | None = Field(None, description="Circuit or panel the device hangs on")
    summary: str = Field("", max_length=500, description="One human line, Indonesian or English")
    evidence: dict[str, EvidenceValue] = Field(
        default_factory=dict, description="The readings that triggered the fault, by metric"
    )


class FaultEvent(FaultDraft):
    """Topic `{root}/{gateway_id}/fault`, QoS 1, not retained."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema", description="Contract version")
    gateway_id: GatewayId
    seq: int = Field(
        ge=1, description="Per-gateway sequence number; increases across restarts, no gaps"
    )
    replayed: bool = Field(
        description="True when not sent live: queued through an outage or a restart"
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


# Telemetry times are unix milliseconds on the wire (13 digits, not a 24-character ISO text).
UnixMs = Annotated[
    AwareDatetime,
    PlainSerializer(lambda d: round(d.timestamp() * 1000), return_type=int, when_used="json"),
]


class DeviceMeta(_Wire):
    """What a device is: the tags of its time series. Sent with a device's first sample after
    the agent starts and again every `[telemetry] meta_interval_s`, not with every sample."""

    kind: Literal["streetlight", "hotspot"]
    profile: str = Field(min_length=1, max_length=64)
    circuit: str | None = None
    kelurahan: str = ""
    kecamatan: str = ""


class DeviceSamples(_Wire):
    """One device's metric values at one moment (short keys: telemetry is paid per byte)."""

    device_id: str = Field(min_length=1, max_length=64, alias="d")
    at: UnixMs = Field(alias="t", description="When read: unix time in milliseconds")
    values: dict[str, Value] = Field(
        alias="v", description="Metric -> value; table cells as TABLE.ROW.COLUMN"
    )
    meta: DeviceMeta | None = Field(
        None, alias="m", exclude_if=lambda m: m is None, description="Present now and then"
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class TelemetryDraft(_Wire):
    """Telemetry as the gateway collects it; the uplink adds the gateway fields."""

    batch_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique id for dedup")
    samples: list[DeviceSamples]


class TelemetryBatch(TelemetryDraft):
    """Topic `{root}/{gateway_id}/telemetry`, QoS 1, not retained."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    gateway_id: GatewayId
    replayed: bool

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class LampTestReport(_Wire):
    """What a lamp test found: the lamp switched on, its power read back."""

    ok: bool = Field(description="The power read back is in the expected range")
    minutes: int = Field(ge=1, description="How long the lamp stays on before going back")
    power_w: float | None = Field(description="Active power read back while on")
    expected_w: float | None = Field(description="Rated power at the commanded level")
    detail: str = Field("", max_length=500, description="One line for the technician")


class ActionDraft(_Wire):
    """What a technician did on the gateway's status page; the uplink adds the gateway fields.

    acknowledge: device_id + fault_type (+ note). maintenance: device_id or circuit + until.
    maintenance_end: device_id or circuit. lamp_test: device_id + result.
    """

    action_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Unique id: consumers drop duplicates by it"
    )
    kind: ActionKind
    by: str = Field(min_length=1, max_length=64, description="The technician's user name")
    at: AwareDatetime = Field(description="When it was done (gateway clock)")
    device_id: str | None = Field(None, min_length=1, max_length=64)
    circuit: str | None = Field(None, min_length=1, max_length=64)
    fault_type: str | None = Field(None, min_length=1, max_length=64)
    note: str = Field("", max_length=500)
    until: AwareDatetime | None = Field(None, description="maintenance: end of the window")
    result: LampTestReport | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ActionDraft:
        one_target = (self.device_id is None) != (self.circuit is None)
        wanted = {
            "acknowledge": self.device_id is not None and self.fault_type is not None,
            "maintenance": one_target and self.until is not None,
            "maintenance_end": one_target,
            "lamp_test": self.device_id is not None and self.result is not None,
        }
        if not wanted[self.kind]:
            raise ValueError(f"missing or conflicting fields for a {self.kind} action")
        return self


class OperatorAction(ActionDraft):
    """Topic `{root}/{gateway_id}/action`, QoS 1, not retained. No seq: see docs/contract.md."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema", description="Contract version")
    gateway_id: GatewayId
    replayed: bool = Field(
        description="True when not sent live: queued through an outage or a restart"
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class OutboxStatus(_Wire):
    faults_pending: int = Field(ge=0, description="Fault events not yet acknowledged by PUBACK")
    telemetry_pending: int = Field(ge=0, description="Telemetry batches waiting (memory + disk)")
    oldest_pending_at: AwareDatetime | None = Field(
        None, description="When the oldest waiting item was committed"
    )
    bytes_on_disk: int = Field(ge=0, description="Payload bytes in the store")
    telemetry_dropped: int = Field(
        ge=0, description="Telemetry batches dropped because the store was full (since install)"
    )
    full: bool = Field(description="The store reached max_bytes: telemetry is being dropped")
    faults_over_bound: bool = Field(
        description="Faults alone exceed max_bytes: kept up to the hard cap"
    )
    faults_refused: int = Field(
        ge=0, description="Fault events refused at the hard cap (since install)"
    )
    dead_letters: int = Field(ge=0, description="Items the broker rejected (kept aside)")
    store_resets: int = Field(ge=0, description="Times a corrupt store was moved aside")


class GatewayStatus(_Wire):
    """Topic `{root}/{gateway_id}/status`, QoS 1, retained. Birth on connect; Last Will."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    gateway_id: GatewayId
    state: Literal["online", "offline"]
    graceful: bool = Field(
        True, description="False on the Last Will: the gateway vanished without a goodbye"
    )
    at: AwareDatetime = Field(
        description="When this was produced; for the Last Will: when it was registered"
    )
    agent_version: str
    config_version: str
    device_count: int = Field(ge=0)
    clock_synced: bool
    last_seq: int = Field(ge=0, description="Highest fault seq committed by the gateway")
    central_acked_seq: int = Field(ge=0, description="Highest seq central confirmed (ack)")
    outbox: OutboxStatus | None = None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Ack(_Wire):
    """Topic `{root}/{gateway_id}/ack`, QoS 1, retained, central -> gateway.

    `up_to`: central applied every fault event of this gateway with seq <= up_to.
    `seqs`: further single seqs applied beyond up_to (out of order), informational.
    """

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    gateway_id: GatewayId
    up_to: int = Field(ge=0)
    seqs: list[int] = Field(default_factory=list)
    at: AwareDatetime

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Command(_Wire):
    """Topic `{root}/{gateway_id}/cmd/{name}`, QoS 1, central -> gateway (for later use)."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    command_id: uuid.UUID
    name: CommandName
    args: dict[str, Value] = Field(default_factory=dict)
    issued_at: AwareDatetime
    expires_at: AwareDatetime | None = Field(None, description="Not to be run after this time")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class CommandResult(_Wire):
    """Topic `{root}/{gateway_id}/cmd-result/{name}`, QoS 1, gateway -> central."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    gateway_id: GatewayId
    command_id: uuid.UUID
    name: CommandName
    outcome: Literal["done", "failed", "rejected", "unsupported", "expired"]
    detail: str = ""
    at: AwareDatetime

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


WIRE_MODELS: dict[str, type[BaseModel]] = {
    "gateway_status": GatewayStatus,
    "fault_event": FaultEvent,
    "telemetry_batch": TelemetryBatch,
    "operator_action": OperatorAction,
    "ack": Ack,
    "command": Command,
    "command_result": CommandResult,
}

Channel = Literal["status", "fault", "telemetry", "action", "ack", "cmd", "cmd-result"]
_CHANNELS: tuple[Channel, ...] = (
    "status",
    "fault",
    "telemetry",
    "action",
    "ack",
    "cmd",
    "cmd-result",
)
_ROOT = re.compile(r"^[^+#]*[^/+#]$")
_LEVEL = re.compile(r"^[^/+#]+$")


@dataclass(frozen=True)
class Topics:
    """The topics of one gateway's branch."""

    root: str
    gateway_id: str

    def __post_init__(self) -> None:
        if not _ROOT.match(self.root) or not _LEVEL.match(self.gateway_id):
            raise ValueError(f"bad topic root or gateway id: {self.root!r} {self.gateway_id!r}")

    @property
    def branch(self) -> str:
        return f"{self.root}/{self.gateway_id}"

    @property
    def all(self) -> str:
        """Everything of this gateway (for `tail` and for central subscriptions)."""
        return f"{self.branch}/#"

    @property
    def status(self) -> str:
        return f"{self.branch}/status"

    @property
    def fault(self) -> str:
        return f"{self.branch}/fault"

    @property
    def telemetry(self) -> str:
        return f"{self.branch}/telemetry"

    @property
    def action(self) -> str:
        return f"{self.branch}/action"

    @property
    def ack(self) -> str:
        return f"{self.branch}/ack"

    def cmd(self, name: str = "+") -> str:
        return f"{self.branch}/cmd/{name}"

    def cmd_result(self, name: str) -> str:
        return f"{self.branch}/cmd-result/{name}"


@dataclass(frozen=True)
class ParsedTopic:
    gateway_id: str
    channel: Channel
    name: str | None  # the command name for cmd and cmd-result


def central_subscriptions(root: str) -> list[str]:
    """What a central consumer subscribes to, for every gateway."""
    channels = ("status", "fault", "telemetry", "action")
    return [f"{root}/+/{c}" for c in channels] + [f"{root}/+/cmd-result/+"]


def parse_topic(root: str, topic: str) -> ParsedTopic | None:
    """Split a topic of the tree; None when it is not one of the contract's."""
    prefix = root + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) not in (2, 3) or not parts[0] or parts[1] not in _CHANNELS:
        return None
    channel: Channel = parts[1]
    has_name = channel in ("cmd", "cmd-result")
    if has_name != (len(parts) == 3) or (has_name and not parts[2]):
        return None
    return ParsedTopic(parts[0], channel, parts[2] if has_name else None)


def encode(message: BaseModel) -> bytes:
    """The wire form of a contract message: compact JSON, UTF-8, field names as documented."""
    return message.model_dump_json(by_alias=True).encode()
