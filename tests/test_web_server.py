"""The status page served by uvicorn in the caller's loop: HTTPS, a port that is taken, stop."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from agent.clock import FakeClock
from agent.web.server import serve
from firmware_config.web_config import WebConfig
from tests.servers import free_port
from tests.tls_certs import make_ca
from tests.web_helpers import PASSWORD, START, FakeActions, populated_view, web_config


@asynccontextmanager
async def running(config: WebConfig) -> AsyncIterator[asyncio.Task[None]]:
    clock = FakeClock(START)
    view = populated_view(clock)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(view, FakeActions(view), config, stop, clock=clock))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _until_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nothing listens on {port}")


async def test_https_with_a_provided_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    server = ca.issue(tmp_path, "gw-test.local", server=True)
    port = free_port()
    tls = {"cert_file": server.cert, "key_file": server.key}
    async with running(web_config(port=port, tls=tls)):
        await _until_listening(port)
        trust = ssl.create_default_context(cafile=str(ca.cert))
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=trust) as c:
            r = await c.post("/login", data={"user": "budi", "password": PASSWORD})
            assert r.status_code == 303
            assert "secure" in r.headers["set-cookie"].lower()
            assert (await c.get("/api/v1/overview")).json()["gateway_id"] == "gw-test"
        async with httpx.AsyncClient() as plain:
            try:
                await plain.get(f"http://127.0.0.1:{port}/login")
            except httpx.HTTPError:
                pass  # the HTTPS port speaks no plain HTTP
            else:
                raise AssertionError("plain HTTP was answered on the HTTPS port")


async def test_a_taken_port_is_retried_not_fatal_and_stop_ends_the_server() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with running(web_config(port=port)) as task:
            await asyncio.sleep(0.3)
            assert not task.done()  # waiting to bind again, the agent goes on
    port = free_port()
    async with running(web_config(port=port)) as task:
        await _until_listening(port)
    assert task.done() and task.exception() is None
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        pass
    else:
        raise AssertionError("still listening after stop")
