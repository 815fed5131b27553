"""Run the status page with uvicorn inside the agent's event loop.

    await serve(view, actions, web_config, stop)      # returns once `stop` is set
    await serve_agent(agent, stop)                    # the same for a running Agent

The agent owns SIGTERM/SIGINT: uvicorn's own signal handling is switched off. The socket is
bound here, so a bind failure (the technician LAN's address not up yet at boot, a port in use)
is logged and retried every RETRY_S instead of ending the agent; a web failure never stops
fault reporting.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
import uvicorn

from agent.actions import ActionError, Actions, LampTestResult, TargetKind
from agent.clock import Clock
from agent.web.app import create_app
from agent.web.view import AgentView, AgentViewAdapter
from firmware_config.web_config import WebConfig

if TYPE_CHECKING:
    from agent.runtime import Agent

log = structlog.get_logger(__name__)

RETRY_S = 30.0
GRACE_S = 3


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the agent's own handlers stay in place


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=64)
    sock.setblocking(False)
    return sock


async def serve(
    view: AgentView,
    actions: Actions,
    config: WebConfig,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
) -> None:
    """Serve until `stop` is set (or the task is cancelled)."""
    app = create_app(view, actions, config, clock)
    tls = config.tls
    while not stop.is_set():
        try:
            sock = _bind(config.listen, config.port)
        except OSError as exc:
            log.error("web_bind_failed", listen=config.listen, port=config.port, error=str(exc),
                      retry_s=RETRY_S)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_S)
            continue
        uv_config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=GRACE_S,
            ssl_certfile=str(tls.cert_file) if tls else None,
            ssl_keyfile=str(tls.key_file) if tls else None,
        )
        try:
            uv_config.load()  # reads the certificate: a bad one is reported here
        except (OSError, ValueError) as exc:
            sock.close()
            log.error("web_tls_failed", error=str(exc))
            return
        log.info("web_listening", listen=config.listen, port=config.port, https=tls is not None)
        await _run(_EmbeddedServer(uv_config), sock, stop)
        return


async def _run(server: uvicorn.Server, sock: socket.socket, stop: asyncio.Event) -> None:
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="web-server")
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopper.cancel()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(serving), GRACE_S + 2)
        if not serving.done():
            serving.cancel()
        sock.close()
    if serving.done() and not serving.cancelled() and serving.exception() is not None:
        log.error("web_server_failed", error=repr(serving.exception()))


class UnavailableActions:
    """Stands in when the agent has no actions (yet): every action says so."""

    async def acknowledge(self, device_id: str, fault_type: str, by: str, note: str) -> None:
        raise ActionError("actions are not available on this gateway")

    async def set_maintenance(
        self, kind: TargetKind, target: str, until: datetime, by: str, note: str = ""
    ) -> None:
        raise ActionError("actions are not available on this gateway")

    async def end_maintenance(self, kind: TargetKind, target: str, by: str) -> None:
        raise ActionError("actions are not available on this gateway")

    def lamp_test_supported(self, device_id: str) -> bool:
        return False

    async def lamp_test(self, device_id: str, minutes: int, by: str) -> LampTestResult:
        raise ActionError("actions are not available on this gateway")


class LateActions:
    """The agent's `actions`, looked up at each call: the runtime may build them after the
    page starts; until then (or without them) every action says it is not available."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._none = UnavailableActions()

    def _now(self) -> Actions:
        found: Actions | None = getattr(self._agent, "actions", None)
        return found if found is not None else self._none

    async def acknowledge(self, device_id: str, fault_type: str, by: str, note: str) -> None:
        await self._now().acknowledge(device_id, fault_type, by, note)

    async def set_maintenance(
        self, kind: TargetKind, target: str, until: datetime, by: str, note: str = ""
    ) -> None:
        await self._now().set_maintenance(kind, target, until, by, note)

    async def end_maintenance(self, kind: TargetKind, target: str, by: str) -> None:
        await self._now().end_maintenance(kind, target, by)

    def lamp_test_supported(self, device_id: str) -> bool:
        return self._now().lamp_test_supported(device_id)

    async def lamp_test(self, device_id: str, minutes: int, by: str) -> LampTestResult:
        return await self._now().lamp_test(device_id, minutes, by)


async def serve_agent(agent: Agent, stop: asyncio.Event) -> None:
    """The status page of a running Agent (started by Agent.run() when [web] is configured)."""
    config = agent.config.gateway.web
    if config is None:
        return
    try:
        view = AgentViewAdapter(agent, config.history_points)
        anchored = config.anchored(agent.config.path.parent)
        await serve(view, LateActions(agent), anchored, stop, clock=agent.clock)
    except Exception:  # the page is a convenience: its bug must not stop fault reporting
        log.exception("web_failed")
