"""Rule settings as data: which rules judge a device, with which thresholds.

For a device and a rule that applies to it (the device's kind is in `rule.kinds` and
`rule.applies_to(device, profile)`), settings are, each layer over the one before:

    rule.settings_model defaults  <  profile [rules.NAME]  <  gateway config [rules.NAME]

The engine's own correlation ([rules.circuit_outage], [rules.gateway_network_down]) is set in the
gateway config only. `check_rule_settings` reports every unknown rule name and bad value with the
file that holds it (the gateway config or the profile) and `rules.NAME.field`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from agent.faults.rule import (
    CIRCUIT_OUTAGE,
    GATEWAY_ISOLATED,
    UNREACHABLE,
    Rule,
    RuleSettings,
    Severity,
)
from firmware_config.loader import SHIPPED_PROFILES, LoadedConfig
from firmware_config.models import Device
from firmware_config.problems import ConfigError, ConfigProblem, problems_from_validation
from firmware_config.profiles import Profile


class CircuitOutageSettings(RuleSettings):
    """[rules.circuit_outage]: many lamps of one circuit dark or unreachable at once."""

    severity: Severity = "critical"
    min_lamps: int = Field(3, ge=2, le=1000, description="Lamps down at once to call it an outage")
    min_share: float = Field(
        0.0, ge=0, le=1, description="And at least this share of the circuit's lamps (0: any)"
    )
    window_s: float = Field(
        300.0, gt=0, le=3600, description="Lamps count together when they went down this close"
    )


class GatewayNetworkDownSettings(RuleSettings):
    """[rules.gateway_network_down]: (almost) every device behind the gateway unreachable."""

    severity: Severity = "critical"
    min_devices: int = Field(3, ge=2, le=100_000, description="Devices unreachable at once")
    min_share: float = Field(
        0.8, gt=0, le=1, description="And at least this share of the gateway's devices"
    )
    window_s: float = Field(
        300.0, gt=0, le=3600, description="Devices count together when they failed this close"
    )


ENGINE_SETTINGS: dict[str, type[RuleSettings]] = {
    CIRCUIT_OUTAGE: CircuitOutageSettings,
    GATEWAY_ISOLATED: GatewayNetworkDownSettings,
}
# Correlated faults follow their members' debounce and hysteresis; these fields would do nothing.
_LIFECYCLE_FIELDS = frozenset(
    (
        "raise_after",
        "raise_after_s",
        "clear_after",
        "clear_after_s",
        "flap_transitions",
        "flap_window_s",
    )
)


@dataclass(frozen=True)
class DeviceRules:
    """The rules that judge one device, the unreachable rule first, with resolved settings."""

    device: Device
    profile: Profile
    rules: tuple[tuple[Rule, RuleSettings], ...]


@dataclass(frozen=True)
class ResolvedSettings:
    devices: dict[str, DeviceRules]
    circuit_outage: CircuitOutageSettings
    gateway_network_down: GatewayNetworkDownSettings


def resolve_settings(config: LoadedConfig, rules: Mapping[str, Rule]) -> ResolvedSettings:
    """Settings for every device and the correlation; raises ConfigError when any is invalid."""
    problems: list[ConfigProblem] = []
    gw_rules = config.gateway.rules
    devices: dict[str, DeviceRules] = {}
    # Settings depend on the rule and the profile only: validated once, shared (frozen models)
    # by every device of the profile; 12 rules x 1,000 lamps would otherwise be 12,000 copies.
    resolved: dict[tuple[str, str], tuple[RuleSettings | None, list[ConfigProblem]]] = {}
    for device in config.devices:
        profile = config.profile_of(device)
        chosen: list[tuple[Rule, RuleSettings]] = []
        for rule in _applicable(rules, device, profile):
            key = (rule.name, profile.name)
            if key not in resolved:
                merged = {**profile.rules.get(rule.name, {}), **gw_rules.get(rule.name, {})}
                resolved[key] = _validate(rule.settings_model, merged, config.path, rule.name)
            settings, found = resolved[key]
            problems += [_for_device(p, device) for p in found]
            if settings is not None and settings.enabled:
                chosen.append((rule, settings))
        chosen.sort(key=lambda pair: pair[0].name != UNREACHABLE)  # stable: unreachable first
        devices[device.id] = DeviceRules(device, profile, tuple(chosen))
    circuit, found = _validate(
        CircuitOutageSettings, gw_rules.get(CIRCUIT_OUTAGE, {}), config.path, CIRCUIT_OUTAGE
    )
    problems += found
    gateway, found = _validate(
        GatewayNetworkDownSettings,
        gw_rules.get(GATEWAY_ISOLATED, {}),
        config.path,
        GATEWAY_ISOLATED,
    )
    problems += found
    if problems or circuit is None or gateway is None:
        raise ConfigError(problems)
    assert isinstance(circuit, CircuitOutageSettings)
    assert isinstance(gateway, GatewayNetworkDownSettings)
    return ResolvedSettings(devices, circuit, gateway)


def check_rule_settings(config: LoadedConfig, rules: Mapping[str, Rule]) -> list[ConfigProblem]:
    """Every problem in the rule settings of the gateway config and of the profiles."""
    by_name = {rule.name: rule for rule in rules.values()}
    known = ", ".join(sorted([*by_name, *ENGINE_SETTINGS]))
    problems: list[ConfigProblem] = []
    bad_layers: set[str] = set()
    for name, table in config.gateway.rules.items():
        found = _check_layer(name, table, config.path, by_name, known, in_profile=False)
        problems += found
        bad_layers |= {name} if found else set()
    for file, own in _profile_rule_tables(config):
        for name, table in own.items():
            found = _check_layer(name, table, file, by_name, known, in_profile=True)
            problems += found
            bad_layers |= {name} if found else set()
    # each layer alone is valid; the merge could still break a check across fields
    merged_problems: dict[tuple[str, str], list[ConfigProblem]] = {}  # by (rule, profile)
    for device in config.devices:
        profile = config.profile_of(device)
        for rule in _applicable(by_name, device, profile):
            if rule.name in bad_layers:
                continue
            key = (rule.name, profile.name)
            if key not in merged_problems:
                own, gw = profile.rules.get(rule.name, {}), config.gateway.rules.get(rule.name, {})
                merged_problems[key] = _validate(
                    rule.settings_model, {**own, **gw}, config.path, rule.name
                )[1]
            problems += [_for_device(p, device) for p in merged_problems[key]]
    return problems


def _applicable(rules: Mapping[str, Rule], device: Device, profile: Profile) -> list[Rule]:
    return [r for r in rules.values() if device.kind in r.kinds and r.applies_to(device, profile)]


def _check_layer(
    name: str,
    table: Any,
    file: Path,
    rules: Mapping[str, Rule],
    known: str,
    in_profile: bool,
) -> list[ConfigProblem]:
    where = f"rules.{name}"
    if name in ENGINE_SETTINGS:
        if in_profile:
            return [ConfigProblem(file, where, "set in the gateway config, not in a profile")]
        unused = sorted(_LIFECYCLE_FIELDS & set(table)) if isinstance(table, dict) else []
        found = [
            ConfigProblem(
                file,
                f"{where}.{field}",
                "not used: a correlated fault follows its members' debounce and hysteresis",
            )
            for field in unused
        ]
        return found + _validate(ENGINE_SETTINGS[name], table, file, name)[1]
    rule = rules.get(name)
    if rule is None:
        return [ConfigProblem(file, where, f"unknown rule (known: {known})")]
    return _validate(rule.settings_model, table, file, name)[1]


def _validate(
    model: type[RuleSettings], table: Any, file: Path, name: str
) -> tuple[RuleSettings | None, list[ConfigProblem]]:
    if not isinstance(table, dict):
        return None, [ConfigProblem(file, f"rules.{name}", "expected a table of settings")]
    try:
        return model.model_validate(table), []
    except ValidationError as exc:
        found = problems_from_validation(exc, file)
        return None, [
            ConfigProblem(p.file, f"rules.{name}.{p.where}".rstrip("."), p.message) for p in found
        ]


def _for_device(problem: ConfigProblem, device: Device) -> ConfigProblem:
    return ConfigProblem(problem.file, problem.where, problem.message, device.id)


def _profile_rule_tables(config: LoadedConfig) -> list[tuple[Path, dict[str, Any]]]:
    """Each profile file's own [rules.*] tables (not what it inherits), by the file that has them.

    The loader keeps no file names, so they are found again the way it finds them: shipped
    profiles first, then `profile_dirs` in order, a later file of the same name winning.
    """
    files: dict[str, Path] = {}
    for entry in sorted(SHIPPED_PROFILES.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            files[entry.name.removesuffix(".toml")] = Path(str(entry))
    base = config.path.parent
    for given in config.gateway.profile_dirs:
        folder = given if given.is_absolute() else base / given
        for found in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            files[found.stem] = found
    out: list[tuple[Path, dict[str, Any]]] = []
    for name in sorted(config.profiles):
        file = files.get(name)
        if file is None:
            continue
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue  # the loader read it a moment ago; nothing to add here
        own = raw.get("rules", {})
        if isinstance(own, dict) and own:
            out.append((file, own))
    return out
