"""Loading the gateway config for a command: every problem printed (file, field, device), or None.

Checks what `load_config` checks plus the rule settings, and, when asked, that the state
directory can be used. Shared by the commands so they refuse a config for the same reasons.
"""

from __future__ import annotations

import sys
from pathlib import Path

from firmware_config.loader import LoadedConfig, load_config, state_dir_problems
from firmware_config.problems import ConfigError


def load_checked(path: Path, state_dir: bool = False) -> LoadedConfig | None:
    """The config with its rule settings (and, if asked, its state_dir) checked too; None
    (problems printed on stderr) when invalid."""
    from agent.faults.rules import RULES  # every rule module: only when a config is checked
    from agent.faults.settings import check_rule_settings

    try:
        config = load_config(path)
    except ConfigError as exc:
        print_problems(path, exc)
        return None
    problems = check_rule_settings(config, RULES)
    if not problems and state_dir:
        problems = state_dir_problems(config)
    if problems:
        print_problems(path, ConfigError(problems))
        return None
    return config


def print_problems(path: Path, error: ConfigError) -> None:
    print(f"{path}: {len(error.problems)} problem(s) in the configuration:", file=sys.stderr)
    for problem in error.problems:
        print(f"  - {problem}", file=sys.stderr)
