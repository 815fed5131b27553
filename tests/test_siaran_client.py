"""The SIARAN HTTP client: retries what may pass, refuses at once what will not, keeps the
token out of sight."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from central.siaran_api import ReportCreate
from central.siaran_client import SiaranClient, SiaranRejectedError, SiaranUnavailableError
from tests.test_siaran_sandbox import new_report

REPORT = ReportCreate.model_validate(new_report())


def answer(status: int = 201) -> dict[str, object]:
    body = REPORT.model_dump(mode="json")
    body.update(
        id="SRN-2026-000001", status="new", created_at="2026-11-28T11:00:00Z",
        updated_at="2026-11-28T11:00:00Z", responded_at=None, done_at=None, red_flag=False,
        red_flagged_at=None, red_flag_reason=None, comments=[],
    )  # fmt: skip
    return body


async def no_sleep(_s: float) -> None:
    return None


def client(handler: httpx.MockTransport, attempts: int = 3) -> SiaranClient:
    return SiaranClient(
        "http://siaran.test", SecretStr("s3cret"), attempts=attempts, sleep=no_sleep,
        transport=handler,
    )  # fmt: skip


async def test_create_retries_then_succeeds_with_one_key() -> None:
    seen: list[httpx.Request] = []

    def handle(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if len(seen) == 1:
            raise httpx.ConnectError("refused")
        if len(seen) == 2:
            return httpx.Response(503)
        return httpx.Response(201, json=answer())

    c = client(httpx.MockTransport(handle))
    report = await c.create_report(REPORT, "key-1")
    await c.aclose()
    assert report.id == "SRN-2026-000001"
    assert len(seen) == 3
    assert {r.headers["Idempotency-Key"] for r in seen} == {"key-1"}
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert seen[0].url.path == "/api/v1/reports"
    assert json.loads(seen[0].content)["position"]["kecamatan"] == "Pamulang"


async def test_a_refusal_is_not_retried() -> None:
    calls = 0

    def handle(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            422, json={"error": "position_outside_boundary", "message": "di luar"}
        )

    c = client(httpx.MockTransport(handle))
    with pytest.raises(SiaranRejectedError, match="position_outside_boundary"):
        await c.create_report(REPORT, "k")
    await c.aclose()
    assert calls == 1


@pytest.mark.parametrize("status", [401, 429, 500, 502])
async def test_what_may_pass_is_unavailable_after_the_tries(status: int) -> None:
    calls = 0

    def handle(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status)

    c = client(httpx.MockTransport(handle), attempts=2)
    with pytest.raises(SiaranUnavailableError) as info:
        await c.add_comment("SRN-1", "x", "k")
    await c.aclose()
    assert calls == 2
    assert "s3cret" not in str(info.value)


async def test_timeouts_and_garbage_are_unavailable() -> None:
    def slow(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    c = client(httpx.MockTransport(slow), attempts=1)
    with pytest.raises(SiaranUnavailableError, match="timeout"):
        await c.get_report("SRN-1")
    await c.aclose()
    c = client(httpx.MockTransport(lambda r: httpx.Response(200, json={"id": 1})), attempts=1)
    with pytest.raises(SiaranUnavailableError, match="unexpected answer"):
        await c.get_report("SRN-1")
    await c.aclose()
