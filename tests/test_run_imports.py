"""`siaran-edge run` imports what its config uses: the web stack only with a [web] table,
influxdb-client only with [influxdb] (each costs 15-30 MB of RSS on a Raspberry Pi)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.web_helpers import _HASH

# Run as `siaran-edge run` on a gateway: without pysmi (a test dependency here, which pysnmp
# imports when it finds it, and which imports jinja2); at exit, print the top-level packages
# the process had imported.
CHILD = (
    "import atexit, json, sys; sys.modules.update(dict.fromkeys(('pysmi', 'rich')));"
    " atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}))));"
    " from agent.cli import main; sys.exit(main(sys.argv[1:]))"
)
HEAVY = {"fastapi", "starlette", "uvicorn", "jinja2", "multipart", "influxdb_client", "bench"}

GATEWAY = """
state_dir = "state"
inventory = ["devices.toml"]
[gateway]
id = "gw-test"
site = "Test panel"
location = { lat = -6.29, lon = 106.71 }
[poll]
interval_s = 1
timeout_s = 0.3
retries = 0
[rules.unreachable]
icmp = false
"""

# A port nothing answers on: the device is polled (and found unreachable), nothing else needed.
DEVICES = """
[[device]]
id = "pju-1"
kind = "streetlight"
profile = "pju-generic"
address = "127.0.0.1:{port}"
snmp = {{ community = "public" }}
pole_id = "P-1"
circuit = "PNL-1"
rated_w = 60
location = {{ lat = -6.29, lon = 106.71 }}
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def imported_by_run(folder: Path, extra: str = "") -> set[str]:
    """The top-level packages `siaran-edge run` imported, once it had polled its device."""
    (folder / "gateway.toml").write_text(GATEWAY + extra)
    (folder / "devices.toml").write_text(DEVICES.format(port=free_port(socket.SOCK_DGRAM)))
    cmd = [sys.executable, "-c", CHILD, "--log-format", "json", "run"]
    proc = subprocess.Popen(
        [*cmd, "--config", str(folder / "gateway.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        for line in proc.stderr:  # the device's unreachable line: every part has started
            if "snmp device unreachable" in line:
                break
            assert time.monotonic() < deadline, "no poll within 30 s"
        else:
            raise AssertionError(f"the agent ended (exit {proc.wait()}) before polling")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0
    return set(json.loads(out.strip().splitlines()[-1]))


def test_run_without_web_or_influxdb_imports_neither(tmp_path: Path) -> None:
    imported = imported_by_run(tmp_path)
    assert "pysnmp" in imported  # it did run
    assert imported & HEAVY == set()


def test_run_with_a_status_page_imports_the_web_stack(tmp_path: Path) -> None:
    web = f'[web]\nport = {free_port()}\nusers = [{{ name = "budi", password_hash = "{_HASH}" }}]\n'
    imported = imported_by_run(tmp_path, web)
    assert {"fastapi", "starlette", "uvicorn", "jinja2"} <= imported
    assert "influxdb_client" not in imported
