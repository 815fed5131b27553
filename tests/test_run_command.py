"""`siaran-edge run` against real SNMP agents: --once prints the table; a run stops on SIGTERM
with the latest readings in the state store."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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


class LogLines:
    """A process's stderr read as it comes (so the pipe never fills): its JSON log lines."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.lines.append(line)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def text(self) -> str:
        self._reader.join(timeout=20)
        return "".join(self.lines)


def stored_devices(db: Path) -> set[str]:
    """The devices with a row in a running agent's state store (read-only; none yet: empty)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return {d for (d,) in conn.execute("SELECT device_id FROM latest_reading")}
    except sqlite3.Error:  # not made yet, or the table not yet
        return set()


def wait_for(
    proc: subprocess.Popen[str], done: Callable[[], bool], what: str, deadline_s: float = 30.0
) -> None:
    """Poll `done` until it holds; fail if the process ends first or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while not done():
        assert proc.poll() is None, f"the agent ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {deadline_s:.0f} s"
        time.sleep(0.1)


def test_run_records_latest_readings_and_stops_cleanly_on_sigterm(
    tmp_path: Path, snmpsim_agent: Snmpsim, snmpd_agent: Snmpd
) -> None:
    config = write_config(tmp_path, snmpsim_agent, snmpd_agent)
    proc = subprocess.Popen(
        siaran_edge("run", "--config", str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    log = LogLines(proc.stderr)
    try:
        db = tmp_path / "state" / "state.db"
        devices = {"ap-warkop", "ap-router-v3", "ap-wrong-community"}

        def unreachable_logged() -> bool:
            return any(
                e["event"] == "snmp device unreachable" and e.get("device") == "ap-wrong-community"
                for e in log.events()
            )

        # a real process, its own pace: the timed-out device's log line, then a reading of every
        # device in the state store (its first periodic flush, some 10 s after the start)
        wait_for(proc, unreachable_logged, "unreachable log line for ap-wrong-community")
        wait_for(proc, lambda: stored_devices(db) == devices, "state.db row of every device")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    err = log.text()
    assert proc.returncode == 0, err
    events = [e["event"] for e in log.events()]
    assert events[0] == "agent_started" and events[-1] == "agent_stopped"
    conn = sqlite3.connect(db)
    rows = dict(conn.execute("SELECT device_id, reachable FROM latest_reading").fetchall())
    assert rows == {"ap-warkop": 1, "ap-router-v3": 1, "ap-wrong-community": 0}
    (reading,) = conn.execute(
        "SELECT reading FROM latest_reading WHERE device_id = 'ap-warkop'"
    ).fetchone()
    clients = json.loads(reading)["tables"]["wireless_aps"]
    assert sorted(row["client_count"] for row in clients.values()) == [0, 0, 4, 7]
