"""`siaran-edge tail --config FILE`: watch a gateway's branch on the central broker.

For an installer checking a new gateway: prints one readable line per message (status, faults,
telemetry, technician actions, acks, commands) until Ctrl-C. Uses the gateway's own broker
settings (TLS, user), with a client id of its own and a clean session, so it never takes over the
agent's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ValidationError

from firmware_config.loader import load_config
from firmware_config.models import BrokerConfig
from firmware_config.problems import ConfigError
from uplink.contract import (
    Ack,
    Command,
    CommandResult,
    FaultEvent,
    GatewayStatus,
    OperatorAction,
    TelemetryBatch,
    Topics,
    parse_topic,
)
from uplink.mqtt_link import LinkError, LinkOptions, MqttLink, tls_context


def _t(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def _fmt_value(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def format_message(root: str, topic: str, payload: bytes, retained: bool = False) -> str:
    """One line for a message of the contract (or a raw line for anything else)."""
    parsed = parse_topic(root, topic)
    ret = " (retained)" if retained else ""
    if parsed is None:
        return f"? {topic}: {payload[:200]!r}"
    try:
        return _format(parsed.channel, payload, parsed.name) + ret
    except ValidationError as exc:
        return f"! {topic}: does not match the contract: {exc.errors()[0]['msg']}{ret}"


def _format(channel: str, payload: bytes, name: str | None) -> str:
    model: BaseModel
    if channel == "status":
        s = GatewayStatus.model_validate_json(payload)
        line = f"{_t(s.at)} STATUS {s.state.upper()}"
        if s.state == "offline":
            line += " (clean shutdown)" if s.graceful else " (Last Will: connection lost)"
        line += (
            f" agent={s.agent_version} config={s.config_version} devices={s.device_count}"
            f" clock={'synced' if s.clock_synced else 'NOT synced'}"
            f" last_seq={s.last_seq} central_acked={s.central_acked_seq}"
        )
        if s.outbox is not None:
            o = s.outbox
            line += f" backlog=faults:{o.faults_pending},telemetry:{o.telemetry_pending}"
            flags = [
                f"dropped_telemetry={o.telemetry_dropped}" if o.telemetry_dropped else "",
                "OUTBOX FULL" if o.full else "",
                "FAULTS OVER BOUND" if o.faults_over_bound else "",
                f"faults_refused={o.faults_refused}" if o.faults_refused else "",
                f"dead_letters={o.dead_letters}" if o.dead_letters else "",
                f"store_resets={o.store_resets}" if o.store_resets else "",
            ]
            line += "".join(f" {f}" for f in flags if f)
        return line
    if channel == "fault":
        f = FaultEvent.model_validate_json(payload)
        where = f" circuit={f.circuit}" if f.circuit else ""
        if f.location is not None and f.location.address:
            where += f" at '{f.location.address}'"
        evidence = " ".join(f"{k}={_fmt_value(v)}" for k, v in f.evidence.items())
        return (
            f"{_t(f.observed_at)} FAULT #{f.seq}{' REPLAYED' if f.replayed else ''}"
            f" {f.state.upper()} {f.severity} {f.fault_type} {f.device_kind}:{f.device_id}"
            f"{where}{' [' + evidence + ']' if evidence else ''}"
            f"{'' if f.clock_synced else ' (clock not synced)'}"
        )
    if channel == "telemetry":
        b = TelemetryBatch.model_validate_json(payload)
        values = sum(len(s.values) for s in b.samples)
        newest = max((s.at for s in b.samples), default=None)
        when = _t(newest) if newest else "-"
        return (
            f"{when} TELEMETRY{' REPLAYED' if b.replayed else ''} {len(b.samples)} samples,"
            f" {values} values, devices: {_devices(b)}"
        )
    if channel == "action":
        return _action_line(OperatorAction.model_validate_json(payload))
    if channel == "ack":
        a = Ack.model_validate_json(payload)
        return f"{_t(a.at)} ACK central applied up to #{a.up_to}" + (
            f" and {a.seqs}" if a.seqs else ""
        )
    if channel == "cmd":
        model = Command.model_validate_json(payload)
        return f"{_t(model.issued_at)} COMMAND {model.name} {model.args} id={model.command_id}"
    r = CommandResult.model_validate_json(payload)
    return f"{_t(r.at)} COMMAND-RESULT {r.name} {r.outcome} {r.detail} id={r.command_id}"


def _action_line(a: OperatorAction) -> str:
    target = a.device_id or f"circuit {a.circuit}"
    line = f"{_t(a.at)} ACTION{' REPLAYED' if a.replayed else ''} {a.kind} {target} by {a.by}"
    if a.fault_type:
        line += f" {a.fault_type}"
    if a.until is not None:
        line += f" until {_t(a.until)}"
    if a.result is not None:
        line += f" {'OK' if a.result.ok else 'FAILED'}: {a.result.detail}"
    return line + (f" '{a.note}'" if a.note else "")


def _devices(b: TelemetryBatch, shown: int = 5) -> str:
    ids = sorted({s.device_id for s in b.samples})
    more = f" (+{len(ids) - shown})" if len(ids) > shown else ""
    return ",".join(ids[:shown]) + more


async def tail(
    broker: BrokerConfig,
    gateway_id: str,
    out: Callable[[str], None],
    *,
    stop: asyncio.Event | None = None,
    max_messages: int | None = None,
) -> int:
    """Subscribe to the gateway's branch and print until `stop` (or max_messages)."""
    topics = Topics(broker.topic_root, gateway_id)
    queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
    options = LinkOptions(
        host=broker.host,
        port=broker.port,
        client_id=f"{broker.client_id or gateway_id}-tail-{secrets.token_hex(3)}",
        keepalive_s=broker.keepalive_s,
        username=broker.username,
        password=broker.password.resolve().get_secret_value() if broker.password else None,
        tls=tls_context(broker.tls) if broker.tls else None,
    )
    link = MqttLink(options, lambda t, p, r: queue.put_nowait((t, p, r)))
    await link.connect()
    try:
        granted = await link.subscribe([(topics.all, 1)])
        if any(code >= 0x80 for code in granted):
            out(f"! subscription to {topics.all} refused by the broker ({granted})")
            return 1
        out(f"# watching {topics.all} on {broker.host}:{broker.port} (Ctrl-C to stop)")
        stopper = stop or asyncio.Event()
        count = 0
        while max_messages is None or count < max_messages:
            getter = asyncio.create_task(queue.get())
            waiters: list[asyncio.Future[Any]] = [
                getter,
                asyncio.ensure_future(stopper.wait()),
                asyncio.ensure_future(link.wait_closed()),
            ]
            done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
            if getter not in done:
                if not stopper.is_set():
                    out("! connection to the broker lost")
                    return 1
                return 0
            topic, payload, retained = getter.result()
            out(format_message(broker.topic_root, topic, payload, retained))
            count += 1
        return 0
    finally:
        await link.disconnect()


def main(config_path: Path, *, stdout: TextIO | None = None) -> int:
    """Sync entry for the CLI: load the config, tail until Ctrl-C; returns the exit code."""
    stream = stdout or sys.stdout
    err = sys.stderr
    try:
        gateway = load_config(config_path).gateway
    except ConfigError as exc:
        print(f"config: {exc}", file=err)
        return 2
    if gateway.broker is None:
        print("config: no [broker]: this gateway publishes nowhere", file=err)
        return 2

    def out(line: str) -> None:
        print(line, file=stream, flush=True)

    try:
        return asyncio.run(tail(gateway.broker, gateway.gateway.id, out))
    except KeyboardInterrupt:
        return 0
    except (LinkError, ValueError, OSError) as exc:
        print(f"cannot connect: {exc}", file=err)
        return 1
    finally:
        with contextlib.suppress(Exception):
            stream.flush()
