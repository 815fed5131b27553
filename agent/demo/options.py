"""The options of `siaran-edge demo` (argparse only: agent.cli imports this at start)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoOptions:
    circuits: int = 3
    poles_per_circuit: int = 20
    hotspots: int = 4
    mqtt_lamps: int = 2
    speed: float = 60.0
    broker: str = "auto"  # auto, embedded, mosquitto or HOST:PORT
    keep: bool = False
    workdir: Path | None = None


def add_arguments(demo: argparse.ArgumentParser) -> None:
    size = demo.add_argument_group("the district")
    size.add_argument("--circuits", type=_int_in(1, 12), default=3, help="circuits (1-12; 3)")
    size.add_argument(
        "--poles-per-circuit", type=_int_in(3, 200), default=20, help="SNMP poles each (3-200; 20)"
    )
    size.add_argument(
        "--hotspots", type=_int_in(0, 24), default=4, help="recorded access points (0-24; 4)"
    )
    size.add_argument(
        "--mqtt-lamps", type=_int_in(0, 20), default=2, help="MQTT JSON lamps (0-20; 2)"
    )
    demo.add_argument(
        "--speed",
        type=_float_in(1.0, 120.0),
        default=60.0,
        help="the demo's clock runs this many times faster than real time (1-120; 60: the "
        "script takes about 40 s)",
    )
    demo.add_argument(
        "--broker",
        default="auto",
        metavar="auto|embedded|mosquitto|HOST:PORT",
        help="MQTT broker: mosquitto when installed, else the embedded one (auto); or an "
        "existing broker (anonymous, no TLS)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep running after the script, until Ctrl-C"
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        help="keep configs, state and log here (default: a temporary folder, removed at the "
        "end unless something failed)",
    )


def options_from(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(
        circuits=args.circuits,
        poles_per_circuit=args.poles_per_circuit,
        hotspots=args.hotspots,
        mqtt_lamps=args.mqtt_lamps,
        speed=args.speed,
        broker=args.broker,
        keep=args.keep,
        workdir=args.workdir,
    )


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low}..{high}")
        return value

    return parse


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value:g} is not within {low:g}..{high:g}")
        return value

    return parse
