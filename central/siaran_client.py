"""HTTP JSON client of the SIARAN API (central.siaran_api): create, comment, status, red flag,
read. Timeouts per request, retries with backoff (tenacity) on what may pass (connection
errors, timeouts, 5xx, 429); what will not pass (4xx) raises SiaranRejectedError at once.

Errors:
    SiaranError
     +-- SiaranUnavailableError  try again later (SIARAN down, slow, overloaded; token refused)
     +-- SiaranRejectedError     SIARAN said no to this request; trying again will not help
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr, ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from central.siaran_api import API_PREFIX, Comment, Report, ReportCreate

M = TypeVar("M", Report, Comment)


class SiaranError(Exception):
    pass


class SiaranUnavailableError(SiaranError):
    pass


class SiaranRejectedError(SiaranError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


Sleep = Callable[[float], Awaitable[None]]


class SiaranClient:
    def __init__(
        self,
        base_url: str,
        token: SecretStr | None,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_max_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "siaran-edge-central"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )
        self._attempts = attempts
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self.requests = 0  # HTTP requests sent (tries included)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_report(self, report: ReportCreate, idempotency_key: str) -> Report:
        data = await self._call("POST", "/reports", report.model_dump(mode="json"), idempotency_key)
        return _parse(Report, data)

    async def add_comment(self, report_id: str, body: str, idempotency_key: str) -> Comment:
        payload = {"body": body, "author": "sensor"}
        data = await self._call("POST", f"/reports/{report_id}/comments", payload, idempotency_key)
        return _parse(Comment, data)

    async def set_status(
        self, report_id: str, status: str, note: str, idempotency_key: str
    ) -> Report:
        payload = {"status": status, "note": note}
        data = await self._call("POST", f"/reports/{report_id}/status", payload, idempotency_key)
        return _parse(Report, data)

    async def red_flag(self, report_id: str, reason: str, idempotency_key: str) -> Report:
        payload = {"reason": reason}
        data = await self._call("POST", f"/reports/{report_id}/red-flag", payload, idempotency_key)
        return _parse(Report, data)

    async def get_report(self, report_id: str) -> Report:
        return _parse(Report, await self._call("GET", f"/reports/{report_id}", None, None))

    async def _call(
        self, method: str, path: str, payload: dict[str, Any] | None, idem: str | None
    ) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.5, max=self._backoff_max_s),
            retry=retry_if_exception_type(SiaranUnavailableError),
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(method, path, payload, idem)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self, method: str, path: str, payload: dict[str, Any] | None, idem: str | None
    ) -> Any:
        headers = {"Idempotency-Key": idem} if idem else {}
        self.requests += 1
        try:
            resp = await self._http.request(method, path, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise SiaranUnavailableError(
                f"{method} {path}: timeout ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise SiaranUnavailableError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise SiaranUnavailableError(f"{method} {path}: HTTP {resp.status_code}")
        if resp.status_code in (401, 403):
            # our credentials, not the report: keep it and try again later (operators fix it)
            raise SiaranUnavailableError(
                f"{method} {path}: HTTP {resp.status_code} (token refused)"
            )
        if resp.status_code >= 400:
            raise SiaranRejectedError(resp.status_code, _message(resp))
        try:
            return resp.json()
        except ValueError:
            raise SiaranUnavailableError(f"{method} {path}: answer is not JSON") from None


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(data, dict) and "message" in data:
        return f"{data.get('error', '')}: {data['message']}"
    return str(data)[:300]


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SiaranUnavailableError(f"unexpected answer: {exc.error_count()} problem(s)") from None
