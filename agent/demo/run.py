"""`siaran-edge demo`: a simulated district on loopback, watched by the real gateway agent, whose
faults the real central consumer turns into reports in the SIARAN sandbox, while a script plays
(agent/demo/scenario.py). No external services, no root; everything stops on Ctrl-C.

The demo's clock starts a quarter of an hour before today's sunset in Pamulang and runs `speed`
times faster (60 by default: a demo minute is a real second), so dusk falls during the demo.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import structlog

from agent.demo.clock import ScaledClock
from agent.demo.devices import DistrictSpec
from agent.demo.district import GATEWAY_ID, WEB_USER, District
from agent.demo.options import DemoOptions
from agent.demo.scenario import Narrator, play, summary, sunset_of
from agent.demo.stack import DemoStack, Parts, cancel_within
from agent.faults.astro import WIB
from agent.logs import mask_secrets

LEAD_S = 15 * 60.0  # the demo's clock starts this long before sunset
EXIT_INTERRUPTED = 130


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if isinstance(out, io.TextIOWrapper):  # an Indonesian summary never breaks an ASCII terminal
        out.reconfigure(errors="replace")
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        folder, temporary = options.workdir.resolve(), False
    else:
        folder, temporary = Path(tempfile.mkdtemp(prefix="siaran-demo-")), True
    log_path = folder / "demo.log"
    code = 1
    try:
        with log_path.open("a", encoding="utf-8") as log_file:
            _log_to(log_file)
            code = asyncio.run(_demo(options, folder, log_path, out))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        code = EXIT_INTERRUPTED
    finally:
        if temporary and code in (0, EXIT_INTERRUPTED):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"Files of this run (configs, state, log): {folder}", file=out, flush=True)
    return code


def _log_to(stream: TextIO) -> None:
    """Every log of every part as JSON lines into the demo's log file, none on the terminal."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


async def _demo(options: DemoOptions, folder: Path, log_path: Path, out: TextIO) -> int:
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()

    def on_signal() -> None:
        if interrupted.is_set():  # a second Ctrl-C: out now; the kernel stops the children
            os._exit(EXIT_INTERRUPTED)
        interrupted.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await _until_interrupted(options, folder, log_path, out, interrupted)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until_interrupted(
    options: DemoOptions, folder: Path, log_path: Path, out: TextIO, interrupted: asyncio.Event
) -> int:
    now = datetime.now(UTC)
    start = sunset_of(now, -6.3431, 106.7372) - timedelta(seconds=LEAD_S)
    spec = DistrictSpec(
        circuits=options.circuits,
        poles_per_circuit=options.poles_per_circuit,
        hotspots=options.hotspots,
        mqtt_lamps=options.mqtt_lamps,
        start=start,
        speed=options.speed,
        real_start=time.monotonic(),
    )
    stack = DemoStack(folder, spec, options.broker)
    clock, district = stack.clock, stack.district
    print(_title(options, district), file=out, flush=True)
    narrator: Narrator | None = None
    code = 0
    try:
        async with stack as parts:
            narrator = Narrator(clock, f"http://127.0.0.1:{parts.ports.sandbox}", out)
            watchers = [
                asyncio.create_task(narrator.tap(parts.broker.host, parts.broker.port)),
                asyncio.create_task(narrator.watch_reports(parts)),
            ]
            try:
                await stack.wait_started()
                _where(parts, clock, log_path, out)
                script = asyncio.create_task(play(stack, parts, district, narrator))
                stopper = asyncio.create_task(interrupted.wait())
                done, _ = await asyncio.wait({script, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if script in done:
                    script.result()  # a bug in the script is an error, not a quiet end
                    code = 0 if all(o.ok for o in narrator.outcomes) else 1
                    for line in summary(narrator):
                        print(line, file=out)
                    if options.keep:
                        print(
                            "\nStill running (--keep): look around, Ctrl-C stops everything.",
                            file=out,
                            flush=True,
                        )
                        await stopper
                else:
                    code = EXIT_INTERRUPTED
                    print("\nCtrl-C: stopping ...", file=out, flush=True)
                for task in (script, stopper):
                    task.cancel()
                await asyncio.gather(script, stopper, return_exceptions=True)
            finally:
                for task in watchers:
                    await cancel_within(task)
            print("Stopping the agent, central, the sandbox and the broker ...", file=out)
        print("Stopped; nothing is left running.", file=out, flush=True)
    except Exception as exc:
        structlog.get_logger(__name__).exception("demo_failed")
        print(f"\nThe demo failed: {type(exc).__name__}: {exc}", file=out, flush=True)
        print(f"The log says more: {log_path}", file=out, flush=True)
        return 1
    if options.keep and code == EXIT_INTERRUPTED:
        code = 0  # Ctrl-C is how a kept demo ends
    return code


def _title(options: DemoOptions, district: District) -> str:
    mqtt = sum(p.mqtt for p in district.poles)
    return (
        "siaran-edge demo: a simulated district of Tangerang Selatan, on loopback\n"
        f"  district  {len(district.circuits)} circuits x {options.poles_per_circuit} SNMP "
        f"poles, {mqtt} MQTT lamps, {len(district.hotspots)} hotspots (recorded real access "
        "points)"
    )


def _where(parts: Parts, clock: ScaledClock, log_path: Path, out: TextIO) -> None:
    start = clock.now().astimezone(WIB)
    lines = [
        f"  devices   SNMP on udp 127.0.0.1:{parts.ports.snmp} (one community per device)",
        f"  broker    {parts.broker.label}",
        f"  gateway   agent {GATEWAY_ID}; status page http://127.0.0.1:{parts.ports.web}/"
        f"  (user {WEB_USER}, password {parts.password})",
        f"  central   consumer -> SIARAN sandbox http://127.0.0.1:{parts.ports.sandbox}/"
        "  <- the agency's list of reports",
        f"  clock     demo time starts {start:%d-%m-%Y %H:%M} WIB and runs {clock.speed:g}x "
        f"(a demo minute is {60 / clock.speed:.2g} s)",
        f"  log       {log_path}",
        "",
        "Time (WIB, demo clock), what happens, and what the gateway, central and SIARAN do:",
    ]
    for line in lines:
        print(line, file=out, flush=True)
