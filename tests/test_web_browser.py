"""The status page in a real headless Chromium (Debian's, driven by Playwright), on the real agent.

Simulated lamps (agent.demo's SnmpSimulator) on loopback, the real Agent with its fault engine
and uplink, a real mosquitto as the central broker. A technician logs in on a phone-sized
screen, sees the lamp failure the agent raised, acknowledges it, puts the circuit in maintenance,
runs a lamp test (an SNMP SET to the simulated controller, then a read-back), and central
hears of all three on the `action` topic. Every request the pages make stays on the
gateway. On failure a screenshot is saved and its path is in the message; with SIARAN_WEB_SHOTS
set to a folder, screenshots of every page are saved there as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from agent.demo.lamp import LampController
from agent.demo.snmp_sim import RECORDINGS, SnmpSimulator
from agent.runtime import Agent
from firmware_config.loader import load_config
from tests.servers import Mosquitto, free_port
from tests.web_helpers import PASSWORD, web_config

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
    pytest.mark.timeout(90),
]
playwright_api = pytest.importorskip("playwright.async_api")

LAMPS = ("pju-web-001", "pju-web-002", "pju-web-003")
CIRCUIT = "PNL-SLW-A"
AP = "ap-web"
PHONE = {"width": 390, "height": 844}

GATEWAY = """\
state_dir = "state"
inventory = ["devices.toml"]

[gateway]
id = "gw-web"
site = "Panel PJU Jl. Siliwangi"
location = {{ lat = -6.3431, lon = 106.7372, kelurahan = "Pamulang Barat" }}

[broker]
port = {broker_port}
keepalive_s = 10

[poll]
interval_s = 1
timeout_s = 0.5
retries = 0
jitter = 0

[rules.lamp_failure]
raise_after = 1

[rules.circuit_outage]
window_s = 1

[rules.photocell_fault]
enabled = false

[rules.day_burning]
enabled = false

[web]
listen = "127.0.0.1"
port = {web_port}

[[web.users]]
name = "budi"
display_name = "Budi Santoso"
password_hash = "{password_hash}"
"""

LAMP = """
[[device]]
id = "{id}"
kind = "streetlight"
profile = "pju-generic"
address = "127.0.0.1:{port}"
snmp = {{ version = "2c", community = "{id}" }}
pole_id = "SLW-{n:03d}"
circuit = "{circuit}"
rated_w = 60
location = {{ lat = -6.3431, lon = 106.7372, address = "Jl. Siliwangi {n}" }}
"""

HOTSPOT = """
[[device]]
id = "{id}"
kind = "hotspot"
profile = "mikrotik-routeros"
address = "127.0.0.1:{port}"
snmp = {{ version = "2c", community = "{id}" }}
uplink_if = "WAN"
location = {{ lat = -6.2886, lon = 106.7158, address = "Taman Kota 1" }}
"""


@dataclass
class Central:
    """What a central consumer would hear on the gateway's branch."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, channel: str) -> list[dict[str, Any]]:
        return [m for t, m in self.messages if t.split("/")[-1] == channel]

    async def until(self, what: str, cond: Callable[[], bool], limit_s: float = 15.0) -> None:
        deadline = time.monotonic() + limit_s
        while not cond():
            if time.monotonic() > deadline:
                heard = [t for t, _ in self.messages]
                raise AssertionError(f"central never heard {what}; heard: {heard[-20:]}")
            await asyncio.sleep(0.1)


@dataclass
class Gateway:
    origin: str
    sim: SnmpSimulator
    central: Central


