"""The MQTT device collector: the pure payload mapping, silence, and a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from structlog.testing import capture_logs

from collectors.mqtt_json import (
    BAD_PAYLOAD_LOG_INTERVAL_S,
    MAX_PAYLOAD_BYTES,
    MqttDeviceCollector,
    reading_from_payload,
)
from collectors.reading import Reading
from firmware_config.models import BrokerConfig, Device, Location, SecretSource
from firmware_config.profiles import MqttMetric, Profile
from tests.servers import Mosquitto, free_port, mosquitto

PROFILE = Profile(
    name="test-pju-json",
    protocol="mqtt",
    kinds=["streetlight"],
    expected_period_s=60,
    fields=[
        MqttMetric(name="power_w", field="power.active", type="float", scale=0.1, unit="W"),
        MqttMetric(name="voltage_v", field="grid.voltage", type="float", unit="V"),
        MqttMetric(name="lamp_on", field="lamp.on", type="bool"),
        MqttMetric(name="dim_pct", field="lamp.dim", type="int"),
        MqttMetric(name="energy_wh", field="meter.energy", type="counter"),
        MqttMetric(name="firmware", field="fw", type="str"),
    ],
)
QUIET_PROFILE = PROFILE.model_copy(update={"name": "test-no-period", "expected_period_s": None})

GOOD: dict[str, Any] = {
    "power": {"active": 853},
    "grid": {"voltage": 221.5},
    "lamp": {"on": True, "dim": 80},
    "meter": {"energy": 123456},
    "fw": "1.4.2",
}
GOOD_VALUES = {
    "power_w": pytest.approx(85.3),
    "voltage_v": 221.5,
    "lamp_on": True,
    "dim_pct": 80,
    "energy_wh": 123456,
    "firmware": "1.4.2",
}
T0 = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)


def device(dev_id: str = "pju-001", topic: str = "pju/pju-001/telemetry") -> Device:
    return Device(
        id=dev_id,
        kind="streetlight",
        profile=PROFILE.name,
        address=topic,
        location=Location(lat=-6.29, lon=106.71),
        pole_id="TS-0001",
        circuit="PNL-3",
        rated_w=90,
    )


def payload(**changes: Any) -> bytes:
    """GOOD with top-level sections replaced (None removes the key)."""
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class Sink:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Reading] = asyncio.Queue()

    async def __call__(self, reading: Reading) -> None:
        await self.queue.put(reading)

    async def next(self, within_s: float = 5.0) -> Reading:
        return await asyncio.wait_for(self.queue.get(), within_s)


async def wait_until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {within_s} s")


# --- the pure mapping -------------------------------------------------------------------------


def test_valid_payload_converted_and_scaled() -> None:
    r = reading_from_payload(device(), PROFILE, payload(), T0)
    assert r.ok
    assert (r.device_id, r.at, r.reachable) == ("pju-001", T0, True)
    assert r.values == GOOD_VALUES
    assert isinstance(r.values["dim_pct"], int)
    assert isinstance(r.values["energy_wh"], int)


@pytest.mark.parametrize(("raw", "expected"), [(True, True), (False, False), (1, True), (0, False)])
def test_bool_from_json_bool_or_number(raw: Any, expected: bool) -> None:
    r = reading_from_payload(device(), PROFILE, payload(lamp={"on": raw, "dim": 0}), T0)
    assert r.ok
    assert r.values["lamp_on"] is expected


def test_number_for_str_metric_becomes_text_and_integral_float_is_an_int() -> None:
    r = reading_from_payload(device(), PROFILE, payload(fw=142, lamp={"on": True, "dim": 80.0}), T0)
    assert r.ok
    assert r.values["firmware"] == "142"
    assert r.values["dim_pct"] == 80
    assert isinstance(r.values["dim_pct"], int)


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"grid": None}, {"voltage_v"}),  # no section at all
        ({"grid": {"current": 0.4}}, {"voltage_v"}),  # section without the leaf
        ({"lamp": None}, {"lamp_on", "dim_pct"}),
        ({"power": 5}, {"power_w"}),  # path runs through a number
        ({"grid": {"voltage": None}}, {"voltage_v"}),  # JSON null
    ],
)
def test_missing_field_is_no_such_object(changes: dict[str, Any], missing: set[str]) -> None:
    r = reading_from_payload(device(), PROFILE, payload(**changes), T0)
    assert r.reachable
    assert {e.metric for e in r.errors} == missing
    assert {e.code for e in r.errors} == {"no_such_object"}
    assert set(r.values) == set(GOOD_VALUES) - missing  # the other fields still come through


@pytest.mark.parametrize(
    "changes",
    [
        {"power": {"active": "853"}},  # numeric text is not a number
        {"power": {"active": [853]}},
        {"power": {"active": {"v": 853}}},
        {"power": {"active": True}},  # a boolean is not a power reading
        {"power": {"active": float("nan")}},
    ],
)
def test_wrong_type_for_float(changes: dict[str, Any]) -> None:
    r = reading_from_payload(device(), PROFILE, payload(**changes), T0)
    assert [(e.code, e.metric) for e in r.errors] == [("wrong_type", "power_w")]
    assert "power_w" not in r.values
    assert r.values["voltage_v"] == 221.5


@pytest.mark.parametrize("dim", [80.5, "80", False])
def test_wrong_type_for_int(dim: Any) -> None:
    r = reading_from_payload(device(), PROFILE, payload(lamp={"on": True, "dim": dim}), T0)
    assert [(e.code, e.metric) for e in r.errors] == [("wrong_type", "dim_pct")]
    assert r.values["lamp_on"] is True


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x00\xff\xfe garbage \x1b[31m", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2, 3]", "list where an object"),
        (b'"on"', "str where an object"),
        (b"42", "int where an object"),
        (b"null", "NoneType where an object"),
        (b'{"pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "larger than the 65536-byte limit"),
    ],
)
def test_bad_payload(body: bytes, problem: str) -> None:
    r = reading_from_payload(device(), PROFILE, body, T0)
    assert r.reachable
    assert r.values == {}
    assert len(r.errors) == 1
    error = r.errors[0]
    assert error.code == "bad_payload"
    assert error.metric is None
    assert "pju-001" in error.message
    assert "'pju/pju-001/telemetry'" in error.message
    assert problem in error.message
    assert error.message.isprintable()  # raw bytes are shown escaped
    assert len(error.message) < 300  # and truncated


def test_payload_at_the_limit_is_read_and_utf8_bom_accepted() -> None:
    body = payload()

    def padded(size: int) -> bytes:
        return body[:-1] + b', "pad": "' + b"x" * (size - len(body) - 11) + b'"}'

    assert len(padded(MAX_PAYLOAD_BYTES)) == MAX_PAYLOAD_BYTES
    assert reading_from_payload(device(), PROFILE, padded(MAX_PAYLOAD_BYTES), T0).ok
    too_big = reading_from_payload(device(), PROFILE, padded(MAX_PAYLOAD_BYTES + 1), T0)
    assert [e.code for e in too_big.errors] == ["bad_payload"]
    assert reading_from_payload(device(), PROFILE, b"\xef\xbb\xbf" + body, T0).ok


def test_deeply_nested_json_is_a_bad_payload() -> None:
    body = b"[" * 200_000
    r = reading_from_payload(device(), PROFILE, body, T0, max_bytes=1 << 20)
    assert [e.code for e in r.errors] == ["bad_payload"]


# --- the collector without a broker -----------------------------------------------------------


def make_collector(
    pairs: list[tuple[Device, Profile]], clock: FakeClock, sink: Sink, port: int = 1, **kw: Any
) -> MqttDeviceCollector:
    return MqttDeviceCollector(BrokerConfig(port=port), pairs, clock, sink, **kw)


@pytest.mark.parametrize(
    ("pairs", "complaint"),
    [
        ([(device("a", "t/1"), PROFILE), (device("b", "t/1"), PROFILE)], "share topic"),
        ([(device("a", "t/+"), PROFILE)], "wildcard"),
        ([(device("a", "t/#"), PROFILE)], "wildcard"),
        (
            [(device("a", "t/1"), Profile(name="s", protocol="snmp", kinds=["streetlight"]))],
            "not an mqtt",
        ),
    ],
)
def test_collector_refuses_bad_device_lists(
    pairs: list[tuple[Device, Profile]], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        make_collector(pairs, FakeClock(), Sink())


async def test_unknown_topic_and_retained_messages_are_ignored_but_counted() -> None:
    sink = Sink()
    collector = make_collector([(device(), PROFILE)], FakeClock(), sink)
    await collector.handle_message("pju/other/telemetry", payload())
    await collector.handle_message("pju/pju-001/telemetry", payload(), retain=True)
    assert sink.queue.empty()
    assert collector.stats.unknown_topic == 1
    assert collector.stats.retained_skipped == 1
    assert collector.stats.messages == 0
    assert collector.stats.last_message == {}


async def test_bad_payloads_counted_and_logged_rate_limited() -> None:
    clock, sink = FakeClock(), Sink()
    collector = make_collector([(device(), PROFILE)], clock, sink)
    topic = "pju/pju-001/telemetry"
    with capture_logs() as logs:
        for body in (b"garbage", b"[]", payload(), b"\xff"):
            await collector.handle_message(topic, body)
            clock.advance(1)
        clock.advance(BAD_PAYLOAD_LOG_INTERVAL_S)
        await collector.handle_message(topic, b"{")
    readings = [sink.queue.get_nowait() for _ in range(5)]
    assert [r.ok for r in readings] == [False, False, True, False, False]
    assert collector.stats.bad_payloads == {"pju-001": 4}
    assert collector.stats.messages == 5
    bad = [e for e in logs if e["event"] == "bad mqtt payload"]
    assert [(e["total"], e["suppressed_since_last_log"]) for e in bad] == [(1, 0), (4, 2)]
    assert all(e["device_id"] == "pju-001" and e["topic"] == topic for e in bad)
    assert "garbage" in bad[0]["problem"]


async def test_a_failing_sink_does_not_stop_the_collector() -> None:
    got: list[Reading] = []

    async def flaky(reading: Reading) -> None:
        if not got:
            got.append(reading)
            raise RuntimeError("outbox full")
        got.append(reading)

    collector = MqttDeviceCollector(BrokerConfig(), [(device(), PROFILE)], FakeClock(), flaky)
    with capture_logs():
        await collector.handle_message("pju/pju-001/telemetry", payload())
    await collector.handle_message("pju/pju-001/telemetry", payload())
    assert len(got) == 2
    assert collector.stats.sink_errors == 1


async def test_silence_detected_once_per_episode_with_a_fake_clock() -> None:
    clock, sink = FakeClock(), Sink()
    a, b = device("pju-a", "pju/a"), device("pju-b", "pju/b")
    c = device("pju-c", "pju/c")  # its profile sets no period: never silent
    collector = make_collector([(a, PROFILE), (b, PROFILE), (c, QUIET_PROFILE)], clock, sink)

    clock.advance(100)
    await collector.handle_message("pju/b", payload())
    clock.advance(50)  # a: 150 s since start = exactly 2.5 x 60 s, not yet silent
    assert collector.silent_devices() == []
    clock.advance(1)
    silent = collector.silent_devices()
    assert [(r.device_id, r.reachable, r.at) for r in silent] == [("pju-a", False, clock.t)]
    assert [e.code for e in silent[0].errors] == ["silent"]
    assert "'pju/a'" in silent[0].errors[0].message
    assert collector.silent_devices() == []  # once per episode
    clock.advance(100)  # b: 151 s since its message
    assert [r.device_id for r in collector.silent_devices()] == ["pju-b"]
    clock.advance(10_000)
    assert collector.silent_devices() == []

    await collector.handle_message("pju/a", b"not json")  # even a bad payload is a sign of life
    clock.advance(150)
    assert collector.silent_devices() == []
    clock.advance(1)
    assert [r.device_id for r in collector.silent_devices()] == ["pju-a"]  # a new episode


# --- with a real mosquitto --------------------------------------------------------------------


async def publish(broker: Mosquitto, topic: str, body: bytes, *, retain: bool = False) -> None:
    await asyncio.to_thread(
        mqtt_publish.single,
        topic,
        body,
        qos=1,
        retain=retain,
        hostname="127.0.0.1",
        port=broker.port,
    )


@contextlib.asynccontextmanager
async def running(collector: MqttDeviceCollector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(collector.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def test_two_devices_bad_payloads_and_unknown_topics(broker: Mosquitto) -> None:
    clock, sink = FakeClock(), Sink()
    a, b = device("pju-a", "city/pju/a"), device("pju-b", "city/pju/b")
    collector = make_collector([(a, PROFILE), (b, PROFILE)], clock, sink, port=broker.port)
    async with running(collector):
        await wait_until(lambda: collector.stats.connected)

        await publish(broker, "city/pju/a", payload())
        r = await sink.next()
        assert (r.device_id, r.ok, r.values, r.at) == ("pju-a", True, GOOD_VALUES, T0)

        clock.advance(5)
        await publish(broker, "city/pju/b", payload(power={"active": 100}))
        r = await sink.next()
        assert r.device_id == "pju-b"
        assert r.values["power_w"] == pytest.approx(10.0)

        with capture_logs() as logs:
            await publish(broker, "city/pju/a", b"\x89PNG\r\n\x1a\n")
            r = await sink.next()
        assert (r.device_id, r.reachable, r.values) == ("pju-a", True, {})
        assert [e.code for e in r.errors] == ["bad_payload"]
        bad = [e for e in logs if e["event"] == "bad mqtt payload"]
        assert len(bad) == 1
        assert (bad[0]["device_id"], bad[0]["topic"]) == ("pju-a", "city/pju/a")

        await publish(broker, "city/pju/zzz", payload())  # nobody's topic
        await publish(broker, "city/pju/a", payload(grid={"voltage": "high"}))
        r = await sink.next()  # the unknown topic gave no Reading
        assert r.device_id == "pju-a"
        assert [(e.code, e.metric) for e in r.errors] == [("wrong_type", "voltage_v")]

        await publish(broker, "city/pju/a", payload(meter={}))
        r = await sink.next()
        assert [(e.code, e.metric) for e in r.errors] == [("no_such_object", "energy_wh")]
        assert r.values["power_w"] == pytest.approx(85.3)

        await publish(broker, "city/pju/a", payload())  # still working after all that
        assert (await sink.next()).ok
        assert sink.queue.empty()

    assert collector.stats.messages == 6
    assert collector.stats.bad_payloads == {"pju-a": 1}
    assert collector.stats.last_message == {
        "pju-a": T0 + timedelta(seconds=5),
        "pju-b": T0 + timedelta(seconds=5),
    }
    assert not collector.stats.connected


async def test_retained_message_on_subscribe_is_skipped(broker: Mosquitto) -> None:
    sink = Sink()
    collector = make_collector([(device(), PROFILE)], FakeClock(), sink, port=broker.port)
    await publish(broker, "pju/pju-001/telemetry", payload(fw="old"), retain=True)
    async with running(collector):
        await wait_until(lambda: collector.stats.retained_skipped == 1)
        await publish(broker, "pju/pju-001/telemetry", payload(fw="new"))
        assert (await sink.next()).values["firmware"] == "new"


async def test_reconnects_after_the_broker_restarts(broker: Mosquitto) -> None:
    sink = Sink()
    collector = make_collector(
        [(device(), PROFILE)],
        FakeClock(),
        sink,
        port=broker.port,
        backoff_initial_s=0.02,
        backoff_max_s=0.2,
        stable_after_s=0.0,
    )
    with capture_logs() as logs:
        async with running(collector) as task:
            await wait_until(lambda: collector.stats.connected)
            await publish(broker, "pju/pju-001/telemetry", payload())
            assert (await sink.next()).ok

            await asyncio.to_thread(broker.stop)
            await wait_until(lambda: collector.stats.connect_failures >= 5)
            assert not collector.stats.connected
            assert not task.done()

            await asyncio.to_thread(broker.start)  # same port
            await wait_until(lambda: collector.stats.connected, within_s=10)
            await publish(broker, "pju/pju-001/telemetry", payload(fw="after"))
            assert (await sink.next()).values["firmware"] == "after"
    events = [e["event"] for e in logs if e["event"].startswith("device broker")]
    # state changes only, however many attempts failed in between
    assert events == ["device broker connected", "device broker lost", "device broker connected"]
    assert collector.stats.connects == 2


async def test_cancel_while_broker_down_stops_promptly() -> None:
    collector = make_collector(
        [(device(), PROFILE)], FakeClock(), Sink(), port=free_port(), backoff_initial_s=5.0
    )
    with capture_logs() as logs:
        task = asyncio.create_task(collector.run())
        await wait_until(lambda: collector.stats.connect_failures >= 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)
    assert [e["event"] for e in logs] == ["device broker unreachable"]


async def test_cancel_disconnects_cleanly(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as b:
        cfg = BrokerConfig(port=b.port, client_id="siaran-edge-test")
        collector = MqttDeviceCollector(cfg, [(device(), PROFILE)], FakeClock(), Sink())
        task = asyncio.create_task(collector.run())
        await wait_until(lambda: collector.stats.connected)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await wait_until(lambda: "siaran-edge-test disconnected" in b.log)
    assert not collector.stats.connected


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwd), "gateway", "s3cret-Pass"],
        check=True,
        capture_output=True,
    )
    with mosquitto(tmp_path, [f"password_file {passwd}"]) as b:
        yield b


async def test_credentials_used_and_never_logged(
    auth_broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICE_BROKER_PASSWORD", "s3cret-Pass")
    good = BrokerConfig(
        port=auth_broker.port,
        username="gateway",
        password=SecretSource(env="DEVICE_BROKER_PASSWORD"),
    )
    wrong = good.model_copy(update={"password": SecretSource(value="wrong-Pass")})
    with capture_logs() as logs:
        denied = MqttDeviceCollector(
            wrong,
            [(device(), PROFILE)],
            FakeClock(),
            Sink(),
            backoff_initial_s=0.02,
            backoff_max_s=0.05,
        )
        async with running(denied):
            await wait_until(lambda: denied.stats.connect_failures >= 3)
            assert not denied.stats.connected

        sink = Sink()
        collector = MqttDeviceCollector(good, [(device(), PROFILE)], FakeClock(), sink)
        async with running(collector):
            await wait_until(lambda: collector.stats.connected)
            await asyncio.to_thread(
                mqtt_publish.single,
                "pju/pju-001/telemetry",
                payload(),
                qos=1,
                hostname="127.0.0.1",
                port=auth_broker.port,
                auth={"username": "gateway", "password": "s3cret-Pass"},
            )
            assert (await sink.next()).ok
    assert [e["event"] for e in logs] == [
        "device broker unreachable",
        "device broker connected",
    ]
    assert "s3cret" not in repr(logs)
    assert "wrong-Pass" not in repr(logs)
