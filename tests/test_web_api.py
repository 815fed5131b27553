"""The status page's app on fakes: login, sessions, CSRF, rate limit, pages, JSON API, metrics."""

from __future__ import annotations

import io
import re
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import ValidationError

import agent.web
from agent.clock import FakeClock
from agent.web import api, pages
from agent.web.app import create_app
from agent.web.context import safe_next
from agent.web.passwords import hash_password_command, verify_password
from firmware_config.web_config import WebConfig
from tests.web_helpers import (
    PASSWORD,
    START,
    FakeActions,
    FakeView,
    populated_view,
    web_config,
)

PUBLIC = ("/login", "/lang/{code}")


@dataclass
class Web:
    clock: FakeClock
    view: FakeView
    actions: FakeActions
    config: WebConfig
    client: httpx.AsyncClient

    def other_client(self, address: str = "10.0.0.9") -> httpx.AsyncClient:
        app = self.client._transport.app  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app, client=(address, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://gw.local")

    async def login(self, user: str = "budi", password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(
            "/login", data={"user": user, "password": password, "next": "/"}
        )

    async def csrf(self) -> str:
        page = await self.client.get("/faults")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text
        return found.group(1)


async def _web(config: WebConfig | None = None) -> Web:
    clock = FakeClock(START)
    view = populated_view(clock)
    actions = FakeActions(view)
    config = config or web_config()
    app = create_app(view, actions, config, clock)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 50000))
    client = httpx.AsyncClient(transport=transport, base_url="http://gw.local")
    return Web(clock, view, actions, config, client)


@pytest.fixture
async def web() -> AsyncIterator[Web]:
    w = await _web()
    async with w.client:
        yield w


# -- login -----------------------------------------------------------------------------------


async def test_every_page_and_api_route_needs_a_login(web: Web) -> None:
    app = web.client._transport.app  # type: ignore[attr-defined]
    every = [*pages.router.routes, *api.router.routes, *app.routes]
    routes = [r for r in every if isinstance(r, APIRoute) and r.path not in PUBLIC]
    assert len(routes) >= 15
    for route in routes:
        path = route.path.replace("{device_id}", "pju-001")
        for method in route.methods or ():
            r = await web.client.request(method, path, json={}, data=None)
            if path.startswith(("/api/", "/metrics")):
                expected = 422 if path == "/api/v1/session" and method == "POST" else 401
                assert r.status_code == expected, (method, path, r.status_code)
            else:
                assert r.status_code == 303, (method, path)
                assert r.headers["location"].startswith("/login?next=")
    assert web.actions.calls == []
    static = await web.client.get("/static/style.css")
    assert static.status_code == 200  # assets of the login page need none


async def test_login_then_pages_then_logout(web: Web) -> None:
    first = await web.client.get("/devices?kind=streetlight")
    assert first.headers["location"] == "/login?next=/devices%3Fkind%3Dstreetlight"
    r = await web.login()
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    for path in ("/", "/devices", "/devices/pju-002", "/devices/ap-taman", "/faults"):
        page = await web.client.get(path)
        assert page.status_code == 200, path
        assert "Budi Santoso" in page.text
    out = await web.client.post("/logout", data={"csrf": await web.csrf()})
    assert out.status_code == 303
    again = await web.client.get("/")
    assert again.status_code == 303


async def test_wrong_password_or_unknown_user_is_refused(web: Web) -> None:
    for user, password in (("budi", "salah"), ("tidakada", PASSWORD)):
        r = await web.login(user, password)
        assert r.status_code == 401
        assert "Nama pengguna atau kata sandi salah" in r.text
        assert "set-cookie" not in r.headers
    async with web.other_client() as other:  # the first address has 2 of its 3 failures
        api = await other.post("/api/v1/session", json={"user": "sari", "password": "x"})
        assert api.status_code == 401


async def test_failed_logins_are_rate_limited_per_address_and_per_user(web: Web) -> None:
    for _ in range(2):  # max_failures = 3: the third failure locks, and says so
        assert (await web.login("budi", "salah")).status_code == 401
    assert (await web.login("budi", "salah")).status_code == 429
    locked = await web.login("budi", PASSWORD)  # even the right password, for now
    assert locked.status_code == 429
    assert "Terlalu banyak percobaan" in locked.text
    async with web.other_client() as other:  # another phone: the user name is locked too
        r = await other.post("/login", data={"user": "budi", "password": PASSWORD})
        assert r.status_code == 429
        # ... but another user from another address may log in
        r = await other.post("/login", data={"user": "sari", "password": PASSWORD})
        assert r.status_code == 303
    await web.clock.advance(121)  # lockout_s = 120
    assert (await web.login("budi", PASSWORD)).status_code == 303


