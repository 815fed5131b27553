"""`siaran-edge maintenance`: set, list and end maintenance windows.

The command writes the fault store (faults.db in the state directory); the running agent
re-reads the windows every tick, so no other link between the two is needed.

    siaran-edge maintenance --config FILE --device ID --until 2026-11-28T23:00+07:00 --note "..."
    siaran-edge maintenance --config FILE --circuit NAME --for 2h
    siaran-edge maintenance --config FILE --list
    siaran-edge maintenance --config FILE --device ID --end
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.config_check import load_checked
from agent.faults.fault_store import FILE_NAME, FaultStore
from agent.faults.maintenance import MaintenanceWindow, TargetKind, check_target
from firmware_config.loader import LoadedConfig

EXIT_USAGE = 2
EXIT_STORE = 1  # faults.db could not be read or written
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand (called by agent/cli.py)."""
    p = sub.add_parser(
        "maintenance",
        help="put a device or circuit in maintenance: its faults are recorded, not raised",
    )
    p.add_argument("--config", type=Path, required=True)
    target = p.add_mutually_exclusive_group()
    target.add_argument("--device", metavar="ID", help="a device id (the gateway id: the site)")
    target.add_argument("--circuit", metavar="NAME", help="a circuit or panel name")
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--until", metavar="TIME", help="end, ISO 8601 with offset: 2026-11-28T23:00+07:00"
    )
    action.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 90m, 2h, 1d")
    action.add_argument("--end", action="store_true", help="end the target's window now")
    action.add_argument("--list", action="store_true", help="list the windows in force")
    p.add_argument("--by", default=_default_by(), help="who (default: the login name)")
    p.add_argument("--note", default="", help="what is being done")
    p.set_defaults(func=cmd_maintenance)


def cmd_maintenance(args: argparse.Namespace) -> int:
    config = load_checked(args.config)
    if config is None:
        return EXIT_USAGE
    path = config.gateway.state_dir / FILE_NAME
    try:
        return _maintenance(args, config, FaultStore(path))
    except (OSError, sqlite3.Error) as exc:  # locked, read-only, no permission, disk full
        print(f"siaran-edge maintenance: {path}: {exc}", file=sys.stderr)
        hint = "try again" if "locked" in str(exc) else "run it as the service's user"
        print(f"  nothing was changed; {hint} (e.g. sudo -u siaran-edge ...)", file=sys.stderr)
        return EXIT_STORE


def _maintenance(args: argparse.Namespace, config: LoadedConfig, store: FaultStore) -> int:
    now = datetime.now(UTC)
    try:
        if args.list:
            return _list(store, now)
        kind: TargetKind = "device" if args.device is not None else "circuit"
        target: str | None = args.device if args.device is not None else args.circuit
        if target is None:
            return _usage("give --device ID or --circuit NAME (or --list)")
        try:
            check_target(config, kind, target)
        except ValueError as exc:
            return _usage(str(exc))
        if args.end:
            if not store.end_maintenance(kind, target, now):
                print(f"{kind} {target}: no maintenance window in force")
                return 1
            print(f"{kind} {target}: maintenance ended; faults still present are raised now")
            return 0
        try:
            until = _until(args.until, args.duration, now)
        except ValueError as exc:
            return _usage(str(exc))
        window = MaintenanceWindow(
            target_kind=kind, target=target, until=until, by=args.by, note=args.note, set_at=now
        )
        store.put_maintenance(window)
        print(f"{kind} {target}: in maintenance until {until.isoformat(timespec='minutes')}")
        return 0
    finally:
        store.close()


def _list(store: FaultStore, now: datetime) -> int:
    windows = store.maintenance(now)
    if not windows:
        print("no maintenance window in force")
    for w in windows:
        line = f"{w.target_kind} {w.target} until {w.until.isoformat(timespec='minutes')}"
        line += f" by {w.by}" if w.by else ""
        print(line + (f": {w.note}" if w.note else ""))
    return 0


def _until(until: str | None, duration: str | None, now: datetime) -> datetime:
    if duration is not None:
        found = _DURATION.match(duration.strip())
        if found is None:
            raise ValueError(f"--for {duration!r}: give a number and s, m, h or d (e.g. 90m)")
        return now + timedelta(seconds=float(found[1]) * _UNITS[found[2]])
    if until is None:
        raise ValueError("give --until TIME or --for DURATION (or --end, --list)")
    try:
        end = datetime.fromisoformat(until)
    except ValueError:
        raise ValueError(f"--until {until!r}: not an ISO 8601 time") from None
    if end.tzinfo is None:
        raise ValueError(f"--until {until!r}: give the offset, e.g. {until}+07:00 (WIB)")
    if end <= now:
        raise ValueError(f"--until {until!r} is already past")
    return end


def _usage(message: str) -> int:
    print(f"siaran-edge maintenance: {message}", file=sys.stderr)
    return EXIT_USAGE


def _default_by() -> str:
    for name in ("SUDO_USER", "USER", "LOGNAME"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"
