"""Checking what arrives on the broker before anything is done with it.

A message is accepted only if it is on a contract topic central subscribes to, not larger than
`max_payload_bytes`, a valid contract model of schema version 1, and names the same gateway as
its topic. Everything else is a Rejected with a reason (counted and logged by the consumer).
Telemetry (`{root}/+/telemetry`) is one of those topics only when central writes it somewhere
(`telemetry=True`: an `[influxdb]` is configured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from uplink.contract import SCHEMA_VERSION, FaultEvent, GatewayStatus, TelemetryBatch, parse_topic

Reason = Literal["oversized", "foreign_topic", "malformed", "schema_version", "gateway_mismatch"]


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str
    gateway_id: str | None = None  # from the topic, when it had one
    channel: str | None = None  # from the topic, when it was one of central's


Accepted = FaultEvent | GatewayStatus | TelemetryBatch

_MODELS: dict[str, type[FaultEvent] | type[GatewayStatus] | type[TelemetryBatch]] = {
    "fault": FaultEvent,
    "status": GatewayStatus,
    "telemetry": TelemetryBatch,
}


def channels(telemetry: bool) -> tuple[str, ...]:
    return ("fault", "status", "telemetry") if telemetry else ("fault", "status")


def subscriptions(root: str, share_group: str, *, telemetry: bool = False) -> list[str]:
    """The fault and status branches of every gateway (and the telemetry branch when central
    writes it), shared in a group when one is set."""
    return [_shared(f"{root}/+/{c}", share_group) for c in channels(telemetry)]


def telemetry_subscription(root: str, share_group: str) -> str:
    """What a central without telemetry unsubscribes from: its persistent session may still
    hold it from a run with `[influxdb]`."""
    return _shared(f"{root}/+/telemetry", share_group)


def _shared(topic: str, share_group: str) -> str:
    return f"$share/{share_group}/{topic}" if share_group else topic


def check(
    root: str, topic: str, payload: bytes, max_bytes: int, *, telemetry: bool = False
) -> Accepted | Rejected:
    parsed = parse_topic(root, topic)
    if parsed is None or parsed.channel not in channels(telemetry):
        return Rejected("foreign_topic", topic[:200])
    gw, channel = parsed.gateway_id, parsed.channel
    if len(payload) > max_bytes:
        return Rejected("oversized", f"{len(payload)} bytes > {max_bytes}", gw, channel)
    try:
        msg: Accepted = _MODELS[channel].model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(payload)"
        return Rejected(
            "malformed",
            f"{exc.error_count()} problem(s), first {where}: {first['msg']}",
            gw,
            channel,
        )
    if msg.schema_version != SCHEMA_VERSION:
        return Rejected("schema_version", f"schema {msg.schema_version}", gw, channel)
    if msg.gateway_id != gw:
        return Rejected("gateway_mismatch", f"payload says {msg.gateway_id!r}", gw, channel)
    return msg