async def test_failures_spread_over_the_window_do_not_lock(web: Web) -> None:
    for _ in range(4):
        assert (await web.login("budi", "salah")).status_code == 401
        await web.clock.advance(35)  # window_s = 60: never three within it
    assert (await web.login("budi", PASSWORD)).status_code == 303


async def test_sessions_expire(web: Web) -> None:
    await web.login()
    assert (await web.client.get("/")).status_code == 200
    await web.clock.advance(web.config.session_ttl_s - 10)
    assert (await web.client.get("/")).status_code == 200
    await web.clock.advance(20)
    r = await web.client.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert (await web.client.get("/api/v1/overview")).status_code == 401


# -- CSRF ------------------------------------------------------------------------------------


async def test_forms_without_the_right_csrf_token_are_refused(web: Web) -> None:
    await web.login()
    ack = {"device_id": "pju-002", "fault_type": "lamp_failure", "note": "x"}
    for token in (None, "", "salah"):
        data = ack if token is None else {**ack, "csrf": token}
        r = await web.client.post("/faults/ack", data=data)
        assert r.status_code == 403
        assert "Formulir kedaluwarsa" in r.text
    maint = {"target_kind": "circuit", "target": "PNL-A", "minutes": "60", "csrf": "salah"}
    assert (await web.client.post("/maintenance", data=maint)).status_code == 403
    lamp = await web.client.post("/devices/pju-001/lamp-test", data={"minutes": "1"})
    assert lamp.status_code == 403
    assert web.actions.calls == []


