"""The SIARAN sandbox: its API (auth, idempotency, boundary), the agency page, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.siaran_api import openapi
from tests.central_helpers import TOKEN, sandbox
from tests.servers import free_port, stop, wait_tcp

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def new_report(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "penerangan_jalan_umum",
        "title": "Lampu PJU mati: lampu PJU pju-0042",
        "description": "Lampu mati sejak kemarin malam.",
        "position": {"lat": -6.3431, "lon": 106.7372, "kecamatan": "Pamulang"},
        "agency": "Dinas Perhubungan (Dishub)",
        "unit": "UPT PJU Wilayah II",
        "priority": "tinggi",
        "reporter": {"kind": "sensor", "id": "siaran-edge:gw-01"},
        "external_ref": "siaran-edge:gw-01/pju-0042/lamp_failure",
    }
    body.update(over)
    return body


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox(tmp_path) as box, httpx.AsyncClient(base_url=box.url) as client:
        yield client


async def test_token_is_required(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/reports")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    resp = await http.post("/api/v1/reports", json=new_report(), headers=wrong)
    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"


async def test_create_is_idempotent_by_key(http: httpx.AsyncClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    first = await http.post("/api/v1/reports", json=new_report(), headers=headers)
    assert first.status_code == 201
    again = await http.post("/api/v1/reports", json=new_report(), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = await http.post(
        "/api/v1/reports", json=new_report(), headers={**AUTH, "Idempotency-Key": "k-2"}
    )
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    reused = await http.post(
        f"/api/v1/reports/{first.json()['id']}/comments", json={"body": "x"}, headers=headers
    )
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"
    listed = (await http.get("/api/v1/reports", headers=AUTH)).json()["reports"]
    assert len(listed) == 2


async def test_a_position_outside_the_city_is_refused(http: httpx.AsyncClient) -> None:
    monas = new_report(position={"lat": -6.1754, "lon": 106.8272})
    resp = await http.post("/api/v1/reports", json=monas, headers=AUTH)
    assert resp.status_code == 422
    assert resp.json()["error"] == "position_outside_boundary"
    assert "di luar wilayah Kota Tangerang Selatan" in resp.json()["message"]
    missing = {k: v for k, v in new_report().items() if k != "position"}
    resp = await http.post("/api/v1/reports", json=missing, headers=AUTH)
    assert resp.status_code == 422 and "position" in resp.json()["message"]


async def test_comment_status_red_flag(http: httpx.AsyncClient) -> None:
    rid = (await http.post("/api/v1/reports", json=new_report(), headers=AUTH)).json()["id"]
    base = f"/api/v1/reports/{rid}"
    resp = await http.post(f"{base}/comments", json={"body": "Pembaruan"}, headers=AUTH)
    assert resp.status_code == 201
    resp = await http.post(f"{base}/status", json={"status": "in_progress"}, headers=AUTH)
    assert resp.status_code == 422  # the agency's step, not the reporter's
    for _ in range(2):
        resp = await http.post(f"{base}/red-flag", json={"reason": "Telat"}, headers=AUTH)
        assert resp.status_code == 200 and resp.json()["red_flag"] is True
    resp = await http.post(
        f"{base}/status", json={"status": "verified", "note": "pulih"}, headers=AUTH
    )
    report = resp.json()
    assert report["status"] == "verified"
    assert [c["body"] for c in report["comments"]] == ["Pembaruan", "Bendera merah: Telat", "pulih"]
    assert (await http.get("/api/v1/reports/SRN-0", headers=AUTH)).status_code == 404
    resp = await http.post("/api/v1/reports/SRN-0/comments", json={"body": "x"}, headers=AUTH)
    assert resp.status_code == 404


async def test_the_agency_page(http: httpx.AsyncClient) -> None:
    rid = (await http.post("/api/v1/reports", json=new_report(), headers=AUTH)).json()["id"]
    await http.post(f"/api/v1/reports/{rid}/red-flag", json={"reason": "Telat"}, headers=AUTH)
    page = await http.get("/")
    assert page.status_code == 200
    for seen in (rid, "UPT PJU Wilayah II", "Dinas Perhubungan", "Baru", "merah", "Tanggapi"):
        assert seen in page.text
    assert "<script" not in page.text and "http" not in page.text.split("<body>")[0]
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    forged = await http.post(f"/agency/{rid}/done", data={"csrf": "forged"})
    assert forged.status_code == 403
    done = await http.post(
        f"/agency/{rid}/done", data={"csrf": token.group(1), "back": f"/reports/{rid}"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/reports/{rid}"
    report = (await http.get(f"/api/v1/reports/{rid}", headers=AUTH)).json()
    assert report["status"] == "done" and report["responded_at"] is not None
    detail = await http.get(f"/reports/{rid}")
    assert "Selesai (menurut dinas)" in detail.text and "Lampu mati sejak" in detail.text


def test_openapi_in_the_docs_is_current() -> None:
    text = (ROOT / "docs" / "siaran-api.md").read_text(encoding="utf-8")
    found = re.search(r"```json\n(.*?)\n```", text, re.S)
    assert found is not None, "docs/siaran-api.md has no OpenAPI block"
    assert json.loads(found.group(1)) == openapi(), (
        "regenerate the block with: python -m central.siaran_api"
    )


def test_the_sandbox_command(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SIARAN_SANDBOX_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "siaran-sandbox", "--port", str(port),
         "--data", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_tcp(port, 20)
        url = f"http://127.0.0.1:{port}"
        resp = httpx.post(f"{url}/api/v1/reports", json=new_report(), headers=AUTH)
        assert resp.status_code == 201
        assert resp.json()["id"] in httpx.get(f"{url}/").text
        assert httpx.get(f"{url}/api/v1/openapi.json").json()["openapi"] == "3.1.0"
    finally:
        stop(proc)
        out = proc.stdout.read().decode() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
    assert "SIARAN sandbox on" in out and TOKEN not in out
    assert (tmp_path / "siaran-sandbox.db").exists()
