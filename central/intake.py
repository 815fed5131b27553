"""Checking what arrives on the broker before anything is done with it.

A message is accepted only if it is on a contract topic central subscribes to, not larger than
`max_payload_bytes`, a valid contract model of schema version 1, and names the same gateway as
its topic. Everything else is a Rejected with a reason (counted and logged by the consumer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from uplink.contract import SCHEMA_VERSION, FaultEvent, GatewayStatus, parse_topic

Reason = Literal["oversized", "foreign_topic", "malformed", "schema_version", "gateway_mismatch"]


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str
    gateway_id: str | None = None  # from the topic, when it had one


Accepted = FaultEvent | GatewayStatus


def subscriptions(root: str, share_group: str) -> list[str]:
    """The fault and status branches of every gateway, shared in a group when one is set."""
    topics = [f"{root}/+/fault", f"{root}/+/status"]
    return [f"$share/{share_group}/{t}" for t in topics] if share_group else topics


def check(root: str, topic: str, payload: bytes, max_bytes: int) -> Accepted | Rejected:
    parsed = parse_topic(root, topic)
    if parsed is None or parsed.channel not in ("fault", "status"):
        return Rejected("foreign_topic", topic[:200])
    gw = parsed.gateway_id
    if len(payload) > max_bytes:
        return Rejected("oversized", f"{len(payload)} bytes > {max_bytes}", gw)
    model = FaultEvent if parsed.channel == "fault" else GatewayStatus
    try:
        msg: Accepted = model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(payload)"
        return Rejected(
            "malformed", f"{exc.error_count()} problem(s), first {where}: {first['msg']}", gw
        )
    if msg.schema_version != SCHEMA_VERSION:
        return Rejected("schema_version", f"schema {msg.schema_version}", gw)
    if msg.gateway_id != gw:
        return Rejected("gateway_mismatch", f"payload says {msg.gateway_id!r}", gw)
    return msg