async def test_api_actions_need_the_csrf_header(web: Web) -> None:
    login = await web.client.post("/api/v1/session", json={"user": "budi", "password": PASSWORD})
    assert login.status_code == 200
    token = login.json()["csrf_token"]
    body = {"device_id": "pju-002", "fault_type": "lamp_failure", "note": "di lokasi"}
    assert (await web.client.post("/api/v1/faults/ack", json=body)).status_code == 403
    wrong = {"X-CSRF-Token": "salah"}
    r = await web.client.post("/api/v1/faults/ack", json=body, headers=wrong)
    assert r.status_code == 403
    ok = await web.client.post("/api/v1/faults/ack", json=body, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["ok"] is True
    assert web.actions.calls == [("ack", "pju-002", "lamp_failure", "budi", "di lokasi")]


async def test_basic_auth_reads_but_cannot_act(web: Web) -> None:
    auth = ("budi", PASSWORD)
    assert (await web.client.get("/metrics", auth=auth)).status_code == 200
    assert (await web.client.get("/api/v1/devices", auth=auth)).status_code == 200
    assert (await web.client.get("/api/v1/devices", auth=("budi", "x"))).status_code == 401
    body = {"target_kind": "circuit", "target": "PNL-A", "minutes": 30}
    r = await web.client.post("/api/v1/maintenance", json=body, auth=auth)
    assert r.status_code == 401
    assert web.actions.calls == []


# -- actions through the forms ---------------------------------------------------------------


async def test_acknowledge_maintenance_and_lamp_test_forms(web: Web) -> None:
    await web.login()
    csrf = await web.csrf()
    ack = {"device_id": "pju-002", "fault_type": "lamp_failure", "note": "", "csrf": csrf}
    r = await web.client.post("/faults/ack", data={**ack, "next": "/faults"})
    assert r.status_code == 303 and r.headers["location"] == "/faults"
    page = await web.client.get("/faults")
    assert "Gangguan Lampu mati pada pju-002 diakui." in page.text
    assert "Diakui oleh budi" in page.text and "teknisi di lokasi" in page.text
    assert _last(web) == ("ack", "pju-002", "lamp_failure", "budi", "teknisi di lokasi")

    maint = {"target_kind": "circuit", "target": "PNL-A", "minutes": "120", "note": "ganti MCB"}
    r = await web.client.post("/maintenance", data={**maint, "csrf": csrf, "next": "/"})
    assert r.status_code == 303
    kind, target, until, by, note = _last(web)[1:]
    assert (kind, target, by, note) == ("circuit", "PNL-A", "budi", "ganti MCB")
    assert until == START + timedelta(minutes=120)
    overview = await web.client.get("/")
    assert "PNL-A dalam perawatan sampai 28/11 22:00:00 WIB." in overview.text
    devices = (await web.client.get("/api/v1/devices?circuit=PNL-A")).json()
    assert {d["state"] for d in devices} == {"maintenance"}

    end = {"target_kind": "circuit", "target": "PNL-A", "csrf": csrf}
    assert (await web.client.post("/maintenance/end", data=end)).status_code == 303
    assert _last(web) == ("end", "circuit", "PNL-A", "budi")

    lamp = await web.client.post("/devices/pju-001/lamp-test", data={"minutes": "2", "csrf": csrf})
    assert lamp.headers["location"] == "/devices/pju-001"
    assert "Uji lampu berhasil: 59,6 W dari 60 W" in (await web.client.get("/devices/pju-001")).text
    assert _last(web) == ("lamp_test", "pju-001", 2, "budi")


async def test_refused_actions_say_why(web: Web) -> None:
    await web.login()
    csrf = await web.csrf()
    ack = {"device_id": "pju-001", "fault_type": "lamp_failure", "csrf": csrf}
    await web.client.post("/faults/ack", data=ack)
    page = await web.client.get("/faults")
    assert "Tidak dapat dilakukan: tidak ada gangguan lamp_failure pada pju-001" in page.text
    bad = {"target_kind": "circuit", "target": "PNL-Z", "minutes": "60", "csrf": csrf}
    await web.client.post("/maintenance", data=bad)
    assert "Tidak dapat dilakukan: PNL-Z" in (await web.client.get("/")).text
    await web.client.post("/devices/ap-taman/lamp-test", data={"minutes": "2", "csrf": csrf})
    assert "tidak mendukung perintah tulis" in (await web.client.get("/devices/ap-taman")).text
    assert web.actions.calls == []


# -- data ------------------------------------------------------------------------------------


async def test_json_api_matches_the_view(web: Web) -> None:
    await web.login()
    o = (await web.client.get("/api/v1/overview")).json()
    assert o["gateway_id"] == "gw-test" and o["devices_total"] == 5
    assert o["devices_by_state"]["fault"] == 1 and o["devices_by_state"]["ok"] == 4
    assert o["faults_active"] == 1
    assert o["uplink"]["connected"] is True and o["uplink"]["faults_pending"] == 2
    assert o["health"]["temperature_c"] == 52.3 and o["health"]["clock_synced"] is True

    devices = {d["id"]: d for d in (await web.client.get("/api/v1/devices")).json()}
    assert devices["pju-002"]["state"] == "fault"
    assert devices["pju-002"]["key"]["active_power_w"] == 0.4
    assert devices["pju-001"]["key"]["lamp_on"] is True
    assert devices["pju-001"]["key"]["supply_voltage_v"] == 221.5
    assert devices["ap-taman"]["key"]["clients"] == 7
    assert devices["ap-taman"]["key"]["uplink_status"] == "up"
    assert devices["pju-002"]["poll_failures"] == 1

    only = (await web.client.get("/api/v1/devices?kind=streetlight&circuit=PNL-B")).json()
    assert [d["id"] for d in only] == ["pju-004"]
    faulty = (await web.client.get("/api/v1/devices?state=fault")).json()
    assert [d["id"] for d in faulty] == ["pju-002"]

    faults = (await web.client.get("/api/v1/faults")).json()
    assert [(f["device_id"], f["fault_type"]) for f in faults["active"]] == [
        ("pju-002", "lamp_failure")
    ]
    assert faults["active"][0]["evidence"]["rated_w"] == 60.0
    assert faults["recent"][0]["state"] == "raised"

    detail = (await web.client.get("/api/v1/devices/pju-002")).json()
    assert len(detail["history"]) == 10 and detail["lamp_test_supported"] is True
    assert detail["values"]["supply_voltage"] == 221.5
    assert detail["events"][0]["fault_type"] == "lamp_failure"
    assert (await web.client.get("/api/v1/devices/nope")).status_code == 404


async def test_pages_show_devices_filters_and_charts(web: Web) -> None:
    await web.login()
    page = (await web.client.get("/devices?circuit=PNL-A")).text
    assert page.count('class="device-card') == 3 and "pju-004" not in page
    device = (await web.client.get("/devices/pju-002")).text
    assert device.count('<svg class="spark"') == 2  # power and poll time have history
    assert "<polyline" in device and "Lampu mati" in device
    assert "Perangkat tidak dikenal" in (await web.client.get("/devices/nope")).text


async def test_openapi_is_published_behind_the_login(web: Web) -> None:
    assert (await web.client.get("/api/openapi.json")).status_code == 401
    await web.login()
    spec = (await web.client.get("/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for path in ("/api/v1/overview", "/api/v1/devices", "/api/v1/faults", "/api/v1/faults/ack"):
        assert path in spec["paths"]
    assert "/faults" not in spec["paths"]  # HTML pages are not API
    assert "DeviceDetailOut" in spec["components"]["schemas"]


async def test_metrics_for_the_fleet(web: Web) -> None:
    await web.login()
    r = await web.client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'siaran_device_poll_duration_seconds{device="ap-taman",kind="hotspot"} 0.05' in text
    assert 'siaran_device_poll_errors_total{device="pju-002",kind="streetlight"} 1.0' in text
    assert 'siaran_outbox_depth{kind="fault"} 2.0' in text
    assert "siaran_outbox_oldest_pending_age_seconds 30.0" in text
    line = 'siaran_faults_active{fault_type="lamp_failure",severity="major",status="raised"} 1.0'
    assert line in text
    assert "siaran_gateway_temperature_celsius 52.3" in text
    assert "python_gc" not in text  # a registry of its own


async def test_language_switch(web: Web) -> None:
    await web.login()
    assert "Ringkasan" in (await web.client.get("/")).text
    r = await web.client.get("/lang/en?next=/devices")
    assert r.status_code == 303 and r.headers["location"] == "/devices"
    page = (await web.client.get("/devices")).text
    assert "Street light" in page and '<html lang="en">' in page
    faults = (await web.client.get("/faults")).text
    assert "Active faults" in faults and "Lamp failure" in faults
    await web.client.get("/lang/id")
    assert "Gangguan aktif" in (await web.client.get("/faults")).text


async def test_english_by_config_and_security_headers() -> None:
    w = await _web(web_config(language="en"))
    async with w.client:
        page = await w.client.get("/login")
        assert "User name" in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"


def test_redirects_stay_on_the_gateway() -> None:
    assert safe_next("/devices?kind=hotspot") == "/devices?kind=hotspot"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil", "", None, "devices"):
        assert safe_next(bad) == "/"


def test_accounts_need_strong_hashes() -> None:
    with pytest.raises(ValidationError, match="not a scrypt hash"):
        web_config(users=[{"name": "budi", "password_hash": "rahasia"}])
    weak = "scrypt$1024$8$1$c2FsdA==$a2V5"
    with pytest.raises(ValidationError, match="too weak"):
        web_config(users=[{"name": "budi", "password_hash": weak}])
    with pytest.raises(ValidationError, match="users"):
        WebConfig.model_validate({"users": []})


def test_hash_password_command() -> None:
    out = io.StringIO()
    assert hash_password_command(io.StringIO("panel-siliwangi\n"), out) == 0
    stored = out.getvalue().strip()
    assert stored.startswith("scrypt$32768$8$1$") and "panel-siliwangi" not in stored
    assert verify_password("panel-siliwangi", stored)
    assert not verify_password("panel-siliwangi ", stored)
    assert hash_password_command(io.StringIO("pendek\n"), io.StringIO()) == 2


def _last(web: Web) -> tuple[Any, ...]:
    """The latest call to the fake actions (a function: mypy would narrow an index)."""
    return web.actions.calls[-1]


def test_pages_and_assets_name_no_other_host() -> None:
    """Everything ships in the package (no CDN, no web font): no URL with a host anywhere."""
    root = Path(agent.web.__file__).parent
    files = [*root.glob("templates/*"), *root.glob("static/*")]
    assert len(files) >= 8
    host = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
    for file in files:
        text = file.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        found = [m.group(0) for m in host.finditer(text)]
        assert not found, f"{file.name} names another host: {found}"
    data = tomllib.loads((root.parents[1] / "pyproject.toml").read_text())
    shipped = data["tool"]["setuptools"]["package-data"]["*"]
    for file in files:
        assert f"*{file.suffix}" in shipped, f"{file.name} would not be in the package"