@pytest.fixture
async def gateway(broker: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    web_port = free_port()
    password_hash = web_config().users[0].password_hash
    async with (
        SnmpSimulator() as sim,
        aiomqtt.Client("127.0.0.1", broker.port, identifier="central-web-test") as client,
    ):
        central = Central()
        await client.subscribe("siaran/v1/gw-web/#", qos=1)

        async def listen() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                central.messages.append((message.topic.value, json.loads(message.payload)))

        listener = asyncio.create_task(listen())
        for lamp_id in LAMPS:
            sim.add_lamp(lamp_id, LampController(rated_w=60, sys_name=lamp_id))
        sim.add_recording(AP, RECORDINGS / "routeros.snmprec")
        devices = "".join(
            LAMP.format(id=lamp_id, port=sim.port, n=n, circuit=CIRCUIT)
            for n, lamp_id in enumerate(LAMPS, start=1)
        )
        (tmp_path / "devices.toml").write_text(devices + HOTSPOT.format(id=AP, port=sim.port))
        path = tmp_path / "gateway.toml"
        path.write_text(
            GATEWAY.format(broker_port=broker.port, web_port=web_port, password_hash=password_hash)
        )
        agent = Agent(load_config(path))
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        try:
            await _wait_listening(web_port, running)
            yield Gateway(f"http://127.0.0.1:{web_port}", sim, central)
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def _wait_listening(port: int, running: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if running.done():
            running.result()  # the agent failed: show why
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the status page never listened on {port}")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_technician_acknowledges_a_fault_and_sets_maintenance(
    gateway: Gateway, browser: Any, tmp_path: Path
) -> None:
    central = gateway.central
    await central.until("the gateway's online status", lambda: bool(central.of("status")))
    gateway.sim.lamp("pju-web-002").fail_lamp()  # the photocell says night: it should burn
    await central.until(
        "the lamp failure",
        lambda: any(
            f["device_id"] == "pju-web-002" and f["fault_type"] == "lamp_failure"
            for f in central.of("fault")
        ),
    )

    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    elsewhere: list[str] = []
    requested: list[str] = []

    async def only_the_gateway(route: Any) -> None:
        url = route.request.url
        if url.startswith(gateway.origin + "/") or url.startswith("data:"):
            await route.continue_()
        else:
            elsewhere.append(url)
            await route.abort()

    await context.route("**/*", only_the_gateway)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    page.on("request", lambda request: requested.append(request.url))
    shots_dir = os.environ.get("SIARAN_WEB_SHOTS")
    shots = Path(shots_dir) if shots_dir else None
    try:
        await _technician_session(page, gateway, central, shots)
    except BaseException as exc:
        shot = tmp_path / "failure.png"
        with contextlib.suppress(Exception):
            await page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{exc!r}\nscreenshot of the page: {shot} (at {page.url})") from exc
    finally:
        await context.close()
    assert not elsewhere, f"pages asked for things off the gateway: {elsewhere}"
    assert requested and all(u.startswith(gateway.origin + "/") for u in requested), requested
    assert any(u.endswith("/static/style.css") for u in requested)


async def _technician_session(
    page: Any, gateway: Gateway, central: Central, shots: Path | None
) -> None:
    expect = playwright_api.expect

    async def shot(name: str) -> None:
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shots / f"{name}.png"))
            await page.screenshot(path=str(shots / f"{name}-full.png"), full_page=True)

    await page.goto(gateway.origin + "/")
    await expect(page).to_have_url(f"{gateway.origin}/login?next=/")
    await shot("login")
    await page.get_by_label("Nama pengguna").fill("budi")
    await page.get_by_label("Kata sandi").fill(PASSWORD)
    await page.get_by_role("button", name="Masuk").click()
    await expect(page).to_have_url(gateway.origin + "/")
    await expect(page.locator(".tile.faults .n")).not_to_have_text("0")
    await expect(page.get_by_text("Terhubung", exact=True)).to_be_visible()
    await shot("overview")

    await page.get_by_role("link", name="Perangkat").first.click()
    await expect(page.locator(".device-card")).to_have_count(len(LAMPS) + 1)
    await shot("devices")
    await page.get_by_label("Keadaan").select_option("fault")
    await page.get_by_role("button", name="Saring").click()
    await expect(page.locator('[data-device="pju-web-002"]')).to_be_visible()
    await page.locator('[data-device="pju-web-002"]').click()
    await expect(page.locator("h1")).to_contain_text("pju-web-002")
    await expect(page.locator("svg.spark").first).to_be_visible()
    await shot("device")

    await page.goto(gateway.origin + "/devices/pju-web-001")  # a healthy lamp: lamp test
    await page.get_by_label("Nyalakan selama").select_option("1")
    await page.get_by_role("button", name="Uji sekarang").click()
    await expect(page.locator(".flash")).to_contain_text("Uji lampu berhasil", timeout=20_000)

    await page.get_by_role("link", name="Gangguan").first.click()
    card = page.locator('[data-fault="pju-web-002/lamp_failure"]')
    await expect(card).to_contain_text("Lampu mati")
    await shot("faults")
    await card.get_by_label("Catatan").fill("teknisi di lokasi")
    await card.get_by_role("button", name="Akui").click()
    await expect(page.locator(".flash.ok")).to_contain_text("diakui")
    await expect(card).to_contain_text("Diakui oleh budi")

    await page.get_by_role("link", name="Ringkasan").first.click()
    form = page.locator("#circuit-maintenance")
    await form.get_by_label("Sirkuit").select_option(CIRCUIT)
    await form.get_by_label("Selama").select_option("60")
    await form.get_by_label("Catatan").fill("ganti MCB panel")
    await form.get_by_role("button", name="Mulai perawatan").click()
    await expect(page.locator(".flash.ok")).to_contain_text("dalam perawatan sampai")
    await expect(page.locator("li.maint")).to_contain_text(CIRCUIT)
    await shot("maintenance")

    def acted(kind: str, **fields: str) -> bool:
        return any(
            a["kind"] == kind and all(a.get(k) == v for k, v in fields.items())
            for a in central.of("action")
        )

    await central.until(
        "the acknowledgement",
        lambda: acted(
            "acknowledge",
            device_id="pju-web-002",
            fault_type="lamp_failure",
            by="budi",
            note="teknisi di lokasi",
        ),
    )
    await central.until("the maintenance", lambda: acted("maintenance", circuit=CIRCUIT, by="budi"))
    await central.until("the lamp test", lambda: acted("lamp_test", device_id="pju-web-001"))
