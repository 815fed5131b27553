"""`siaran-edge`: the command line of the gateway agent."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config_check import load_checked
from agent.faults.maintenance_cli import add_command as add_maintenance_command
from agent.logs import configure_logging
from agent.version import agent_version

if TYPE_CHECKING:
    from agent.runtime import Agent

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siaran-edge",
        description="Gateway agent: street lights and hotspots that report their own faults.",
    )
    parser.add_argument("--version", action="version", version=agent_version())
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    check = sub.add_parser("check-config", help="validate a config, its inventory and profiles")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check_config)

    run = sub.add_parser("run", help="run the gateway agent")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument(
        "--once", action="store_true", help="poll every device once, print the readings and exit"
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="a simulated district on loopback: faults become SIARAN reports (docs/demo.md)",
        description="Simulated street lights and hotspots, the gateway agent, the central "
        "consumer and the SIARAN sandbox, all on loopback, while a script plays (docs/demo.md).",
    )
    from agent.demo.options import add_arguments as add_demo_arguments

    add_demo_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    tail = sub.add_parser("tail", help="print the messages of this gateway's MQTT branch")
    tail.add_argument("--config", type=Path, required=True)
    tail.set_defaults(func=cmd_tail)

    hash_pw = sub.add_parser(
        "hash-password", help="read a password (prompt or stdin), print its hash for [web] users"
    )
    hash_pw.set_defaults(func=cmd_hash_password)

    add_maintenance_command(sub)

    from central.cli import add_commands as add_central_commands  # argparse only; lazy inside

    add_central_commands(sub)
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_checked(args.config, state_dir=True)
    if config is None:
        return EXIT_CONFIG
    kinds = Counter(d.kind for d in config.devices)
    used = sorted({d.profile for d in config.devices})
    print(f"{args.config}: valid (config version {config.version})")
    print(f"  gateway {config.gateway.gateway.id} at {config.gateway.gateway.site}")
    print(
        f"  devices: {len(config.devices)} ("
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        + ")"
    )
    print(f"  profiles in use: {', '.join(used) or 'none'}; known: {len(config.profiles)}")
    broker = config.gateway.broker
    print(f"  central broker: {f'{broker.host}:{broker.port}' if broker else 'none (offline)'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_checked(args.config)
    if config is None:
        return EXIT_CONFIG
    from agent.readings_table import readings_table
    from agent.runtime import Agent, StateDirError

    agent = Agent(config)
    if args.once:
        readings = asyncio.run(agent.poll_once())
        devices = {d.id: d for d in config.devices}
        print(readings_table(readings, devices, config.profiles))
        return 0 if all(r.ok for r in readings) else 1
    try:
        asyncio.run(_run_until_signalled(agent))
    except StateDirError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


async def _run_until_signalled(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


def cmd_hash_password(args: argparse.Namespace) -> int:
    from agent.web.passwords import hash_password_command

    return hash_password_command()


def cmd_tail(args: argparse.Namespace) -> int:
    from uplink.tail import main as tail_main

    return tail_main(args.config)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo.options import options_from
    from agent.demo.run import run_demo

    return run_demo(options_from(args))


if __name__ == "__main__":
    sys.exit(main())
