"""The Reading: the one thing that flows from a collector to the agent."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Value = bool | int | float | str | None

ErrorCode = Literal[
    "timeout",  # no answer within timeout x retries
    "auth",  # wrong community (seen as timeout by v2c), unknown v3 user, wrong key
    "no_such_object",  # the agent has no such object or instance
    "wrong_type",  # the value's type is not what the profile says
    "bad_payload",  # MQTT payload not UTF-8 JSON, not an object, or too large
    "protocol",  # any other error the device or the transport reported
    "silent",  # an MQTT device sent nothing within its expected period
]


class ReadingError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str
    metric: str | None = Field(None, description="The metric or table concerned, if one")


class Reading(BaseModel):
    """One poll (or one MQTT message) of one device."""

    model_config = ConfigDict(frozen=True)

    device_id: str
    at: datetime = Field(description="When the values were taken (timezone-aware UTC)")
    reachable: bool = Field(description="False when the device did not answer at all")
    values: dict[str, Value] = Field(default_factory=dict, description="Scalar metrics by name")
    tables: dict[str, dict[str, dict[str, Value]]] = Field(
        default_factory=dict, description="table -> row index (OID suffix) -> column -> value"
    )
    errors: list[ReadingError] = Field(default_factory=list)
    duration_s: float = Field(0.0, description="Time the poll took")

    @property
    def ok(self) -> bool:
        return self.reachable and not self.errors
