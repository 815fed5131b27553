"""The README's first command: `siaran-edge demo` shows readings of simulated devices."""

from __future__ import annotations

import subprocess
import sys


def test_demo_shows_a_lamp_failing_and_a_recorded_access_point() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--log-format",
            "json",
            "demo",
            "--rounds",
            "2",
            "--interval",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, _, second = done.stdout.partition("== round 2")
    assert "== round 1: latest reading of 4 devices" in first
    assert "ap-warkop            hotspot     mikrotik-routeros  ok" in first
    assert "table interfaces: 12 rows" in first and "table wireless_aps: 4 rows" in first
    assert "lamp_failure=no" in first and "lamp_failure=yes" not in first
    lamp_2 = second.split("pju-demo-002", 1)[1].split("pju-demo-003", 1)[0]
    assert "lamp_failure=yes" in lamp_2 and "active_power=0.4 W" in lamp_2
    assert '"event": "agent_stopped"' in done.stderr
