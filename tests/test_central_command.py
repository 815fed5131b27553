"""`siaran-edge central --config FILE` as an operator runs it: a process, a TOML file, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.central_helpers import TOKEN, Api, Gateway, fault_event, sandbox
from tests.servers import Mosquitto
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent


async def test_the_central_command(broker: Mosquitto, tmp_path: Path) -> None:
    async with sandbox(tmp_path / "box") as box:
        config = tmp_path / "central.toml"
        config.write_text(
            f'state_dir = "state"\n'
            f'[broker]\nport = {broker.port}\nclient_id = "central-cli"\n'
            f'[siaran]\nbase_url = "{box.url}"\ntoken = {{ env = "TEST_SIARAN_TOKEN" }}\n'
            "poll_interval_s = 0.2\n"
        )
        env = {**os.environ, "TEST_SIARAN_TOKEN": TOKEN}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "--log-format", "json", "central",
            "--config", str(config),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        gw = Gateway(broker.port)
        try:
            # the consumer subscribes once connected; publish until it has one
            api = Api(box.url)
            for seq in range(1, 200):
                await gw.fault(fault_event(seq, f"pju-{seq:03d}"))
                if await api.count():
                    break
                await asyncio.sleep(0.1)
            await until(api.count, what="a report filed by the command")
        finally:
            gw.close()
            proc.send_signal(signal.SIGTERM)
            _, raw = await asyncio.wait_for(proc.communicate(), 15)
            err, code = raw.decode(), proc.returncode
        assert code == 0, err
        assert '"event": "central_stats"' in err and TOKEN not in err
        assert (tmp_path / "state" / "central.db").exists()  # relative to the config file
    missing = subprocess.run(
        [sys.executable, "-m", "agent.cli", "central", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "TEST_SIARAN_TOKEN"},
    )  # fmt: skip
    assert missing.returncode == 2 and "TEST_SIARAN_TOKEN is not set" in missing.stderr
