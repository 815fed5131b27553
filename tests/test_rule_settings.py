"""Resolved rule settings: validated once per rule and profile, shared by its devices."""

from __future__ import annotations

from pathlib import Path

from agent.faults.rules import RULES
from agent.faults.settings import check_rule_settings, resolve_settings
from firmware_config.loader import load_config
from tests.fault_fakes import write_config


def test_devices_of_a_profile_share_their_settings_objects(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, circuits={"A": 3}, hotspots=2, rules="[rules.lamp_failure]\nraise_after = 7\n"
    )
    config = load_config(path)
    assert check_rule_settings(config, RULES) == []
    plans = resolve_settings(config, RULES).devices
    one, two, three = (plans[f"lamp-A-{i}"].rules for i in (1, 2, 3))
    assert [r.name for r, _ in one] == [r.name for r, _ in two]
    assert all(a is b is c for (_, a), (_, b), (_, c) in zip(one, two, three, strict=True))
    lamp = dict((r.name, s) for r, s in one)
    assert lamp["lamp_failure"].raise_after == 7
    ap = dict((r.name, s) for r, s in plans["ap-1"].rules)
    assert ap["unreachable"] is not lamp["unreachable"]  # another profile: its own


def test_a_bad_merge_is_reported_for_every_device(tmp_path: Path) -> None:
    # each layer is valid alone; merged, low_dim_pct (profile) >= full_dim_pct (gateway)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "pju-kita.toml").write_text(
        'name = "pju-kita"\nprotocol = "snmp"\nkinds = ["streetlight"]\nextends = "pju-generic"\n'
        "[rules.power_deviation]\nlow_dim_pct = 60\n"
    )
    path = write_config(
        tmp_path, circuits={"A": 2}, rules="[rules.power_deviation]\nfull_dim_pct = 50\n"
    )
    text = path.read_text().replace('profile = "pju-generic"', 'profile = "pju-kita"')
    path.write_text('profile_dirs = ["profiles"]\n' + text)
    config = load_config(path)
    found = sorted((p.device or "", p.where) for p in check_rule_settings(config, RULES))
    assert found == [("lamp-A-1", "rules.power_deviation"), ("lamp-A-2", "rules.power_deviation")]
