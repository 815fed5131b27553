"""MQTT device collector: controllers that publish JSON telemetry to the gateway's LAN broker.

Each MQTT device publishes to one exact topic (`device.address`); every message on it becomes
exactly one Reading through `reading_from_payload`, a pure function. The collector keeps the
broker connection alive (reconnecting with exponential backoff and jitter), counts what it sees
and reports devices that went silent when the scheduler asks (`silent_devices`).

Retained messages delivered on subscribe are skipped (counted): they are old telemetry of
unknown age, and would otherwise pass for a fresh message after every reconnect.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiomqtt
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from collectors.base import Now, WrongType, convert
from collectors.reading import Reading, ReadingError, Value
from firmware_config.models import BrokerConfig, Device
from firmware_config.profiles import MqttMetric, Profile

log = structlog.get_logger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
SILENCE_FACTOR = 2.5  # silent when nothing came for this many expected periods
BAD_PAYLOAD_LOG_INTERVAL_S = 300.0  # after the first, at most one bad-payload log per device
_SHOWN_BYTES = 32  # payload bytes quoted in a bad_payload message

Sink = Callable[[Reading], Awaitable[None]]


class _BadPayloadError(ValueError):
    """The payload as a whole cannot be read (not UTF-8 JSON, not an object, too large)."""


class _NoFieldError(LookupError):
    """The dotted path leads nowhere in the payload."""


# --- the pure core ----------------------------------------------------------------------------


def reading_from_payload(
    device: Device,
    profile: Profile,
    payload: bytes,
    at: datetime,
    *,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Reading:
    """The Reading one message of `device` gives; never raises for a bad payload."""
    try:
        doc = _parse(payload, max_bytes)
    except _BadPayloadError as exc:
        message = (
            f"device {device.id} topic {device.address!r}: {exc}; "
            f"payload ({len(payload)} bytes) starts {payload[:_SHOWN_BYTES]!r}"
        )
        error = ReadingError(code="bad_payload", message=message)
        return Reading(device_id=device.id, at=at, reachable=True, errors=[error])
    values: dict[str, Value] = {}
    errors: list[ReadingError] = []
    for spec in profile.fields:
        try:
            values[spec.name] = _field_value(spec, _lookup(doc, spec.field))
        except _NoFieldError as exc:
            errors.append(ReadingError(code="no_such_object", message=str(exc), metric=spec.name))
        except WrongType as exc:
            errors.append(ReadingError(code="wrong_type", message=str(exc), metric=spec.name))
    return Reading(device_id=device.id, at=at, reachable=True, values=values, errors=errors)


def _parse(payload: bytes, max_bytes: int) -> dict[str, Any]:
    if len(payload) > max_bytes:
        raise _BadPayloadError(f"payload larger than the {max_bytes}-byte limit")
    try:
        doc = json.loads(payload.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise _BadPayloadError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _BadPayloadError(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise _BadPayloadError("JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise _BadPayloadError(f"JSON {type(doc).__name__} where an object was expected")
    return doc


def _lookup(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for i, key in enumerate(path.split(".")):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(path.split(".")[:i]) or "the top level"
            raise _NoFieldError(f"no field {path!r} in the payload (no {key!r} in {where})")
        node = node[key]
    if node is None:
        raise _NoFieldError(f"field {path!r} is null")
    return node


def _field_value(spec: MqttMetric, raw: Any) -> Value:
    """Convert one JSON value; JSON text for a numeric type is wrong_type, not parsed."""
    where = f"{spec.name} (field {spec.field!r})"
    if isinstance(raw, dict | list):
        raise WrongType(f"{where}: expected {spec.type}, got a JSON {type(raw).__name__}")
    if spec.type == "bool" and isinstance(raw, bool):
        return raw
    if isinstance(raw, bool) and spec.type != "str":
        raise WrongType(f"{where}: expected {spec.type}, got a JSON boolean")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise WrongType(f"{where}: expected a finite number, got {raw}")
    if spec.type in ("int", "counter") and isinstance(raw, float) and not raw.is_integer():
        raise WrongType(f"{where}: expected an integer ({spec.type}), got {raw}")
    if not isinstance(raw, int | float | str):
        raise WrongType(f"{where}: unexpected JSON value {raw!r}")
    if isinstance(raw, str) and spec.type != "str":
        raise WrongType(f"{where}: expected a number ({spec.type}), got text {raw[:40]!r}")
    return convert(spec, raw)


# --- the collector ----------------------------------------------------------------------------


@dataclass
class MqttStats:
    """Counters of one collector, for the agent's status page."""

    messages: int = 0  # messages taken from a device's topic (bad ones included)
    unknown_topic: int = 0  # messages on a topic no device owns (ignored)
    retained_skipped: int = 0
    bad_payloads: dict[str, int] = field(default_factory=dict)  # by device id
    last_message: dict[str, datetime] = field(default_factory=dict)  # by device id
    sink_errors: int = 0
    connected: bool = False
    connects: int = 0  # successful connections (with subscriptions) so far
    connect_failures: int = 0


