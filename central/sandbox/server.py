"""Running the sandbox: uvicorn inside the current asyncio loop (the CLI and the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvicorn

from agent.clock import Clock
from central.geo import Boundary
from central.sandbox.app import Sandbox
from central.sandbox.store import SandboxStore

DB_FILE = "siaran-sandbox.db"


class SandboxServer:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        token: str,
        host: str = "127.0.0.1",
        boundary: Boundary | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.sandbox = Sandbox(
            SandboxStore(data_dir / DB_FILE), token, boundary or Boundary.default(), clock
        )
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            self.sandbox.app(),
            host=self.host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self._server = server = uvicorn.Server(config)
        self._task = asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                await self._task  # its error
                raise RuntimeError(f"the sandbox did not start on {self.host}:{self.port}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None

    async def wait(self) -> None:
        if self._task is not None:
            await self._task
