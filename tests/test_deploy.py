"""Deployment: the systemd unit passes `systemd-analyze verify`, and the agent runs as an
unprivileged user with a read-only config directory and a writable state directory.

As root (CI), the agent is run as nobody:nogroup through setpriv (no capabilities, no new
privileges) and, where the kernel has PR_SET_MDWE, without writable+executable memory, like
the unit's MemoryDenyWriteExecute=yes. Python and the project may live under a folder nobody
cannot enter (here /root, mode 0700; on a Pi they are in /opt/siaran-edge/venv): such a folder
is made enterable (0711) in a private mount namespace only, its entries bind-mounted back with
their own modes; nothing on the real file system changes. As another user, the tests run the
agent as that user directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent
from tests.snmp_servers import Snmpsim

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "siaran-edge.service"
EXEC_PATH = "/opt/siaran-edge/venv/bin/siaran-edge"
NOBODY, NOGROUP = 65534, 65534
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1

GATEWAY = """
state_dir = "{state}"
inventory = ["devices.toml"]
[gateway]
id = "gw-deploy-test"
site = "Panel uji"
location = {{ lat = -6.29, lon = 106.71 }}
[poll]
interval_s = 1
timeout_s = 0.5
retries = 0
[snmp_credentials.ap]
community = "routeros"
"""

DEVICES = """
[[device]]
id = "ap-warkop"
kind = "hotspot"
profile = "mikrotik-routeros"
address = "{sim}"
credentials = "ap"
location = {{ lat = -6.29, lon = 106.71 }}
"""


def write_gateway(folder: Path, sim: Snmpsim, state: Path) -> Path:
    """A gateway config with one device on snmpsim; returns the gateway.toml path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "devices.toml").write_text(DEVICES.format(sim=sim.address))
    path = folder / "gateway.toml"
    path.write_text(GATEWAY.format(state=state))
    return path


