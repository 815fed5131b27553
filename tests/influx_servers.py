"""A real server speaking the InfluxDB v2 write API for the tests: Debian's VictoriaMetrics.

It takes influxdb-client writes on /api/v2/write (bucket, org and token are ignored); a field
`f` of measurement `m` becomes the series `m_f`, tags become labels, timestamps are kept in ms.
Read back with /api/v1/export after /internal/force_flush.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import free_port, stop

Series = dict[str, Any]  # {"metric": {labels}, "values": [...], "timestamps": [...]}


@dataclass
class VictoriaMetrics:
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.workdir / "vm.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        exe = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "vm.log", "ab") as out:
            self.proc = subprocess.Popen(
                [
                    exe,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.workdir / 'data'}",
                    "-retentionPeriod=100y",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited:\n{self.log[-2000:]}")
            try:
                if self._get("/health") == b"OK":
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"victoria-metrics did not answer /health:\n{self.log[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def _get(self, path: str, params: list[tuple[str, str]] | None = None) -> bytes:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=5) as resp:
            return bytes(resp.read())

    def export(self, match: str = '{__name__=~".+"}') -> list[Series]:
        """Every series matching, with its samples (after making pending data searchable)."""
        self._get("/internal/force_flush")
        raw = self._get("/api/v1/export", [("match[]", match)])
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def wait_for(
        self, n_samples: int, match: str = '{__name__=~".+"}', timeout: float = 15.0
    ) -> list[Series]:
        """Export until at least n_samples samples are searchable (bounded in time)."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.export(match)
            if count(series) >= n_samples or time.monotonic() > deadline:
                return series
            time.sleep(0.2)


def count(series: list[Series]) -> int:
    return sum(len(s["values"]) for s in series)


@contextmanager
def victoria_metrics(workdir: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(workdir)
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()
