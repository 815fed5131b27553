"""Settings of the uplink's durable outbox (the `[outbox]` table of the gateway config).

See docs/contract.md ("Durable outbox") for what each bound does when it is reached.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MiB = 1024 * 1024

SyncMode = Literal["full", "normal"]


class OutboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file_name: str = Field(
        "outbox.db", pattern=r"^[A-Za-z0-9._-]+$", description="SQLite file inside state_dir"
    )
    max_bytes: int = Field(
        128 * MiB,
        ge=64 * 1024,
        description="Payload bytes kept on disk (faults + spilled telemetry); about 26 h of "
        "telemetry of 500 devices. When reached, the oldest telemetry is dropped (and counted)",
    )
    fault_hard_cap_bytes: int = Field(
        256 * MiB,
        ge=64 * 1024,
        description="Faults are kept beyond max_bytes up to this cap (disk safety); a fault "
        "beyond it is refused: submit_fault raises OutboxFullError, it is logged and counted",
    )
    telemetry_memory_bytes: int = Field(
        2 * MiB,
        ge=0,
        description="Telemetry held in memory while the link is up; beyond it, batches spill "
        "to disk until the backlog is sent",
    )
    fault_sync: SyncMode = Field(
        "full", description="SQLite synchronous mode for fault commits ('full' = fsync each)"
    )
    telemetry_sync: SyncMode = Field(
        "normal", description="SQLite synchronous mode for telemetry spills and deletions"
    )
    publish_window: int = Field(
        200,
        ge=1,
        le=1000,
        description="Rows handed to the MQTT link ahead of their PUBACKs (a sliding window: "
        "more are read from the outbox as the oldest are acknowledged); bounds the memory "
        "of a drain and the duplicates a lost connection may cause",
    )
    max_inflight: int = Field(
        100,
        ge=1,
        le=1000,
        description="QoS 1 publishes on the wire without their PUBACK (the rest of the window "
        "waits in the client, in order); lowered to the broker's Receive Maximum (MQTT 5)",
    )
    status_interval_s: float = Field(
        300.0, gt=0, le=86400, description="Retained status is refreshed this often"
    )
    session_expiry_s: int = Field(
        86400,
        ge=0,
        description="MQTT 5 session expiry: acks and commands sent while the gateway is "
        "offline wait on the broker this long (0 = clean session)",
    )

    @model_validator(mode="after")
    def _cap_over_bound(self) -> OutboxConfig:
        if self.fault_hard_cap_bytes < self.max_bytes:
            raise ValueError("fault_hard_cap_bytes must be >= max_bytes")
        return self
