"""Load and cross-check the gateway config, its inventory and the device profiles.

Every problem is collected and raised at once as a ConfigError; nothing stops at the first.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from firmware_config.inventory_csv import read_inventory_csv
from firmware_config.models import (
    BrokerConfig,
    Device,
    GatewayConfig,
    SecretSource,
    SnmpV2c,
    SnmpV3,
)
from firmware_config.problems import ConfigError, ConfigProblem, problems_from_validation
from firmware_config.profiles import Profile
from firmware_config.telemetry_config import InfluxConfig
from firmware_config.web_config import WebConfig

SHIPPED_PROFILES = resources.files("firmware_config") / "profiles"


@dataclass(frozen=True)
class LoadedConfig:
    """Everything the agent needs, validated. Devices have their defaults and credentials filled."""

    path: Path
    gateway: GatewayConfig
    devices: tuple[Device, ...]
    profiles: dict[str, Profile]
    version: str  # short hash of every file read: the config version reported upstream

    def profile_of(self, device: Device) -> Profile:
        return self.profiles[device.profile]


@dataclass
class _Collector:
    problems: list[ConfigProblem] = field(default_factory=list)
    digest: Any = field(default_factory=hashlib.sha256)

    def read_toml(self, path: Path) -> dict[str, Any] | None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.problems.append(ConfigProblem(path, "", f"cannot read: {exc.strerror}"))
            return None
        self.digest.update(data)
        try:
            return tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            self.problems.append(ConfigProblem(path, "", f"not valid TOML: {exc}"))
            return None


def load_profiles(extra_dirs: list[Path] = []) -> dict[str, Profile]:  # noqa: B006
    """The shipped profiles plus the user's; raises ConfigError listing every bad file."""
    col = _Collector()
    profiles = _load_profiles(col, extra_dirs)
    if col.problems:
        raise ConfigError(col.problems)
    return profiles


def load_config(path: Path) -> LoadedConfig:
    """Load a gateway config file and everything it names; raises ConfigError with all problems."""
    col = _Collector()
    raw = col.read_toml(path)
    if raw is None:
        raise ConfigError(col.problems)
    try:
        gateway = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        col.problems += problems_from_validation(exc, path)
        # go on with what can be checked: inventory rows still get their own problems
        gateway = None
    base = path.parent
    inventory = [base / p for p in raw.get("inventory", []) if isinstance(p, str)]
    profile_dirs = [base / p for p in raw.get("profile_dirs", []) if isinstance(p, str)]
    profiles = _load_profiles(col, profile_dirs)
    devices = _load_devices(col, path, raw, inventory)
    if gateway is not None:
        gateway = _anchor_paths(gateway, base)
        _check_secrets(col, path, gateway)
        devices = _resolve_devices(col, gateway, devices, profiles)
    if col.problems or gateway is None:
        raise ConfigError(col.problems)
    return LoadedConfig(
        path, gateway, tuple(d for d, _, _ in devices), profiles, col.digest.hexdigest()[:12]
    )


