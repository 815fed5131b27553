"""What central accepts from the broker, and why it rejects the rest."""

from __future__ import annotations

import pytest

from central.intake import Rejected, check, subscriptions
from tests.central_helpers import ROOT, fault_event, gateway_status
from uplink.contract import FaultEvent, GatewayStatus, encode


def test_subscriptions_shared_or_not() -> None:
    assert subscriptions(ROOT, "central") == [
        "$share/central/siaran/v1/+/fault",
        "$share/central/siaran/v1/+/status",
    ]
    assert subscriptions(ROOT, "") == ["siaran/v1/+/fault", "siaran/v1/+/status"]


def test_good_messages() -> None:
    ev = fault_event(1)
    assert isinstance(check(ROOT, "siaran/v1/gw-01/fault", encode(ev), 65536), FaultEvent)
    st = gateway_status("gw-01", "offline", graceful=False)
    assert isinstance(check(ROOT, "siaran/v1/gw-01/status", encode(st), 65536), GatewayStatus)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("siaran/v1/gw-01/fault", b"", "malformed"),
        ("siaran/v1/gw-01/fault", b"[]", "malformed"),
        ("siaran/v1/gw-01/fault", encode(gateway_status("gw-01", "online")), "malformed"),
        ("siaran/v1/gw-01/status", encode(fault_event(1)), "malformed"),
        ("siaran/v1/gw-01/fault", b"x" * 70000, "oversized"),
        ("siaran/v1/gw-02/fault", encode(fault_event(1)), "gateway_mismatch"),
        ("siaran/v1/gw-01/telemetry", encode(fault_event(1)), "foreign_topic"),
        ("other/gw-01/fault", encode(fault_event(1)), "foreign_topic"),
        (
            "siaran/v1/gw-01/fault",
            encode(fault_event(1)).replace(b'"schema":1', b'"schema":7'),
            "schema_version",
        ),
    ],
)
def test_rejections(topic: str, payload: bytes, reason: str) -> None:
    found = check(ROOT, topic, payload, 65536)
    assert isinstance(found, Rejected) and found.reason == reason