@dataclass
class _LogGate:
    """Rate limit of one device's bad-payload log lines."""

    logged_at: datetime
    suppressed: int = 0


class MqttDeviceCollector:
    """Subscribes to each device's topic on the device broker and turns messages into Readings."""

    def __init__(
        self,
        broker: BrokerConfig,
        devices: Iterable[tuple[Device, Profile]],
        now: Now,
        on_reading: Sink,
        *,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 60.0,
        stable_after_s: float = 10.0,
    ) -> None:
        self._broker = broker
        self._now = now
        self._on_reading = on_reading
        self._max_bytes = max_payload_bytes
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._stable_after_s = stable_after_s
        self._by_topic: dict[str, tuple[Device, Profile]] = {}
        for device, profile in devices:
            if profile.protocol != "mqtt":
                raise ValueError(f"device {device.id}: profile {profile.name} is not an mqtt one")
            if any(c in device.address for c in "+#"):
                raise ValueError(f"device {device.id}: topic {device.address!r} has a wildcard")
            if device.address in self._by_topic:
                other = self._by_topic[device.address][0].id
                raise ValueError(f"devices {other} and {device.id} share topic {device.address!r}")
            self._by_topic[device.address] = (device, profile)
        self.stats = MqttStats()
        self._started_at = now()
        self._silent: set[str] = set()
        self._log_gates: dict[str, _LogGate] = {}
        self._down_logged = False

    # -- messages --

    async def handle_message(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Turn one received message into one Reading for the sink (unknown topics ignored)."""
        owner = self._by_topic.get(topic)
        if owner is None:
            self.stats.unknown_topic += 1
            return
        if retain:
            self.stats.retained_skipped += 1
            return
        device, profile = owner
        at = self._now()
        reading = reading_from_payload(device, profile, payload, at, max_bytes=self._max_bytes)
        self.stats.messages += 1
        self.stats.last_message[device.id] = at
        if device.id in self._silent:
            self._silent.discard(device.id)
            log.info("mqtt device heard again", device_id=device.id, topic=topic)
        if any(e.code == "bad_payload" for e in reading.errors):
            self._bad_payload(device, reading, at)
        try:
            await self._on_reading(reading)
        except Exception:
            self.stats.sink_errors += 1
            log.exception("reading sink failed", device_id=device.id)

    def _bad_payload(self, device: Device, reading: Reading, at: datetime) -> None:
        count = self.stats.bad_payloads.get(device.id, 0) + 1
        self.stats.bad_payloads[device.id] = count
        gate = self._log_gates.get(device.id)
        if gate is not None and (at - gate.logged_at).total_seconds() < BAD_PAYLOAD_LOG_INTERVAL_S:
            gate.suppressed += 1
            return
        log.warning(
            "bad mqtt payload",
            device_id=device.id,
            topic=device.address,
            problem=reading.errors[0].message,
            total=count,
            suppressed_since_last_log=gate.suppressed if gate else 0,
        )
        self._log_gates[device.id] = _LogGate(logged_at=at)

    # -- silence --

    def silent_devices(self) -> list[Reading]:
        """A `silent` Reading for each device newly quiet for SILENCE_FACTOR x its period.

        Only devices whose profile sets expected_period_s; one Reading per silence episode
        (the episode ends with the device's next message).
        """
        now = self._now()
        found: list[Reading] = []
        for topic, (device, profile) in self._by_topic.items():
            period = profile.expected_period_s
            if period is None or device.id in self._silent:
                continue
            last = self.stats.last_message.get(device.id, self._started_at)
            quiet_s = (now - last).total_seconds()
            if quiet_s <= SILENCE_FACTOR * period:
                continue
            self._silent.add(device.id)
            broker_state = "connected" if self.stats.connected else "not connected"
            message = (
                f"device {device.id}: nothing on topic {topic!r} for {quiet_s:.0f} s "
                f"(expected every {period:g} s; device broker {broker_state})"
            )
            log.warning("mqtt device silent", device_id=device.id, topic=topic, quiet_s=quiet_s)
            error = ReadingError(code="silent", message=message)
            found.append(Reading(device_id=device.id, at=now, reachable=False, errors=[error]))
        return found

    # -- connection --

    async def run(self) -> None:
        """Serve until cancelled, reconnecting with backoff whenever the broker goes away."""
        if not self._by_topic:
            log.info("no mqtt devices to serve")
            return
        initial, maximum = self._backoff
        try:
            while True:
                retrying = AsyncRetrying(
                    wait=wait_exponential(multiplier=initial, max=maximum)
                    + wait_random(0, initial),
                    retry=retry_if_exception_type(aiomqtt.MqttError),
                    reraise=True,
                )
                await retrying(self._session)
        finally:
            self.stats.connected = False

    async def _session(self) -> None:
        """One connection; returns after a stable one ends, raises when it failed or flapped."""
        loop = asyncio.get_running_loop()
        started = None
        try:
            async with self._client() as client:
                topics = list(self._by_topic)
                granted = await client.subscribe([(t, 1) for t in topics])
                self._check_granted(topics, granted)
                started = loop.time()
                self.stats.connected = True
                self.stats.connects += 1
                self._down_logged = False
                log.info("device broker connected", **self._where(), topics=len(topics))
                async for message in client.messages:
                    await self.handle_message(
                        message.topic.value, message.payload, retain=message.retain
                    )
        except aiomqtt.MqttError as exc:
            self.stats.connected = False
            if started is None:
                self.stats.connect_failures += 1
            if not self._down_logged:
                self._down_logged = True
                event = "device broker unreachable" if started is None else "device broker lost"
                log.warning(event, **self._where(), error=str(exc))
            if started is None or loop.time() - started < self._stable_after_s:
                raise

    def _client(self) -> aiomqtt.Client:
        return broker_client(
            self._broker,
            identifier=self._broker.client_id,
            keepalive=self._broker.keepalive_s,
            clean_session=True,
            max_queued_incoming_messages=10_000,
        )

    def _check_granted(self, topics: list[str], granted: Iterable[Any]) -> None:
        refused = [
            t
            for t, rc in zip(topics, granted, strict=False)
            if int(getattr(rc, "value", rc)) >= 0x80
        ]
        if refused:
            log.error("device broker refused subscriptions", **self._where(), topics=refused)

    def _where(self) -> dict[str, Any]:
        return {"host": self._broker.host, "port": self._broker.port}


def broker_client(broker: BrokerConfig, **options: Any) -> aiomqtt.Client:
    """An aiomqtt client of the device broker: its credentials and TLS, plus `options`.
    A password that cannot be read is an MqttError naming its file or variable, never a value."""
    try:
        password = broker.password.resolve().get_secret_value() if broker.password else None
    except ValueError as exc:
        raise aiomqtt.MqttError(f"password: {exc}") from None
    tls = None
    if broker.tls is not None:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(broker.tls.ca_file) if broker.tls.ca_file else None,
            certfile=str(broker.tls.cert_file) if broker.tls.cert_file else None,
            keyfile=str(broker.tls.key_file) if broker.tls.key_file else None,
        )
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=password,
        tls_params=tls,
        **options,
    )