def _load_profiles(col: _Collector, extra_dirs: list[Path]) -> dict[str, Profile]:
    files: list[tuple[Path, str]] = []
    for entry in sorted(SHIPPED_PROFILES.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            files.append((Path(str(entry)), "shipped"))
    for folder in extra_dirs:
        if not folder.is_dir():
            col.problems.append(ConfigProblem(folder, "profile_dirs", "not a folder"))
            continue
        files += [(p, "user") for p in sorted(folder.glob("*.toml"))]
    found: dict[str, tuple[Profile, Path]] = {}
    for file, _origin in files:
        raw = col.read_toml(file)
        if raw is None:
            continue
        try:
            profile = Profile.model_validate(raw)
        except ValidationError as exc:
            col.problems += problems_from_validation(exc, file)
            continue
        if profile.name != file.stem:
            col.problems.append(
                ConfigProblem(
                    file,
                    "name",
                    f"profile '{profile.name}' must be in a file named {profile.name}.toml",
                )
            )
            continue
        found[profile.name] = (profile, file)  # a user's profile replaces a shipped one
    return _resolve_extends(col, found)


def _resolve_extends(col: _Collector, found: dict[str, tuple[Profile, Path]]) -> dict[str, Profile]:
    resolved: dict[str, Profile] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> Profile | None:
        if name in resolved:
            return resolved[name]
        profile, file = found[name]
        if profile.extends is None:
            resolved[name] = profile
            return profile
        if profile.extends in chain or profile.extends not in found:
            why = "a cycle" if profile.extends in chain else "no such profile"
            col.problems.append(ConfigProblem(file, "extends", f"'{profile.extends}': {why}"))
            return None
        base = resolve(profile.extends, (*chain, name))
        if base is None:
            return None
        if base.protocol != profile.protocol:
            col.problems.append(
                ConfigProblem(
                    file, "extends", f"'{base.name}' is {base.protocol}, this is {profile.protocol}"
                )
            )
            return None
        resolved[name] = profile.merged_with(base)
        return resolved[name]

    for name in found:
        resolve(name, ())
    return resolved


_Sourced = tuple[Device, Path, str]  # the device, its file, its row in the file


def _load_devices(
    col: _Collector, config_path: Path, raw: dict[str, Any], inventory: list[Path]
) -> list[_Sourced]:
    devices = _validate_rows(col, config_path, "device", raw.get("device", []))
    for file in inventory:
        if file.suffix.lower() == ".csv":
            try:
                data = file.read_bytes()
            except OSError as exc:
                col.problems.append(ConfigProblem(file, "", f"cannot read: {exc.strerror}"))
                continue
            col.digest.update(data)
            rows, problems = read_inventory_csv(file, data)
            col.problems += problems
            for line, cells in rows:
                devices += _validate_rows(col, file, f"line {line}", [cells], numbered=False)
        elif file.suffix.lower() == ".toml":
            inv = col.read_toml(file)
            if inv is not None:
                unknown = sorted(set(inv) - {"device"})
                if unknown:
                    col.problems.append(
                        ConfigProblem(
                            file,
                            ", ".join(unknown),
                            "unknown key (an inventory has [[device]] tables)",
                        )
                    )
                devices += _validate_rows(col, file, "device", inv.get("device", []))
    seen: dict[str, str] = {}
    for device, file, where in devices:
        if device.id in seen:
            col.problems.append(
                ConfigProblem(file, "id", f"used twice (also {seen[device.id]})", device.id, where)
            )
        seen.setdefault(device.id, f"{file.name} {where}")
    return devices


def _validate_rows(
    col: _Collector, file: Path, prefix: str, rows: Any, numbered: bool = True
) -> list[_Sourced]:
    if not isinstance(rows, list):
        col.problems.append(ConfigProblem(file, prefix, "expected a list of [[device]] tables"))
        return []
    out: list[_Sourced] = []
    for i, row in enumerate(rows):
        where = f"{prefix}[{i}]" if numbered else prefix
        device_id = row.get("id") if isinstance(row, dict) else None
        try:
            out.append((Device.model_validate(row), file, where))
        except ValidationError as exc:
            col.problems += problems_from_validation(
                exc, file, where, str(device_id) if device_id else None
            )
    return out


def _anchor_paths(gateway: GatewayConfig, base: Path) -> GatewayConfig:
    """Relative paths in the config are relative to the config file's folder.

    The one place that does it: state_dir, the brokers' TLS and password files, [influxdb]'s
    token file and ca_file, [web]'s TLS files. A LoadedConfig holds absolute paths only.
    """

    def anchor(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    def secret(s: SecretSource | None) -> SecretSource | None:
        if s is None or s.file is None:
            return s
        return s.model_copy(update={"file": anchor(s.file)})

    def broker(b: BrokerConfig | None) -> BrokerConfig | None:
        if b is None:
            return None
        update: dict[str, Any] = {}
        if b.tls is not None:
            update["tls"] = b.tls.model_copy(
                update={
                    "ca_file": anchor(b.tls.ca_file),
                    "cert_file": anchor(b.tls.cert_file),
                    "key_file": anchor(b.tls.key_file),
                }
            )
        if b.password is not None:
            update["password"] = secret(b.password)
        return b.model_copy(update=update)

    def influx(c: InfluxConfig | None) -> InfluxConfig | None:
        if c is None:
            return None
        return c.model_copy(update={"token": secret(c.token), "ca_file": anchor(c.ca_file)})

    def web(w: WebConfig | None) -> WebConfig | None:
        if w is None or w.tls is None:
            return w
        tls = w.tls.model_copy(
            update={"cert_file": anchor(w.tls.cert_file), "key_file": anchor(w.tls.key_file)}
        )
        return w.model_copy(update={"tls": tls})

    return gateway.model_copy(
        update={
            "state_dir": anchor(gateway.state_dir),
            "broker": broker(gateway.broker),
            "device_broker": broker(gateway.device_broker),
            "influxdb": influx(gateway.influxdb),
            "web": web(gateway.web),
        }
    )


def _check_secrets(col: _Collector, path: Path, gateway: GatewayConfig) -> None:
    """Secrets that resolve and files that exist: what would otherwise fail only at run time."""

    def no_file(where: str, f: Path | None) -> None:
        if f is not None and not f.is_file():
            col.problems.append(ConfigProblem(path, where, f"no file {f}"))

    for name in ("broker", "device_broker"):
        b: BrokerConfig | None = getattr(gateway, name)
        if b is None:
            continue
        if b.password is not None:
            try:
                b.password.resolve()
            except ValueError as exc:
                col.problems.append(ConfigProblem(path, f"{name}.password", str(exc)))
        if b.tls is not None:
            for key in ("ca_file", "cert_file", "key_file"):
                no_file(f"{name}.tls.{key}", getattr(b.tls, key))
    influx = gateway.influxdb
    if influx is not None:
        if influx.token is not None:
            try:
                influx.token.resolve()
            except ValueError as exc:  # names the file or variable, never the value
                col.problems.append(ConfigProblem(path, "influxdb.token", str(exc)))
        no_file("influxdb.ca_file", influx.ca_file)
    if gateway.web is not None and gateway.web.tls is not None:
        no_file("web.tls.cert_file", gateway.web.tls.cert_file)
        no_file("web.tls.key_file", gateway.web.tls.key_file)


def state_dir_problems(config: LoadedConfig) -> list[ConfigProblem]:
    """Can the agent keep its state in `state_dir`? (`run` makes it when missing.)

    For `check-config`, on a config that is otherwise valid. No folder is made: the folder, or
    its nearest existing parent when it is missing, must take a new file. An unnamed temporary
    file is tried (and gone at once), since root passes every permission check, even in /proc.
    """
    folder = config.gateway.state_dir
    why = _unwritable(folder)
    return [] if why is None else [ConfigProblem(config.path, "state_dir", f"{folder}: {why}")]


def _unwritable(folder: Path) -> str | None:
    existing = folder
    while True:
        try:
            mode = existing.stat().st_mode
            break
        except FileNotFoundError:
            if existing.parent == existing:
                return "no such folder"
            existing = existing.parent
        except OSError as exc:  # a parent that is a file, or that may not be searched
            return exc.strerror or str(exc)
    made = "" if existing == folder else f"cannot be made in {existing}: "
    if not stat.S_ISDIR(mode):
        return f"{made}not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{made}not writable"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{made}{exc.strerror or 'not writable'}"
    return None


def _resolve_devices(
    col: _Collector,
    gateway: GatewayConfig,
    devices: list[_Sourced],
    profiles: dict[str, Profile],
) -> list[_Sourced]:
    """Check each device against its profile, and fill in defaults and named credentials."""
    out: list[_Sourced] = []
    defaults = gateway.poll
    # equal inline credentials (frozen models) become one object, as named sets are
    inline: dict[SnmpV2c | SnmpV3, SnmpV2c | SnmpV3] = {}
    for device, file, row in devices:
        found: list[ConfigProblem] = []

        def problem(where: str, message: str) -> None:
            found.append(ConfigProblem(file, where, message, device.id, row))  # noqa: B023

        profile = profiles.get(device.profile)
        if profile is None:
            known = ", ".join(sorted(profiles)) or "none"
            problem("profile", f"no profile '{device.profile}' (known: {known})")
            col.problems += found
            continue
        if device.kind not in profile.kinds:
            problem(
                "kind",
                f"profile '{profile.name}' describes {', '.join(profile.kinds)}, not {device.kind}",
            )
        snmp = device.snmp
        if profile.protocol == "snmp":
            snmp = _snmp_credentials(gateway, device, problem)
            _check_snmp_address(device, problem)
        else:
            if any(c in device.address for c in "+#") or device.address.startswith("/"):
                problem(
                    "address",
                    "an MQTT device's address is its exact topic, "
                    "without wildcards or a leading '/'",
                )
            if gateway.device_broker is None:
                problem(
                    "profile",
                    f"'{profile.name}' is an MQTT profile: the gateway config "
                    "needs a [device_broker] section",
                )
        col.problems += found
        if not found:
            filled = device.model_copy(
                update={
                    "snmp": None if snmp is None else inline.setdefault(snmp, snmp),
                    "interval_s": device.interval_s or defaults.interval_s,
                    "timeout_s": device.timeout_s or defaults.timeout_s,
                    "retries": defaults.retries if device.retries is None else device.retries,
                }
            )
            out.append((filled, file, row))
    return out


Report = Callable[[str, str], None]


def _snmp_credentials(
    gateway: GatewayConfig, device: Device, problem: Report
) -> SnmpV2c | SnmpV3 | None:
    if device.snmp is not None:
        return device.snmp
    if device.credentials is None:
        problem("credentials", "an SNMP device needs 'credentials' (a named set) or 'snmp'")
        return None
    creds = gateway.snmp_credentials.get(device.credentials)
    if creds is None:
        known = ", ".join(sorted(gateway.snmp_credentials)) or "none defined"
        problem(
            "credentials",
            f"no [snmp_credentials.{device.credentials}] in the gateway config (known: {known})",
        )
    return creds


def _check_snmp_address(device: Device, problem: Report) -> None:
    try:
        host, port = device.host_port()
    except ValueError:
        host, port = "", 0
    if not host or not 0 < port < 65536:
        problem("address", f"'{device.address}' is not host:port (e.g. 10.20.0.15:161)")
