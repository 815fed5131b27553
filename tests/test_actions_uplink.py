"""Technician actions through the real uplink to a real mosquitto: topic, QoS 1, replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from firmware_config.models import BrokerConfig
from firmware_config.uplink_config import OutboxConfig
from tests.servers import Mosquitto
from tests.waiting import until
from uplink.contract import ActionDraft, LampTestReport, OperatorAction, Topics
from uplink.publisher import GatewayInfo, Uplink

GW = "gw-01"
TOPICS = Topics("siaran/v1", GW)
INFO = GatewayInfo("0.1.0-test", "cfg-test", 3, True)


def uplink_for(port: int, state: Path) -> Uplink:
    broker = BrokerConfig(port=port, keepalive_s=5)
    return Uplink(
        GW, broker, OutboxConfig(), state, lambda: INFO, backoff_min_s=0.05, backoff_max_s=0.3
    )


@pytest.fixture
async def central(broker: Mosquitto) -> AsyncIterator[aiomqtt.Client]:
    """Subscribed to the gateway's action topic before anything is sent."""
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="central-test") as client:
        await client.subscribe(TOPICS.action, qos=1)
        yield client


async def next_action(client: aiomqtt.Client, limit_s: float = 10.0) -> tuple[str, OperatorAction]:
    async with asyncio.timeout(limit_s):
        message = await anext(aiter(client.messages))
    assert isinstance(message.payload, bytes)
    return message.topic.value, OperatorAction.model_validate_json(message.payload)


async def test_an_action_reaches_the_brokers_action_topic(
    broker: Mosquitto, central: aiomqtt.Client, tmp_path: Path
) -> None:
    up = uplink_for(broker.port, tmp_path / "state")
    runner = asyncio.create_task(up.run())
    try:
        await until(lambda: up.stats().connected)  # live: committed under the link it goes on
        now = datetime.now(UTC)
        report = LampTestReport(ok=False, minutes=5, power_w=30.4, expected_w=60.0, detail="low")
        sent = await up.submit_action(
            ActionDraft(kind="lamp_test", by="budi", at=now, device_id="pju-1", result=report)
        )
        topic, got = await next_action(central)
        assert topic == "siaran/v1/gw-01/action"
        assert got.action_id == sent.action_id and got.gateway_id == GW
        assert (got.kind, got.by, got.result) == ("lamp_test", "budi", report)
        assert got.replayed is False
        await until(lambda: up.stats().actions_pending == 0)  # deleted once the PUBACK is in
    finally:
        await up.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_an_action_taken_offline_is_replayed_when_the_broker_is_back(
    broker: Mosquitto, central: aiomqtt.Client, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    offline = uplink_for(broker.port, state)  # never run: the link is down
    draft = ActionDraft(
        kind="acknowledge", by="sari", at=datetime.now(UTC), device_id="pju-2",
        fault_type="lamp_failure", note="teknisi di lokasi",
    )  # fmt: skip
    await offline.submit_action(draft)
    assert offline.stats().actions_pending == 1
    await offline.close()
    up = uplink_for(broker.port, state)  # a restart, now with the broker there
    runner = asyncio.create_task(up.run())
    try:
        _, got = await next_action(central)
        assert (got.action_id, got.replayed, got.note) == (draft.action_id, True, draft.note)
        assert json.loads(got.model_dump_json(by_alias=True))["schema"] == 1
    finally:
        await up.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
