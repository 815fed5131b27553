"""Backlog: events per second drained from the outbox to mosquitto after an outage, none lost.

    python bench/backlog.py [--events 50000] [--repeat 3] [--quick] [--broker defaults]

The real Uplink (uplink.publisher.Uplink: the SQLite outbox on disk and an MQTT 5 link, default
[outbox] settings) of a gateway whose broker is away: --events fault events are committed
(each durable, fsync'd group commits) while every connection attempt fails. Then mosquitto
starts on the broker's port, a subscriber in another process subscribes (QoS 0, see
subscriber()) to the gateway's fault topic, and the uplink's next reconnect (backoff at most
1 s here) drains the backlog. Measured: the fill rate; the drain rate = events / (last event
received by the subscriber - the moment the uplink connected); that every seq 1..N arrived
(duplicates counted, QoS 1 allows them); that the outbox is empty after; the CPU time per
event of the uplink's process and of mosquitto while draining. Writes
bench/results/backlog.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, print_table, quiet_logs, spread, write_results
from firmware_config.models import BrokerConfig
from firmware_config.uplink_config import OutboxConfig
from tests.servers import Mosquitto
from uplink.contract import FaultDraft
from uplink.publisher import GatewayInfo, Uplink

TARGET_RATE = 5000.0
GATEWAY = "gw-backlog"
TOPIC = f"siaran/v1/{GATEWAY}/fault"
# mosquitto as installed, and with Nagle's algorithm off on its side (PUBACKs are small)
BROKERS = {"mosquitto defaults": [], "mosquitto set_tcp_nodelay true": ["set_tcp_nodelay true"]}


def draft(i: int, at: datetime) -> FaultDraft:
    return FaultDraft(
        device_id=f"pju-{i % 5000:04d}",
        device_kind="streetlight",
        fault_type="lamp_failure",
        state="raised" if i % 2 == 0 else "cleared",
        severity="major",
        first_seen=at,
        observed_at=at,
        clock_synced=True,
        circuit=f"PNL-{i % 500:03d}",
        evidence={"active_power_w": 0.0, "lamp_on": True, "rated_w": 60.0},
        summary="Lampu mati: daya 0 W saat seharusnya menyala",
    )


def seq_of(payload: bytes) -> int:
    """The seq of a compact FaultEvent, without parsing the JSON (the counter keeps up)."""
    at = payload.find(b'"seq":')
    if at < 0:
        return int(json.loads(payload)["seq"])
    end = payload.index(b",", at)
    return int(payload[at + 6 : end])


def subscriber(port: int, expected: int, out: Path, limit_s: float) -> None:
    """Run in a child process: count every seq of the fault topic, then write a summary."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seqs: set[int] = set()
    state = {"dupes": 0, "first": 0.0, "last": 0.0, "bytes": 0}
    ready = out.with_suffix(".ready")

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        seq = seq_of(bytes(msg.payload))
        if seq in seqs:
            state["dupes"] += 1
        seqs.add(seq)
        state["first"] = state["first"] or now
        state["last"] = now
        state["bytes"] += len(msg.payload)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="backlog-counter")
    client.on_message = on_message

    def on_subscribe(*_: object) -> None:
        ready.write_text("ok")

    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    # QoS 0 towards this counter: mosquitto (defaults: max_queued_messages 1000) drops QoS 1
    # messages for a subscriber more than 1,020 behind, which a counter starved of CPU on a
    # busy machine can be; QoS 0 to a connected client it queues without limit (checked).
    # The gateway's leg, the one measured, stays QoS 1 with PUBACKs.
    client.subscribe(TOPIC, qos=0)
    deadline = time.monotonic() + limit_s
    while len(seqs) < expected and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    missing = sorted(set(range(1, expected + 1)) - seqs)
    out.write_text(
        json.dumps(
            {
                "received": len(seqs),
                "duplicates": state["dupes"],
                "missing": len(missing),
                "missing_first": missing[:10],
                "first_at": state["first"],
                "last_at": state["last"],
                "payload_bytes": state["bytes"],
            }
        )
    )


