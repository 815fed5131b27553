"""A tiny agent for the kill tests: `python -m tests.uplink_driver --port P --state DIR ...`.

Submits fault i (device `dev-i`, evidence {"i": i}) for i in [start, start+count), and every
`--telemetry-every` faults a telemetry batch; prints `fault I SEQ` / `telemetry I` on stdout once
each is stored (so the test knows what was committed before it kills us), `drained` when the
outbox is empty, and with `--exit-when-drained` closes cleanly after that.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import structlog

from firmware_config.models import BrokerConfig
from firmware_config.uplink_config import OutboxConfig
from uplink.contract import DeviceSamples, FaultDraft, TelemetryDraft
from uplink.publisher import GatewayInfo, Uplink


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--gateway", default="gw-01")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.005)
    p.add_argument("--telemetry-every", type=int, default=5)
    p.add_argument("--keepalive", type=int, default=5)
    p.add_argument("--exit-when-drained", action="store_true")
    return p.parse_args(argv)


def fault(i: int) -> FaultDraft:
    now = datetime.now(UTC)
    return FaultDraft(
        device_id=f"dev-{i}",
        device_kind="streetlight",
        fault_type="lamp_out",
        state="raised",
        severity="major",
        first_seen=now,
        observed_at=now,
        clock_synced=True,
        evidence={"i": i},
    )


def telemetry(i: int) -> TelemetryDraft:
    at = datetime.now(UTC)
    return TelemetryDraft(
        samples=[DeviceSamples(device_id=f"dev-{d}", at=at, values={"i": i}) for d in range(10)]
    )


def say(line: str) -> None:
    print(line, flush=True)


async def run(args: argparse.Namespace) -> None:
    uplink = Uplink(
        args.gateway,
        BrokerConfig(port=args.port, keepalive_s=args.keepalive),
        OutboxConfig(),
        args.state,
        lambda: GatewayInfo("test", "driver", 10, True),
        backoff_min_s=0.1,
        backoff_max_s=0.5,
    )
    await uplink.open()
    runner = asyncio.create_task(uplink.run())
    say("ready")
    for i in range(args.start, args.start + args.count):
        event = await uplink.submit_fault(fault(i))
        say(f"fault {i} {event.seq}")
        if args.telemetry_every and i % args.telemetry_every == 0:
            await uplink.submit_telemetry(telemetry(i))
            say(f"telemetry {i}")
        await asyncio.sleep(args.interval)
    while True:
        s = uplink.stats()
        if s.connected and s.faults_pending == 0 and s.telemetry_pending == 0:
            break
        await asyncio.sleep(0.02)
    say(f"drained {uplink.stats().last_seq}")
    if args.exit_when_drained:
        await uplink.close()
        await runner
        return
    await runner


def main(argv: list[str]) -> int:
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    asyncio.run(run(parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
