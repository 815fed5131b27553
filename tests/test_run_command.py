"""`siaran-edge run` against real SNMP agents: --once prints the table; a run stops on SIGTERM
with the latest readings in the state store."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.snmp_servers import Snmpd, Snmpsim

GATEWAY = """
state_dir = "state"
inventory = ["devices.toml"]
[gateway]
id = "gw-test"
site = "Test panel"
location = {{ lat = -6.29, lon = 106.71 }}
[poll]
interval_s = 1
timeout_s = 0.5
retries = 0
[snmp_credentials.ap]
community = "routeros"
[snmp_credentials.wrong]
community = "not-the-community"
[snmp_credentials.v3]
version = "3"
user = "{user}"
auth_protocol = "SHA"
auth_key = "{auth}"
priv_protocol = "AES"
priv_key = "{priv}"
"""

DEVICES = """
[[device]]
id = "ap-warkop"
kind = "hotspot"
profile = "mikrotik-routeros"
address = "{sim}"
credentials = "ap"
location = {{ lat = -6.29, lon = 106.71 }}

[[device]]
id = "ap-router-v3"
kind = "hotspot"
profile = "snmp-host"
address = "{snmpd}"
credentials = "v3"
location = {{ lat = -6.29, lon = 106.71 }}

[[device]]
id = "ap-wrong-community"
kind = "hotspot"
profile = "snmp-host"
address = "{sim}"
credentials = "wrong"
location = {{ lat = -6.29, lon = 106.71 }}
"""


def write_config(folder: Path, sim: Snmpsim, agent: Snmpd) -> Path:
    user = next(u for u in agent.v3_users if u.auth_protocol == "SHA" and u.priv_protocol == "AES")
    gateway = folder / "gateway.toml"
    gateway.write_text(GATEWAY.format(user=user.name, auth=user.auth_key, priv=user.priv_key))
    (folder / "devices.toml").write_text(DEVICES.format(sim=sim.address, snmpd=agent.address))
    return gateway


def siaran_edge(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", "--log-format", "json", *args]


def test_run_once_prints_every_device(
    tmp_path: Path, snmpsim_agent: Snmpsim, snmpd_agent: Snmpd
) -> None:
    config = write_config(tmp_path, snmpsim_agent, snmpd_agent)
    done = subprocess.run(
        siaran_edge("run", "--config", str(config), "--once"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # one device is unreachable
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line[:1].isalpha()}
    assert rows["ap-warkop"].split()[3] == "ok"
    # snmpd over v3 authPriv answers (its hrProcessorTable may be empty in a container)
    assert rows["ap-router-v3"].split()[3] in ("ok", "errors")
    v3_block = done.stdout.split("ap-router-v3", 1)[1].split("ap-warkop", 1)[0]
    assert "sys_object_id=1.3.6.1.4.1.8072.3.2.10" in v3_block
    assert rows["ap-wrong-community"].split()[3] == "UNREACHABLE"
    assert "table wireless_aps: 4 rows" in done.stdout
    assert "! timeout: no SNMP answer" in done.stdout
    assert "not-the-community" not in done.stdout + done.stderr
    assert not (tmp_path / "state").exists()  # --once keeps no state


def test_run_records_latest_readings_and_stops_cleanly_on_sigterm(
    tmp_path: Path, snmpsim_agent: Snmpsim, snmpd_agent: Snmpd
) -> None:
    config = write_config(tmp_path, snmpsim_agent, snmpd_agent)
    proc = subprocess.Popen(
        siaran_edge("run", "--config", str(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.5)  # a few 1 s poll rounds of a real process
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events[0] == "agent_started" and events[-1] == "agent_stopped"
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    rows = dict(db.execute("SELECT device_id, reachable FROM latest_reading").fetchall())
    assert rows == {"ap-warkop": 1, "ap-router-v3": 1, "ap-wrong-community": 0}
    (reading,) = db.execute(
        "SELECT reading FROM latest_reading WHERE device_id = 'ap-warkop'"
    ).fetchone()
    clients = json.loads(reading)["tables"]["wireless_aps"]
    assert sorted(row["client_count"] for row in clients.values()) == [0, 0, 4, 7]
