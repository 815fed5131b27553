"""The `central` and `siaran-sandbox` subcommands of `siaran-edge` (registered by agent.cli).

Only argparse here: the consumer and the sandbox are imported when their command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_CONFIG = 2


def add_commands(sub: Any) -> None:
    central = sub.add_parser("central", help="central consumer: fault events -> SIARAN reports")
    central.add_argument("--config", type=Path, required=True, help="central TOML config")
    central.add_argument(
        "--check", action="store_true", help="check the config, print a summary and exit"
    )
    central.set_defaults(func=cmd_central)

    box = sub.add_parser("siaran-sandbox", help="a local SIARAN: its API and an agency page")
    box.add_argument("--host", default="127.0.0.1")
    box.add_argument("--port", type=int, default=8700)
    box.add_argument("--data", type=Path, default=Path("siaran-sandbox"), help="storage folder")
    box.add_argument(
        "--token-env",
        default="SIARAN_SANDBOX_TOKEN",
        help="environment variable with the API token (default SIARAN_SANDBOX_TOKEN); "
        "when unset, a random token is made and printed once",
    )
    box.add_argument("--boundary", type=Path, help="GeoJSON (Multi)Polygon of the city")
    box.set_defaults(func=cmd_sandbox)


def _until_signalled() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def cmd_central(args: argparse.Namespace) -> int:
    from central.config import CentralConfigError, load_config

    try:
        config = load_config(args.config)
    except CentralConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    unreadable = _unreadable_secrets(config)
    if args.check:
        b, s = config.broker, config.siaran
        group = f"$share/{b.share_group}" if b.share_group else "no shared group"
        print(f"{args.config}: valid")
        print(f"  broker {b.host}:{b.port} root {b.topic_root} ({group}), client {b.client_id}")
        print(f"  SIARAN {s.base_url}; ledger {config.ledger_path}")
        influx = config.influxdb
        if influx is None:
            print("  telemetry: not subscribed (no [influxdb])")
        else:
            print(f"  telemetry -> InfluxDB {influx.url} bucket {influx.bucket}")
        for name in ("streetlight", "wifi"):
            cat = getattr(config.categories, name)
            print(f"  {name}: {cat.agency} / {cat.unit or '-'}, SLA {cat.sla_h:g} h")
        print(
            f"  boundary: {config.boundary.build().name}; {len(config.gateways)} known gateway(s)"
        )
        for problem in unreadable:
            print(f"  note: {problem} (needed when it runs)")
        for problem in _unreadable_influx_token(config):
            print(f"  note: {problem} (telemetry waits in memory until it can be read)")
        return 0
    if unreadable:
        for problem in unreadable:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    from central.service import Central

    async def run() -> None:
        await Central(config).run(_until_signalled())

    asyncio.run(run())
    return 0


def _unreadable_secrets(config: Any) -> list[str]:
    problems = []
    for name in ("broker.password", "siaran.token"):
        section, field = name.split(".")
        secret = getattr(getattr(config, section), field)
        if secret is not None:
            try:
                secret.resolve()
            except ValueError as exc:  # names the file or variable, never the value
                problems.append(f"{name}: {exc}")
    return problems


def _unreadable_influx_token(config: Any) -> list[str]:
    """Not a reason to refuse to start (faults do not need it): InfluxDB writes wait for it."""
    token = config.influxdb.token if config.influxdb is not None else None
    if token is None:
        return []
    try:
        token.resolve()
    except ValueError as exc:  # names the file or variable, never the value
        return [f"influxdb.token: {exc}"]
    return []


def cmd_sandbox(args: argparse.Namespace) -> int:
    from central.geo import Boundary, load_geojson
    from central.sandbox.server import SandboxServer

    boundary = load_geojson(args.boundary, "Kota Tangerang Selatan") if args.boundary else None
    token = os.environ.get(args.token_env)
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"API token (set {args.token_env} to choose one): {token}", flush=True)

    async def run() -> None:
        server = SandboxServer(
            args.data, args.port, token, args.host, boundary or Boundary.default()
        )
        stop = _until_signalled()
        await server.start()
        print(f"SIARAN sandbox on {server.url}/ (API {server.url}/api/v1)", flush=True)
        await stop.wait()
        await server.stop()

    asyncio.run(run())
    return 0