# -- the unit file ------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    """Every key=value of the unit (keys may repeat), across sections."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_the_required_settings() -> None:
    s = {k: v[-1] for k, v in unit_settings().items()}
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["ExecStart"].split()[0] == EXEC_PATH
    assert s["ExecStart"].endswith("run --config /etc/siaran-edge/gateway.toml")
    assert s["User"] == s["Group"] == "siaran-edge"
    assert s["Restart"] == "on-failure" and float(s["RestartSec"]) > 0
    assert s["RestartPreventExitStatus"] == "2"  # config errors: cli.EXIT_CONFIG
    assert int(s["WatchdogSec"]) >= 30
    assert s["StateDirectory"] == s["ConfigurationDirectory"] == "siaran-edge"
    assert s["EnvironmentFile"] == "-/etc/siaran-edge/secrets.env"
    assert s["Environment"] == "PYTHONFAULTHANDLER=1"  # stacks in the journal on SIGABRT
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert s[key] == "yes", key
    assert s["ProtectSystem"] == "strict"
    assert s["CapabilityBoundingSet"] == "" and s["AmbientCapabilities"] == ""
    assert s["MemoryMax"].endswith("M")
    # clock_synced needs read-only adjtimex: ProtectClock=yes would refuse it
    assert "ProtectClock" not in s
    filters = unit_settings()["SystemCallFilter"]
    assert filters[0] == "@system-service" and "adjtimex" in filters[-1].split()
    assert not any("LogsDirectory" in k for k in s)  # the journal, no log files


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing (Debian package: systemd)")
    # verify checks that ExecStart's program exists: a stand-in at a temporary path
    stub = tmp_path / "siaran-edge"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "siaran-edge.service"
    unit.write_text(UNIT.read_text().replace(EXEC_PATH, str(stub)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # no warning either


def test_unit_exposure_is_low(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing (Debian package: systemd)")
    unit = tmp_path / "siaran-edge.service"
    shutil.copy(UNIT, unit)
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {done.stderr[:200]}")
    assert float(found.group(1)) <= 2.5, done.stdout


def test_install_script_and_examples() -> None:
    script = DEPLOY / "install.sh"
    assert os.access(script, os.X_OK)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
    # the secret the sample config names is the one the env example offers
    env_name = re.search(r'env = "(\w+)"', (ROOT / "docs/examples/gateway.toml").read_text())
    assert env_name is not None
    assert f"#{env_name.group(1)}=" in (DEPLOY / "siaran-edge.env.example").read_text()
    sysctl = (DEPLOY / "99-siaran-edge-ping.conf").read_text()
    assert re.search(r"^net\.ipv4\.ping_group_range = \d+ \d+$", sysctl, re.M)


# -- the agent as an unprivileged user ------------------------------------------------------

HELPER = r"""
# Runs as root inside a private mount namespace, then becomes nobody:nogroup.
import ctypes, json, os, subprocess, sys, tempfile
spec, argv = json.loads(sys.argv[1]), sys.argv[2:]

def mount(*args):
    subprocess.run(["mount", *args], check=True)

for blocked in spec["expose"]:  # outermost first
    stage = tempfile.mkdtemp(dir=spec["stage"])
    mount("--rbind", blocked, stage)
    mount("-t", "tmpfs", "-o", "mode=0711", "tmpfs", blocked)
    for name in os.listdir(stage):
        src, dst = os.path.join(stage, name), os.path.join(blocked, name)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
            continue
        if os.path.isdir(src):
            os.mkdir(dst)
        else:
            open(dst, "w").close()
        mount("--rbind", src, dst)
if spec["mdwe"] and ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit("PR_SET_MDWE failed")
os.execvp("setpriv", ["setpriv", "--reuid=%d" % spec["uid"], "--regid=%d" % spec["gid"],
                      "--clear-groups", "--inh-caps=-all", "--no-new-privs", "--", *argv])
"""


def _blocked_for_others(paths: list[Path]) -> list[str]:
    """Folders on the way to `paths` that a user who is neither owner nor group cannot enter."""
    blocked: set[Path] = set()
    for path in paths:
        for folder in [path, *path.parents]:
            if folder.is_dir() and not folder.stat().st_mode & stat.S_IXOTH:
                blocked.add(folder)
    return [str(p) for p in sorted(blocked, key=lambda p: len(p.parts))]


def _mdwe_supported() -> bool:
    """The kernel's PR_SET_MDWE (Linux 6.3): what MemoryDenyWriteExecute= does with seccomp."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0)


class Site:
    """A deployment in miniature: etc/ (read-only) and state/ (the agent's), under one folder
    everybody may enter, and the way to run a command as the unprivileged user."""

    def __init__(self, base: Path, sim: Snmpsim) -> None:
        self.base, self.etc, self.state = base, base / "etc", base / "state"
        self.as_root = os.geteuid() == 0
        self.state.mkdir(mode=0o750)
        if self.as_root:
            os.chown(self.state, NOBODY, NOGROUP)
        self.config = write_gateway(self.etc, sim, self.state)
        for file in self.etc.iterdir():
            file.chmod(0o444)
        self.etc.chmod(0o555)
        self.mdwe = self.as_root and _mdwe_supported()

    def command(self, *args: str) -> list[str]:
        agent_cmd = [sys.executable, "-m", "agent.cli", "--log-format", "json", *args]
        if not self.as_root:
            return agent_cmd
        needed = [Path(sys.executable).resolve(), Path(sys.prefix).resolve(), ROOT]
        needed.append(Path(agent.__file__).resolve().parent)
        spec = {
            "expose": _blocked_for_others(needed),
            "stage": str(self.base / "stage"),
            "mdwe": self.mdwe,
            "uid": NOBODY,
            "gid": NOGROUP,
        }
        (self.base / "stage").mkdir(exist_ok=True)
        helper = [sys.executable, "-c", HELPER, json.dumps(spec)]
        return ["unshare", "--mount", "--propagation", "private", *helper, *agent_cmd]

    @property
    def env(self) -> dict[str, str]:
        # like the service: HOME is the user's home (the state dir), no stray bytecode
        return dict(os.environ, HOME=str(self.state), PYTHONDONTWRITEBYTECODE="1")

    def snapshot(self) -> dict[str, tuple[int, int, float]]:
        return {
            p.name: (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime)
            for p in [self.etc, *self.etc.iterdir()]
        }


@pytest.fixture
def site(snmpsim_agent: Snmpsim) -> Iterator[Site]:
    if os.geteuid() == 0:
        for tool in ("unshare", "setpriv", "mount"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is missing: cannot become an unprivileged user here")
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            pytest.skip(
                "Python lives where nobody cannot enter and this container cannot make a "
                f"private mount namespace to expose it: {probe.stderr.strip()}"
            )
    # pytest's own tmp folders are 0700: nobody needs a way in
    base = Path(tempfile.mkdtemp(prefix="siaran-deploy-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield Site(base, snmpsim_agent)
    finally:
        (base / "etc").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_check_config_and_run_once_unprivileged_with_read_only_config(site: Site) -> None:
    before = site.snapshot()
    check = subprocess.run(
        site.command("check-config", str(site.config)),
        capture_output=True,
        text=True,
        timeout=60,
        env=site.env,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "valid" in check.stdout
    once = subprocess.run(
        site.command("run", "--config", str(site.config), "--once"),
        capture_output=True,
        text=True,
        timeout=60,
        env=site.env,
        check=False,
    )
    assert once.returncode == 0, once.stdout + once.stderr
    row = next(line for line in once.stdout.splitlines() if line.startswith("ap-warkop"))
    assert row.split()[3] == "ok"
    assert site.snapshot() == before
    assert list(site.state.iterdir()) == []  # --once keeps no state


def stored_devices(db: Path) -> set[str]:
    """The devices with a row in a running agent's state store (read-only; none yet: empty)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return {d for (d,) in conn.execute("SELECT device_id FROM latest_reading")}
    except sqlite3.Error:  # not made yet, or the table not yet
        return set()


def test_run_unprivileged_until_sigterm_writes_state_only(site: Site) -> None:
    before = site.snapshot()
    proc = subprocess.Popen(
        site.command("run", "--config", str(site.config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=site.env,
    )
    try:
        db = site.state / "state.db"
        # evidence of a poll: its reading in the state store (the first periodic flush, some
        # 10 s after the start), whatever the machine's load
        deadline = time.monotonic() + 30
        while not stored_devices(db) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        status = Path(f"/proc/{proc.pid}/status").read_text() if proc.poll() is None else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events[0] == "agent_started" and events[-1] == "agent_stopped"
    if site.as_root:  # it really ran as nobody, without any capability
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split() == [str(NOBODY)] * 4
        assert fields["Gid"].split() == [str(NOGROUP)] * 4
        assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        assert db.stat().st_uid == NOBODY
    rows = sqlite3.connect(db).execute("SELECT device_id, reachable FROM latest_reading")
    assert dict(rows.fetchall()) == {"ap-warkop": 1}
    assert site.snapshot() == before  # nothing written into the config folder