def cpu_of(proc: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU seconds of a child process so far (Linux /proc)."""
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_for(cond: Any, limit_s: float, every_s: float = 0.005) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(every_s)
    return False


async def one_run(
    work: Path,
    events: int,
    broker_conf: list[str],
    window: int | None = None,
    inflight: int | None = None,
) -> dict[str, Any]:
    port = free_port()
    settings: dict[str, int] = {}
    if window is not None:
        settings["publish_window"] = window
    if inflight is not None:
        settings["max_inflight"] = inflight
    outbox = OutboxConfig.model_validate(settings)
    uplink = Uplink(
        GATEWAY,
        BrokerConfig(port=port, keepalive_s=30),
        outbox,
        work / "state",
        lambda: GatewayInfo("bench", "bench", 5000, True),
        backoff_min_s=0.2,
        backoff_max_s=1.0,
    )
    await uplink.open()
    runner = asyncio.create_task(uplink.run())
    at = datetime.now(UTC)
    fill0 = time.monotonic()
    chunk = 1000  # the agent's engine submits many at once after a big outage, likewise
    for start in range(0, events, chunk):
        batch = [draft(i, at) for i in range(start, min(events, start + chunk))]
        await asyncio.gather(*(uplink.submit_fault(d) for d in batch))
    fill_s = time.monotonic() - fill0
    pending = uplink.stats().faults_pending
    db_bytes = (work / "state" / "outbox.db").stat().st_size
    runner.cancel()  # the outage is over: the subscriber first, then the uplink's reconnect
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    (work / "broker").mkdir()
    broker = Mosquitto(work / "broker", port=port, extra_conf=broker_conf)
    broker.start()
    out = work / "subscriber.json"
    sub = subprocess.Popen(  # noqa: ASYNC220 (before the measured part)
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--subscriber",
            f"{port},{events},{out},{120}",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        await wait_for(out.with_suffix(".ready").exists, 20)
        runner = asyncio.create_task(uplink.run())
        await wait_for(lambda: uplink.stats().connected, 30, 0.001)
        connected_at = time.time()
        cpu0, broker_cpu0 = time.process_time(), cpu_of(broker.proc)
        drained = await wait_for(lambda: uplink.stats().faults_pending == 0, 120)
        empty_at = time.time()
        cpu_s, broker_cpu_s = time.process_time() - cpu0, cpu_of(broker.proc) - broker_cpu0
        await wait_for(lambda: sub.poll() is not None, 150, 0.05)
        got = json.loads(out.read_text())
    finally:
        if sub.poll() is None:
            sub.kill()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await uplink.close()
        broker.stop()
    drain_s = got["last_at"] - connected_at
    return {
        "events": events,
        "committed": pending,
        "fill_s": round(fill_s, 3),
        "fill_rate": round(events / fill_s),
        "db_bytes": db_bytes,
        "drained": drained,
        "outbox_empty_after_s": round(empty_at - connected_at, 3),
        "drain_s": round(drain_s, 3),
        "drain_rate": round(got["received"] / drain_s) if drain_s > 0 else None,
        # CPU per event while draining (less noisy than the rate on a shared machine)
        "uplink_cpu_us_per_event": round(cpu_s / events * 1e6, 1),
        "broker_cpu_us_per_event": round(broker_cpu_s / events * 1e6, 1),
        **got,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quiet_logs()
    runs = []
    for broker, conf in BROKERS.items():
        if args.broker and args.broker not in broker:
            continue
        if args.broker_conf:
            broker, conf = f"{broker} + {'; '.join(args.broker_conf)}", [*conf, *args.broker_conf]
        for _ in range(args.repeat):
            work = Path(tempfile.mkdtemp(prefix="bench-backlog-", dir=args.dir))
            try:
                run = await one_run(work, args.events, conf, args.window, args.inflight)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            runs.append({"broker": broker, **run})
    rows = [
        [
            r["broker"],
            r["events"],
            r["fill_rate"],
            r["drain_rate"],
            f"{r['drain_s']:.2f}",
            r["uplink_cpu_us_per_event"],
            r["broker_cpu_us_per_event"],
            r["received"],
            r["missing"],
            r["duplicates"],
            f">= {TARGET_RATE:,.0f}/s",
        ]
        for r in runs
    ]
    print_table(
        "Outbox backlog (fault events, QoS 1) drained to mosquitto after an outage",
        [
            "",
            "events",
            "fill /s",
            "drain /s",
            "drain s",
            "uplink CPU us/ev",
            "broker CPU us/ev",
            "received",
            "lost",
            "dupes",
            "target",
        ],
        rows,
    )
    data = {
        "target_rate": TARGET_RATE,
        "publish_window": args.window or OutboxConfig().publish_window,
        "max_inflight": args.inflight or OutboxConfig().max_inflight,
        "drain_rate": {
            broker: spread([float(r["drain_rate"]) for r in runs if r["broker"] == broker])
            for broker in dict.fromkeys(r["broker"] for r in runs)
        },
        "lost": sum(r["missing"] for r in runs),
        "runs": runs,
    }
    write_results("backlog", args.argv, data)
    return data


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=3, help="runs per broker setting")
    p.add_argument("--dir", default=None, help="where the outbox goes (a real disk)")
    p.add_argument("--window", type=int, default=None, help="[outbox] publish_window")
    p.add_argument("--broker", default=None, help="only the broker setting containing this")
    p.add_argument(
        "--broker-conf", action="append", default=[], help="one more mosquitto.conf line"
    )
    p.add_argument("--inflight", type=int, default=None, help="[outbox] max_inflight")
    p.add_argument("--quick", action="store_true", help="20,000 events, once per setting")
    p.add_argument("--subscriber", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 20_000, 1
    args.argv = argv
    return args


if __name__ == "__main__":
    parsed = parse(sys.argv[1:])
    if parsed.subscriber:
        port, expected, out, limit = parsed.subscriber.split(",")
        subscriber(int(port), int(expected), Path(out), float(limit))
    else:
        asyncio.run(main(parsed))
